"""Payment use cases and the ports (repository, unit of work, card processor) they run on."""
