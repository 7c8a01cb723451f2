-- Bulk jobs of the admin console (package authz/jobs): one row per job
-- and one per target user, written together at submit. Times are unix
-- milliseconds. A worker holds a job while claim_token is its own and
-- lease_until has not passed; NULL lease_until means no worker holds it
-- (queued, released, or finished). succeeded, failed and cancelled count
-- the items in those states, updated in the same transaction as each item.
-- Statuses are checked by the code, not here, so a later release may add
-- one without rebuilding the table.
CREATE TABLE jobs (
    id               TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    action           TEXT    NOT NULL CHECK (action <> ''),
    label            TEXT    NOT NULL DEFAULT '',
    params           TEXT    NOT NULL DEFAULT '{}',
    actor            TEXT    NOT NULL DEFAULT '',
    status           TEXT    NOT NULL,
    total            INTEGER NOT NULL,
    succeeded        INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    cancelled        INTEGER NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT  NULL,
    finished_at      BIGINT  NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancelled_by     TEXT    NOT NULL DEFAULT '',
    claim_token      TEXT    NOT NULL DEFAULT '',
    lease_until      BIGINT  NULL
);
-- Unfinished jobs in claim order; every job newest first for the console;
-- finished jobs for the purge.
CREATE INDEX jobs_runnable ON jobs (created_at, id) WHERE finished_at IS NULL;
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_items (
    job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    target      TEXT    NOT NULL CHECK (target <> ''),
    status      TEXT    NOT NULL DEFAULT 'pending',
    code        TEXT    NOT NULL DEFAULT '',
    message     TEXT    NOT NULL DEFAULT '',
    finished_at BIGINT  NULL,
    PRIMARY KEY (job_id, seq)
);
-- A job's failed items, for "why did these fail".
CREATE INDEX job_items_failed ON job_items (job_id, seq) WHERE status = 'failed';
