package authz

// UserFilter selects users for a listing. The zero value lists the first
// DefaultListLimit users.
type UserFilter struct {
	// Query keeps users whose username or email contains it, case-insensitively.
	Query string
	// Status keeps users in that state; empty means any.
	Status Status
	// After is a cursor: only users whose normalised username
	// (NormalizeLogin(u.Username)) sorts after it. Pass the last user of the
	// previous page.
	After string
	// Limit caps the result; zero means DefaultListLimit, values above
	// MaxListLimit are reduced to it.
	Limit int
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
