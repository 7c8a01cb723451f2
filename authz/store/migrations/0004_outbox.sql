-- Durable work for later (events to Dataverse, emails), written in the same
-- transaction as the change that caused it and delivered at least once.
-- Times are unix milliseconds. locked_until is the lease of the worker that
-- claimed the row (NULL when none); delivered_at is NULL until delivered.
CREATE TABLE outbox (
    id              {{ID}},
    kind            TEXT    NOT NULL CHECK (kind <> ''),
    type            TEXT    NOT NULL CHECK (type <> ''),
    user_id         TEXT    NOT NULL DEFAULT '',
    payload         TEXT    NOT NULL DEFAULT '{}',
    created_at      BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    locked_until    BIGINT  NULL,
    delivered_at    BIGINT  NULL,
    last_error      TEXT    NOT NULL DEFAULT ''
);
-- Pending work in claim order, and the per-user queue heads.
CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_user_pending ON outbox (user_id, id) WHERE delivered_at IS NULL;
-- Delivered rows, for the purge.
CREATE INDEX outbox_delivered_at ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
