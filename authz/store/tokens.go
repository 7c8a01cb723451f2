package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/tokens"
)

// tokenColumns are the columns scanToken reads, in its order.
const tokenColumns = `id, purpose, user_id, secret_hash, payload, created_at, expires_at, used_at, revoked_at`

func scanToken(r rowScanner) (*tokens.Token, error) {
	var (
		t             tokens.Token
		purpose       string
		userID        sql.NullString
		payload       string
		created, exp  int64
		used, revoked sql.NullInt64
	)
	if err := r.Scan(&t.ID, &purpose, &userID, &t.SecretHash, &payload, &created, &exp, &used, &revoked); err != nil {
		return nil, mapErr(err)
	}
	t.Purpose, t.UserID = tokens.Purpose(purpose), userID.String
	if payload != "" {
		t.Payload = []byte(payload)
	}
	t.CreatedAt, t.ExpiresAt = fromMillis(created), fromMillis(exp)
	t.UsedAt, t.RevokedAt = fromNullMillis(used), fromNullMillis(revoked)
	return &t, nil
}

// IssueToken implements tokens.Store. The user's row is read first, FOR
// UPDATE on PostgreSQL, which checks that the user exists and serialises
// concurrent issues for one user, so that the cap holds there too; on
// SQLite the immediate transaction holds the single write lock.
func (d *DB) IssueToken(ctx context.Context, t *tokens.Token, keep int, events ...outbox.Event) error {
	if t.Purpose == "" || t.SecretHash == "" || t.ExpiresAt.IsZero() {
		return errors.New("store: issue token: purpose, secret hash and expiry are required")
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = d.now()
	}
	t.CreatedAt, t.ExpiresAt = fromMillis(millis(t.CreatedAt)), fromMillis(millis(t.ExpiresAt))
	return d.inTx(ctx, "issue token", func(tx *sql.Tx) error { return d.insertToken(ctx, tx, t, keep, events...) })
}

// insertToken is IssueToken inside tx.
func (d *DB) insertToken(ctx context.Context, tx *sql.Tx, t *tokens.Token, keep int, events ...outbox.Event) error {
	userID := sql.NullString{String: t.UserID, Valid: t.UserID != ""}
	if userID.Valid {
		lock := ""
		if d.dialect == Postgres {
			lock = " FOR UPDATE"
		}
		var one int
		if err := tx.QueryRowContext(ctx, d.q(`SELECT 1 FROM users WHERE id = ?`+lock), t.UserID).Scan(&one); err != nil {
			return fmt.Errorf("store: issue token: user: %w", mapErr(err))
		}
	}
	err := tx.QueryRowContext(ctx, d.q(`INSERT INTO tokens (purpose, user_id, secret_hash, payload, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`), string(t.Purpose), userID, t.SecretHash, string(t.Payload),
		millis(t.CreatedAt), millis(t.ExpiresAt)).Scan(&t.ID)
	if err != nil {
		if isForeignKeyViolation(err) {
			return fmt.Errorf("store: issue token: user: %w", authz.ErrNotFound)
		}
		return fmt.Errorf("store: issue token: %w", mapErr(err))
	}
	if keep > 0 && userID.Valid {
		at := millis(t.CreatedAt)
		if _, err := tx.ExecContext(ctx, d.q(`UPDATE tokens SET revoked_at = ?
			WHERE user_id = ? AND purpose = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
			AND id NOT IN (SELECT id FROM tokens
				WHERE user_id = ? AND purpose = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
				ORDER BY id DESC LIMIT ?)`),
			at, t.UserID, string(t.Purpose), at, t.UserID, string(t.Purpose), at, keep); err != nil {
			return fmt.Errorf("store: issue token: revoke older: %w", err)
		}
	}
	return d.enqueue(ctx, tx, t.UserID, events)
}

// ConsumeToken implements tokens.Store with one conditional UPDATE. On
// PostgreSQL a second concurrent UPDATE of the row waits for the first to
// commit and then re-evaluates its WHERE clause against the new row
// (https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED),
// where used_at is set, so it changes nothing; on SQLite writers take turns.
// Either way exactly one caller gets the row back.
func (d *DB) ConsumeToken(ctx context.Context, purpose tokens.Purpose, hash string, at time.Time) (*tokens.Token, error) {
	t, err := scanToken(d.db.QueryRowContext(ctx, d.q(`UPDATE tokens SET used_at = ?
		WHERE secret_hash = ? AND purpose = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
		RETURNING `+tokenColumns), millis(at), hash, string(purpose), millis(at)))
	if err != nil {
		return nil, fmt.Errorf("store: consume token: %w", err)
	}
	return t, nil
}

// TokenByHash implements tokens.Store.
func (d *DB) TokenByHash(ctx context.Context, hash string) (*tokens.Token, error) {
	t, err := scanToken(d.db.QueryRowContext(ctx, d.q(`SELECT `+tokenColumns+` FROM tokens WHERE secret_hash = ?`), hash))
	if err != nil {
		return nil, fmt.Errorf("store: token: %w", err)
	}
	return t, nil
}

// RevokeTokens implements tokens.Store. Expired tokens are left as they
// are: they cannot be used anyway, and the sweep removes them.
func (d *DB) RevokeTokens(ctx context.Context, userID string, purpose tokens.Purpose, at time.Time) (int64, error) {
	if userID == "" {
		return 0, errors.New("store: revoke tokens: a user id is required")
	}
	q := `UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?`
	args := []any{millis(at), userID, millis(at)}
	if purpose != "" {
		q += ` AND purpose = ?`
		args = append(args, string(purpose))
	}
	res, err := d.db.ExecContext(ctx, d.q(q), args...)
	if err != nil {
		return 0, fmt.Errorf("store: revoke tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: revoke tokens: %w", err)
	}
	return n, nil
}

// SweepTokens implements tokens.Store.
func (d *DB) SweepTokens(ctx context.Context, before time.Time) (int64, error) {
	b := millis(before)
	res, err := d.db.ExecContext(ctx, d.q(`DELETE FROM tokens WHERE expires_at <= ? OR used_at <= ? OR revoked_at <= ?`), b, b, b)
	if err != nil {
		return 0, fmt.Errorf("store: sweep tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: sweep tokens: %w", err)
	}
	return n, nil
}

// isForeignKeyViolation reports whether err is a foreign key violation of
// either dialect.
func isForeignKeyViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503" // foreign_key_violation
}
