package authz

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/crmgate/crmgate/dataverse"
)

// Limits of the account fields.
const (
	MaxUsernameLen = 64
	MaxEmailLen    = 254
	MaxNameLen     = 200
	MaxRoleLen     = 64
)

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

// Printable reports whether s is valid UTF-8 without control characters:
// the rule for text an operator or client passes as a filter or a login.
func Printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// ValidateName checks a first, last or display name that a user entered
// or Dataverse sent: valid UTF-8 of at most MaxNameLen characters without
// control characters. The error is a sentence, lower case, for wrapping.
func ValidateName(v string) error {
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxNameLen {
		return fmt.Errorf("names must be valid text of at most %d characters", MaxNameLen)
	}
	if !Printable(v) {
		return errors.New("names must not contain control characters")
	}
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

// IsBreakGlass reports whether u is a break-glass account for role: active,
// holding role, and unbound (binding mode none or empty). It is false for
// everyone when role is empty.
func IsBreakGlass(u *User, role string) bool {
	return role != "" && u.Status == StatusActive && u.HasRole(role) &&
		(u.Binding.Mode == "" || u.Binding.Mode == BindingNone)
}

// NewID returns 128 random bits in hex: a fresh user id or security stamp.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read documents it)
	return hex.EncodeToString(b)
}
