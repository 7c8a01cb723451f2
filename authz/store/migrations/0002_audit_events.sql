-- The audit trail. The id column type is filled in per dialect by migrate.go.
CREATE TABLE audit_events (
    id          {{ID}},
    at          BIGINT NOT NULL,
    type        TEXT   NOT NULL,
    actor       TEXT   NOT NULL DEFAULT '',
    user_id     TEXT   NOT NULL DEFAULT '',
    client_addr TEXT   NOT NULL DEFAULT '',
    detail      TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_user_id ON audit_events (user_id, id);
CREATE INDEX audit_events_type ON audit_events (type, id);
