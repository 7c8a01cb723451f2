package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz/throttle"
)

// takeThrottleSQL is throttle.Store.TakeThrottle's rule in one upsert:
// the INSERT is a fresh bucket's allowed event (a burst is at least 1); on
// an existing row the CASEs apply the rule to t = max(min(tat, now +
// tolerance + interval), now). The min is the clamp of a TAT written by a
// clock ahead of this one (see throttle.Store); a refusal stores the
// clamped TAT. Each ? is its own parameter on both dialects, so
// TakeThrottle repeats the values in the order they appear. Both CASEs
// read the row as it was (SET expressions see the old values). GREATEST and LEAST are PostgreSQL's
// names for SQLite's scalar max and min.
//
// On PostgreSQL INSERT ... ON CONFLICT DO UPDATE locks the conflicting
// row, and a concurrent upsert of it waits and then updates the row as
// the first left it (https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT:
// "atomic INSERT or UPDATE outcome"); on SQLite the statement runs under
// the database's single write lock. Either way no two events read the same
// TAT, on any replica. refusals is returned instead of the old row, which
// neither dialect returns from an upsert: 0 means allowed, 1 the first
// refusal of a run.
const takeThrottleSQL = `INSERT INTO throttles (limiter, key_hash, tat, refusals) VALUES (?, ?, CAST(? AS BIGINT), 0)
	ON CONFLICT (limiter, key_hash) DO UPDATE SET
	tat = CASE WHEN ` + throttleT + ` - CAST(? AS BIGINT) <= CAST(? AS BIGINT)
		THEN ` + throttleT + ` + CAST(? AS BIGINT) ELSE ` + throttleClamped + ` END,
	refusals = CASE WHEN ` + throttleT + ` - CAST(? AS BIGINT) <= CAST(? AS BIGINT)
		THEN 0 ELSE throttles.refusals + 1 END
	RETURNING tat, refusals`

// throttleClamped is the stored TAT, no later than the limit parameter;
// throttleT is max(throttleClamped, the now parameter).
const (
	throttleClamped = `LEAST(throttles.tat, CAST(? AS BIGINT))`
	throttleT       = `GREATEST(` + throttleClamped + `, CAST(? AS BIGINT))`
)

// Both dialects' forms of takeThrottleSQL, rebound once.
var (
	takeThrottleSQLite   = strings.NewReplacer("GREATEST(", "max(", "LEAST(", "min(").Replace(takeThrottleSQL)
	takeThrottlePostgres = rebind(Postgres, takeThrottleSQL)
)

// TakeThrottle implements throttle.Store with one upsert (see
// takeThrottleSQL). On PostgreSQL it runs in a transaction with
// synchronous_commit off: the commit does not wait for the WAL flush
// (about 1.4 ms on the test machine, a third of that without), and a
// server crash can lose only the last fraction of a second of bucket
// updates, never leave a row inconsistent
// (https://www.postgresql.org/docs/current/wal-async-commit.html). A
// throttle that forgets a few events after a database crash is an
// acceptable price for not queueing every form submission, and every
// refusal of a flood, behind a disk flush.
func (d *DB) TakeThrottle(ctx context.Context, limiter throttle.Name, key string, now time.Time, interval, tolerance time.Duration) (throttle.Bucket, error) {
	if limiter == "" || len(key) != 64 || interval <= 0 || tolerance < 0 {
		return throttle.Bucket{}, errors.New("store: take throttle: a limiter, a 64-character key hash, a positive interval and a tolerance not negative are required")
	}
	n, iv, tol := now.UnixMicro(), interval.Microseconds(), tolerance.Microseconds()
	if iv < 1 {
		iv = 1
	}
	q := takeThrottleSQLite
	if d.dialect == Postgres {
		q = takeThrottlePostgres
	}
	var b throttle.Bucket
	var tat int64
	limit := n + tol + iv
	args := []any{string(limiter), key, n + iv,
		limit, n, n, tol, limit, n, iv, limit, // tat
		limit, n, n, tol, // refusals
	}
	if d.dialect != Postgres {
		if err := d.db.QueryRowContext(ctx, q, args...).Scan(&tat, &b.Refusals); err != nil {
			return throttle.Bucket{}, fmt.Errorf("store: take throttle: %w", err)
		}
		b.TAT = time.UnixMicro(tat).UTC()
		return b, nil
	}
	err := d.inTx(ctx, "take throttle", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
			return fmt.Errorf("store: take throttle: %w", err)
		}
		if err := tx.QueryRowContext(ctx, q, args...).Scan(&tat, &b.Refusals); err != nil {
			return fmt.Errorf("store: take throttle: %w", err)
		}
		return nil
	})
	if err != nil {
		return throttle.Bucket{}, err
	}
	b.TAT = time.UnixMicro(tat).UTC()
	return b, nil
}

// PeekThrottle implements throttle.Store.
func (d *DB) PeekThrottle(ctx context.Context, limiter throttle.Name, key string) (throttle.Bucket, error) {
	var b throttle.Bucket
	var tat int64
	err := d.db.QueryRowContext(ctx, d.q(`SELECT tat, refusals FROM throttles WHERE limiter = ? AND key_hash = ?`),
		string(limiter), key).Scan(&tat, &b.Refusals)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return throttle.Bucket{}, nil
	case err != nil:
		return throttle.Bucket{}, fmt.Errorf("store: peek throttle: %w", err)
	}
	b.TAT = time.UnixMicro(tat).UTC()
	return b, nil
}

// SweepThrottles implements throttle.Store.
func (d *DB) SweepThrottles(ctx context.Context, before time.Time) (int64, error) {
	res, err := d.db.ExecContext(ctx, d.q(`DELETE FROM throttles WHERE tat <= ?`), before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("store: sweep throttles: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: sweep throttles: %w", err)
	}
	return n, nil
}
