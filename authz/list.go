package authz

// UserFilter selects users for a listing. The zero value lists the first
// DefaultListLimit users.
type UserFilter struct {
	// Query keeps users whose username or email contains it, case-insensitively.
	Query string
	// Status keeps users in that state; empty means any.
	Status Status
	// Mode keeps users bound in that mode; empty means any. BindingNone
	// also matches accounts stored before modes existed.
	Mode BindingMode
	// After is a cursor: only users whose normalised username
	// (NormalizeLogin(u.Username)) sorts after it. Pass the last user of the
	// previous page. It applies to the default order only (Sort empty or
	// SortUsername, ascending); with another order it is a
	// *ValidationError: page those with Offset.
	After string
	// Sort orders the result; empty means SortUsername. Ties are broken by
	// the normalised username, so that pages do not overlap.
	Sort UserSort
	// Desc reverses the order.
	Desc bool
	// Offset skips that many users of the ordered result (page numbers of
	// the admin console); at most MaxListOffset.
	Offset int
	// Limit caps the result; zero means DefaultListLimit, values above
	// MaxListLimit are reduced to it.
	Limit int
}

// UserSort names an order of UserFilter.
type UserSort string

// The orders a listing of users can take.
const (
	SortUsername   UserSort = "username"
	SortEmail      UserSort = "email"
	SortStatus     UserSort = "status"
	SortLastSignIn UserSort = "last_sign_in"
	SortCreated    UserSort = "created"
)

// Valid reports whether s is empty or one of the orders.
func (s UserSort) Valid() bool {
	switch s {
	case "", SortUsername, SortEmail, SortStatus, SortLastSignIn, SortCreated:
		return true
	}
	return false
}

// MaxListOffset bounds UserFilter.Offset: deeper pages are found by
// narrowing the filter, not by paging a database scan.
const MaxListOffset = 100_000

// Check returns a *ValidationError naming the first field of f that no
// listing accepts, or nil. The stores and services call it; it is the one
// place these rules live.
func (f UserFilter) Check() error {
	switch {
	case f.Status != "" && !f.Status.Valid():
		return &ValidationError{Field: "status", Message: "The status must be pending, active or disabled."}
	case f.Mode != "" && !f.Mode.Valid():
		return &ValidationError{Field: "mode", Message: "The binding mode must be none, lookup, username or custom."}
	case !f.Sort.Valid():
		return &ValidationError{Field: "sort", Message: "The order must be username, email, status, last_sign_in or created."}
	case f.After != "" && (f.Desc || (f.Sort != "" && f.Sort != SortUsername)):
		return &ValidationError{Field: "after", Message: "A cursor pages the default order only; use an offset with another order."}
	case f.Offset < 0 || f.Offset > MaxListOffset:
		return &ValidationError{Field: "offset", Message: "The offset must be between 0 and 100000."}
	}
	return nil
}

// List sizes for UserFilter and the other listings.
const (
	DefaultListLimit = 50
	MaxListLimit     = 1000
)

// EffectiveLimit returns the limit a store applies for the requested one.
func EffectiveLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultListLimit
	case limit > MaxListLimit:
		return MaxListLimit
	}
	return limit
}
