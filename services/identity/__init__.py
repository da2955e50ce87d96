"""Identity: a small OAuth2 authorization server (token endpoint, JWKS, discovery) for Cinema."""
