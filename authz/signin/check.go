package signin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/dataverse"
)

// Check configures the Dataverse check of bound users at sign-in.
// The zero value turns it off: sign-in then never calls Dataverse and
// returns no contact snapshot, and a contact that was deactivated or lost
// its logon right still signs in.
type Check struct {
	// Enabled turns the check on. After the password is verified, a
	// bound user signs in only when the binding resolves
	// to an active contact that passes the checks below. Unbound users
	// are never checked.
	Enabled bool
	// RequireLogonEnabled also requires adx_identity_logonenabled to be
	// true, as Power Pages does
	// (https://github.com/Adoxio/xRM-Portals-Community-Edition, CrmSignInManager).
	RequireLogonEnabled bool
	// Extra, when set, must also match the contact, e.g.
	// "adx_portalaccess eq true". It is evaluated in authz against the
	// columns it names, which are fetched in the same request, so the
	// check stays one request and the audit log can tell a failed filter
	// from a missing contact. Comparisons are never looser than
	// Dataverse's (see dataverse.Condition.Matches).
	Extra *binding.FilterTemplate
	// PasswordChangeColumn, when set, names a boolean contact column
	// (validated with dataverse.ValidContactColumn) read in the same
	// request: a sign-in whose contact has it true returns the user with
	// MustChangePassword set (not stored), so the user must change the
	// password before reaching anything else. Clearing the column after
	// the change is the caller's (authz/recovery). Empty reads nothing.
	PasswordChangeColumn string
}

// ErrRefused matches (errors.Is) every *RefusedError. Its text is the one
// shown for every refusal.
var ErrRefused = errors.New("signin: this account cannot sign in at the moment")

// RefusedError is returned when the password was right but the
// directory check refused the bound user. Its Error text is the same for
// every reason, so showing it reveals nothing about which check failed;
// Reason is for the audit log only (it is the Detail of the
// audit.EventSignInFailed event already written).
type RefusedError struct {
	// Reason is one of the binding.Reason* constants.
	Reason string
}

// Error implements error; it is ErrRefused's text for every reason.
func (e *RefusedError) Error() string { return ErrRefused.Error() }

// Is reports whether target is ErrRefused.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// CheckSignIn runs the sign-in check (Options.Check) for u, whose
// credentials the caller has verified (for example after a federated
// sign-in), and returns the bound contact's snapshot with columns and web
// roles, read in one request. It returns nil and no error, without any
// request, when the check is off or u is unbound. A refusal gives a
// *RefusedError; Dataverse being unavailable an error wrapping
// dataverse.ErrUnavailable, so the caller can ask the user to try again
// shortly (fail closed). Both are audited as audit.EventSignInFailed with the
// reason as Detail.
func (s *Service) CheckSignIn(ctx context.Context, u *authz.User, columns []string) (*dataverse.Contact, error) {
	return s.checkSignIn(ctx, u, columns, audit.Event{Type: audit.EventSignInFailed, Actor: u.ID, UserID: u.ID})
}

// SignInWithContact is SignIn that also returns the bound contact's
// snapshot for the session (nil when unbound or when the check is off);
// columns are the contact columns the session carries. Besides SignIn's
// errors it returns CheckSignIn's, which come only after the password was
// verified.
func (s *Service) SignInWithContact(ctx context.Context, c Credentials, columns []string) (*authz.User, *dataverse.Contact, error) {
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
// the account is active: it runs the check and, when it fails, clears
// the failure counts as a refusal for the account's status does. A
// refusal that will be answered like a wrong password (no
// Options.ExplainRefusals) stays counted like one.
func (s *Service) gateSignIn(ctx context.Context, u *authz.User, client string, ev audit.Event, run *signInRun) error {
	var cols []string
	if run != nil {
		cols = run.columns
	}
	c, err := s.checkSignIn(ctx, u, cols, ev)
	if err != nil && (s.explain || !errors.Is(err, ErrRefused)) {
		if rerr := s.store.ClearSignInFailures(ctx, u.ID, client, s.now()); rerr != nil {
			s.log.WarnContext(ctx, "reset sign-in failures after a refused check", "user_id", u.ID, "err", rerr)
		}
	}
	if err != nil {
		return err
	}
	if run != nil {
		run.contact = c
	}
	return nil
}

func (s *Service) checkSignIn(ctx context.Context, u *authz.User, columns []string, ev audit.Event) (*dataverse.Contact, error) {
	if !s.checked(u) {
		return nil, nil
	}
	if ev.Type == "" {
		ev.Type = audit.EventSignInFailed
	}
	c, err := s.resolver.Resolve(ctx, u, s.checkColumns(columns), true)
	var berr *binding.Error
	switch {
	case errors.As(err, &berr):
		return nil, s.refuse(ctx, ev, berr.Reason)
	case errors.Is(err, dataverse.ErrUnavailable):
		// A sign-in refused for an outage is audited; a session riding out
		// an outage is not (it would write once per request): the proxy
		// counts those in metrics and logs.
		if ev.Type == audit.EventSignInFailed {
			ev.Detail = binding.ReasonDirectoryUnavailable
			s.audit.Record(ctx, ev)
		}
		return nil, fmt.Errorf("signin: sign-in check: %w", err)
	case err != nil:
		ev.Detail = binding.ReasonDirectoryError
		s.audit.Record(ctx, ev)
		return nil, fmt.Errorf("signin: sign-in check: %w", err)
	}
	return s.admit(ctx, u, c, columns, ev)
}

// checked reports whether the sign-in check applies to u.
func (s *Service) checked(u *authz.User) bool {
	return s.check.Enabled && u.Binding.Mode != "" && u.Binding.Mode != authz.BindingNone
}

// checkColumns are the columns the check reads: the caller's, the extra
// filter's and the synced fields'.
func (s *Service) checkColumns(columns []string) []string {
	cols := withColumns(columns, s.check.Extra.Columns())
	if s.check.PasswordChangeColumn != "" {
		cols = withColumns(cols, []string{s.check.PasswordChangeColumn})
	}
	if s.puller != nil {
		cols = withColumns(cols, s.puller.Columns())
	}
	return cols
}

// withColumns returns a new slice of cols followed by the extra columns
// not among them.
func withColumns(cols []string, extra []string) []string {
	out := append([]string(nil), cols...)
	for _, c := range extra {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// refuse audits a refusal with reason and returns its error.
func (s *Service) refuse(ctx context.Context, ev audit.Event, reason string) error {
	ev.Detail = reason
	s.audit.Record(ctx, ev)
	return &RefusedError{Reason: reason}
}

// admit applies the checks to u's resolved contact c: active, logon
// enabled when required, the extra filter. When c passes, the synced
// fields are pulled into u's account and c is returned with exactly
// columns.
func (s *Service) admit(ctx context.Context, u *authz.User, c *dataverse.Contact, columns []string, ev audit.Event) (*dataverse.Contact, error) {
	if !c.Active {
		return nil, s.refuse(ctx, ev, binding.ReasonContactInactive)
	}
	if s.check.RequireLogonEnabled && !c.LogonEnabled {
		return nil, s.refuse(ctx, ev, binding.ReasonContactLogonDisabled)
	}
	if s.check.Extra != nil {
		conds, err := s.check.Extra.Conditions(u)
		if err != nil {
			return nil, s.refuse(ctx, ev, binding.ReasonUserFieldEmpty)
		}
		if !dataverse.MatchesAll(c, conds) {
			return nil, s.refuse(ctx, ev, binding.ReasonContactFilter)
		}
	}
	if s.puller != nil {
		s.puller.Pull(ctx, u, c)
	}
	// Only a sign-in (not a session's revalidation, which may read a
	// cached snapshot from before the column was cleared) forces the
	// change; the session keeps the flag until the change is done.
	if col := s.check.PasswordChangeColumn; col != "" && ev.Type == audit.EventSignInFailed && c.Columns[col] == true {
		u.MustChangePassword = true
	}
	c.KeepColumns(columns)
	return c, nil
}

// RevalidateContact re-runs the sign-in check for a signed-in user, for a
// session whose snapshot of contact contactID is due: it returns the user
// as stored (with the fields the check just pulled from the contact) and
// the fresh snapshot (columns as for SignInWithContact); a nil contact when
// the user is no longer bound or the check is off; an error wrapping ErrRefused
// when the user may no longer be signed in (the reason audited as
// audit.EventSessionRevoked); an error wrapping dataverse.ErrUnavailable when
// Dataverse cannot answer; authz.ErrNotFound when the user is gone; or an
// error wrapping authz.ErrStoreUnavailable when the account store could
// not be read, about which nothing was decided.
//
// With Options.Snapshots the contact is read through that shared cache,
// and the binding is confirmed by checking that the cached contact still
// satisfies it (the lookup names it; its username or custom conditions
// still match). A contact that no longer satisfies it, or an empty
// contactID, is resolved afresh as at sign-in, which may bind the session
// to another contact.
func (s *Service) RevalidateContact(ctx context.Context, userID, contactID string, columns []string) (*authz.User, *dataverse.Contact, error) {
	u, err := s.store.UserByID(ctx, userID)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		return nil, nil, err
	case err != nil:
		return nil, nil, fmt.Errorf("signin: revalidate contact: %w: %w", authz.ErrStoreUnavailable, err)
	}
	c, err := s.revalidate(ctx, u, contactID, columns)
	if err != nil {
		return nil, nil, err
	}
	return u, c, nil
}

// revalidate is RevalidateContact for the account u as just read.
func (s *Service) revalidate(ctx context.Context, u *authz.User, contactID string, columns []string) (*dataverse.Contact, error) {
	ev := audit.Event{Type: audit.EventSessionRevoked, Actor: u.ID, UserID: u.ID}
	if !s.checked(u) || s.snapshots == nil || contactID == "" {
		return s.checkSignIn(ctx, u, columns, ev)
	}
	conds, err := s.resolver.Conditions(u, contactID)
	if err != nil {
		return nil, s.refuse(ctx, ev, binding.ReasonUserFieldEmpty)
	}
	cached, err := s.snapshots.ContactSnapshot(ctx, strings.ToLower(contactID), withColumns(s.checkColumns(columns), dataverse.ConditionColumns(conds)))
	switch {
	case errors.Is(err, dataverse.ErrContactNotFound):
		return s.checkSignIn(ctx, u, columns, ev)
	case err != nil:
		return nil, fmt.Errorf("signin: revalidate contact: %w", err)
	}
	c := cached.Clone()
	if conds == nil || !dataverse.MatchesAll(c, conds) {
		return s.checkSignIn(ctx, u, columns, ev)
	}
	return s.admit(ctx, u, c, columns, ev)
}
