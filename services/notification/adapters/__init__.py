"""Adapters of notification: PostgreSQL delivery log, SMTP sender, events in, gRPC out."""
