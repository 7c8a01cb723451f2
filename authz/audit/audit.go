// Package audit is crmgate's audit trail: every admin and security event is
// written as a row of the store's audit table and as a structured log line,
// never with a password or any other secret.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Event is one row of the audit trail. It never holds a password or any
// other secret.
type Event struct {
	// ID is assigned by the store; it grows with every event.
	ID int64 `json:"id"`
	// Time is when it happened; zero means now.
	Time time.Time `json:"time"`
	// Type is one of the Event* constants, or a dotted name of the caller's.
	Type string `json:"type"`
	// Actor is who caused it: a user id, "cli", "apikey:<id>", "dataverse",
	// "system", or empty for an anonymous client.
	Actor string `json:"actor,omitempty"`
	// UserID is the account the event is about, when known.
	UserID string `json:"user_id,omitempty"`
	// ClientAddr is the client's network address, when known.
	ClientAddr string `json:"client_addr,omitempty"`
	// Detail is a short machine-readable reason or description.
	Detail string `json:"detail,omitempty"`
}

// The event types crmgate writes.
const (
	EventSignIn          = "signin.succeeded"
	EventSignInFailed    = "signin.failed"         // Detail is one of the signin.Reason* or binding.Reason* constants
	EventSessionRevoked  = "session.revoked"       // a session ended by contact revalidation; Detail is a reason
	EventSignInThrottled = "signin.throttled"      // the first rejection of a throttled client address
	EventAccountLocked   = "account.locked"        // the account is soft-locked: only addresses without recent failures on it may try; Detail is the lockout end in RFC 3339
	EventAddressLocked   = "signin.address_locked" // a client address is locked out of one account (ClientAddr, UserID); Detail is the lockout end in RFC 3339
	EventSignOut         = "signout"
	EventUserCreated     = "user.created"
	EventPasswordSet     = "user.password_set"
	EventRolesSet        = "user.roles_set"
	EventStatusSet       = "user.status_set"
	EventBindingSet      = "user.binding_set"    // Detail is the binding mode, and the contact of a lookup
	EventBindingShared   = "user.binding_shared" // a lookup binding to a contact another user is bound to, allowed by an explicit override; Detail names the contact and the other users
	EventUserDeleted     = "user.deleted"
	EventProfileUpdated  = "user.profile_updated" // Detail lists the changed fields and which were pushed to or kept from Dataverse
	EventProfileSynced   = "user.profile_synced"  // fields pulled from the bound contact; Detail lists them
	EventAPIKeyCreated   = "apikey.created"       // Detail is the key id and its comma-separated scopes
	EventAPIKeyRevoked   = "apikey.revoked"       // Detail is the key id
)

// Filter selects audit events for ListAudit. The zero value lists the
// newest authz.DefaultListLimit events.
type Filter struct {
	// UserID keeps events about that user; empty means any.
	UserID string
	// Type keeps events of that type; empty means any.
	Type string
	// Before is a cursor: only events with an ID below it; zero means no bound.
	Before int64
	// Limit caps the result; zero means authz.DefaultListLimit, values
	// above authz.MaxListLimit are reduced to it.
	Limit int
}

// Store is the part of the account store the audit trail uses.
type Store interface {
	// AppendAudit inserts e and sets e.ID. A zero e.Time is set by the store's clock.
	AppendAudit(ctx context.Context, e *Event) error
	// ListAudit returns audit events, newest first, filtered by f.
	ListAudit(ctx context.Context, f Filter) ([]Event, error)
}

// Log writes and reads the audit trail. It is safe for concurrent use;
// build it with New.
type Log struct {
	store Store
	now   func() time.Time
	log   *slog.Logger
}

// New returns the audit trail over store. now nil means time.Now; logger
// receives one line per event and the events that could not be stored; nil
// discards them.
func New(store Store, now func() time.Time, logger *slog.Logger) *Log {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Log{store: store, now: now, log: logger}
}

// Audit appends e to the audit trail and logs it; a zero e.Time is set
// from the clock. It returns the store's error, for callers that must not
// go on unaudited.
func (l *Log) Audit(ctx context.Context, e Event) error {
	if e.Type == "" {
		return errors.New("audit: event without a type")
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "audit", slog.String("type", e.Type), slog.String("actor", e.Actor),
		slog.String("user_id", e.UserID), slog.String("client_addr", e.ClientAddr), slog.String("detail", e.Detail))
	if err := l.store.AppendAudit(ctx, &e); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Record is Audit for an event the caller cannot act on failing: the change
// it records has already happened, so a failure is logged, not returned.
func (l *Log) Record(ctx context.Context, e Event) {
	if err := l.Audit(ctx, e); err != nil {
		l.log.ErrorContext(ctx, "audit event lost", "type", e.Type, "user_id", e.UserID, "err", err)
	}
}

// ListAudit returns audit events, newest first, filtered by f.
func (l *Log) ListAudit(ctx context.Context, f Filter) ([]Event, error) {
	return l.store.ListAudit(ctx, f)
}
