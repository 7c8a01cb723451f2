-- Which older binaries may run on this schema. A migration whose file
-- starts with the line "-- crmgate:breaking" records its own version here:
-- a binary that knows fewer migrations than the largest requires_known
-- refuses to start (store.SchemaTooNewError). Additive migrations leave 0,
-- so the previous release keeps running during a rollout and after a
-- rollback (docs/operations.md, "Rolling upgrade").
ALTER TABLE schema_migrations ADD COLUMN requires_known BIGINT NOT NULL DEFAULT 0;
