-- Failed sign-ins per (account, client address), so that an address that
-- keeps failing on an account is locked out of that account alone, and the
-- time of an account's last failure, so that its count across addresses
-- covers a window (see signin.Limits for the rules). client is the folded
-- address the throttle uses (an IPv4 address or an IPv6 /64). Times are
-- unix milliseconds; lockout_until is 0 when not locked.
CREATE TABLE signin_failures (
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client         TEXT    NOT NULL,
    failed_count   INTEGER NOT NULL,
    last_failed_at BIGINT  NOT NULL,
    lockout_until  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, client)
);
ALTER TABLE users ADD COLUMN last_failed_at BIGINT NOT NULL DEFAULT 0;
