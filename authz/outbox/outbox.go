// Package outbox holds crmgate's durable work for later (lifecycle events
// to Dataverse, emails): events written in the same transaction as the
// change that caused them, claimed with a lease by any replica, delivered at
// least once with backoff, never lost across restarts.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Event is one unit of durable work in the outbox: written in the same
// transaction as the change that caused it, delivered at least once by an
// Worker. Receivers must tolerate duplicates; ID identifies an event
// across its deliveries.
type Event struct {
	// ID is assigned by the store when the event is enqueued; it grows with
	// every event.
	ID int64 `json:"id"`
	// Kind says which deliverer handles the event, e.g. lifecycle.Kind.
	// It must not be empty.
	Kind string `json:"kind"`
	// Type is the event within its kind, e.g. lifecycle.Created. It must not be empty.
	Type string `json:"type"`
	// UserID is the account the event is about. Events of one user are
	// delivered in ID order: a later one waits until the earlier ones are
	// delivered. Events with an empty UserID form one such queue.
	UserID string `json:"user_id,omitempty"`
	// Payload is the event's JSON document; for lifecycle events a
	// lifecycle.User. Empty means {}.
	Payload json.RawMessage `json:"payload"`
	// CreatedAt is when the event was enqueued; zero means the store's clock.
	CreatedAt time.Time `json:"created_at"`
	// Attempts counts the claims so far, the current one included.
	Attempts int `json:"attempts"`
	// NextAttemptAt is the earliest time the event may be claimed; zero at
	// enqueue means CreatedAt.
	NextAttemptAt time.Time `json:"next_attempt_at"`
	// LockedUntil is the end of the current claim's lease; zero when not
	// claimed. It also identifies the claim: RetryOutbox only applies while
	// the row still carries it.
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// DeliveredAt is when the event was done with: delivered, or given up
	// after a permanent failure (then FailedAt is set too); zero while
	// pending.
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	// FailedAt is when a permanent failure ended the event's deliveries
	// (FailOutbox); zero when it was delivered or is pending.
	FailedAt time.Time `json:"failed_at,omitzero"`
	// LastError is the error of the last failed attempt, if any.
	LastError string `json:"last_error,omitempty"`
}

// ErrLeaseLost means a claimed outbox event was claimed again by another
// worker after its lease ran out, so the first worker may no longer
// reschedule it.
var ErrLeaseLost = errors.New("outbox: lease lost")

// Store is what a Worker needs from the store. The
// implementation in package authz/store is safe for several workers and
// several processes on one database.
type Store interface {
	// ClaimOutbox atomically leases up to limit pending events whose
	// NextAttemptAt is not after now and whose lease, if any, ended before
	// now, and only the oldest pending event of each user. It sets their
	// LockedUntil to now+lease, adds one to Attempts and returns them in ID
	// order. Two concurrent calls never return the same event while its
	// lease lasts.
	ClaimOutbox(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Event, error)
	// CompleteOutbox marks the claimed event e delivered at at and ends its
	// lease. Completing an event that is already delivered is not an error.
	CompleteOutbox(ctx context.Context, e Event, at time.Time) error
	// RetryOutbox ends the lease of the claimed event e and schedules its
	// next attempt at next, recording lastErr. When the event was claimed
	// again meanwhile (its lease ran out) or delivered, it returns
	// ErrLeaseLost and changes nothing.
	RetryOutbox(ctx context.Context, e Event, next time.Time, lastErr string) error
	// FailOutbox records that the claimed event e failed for good at at
	// (its destination refused it permanently): it ends the lease, sets
	// DeliveredAt and FailedAt to at and records lastErr, so the event is
	// never claimed again and its user's later events proceed. Like
	// RetryOutbox it returns ErrLeaseLost and changes nothing when the claim
	// is no longer e's.
	FailOutbox(ctx context.Context, e Event, at time.Time, lastErr string) error
	// OutboxStats counts the pending events and returns the creation time
	// of the oldest one (zero when none).
	OutboxStats(ctx context.Context) (Stats, error)
	// PurgeOutbox deletes events delivered before before and returns how many.
	PurgeOutbox(ctx context.Context, before time.Time) (int64, error)
}

// Stats describes the pending work of an outbox.
type Stats struct {
	// Pending counts the events not delivered yet, claimed or not.
	Pending int
	// OldestCreatedAt is the CreatedAt of the oldest pending event; zero
	// when nothing is pending.
	OldestCreatedAt time.Time
}

// PermanentError marks a delivery error that a retry cannot fix, such as
// a mail server's 5xx answer: the worker records the event failed
// (FailOutbox) instead of retrying it. Build it with Permanent.
type PermanentError struct {
	// Err is the underlying error; nil reads as "permanent failure".
	Err error
}

// Error implements error.
func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "outbox: permanent failure"
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err, which must not be nil, as a PermanentError. A
// Deliverer returns it for an event that will never succeed; any other error
// is retried.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err (or an error it wraps) is a
// PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// maxLastError bounds the error text kept with an outbox event.
const maxLastError = 1000

// truncateError shortens an error text to at most maxLastError bytes
// without splitting a UTF-8 sequence.
func truncateError(s string) string {
	if len(s) <= maxLastError {
		return s
	}
	return strings.ToValidUTF8(s[:maxLastError], "")
}
