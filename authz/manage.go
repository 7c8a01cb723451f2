package authz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
// ErrConflict.
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
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, fmt.Errorf("authz: create user: %w", err)
	}
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
	u, err := s.modify(ctx, login, func(u *User) {
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
// rotates its security stamp.
func (s *Service) SetRoles(ctx context.Context, login string, roles []string, actor string) error {
	roles, err := ValidateRoles(roles)
	if err != nil {
		return err
	}
	u, err := s.modify(ctx, login, func(u *User) { u.Roles = roles })
	if err != nil {
		return fmt.Errorf("authz: set roles: %w", err)
	}
	s.audit(ctx, AuditEvent{Type: EventRolesSet, Actor: actor, UserID: u.ID, Detail: strings.Join(roles, ",")})
	return nil
}

// SetStatus changes the state of the account named by login and rotates its
// security stamp, so disabling it ends its sessions at their next check.
func (s *Service) SetStatus(ctx context.Context, login string, st Status, actor string) error {
	if !st.Valid() {
		return &ValidationError{Field: "status", Message: "The status must be pending, active or disabled."}
	}
	u, err := s.modify(ctx, login, func(u *User) { u.Status = st })
	if err != nil {
		return fmt.Errorf("authz: set status: %w", err)
	}
	s.audit(ctx, AuditEvent{Type: EventStatusSet, Actor: actor, UserID: u.ID, Detail: string(st)})
	return nil
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
// security stamp and saves it, rereading and retrying when another writer
// got in between.
func (s *Service) modify(ctx context.Context, login string, change func(*User)) (*User, error) {
	for range modifyAttempts {
		u, err := s.store.UserByLogin(ctx, login)
		if err != nil {
			return nil, err
		}
		change(u)
		u.SecurityStamp = newStamp()
		err = s.store.UpdateUser(ctx, u)
		if errors.Is(err, ErrStale) {
			continue
		}
		if err != nil {
			return nil, err
		}
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
