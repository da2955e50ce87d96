"""Adapters of the payment service: PostgreSQL store and outbox, the simulated card processor, gRPC."""
