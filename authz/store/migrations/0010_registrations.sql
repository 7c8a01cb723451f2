-- Self-registrations (package authz/registration): one row per account
-- created at /.auth/register. state is confirming (the address is not
-- confirmed yet: the account may not sign in), setting_up (confirmed; the
-- Dataverse contact is being created through the outbox: the account may
-- not sign in yet) or done. Accounts without a row (created by an
-- operator) are never held back by it. fields is the JSON object of the
-- allow-listed contact columns typed in the form, written to the contact
-- when one is created; contact_id is the contact id chosen at registration
-- so that a retried creation cannot make a second contact ('' when no
-- contact is created). Times are unix milliseconds.
CREATE TABLE registrations (
    user_id    TEXT   PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT   NOT NULL CHECK (state IN ('confirming', 'setting_up', 'done')),
    fields     TEXT   NOT NULL DEFAULT '{}',
    contact_id TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX registrations_state ON registrations (state);
