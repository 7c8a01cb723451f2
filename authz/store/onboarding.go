package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/tokens"
)

// contactLockClass is the first key of the two-key pg_advisory_xact_lock
// that serialises account creations for one contact (the bytes of "crmg");
// the second key is hashtext of the contact id. Two contacts whose ids hash
// alike merely wait for each other.
const contactLockClass int32 = 0x63726d67

// CreateContactUser implements onboarding.Store. In one transaction it
// takes the contact's lock (a PostgreSQL advisory lock; SQLite's immediate
// transactions hold the single write lock), checks that no user is bound
// to the contact, inserts u, inserts t for u and enqueues events, so that
// concurrent creations for one contact, from any replica, make one account
// and the others get onboarding.ErrContactBound.
func (d *DB) CreateContactUser(ctx context.Context, u *authz.User, t *tokens.Token, events ...outbox.Event) error {
	contact := boundContact(u)
	switch {
	case contact == "":
		return errors.New("store: create contact user: the user needs a lookup binding")
	case u.ID == "" || t == nil || t.UserID != u.ID || t.Purpose == "" || t.SecretHash == "" || t.ExpiresAt.IsZero():
		return errors.New("store: create contact user: a user id and a token for it (purpose, secret hash, expiry) are required")
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = d.now()
	}
	t.CreatedAt, t.ExpiresAt = fromMillis(millis(t.CreatedAt)), fromMillis(millis(t.ExpiresAt))
	return d.inTx(ctx, "create contact user", func(tx *sql.Tx) error {
		if d.dialect == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, contactLockClass, contact); err != nil {
				return fmt.Errorf("store: create contact user: lock: %w", err)
			}
		}
		var other string
		switch err := tx.QueryRowContext(ctx, d.q(`SELECT id FROM users WHERE contact_id = ? LIMIT 1`), contact).Scan(&other); {
		case err == nil:
			return fmt.Errorf("store: create contact user: %w", onboarding.ErrContactBound)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: create contact user: %w", err)
		}
		if err := d.createUser(ctx, tx, u); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, d.q(`INSERT INTO tokens (purpose, user_id, secret_hash, payload, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`), string(t.Purpose), t.UserID, t.SecretHash, string(t.Payload),
			millis(t.CreatedAt), millis(t.ExpiresAt)).Scan(&t.ID); err != nil {
			return fmt.Errorf("store: create contact user: token: %w", mapErr(err))
		}
		return d.enqueue(ctx, tx, u.ID, events)
	})
}

// DeleteUserIfUnchanged implements onboarding.Store: it deletes user id
// only while its row still has updatedAt, and enqueues events, in one
// transaction. A changed row gives authz.ErrStale, a missing one
// authz.ErrNotFound, and neither deletes or enqueues anything.
func (d *DB) DeleteUserIfUnchanged(ctx context.Context, id string, updatedAt time.Time, events ...outbox.Event) error {
	return d.inTx(ctx, "delete user", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`DELETE FROM users WHERE id = ? AND updated_at = ?`), id, millis(updatedAt))
		if err != nil {
			return fmt.Errorf("store: delete user: %w", err)
		}
		if err := d.affectedOne(ctx, tx, res, id); err != nil {
			if errors.Is(err, errNoMatch) {
				err = authz.ErrStale
			}
			return fmt.Errorf("store: delete user: %w", err)
		}
		return d.enqueue(ctx, tx, id, events)
	})
}
