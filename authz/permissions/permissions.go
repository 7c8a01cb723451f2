// Package permissions is the one vocabulary of what an administrator or a
// machine client may do: the permissions that roles grant (in the policy
// file's permissions section) and that REST API keys carry as scopes. The
// names are the same in both places, so a route checks one name whoever
// calls it.
//
// The package is a leaf of the identity layer: package apikeys stores the
// names, package policies parses grants, package proxy checks them. It
// lives apart from apikeys because a policy file and a session have
// nothing to do with stored keys.
package permissions

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/authz"
)

// The permissions, in canonical order (see All).
const (
	// UsersRead allows listing and reading users.
	UsersRead = "users:read"
	// UsersWrite allows changing users' details, roles and status.
	UsersWrite = "users:write"
	// UsersApprove allows approving and rejecting registrations that wait
	// for approval (a rejection deletes the account).
	UsersApprove = "users:approve"
	// UsersCredentials allows acting on users' credentials: generating
	// them for Dataverse contacts (creating accounts bound to them and
	// mailing each a set-password link) and forcing a password change at
	// the next sign-in.
	UsersCredentials = "users:credentials"
	// BindingsWrite allows setting and clearing users' contact bindings.
	BindingsWrite = "bindings:write"
	// ContactsRead allows looking up Dataverse contacts.
	ContactsRead = "contacts:read"
	// ContactsWrite allows changing Dataverse contacts.
	ContactsWrite = "contacts:write"
	// InvitationsRead allows listing and reading invitations.
	InvitationsRead = "invitations:read"
	// InvitationsWrite allows creating, resending and revoking invitations
	// (each mails a code that creates an account).
	InvitationsWrite = "invitations:write"
	// AuditRead allows reading the audit trail. The trail names users,
	// client addresses and sign-in failures: grant it to log collectors
	// and auditors, not to roles that only bind users.
	AuditRead = "audit:read"
	// OutboxWrite allows retrying and dropping the outbox events the
	// gateway gave up on (mail, Dataverse lifecycle actions and contact
	// writes): a retry can deliver an old event after later events of the
	// same user; a drop loses its mail or change for good.
	OutboxWrite = "outbox:write"
)

// AdminRole is the local role that holds every permission. It cannot be
// narrowed: a policy file that grants it a list is refused.
const AdminRole = "admin"

// All returns every permission in canonical order; the slice is the
// caller's.
func All() []string {
	return []string{UsersRead, UsersWrite, UsersApprove, UsersCredentials, BindingsWrite,
		ContactsRead, ContactsWrite, InvitationsRead, InvitationsWrite, AuditRead, OutboxWrite}
}

// legacy maps the scope names API keys were created with before the
// vocabulary was unified to the permission that replaces each. Keys stored
// with them keep working: Canonical reads them.
var legacy = map[string]string{
	"users:bind":     BindingsWrite,
	"users:password": UsersCredentials,
	"users:invite":   UsersCredentials,
}

// Valid reports whether p is a permission name of All (a legacy name is
// not).
func Valid(p string) bool { return slices.Contains(All(), p) }

// Canonical returns the permission name that name stands for: name itself
// when it is Valid, the replacement of a legacy API key scope name, or ok
// false.
func Canonical(name string) (p string, ok bool) {
	if Valid(name) {
		return name, true
	}
	p, ok = legacy[name]
	return p, ok
}

// Normalize returns names as permissions in canonical order without
// duplicates, legacy names mapped; a name that is neither is dropped and
// reported in unknown. Stored API keys are read through it, so that a
// name this version does not know never grants anything.
func Normalize(names []string) (perms, unknown []string) {
	set := make([]string, 0, len(names))
	for _, n := range names {
		if p, ok := Canonical(n); ok {
			set = append(set, p)
		} else {
			unknown = append(unknown, n)
		}
	}
	return Sort(set), unknown
}

// Sort returns the Valid names of ps in canonical order without
// duplicates.
func Sort(ps []string) []string {
	return slices.DeleteFunc(All(), func(p string) bool { return !slices.Contains(ps, p) })
}

// Grants maps roles to the permissions they grant. AdminRole grants every
// permission whatever the map says. The zero value grants nothing to any
// role but AdminRole, which is the default when the policy file has no
// permissions section. A Grants is immutable and safe for concurrent use.
type Grants struct {
	byRole map[string][]string
}

// GrantError is a problem with one role's grant.
type GrantError struct {
	// Role is the role concerned.
	Role string
	// Index is the position in the role's list of the bad permission, or
	// -1 when the problem is the role itself.
	Index int
	// Msg says what is wrong.
	Msg string
}

func (e *GrantError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("permissions.%s: %s", e.Role, e.Msg)
	}
	return fmt.Sprintf("permissions.%s[%d]: %s", e.Role, e.Index, e.Msg)
}

// CheckGrant checks one role's grant as a policy file writes it: role is a
// valid local role name other than AdminRole, and perms a non-empty list
// of distinct permission names of All (legacy API key names are refused,
// with the name to use). Every problem is a *GrantError.
func CheckGrant(role string, perms []string) []error {
	var errs []error
	if _, err := authz.ValidateRoles([]string{role}); err != nil {
		return []error{&GrantError{Role: role, Index: -1,
			Msg: fmt.Sprintf("%q is not a role name: 1 to %d letters, digits or . _ : - characters", role, authz.MaxRoleLen)}}
	}
	if role == AdminRole {
		return []error{&GrantError{Role: role, Index: -1,
			Msg: "the admin role has every permission and cannot be listed (give another role a narrower set)"}}
	}
	if len(perms) == 0 {
		return []error{&GrantError{Role: role, Index: -1, Msg: "list one or more permissions (" + strings.Join(All(), ", ") + ")"}}
	}
	for i, p := range perms {
		switch {
		case Valid(p):
			if slices.Index(perms, p) < i {
				errs = append(errs, &GrantError{Role: role, Index: i, Msg: fmt.Sprintf("%q is listed twice", p)})
			}
		case legacy[p] != "":
			errs = append(errs, &GrantError{Role: role, Index: i, Msg: fmt.Sprintf("%q is an old API key scope name; write %q", p, legacy[p])})
		default:
			errs = append(errs, &GrantError{Role: role, Index: i,
				Msg: fmt.Sprintf("unknown permission %q; the permissions are %s", p, strings.Join(All(), ", "))})
		}
	}
	return errs
}

// NewGrants checks byRole with CheckGrant and returns the grants; every
// problem is returned, joined. A nil or empty map gives the zero Grants.
func NewGrants(byRole map[string][]string) (Grants, error) {
	var errs []error
	g := Grants{byRole: make(map[string][]string, len(byRole))}
	roles := make([]string, 0, len(byRole))
	for r := range byRole {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		if e := CheckGrant(r, byRole[r]); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		g.byRole[r] = Sort(byRole[r])
	}
	if len(errs) > 0 {
		return Grants{}, errors.Join(errs...)
	}
	return g, nil
}

// Of returns the permissions roles grant together, in canonical order:
// every permission when roles include AdminRole.
func (g Grants) Of(roles []string) []string {
	if slices.Contains(roles, AdminRole) {
		return All()
	}
	var ps []string
	for _, r := range roles {
		ps = append(ps, g.byRole[r]...)
	}
	return Sort(ps)
}

// Allows reports whether roles grant p. An unknown p is never allowed,
// not even to AdminRole.
func (g Grants) Allows(roles []string, p string) bool {
	if !Valid(p) {
		return false
	}
	if slices.Contains(roles, AdminRole) {
		return true
	}
	for _, r := range roles {
		if slices.Contains(g.byRole[r], p) {
			return true
		}
	}
	return false
}

// Roles returns the roles with a grant, sorted; AdminRole is not among
// them.
func (g Grants) Roles() []string {
	out := make([]string, 0, len(g.byRole))
	for r := range g.byRole {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
