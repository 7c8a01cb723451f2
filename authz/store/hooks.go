package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
)

// AcceptWebhook records one webhook delivery of a contact change, across
// replicas: keyHash (hex SHA-256 of what identifies the delivery; see
// proxy's webhook receiver) is remembered until keep has passed, and the
// contact is listed by the session feed (SessionChangesSince) as changed
// now (by this replica's clock, as the feed reads every change), deleted
// or not; a contact's changes get strictly increasing times (a change
// within the same millisecond as the last one is a millisecond later), so
// every replica tells each one from the last. duplicate is true, and nothing else is written,
// when the same key was accepted within keep: Dataverse retrying a
// delivery, or a replay. A deletion stays a deletion: a later change of the same contact keeps the
// flag. Deliveries and contact changes older than keep are swept first.
func (d *DB) AcceptWebhook(ctx context.Context, keyHash, contactID string, deleted bool, keep time.Duration) (duplicate bool, err error) {
	if len(keyHash) != 64 || contactID == "" {
		return false, errors.New("store: accept webhook: a 64-character key hash and a contact id are required")
	}
	contactID = strings.ToLower(contactID)
	now := d.now()
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: accept webhook: %w", err)
	}
	defer tx.Rollback()
	// The feed reads the last seconds only (each replica keeps what it
	// read), so contact changes older than keep (at least a minute) are
	// swept with the deliveries.
	for _, q := range []string{`DELETE FROM webhook_deliveries WHERE received_at < ?`, `DELETE FROM contact_changes WHERE changed_at < ?`} {
		if _, err := tx.ExecContext(ctx, d.q(q), millis(now.Add(-keep))); err != nil {
			return false, fmt.Errorf("store: accept webhook: %w", err)
		}
	}
	res, err := tx.ExecContext(ctx, d.q(`INSERT INTO webhook_deliveries (key_hash, received_at) VALUES (?, ?)
		ON CONFLICT (key_hash) DO NOTHING`), keyHash, millis(now))
	if err != nil {
		return false, fmt.Errorf("store: accept webhook: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fmt.Errorf("store: accept webhook: %w", err)
	} else if n == 0 {
		return true, nil
	}
	del := 0
	if deleted {
		del = 1
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO contact_changes (contact_id, changed_at, deleted) VALUES (?, ?, ?)
		ON CONFLICT (contact_id) DO UPDATE SET changed_at = CASE WHEN excluded.changed_at > contact_changes.changed_at
			THEN excluded.changed_at ELSE contact_changes.changed_at + 1 END,
		deleted = CASE WHEN contact_changes.deleted = 1 THEN 1 ELSE excluded.deleted END`),
		contactID, millis(now), del); err != nil {
		return false, fmt.Errorf("store: accept webhook: %w", err)
	}
	return false, tx.Commit()
}

// contactChangesSince reads the contact changes at or after since for
// SessionChangesSince, newest first, at most limit.
func (d *DB) contactChangesSince(ctx context.Context, since time.Time, limit int) ([]authz.ContactChange, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT contact_id, changed_at, deleted FROM contact_changes
		WHERE changed_at >= ? ORDER BY changed_at DESC LIMIT ?`), millis(since), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []authz.ContactChange
	for rows.Next() {
		var c authz.ContactChange
		var at int64
		var del int
		if err := rows.Scan(&c.ContactID, &at, &del); err != nil {
			return nil, err
		}
		c.At, c.Deleted = time.UnixMilli(at), del != 0
		out = append(out, c)
	}
	return out, rows.Err()
}
