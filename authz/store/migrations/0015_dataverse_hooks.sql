-- Dataverse webhooks (proxy/handlers_hooks.go). webhook_deliveries holds
-- the key (hex SHA-256) of every delivery accepted within the receiver's
-- max age, so a repeated delivery (Dataverse retrying, or a replay) is
-- answered without acting twice on any replica; rows older than the max
-- age are swept when a delivery is accepted. contact_changes is the
-- session feed's list of contacts changed in Dataverse (store
-- SessionChangesSince): one row per contact, its latest change, and
-- whether that change was the contact's deletion.
CREATE TABLE webhook_deliveries (
    key_hash    TEXT   NOT NULL PRIMARY KEY CHECK (length(key_hash) = 64),
    received_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);
CREATE TABLE contact_changes (
    contact_id TEXT    NOT NULL PRIMARY KEY CHECK (contact_id <> ''),
    changed_at BIGINT  NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX contact_changes_changed_at ON contact_changes (changed_at);
