-- Throttle buckets (package authz/throttle), shared by every replica: one
-- row per limiter name and key, the key kept only as its hex SHA-256 (no
-- address, no email). tat is the bucket's theoretical arrival time of the
-- generic cell rate algorithm, in unix microseconds; refusals counts the
-- events refused since the last allowed one (1 marks the first refusal of
-- a run, audited once across replicas). A row whose tat is past equals no
-- row, and the sweep deletes it.
CREATE TABLE throttles (
    limiter  TEXT   NOT NULL CHECK (limiter <> ''),
    key_hash TEXT   NOT NULL CHECK (length(key_hash) = 64),
    tat      BIGINT NOT NULL,
    refusals BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (limiter, key_hash)
);
CREATE INDEX throttles_tat ON throttles (tat);
