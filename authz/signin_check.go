package authz

import (
	"context"
	"errors"
	"fmt"
)

// SignInCheck configures the Dataverse check of bound users at sign-in.
// The zero value turns it off: sign-in then never calls Dataverse and
// returns no contact snapshot, and a contact that was deactivated or lost
// its logon right still signs in.
type SignInCheck struct {
	// Enabled turns the check on. After the password is verified, a
	// bound user signs in only when the binding resolves (ResolveBinding)
	// to an active contact that passes the checks below. Unbound users
	// are never checked.
	Enabled bool
	// RequireLogonEnabled also requires adx_identity_logonenabled to be
	// true, as Power Pages does (WEBAPI.md §7.1).
	RequireLogonEnabled bool
	// Extra, when set, must also match the contact, e.g.
	// "adx_portalaccess eq true". It is evaluated in authz against the
	// columns it names, which are fetched in the same request, so the
	// check stays one request and the audit log can tell a failed filter
	// from a missing contact. Comparisons are never looser than
	// Dataverse's (see Condition.Matches).
	Extra *FilterTemplate
}

// ErrSignInRefused matches (errors.Is) every *SignInRefusedError. Its text
// is the one shown for every refusal.
var ErrSignInRefused = errors.New("authz: this account cannot sign in at the moment")

// SignInRefusedError is returned when the password was right but the
// directory check refused the bound user. Its Error text is the same for
// every reason, so showing it reveals nothing about which check failed;
// Reason is for the audit log only (it is the Detail of the
// EventSignInFailed event already written).
type SignInRefusedError struct {
	// Reason is one of the Reason* constants.
	Reason string
}

// Error implements error; it is ErrSignInRefused's text for every reason.
func (e *SignInRefusedError) Error() string { return ErrSignInRefused.Error() }

// Is reports whether target is ErrSignInRefused.
func (e *SignInRefusedError) Is(target error) bool { return target == ErrSignInRefused }

// CheckSignIn runs the sign-in check (Options.SignInCheck) for u, whose
// credentials the caller has verified (for example after a federated
// sign-in), and returns the bound contact's snapshot with columns and web
// roles, read in one request. It returns nil and no error, without any
// request, when the check is off or u is unbound. A refusal gives a
// *SignInRefusedError; Dataverse being unavailable an error wrapping
// ErrDirectoryUnavailable, so the caller can ask the user to try again
// shortly (fail closed). Both are audited as EventSignInFailed with the
// reason as Detail.
func (s *Service) CheckSignIn(ctx context.Context, u *User, columns []string) (*Contact, error) {
	return s.checkSignIn(ctx, u, columns, AuditEvent{Type: EventSignInFailed, Actor: u.ID, UserID: u.ID})
}

// SignInWithContact is SignIn that also returns the bound contact's
// snapshot for the session (nil when unbound or when the check is off);
// columns are the contact columns the session carries. Besides SignIn's
// errors it returns CheckSignIn's, which come only after the password was
// verified.
func (s *Service) SignInWithContact(ctx context.Context, c Credentials, columns []string) (*User, *Contact, error) {
	run := &signInRun{columns: columns}
	u, err := s.signIn(ctx, c, run)
	if err != nil {
		return nil, nil, err
	}
	return u, run.contact, nil
}

// signInRun carries the sign-in check's input and output through signIn.
type signInRun struct {
	columns []string
	contact *Contact
}

// gateSignIn is signIn's hook, called once the password was verified and
// the account is active: it runs the check and, when it refuses, clears
// the failure count as a refusal for the account's status does.
func (s *Service) gateSignIn(ctx context.Context, u *User, ev AuditEvent, run *signInRun) error {
	var cols []string
	if run != nil {
		cols = run.columns
	}
	c, err := s.checkSignIn(ctx, u, cols, ev)
	if err != nil {
		if rerr := s.store.ResetSignInFailures(ctx, u.ID); rerr != nil {
			s.log.WarnContext(ctx, "reset sign-in failures after a refused check", "user_id", u.ID, "err", rerr)
		}
		return err
	}
	if run != nil {
		run.contact = c
	}
	return nil
}

func (s *Service) checkSignIn(ctx context.Context, u *User, columns []string, ev AuditEvent) (*Contact, error) {
	if !s.check.Enabled || u.Binding.Mode == "" || u.Binding.Mode == BindingNone {
		return nil, nil
	}
	if ev.Type == "" {
		ev.Type = EventSignInFailed
	}
	refuse := func(reason string) error {
		ev.Detail = reason
		s.audit(ctx, ev)
		return &SignInRefusedError{Reason: reason}
	}
	c, err := s.resolveBinding(ctx, u, withColumns(columns, s.check.Extra.Columns()), true)
	var berr *BindingError
	switch {
	case errors.As(err, &berr):
		return nil, refuse(berr.Reason)
	case errors.Is(err, ErrDirectoryUnavailable):
		// A sign-in refused for an outage is audited; a session riding out
		// an outage is not (it would write once per request): the proxy
		// counts those in metrics and logs.
		if ev.Type == EventSignInFailed {
			ev.Detail = ReasonDirectoryUnavailable
			s.audit(ctx, ev)
		}
		return nil, fmt.Errorf("authz: sign-in check: %w", err)
	case err != nil:
		ev.Detail = ReasonDirectoryError
		s.audit(ctx, ev)
		return nil, fmt.Errorf("authz: sign-in check: %w", err)
	}
	if !c.Active {
		return nil, refuse(ReasonContactInactive)
	}
	if s.check.RequireLogonEnabled && !c.LogonEnabled {
		return nil, refuse(ReasonContactLogonDisabled)
	}
	if s.check.Extra != nil {
		conds, err := s.check.Extra.Conditions(u)
		if err != nil {
			return nil, refuse(ReasonUserFieldEmpty)
		}
		if !matchesAll(c, conds) {
			return nil, refuse(ReasonContactFilter)
		}
	}
	keepColumns(c, columns)
	return c, nil
}

// RevalidateContact re-runs the sign-in check for a signed-in user, for a
// session whose contact snapshot is due: it returns the fresh snapshot
// (columns as for SignInWithContact); nil when the user is no longer bound
// or the check is off; an error wrapping ErrSignInRefused when the user may
// no longer be signed in (the reason audited as EventSessionRevoked); an
// error wrapping ErrDirectoryUnavailable when Dataverse cannot answer; or
// ErrNotFound when the user is gone.
func (s *Service) RevalidateContact(ctx context.Context, userID string, columns []string) (*Contact, error) {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	return s.checkSignIn(ctx, u, columns, AuditEvent{Type: EventSessionRevoked, Actor: u.ID, UserID: u.ID})
}
