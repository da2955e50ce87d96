"""Adapters of the review service: MongoDB store, events, gRPC API, clock."""
