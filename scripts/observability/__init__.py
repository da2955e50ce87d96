"""Observability tooling for the local runtime: Jaeger (traces) and reading traces back."""
