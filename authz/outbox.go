package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// OutboxKindLifecycle is the Kind of the user lifecycle events meant for
// the Dataverse unbound actions of LifecycleActions.
const OutboxKindLifecycle = "dataverse.lifecycle"

// The lifecycle event types, the Type of OutboxKindLifecycle events.
const (
	LifecycleCreated = "user.created"
	LifecycleUpdated = "user.updated"
	LifecycleDeleted = "user.deleted"
	LifecycleBound   = "user.bound"
	LifecycleUnbound = "user.unbound"
)

// OutboxEvent is one unit of durable work in the outbox: written in the same
// transaction as the change that caused it, delivered at least once by an
// OutboxWorker. Receivers must tolerate duplicates; ID identifies an event
// across its deliveries.
type OutboxEvent struct {
	// ID is assigned by the store when the event is enqueued; it grows with
	// every event.
	ID int64 `json:"id"`
	// Kind says which deliverer handles the event, e.g. OutboxKindLifecycle.
	// It must not be empty.
	Kind string `json:"kind"`
	// Type is the event within its kind, e.g. LifecycleCreated. It must not be empty.
	Type string `json:"type"`
	// UserID is the account the event is about. Events of one user are
	// delivered in ID order: a later one waits until the earlier ones are
	// delivered. Events with an empty UserID form one such queue.
	UserID string `json:"user_id,omitempty"`
	// Payload is the event's JSON document; for lifecycle events a
	// LifecycleUser. Empty means {}.
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
	// DeliveredAt is when the event was delivered; zero while pending.
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	// LastError is the error of the last failed attempt, if any.
	LastError string `json:"last_error,omitempty"`
}

// ErrLeaseLost means a claimed outbox event was claimed again by another
// worker after its lease ran out, so the first worker may no longer
// reschedule it.
var ErrLeaseLost = errors.New("authz: outbox lease lost")

// OutboxStore is what an OutboxWorker needs from the store. The
// implementation in package authz/store is safe for several workers and
// several processes on one database.
type OutboxStore interface {
	// ClaimOutbox atomically leases up to limit pending events whose
	// NextAttemptAt is not after now and whose lease, if any, ended before
	// now, and only the oldest pending event of each user. It sets their
	// LockedUntil to now+lease, adds one to Attempts and returns them in ID
	// order. Two concurrent calls never return the same event while its
	// lease lasts.
	ClaimOutbox(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]OutboxEvent, error)
	// CompleteOutbox marks the claimed event e delivered at at and ends its
	// lease. Completing an event that is already delivered is not an error.
	CompleteOutbox(ctx context.Context, e OutboxEvent, at time.Time) error
	// RetryOutbox ends the lease of the claimed event e and schedules its
	// next attempt at next, recording lastErr. When the event was claimed
	// again meanwhile (its lease ran out) or delivered, it returns
	// ErrLeaseLost and changes nothing.
	RetryOutbox(ctx context.Context, e OutboxEvent, next time.Time, lastErr string) error
	// OutboxStats counts the pending events and returns the creation time
	// of the oldest one (zero when none).
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// PurgeOutbox deletes events delivered before before and returns how many.
	PurgeOutbox(ctx context.Context, before time.Time) (int64, error)
}

// OutboxStats describes the pending work of an outbox.
type OutboxStats struct {
	// Pending counts the events not delivered yet, claimed or not.
	Pending int
	// OldestCreatedAt is the CreatedAt of the oldest pending event; zero
	// when nothing is pending.
	OldestCreatedAt time.Time
}

// LifecycleUser is the payload of a lifecycle event: a snapshot of the
// user's fields at the time of the change, so that a later change does not
// alter an earlier event. It never holds a password hash or security stamp.
type LifecycleUser struct {
	ID          string   `json:"id"`
	Username    string   `json:"username"`
	Email       string   `json:"email"`
	FirstName   string   `json:"first_name,omitempty"`
	LastName    string   `json:"last_name,omitempty"`
	DisplayName string   `json:"display_name,omitempty"`
	Roles       []string `json:"roles"`
	Status      Status   `json:"status"`
	Binding     Binding  `json:"binding"`
	// OccurredAt is when the change was made.
	OccurredAt time.Time `json:"occurred_at"`
}

// lifecycleEvent returns the outbox event of type typ about u as it is now.
func lifecycleEvent(typ string, u *User, at time.Time) (OutboxEvent, error) {
	b := u.Binding
	if b.Mode == "" {
		b.Mode = BindingNone
	}
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	snap := LifecycleUser{
		ID: u.ID, Username: u.Username, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName,
		DisplayName: u.DisplayName, Roles: roles, Status: u.Status, Binding: b,
		OccurredAt: at.UTC().Truncate(time.Millisecond),
	}
	p, err := json.Marshal(snap)
	if err != nil {
		return OutboxEvent{}, fmt.Errorf("authz: lifecycle event: %w", err)
	}
	return OutboxEvent{Kind: OutboxKindLifecycle, Type: typ, UserID: u.ID, Payload: p, CreatedAt: at}, nil
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
