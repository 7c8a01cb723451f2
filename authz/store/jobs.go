package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/jobs"
)

var _ jobs.Store = (*DB)(nil)

// jobItemsPerInsert is how many items one INSERT of CreateJob carries
// (three parameters each, far below either dialect's parameter limit).
const jobItemsPerInsert = 500

// jobColumns are the columns scanJob reads, in its order.
const jobColumns = `id, action, label, params, actor, status, total, succeeded, failed, cancelled,
	created_at, started_at, finished_at, cancel_requested, cancelled_by, lease_until`

func scanJob(r rowScanner) (*jobs.Job, error) {
	var (
		j                          jobs.Job
		params, status             string
		created                    int64
		started, finished, leaseTo sql.NullInt64
		cancel                     int
	)
	if err := r.Scan(&j.ID, &j.Action, &j.Label, &params, &j.Actor, &status, &j.Total, &j.Succeeded, &j.Failed,
		&j.Cancelled, &created, &started, &finished, &cancel, &j.CancelledBy, &leaseTo); err != nil {
		return nil, err
	}
	j.Params, j.Status, j.CancelRequested = []byte(params), jobs.Status(status), cancel != 0
	j.CreatedAt = fromMillis(created)
	j.StartedAt, j.FinishedAt, j.LeaseUntil = fromMillis(started.Int64), fromMillis(finished.Int64), fromMillis(leaseTo.Int64)
	return &j, nil
}

// CreateJob implements jobs.Store: the job and its items in one
// transaction, the items in multi-row INSERTs.
func (d *DB) CreateJob(ctx context.Context, j *jobs.Job, targets []string) error {
	if j.ID == "" || len(targets) == 0 {
		return errors.New("store: create job: an id and at least one target are required")
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = d.now()
	}
	j.CreatedAt = fromMillis(millis(j.CreatedAt))
	j.Status, j.Total = jobs.StatusQueued, len(targets)
	j.Succeeded, j.Failed, j.Cancelled = 0, 0, 0
	params := string(j.Params)
	if params == "" {
		params = "{}"
	}
	return mapErr(d.inTx(ctx, "create job", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO jobs (id, action, label, params, actor, status, total, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), j.ID, j.Action, j.Label, params, j.Actor, string(j.Status), j.Total,
			millis(j.CreatedAt)); err != nil {
			return fmt.Errorf("store: create job: %w", err)
		}
		for start := 0; start < len(targets); start += jobItemsPerInsert {
			end := min(start+jobItemsPerInsert, len(targets))
			var b strings.Builder
			b.WriteString(`INSERT INTO job_items (job_id, seq, target) VALUES `)
			args := make([]any, 0, 3*(end-start))
			for i := start; i < end; i++ {
				if i > start {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?)")
				args = append(args, j.ID, i+1, targets[i])
			}
			if _, err := tx.ExecContext(ctx, d.q(b.String()), args...); err != nil {
				return fmt.Errorf("store: create job items: %w", err)
			}
		}
		return nil
	}))
}

// Job implements jobs.Store.
func (d *DB) Job(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := d.jobIn(ctx, d.db, id)
	if err != nil {
		return nil, fmt.Errorf("store: job %s: %w", id, err)
	}
	return j, nil
}

// jobIn reads job id through q (the DB or a transaction).
func (d *DB) jobIn(ctx context.Context, q querier, id string) (*jobs.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, d.q(`SELECT `+jobColumns+` FROM jobs WHERE id = ?`), id))
	return j, mapErr(err)
}

// ListJobs implements jobs.Store.
func (d *DB) ListJobs(ctx context.Context, f jobs.Filter) ([]jobs.Job, error) {
	var where []string
	var args []any
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.Active {
		where = append(where, "finished_at IS NULL")
	}
	if f.Before != "" {
		where, args = append(where, "(created_at, id) < (SELECT b.created_at, b.id FROM jobs b WHERE b.id = ?)"), append(args, f.Before)
	}
	query := `SELECT ` + jobColumns + ` FROM jobs`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, authz.EffectiveLimit(f.Limit))
	rows, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: list jobs: %w", err)
	}
	defer rows.Close()
	out := []jobs.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list jobs: %w", err)
		}
		out = append(out, *j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list jobs: %w", err)
	}
	return out, nil
}

// JobItems implements jobs.Store.
func (d *DB) JobItems(ctx context.Context, id string, f jobs.ItemFilter) ([]jobs.Item, error) {
	query := `SELECT job_id, seq, target, status, code, message, finished_at FROM job_items WHERE job_id = ? AND seq > ?`
	args := []any{id, f.After}
	if f.Status != "" {
		query, args = query+" AND status = ?", append(args, string(f.Status))
	}
	query, args = query+" ORDER BY seq LIMIT ?", append(args, authz.EffectiveLimit(f.Limit))
	rows, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: job %s items: %w", id, err)
	}
	defer rows.Close()
	out := []jobs.Item{}
	for rows.Next() {
		var it jobs.Item
		var status string
		var finished sql.NullInt64
		if err := rows.Scan(&it.JobID, &it.Seq, &it.Target, &status, &it.Code, &it.Message, &finished); err != nil {
			return nil, fmt.Errorf("store: job %s items: %w", id, err)
		}
		it.Status, it.FinishedAt = jobs.ItemStatus(status), fromMillis(finished.Int64)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: job %s items: %w", id, err)
	}
	if len(out) == 0 {
		var n int
		if err := d.db.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM jobs WHERE id = ?`), id).Scan(&n); err != nil {
			return nil, fmt.Errorf("store: job %s items: %w", id, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("store: job %s items: %w", id, authz.ErrNotFound)
		}
	}
	return out, nil
}

// CancelJob implements jobs.Store. The first UPDATE takes the job row's
// lock on PostgreSQL (SQLite's immediate transaction holds the whole
// database), so a claim waits for the cancel and then finds the job
// finished or cancel-requested.
func (d *DB) CancelJob(ctx context.Context, id, actor string, at time.Time) (*jobs.Job, error) {
	var out *jobs.Job
	err := d.inTx(ctx, "cancel job", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE jobs SET cancel_requested = 1,
			cancelled_by = CASE WHEN cancel_requested = 1 THEN cancelled_by ELSE ? END
			WHERE id = ? AND finished_at IS NULL`), actor, id)
		if err != nil {
			return fmt.Errorf("store: cancel job %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: cancel job %s: %w", id, err)
		} else if n == 0 {
			if _, err := d.jobIn(ctx, tx, id); err != nil {
				return fmt.Errorf("store: cancel job %s: %w", id, err)
			}
			return fmt.Errorf("store: cancel job %s: %w", id, jobs.ErrFinished)
		}
		j, err := d.jobIn(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("store: cancel job %s: %w", id, err)
		}
		if j.LeaseUntil.IsZero() {
			if j, err = d.finishJob(ctx, tx, j, at); err != nil {
				return fmt.Errorf("store: cancel job %s: %w", id, err)
			}
		}
		out = j
		return nil
	})
	return out, err
}

// finishJob ends job j (read in tx) at at: its pending items become
// cancelled when a cancel was requested (else none may be pending), its
// status follows from the counts, and its lease ends. It returns the job
// after.
func (d *DB) finishJob(ctx context.Context, tx *sql.Tx, j *jobs.Job, at time.Time) (*jobs.Job, error) {
	var n int64
	if j.CancelRequested {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE job_items SET status = ?, finished_at = ? WHERE job_id = ? AND status = ?`),
			string(jobs.ItemCancelled), millis(at), j.ID, string(jobs.ItemPending))
		if err != nil {
			return nil, err
		}
		if n, err = res.RowsAffected(); err != nil {
			return nil, err
		}
	} else {
		var pending int
		if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM job_items WHERE job_id = ? AND status = ?`),
			j.ID, string(jobs.ItemPending)).Scan(&pending); err != nil {
			return nil, err
		}
		if pending > 0 {
			return nil, fmt.Errorf("%d items are still pending and no cancel was requested", pending)
		}
	}
	j.Cancelled += int(n)
	switch {
	case j.Cancelled > 0:
		j.Status = jobs.StatusCancelled
	case j.Failed > 0:
		j.Status = jobs.StatusFinishedWithFailures
	default:
		j.Status = jobs.StatusSucceeded
	}
	j.FinishedAt, j.LeaseUntil = fromMillis(millis(at)), time.Time{}
	if _, err := tx.ExecContext(ctx, d.q(`UPDATE jobs SET cancelled = ?, status = ?, finished_at = ?, claim_token = '', lease_until = NULL
		WHERE id = ?`), j.Cancelled, string(j.Status), millis(at), j.ID); err != nil {
		return nil, err
	}
	return j, nil
}

// ClaimJob implements jobs.Store with one UPDATE over a subquery that
// picks the job, like ClaimOutbox: on SQLite the statement holds the
// database's single write lock; on PostgreSQL FOR UPDATE SKIP LOCKED lets
// concurrent claimers pass over a row another one is taking, and the outer
// WHERE repeats the conditions so that a row changed by a claimer that
// committed first is re-checked and dropped. The subquery is a scalar one
// (id = (...)), which PostgreSQL runs once (an InitPlan): as id IN (...)
// it may become a semi join that runs the LIMIT 1 subquery again for each
// row, locking and claiming every runnable job in one go.
func (d *DB) ClaimJob(ctx context.Context, actions []string, token string, now time.Time, lease time.Duration) (*jobs.Job, error) {
	if token == "" || lease <= 0 {
		return nil, errors.New("store: claim job: a token and a positive lease are required")
	}
	if len(actions) == 0 {
		return nil, nil
	}
	nowMs := now.UnixMilli()
	lock := ""
	if d.dialect == Postgres {
		lock = " FOR UPDATE OF j SKIP LOCKED"
	}
	args := []any{nowMs, token, now.Add(lease).UnixMilli(), nowMs}
	for _, a := range actions {
		args = append(args, a)
	}
	args = append(args, nowMs)
	j, err := scanJob(d.db.QueryRowContext(ctx, d.q(`UPDATE jobs SET status = '`+string(jobs.StatusRunning)+`',
		started_at = COALESCE(started_at, ?), claim_token = ?, lease_until = ?
		WHERE id = (
			SELECT j.id FROM jobs j
			WHERE j.finished_at IS NULL AND (j.lease_until IS NULL OR j.lease_until < ?)
				AND j.action IN (?`+strings.Repeat(", ?", len(actions)-1)+`)
			ORDER BY j.created_at, j.id LIMIT 1`+lock+`)
		AND finished_at IS NULL AND (lease_until IS NULL OR lease_until < ?)
		RETURNING `+jobColumns), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: claim job: %w", err)
	}
	return j, nil
}

// RecordJobItem implements jobs.Store. The job row is updated first, so
// that on PostgreSQL its lock orders the write after a claim that
// committed first, which the token check then refuses.
func (d *DB) RecordJobItem(ctx context.Context, token string, it jobs.Item, leaseUntil time.Time) (bool, error) {
	var ok, failed int
	switch it.Status {
	case jobs.ItemOK:
		ok = 1
	case jobs.ItemFailed:
		failed = 1
	default:
		return false, fmt.Errorf("store: record job item: status %q is not an outcome", it.Status)
	}
	if token == "" {
		return false, errors.New("store: record job item: a token is required")
	}
	var cancel bool
	err := d.inTx(ctx, "record job item", func(tx *sql.Tx) error {
		var c int
		err := tx.QueryRowContext(ctx, d.q(`UPDATE jobs SET succeeded = succeeded + ?, failed = failed + ?, lease_until = ?
			WHERE id = ? AND claim_token = ? AND finished_at IS NULL RETURNING cancel_requested`),
			ok, failed, millis(leaseUntil), it.JobID, token).Scan(&c)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: record job %s item %d: %w", it.JobID, it.Seq, jobs.ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("store: record job %s item %d: %w", it.JobID, it.Seq, err)
		}
		res, err := tx.ExecContext(ctx, d.q(`UPDATE job_items SET status = ?, code = ?, message = ?, finished_at = ?
			WHERE job_id = ? AND seq = ? AND status = ?`), string(it.Status), it.Code, it.Message, millis(it.FinishedAt),
			it.JobID, it.Seq, string(jobs.ItemPending))
		if err != nil {
			return fmt.Errorf("store: record job %s item %d: %w", it.JobID, it.Seq, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: record job %s item %d: %w", it.JobID, it.Seq, err)
		} else if n == 0 {
			return fmt.Errorf("store: record job %s item %d: not pending: %w", it.JobID, it.Seq, jobs.ErrLeaseLost)
		}
		cancel = c != 0
		return nil
	})
	return cancel, err
}

// FinishJob implements jobs.Store.
func (d *DB) FinishJob(ctx context.Context, id, token string, at time.Time) (*jobs.Job, error) {
	if token == "" {
		return nil, errors.New("store: finish job: a token is required")
	}
	var out *jobs.Job
	err := d.inTx(ctx, "finish job", func(tx *sql.Tx) error {
		// A write first, to hold the row (PostgreSQL) and check the claim.
		res, err := tx.ExecContext(ctx, d.q(`UPDATE jobs SET claim_token = claim_token WHERE id = ? AND claim_token = ? AND finished_at IS NULL`),
			id, token)
		if err != nil {
			return fmt.Errorf("store: finish job %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: finish job %s: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("store: finish job %s: %w", id, jobs.ErrLeaseLost)
		}
		j, err := d.jobIn(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("store: finish job %s: %w", id, err)
		}
		if out, err = d.finishJob(ctx, tx, j, at); err != nil {
			return fmt.Errorf("store: finish job %s: %w", id, err)
		}
		return nil
	})
	return out, err
}

// ReleaseJob implements jobs.Store.
func (d *DB) ReleaseJob(ctx context.Context, id, token string) error {
	if token == "" {
		return errors.New("store: release job: a token is required")
	}
	if _, err := d.db.ExecContext(ctx, d.q(`UPDATE jobs SET claim_token = '', lease_until = NULL
		WHERE id = ? AND claim_token = ? AND finished_at IS NULL`), id, token); err != nil {
		return fmt.Errorf("store: release job %s: %w", id, err)
	}
	return nil
}

// PurgeJobs implements jobs.Store. The items go first, explicitly, rather
// than by the foreign key's cascade.
func (d *DB) PurgeJobs(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := d.inTx(ctx, "purge jobs", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM job_items WHERE job_id IN
			(SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?)`), millis(before)); err != nil {
			return fmt.Errorf("store: purge jobs: %w", err)
		}
		res, err := tx.ExecContext(ctx, d.q(`DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?`), millis(before))
		if err != nil {
			return fmt.Errorf("store: purge jobs: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
