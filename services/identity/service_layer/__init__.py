"""Use cases of the identity service (issue tokens, manage keys and accounts) and their ports."""
