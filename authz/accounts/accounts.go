// Package accounts creates and changes gateway accounts: passwords, roles,
// status, bindings to Dataverse contacts (one at a time or in bulk) and
// deletion, each audited and sent as a lifecycle event through the outbox
// in the same transaction. It keeps the break-glass account: the last
// active, unbound administrator cannot be demoted, disabled, bound or
// deleted.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/dataverse"
)

// Store is the part of the account store accounts use. Methods return
// authz.ErrNotFound, authz.ErrConflict and authz.ErrStale as documented,
// wrapped or not, and any other error for a failure of the database itself.
type Store interface {
	// UserByID returns the user with that id, or authz.ErrNotFound.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// UserByLogin returns the user whose username or email equals login
	// after authz.NormalizeLogin, or authz.ErrNotFound. When one user's
	// username equals another user's email, the username match wins.
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	// ListUsers returns users ordered by normalised username, filtered by f.
	ListUsers(ctx context.Context, f authz.UserFilter) ([]*authz.User, error)
	// CountUsers returns how many users f selects, its paging aside.
	CountUsers(ctx context.Context, f authz.UserFilter) (int, error)
	// CreateUserAndEnqueue inserts u and enqueues events in the outbox, in
	// one transaction: either the user and every event are stored, or none
	// of them. An empty u.ID is replaced by a random one and zero
	// CreatedAt/UpdatedAt by the store's clock; the stored values are
	// written back into u, with times truncated to milliseconds. A
	// duplicate username or email (case-insensitive) gives
	// authz.ErrConflict. Events with an empty UserID get u.ID.
	CreateUserAndEnqueue(ctx context.Context, u *authz.User, events ...outbox.Event) error
	// UpdateUserAndEnqueue saves every field of u except ID and CreatedAt,
	// provided the stored row still has u.UpdatedAt (optimistic
	// concurrency), and enqueues events, in one transaction; then it sets
	// u.UpdatedAt to the new, strictly later, value. A changed row gives
	// authz.ErrStale, a missing one authz.ErrNotFound, a duplicate username
	// or email authz.ErrConflict.
	UpdateUserAndEnqueue(ctx context.Context, u *authz.User, events ...outbox.Event) error
	// DeleteUser deletes the user with that id and enqueues events in the
	// outbox, in one transaction. A missing user gives authz.ErrNotFound
	// and enqueues nothing.
	DeleteUser(ctx context.Context, id string, events ...outbox.Event) error
	// UpdateUserKeepingBreakGlass is UpdateUserAndEnqueue that keeps a
	// break-glass account (see authz.IsBreakGlass) for role: when the
	// stored user is one and u is not, and no other user is one, it rolls
	// back and returns an error wrapping authz.ErrLastBreakGlassAdmin. The
	// check reads the stored rows in the same transaction as the change,
	// and the calls of this method and DeleteUserKeepingBreakGlass run one
	// at a time (across replicas too), so two of them cannot each take away
	// one of the last two break-glass accounts; other methods take no part
	// in that serialisation. UpdateUserAndEnqueue and DeleteUser check
	// nothing, so every change that may take away a break-glass account
	// must come here. An empty role makes it UpdateUserAndEnqueue.
	UpdateUserKeepingBreakGlass(ctx context.Context, u *authz.User, role string, events ...outbox.Event) error
	// DeleteUserKeepingBreakGlass is DeleteUser that keeps a break-glass
	// account for role, with the check and the serialisation of
	// UpdateUserKeepingBreakGlass: deleting the last one gives an error
	// wrapping authz.ErrLastBreakGlassAdmin and deletes nothing. An empty
	// role makes it DeleteUser.
	DeleteUserKeepingBreakGlass(ctx context.Context, id, role string, events ...outbox.Event) error
	// ResetSignInFailures clears the user's failure count and lockout,
	// and every client address's on the account, without touching
	// anything else (no security stamp, no outbox event). It returns how
	// many addresses had a failure count on the account and how many of
	// them were locked out at now. A missing user gives authz.ErrNotFound.
	ResetSignInFailures(ctx context.Context, id string, now time.Time) (addresses, locked int, err error)
}

// Binder gives a new account its binding and checks the contact a lookup
// binding names; *binding.Resolver satisfies it.
type Binder interface {
	// InitialBinding returns the binding a new account u gets: the default
	// mode, or the contact the email auto-map finds. It never fails: when
	// Dataverse cannot answer the default applies.
	InitialBinding(ctx context.Context, u *authz.User) authz.Binding
	// BoundTo reads contact id from Dataverse and returns it with the users
	// other than exceptID bound to it. A missing contact gives an error
	// wrapping dataverse.ErrContactNotFound, no directory
	// binding.ErrNoDirectory.
	BoundTo(ctx context.Context, id, exceptID string) (*dataverse.Contact, []*authz.User, error)
}

// Why a lookup binding is refused: BindingRefusedError.Reason.
const (
	// RefusedContactNotFound: Dataverse has no contact with the id.
	RefusedContactNotFound = "contact_not_found"
	// RefusedContactBound: another user is bound to the contact, and the
	// change did not allow a shared contact.
	RefusedContactBound = "contact_bound"
	// RefusedNoDirectory: no Dataverse is configured, so the contact
	// cannot be checked.
	RefusedNoDirectory = "no_dataverse"
)

// ErrBindingRefused matches (errors.Is) every *BindingRefusedError.
var ErrBindingRefused = errors.New("accounts: binding refused")

// BindingRefusedError reports a lookup binding to a contact that does not
// exist, or that another user is bound to. Its text is meant for the
// administrator who asked for the change.
type BindingRefusedError struct {
	// Reason is one of the Refused* constants.
	Reason string
	// ContactID is the contact the binding names.
	ContactID string
	// Others are the usernames of the users already bound to it, for
	// RefusedContactBound.
	Others []string
}

// Error implements error.
func (e *BindingRefusedError) Error() string {
	switch e.Reason {
	case RefusedContactNotFound:
		return fmt.Sprintf("accounts: there is no contact %s in Dataverse", e.ContactID)
	case RefusedContactBound:
		return fmt.Sprintf("accounts: contact %s is already bound to %s; allow a shared contact to bind it anyway", e.ContactID, strings.Join(e.Others, ", "))
	case RefusedNoDirectory:
		return fmt.Sprintf("accounts: contact %s cannot be checked: no Dataverse is configured", e.ContactID)
	}
	return "accounts: binding refused: " + e.Reason
}

// Is reports whether target is ErrBindingRefused.
func (e *BindingRefusedError) Is(target error) bool { return target == ErrBindingRefused }

// Options configure a Service. Every field without a documented zero value
// is required.
type Options struct {
	// Password are the argon2id parameters of new password hashes; they
	// must pass password.Params.Validate.
	Password password.Params
	// Policy is the rule a password must pass to be set (CreateUser,
	// SetPassword); it must pass password.Policy.Validate. The zero value
	// is the default policy (password.DefaultMinLength).
	Policy password.Policy
	// Binder gives new accounts their binding.
	Binder Binder
	// Audit receives every change.
	Audit *audit.Log
	// BreakGlassRole is the local role of break-glass administrators,
	// typically "admin": SetRoles, SetStatus, SetBinding, SetBindings and
	// DeleteUser refuse (authz.ErrLastBreakGlassAdmin) a change after which
	// no active, unbound user holds it. Empty turns the guard off, which
	// lets an operator leave no one able to sign in while Dataverse is
	// down: dangerous outside tests.
	BreakGlassRole string
	// Notify, when set, is called after a change that enqueued outbox
	// events has been committed, typically outbox.Worker.Notify. It must
	// not block. Nil leaves the events to the worker's next poll.
	Notify func()
	// Tokens revokes a user's outstanding reset and set-password links
	// whenever the password is set, by any path (see SetUserPassword). Nil
	// revokes nothing: dangerous outside tests, a reset link mailed before
	// a password change would then still work after it.
	Tokens TokenRevoker
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures the caller does not see; nil discards them.
	Logger *slog.Logger
}

// Service creates and changes accounts on top of a Store. Build it with
// New; it is safe for concurrent use.
type Service struct {
	store          Store
	params         password.Params
	policy         password.Policy
	binder         Binder
	audit          *audit.Log
	breakGlassRole string
	notify         func()
	tokens         TokenRevoker
	now            func() time.Time
	log            *slog.Logger
}

// New returns the accounts service over store.
func New(store Store, o Options) (*Service, error) {
	var errs []error
	if store == nil || o.Binder == nil || o.Audit == nil {
		errs = append(errs, errors.New("accounts: nil store, binder or audit log"))
	}
	if err := o.Password.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Service{store: store, params: o.Password, policy: o.Policy, binder: o.Binder, audit: o.Audit,
		breakGlassRole: o.BreakGlassRole, notify: o.Notify, tokens: o.Tokens, now: o.Now, log: o.Logger}
	if s.notify == nil {
		s.notify = func() {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// PasswordPolicy returns the rule passwords must pass to be set
// (Options.Policy), for example to generate one that passes.
func (s *Service) PasswordPolicy() password.Policy { return s.policy }

// UserByID returns the user with that id (authz.ErrNotFound if none), for
// example to compare a session's security stamp.
func (s *Service) UserByID(ctx context.Context, id string) (*authz.User, error) {
	return s.store.UserByID(ctx, id)
}

// isBreakGlass reports whether u is a break-glass account for the
// configured role; false for everyone when the guard is off.
func (s *Service) isBreakGlass(u *authz.User) bool { return authz.IsBreakGlass(u, s.breakGlassRole) }

// NewUser is the input of CreateUser.
type NewUser struct {
	// Username is 1 to MaxUsernameLen ASCII letters, digits and "._-@";
	// surrounding spaces are trimmed.
	Username string
	// Email is a bare address (no display name), at most MaxEmailLen bytes.
	Email string
	// Password must pass the Options.Policy for this username and email
	// (password.Policy.Check); empty means the account cannot
	// sign in with a password (for example until an invitation is redeemed).
	Password string
	// FirstName, LastName and DisplayName are optional, at most MaxNameLen characters each.
	FirstName, LastName, DisplayName string
	// Roles are local role names (see ValidateRoles); may be empty.
	Roles []string
	// Status is the initial state; empty means StatusActive.
	Status authz.Status
	// MustChangePassword forces a password change after the next sign-in.
	MustChangePassword bool
}

// CreateUser validates nu and creates the account; actor is recorded in the
// audit trail. Bad input gives a *ValidationError, a taken username or email
// ErrConflict. The account's binding comes from Options.Binding (the
// default mode, or an email auto-map).
func (s *Service) CreateUser(ctx context.Context, nu NewUser, actor string) (*authz.User, error) {
	now := s.now()
	u := &authz.User{
		Username:           strings.TrimSpace(nu.Username),
		Email:              strings.TrimSpace(nu.Email),
		FirstName:          strings.TrimSpace(nu.FirstName),
		LastName:           strings.TrimSpace(nu.LastName),
		DisplayName:        strings.TrimSpace(nu.DisplayName),
		Status:             nu.Status,
		MustChangePassword: nu.MustChangePassword,
		SecurityStamp:      authz.NewID(),
		Binding:            authz.Binding{Mode: authz.BindingNone},
		CreatedAt:          now,
		UpdatedAt:          now,
	}
	if u.Status == "" {
		u.Status = authz.StatusActive
	}
	if err := authz.ValidateUsername(u.Username); err != nil {
		return nil, err
	}
	if err := authz.ValidateEmail(u.Email); err != nil {
		return nil, err
	}
	for _, f := range [...]struct{ field, v string }{{"first_name", u.FirstName}, {"last_name", u.LastName}, {"display_name", u.DisplayName}} {
		if utf8.RuneCountInString(f.v) > authz.MaxNameLen || !utf8.ValidString(f.v) {
			return nil, &authz.ValidationError{Field: f.field, Message: fmt.Sprintf("Names must be valid text of at most %d characters.", authz.MaxNameLen)}
		}
	}
	if !u.Status.Valid() {
		return nil, &authz.ValidationError{Field: "status", Message: "The status must be pending, active or disabled."}
	}
	roles, err := authz.ValidateRoles(nu.Roles)
	if err != nil {
		return nil, err
	}
	u.Roles = roles
	if nu.Password != "" {
		if err := s.policy.Check(nu.Password, password.Subject{Username: u.Username, Email: u.Email}); err != nil {
			return nil, err
		}
		if u.PasswordHash, err = password.Hash(nu.Password, s.params); err != nil {
			return nil, err
		}
	}
	// The unique indexes only compare username with username and email with
	// email; refuse a username that is someone's email and the reverse, so
	// that a login names one account.
	for _, login := range []string{u.Username, u.Email} {
		switch _, err := s.store.UserByLogin(ctx, login); {
		case err == nil:
			return nil, authz.ErrConflict
		case !errors.Is(err, authz.ErrNotFound):
			return nil, fmt.Errorf("accounts: create user: %w", err)
		}
	}
	u.Binding = s.binder.InitialBinding(ctx, u)
	// The id is chosen here so that the event's snapshot carries it.
	u.ID = authz.NewID()
	ev, err := lifecycle.NewEvent(lifecycle.Created, u, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateUserAndEnqueue(ctx, u, ev); err != nil {
		return nil, fmt.Errorf("accounts: create user: %w", err)
	}
	s.notify()
	s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventUserCreated, Actor: actor, UserID: u.ID, Detail: string(u.Status)})
	return u, nil
}

// SetPassword checks pw against the password policy (Options.Policy, with
// the account's username and email) and makes it the password of the
// account named by login (username or email). It clears any lockout and
// keeps the must-change flag as it is, rotates the security stamp,
// which ends the user's other sessions, and revokes the user's outstanding
// reset and set-password links. A refused password gives a
// *password.RuleError, which wraps a *authz.ValidationError; a missing
// account ErrNotFound.
func (s *Service) SetPassword(ctx context.Context, login, pw, actor string) error {
	u0, err := s.store.UserByLogin(ctx, login)
	if err != nil {
		return fmt.Errorf("accounts: set password: %w", err)
	}
	_, err = s.SetUserPassword(ctx, u0.ID, pw, PasswordChange{Actor: actor, MustChange: u0.MustChangePassword})
	return err
}

// SetRoles replaces the local roles of the account named by login and
// rotates its security stamp. It refuses (ErrLastBreakGlassAdmin) to take
// the break-glass role from the last break-glass administrator.
func (s *Service) SetRoles(ctx context.Context, login string, roles []string, actor string) error {
	roles, err := authz.ValidateRoles(roles)
	if err != nil {
		return err
	}
	u, err := s.modify(ctx, login, lifecycle.Updated, func(u *authz.User) { u.Roles = roles })
	if err != nil {
		return fmt.Errorf("accounts: set roles: %w", err)
	}
	s.audit.Record(ctx, audit.Event{Type: audit.EventRolesSet, Actor: actor, UserID: u.ID, Detail: strings.Join(roles, ",")})
	return nil
}

// SetStatus changes the state of the account named by login and rotates its
// security stamp, so disabling it ends its sessions at their next check.
// It refuses (ErrLastBreakGlassAdmin) to deactivate the last break-glass
// administrator.
func (s *Service) SetStatus(ctx context.Context, login string, st authz.Status, actor string) error {
	if !st.Valid() {
		return &authz.ValidationError{Field: "status", Message: "The status must be pending, active or disabled."}
	}
	u, err := s.modify(ctx, login, lifecycle.Updated, func(u *authz.User) { u.Status = st })
	if err != nil {
		return fmt.Errorf("accounts: set status: %w", err)
	}
	s.audit.Record(ctx, audit.Event{Type: audit.EventStatusSet, Actor: actor, UserID: u.ID, Detail: string(st)})
	return nil
}

// SetBinding ties the account named by login to a Dataverse contact, or
// unties it with a zero Binding or mode none, and rotates its security
// stamp. A lookup binding needs a Ref with LogicalName "contact" and a
// non-nil GUID Id (stored in lower case); the other modes take no Ref. Bad
// input gives a *authz.ValidationError. A lookup is checked in Dataverse
// first: a contact that does not exist, or that another user is bound to,
// gives a *BindingRefusedError (SetBindings can allow a shared contact);
// Dataverse being unavailable an error wrapping dataverse.ErrUnavailable.
// It enqueues lifecycle.Bound, or lifecycle.Unbound for mode none, in the
// same transaction. It refuses (ErrLastBreakGlassAdmin) to bind the last
// break-glass administrator.
func (s *Service) SetBinding(ctx context.Context, login string, b authz.Binding, actor string) error {
	_, err := s.setBinding(ctx, func() (*authz.User, error) { return s.store.UserByLogin(ctx, login) }, b, false, actor)
	return err
}

// setBinding is SetBinding of the account load reads (see modifyWith),
// allowing a contact other users are bound to when allowShared; it returns
// the account as saved.
func (s *Service) setBinding(ctx context.Context, load func() (*authz.User, error), b authz.Binding, allowShared bool, actor string) (*authz.User, error) {
	b, err := authz.ValidateBinding(b)
	if err != nil {
		return nil, err
	}
	u0, err := load()
	if err != nil {
		return nil, fmt.Errorf("accounts: set binding: %w", err)
	}
	var shared []*authz.User
	if b.Mode == authz.BindingLookup {
		if shared, err = s.checkLookup(ctx, u0, b.Ref.ID, allowShared); err != nil {
			return nil, err
		}
	}
	typ := lifecycle.Bound
	if b.Mode == authz.BindingNone {
		typ = lifecycle.Unbound
	}
	// The first attempt saves the account just read; retries reread it by
	// id, so that they cannot drift to another account.
	first := u0
	reload := func() (*authz.User, error) {
		if first != nil {
			v := first
			first = nil
			return v, nil
		}
		return s.store.UserByID(ctx, u0.ID)
	}
	u, err := s.modifyWith(ctx, reload, typ, func(u *authz.User) { u.Binding = b })
	if err != nil {
		return nil, fmt.Errorf("accounts: set binding: %w", err)
	}
	s.audit.Record(ctx, audit.Event{Type: audit.EventBindingSet, Actor: actor, UserID: u.ID, Detail: string(b.Mode)})
	if len(shared) > 0 {
		ids := make([]string, len(shared))
		for i, o := range shared {
			ids[i] = o.ID
		}
		s.audit.Record(ctx, audit.Event{Type: audit.EventBindingShared, Actor: actor, UserID: u.ID,
			Detail: "contact " + b.Ref.ID + " also bound to " + strings.Join(ids, ",")})
	}
	return u, nil
}

// checkLookup checks in Dataverse that contact id exists and that no user
// but u is bound to it; with allowShared the users bound to it are returned
// instead of a refusal.
func (s *Service) checkLookup(ctx context.Context, u *authz.User, id string, allowShared bool) ([]*authz.User, error) {
	_, others, err := s.binder.BoundTo(ctx, id, u.ID)
	switch {
	case errors.Is(err, dataverse.ErrContactNotFound):
		return nil, &BindingRefusedError{Reason: RefusedContactNotFound, ContactID: id}
	case errors.Is(err, binding.ErrNoDirectory):
		return nil, &BindingRefusedError{Reason: RefusedNoDirectory, ContactID: id}
	case err != nil:
		return nil, fmt.Errorf("accounts: set binding: check contact: %w", err)
	}
	if len(others) > 0 && !allowShared {
		names := make([]string, len(others))
		for i, o := range others {
			names[i] = o.Username
		}
		return nil, &BindingRefusedError{Reason: RefusedContactBound, ContactID: id, Others: names}
	}
	return others, nil
}

// DeleteUser deletes the account named by login, which ends its sessions at
// their next check, and enqueues lifecycle.Deleted with a snapshot of the
// account in the same transaction. The audit trail keeps the account's
// events. A missing account gives ErrNotFound. It refuses
// (ErrLastBreakGlassAdmin) to delete the last break-glass administrator.
func (s *Service) DeleteUser(ctx context.Context, login, actor string) error {
	u, err := s.store.UserByLogin(ctx, login)
	if err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	now := s.now()
	ev, err := lifecycle.NewEvent(lifecycle.Deleted, u, now)
	if err != nil {
		return err
	}
	// With the guard on every delete goes through the guarded store call,
	// which rereads the row under its lock: a delete has no version check,
	// so u may be stale (promoted to break-glass admin since it was read).
	// Deletes are rare; the lock costs little.
	if s.breakGlassRole != "" {
		err = s.store.DeleteUserKeepingBreakGlass(ctx, u.ID, s.breakGlassRole, ev)
	} else {
		err = s.store.DeleteUser(ctx, u.ID, ev)
	}
	if err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	s.notify()
	s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventUserDeleted, Actor: actor, UserID: u.ID, Detail: u.Username})
	return nil
}

// ListUsers returns users ordered by normalised username, filtered by f.
func (s *Service) ListUsers(ctx context.Context, f authz.UserFilter) ([]*authz.User, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	return s.store.ListUsers(ctx, f)
}

// CountUsers returns how many users f selects, its paging aside.
func (s *Service) CountUsers(ctx context.Context, f authz.UserFilter) (int, error) {
	if err := f.Check(); err != nil {
		return 0, err
	}
	return s.store.CountUsers(ctx, f)
}

// modifyAttempts bounds the read-modify-write retries of modify.
const modifyAttempts = 5

// modify applies change to the account named by login, rotates its
// security stamp and saves it together with a lifecycle event of type typ,
// rereading and retrying when another writer got in between.
func (s *Service) modify(ctx context.Context, login, typ string, change func(*authz.User)) (*authz.User, error) {
	return s.modifyWith(ctx, func() (*authz.User, error) { return s.store.UserByLogin(ctx, login) }, typ, change)
}

// modifyWith is modify for the account load reads; load is called again
// on every retry.
//
// A change that turns a break-glass account into something else is saved
// with UpdateUserKeepingBreakGlass, which refuses it atomically when it is
// the last one. Every other change takes the cheap path without the
// guard's lock: the optimistic update fails (ErrStale) unless the stored
// row is still the one read, so a change judged harmless here cannot take
// away a break-glass account that appeared meanwhile.
func (s *Service) modifyWith(ctx context.Context, load func() (*authz.User, error), typ string, change func(*authz.User)) (*authz.User, error) {
	for range modifyAttempts {
		u, err := load()
		if err != nil {
			return nil, err
		}
		was := s.isBreakGlass(u)
		change(u)
		u.SecurityStamp = authz.NewID()
		ev, err := lifecycle.NewEvent(typ, u, s.now())
		if err != nil {
			return nil, err
		}
		if was && !s.isBreakGlass(u) {
			err = s.store.UpdateUserKeepingBreakGlass(ctx, u, s.breakGlassRole, ev)
		} else {
			err = s.store.UpdateUserAndEnqueue(ctx, u, ev)
		}
		if errors.Is(err, authz.ErrStale) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.notify()
		return u, nil
	}
	return nil, authz.ErrStale
}
