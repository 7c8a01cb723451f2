-- Accounts. Times are unix milliseconds (0 = never); roles and binding are JSON text.
CREATE TABLE users (
    id                   TEXT    NOT NULL PRIMARY KEY,
    username             TEXT    NOT NULL,
    username_norm        TEXT    NOT NULL,
    email                TEXT    NOT NULL,
    email_norm           TEXT    NOT NULL,
    first_name           TEXT    NOT NULL DEFAULT '',
    last_name            TEXT    NOT NULL DEFAULT '',
    display_name         TEXT    NOT NULL DEFAULT '',
    password_hash        TEXT    NOT NULL DEFAULT '',
    roles                TEXT    NOT NULL DEFAULT '[]',
    status               TEXT    NOT NULL,
    email_confirmed      BOOLEAN NOT NULL DEFAULT FALSE,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    failed_count         INTEGER NOT NULL DEFAULT 0,
    lockout_until        BIGINT  NOT NULL DEFAULT 0,
    security_stamp       TEXT    NOT NULL DEFAULT '',
    binding              TEXT    NOT NULL DEFAULT '{"mode":"none"}',
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    last_sign_in_at      BIGINT  NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_username_norm ON users (username_norm);
CREATE UNIQUE INDEX users_email_norm ON users (email_norm);
CREATE INDEX users_status ON users (status);
