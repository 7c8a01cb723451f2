-- The contact a lookup binding names (lower-case GUID; '' for other modes),
-- kept by every write of the row, so that the users bound to one contact
-- are found with an index instead of reading every binding.
ALTER TABLE users ADD COLUMN contact_id TEXT NOT NULL DEFAULT '';
UPDATE users SET contact_id = COALESCE(LOWER({{BINDING_REF_ID}}), '') WHERE {{BINDING_MODE}} = 'lookup';
CREATE INDEX users_contact_id ON users (contact_id);
