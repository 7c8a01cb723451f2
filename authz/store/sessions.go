package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz"
)

// RevokeSession implements the feature stores. Revoking twice is not an error. It
// also deletes revocations that expired, so the table stays as small as the
// number of sign-outs within one session lifetime.
func (d *DB) RevokeSession(ctx context.Context, sessionID, userID string, expiresAt time.Time) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: revoke session: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM revoked_sessions WHERE expires_at < ?`), millis(d.now())); err != nil {
		return fmt.Errorf("store: revoke session: %w", err)
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO revoked_sessions (session_id, user_id, expires_at, revoked_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (session_id) DO NOTHING`), sessionID, userID, millis(expiresAt), millis(d.now())); err != nil {
		return fmt.Errorf("store: revoke session: %w", err)
	}
	return tx.Commit()
}

// SessionRevoked implements the feature stores.
func (d *DB) SessionRevoked(ctx context.Context, sessionID string) (bool, error) {
	var one int
	err := d.db.QueryRowContext(ctx, d.q(`SELECT 1 FROM revoked_sessions WHERE session_id = ?`), sessionID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: session revoked: %w", err)
	}
	return true, nil
}

// maxSessionChanges bounds one SessionChangesSince answer per kind.
const maxSessionChanges = 10000

// SessionChangesSince implements proxy.SessionFeed: the sessions revoked
// the users updated and the contacts reported changed at or after since (by the clocks of the replicas
// that wrote them), at most maxSessionChanges of each, newest first.
func (d *DB) SessionChangesSince(ctx context.Context, since time.Time) (authz.SessionChanges, error) {
	var ch authz.SessionChanges
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT session_id, expires_at FROM revoked_sessions
		WHERE revoked_at >= ? ORDER BY revoked_at DESC LIMIT ?`), millis(since), maxSessionChanges+1)
	if err != nil {
		return ch, fmt.Errorf("store: session changes: %w", err)
	}
	for rows.Next() {
		var r authz.RevokedSession
		var exp int64
		if err := rows.Scan(&r.ID, &exp); err != nil {
			rows.Close()
			return ch, fmt.Errorf("store: session changes: %w", err)
		}
		r.ExpiresAt = time.UnixMilli(exp)
		ch.Revoked = append(ch.Revoked, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ch, fmt.Errorf("store: session changes: %w", err)
	}
	rows, err = d.db.QueryContext(ctx, d.q(`SELECT id, updated_at FROM users
		WHERE updated_at >= ? ORDER BY updated_at DESC LIMIT ?`), millis(since), maxSessionChanges+1)
	if err != nil {
		return ch, fmt.Errorf("store: session changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u authz.UserChange
		var at int64
		if err := rows.Scan(&u.UserID, &at); err != nil {
			return ch, fmt.Errorf("store: session changes: %w", err)
		}
		u.At = time.UnixMilli(at)
		ch.Users = append(ch.Users, u)
	}
	if err := rows.Err(); err != nil {
		return ch, fmt.Errorf("store: session changes: %w", err)
	}
	if ch.Contacts, err = d.contactChangesSince(ctx, since, maxSessionChanges+1); err != nil {
		return ch, fmt.Errorf("store: session changes: %w", err)
	}
	if len(ch.Revoked) > maxSessionChanges || len(ch.Users) > maxSessionChanges || len(ch.Contacts) > maxSessionChanges {
		ch.Truncated = true
		ch.Revoked = ch.Revoked[:min(len(ch.Revoked), maxSessionChanges)]
		ch.Users = ch.Users[:min(len(ch.Users), maxSessionChanges)]
		ch.Contacts = ch.Contacts[:min(len(ch.Contacts), maxSessionChanges)]
	}
	return ch, nil
}
