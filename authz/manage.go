package authz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/crmgate/crmgate/dataverse"
	"maps"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// ValidationError reports bad input in one field. Message is written for
// the person who typed it and is safe to show.
type ValidationError struct {
	// Field names the input, e.g. "username", "email", "password", "roles", "status".
	Field string
	// Message says what is wrong, as a sentence.
	Message string
}

// Error implements error.
func (e *ValidationError) Error() string {
	return "authz: invalid " + e.Field + ": " + e.Message
}

// Limits of the account fields.
const (
	MaxUsernameLen = 64
	MaxEmailLen    = 254
	MaxNameLen     = 200
	MaxRoleLen     = 64
)

// NewUser is the input of CreateUser.
type NewUser struct {
	// Username is 1 to MaxUsernameLen ASCII letters, digits and "._-@";
	// surrounding spaces are trimmed.
	Username string
	// Email is a bare address (no display name), at most MaxEmailLen bytes.
	Email string
	// Password must pass ValidatePassword; empty means the account cannot
	// sign in with a password (for example until an invitation is redeemed).
	Password string
	// FirstName, LastName and DisplayName are optional, at most MaxNameLen characters each.
	FirstName, LastName, DisplayName string
	// Roles are local role names (see ValidateRoles); may be empty.
	Roles []string
	// Status is the initial state; empty means StatusActive.
	Status Status
	// MustChangePassword forces a password change after the next sign-in.
	MustChangePassword bool
}

// CreateUser validates nu and creates the account; actor is recorded in the
// audit trail. Bad input gives a *ValidationError, a taken username or email
// ErrConflict. The account's binding comes from Options.Binding (the
// default mode, or an email auto-map).
func (s *Service) CreateUser(ctx context.Context, nu NewUser, actor string) (*User, error) {
	now := s.now()
	u := &User{
		Username:           strings.TrimSpace(nu.Username),
		Email:              strings.TrimSpace(nu.Email),
		FirstName:          strings.TrimSpace(nu.FirstName),
		LastName:           strings.TrimSpace(nu.LastName),
		DisplayName:        strings.TrimSpace(nu.DisplayName),
		Status:             nu.Status,
		MustChangePassword: nu.MustChangePassword,
		SecurityStamp:      newStamp(),
		Binding:            Binding{Mode: BindingNone},
		CreatedAt:          now,
		UpdatedAt:          now,
	}
	if u.Status == "" {
		u.Status = StatusActive
	}
	if err := ValidateUsername(u.Username); err != nil {
		return nil, err
	}
	if err := ValidateEmail(u.Email); err != nil {
		return nil, err
	}
	for _, f := range [...]struct{ field, v string }{{"first_name", u.FirstName}, {"last_name", u.LastName}, {"display_name", u.DisplayName}} {
		if utf8.RuneCountInString(f.v) > MaxNameLen || !utf8.ValidString(f.v) {
			return nil, &ValidationError{Field: f.field, Message: fmt.Sprintf("Names must be valid text of at most %d characters.", MaxNameLen)}
		}
	}
	if !u.Status.Valid() {
		return nil, &ValidationError{Field: "status", Message: "The status must be pending, active or disabled."}
	}
	roles, err := ValidateRoles(nu.Roles)
	if err != nil {
		return nil, err
	}
	u.Roles = roles
	if nu.Password != "" {
		if err := ValidatePassword(nu.Password); err != nil {
			return nil, err
		}
		if u.PasswordHash, err = HashPassword(nu.Password, s.params); err != nil {
			return nil, err
		}
	}
	// The unique indexes only compare username with username and email with
	// email; refuse a username that is someone's email and the reverse, so
	// that a login names one account.
	for _, login := range []string{u.Username, u.Email} {
		switch _, err := s.store.UserByLogin(ctx, login); {
		case err == nil:
			return nil, ErrConflict
		case !errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("authz: create user: %w", err)
		}
	}
	u.Binding = s.initialBinding(ctx, u)
	// The id is chosen here so that the event's snapshot carries it.
	u.ID = newStamp()
	ev, err := lifecycleEvent(LifecycleCreated, u, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateUserAndEnqueue(ctx, u, ev); err != nil {
		return nil, fmt.Errorf("authz: create user: %w", err)
	}
	s.notify()
	s.audit(ctx, AuditEvent{Time: now, Type: EventUserCreated, Actor: actor, UserID: u.ID, Detail: string(u.Status)})
	return u, nil
}

// SetPassword validates pw and makes it the password of the account named
// by login (username or email). It clears any lockout and rotates the
// security stamp, which ends the user's other sessions.
func (s *Service) SetPassword(ctx context.Context, login, pw, actor string) error {
	if err := ValidatePassword(pw); err != nil {
		return err
	}
	h, err := HashPassword(pw, s.params)
	if err != nil {
		return err
	}
	u, err := s.modify(ctx, login, LifecycleUpdated, func(u *User) {
		u.PasswordHash = h
		u.FailedCount, u.LockoutUntil = 0, time.Time{}
	})
	if err != nil {
		return fmt.Errorf("authz: set password: %w", err)
	}
	s.audit(ctx, AuditEvent{Type: EventPasswordSet, Actor: actor, UserID: u.ID})
	return nil
}

// SetRoles replaces the local roles of the account named by login and
// rotates its security stamp. It refuses (ErrLastBreakGlassAdmin) to take
// the break-glass role from the last break-glass administrator.
func (s *Service) SetRoles(ctx context.Context, login string, roles []string, actor string) error {
	roles, err := ValidateRoles(roles)
	if err != nil {
		return err
	}
	u, err := s.modify(ctx, login, LifecycleUpdated, func(u *User) { u.Roles = roles })
	if err != nil {
		return fmt.Errorf("authz: set roles: %w", err)
	}
	s.audit(ctx, AuditEvent{Type: EventRolesSet, Actor: actor, UserID: u.ID, Detail: strings.Join(roles, ",")})
	return nil
}

// SetStatus changes the state of the account named by login and rotates its
// security stamp, so disabling it ends its sessions at their next check.
// It refuses (ErrLastBreakGlassAdmin) to deactivate the last break-glass
// administrator.
func (s *Service) SetStatus(ctx context.Context, login string, st Status, actor string) error {
	if !st.Valid() {
		return &ValidationError{Field: "status", Message: "The status must be pending, active or disabled."}
	}
	u, err := s.modify(ctx, login, LifecycleUpdated, func(u *User) { u.Status = st })
	if err != nil {
		return fmt.Errorf("authz: set status: %w", err)
	}
	s.audit(ctx, AuditEvent{Type: EventStatusSet, Actor: actor, UserID: u.ID, Detail: string(st)})
	return nil
}

// SetBinding ties the account named by login to a Dataverse contact, or
// unties it with a zero Binding or mode none, and rotates its security
// stamp. A lookup binding needs a Ref with LogicalName "contact" and a
// non-nil GUID Id (stored in lower case); the other modes take no Ref. Bad
// input gives a *ValidationError. It enqueues LifecycleBound, or
// LifecycleUnbound for mode none, in the same transaction. It refuses
// (ErrLastBreakGlassAdmin) to bind the last break-glass administrator.
func (s *Service) SetBinding(ctx context.Context, login string, b Binding, actor string) error {
	_, err := s.setBinding(ctx, func() (*User, error) { return s.store.UserByLogin(ctx, login) }, b, actor)
	return err
}

// setBinding is SetBinding of the account load reads (see modifyWith); it
// returns the account as saved.
func (s *Service) setBinding(ctx context.Context, load func() (*User, error), b Binding, actor string) (*User, error) {
	b, err := ValidateBinding(b)
	if err != nil {
		return nil, err
	}
	typ := LifecycleBound
	if b.Mode == BindingNone {
		typ = LifecycleUnbound
	}
	u, err := s.modifyWith(ctx, load, typ, func(u *User) { u.Binding = b })
	if err != nil {
		return nil, fmt.Errorf("authz: set binding: %w", err)
	}
	s.audit(ctx, AuditEvent{Type: EventBindingSet, Actor: actor, UserID: u.ID, Detail: string(b.Mode)})
	return u, nil
}

// DeleteUser deletes the account named by login, which ends its sessions at
// their next check, and enqueues LifecycleDeleted with a snapshot of the
// account in the same transaction. The audit trail keeps the account's
// events. A missing account gives ErrNotFound. It refuses
// (ErrLastBreakGlassAdmin) to delete the last break-glass administrator.
func (s *Service) DeleteUser(ctx context.Context, login, actor string) error {
	u, err := s.store.UserByLogin(ctx, login)
	if err != nil {
		return fmt.Errorf("authz: delete user: %w", err)
	}
	now := s.now()
	ev, err := lifecycleEvent(LifecycleDeleted, u, now)
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
		return fmt.Errorf("authz: delete user: %w", err)
	}
	s.notify()
	s.audit(ctx, AuditEvent{Time: now, Type: EventUserDeleted, Actor: actor, UserID: u.ID, Detail: u.Username})
	return nil
}

// ValidateBinding checks b and returns it normalised: an empty mode becomes
// BindingNone and a lookup's contact id is lower-cased. Only a lookup
// carries a Ref, whose Id must be a non-nil GUID and whose LogicalName must
// be "contact".
func ValidateBinding(b Binding) (Binding, error) {
	if b.Mode == "" {
		b.Mode = BindingNone
	}
	if !b.Mode.Valid() {
		return Binding{}, &ValidationError{Field: "binding", Message: "The binding mode must be none, lookup, username or custom."}
	}
	if b.Mode != BindingLookup {
		if b.Ref != nil {
			return Binding{}, &ValidationError{Field: "binding", Message: "Only a lookup binding names a contact."}
		}
		return b, nil
	}
	if b.Ref == nil {
		return Binding{}, &ValidationError{Field: "binding", Message: "A lookup binding needs the contact it points to."}
	}
	if b.Ref.LogicalName != "contact" {
		return Binding{}, &ValidationError{Field: "binding", Message: `A lookup binding must point to a "contact" row.`}
	}
	id, err := dataverse.ParseID(b.Ref.ID)
	if err != nil {
		return Binding{}, &ValidationError{Field: "binding", Message: "The contact id must be a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e."}
	}
	ref := *b.Ref
	ref.ID = id
	ref.KeyAttributes = maps.Clone(b.Ref.KeyAttributes)
	b.Ref = &ref
	return b, nil
}

// ListUsers returns users ordered by normalised username, filtered by f.
func (s *Service) ListUsers(ctx context.Context, f UserFilter) ([]*User, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, &ValidationError{Field: "status", Message: "The status must be pending, active or disabled."}
	}
	return s.store.ListUsers(ctx, f)
}

// modifyAttempts bounds the read-modify-write retries of modify.
const modifyAttempts = 5

// modify applies change to the account named by login, rotates its
// security stamp and saves it together with a lifecycle event of type typ,
// rereading and retrying when another writer got in between.
func (s *Service) modify(ctx context.Context, login, typ string, change func(*User)) (*User, error) {
	return s.modifyWith(ctx, func() (*User, error) { return s.store.UserByLogin(ctx, login) }, typ, change)
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
func (s *Service) modifyWith(ctx context.Context, load func() (*User, error), typ string, change func(*User)) (*User, error) {
	for range modifyAttempts {
		u, err := load()
		if err != nil {
			return nil, err
		}
		was := s.isBreakGlass(u)
		change(u)
		u.SecurityStamp = newStamp()
		ev, err := lifecycleEvent(typ, u, s.now())
		if err != nil {
			return nil, err
		}
		if was && !s.isBreakGlass(u) {
			err = s.store.UpdateUserKeepingBreakGlass(ctx, u, s.breakGlassRole, ev)
		} else {
			err = s.store.UpdateUserAndEnqueue(ctx, u, ev)
		}
		if errors.Is(err, ErrStale) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.notify()
		return u, nil
	}
	return nil, ErrStale
}

// newStamp returns a fresh random security stamp.
func newStamp() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read documents it)
	return hex.EncodeToString(b)
}

// ValidateUsername checks a username: 1 to MaxUsernameLen ASCII letters,
// digits and "._-@". ASCII only, because NormalizeLogin folds case with
// strings.ToLower and look-alike letters from other scripts would let two
// accounts appear to have one name.
func ValidateUsername(name string) error {
	bad := &ValidationError{Field: "username",
		Message: fmt.Sprintf("The username must be 1 to %d letters, digits or . _ - @ characters.", MaxUsernameLen)}
	if name == "" || len(name) > MaxUsernameLen {
		return bad
	}
	for _, r := range name {
		if !isASCIIAlnum(r) && !strings.ContainsRune("._-@", r) {
			return bad
		}
	}
	return nil
}

// ValidateEmail checks that email is one bare address of at most
// MaxEmailLen bytes, such as "ana@example.com" (no display name, no angle brackets).
func ValidateEmail(email string) error {
	bad := &ValidationError{Field: "email", Message: "The email address is not valid."}
	if email == "" || len(email) > MaxEmailLen {
		return bad
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return bad
	}
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(email, " \t\r\n") {
		return bad
	}
	return nil
}

// ValidateRoles checks role names (1 to MaxRoleLen ASCII letters, digits
// and "._:-"; no commas, since roles travel comma-separated in headers) and
// returns them with duplicates removed, in their first order.
func ValidateRoles(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		ok := r != "" && len(r) <= MaxRoleLen
		for _, c := range r {
			ok = ok && (isASCIIAlnum(c) || strings.ContainsRune("._:-", c))
		}
		if !ok {
			return nil, &ValidationError{Field: "roles",
				Message: fmt.Sprintf("Role names must be 1 to %d letters, digits or . _ : - characters.", MaxRoleLen)}
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func isASCIIAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
