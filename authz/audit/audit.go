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

	"github.com/crmgate/crmgate/authz"
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
	EventAPIKeyUsed      = "apikey.used"          // a key authenticated a request; at most once per key per apikeys.APIKeyTouchInterval; Actor is "apikey:<id>", Detail the key id
	EventAPIKeyRefused   = "apikey.refused"       // a known key was presented with a wrong secret, or revoked or expired; Detail is the key id and the reason
	EventAPIRefused      = "api.refused"          // a REST API call refused for a missing permission; Actor is the user id or "apikey:<id>", Detail the permission, method and path
	EventAccountUnlocked = "account.unlocked"     // an operator cleared a lockout; Detail is the failure count and lockout end cleared
	EventTokenIssued     = "token.issued"         // a one-time token (tokens package) was issued; Detail is the purpose, the token id and its expiry, never the secret
	EventTokenConsumed   = "token.consumed"       // a one-time token was used; Detail is the purpose and the token id
	EventTokenRefused    = "token.refused"        // a presented one-time token was refused; Detail is the purpose asked for, the token id when known, and a tokens.Refused* reason
	EventTokenRevoked    = "token.revoked"        // a user's outstanding tokens were revoked; Detail is the purpose (or "all") and how many
)

// MaxFilterLen is the longest UserID, Actor or Type a Filter may hold, in
// bytes: longer than any value the gateway writes.
const MaxFilterLen = 128

// Filter selects audit events for ListAudit. The zero value lists the
// newest authz.DefaultListLimit events.
type Filter struct {
	// UserID keeps events about that user; empty means any.
	UserID string
	// Actor keeps events caused by that actor (a user id, "cli",
	// "apikey:<id>", ...); empty means any.
	Actor string
	// Type keeps events of that type; empty means any.
	Type string
	// Since keeps events at or after it; zero means no lower bound.
	Since time.Time
	// Until keeps events before it; zero means no upper bound.
	Until time.Time
	// Before is a cursor: only events with an ID below it; zero means no bound.
	Before int64
	// Limit caps the result; zero means authz.DefaultListLimit. Validate
	// (and so Log.ListAudit) refuses values above authz.MaxListLimit; a
	// Store given one reduces it to authz.MaxListLimit.
	Limit int
}

// Validate reports the first problem of f as a *authz.ValidationError
// naming the field: a UserID, Actor or Type longer than MaxFilterLen or
// with control characters, a negative Before or Limit, a Limit above
// authz.MaxListLimit, or Until not after Since. ListAudit calls it, so a
// caller need not.
func (f Filter) Validate() error {
	for _, v := range []struct{ field, value string }{{"user", f.UserID}, {"actor", f.Actor}, {"type", f.Type}} {
		if len(v.value) > MaxFilterLen || !authz.Printable(v.value) {
			return &authz.ValidationError{Field: v.field,
				Message: fmt.Sprintf("The %s filter must be at most %d printable characters.", v.field, MaxFilterLen)}
		}
	}
	switch {
	case f.Before < 0:
		return &authz.ValidationError{Field: "before", Message: "The before cursor must be a positive event id."}
	case f.Limit < 0 || f.Limit > authz.MaxListLimit:
		return &authz.ValidationError{Field: "limit", Message: fmt.Sprintf("The limit must be from 1 to %d.", authz.MaxListLimit)}
	case !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since):
		return &authz.ValidationError{Field: "until", Message: "The end of the time range must be after its start."}
	}
	return nil
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

// RecordTimeout bounds the write of one event by Record.
const RecordTimeout = 10 * time.Second

// Record is Audit for an event the caller cannot act on failing: the change
// it records has already happened, so a failure is logged, not returned.
//
// The write keeps ctx's values but not its cancellation, within
// RecordTimeout: a caller whose context ends just after the change (a
// client that went away, a worker stopping for a restart) must not lose
// the change's row.
func (l *Log) Record(ctx context.Context, e Event) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RecordTimeout)
	defer cancel()
	if err := l.Audit(wctx, e); err != nil {
		l.log.ErrorContext(ctx, "audit event lost", "type", e.Type, "user_id", e.UserID, "err", err)
	}
}

// ListAudit returns audit events, newest first, filtered by f. A bad
// filter gives a *authz.ValidationError (see Filter.Validate).
func (l *Log) ListAudit(ctx context.Context, f Filter) ([]Event, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return l.store.ListAudit(ctx, f)
}

// MaxAge is the longest duration ParseTime takes as "that long ago".
const MaxAge = 100 * 365 * 24 * time.Hour

// ParseTime reads a time bound of a Filter as operators write it: an RFC
// 3339 time ("2026-03-01T12:00:00Z", fractions of a second allowed), or a
// positive Go duration up to MaxAge ("90m", "24h") meaning that long
// before now. Anything else gives a *authz.ValidationError naming field.
// The command line and the REST API both read times with it.
func ParseTime(field, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 && d <= MaxAge {
		return now.Add(-d), nil
	}
	return time.Time{}, &authz.ValidationError{Field: field,
		Message: "The " + field + " time must be an RFC 3339 time such as 2026-03-01T12:00:00Z, or a positive duration such as 24h meaning that long ago."}
}
