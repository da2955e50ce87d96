"""Adapters of the identity service: PostgreSQL store, argon2 hashing, joserfc keys and signing."""
