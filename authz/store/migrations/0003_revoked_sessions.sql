-- Sessions ended before their cookie expires (sign-out). Rows past
-- expires_at are useless, since such a cookie is refused anyway, and are
-- deleted as new rows arrive.
CREATE TABLE revoked_sessions (
    session_id TEXT   PRIMARY KEY,
    user_id    TEXT   NOT NULL DEFAULT '',
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
