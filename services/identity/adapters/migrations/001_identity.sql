-- Identity: people, clients, signing keys and failed sign-in attempts.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username = lower(username)),
    password_hash text NOT NULL,
    roles         text[] NOT NULL CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['customer', 'manager', 'service']),
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clients (
    client_id   text PRIMARY KEY,
    secret_hash text NOT NULL,
    roles       text[] NOT NULL CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['customer', 'manager', 'service']),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- private_jwk is a JWE (sealing 'jwe-dir-a256gcm') or, in development, the JWK itself ('none').
CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    algorithm    text NOT NULL,
    public_jwk   jsonb NOT NULL,
    private_jwk  text NOT NULL,
    sealing      text NOT NULL CHECK (sealing IN ('none', 'jwe-dir-a256gcm')),
    created_at   timestamptz NOT NULL,
    retired_at   timestamptz,
    verify_until timestamptz,
    CHECK ((retired_at IS NULL) = (verify_until IS NULL))
);

-- At most one active (not retired) key, whatever several replicas do at once.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;

-- Keyed 'user:<username>' or 'client:<client_id>'.
CREATE TABLE failed_attempts (
    principal         text PRIMARY KEY,
    failures          integer NOT NULL CHECK (failures > 0),
    window_started_at timestamptz NOT NULL,
    locked_until      timestamptz
);
