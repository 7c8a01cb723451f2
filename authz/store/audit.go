package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

// AppendAudit implements the feature stores.
func (d *DB) AppendAudit(ctx context.Context, e *audit.Event) error {
	if e.Time.IsZero() {
		e.Time = d.now()
	}
	e.Time = fromMillis(millis(e.Time))
	err := d.db.QueryRowContext(ctx, d.q(`INSERT INTO audit_events (at, type, actor, user_id, client_addr, detail)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`),
		millis(e.Time), e.Type, e.Actor, e.UserID, e.ClientAddr, e.Detail).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("store: append audit: %w", mapErr(err))
	}
	return nil
}

// ListAudit implements the feature stores. Since and Until compare at
// millisecond precision, the precision the table keeps.
func (d *DB) ListAudit(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	var where []string
	var args []any
	if f.UserID != "" {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	if f.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, f.Actor)
	}
	if f.Type != "" {
		where = append(where, "type = ?")
		args = append(args, f.Type)
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, millis(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "at < ?")
		args = append(args, millis(f.Until))
	}
	if f.Before > 0 {
		where = append(where, "id < ?")
		args = append(args, f.Before)
	}
	query := "SELECT id, at, type, actor, user_id, client_addr, detail FROM audit_events"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, authz.EffectiveLimit(f.Limit))
	rows, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Type, &e.Actor, &e.UserID, &e.ClientAddr, &e.Detail); err != nil {
			return nil, fmt.Errorf("store: list audit: %w", err)
		}
		e.Time = fromMillis(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	return out, nil
}
