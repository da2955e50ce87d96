"""Adapters of the viewpage: the Redis read model, event translation, NATS replay, the gRPC API."""
