package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz/apikeys"
)

// apiKeyColumns are the columns scanAPIKey reads, in its order.
const apiKeyColumns = `id, name, secret_hash, scopes, created_by, created_at, last_used_at, expires_at, revoked_at`

func scanAPIKey(r rowScanner) (*apikeys.Key, error) {
	var (
		k                          apikeys.Key
		scopes                     string
		created                    int64
		lastUsed, expires, revoked sql.NullInt64
	)
	if err := r.Scan(&k.ID, &k.Name, &k.SecretHash, &scopes, &k.CreatedBy, &created, &lastUsed, &expires, &revoked); err != nil {
		return nil, mapErr(err)
	}
	k.CreatedAt = fromMillis(created)
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = fromNullMillis(lastUsed), fromNullMillis(expires), fromNullMillis(revoked)
	k.Scopes = []string{}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, fmt.Errorf("store: API key %s: scopes: %w", k.ID, err)
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	return &k, nil
}

// nullMillis converts a time to a nullable stored unix milliseconds value;
// the zero time is NULL.
func nullMillis(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: millis(t), Valid: !t.IsZero()}
}

// fromNullMillis is the inverse of nullMillis.
func fromNullMillis(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMillis(n.Int64)
}

// CreateAPIKey implements the feature stores.
func (d *DB) CreateAPIKey(ctx context.Context, k *apikeys.Key) error {
	if k.ID == "" || k.SecretHash == "" {
		return errors.New("store: create API key: id and secret hash are required")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = d.now()
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	scopes, err := json.Marshal(k.Scopes)
	if err != nil {
		return fmt.Errorf("store: create API key: scopes: %w", err)
	}
	k.CreatedAt, k.LastUsedAt = fromMillis(millis(k.CreatedAt)), fromMillis(millis(k.LastUsedAt))
	k.ExpiresAt, k.RevokedAt = fromMillis(millis(k.ExpiresAt)), fromMillis(millis(k.RevokedAt))
	_, err = d.db.ExecContext(ctx, d.q(`INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.Name, k.SecretHash, string(scopes), k.CreatedBy, millis(k.CreatedAt),
		nullMillis(k.LastUsedAt), nullMillis(k.ExpiresAt), nullMillis(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("store: create API key: %w", mapErr(err))
	}
	return nil
}

// APIKeyByID implements the feature stores.
func (d *DB) APIKeyByID(ctx context.Context, id string) (*apikeys.Key, error) {
	k, err := scanAPIKey(d.db.QueryRowContext(ctx, d.q(`SELECT `+apiKeyColumns+` FROM api_keys WHERE id = ?`), id))
	if err != nil {
		return nil, fmt.Errorf("store: API key: %w", err)
	}
	return k, nil
}

// ListAPIKeys implements the feature stores.
func (d *DB) ListAPIKeys(ctx context.Context) ([]apikeys.Key, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: list API keys: %w", err)
	}
	defer rows.Close()
	out := []apikeys.Key{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list API keys: %w", err)
		}
		out = append(out, *k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list API keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey implements the feature stores. The first revocation's time is kept.
func (d *DB) RevokeAPIKey(ctx context.Context, id string, at time.Time) (bool, error) {
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`), millis(at), id)
	if err != nil {
		return false, fmt.Errorf("store: revoke API key: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: revoke API key: %w", err)
	}
	if n > 0 {
		return true, nil
	}
	var one int
	if err := d.db.QueryRowContext(ctx, d.q(`SELECT 1 FROM api_keys WHERE id = ?`), id).Scan(&one); err != nil {
		return false, fmt.Errorf("store: revoke API key: %w", mapErr(err))
	}
	return false, nil
}

// TouchAPIKey implements the feature stores with one conditional UPDATE, so that
// concurrent requests on several replicas write the row about once per
// minInterval rather than once each.
func (d *DB) TouchAPIKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) error {
	_, err := d.db.ExecContext(ctx, d.q(`UPDATE api_keys SET last_used_at = ?
		WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)`), millis(at), id, millis(at.Add(-minInterval)))
	if err != nil {
		return fmt.Errorf("store: touch API key: %w", err)
	}
	return nil
}
