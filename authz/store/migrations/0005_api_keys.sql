-- Credentials of machine clients of the REST API (Power Automate flows).
-- Only the hex SHA-256 of a key's secret is stored, never the key. scopes is
-- JSON text, e.g. ["users:read","users:bind"]. Times are unix milliseconds;
-- last_used_at, expires_at and revoked_at are NULL for never.
CREATE TABLE api_keys (
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL CHECK (name <> ''),
    secret_hash  TEXT   NOT NULL CHECK (secret_hash <> ''),
    scopes       TEXT   NOT NULL DEFAULT '[]',
    created_by   TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NULL,
    expires_at   BIGINT NULL,
    revoked_at   BIGINT NULL
);
