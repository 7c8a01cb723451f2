package authz

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AuditEvent is one row of the audit trail. It never holds a password or
// any other secret.
type AuditEvent struct {
	// ID is assigned by the store; it grows with every event.
	ID int64 `json:"id"`
	// Time is when it happened; zero means now.
	Time time.Time `json:"time"`
	// Type is one of the Event* constants, or a dotted name of the caller's.
	Type string `json:"type"`
	// Actor is who caused it: a user id, "cli:<os user>", "system", or
	// empty for an anonymous client.
	Actor string `json:"actor,omitempty"`
	// UserID is the account the event is about, when known.
	UserID string `json:"user_id,omitempty"`
	// ClientAddr is the client's network address, when known.
	ClientAddr string `json:"client_addr,omitempty"`
	// Detail is a short machine-readable reason or description.
	Detail string `json:"detail,omitempty"`
}

// Audit event types written by this package.
const (
	EventSignIn          = "signin.succeeded"
	EventSignInFailed    = "signin.failed"    // Detail is one of the Reason* constants
	EventSessionRevoked  = "session.revoked"  // a session ended by contact revalidation; Detail is a Reason* constant
	EventSignInThrottled = "signin.throttled" // the first rejection of a throttled client address
	EventAccountLocked   = "account.locked"   // Detail is the lockout end in RFC 3339
	EventSignOut         = "signout"
	EventUserCreated     = "user.created"
	EventPasswordSet     = "user.password_set"
	EventRolesSet        = "user.roles_set"
	EventStatusSet       = "user.status_set"
	EventBindingSet      = "user.binding_set" // Detail is the binding mode
	EventUserDeleted     = "user.deleted"
	EventProfileUpdated  = "user.profile_updated" // Detail lists the changed fields and which were pushed to or kept from Dataverse
	EventProfileSynced   = "user.profile_synced"  // fields pulled from the bound contact; Detail lists them
	EventAPIKeyCreated   = "apikey.created"       // Detail is the key id and its comma-separated scopes
	EventAPIKeyRevoked   = "apikey.revoked"       // Detail is the key id
)

// Reasons recorded in the Detail of EventSignInFailed.
const (
	ReasonUnknownUser   = "unknown_user"
	ReasonWrongPassword = "wrong_password"
	ReasonLockedOut     = "locked_out"
	ReasonNoPassword    = "no_password"
	ReasonDisabled      = "disabled"
	ReasonPending       = "pending"
	ReasonBadStatus     = "bad_status"
)

// Audit appends e to the audit trail; a zero e.Time is set from the
// service's clock. Other packages use it for events such as EventSignOut.
func (s *Service) Audit(ctx context.Context, e AuditEvent) error {
	if e.Type == "" {
		return errors.New("authz: audit event without a type")
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if err := s.store.AppendAudit(ctx, &e); err != nil {
		return fmt.Errorf("authz: audit: %w", err)
	}
	return nil
}

// ListAudit returns audit events, newest first.
func (s *Service) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	return s.store.ListAudit(ctx, f)
}

// audit writes an event the caller cannot act on failing: the change it
// records has already happened, so a failure is logged, not returned.
func (s *Service) audit(ctx context.Context, e AuditEvent) {
	if err := s.Audit(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "audit event lost", "type", e.Type, "user_id", e.UserID, "err", err)
	}
}
