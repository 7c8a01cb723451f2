-- Outbox events whose destination refused them for good (a mail server's
-- 5xx answer): failed_at is when the worker gave up, in unix milliseconds;
-- such a row also has delivered_at set (done with, purged like the others)
-- and keeps its last_error.
ALTER TABLE outbox ADD COLUMN failed_at BIGINT NULL;
