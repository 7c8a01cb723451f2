// Package jobs runs the admin console's bulk actions (disable, approve,
// delete, ... a list of users) as durable jobs: a job and one item per
// target user are written in one transaction when it is submitted, a worker
// of any replica sharing the database runs the items one by one, and the
// job shows its progress, survives a page reload and a restart, and can be
// cancelled. Every item is audited on its own ("job.item").
//
// # Durability
//
// The targets are fixed at submit time (the caller resolves "every user
// matching a filter" to ids first), at most MaxItems. The worker records
// each item's outcome together with the job's counts in one transaction,
// item by item, in seq order. An item recorded done is never run again; an
// item never recorded is run (again) later. So every item runs at least
// once and at most once, except the single item in flight when a worker
// died (process killed, database unreachable while recording): that one
// may run twice, once by the dead worker and once by its successor.
// Actions must therefore tolerate being applied twice to one user, which
// the bulk actions (set a status, bind, delete an account that may be
// gone) do.
//
// # The lease
//
// A worker claims a job like a lock: the job row gets a random claim token
// and a lease end (Options.Lease from the claimer's clock). Recording an
// item renews the lease and succeeds only while the row still holds the
// token, and each item's action runs with a context that ends with the
// lease. A worker whose process died leaves its lease to run out; after
// that, any worker (this replica after a restart, or another one) claims
// the job with a new token and goes on with the first pending item. The
// old worker, should it still be alive, can record nothing more: its token
// is gone. A worker that stops orderly (its context ends) releases the
// lease at once, so the job is taken over without waiting for it.
//
// Two workers therefore never run one job at once, provided the action
// honours its context and the replicas' clocks roughly agree (NTP): a
// clock ahead by s takes over jobs s early. The lease must be longer than
// any single item takes; an item still running when the lease ends is
// cancelled through its context and recorded failed (CodeTimeout).
//
// Each Service runs one job at a time, oldest first, and claims only jobs
// whose action it has (Options.Actions), so a replica of an older release
// leaves a new action's jobs to the replicas that know it.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Status is the state of a job.
type Status string

// The states of a job. A job is queued until a worker claims it, running
// until its last item is done, then finished in one of the other three.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	// StatusFinishedWithFailures means every item ran and at least one failed.
	StatusFinishedWithFailures Status = "finished_with_failures"
	// StatusCancelled means the job was cancelled before its last item:
	// the items not run yet are ItemCancelled (Job.Cancelled counts them).
	StatusCancelled Status = "cancelled"
)

// Valid reports whether s is one of the job states.
func (s Status) Valid() bool {
	switch s {
	case StatusQueued, StatusRunning, StatusSucceeded, StatusFinishedWithFailures, StatusCancelled:
		return true
	}
	return false
}

// Finished reports whether s is a final state.
func (s Status) Finished() bool {
	return s == StatusSucceeded || s == StatusFinishedWithFailures || s == StatusCancelled
}

// ItemStatus is the state of one item of a job.
type ItemStatus string

// The states of an item.
const (
	ItemPending   ItemStatus = "pending"
	ItemOK        ItemStatus = "ok"
	ItemFailed    ItemStatus = "failed"
	ItemCancelled ItemStatus = "cancelled" // the job was cancelled before the item ran
)

// Valid reports whether s is one of the item states.
func (s ItemStatus) Valid() bool {
	switch s {
	case ItemPending, ItemOK, ItemFailed, ItemCancelled:
		return true
	}
	return false
}

// Job is one bulk action over a fixed list of users.
type Job struct {
	// ID is authz.NewID(), set by Submit.
	ID string `json:"id"`
	// Action names the Action in Options.Actions that runs the items.
	Action string `json:"action"`
	// Label is a human description for the console, e.g. "Disable users
	// matching acme"; empty means none. It is shown, never interpreted.
	Label string `json:"label,omitempty"`
	// Params is the action's parameters, validated by the action at submit
	// (at most MaxParamsBytes; "{}" when the submitter gave none). Never a
	// secret: it is stored and listed.
	Params json.RawMessage `json:"params"`
	// Actor is who submitted the job, as in audit.Event.Actor; each item's
	// action runs, and is audited, as this actor.
	Actor  string `json:"actor"`
	Status Status `json:"status"`
	// Total is the number of items; Succeeded, Failed and Cancelled count
	// the items in those states, so Total minus the three is still to run.
	Total     int `json:"total"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	// CreatedAt is the submit time; StartedAt the first claim (zero while
	// queued); FinishedAt the end (zero until finished).
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// CancelRequested is set by Cancel; the worker stops before the next
	// item. CancelledBy is the actor of the first Cancel.
	CancelRequested bool   `json:"cancel_requested,omitempty"`
	CancelledBy     string `json:"cancelled_by,omitempty"`
	// LeaseUntil is the end of the current worker's lease; zero when no
	// worker holds the job. A running job whose lease is past has lost its
	// worker and waits for another one.
	LeaseUntil time.Time `json:"lease_until,omitzero"`
}

// Pending is how many items have not run yet.
func (j *Job) Pending() int { return j.Total - j.Succeeded - j.Failed - j.Cancelled }

// Item is one target of a job and its outcome.
type Item struct {
	JobID string `json:"job_id"`
	// Seq numbers the items from 1 in submit order; they run in that order.
	Seq int `json:"seq"`
	// Target is the user id the action is applied to.
	Target string     `json:"target"`
	Status ItemStatus `json:"status"`
	// Code is a machine-readable failure reason (the Code* constants or an
	// action's own, see Fail); empty unless failed.
	Code string `json:"code,omitempty"`
	// Message says why the item failed, safe to show to the operator; empty
	// unless failed.
	Message string `json:"message,omitempty"`
	// FinishedAt is when the item was recorded done; zero while pending.
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Limits of a job.
const (
	// MaxItems is the most targets one job may have.
	MaxItems = 10000
	// MaxParamsBytes bounds a job's Params.
	MaxParamsBytes = 4096
	// MaxLabelLen bounds a job's Label, in characters.
	MaxLabelLen = 200
	// MaxActionNameLen bounds an action's name.
	MaxActionNameLen = 64
	// MaxMessageLen bounds an item's Message, in bytes; longer messages
	// are cut.
	MaxMessageLen = 500
)

// Filter selects jobs for List. The zero value lists the newest
// authz.DefaultListLimit jobs.
type Filter struct {
	// Status keeps jobs in that state; empty means any.
	Status Status
	// Active keeps the jobs not finished yet (queued or running).
	Active bool
	// Before is a cursor: only jobs older than the job with this ID (the
	// last of the previous page); empty means from the newest.
	Before string
	// Limit caps the result; zero means authz.DefaultListLimit, at most
	// authz.MaxListLimit.
	Limit int
}

// ItemFilter selects items of one job for Items. The zero value lists the
// first authz.DefaultListLimit items.
type ItemFilter struct {
	// After is a cursor: only items with a larger Seq (the last of the
	// previous page); zero means from the first.
	After int
	// Status keeps items in that state (ItemFailed: "why did these
	// fail"); empty means any.
	Status ItemStatus
	// Limit caps the result; zero means authz.DefaultListLimit, at most
	// authz.MaxListLimit.
	Limit int
}

// Errors of the jobs service and its store; match them with errors.Is.
var (
	// ErrFinished is Cancel's answer for a job that has already finished.
	ErrFinished = errors.New("jobs: the job has already finished")
	// ErrLeaseLost means the worker's claim on a job is gone: another
	// worker claimed it after the lease ran out, or it finished. The
	// worker must stop working on it.
	ErrLeaseLost = errors.New("jobs: lease lost")
)

// Store is what the jobs service needs from the store; package
// authz/store satisfies it for SQLite and PostgreSQL, safe for several
// workers and several processes on one database.
type Store interface {
	// CreateJob inserts j (queued, with Total len(targets) and zero counts)
	// and one pending item per target, seq 1..n in order, in one
	// transaction. The caller has checked every field.
	CreateJob(ctx context.Context, j *Job, targets []string) error
	// Job returns the job, or authz.ErrNotFound.
	Job(ctx context.Context, id string) (*Job, error)
	// ListJobs returns jobs newest first (CreatedAt, then ID), filtered by f.
	ListJobs(ctx context.Context, f Filter) ([]Job, error)
	// JobItems returns the job's items in seq order, filtered by f. It
	// returns authz.ErrNotFound for an unknown job.
	JobItems(ctx context.Context, id string, f ItemFilter) ([]Item, error)
	// CancelJob sets the job's CancelRequested (and CancelledBy to actor,
	// when first) and returns the job after. A job no worker holds (queued,
	// or released) is finished at once: its pending items become
	// cancelled, its Status cancelled (or, with nothing left to cancel,
	// what its items give), FinishedAt at. A finished job gives
	// ErrFinished and an unknown one authz.ErrNotFound, both wrapped.
	CancelJob(ctx context.Context, id, actor string, at time.Time) (*Job, error)
	// ClaimJob takes the oldest unfinished job of one of actions that no
	// lease holds (none yet, released, or ended before now), sets it
	// running (StartedAt now when first), with claim token and lease end
	// now+lease, and returns it; nil, nil when there is none. Two
	// concurrent calls never take the same job while its lease lasts.
	ClaimJob(ctx context.Context, actions []string, token string, now time.Time, lease time.Duration) (*Job, error)
	// RecordJobItem records the outcome of the pending item it (Status
	// ItemOK or ItemFailed, with Code, Message and FinishedAt), adds it to
	// the job's counts and moves the lease end to leaseUntil, in one
	// transaction, and reports whether a cancel was requested. It changes
	// nothing and returns ErrLeaseLost (wrapped) when the job no longer
	// holds token or the item is not pending.
	RecordJobItem(ctx context.Context, token string, it Item, leaseUntil time.Time) (cancelRequested bool, err error)
	// FinishJob ends the claimed job at at: when a cancel was requested,
	// its pending items become cancelled; the status follows from the
	// counts (cancelled when any item was cancelled, else
	// finished_with_failures when any failed, else succeeded) and the lease
	// ends. ErrLeaseLost (wrapped) when the job no longer holds token; an
	// error when items are pending and no cancel was requested.
	FinishJob(ctx context.Context, id, token string, at time.Time) (*Job, error)
	// ReleaseJob ends the lease of the claimed job without finishing it,
	// so that any worker may claim it at once. Releasing a job that no
	// longer holds token changes nothing and is not an error.
	ReleaseJob(ctx context.Context, id, token string) error
	// PurgeJobs deletes the jobs finished before before, with their items,
	// and returns how many jobs.
	PurgeJobs(ctx context.Context, before time.Time) (int64, error)
}
