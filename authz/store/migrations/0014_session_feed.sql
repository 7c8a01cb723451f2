-- The session feed (store.SessionChangesSince): every replica polls the
-- sign-outs and the account changes of the last seconds, so that a session
-- ended or an account changed through one replica is honoured by the
-- others within a poll interval, not only at their next stamp check.
-- revoked_at is 0 for sign-outs recorded before this version.
ALTER TABLE revoked_sessions ADD COLUMN revoked_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX revoked_sessions_revoked_at ON revoked_sessions (revoked_at);
CREATE INDEX users_updated_at ON users (updated_at);
