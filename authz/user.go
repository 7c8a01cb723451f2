package authz

import (
	"github.com/crmgate/crmgate/dataverse"
	"slices"
	"strings"
	"time"
)

// Status is a user's account state.
type Status string

// The account states. The zero value is not a valid status.
const (
	// StatusPending is a registered user waiting for an administrator's approval.
	StatusPending Status = "pending"
	// StatusActive may sign in.
	StatusActive Status = "active"
	// StatusDisabled may not sign in; existing sessions end at their next security-stamp check.
	StatusDisabled Status = "disabled"
)

// Valid reports whether s is one of the defined states.
func (s Status) Valid() bool {
	return s == StatusPending || s == StatusActive || s == StatusDisabled
}

// BindingMode says how a user is tied to a Dataverse contact.
type BindingMode string

// The binding modes, as the README documents them. The zero value means BindingNone.
const (
	BindingNone     BindingMode = "none"
	BindingLookup   BindingMode = "lookup"
	BindingUsername BindingMode = "username"
	BindingCustom   BindingMode = "custom"
)

// Valid reports whether m is one of the defined modes (the empty string counts as none).
func (m BindingMode) Valid() bool {
	switch m {
	case "", BindingNone, BindingLookup, BindingUsername, BindingCustom:
		return true
	}
	return false
}

// Binding ties a user to a contact. A zero Binding is mode none.
type Binding struct {
	Mode BindingMode                `json:"mode"`
	Ref  *dataverse.EntityReference `json:"ref,omitempty"`
}

// User is a gateway account. PasswordHash is an encoded argon2id hash (see
// package authz/password); it is never serialised to JSON. An empty PasswordHash means
// the user cannot sign in with a password.
type User struct {
	ID                 string    `json:"id"`
	Username           string    `json:"username"`
	Email              string    `json:"email"`
	FirstName          string    `json:"first_name,omitempty"`
	LastName           string    `json:"last_name,omitempty"`
	DisplayName        string    `json:"display_name,omitempty"`
	PasswordHash       string    `json:"-"`
	Roles              []string  `json:"roles"`
	Status             Status    `json:"status"`
	EmailConfirmed     bool      `json:"email_confirmed"`
	MustChangePassword bool      `json:"must_change_password"`
	FailedCount        int       `json:"failed_count"`
	LockoutUntil       time.Time `json:"lockout_until,omitzero"`
	// SecurityStamp changes whenever the password, status or roles change;
	// sessions that carry an older stamp end at their next check.
	SecurityStamp string    `json:"-"`
	Binding       Binding   `json:"binding"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	LastSignInAt  time.Time `json:"last_sign_in_at,omitzero"`
}

// Name is the name to show for the user: the display name, else first and
// last name, else the username.
func (u *User) Name() string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	if n := strings.TrimSpace(u.FirstName + " " + u.LastName); n != "" {
		return n
	}
	return u.Username
}

// HasRole reports whether the user holds role (exact, case-sensitive match).
func (u *User) HasRole(role string) bool { return slices.Contains(u.Roles, role) }

// NormalizeLogin folds a username or email for case-insensitive uniqueness and lookup.
func NormalizeLogin(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// The user fields that features name: profile fields, field sync, filter
// template placeholders and lifecycle event fields use these names.
const (
	FieldID          = "id"
	FieldUsername    = "username"
	FieldEmail       = "email"
	FieldFirstName   = "first_name"
	FieldLastName    = "last_name"
	FieldDisplayName = "display_name"
)

// Field returns the user field named field (one of the Field* names), or
// "" for another name.
func (u *User) Field(field string) string {
	switch field {
	case FieldID:
		return u.ID
	case FieldUsername:
		return u.Username
	case FieldEmail:
		return u.Email
	case FieldFirstName:
		return u.FirstName
	case FieldLastName:
		return u.LastName
	case FieldDisplayName:
		return u.DisplayName
	}
	return ""
}
