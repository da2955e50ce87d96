"""Entry points of the identity service: the HTTP API (token endpoint, JWKS, discovery) and the CLI."""
