-- One-time tokens (package authz/tokens): email confirmation, password
-- reset, set-password and invitation links. Only the hex SHA-256 of a
-- secret is kept, unique, and tokens are looked up by it. user_id is NULL
-- for an invitation to an address without an account. Times are unix
-- milliseconds; used_at and revoked_at are NULL while the token is unused.
CREATE TABLE tokens (
    id          {{ID}},
    purpose     TEXT   NOT NULL CHECK (purpose <> ''),
    user_id     TEXT   REFERENCES users (id) ON DELETE CASCADE,
    secret_hash TEXT   NOT NULL UNIQUE,
    payload     TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX tokens_user_purpose ON tokens (user_id, purpose);
CREATE INDEX tokens_expires_at ON tokens (expires_at);
