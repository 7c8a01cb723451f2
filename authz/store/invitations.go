package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/outbox"
)

// invitationColumns are the columns scanInvitation reads, in its order.
const invitationColumns = `id, code_hash, email, contact_id, kind, max_redemptions, redemptions, roles, redirect_url,
	created_by, created_at, expires_at, sent_at, revoked_at`

func scanInvitation(r rowScanner) (*invitations.Invitation, error) {
	var (
		inv                invitations.Invitation
		kind, roles        string
		created, exp, sent int64
		revoked            sql.NullInt64
	)
	if err := r.Scan(&inv.ID, &inv.CodeHash, &inv.Email, &inv.ContactID, &kind, &inv.MaxRedemptions, &inv.Redemptions,
		&roles, &inv.RedirectURL, &inv.CreatedBy, &created, &exp, &sent, &revoked); err != nil {
		return nil, mapErr(err)
	}
	inv.Kind = invitations.Kind(kind)
	if err := json.Unmarshal([]byte(roles), &inv.Roles); err != nil {
		return nil, fmt.Errorf("store: invitation %d: roles: %w", inv.ID, err)
	}
	if inv.Roles == nil {
		inv.Roles = []string{}
	}
	inv.CreatedAt, inv.ExpiresAt, inv.SentAt = fromMillis(created), fromMillis(exp), fromMillis(sent)
	inv.RevokedAt = fromNullMillis(revoked)
	return &inv, nil
}

// CreateInvitation implements invitations.Store.
func (d *DB) CreateInvitation(ctx context.Context, inv *invitations.Invitation, events ...outbox.Event) error {
	if inv.CodeHash == "" || inv.ExpiresAt.IsZero() || inv.MaxRedemptions < 1 {
		return errors.New("store: create invitation: code hash, expiry and maximum are required")
	}
	if inv.CreatedAt.IsZero() {
		inv.CreatedAt = d.now()
	}
	if inv.Roles == nil {
		inv.Roles = []string{}
	}
	roles, err := json.Marshal(inv.Roles)
	if err != nil {
		return fmt.Errorf("store: create invitation: %w", err)
	}
	inv.CreatedAt, inv.ExpiresAt, inv.SentAt = fromMillis(millis(inv.CreatedAt)), fromMillis(millis(inv.ExpiresAt)), fromMillis(millis(inv.SentAt))
	return d.inTx(ctx, "create invitation", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, d.q(`INSERT INTO invitations (code_hash, email, contact_id, kind, max_redemptions,
			redemptions, roles, redirect_url, created_by, created_at, expires_at, sent_at)
			VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?) RETURNING id`),
			inv.CodeHash, inv.Email, inv.ContactID, string(inv.Kind), inv.MaxRedemptions, string(roles), inv.RedirectURL,
			inv.CreatedBy, millis(inv.CreatedAt), millis(inv.ExpiresAt), millis(inv.SentAt)).Scan(&inv.ID)
		if err != nil {
			return fmt.Errorf("store: create invitation: %w", mapErr(err))
		}
		return d.enqueue(ctx, tx, invitationQueue(inv.ID), events)
	})
}

// invitationQueue is the outbox queue of an invitation's mails: its own,
// so that one undeliverable address does not hold up the others.
func invitationQueue(id int64) string { return fmt.Sprintf("invitation:%d", id) }

// InvitationByHash implements invitations.Store.
func (d *DB) InvitationByHash(ctx context.Context, hash string) (*invitations.Invitation, error) {
	inv, err := scanInvitation(d.db.QueryRowContext(ctx, d.q(`SELECT `+invitationColumns+` FROM invitations WHERE code_hash = ?`), hash))
	if err != nil {
		return nil, fmt.Errorf("store: invitation: %w", err)
	}
	return inv, nil
}

// InvitationByID implements invitations.Store.
func (d *DB) InvitationByID(ctx context.Context, id int64) (*invitations.Invitation, error) {
	inv, err := scanInvitation(d.db.QueryRowContext(ctx, d.q(`SELECT `+invitationColumns+` FROM invitations WHERE id = ?`), id))
	if err != nil {
		return nil, fmt.Errorf("store: invitation: %w", err)
	}
	return inv, nil
}

// ListInvitations implements invitations.Store.
func (d *DB) ListInvitations(ctx context.Context, after int64, limit int) ([]*invitations.Invitation, error) {
	if limit < 1 {
		return nil, errors.New("store: list invitations: limit must be positive")
	}
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+invitationColumns+` FROM invitations WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list invitations: %w", err)
	}
	defer rows.Close()
	out := []*invitations.Invitation{}
	for rows.Next() {
		inv, err := scanInvitation(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list invitations: %w", err)
		}
		out = append(out, inv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list invitations: %w", err)
	}
	return out, nil
}

// ReplaceInvitationCode implements invitations.Store with one conditional
// UPDATE.
func (d *DB) ReplaceInvitationCode(ctx context.Context, id int64, hash string, at time.Time, events ...outbox.Event) error {
	return d.inTx(ctx, "replace invitation code", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE invitations SET code_hash = ?, sent_at = ?
			WHERE id = ? AND revoked_at IS NULL AND expires_at > ? AND redemptions < max_redemptions`),
			hash, millis(at), id, millis(at))
		if err != nil {
			return fmt.Errorf("store: replace invitation code: %w", mapErr(err))
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = authz.ErrNotFound
			}
			return fmt.Errorf("store: replace invitation code: %w", err)
		}
		return d.enqueue(ctx, tx, invitationQueue(id), events)
	})
}

// RevokeInvitation implements invitations.Store.
func (d *DB) RevokeInvitation(ctx context.Context, id int64, at time.Time) error {
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE invitations SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`), millis(at), id)
	if err != nil {
		return fmt.Errorf("store: revoke invitation: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err == nil {
			err = authz.ErrNotFound
		}
		return fmt.Errorf("store: revoke invitation: %w", err)
	}
	return nil
}

// RedeemInvitation implements invitations.Store. A crmgate invitation's
// row is read FOR UPDATE on PostgreSQL, which serialises its redemptions;
// a Dataverse invitation has no row here, so the number is claimed with
// INSERT ... ON CONFLICT DO NOTHING on the (invitation, n) primary key:
// a concurrent claim of the same number waits for the other transaction
// and then inserts nothing, and this one tries the next number, each
// statement seeing what committed before it (READ COMMITTED). On SQLite
// the immediate transaction holds the single write lock. The contact is
// checked under a transaction-scoped advisory lock on PostgreSQL, so that
// two redemptions for one contact cannot both bind it.
func (d *DB) RedeemInvitation(ctx context.Context, c *invitations.Claim, newUser, linked *authz.User, events ...outbox.Event) error {
	if c.Invitation == "" || c.UserID == "" || c.Max < 0 || c.Base < 0 {
		return errors.New("store: redeem invitation: invitation, user and a non-negative maximum are required")
	}
	if (newUser == nil) == (linked == nil) {
		return errors.New("store: redeem invitation: exactly one of a new user and a linked user")
	}
	at := millis(c.At)
	var n int
	err := d.inTx(ctx, "redeem invitation", func(tx *sql.Tx) error {
		lock := ""
		if d.dialect == Postgres {
			lock = " FOR UPDATE"
		}
		if c.LocalID != 0 {
			var revoked sql.NullInt64
			var exp int64
			var count, maxR int
			if err := tx.QueryRowContext(ctx, d.q(`SELECT revoked_at, expires_at, redemptions, max_redemptions FROM invitations WHERE id = ?`+lock),
				c.LocalID).Scan(&revoked, &exp, &count, &maxR); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("store: redeem invitation: %w", invitations.ErrNoSlot)
				}
				return fmt.Errorf("store: redeem invitation: %w", err)
			}
			if revoked.Valid || exp <= at || count >= maxR {
				return fmt.Errorf("store: redeem invitation: %w", invitations.ErrNoSlot)
			}
		}
		if c.ContactID != "" {
			if d.dialect == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "contact:"+c.ContactID); err != nil {
					return fmt.Errorf("store: redeem invitation: lock contact: %w", err)
				}
			}
			var other string
			err := tx.QueryRowContext(ctx, d.q(`SELECT id FROM users WHERE contact_id = ? AND id <> ? LIMIT 1`),
				strings.ToLower(c.ContactID), c.UserID).Scan(&other)
			switch {
			case err == nil:
				return fmt.Errorf("store: redeem invitation: %w", invitations.ErrContactBound)
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("store: redeem invitation: contact: %w", err)
			}
		}
		for {
			var last int
			if err := tx.QueryRowContext(ctx, d.q(`SELECT COALESCE(MAX(n), 0) FROM invitation_redemptions WHERE invitation = ?`),
				c.Invitation).Scan(&last); err != nil {
				return fmt.Errorf("store: redeem invitation: count: %w", err)
			}
			n = max(last, c.Base) + 1
			if c.Max > 0 && n > c.Max {
				return fmt.Errorf("store: redeem invitation: %w", invitations.ErrNoSlot)
			}
			res, err := tx.ExecContext(ctx, d.q(`INSERT INTO invitation_redemptions (invitation, n, user_id, contact_id, redeemed_at)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`), c.Invitation, n, c.UserID, strings.ToLower(c.ContactID), at)
			if err != nil {
				return fmt.Errorf("store: redeem invitation: claim: %w", err)
			}
			if k, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("store: redeem invitation: claim: %w", err)
			} else if k == 1 {
				break
			}
		}
		if c.LocalID != 0 {
			if _, err := tx.ExecContext(ctx, d.q(`UPDATE invitations SET redemptions = redemptions + 1 WHERE id = ?`), c.LocalID); err != nil {
				return fmt.Errorf("store: redeem invitation: count: %w", err)
			}
		}
		if newUser != nil {
			if err := d.createUser(ctx, tx, newUser); err != nil {
				return err
			}
		} else if err := d.updateUser(ctx, tx, linked); err != nil {
			return err
		}
		if c.WriteBack != nil {
			ev, err := c.WriteBack(n)
			if err != nil {
				return fmt.Errorf("store: redeem invitation: %w", err)
			}
			events = append(events, ev)
		}
		return d.enqueue(ctx, tx, c.UserID, events)
	})
	if err != nil {
		return err
	}
	c.N = n
	return nil
}

// ClaimDataverseInvitationMail implements invitations.Store.
func (d *DB) ClaimDataverseInvitationMail(ctx context.Context, id string, createdOn, at time.Time, events ...outbox.Event) (bool, error) {
	if id == "" {
		return false, errors.New("store: claim invitation mail: an id is required")
	}
	claimed := false
	err := d.inTx(ctx, "claim invitation mail", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`INSERT INTO dataverse_invitation_mails (invitation_id, created_on, claimed_at)
			VALUES (?, ?, ?) ON CONFLICT DO NOTHING`), strings.ToLower(id), millis(createdOn), millis(at))
		if err != nil {
			return fmt.Errorf("store: claim invitation mail: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: claim invitation mail: %w", err)
		}
		if n == 0 {
			return nil
		}
		claimed = true
		return d.enqueue(ctx, tx, "invitation:"+strings.ToLower(id), events)
	})
	if err != nil {
		return false, err
	}
	return claimed, nil
}

// LatestDataverseInvitationMail implements invitations.Store.
func (d *DB) LatestDataverseInvitationMail(ctx context.Context) (time.Time, error) {
	var ms int64
	if err := d.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(created_on), 0) FROM dataverse_invitation_mails`).Scan(&ms); err != nil {
		return time.Time{}, fmt.Errorf("store: latest invitation mail: %w", err)
	}
	return fromMillis(ms), nil
}

// InvitationRedemptions implements invitations.Store: one query for the
// keys of a page.
func (d *DB) InvitationRedemptions(ctx context.Context, keys []string, perKey int) (map[string][]invitations.Redemption, error) {
	out := map[string][]invitations.Redemption{}
	if len(keys) == 0 {
		return out, nil
	}
	if len(keys) > invitations.MaxRedemptionKeys || perKey < 1 {
		return nil, fmt.Errorf("store: invitation redemptions: 1 to %d keys and a positive limit", invitations.MaxRedemptionKeys)
	}
	args := make([]any, 0, len(keys)+1)
	for _, k := range keys {
		args = append(args, k)
	}
	args = append(args, perKey)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT invitation, n, user_id, contact_id, redeemed_at FROM invitation_redemptions
		WHERE invitation IN (?`+strings.Repeat(", ?", len(keys)-1)+`) AND n <= ? ORDER BY invitation, n`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: invitation redemptions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var r invitations.Redemption
		var at int64
		if err := rows.Scan(&key, &r.N, &r.UserID, &r.ContactID, &at); err != nil {
			return nil, fmt.Errorf("store: invitation redemptions: %w", err)
		}
		r.At = fromMillis(at)
		out[key] = append(out[key], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: invitation redemptions: %w", err)
	}
	return out, nil
}
