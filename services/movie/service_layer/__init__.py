"""Use cases of the catalog and the ports they need."""
