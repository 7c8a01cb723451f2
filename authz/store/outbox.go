package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/crmgate/crmgate/authz/outbox"
)

// Enqueue adds events to the outbox on their own, outside any user change.
// Each event gets its ID and, when zero, CreatedAt from the store's clock.
func (d *DB) Enqueue(ctx context.Context, events ...outbox.Event) error {
	return d.inTx(ctx, "enqueue", func(tx *sql.Tx) error { return d.enqueue(ctx, tx, "", events) })
}

// enqueue inserts events in tx; events with an empty UserID get userID.
// Nothing is checked here: the table's constraints refuse an empty kind
// or type, which rolls back the whole transaction.
func (d *DB) enqueue(ctx context.Context, tx *sql.Tx, userID string, events []outbox.Event) error {
	now := d.now()
	for _, e := range events {
		if e.UserID == "" {
			e.UserID = userID
		}
		created := e.CreatedAt
		if created.IsZero() {
			created = now
		}
		next := e.NextAttemptAt
		if next.IsZero() {
			next = created
		}
		payload := string(e.Payload)
		if payload == "" {
			payload = "{}"
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO outbox (kind, type, user_id, payload, created_at, attempts, next_attempt_at)
			VALUES (?, ?, ?, ?, ?, 0, ?)`), e.Kind, e.Type, e.UserID, payload, millis(created), millis(next)); err != nil {
			return fmt.Errorf("store: enqueue %s %s: %w", e.Kind, e.Type, err)
		}
	}
	return nil
}

// outboxColumns are the columns scanOutbox reads, in its order.
const outboxColumns = `id, kind, type, user_id, payload, created_at, attempts, next_attempt_at, locked_until, delivered_at, last_error, failed_at`

func scanOutbox(r rowScanner) (outbox.Event, error) {
	var (
		e                   outbox.Event
		payload             string
		created, next       int64
		locked, deliveredAt sql.NullInt64
		failedAt            sql.NullInt64
	)
	if err := r.Scan(&e.ID, &e.Kind, &e.Type, &e.UserID, &payload, &created, &e.Attempts, &next,
		&locked, &deliveredAt, &e.LastError, &failedAt); err != nil {
		return e, err
	}
	e.Payload = []byte(payload)
	e.CreatedAt, e.NextAttemptAt = fromMillis(created), fromMillis(next)
	if locked.Valid {
		e.LockedUntil = fromMillis(locked.Int64)
	}
	if deliveredAt.Valid {
		e.DeliveredAt = fromMillis(deliveredAt.Int64)
	}
	if failedAt.Valid {
		e.FailedAt = fromMillis(failedAt.Int64)
	}
	return e, nil
}

// ClaimOutbox implements outbox.Store with one UPDATE over a
// subquery that picks the events. On SQLite the statement holds the
// database's single write lock. On PostgreSQL FOR UPDATE SKIP LOCKED lets
// concurrent claimers pass over rows another one is taking, and the outer
// WHERE repeats the conditions so that a row changed by a claimer that
// committed first is re-checked and dropped.
//
// An event is claimable only while no earlier event of the same user is
// pending, which delivers each user's events in order, across replicas.
func (d *DB) ClaimOutbox(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]outbox.Event, error) {
	if limit <= 0 || lease <= 0 {
		return nil, errors.New("store: claim outbox: limit and lease must be positive")
	}
	nowMs := now.UnixMilli()
	until := now.Add(lease).UnixMilli()
	due := `SELECT o.id FROM outbox o
			WHERE o.delivered_at IS NULL AND o.next_attempt_at <= ?
				AND (o.locked_until IS NULL OR o.locked_until < ?)
				AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.user_id = o.user_id AND p.delivered_at IS NULL AND p.id < o.id)
			ORDER BY o.id LIMIT ?`
	which := "id IN (" + due + ")"
	if d.dialect == Postgres {
		// ARRAY(...) is evaluated once. With "id IN (subquery LIMIT n)"
		// PostgreSQL may plan a semi join that runs the subquery again for
		// each outer row (SKIP LOCKED makes every run see other rows), and
		// so lease every due event under one claim (testOutboxClaimLimit).
		which = "id = ANY(ARRAY(" + due + " FOR UPDATE OF o SKIP LOCKED))"
	}
	rows, err := d.db.QueryContext(ctx, d.q(`UPDATE outbox SET locked_until = ?, attempts = attempts + 1
		WHERE `+which+`
		AND delivered_at IS NULL AND (locked_until IS NULL OR locked_until < ?)
		RETURNING `+outboxColumns), until, nowMs, nowMs, limit, nowMs)
	if err != nil {
		return nil, fmt.Errorf("store: claim outbox: %w", err)
	}
	defer rows.Close()
	var out []outbox.Event
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: claim outbox: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: claim outbox: %w", err)
	}
	// RETURNING gives no order.
	slices.SortFunc(out, func(a, b outbox.Event) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// CompleteOutbox implements outbox.Store.
func (d *DB) CompleteOutbox(ctx context.Context, e outbox.Event, at time.Time) error {
	if _, err := d.db.ExecContext(ctx, d.q(`UPDATE outbox SET delivered_at = ?, locked_until = NULL, last_error = ''
		WHERE id = ? AND delivered_at IS NULL`), millis(at), e.ID); err != nil {
		return fmt.Errorf("store: complete outbox event %d: %w", e.ID, err)
	}
	return nil
}

// RetryOutbox implements outbox.Store. The claim is recognised by its
// lease end: every new claim of a row sets a later one.
func (d *DB) RetryOutbox(ctx context.Context, e outbox.Event, next time.Time, lastErr string) error {
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE outbox SET locked_until = NULL, next_attempt_at = ?, last_error = ?
		WHERE id = ? AND locked_until = ? AND delivered_at IS NULL`), millis(next), lastErr, e.ID, millis(e.LockedUntil))
	if err != nil {
		return fmt.Errorf("store: retry outbox event %d: %w", e.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: retry outbox event %d: %w", e.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("store: retry outbox event %d: %w", e.ID, outbox.ErrLeaseLost)
	}
	return nil
}

// FailOutbox implements outbox.Store. Like RetryOutbox it recognises the
// claim by its lease end.
func (d *DB) FailOutbox(ctx context.Context, e outbox.Event, at time.Time, lastErr string) error {
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE outbox SET locked_until = NULL, delivered_at = ?, failed_at = ?, last_error = ?
		WHERE id = ? AND locked_until = ? AND delivered_at IS NULL`), millis(at), millis(at), lastErr, e.ID, millis(e.LockedUntil))
	if err != nil {
		return fmt.Errorf("store: fail outbox event %d: %w", e.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: fail outbox event %d: %w", e.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("store: fail outbox event %d: %w", e.ID, outbox.ErrLeaseLost)
	}
	return nil
}

// OutboxStats implements outbox.Store.
func (d *DB) OutboxStats(ctx context.Context) (outbox.Stats, error) {
	var n int
	var oldest sql.NullInt64
	if err := d.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL`).
		Scan(&n, &oldest); err != nil {
		return outbox.Stats{}, fmt.Errorf("store: outbox stats: %w", err)
	}
	st := outbox.Stats{Pending: n}
	if oldest.Valid {
		st.OldestCreatedAt = fromMillis(oldest.Int64)
	}
	return st, nil
}

// PurgeOutbox implements outbox.Store.
func (d *DB) PurgeOutbox(ctx context.Context, before time.Time) (int64, error) {
	res, err := d.db.ExecContext(ctx, d.q(`DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?`), millis(before))
	if err != nil {
		return 0, fmt.Errorf("store: purge outbox: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: purge outbox: %w", err)
	}
	return n, nil
}

// OutboxEvents returns every event about userID, delivered or not, in ID
// order; an empty userID returns every event. It serves inspection and
// tests, not delivery.
func (d *DB) OutboxEvents(ctx context.Context, userID string) ([]outbox.Event, error) {
	query, args := `SELECT `+outboxColumns+` FROM outbox ORDER BY id`, []any(nil)
	if userID != "" {
		query, args = `SELECT `+outboxColumns+` FROM outbox WHERE user_id = ? ORDER BY id`, []any{userID}
	}
	rows, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: outbox events: %w", err)
	}
	defer rows.Close()
	var out []outbox.Event
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: outbox events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: outbox events: %w", err)
	}
	return out, nil
}
