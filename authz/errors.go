package authz

import "errors"

// Errors the account store and the feature services return; match them
// with errors.Is.
var (
	// ErrNotFound means the user (or other record) does not exist.
	ErrNotFound = errors.New("authz: not found")
	// ErrConflict means a user with the same username or email (compared
	// case-insensitively) already exists.
	ErrConflict = errors.New("authz: username or email already in use")
	// ErrStale means the user changed after it was read: an optimistic
	// update found a different UpdatedAt. Read the user again and reapply
	// the change.
	ErrStale = errors.New("authz: user was modified concurrently")
	// ErrLastBreakGlassAdmin is returned (wrapped) for a change after which
	// no break-glass account (see IsBreakGlass) would remain: such a user
	// is the only one who can sign in while Dataverse is down. The accounts
	// feature refuses such changes, and the store refuses them atomically.
	ErrLastBreakGlassAdmin = errors.New("authz: refused: this is the last active unbound administrator (break-glass account)")
	// ErrStoreUnavailable is wrapped around a failure of the account store
	// itself (the database did not answer), as opposed to an answer such as
	// ErrNotFound. Callers on a request's path answer "try again shortly"
	// and keep the session: nothing was decided about the user.
	ErrStoreUnavailable = errors.New("authz: the account store is unavailable")
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
