package authz

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns; match them with errors.Is.
var (
	// ErrNotFound means the user (or other record) does not exist.
	ErrNotFound = errors.New("authz: not found")
	// ErrConflict means a user with the same username or email (compared
	// case-insensitively) already exists.
	ErrConflict = errors.New("authz: username or email already in use")
	// ErrStale means the user changed after it was read: UpdateUser found a
	// different UpdatedAt. Read the user again and reapply the change.
	ErrStale = errors.New("authz: user was modified concurrently")
)

// Store is the durable accounts store the authz package consumes. The
// implementation in package authz/store serves SQLite and PostgreSQL; every
// method is safe for concurrent use. Methods return ErrNotFound, ErrConflict
// and ErrStale as documented, wrapped or not, and any other error for a
// failure of the database itself.
type Store interface {
	// CreateUser inserts u. An empty u.ID is replaced by a random one and
	// zero CreatedAt/UpdatedAt by the store's clock; the stored values are
	// written back into u, with times truncated to milliseconds. A duplicate
	// username or email (case-insensitive) gives ErrConflict.
	CreateUser(ctx context.Context, u *User) error
	// UserByID returns the user with that id, or ErrNotFound.
	UserByID(ctx context.Context, id string) (*User, error)
	// UserByLogin returns the user whose username or email equals login
	// after NormalizeLogin, or ErrNotFound. When one user's username equals
	// another user's email, the username match wins.
	UserByLogin(ctx context.Context, login string) (*User, error)
	// ListUsers returns users ordered by normalised username, filtered by f.
	ListUsers(ctx context.Context, f UserFilter) ([]*User, error)
	// UpdateUser saves every field of u except ID and CreatedAt, provided
	// the stored row still has u.UpdatedAt (optimistic concurrency); then it
	// sets u.UpdatedAt to the new, strictly later, value. A changed row
	// gives ErrStale, a missing one ErrNotFound, a duplicate username or
	// email ErrConflict.
	UpdateUser(ctx context.Context, u *User) error
	// CreateUserAndEnqueue is CreateUser that also enqueues events in the
	// outbox, in the same transaction: either the user and every event are
	// stored, or none of them. Events with an empty UserID get u.ID.
	CreateUserAndEnqueue(ctx context.Context, u *User, events ...OutboxEvent) error
	// UpdateUserAndEnqueue is UpdateUser that also enqueues events in the
	// outbox, in the same transaction.
	UpdateUserAndEnqueue(ctx context.Context, u *User, events ...OutboxEvent) error
	// DeleteUser deletes the user with that id and enqueues events in the
	// outbox, in the same transaction. A missing user gives ErrNotFound and
	// enqueues nothing.
	DeleteUser(ctx context.Context, id string, events ...OutboxEvent) error
	// UpdateUserKeepingBreakGlass is UpdateUserAndEnqueue that keeps a
	// break-glass account (see IsBreakGlass) for role: when the stored
	// user is one and u is not, and no other user is one, it rolls back
	// and returns an error wrapping ErrLastBreakGlassAdmin. The check reads
	// the stored rows in the same transaction as the change, and the calls
	// of this method and DeleteUserKeepingBreakGlass run one at a time
	// (across replicas too), so two of them cannot each take away one of
	// the last two break-glass accounts; other methods take no part in
	// that serialisation. UpdateUserAndEnqueue and DeleteUser check
	// nothing, so every change that may take away a break-glass account
	// must come here. An empty role makes it UpdateUserAndEnqueue.
	UpdateUserKeepingBreakGlass(ctx context.Context, u *User, role string, events ...OutboxEvent) error
	// DeleteUserKeepingBreakGlass is DeleteUser that keeps a break-glass
	// account for role, with the check and the serialisation of
	// UpdateUserKeepingBreakGlass: deleting the last one gives an error
	// wrapping ErrLastBreakGlassAdmin and deletes nothing. An empty role
	// makes it DeleteUser.
	DeleteUserKeepingBreakGlass(ctx context.Context, id, role string, events ...OutboxEvent) error
	// BeginSignInAttempt counts a password attempt against the user before
	// the password is checked, in one atomic statement, so that concurrent
	// attempts can never verify more than maxFailures passwords per lockout
	// window. See SignInAttempt for the rules.
	BeginSignInAttempt(ctx context.Context, id string, now time.Time, maxFailures int, lockFor time.Duration) (SignInAttempt, error)
	// RecordSignInSuccess clears the failure count and lockout and sets
	// LastSignInAt to at.
	RecordSignInSuccess(ctx context.Context, id string, at time.Time) error
	// ResetSignInFailures clears the failure count and lockout without
	// recording a sign-in (the password was right, the account may not sign in).
	ResetSignInFailures(ctx context.Context, id string) error
	// ReplacePasswordHash sets the user's password hash to newHash only if
	// it still is oldHash, without touching UpdatedAt or the security stamp
	// (used to upgrade hash parameters). When the hash changed meanwhile it
	// returns ErrStale.
	ReplacePasswordHash(ctx context.Context, id, oldHash, newHash string) error
	// AppendAudit inserts e and sets e.ID. A zero e.Time is set by the store's clock.
	AppendAudit(ctx context.Context, e *AuditEvent) error
	// ListAudit returns audit events, newest first, filtered by f.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// RevokeSession records that a session ended before its cookie expires
	// (sign-out); expiresAt is when the cookie would expire anyway.
	RevokeSession(ctx context.Context, sessionID, userID string, expiresAt time.Time) error
	// SessionRevoked reports whether RevokeSession was called for sessionID.
	SessionRevoked(ctx context.Context, sessionID string) (bool, error)
	// CreateAPIKey inserts k, whose ID and SecretHash the caller sets. A
	// zero CreatedAt is set by the store's clock; the stored times are
	// written back into k, truncated to milliseconds. An ID already in use
	// gives ErrConflict.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// APIKeyByID returns the API key with that id, revoked or not, or ErrNotFound.
	APIKeyByID(ctx context.Context, id string) (*APIKey, error)
	// ListAPIKeys returns every API key, revoked and expired ones included,
	// oldest first.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// RevokeAPIKey sets the key's RevokedAt to at and reports true, unless
	// it is revoked already: then it changes nothing and reports false. A
	// missing key gives ErrNotFound.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) (bool, error)
	// TouchAPIKey sets the key's LastUsedAt to at, but only when it is unset
	// or at least minInterval before at, so that replicas serving the same
	// key write it about once per minInterval. A missing key, or one used
	// more recently, is left alone without error.
	TouchAPIKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) error
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// SignInAttempt is the outcome of Store.BeginSignInAttempt.
//
// The rules: while LockoutUntil is in the future the attempt is counted but
// not Allowed and the lockout is not extended. Once a lockout has passed, the
// count starts again at 1. When the new count reaches maxFailures the lockout
// is set to now+lockFor; that attempt is still Allowed (a correct password
// clears it), every further one is not.
type SignInAttempt struct {
	// Allowed reports whether the password may be checked.
	Allowed bool
	// FailedCount is the count including this attempt.
	FailedCount int
	// LockoutUntil is the end of the lockout; zero when not locked.
	LockoutUntil time.Time
}

// UserFilter selects users for ListUsers. The zero value lists the first
// DefaultListLimit users.
type UserFilter struct {
	// Query keeps users whose username or email contains it, case-insensitively.
	Query string
	// Status keeps users in that state; empty means any.
	Status Status
	// After is a cursor: only users whose normalised username
	// (NormalizeLogin(u.Username)) sorts after it. Pass the last user of the
	// previous page.
	After string
	// Limit caps the result; zero means DefaultListLimit, values above
	// MaxListLimit are reduced to it.
	Limit int
}

// AuditFilter selects audit events for ListAudit. The zero value lists the
// newest DefaultListLimit events.
type AuditFilter struct {
	// UserID keeps events about that user; empty means any.
	UserID string
	// Type keeps events of that type; empty means any.
	Type string
	// Before is a cursor: only events with an ID below it; zero means no bound.
	Before int64
	// Limit caps the result; zero means DefaultListLimit, values above
	// MaxListLimit are reduced to it.
	Limit int
}

// List sizes for UserFilter and AuditFilter.
const (
	DefaultListLimit = 50
	MaxListLimit     = 1000
)

// EffectiveLimit returns the limit a store applies for the requested one.
func EffectiveLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultListLimit
	case limit > MaxListLimit:
		return MaxListLimit
	}
	return limit
}
