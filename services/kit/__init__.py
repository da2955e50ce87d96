"""The shared kit: what every Cinema service needs (server bootstrap, settings, health,
telemetry, auth, errors, events). Nothing here knows about a particular context."""
