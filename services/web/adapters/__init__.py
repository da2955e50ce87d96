"""Adapters of the web service: the board's change feed in Redis."""
