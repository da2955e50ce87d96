"""Adapters of booking: PostgreSQL store, outbox, payment client, gRPC API, catalog events."""
