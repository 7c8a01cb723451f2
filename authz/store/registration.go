package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/tokens"
)

// CreateRegistration implements registration.Store: the account, its
// registration row, its confirmation token (revoking older ones beyond
// keep, as IssueToken does) and its events in one transaction.
func (d *DB) CreateRegistration(ctx context.Context, u *authz.User, r *registration.Registration, t *tokens.Token, keep int, events ...outbox.Event) error {
	fields := r.Fields
	if fields == nil {
		fields = map[string]string{}
	}
	fb, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("store: create registration: %w", err)
	}
	return d.inTx(ctx, "create registration", func(tx *sql.Tx) error {
		if err := d.createUser(ctx, tx, u); err != nil {
			return err
		}
		r.UserID = u.ID
		r.CreatedAt, r.UpdatedAt = u.CreatedAt, u.CreatedAt
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO registrations (user_id, state, fields, contact_id, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`), u.ID, string(r.State), string(fb), r.ContactID, millis(r.CreatedAt), millis(r.UpdatedAt)); err != nil {
			return fmt.Errorf("store: create registration: %w", mapErr(err))
		}
		if t != nil {
			if t.UserID != u.ID || t.Purpose == "" || t.SecretHash == "" || t.ExpiresAt.IsZero() {
				return errors.New("store: create registration: the token must be complete and for the new user")
			}
			if err := d.insertToken(ctx, tx, t, keep); err != nil {
				return err
			}
		}
		return d.enqueue(ctx, tx, u.ID, events)
	})
}

// RegistrationByUser implements registration.Store.
func (d *DB) RegistrationByUser(ctx context.Context, userID string) (*registration.Registration, error) {
	var (
		r                registration.Registration
		state, fields    string
		created, updated int64
	)
	err := d.db.QueryRowContext(ctx, d.q(`SELECT user_id, state, fields, contact_id, created_at, updated_at
		FROM registrations WHERE user_id = ?`), userID).Scan(&r.UserID, &state, &fields, &r.ContactID, &created, &updated)
	if err != nil {
		return nil, fmt.Errorf("store: registration: %w", mapErr(err))
	}
	r.State = registration.State(state)
	r.CreatedAt, r.UpdatedAt = fromMillis(created), fromMillis(updated)
	if err := json.Unmarshal([]byte(fields), &r.Fields); err != nil {
		return nil, fmt.Errorf("store: registration %s: fields: %w", userID, err)
	}
	return &r, nil
}

// AdvanceRegistration implements registration.Store with one conditional
// UPDATE of the registration (exactly one of concurrent callers moves it
// out of from) and the optimistic update of the user, in one transaction.
func (d *DB) AdvanceRegistration(ctx context.Context, u *authz.User, from, to registration.State, events ...outbox.Event) error {
	prev := u.UpdatedAt
	err := d.inTx(ctx, "advance registration", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE registrations SET state = ?, updated_at = ? WHERE user_id = ? AND state = ?`),
			string(to), d.now().UnixMilli(), u.ID, string(from))
		if err != nil {
			return fmt.Errorf("store: advance registration: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			if err == nil {
				err = authz.ErrStale
			}
			return fmt.Errorf("store: advance registration: %w", err)
		}
		if err := d.updateUser(ctx, tx, u); err != nil {
			return err
		}
		return d.enqueue(ctx, tx, u.ID, events)
	})
	if err != nil {
		u.UpdatedAt = prev // rolled back
	}
	return err
}
