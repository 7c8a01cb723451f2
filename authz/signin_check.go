package authz

import (
	"context"
	"errors"
	"fmt"
	"github.com/crmgate/crmgate/dataverse"
	"strings"
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
	// Dataverse's (see dataverse.Condition.Matches).
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
// dataverse.ErrUnavailable, so the caller can ask the user to try again
// shortly (fail closed). Both are audited as EventSignInFailed with the
// reason as Detail.
func (s *Service) CheckSignIn(ctx context.Context, u *User, columns []string) (*dataverse.Contact, error) {
	return s.checkSignIn(ctx, u, columns, AuditEvent{Type: EventSignInFailed, Actor: u.ID, UserID: u.ID})
}

// SignInWithContact is SignIn that also returns the bound contact's
// snapshot for the session (nil when unbound or when the check is off);
// columns are the contact columns the session carries. Besides SignIn's
// errors it returns CheckSignIn's, which come only after the password was
// verified.
func (s *Service) SignInWithContact(ctx context.Context, c Credentials, columns []string) (*User, *dataverse.Contact, error) {
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
	contact *dataverse.Contact
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

func (s *Service) checkSignIn(ctx context.Context, u *User, columns []string, ev AuditEvent) (*dataverse.Contact, error) {
	if !s.checked(u) {
		return nil, nil
	}
	if ev.Type == "" {
		ev.Type = EventSignInFailed
	}
	c, err := s.resolveBinding(ctx, u, s.checkColumns(columns), true)
	var berr *BindingError
	switch {
	case errors.As(err, &berr):
		return nil, s.refuse(ctx, ev, berr.Reason)
	case errors.Is(err, dataverse.ErrUnavailable):
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
	return s.admit(ctx, u, c, columns, ev)
}

// SnapshotColumns returns every column the revalidation of a session asks
// o.Snapshots for when sessions carry columns: those, the extra sign-in
// filter's, the synced fields', the username binding's and the custom
// binding filter's. A cache built with them answers every revalidation.
func SnapshotColumns(columns []string, o Options) []string {
	cols := withColumns(columns, o.SignInCheck.Extra.Columns())
	cols = withColumns(cols, FieldSync{Columns: o.FieldSync.Columns}.columns())
	username := o.Binding.UsernameColumn
	if username == "" {
		username = DefaultUsernameColumn
	}
	cols = withColumns(cols, []string{username})
	return withColumns(cols, o.Binding.Custom.Columns())
}

// checked reports whether the sign-in check applies to u.
func (s *Service) checked(u *User) bool {
	return s.check.Enabled && u.Binding.Mode != "" && u.Binding.Mode != BindingNone
}

// checkColumns are the columns the check reads: the caller's, the extra
// filter's and the synced fields'.
func (s *Service) checkColumns(columns []string) []string {
	return withColumns(withColumns(columns, s.check.Extra.Columns()), s.sync.columns())
}

// refuse audits a refusal with reason and returns its error.
func (s *Service) refuse(ctx context.Context, ev AuditEvent, reason string) error {
	ev.Detail = reason
	s.audit(ctx, ev)
	return &SignInRefusedError{Reason: reason}
}

// admit applies the checks to u's resolved contact c: active, logon
// enabled when required, the extra filter. When c passes, the synced
// fields are pulled into u's account and c is returned with exactly
// columns.
func (s *Service) admit(ctx context.Context, u *User, c *dataverse.Contact, columns []string, ev AuditEvent) (*dataverse.Contact, error) {
	if !c.Active {
		return nil, s.refuse(ctx, ev, ReasonContactInactive)
	}
	if s.check.RequireLogonEnabled && !c.LogonEnabled {
		return nil, s.refuse(ctx, ev, ReasonContactLogonDisabled)
	}
	if s.check.Extra != nil {
		conds, err := s.check.Extra.Conditions(u)
		if err != nil {
			return nil, s.refuse(ctx, ev, ReasonUserFieldEmpty)
		}
		if !dataverse.MatchesAll(c, conds) {
			return nil, s.refuse(ctx, ev, ReasonContactFilter)
		}
	}
	s.pullFields(ctx, u, c)
	c.KeepColumns(columns)
	return c, nil
}

// RevalidateContact re-runs the sign-in check for a signed-in user, for a
// session whose snapshot of contact contactID is due: it returns the fresh
// snapshot (columns as for SignInWithContact); nil when the user is no
// longer bound or the check is off; an error wrapping ErrSignInRefused
// when the user may no longer be signed in (the reason audited as
// EventSessionRevoked); an error wrapping dataverse.ErrUnavailable when
// Dataverse cannot answer; or ErrNotFound when the user is gone.
//
// With Options.Snapshots the contact is read through that shared cache,
// and the binding is confirmed by checking that the cached contact still
// satisfies it (the lookup names it; its username or custom conditions
// still match). A contact that no longer satisfies it, or an empty
// contactID, is resolved afresh as at sign-in, which may bind the session
// to another contact.
func (s *Service) RevalidateContact(ctx context.Context, userID, contactID string, columns []string) (*dataverse.Contact, error) {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	ev := AuditEvent{Type: EventSessionRevoked, Actor: u.ID, UserID: u.ID}
	if !s.checked(u) || s.snapshots == nil || contactID == "" {
		return s.checkSignIn(ctx, u, columns, ev)
	}
	conds, err := s.bindingConditions(u, contactID)
	if err != nil {
		return nil, s.refuse(ctx, ev, ReasonUserFieldEmpty)
	}
	cached, err := s.snapshots.ContactSnapshot(ctx, strings.ToLower(contactID), withColumns(s.checkColumns(columns), dataverse.ConditionColumns(conds)))
	switch {
	case errors.Is(err, dataverse.ErrContactNotFound):
		return s.checkSignIn(ctx, u, columns, ev)
	case err != nil:
		return nil, fmt.Errorf("authz: revalidate contact: %w", err)
	}
	c := cached.Clone()
	if conds == nil || !dataverse.MatchesAll(c, conds) {
		return s.checkSignIn(ctx, u, columns, ev)
	}
	return s.admit(ctx, u, c, columns, ev)
}

// bindingConditions returns what contact id must satisfy to still be u's
// contact; nil when it cannot be told without a fresh resolve (a lookup
// that names another contact).
func (s *Service) bindingConditions(u *User, id string) ([]dataverse.Condition, error) {
	switch u.Binding.Mode {
	case BindingLookup:
		if u.Binding.Ref == nil || !strings.EqualFold(u.Binding.Ref.ID, id) {
			return nil, nil
		}
		return []dataverse.Condition{}, nil
	case BindingUsername:
		return []dataverse.Condition{{Column: s.binding.UsernameColumn, Op: "eq", Value: u.Username}}, nil
	case BindingCustom:
		if s.binding.Custom == nil {
			return nil, nil
		}
		return s.binding.Custom.Conditions(u)
	}
	return nil, nil
}
