package policies

import (
	"errors"
	"fmt"
	"strings"

	"github.com/crmgate/crmgate/dataverse"
)

// Subject is the signed-in user a decision is made for. Roles are compared
// exactly (case-sensitive). Email is lower-cased before conditions see it, so
// that a negated domain check cannot be dodged by case.
type Subject struct {
	// Contact is the Dataverse contact the user is bound to ("contact"),
	// as the gateway fetched it; nil means not bound, which AccessBound
	// routes forbid. Conditions read its ID ("contact.id"), LogicalName
	// ("contact.logicalname"), Name ("contact.name") and Columns
	// ("contact.columns", map(string, dyn) with values as decoded from JSON:
	// string, float64, bool or nil for CEL null). A column not in Columns is
	// absent: reading it in a condition is an error, which forbids. The
	// gateway should fetch Policy.ContactColumns. Conditions never modify it.
	Contact *dataverse.Contact
	// ID is the gateway user id ("user.id").
	ID string
	// Username is the sign-in name ("user.username").
	Username string
	// Email is the user's address ("user.email", lower-cased).
	Email string
	// EmailVerified reports whether the user proved they own Email. Conditions
	// that trust the email's domain should also test user.email_verified; the
	// zero value (false) makes such conditions fail closed.
	EmailVerified bool
	// Name is the display name ("user.name").
	Name string
	// Roles are the user's roles ("user.roles"): the local roles plus, for a
	// bound user, the names of the contact's web roles, merged by the caller;
	// nil is no roles.
	Roles []string
	// AuthMethod is how the user signed in, e.g. "password" or an OIDC
	// provider name.
	AuthMethod string
}

// RequestInfo is what conditions see of the request as "request". Host and
// Path must be canonical (CanonicalHost, CanonicalPath); Method is the
// request's method as received.
type RequestInfo struct {
	Method, Host, Path string
}

// Decision is the outcome of Route.Decide. The zero value is Forbidden, so a
// decision that was never made denies.
type Decision int

// The decisions.
const (
	// Forbidden means refuse the request (403); signing in would not help.
	Forbidden Decision = iota
	// Unauthenticated means the request needs a signed-in user: send the
	// anonymous user to sign in (a redirect, or 401 for APIs).
	Unauthenticated
	// Allow means let the request through.
	Allow
)

// String returns "forbidden", "unauthenticated" or "allow", for logs and
// metrics labels.
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// ConditionError reports that a route's condition could not be evaluated: a
// CEL runtime error (an index out of range, the cost limit) or a result that
// is not a bool. The request is then forbidden.
type ConditionError struct {
	// Route is the route's name.
	Route string
	// Err is the CEL error.
	Err error
}

// Error names the route and the CEL error.
func (e *ConditionError) Error() string {
	return fmt.Sprintf("policies: route %q: condition: %v", e.Route, e.Err)
}

// Unwrap returns the CEL error.
func (e *ConditionError) Unwrap() error { return e.Err }

// Decide returns whether the request may pass this route. s is the signed-in
// user, nil when anonymous.
//
//   - AccessPublic allows everyone.
//   - AccessDeny, a zero Access and a nil route forbid everyone.
//   - AccessAuthenticated asks anonymous users to sign in (Unauthenticated),
//     forbids users holding none of the route's roles (when it lists any),
//     then allows the user when the condition (if any) evaluates to true.
//     A condition that is false or fails to evaluate forbids: it fails closed.
//   - AccessBound is AccessAuthenticated that first forbids signed-in users
//     not bound to a contact (s.Contact == nil).
//
// Use Check instead to also learn why a condition failed to evaluate.
func (r *Route) Decide(s *Subject, req RequestInfo) Decision {
	d, _ := r.Check(s, req)
	return d
}

// Check is Decide that also returns a *ConditionError when the route's
// condition could not be evaluated, for logging. The Decision is Forbidden
// whenever the error is not nil.
func (r *Route) Check(s *Subject, req RequestInfo) (Decision, error) {
	if r == nil {
		return Forbidden, nil
	}
	switch r.Access {
	case AccessPublic:
		return Allow, nil
	case AccessAuthenticated, AccessBound:
	default:
		return Forbidden, nil
	}
	if s == nil {
		return Unauthenticated, nil
	}
	if r.Access == AccessBound && s.Contact == nil {
		return Forbidden, nil
	}
	if len(r.Roles) > 0 && !holdsAny(s.Roles, r.Roles) {
		return Forbidden, nil
	}
	if r.Condition == "" {
		return Allow, nil
	}
	if r.program == nil {
		return Forbidden, &ConditionError{Route: r.Name, Err: errNotCompiled}
	}
	act := &activation{
		user: celUser{
			ID:            s.ID,
			Username:      s.Username,
			Email:         strings.ToLower(s.Email),
			EmailVerified: s.EmailVerified,
			Name:          s.Name,
			Roles:         s.Roles,
			AuthMethod:    s.AuthMethod,
			Authenticated: true,
			Bound:         s.Contact != nil,
		},
		request: celRequest(req),
		contact: celContact{Columns: noColumns},
	}
	if act.user.Roles == nil {
		act.user.Roles = []string{}
	}
	if c := s.Contact; c != nil {
		act.contact = celContact{ID: c.ID, LogicalName: c.LogicalName, Name: c.Name, Columns: c.Columns}
		if c.Columns == nil {
			act.contact.Columns = noColumns
		}
	}
	out, _, err := r.program.Eval(act)
	if err != nil {
		return Forbidden, &ConditionError{Route: r.Name, Err: err}
	}
	allowed, ok := out.Value().(bool)
	if !ok {
		return Forbidden, &ConditionError{Route: r.Name, Err: fmt.Errorf("result is %s, not bool", out.Type())}
	}
	if !allowed {
		return Forbidden, nil
	}
	return Allow, nil
}

// noColumns is the contact.columns of an unbound user or a contact without
// columns. It is shared and must never be written.
var noColumns = map[string]any{}

// errNotCompiled is the ConditionError cause for a route that was not built by Parse.
var errNotCompiled = errors.New("policies: condition was not compiled (route not built by Parse)")

func holdsAny(have, want []string) bool {
	for _, w := range want {
		for _, h := range have {
			if h == w {
				return true
			}
		}
	}
	return false
}
