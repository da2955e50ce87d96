-- Identity hardening (issue 15) and sign-up (issue 16).

-- Throttling per (principal, client address) with exponential backoff: keys are now
-- '<principal>|<address>'; the old per-account records mean nothing any more.
DELETE FROM failed_attempts;
ALTER TABLE failed_attempts RENAME COLUMN window_started_at TO last_failure_at;

-- A key is published at once but signs only from activates_at (one JWKS cache period after its
-- rotation); retired_at of its predecessor is that same moment.
ALTER TABLE signing_keys ADD COLUMN activates_at timestamptz;
UPDATE signing_keys SET activates_at = created_at;
ALTER TABLE signing_keys ALTER COLUMN activates_at SET NOT NULL;

-- One account per e-mail address (sign-up names the account by its address).
CREATE UNIQUE INDEX users_email_unique ON users (lower(email)) WHERE email IS NOT NULL;

-- Refresh tokens (RFC 6749 §6), rotating: each use makes the next one of the same family and
-- marks itself used; a used one presented again revokes the whole family. Only a SHA-256 digest
-- of the token is stored (it is 256 random bits: a fast hash is enough, and nothing in this
-- table lets anyone sign in).
CREATE TABLE refresh_tokens (
    id                uuid PRIMARY KEY,
    digest            bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    family_id         uuid NOT NULL,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id         text,
    scope             text,
    issued_at         timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    family_expires_at timestamptz NOT NULL,
    used_at           timestamptz,
    revoked_at        timestamptz,
    CHECK (expires_at <= family_expires_at)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);
