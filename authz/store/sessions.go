package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
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
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO revoked_sessions (session_id, user_id, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (session_id) DO NOTHING`), sessionID, userID, millis(expiresAt)); err != nil {
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
