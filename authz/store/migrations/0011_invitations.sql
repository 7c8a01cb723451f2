-- crmgate's own invitations (package authz/invitations). Only the hex
-- SHA-256 of a code is kept, unique, and invitations are looked up by it.
-- kind is single or group; max_redemptions is at least 1. Times are unix
-- milliseconds; revoked_at is NULL while the invitation is not revoked.
CREATE TABLE invitations (
    id              {{ID}},
    code_hash       TEXT    NOT NULL UNIQUE,
    email           TEXT    NOT NULL DEFAULT '',
    contact_id      TEXT    NOT NULL DEFAULT '',
    kind            TEXT    NOT NULL CHECK (kind IN ('single', 'group')),
    max_redemptions INTEGER NOT NULL CHECK (max_redemptions >= 1),
    redemptions     INTEGER NOT NULL DEFAULT 0,
    roles           TEXT    NOT NULL DEFAULT '[]',
    redirect_url    TEXT    NOT NULL DEFAULT '',
    created_by      TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    sent_at         BIGINT  NOT NULL DEFAULT 0,
    revoked_at      BIGINT
);
CREATE INDEX invitations_created_at ON invitations (created_at);

-- One row per redemption of an invitation, crmgate's ('crmgate:<id>') or
-- Dataverse's ('dataverse:<adx_invitationid>'), numbered from 1: the
-- primary key makes two redemptions that claim the same number impossible,
-- so that no more than the maximum ever get through, on any replica.
CREATE TABLE invitation_redemptions (
    invitation  TEXT   NOT NULL,
    n           INTEGER NOT NULL CHECK (n >= 1),
    user_id     TEXT   NOT NULL,
    contact_id  TEXT   NOT NULL DEFAULT '',
    redeemed_at BIGINT NOT NULL,
    PRIMARY KEY (invitation, n)
);

-- The Dataverse invitations crmgate has emailed: the insert that claims
-- an invitation id and the mail's outbox event are one transaction, so
-- each is emailed once across replicas. created_on (adx_invitation
-- createdon) is where the next query resumes.
CREATE TABLE dataverse_invitation_mails (
    invitation_id TEXT   NOT NULL PRIMARY KEY,
    created_on    BIGINT NOT NULL,
    claimed_at    BIGINT NOT NULL
);
CREATE INDEX dataverse_invitation_mails_created_on ON dataverse_invitation_mails (created_on);
