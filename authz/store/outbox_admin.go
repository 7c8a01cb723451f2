package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
)

// The outbox administration (outbox.AdminStore). Failed events are the
// rows with failed_at set; they also have delivered_at set, so the worker
// never claims them and the purge deletes them after the retention.

var _ outbox.AdminStore = (*DB)(nil)

// OutboxBacklog implements outbox.AdminStore with one grouped scan of the
// pending and failed rows.
func (d *DB) OutboxBacklog(ctx context.Context) ([]outbox.KindBacklog, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT kind,
			SUM(CASE WHEN delivered_at IS NULL THEN 1 ELSE 0 END),
			SUM(CASE WHEN delivered_at IS NULL AND last_error <> '' THEN 1 ELSE 0 END),
			MIN(CASE WHEN delivered_at IS NULL THEN created_at END),
			SUM(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END)
		FROM outbox WHERE delivered_at IS NULL OR failed_at IS NOT NULL
		GROUP BY kind ORDER BY kind`)
	if err != nil {
		return nil, fmt.Errorf("store: outbox backlog: %w", err)
	}
	defer rows.Close()
	var out []outbox.KindBacklog
	for rows.Next() {
		var b outbox.KindBacklog
		var pending, retrying, failed int64
		var oldest sql.NullInt64
		if err := rows.Scan(&b.Kind, &pending, &retrying, &oldest, &failed); err != nil {
			return nil, fmt.Errorf("store: outbox backlog: %w", err)
		}
		b.Pending, b.Retrying, b.Failed = int(pending), int(retrying), int(failed)
		if oldest.Valid {
			b.OldestPending = fromMillis(oldest.Int64)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: outbox backlog: %w", err)
	}
	return out, nil
}

// FailedOutbox implements outbox.AdminStore. A limit above
// authz.MaxListLimit is reduced to it.
func (d *DB) FailedOutbox(ctx context.Context, kind string, after int64, limit int) ([]outbox.Event, error) {
	limit = authz.EffectiveLimit(limit)
	query := `SELECT ` + outboxColumns + ` FROM outbox WHERE failed_at IS NOT NULL AND id > ? ORDER BY id LIMIT ?`
	args := []any{after, limit}
	if kind != "" {
		query = `SELECT ` + outboxColumns + ` FROM outbox WHERE failed_at IS NOT NULL AND kind = ? AND id > ? ORDER BY id LIMIT ?`
		args = []any{kind, after, limit}
	}
	rows, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: failed outbox events: %w", err)
	}
	defer rows.Close()
	var out []outbox.Event
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: failed outbox events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: failed outbox events: %w", err)
	}
	return out, nil
}

// RequeueOutbox implements outbox.AdminStore in one transaction that
// reads the row as it was and locks it (SQLite's immediate transaction,
// PostgreSQL's FOR UPDATE), then updates it only if it is still failed, so
// two operators retrying one event requeue it once and the second gets a
// *outbox.NotFailedError (pending).
func (d *DB) RequeueOutbox(ctx context.Context, id int64, now time.Time) (outbox.Event, error) {
	var before outbox.Event
	err := d.inTx(ctx, "requeue outbox event", func(tx *sql.Tx) error {
		e, err := failedEvent(ctx, d, tx, id)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, d.q(`UPDATE outbox SET delivered_at = NULL, failed_at = NULL, locked_until = NULL,
				attempts = 0, next_attempt_at = ?
			WHERE id = ? AND failed_at IS NOT NULL`), millis(now), id)
		if err != nil {
			return fmt.Errorf("store: requeue outbox event %d: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: requeue outbox event %d: %w", id, err)
		} else if n == 0 {
			return notFailed(ctx, d, tx, id)
		}
		before = e
		return nil
	})
	return before, err
}

// DeleteFailedOutbox implements outbox.AdminStore, like RequeueOutbox.
func (d *DB) DeleteFailedOutbox(ctx context.Context, id int64) (outbox.Event, error) {
	var before outbox.Event
	err := d.inTx(ctx, "drop outbox event", func(tx *sql.Tx) error {
		e, err := failedEvent(ctx, d, tx, id)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, d.q(`DELETE FROM outbox WHERE id = ? AND failed_at IS NOT NULL`), id)
		if err != nil {
			return fmt.Errorf("store: drop outbox event %d: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: drop outbox event %d: %w", id, err)
		} else if n == 0 {
			return notFailed(ctx, d, tx, id)
		}
		before = e
		return nil
	})
	return before, err
}

// RequeueFailedOutboxKind implements outbox.AdminStore.
func (d *DB) RequeueFailedOutboxKind(ctx context.Context, kind string, now time.Time) (int, error) {
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE outbox SET delivered_at = NULL, failed_at = NULL, locked_until = NULL,
			attempts = 0, next_attempt_at = ?
		WHERE kind = ? AND failed_at IS NOT NULL`), millis(now), kind)
	if err != nil {
		return 0, fmt.Errorf("store: requeue failed outbox events of %s: %w", kind, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: requeue failed outbox events of %s: %w", kind, err)
	}
	return int(n), nil
}

// DeleteFailedOutboxKind implements outbox.AdminStore.
func (d *DB) DeleteFailedOutboxKind(ctx context.Context, kind string) (int, error) {
	res, err := d.db.ExecContext(ctx, d.q(`DELETE FROM outbox WHERE kind = ? AND failed_at IS NOT NULL`), kind)
	if err != nil {
		return 0, fmt.Errorf("store: drop failed outbox events of %s: %w", kind, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: drop failed outbox events of %s: %w", kind, err)
	}
	return int(n), nil
}

// failedEvent reads and locks event id in tx, or returns the
// *outbox.NotFailedError of a row that is not failed.
func failedEvent(ctx context.Context, d *DB, tx *sql.Tx, id int64) (outbox.Event, error) {
	lock := ""
	if d.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	e, err := scanOutbox(tx.QueryRowContext(ctx, d.q(`SELECT `+outboxColumns+` FROM outbox WHERE id = ?`+lock), id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return e, &outbox.NotFailedError{ID: id, State: outbox.StateUnknown}
	case err != nil:
		return e, fmt.Errorf("store: outbox event %d: %w", id, err)
	case e.FailedAt.IsZero() && e.DeliveredAt.IsZero():
		return e, &outbox.NotFailedError{ID: id, State: outbox.StatePending}
	case e.FailedAt.IsZero():
		return e, &outbox.NotFailedError{ID: id, State: outbox.StateDelivered}
	}
	return e, nil
}

// notFailed is the error for a row that is no longer failed at the write
// of a transaction; the lock taken by failedEvent should make it
// unreachable.
func notFailed(ctx context.Context, d *DB, tx *sql.Tx, id int64) error {
	_, err := failedEvent(ctx, d, tx, id)
	if err == nil {
		return fmt.Errorf("store: outbox event %d changed during the transaction", id)
	}
	return err
}
