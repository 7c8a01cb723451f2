package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/crmgate/crmgate/authz"
)

// MaxBindingChanges is the most changes one SetBindings call accepts.
const MaxBindingChanges = 500

// BindingChange is one item of SetBindings.
type BindingChange struct {
	// User names the account as LookupUser takes it: its id, or its
	// username or email. An id wins over another account's username or
	// email that happens to equal it.
	User string
	// Binding is the new binding, as SetBinding takes it.
	Binding authz.Binding
	// AllowShared lets a lookup binding name a contact other users are
	// bound to (several accounts of one person or one shared mailbox). It is
	// audited as audit.EventBindingShared, naming the others.
	AllowShared bool
}

// BindingResult is the outcome of the BindingChange at the same index.
type BindingResult struct {
	// User is the BindingChange's User, as given.
	User string
	// ID is the id of the account User named; empty when none did.
	ID string
	// Err is nil when the binding was saved. Otherwise it is a
	// *ValidationError for a bad binding, a *BindingRefusedError for a
	// contact that does not exist or is bound to another user, or an error
	// wrapping ErrNotFound (no such account), ErrLastBreakGlassAdmin,
	// ErrStale (the account kept changing under the retries),
	// dataverse.ErrUnavailable, the context's error, or a failure of the
	// store.
	Err error
}

// SetBindings applies changes in order, each exactly as SetBinding does:
// validated, saved with a new security stamp and its lifecycle.Bound or
// lifecycle.Unbound event in one transaction, audited with actor, and
// refused with ErrLastBreakGlassAdmin when it would take away the last
// break-glass account. It returns one result per change, at the same
// index. A failed change stops nothing: the others are still applied, and
// the ones before it stay applied, for the batch is not one transaction.
// So a batch that binds every break-glass administrator succeeds for all
// but the one that would be the last, and that one fails.
//
// More than MaxBindingChanges changes give a *ValidationError and change
// nothing; the error is nil otherwise. Once ctx is done the remaining
// changes fail with its error without touching the store.
func (s *Service) SetBindings(ctx context.Context, changes []BindingChange, actor string) ([]BindingResult, error) {
	if len(changes) > MaxBindingChanges {
		return nil, &authz.ValidationError{Field: "items",
			Message: fmt.Sprintf("At most %d bindings can be changed at once; split the list.", MaxBindingChanges)}
	}
	results := make([]BindingResult, len(changes))
	for i, c := range changes {
		results[i] = BindingResult{User: c.User}
		if err := ctx.Err(); err != nil {
			results[i].Err = fmt.Errorf("accounts: set binding: %w", err)
			continue
		}
		if _, err := authz.ValidateBinding(c.Binding); err != nil {
			results[i].Err = err
			continue
		}
		u, err := s.LookupUser(ctx, c.User)
		if err != nil {
			results[i].Err = fmt.Errorf("accounts: set binding: %w", err)
			continue
		}
		results[i].ID = u.ID
		// The first attempt uses the account just read; retries reread it
		// by id (setBinding), so that they cannot drift to another account.
		_, results[i].Err = s.setBinding(ctx, func() (*authz.User, error) { return u, nil }, c.Binding, c.AllowShared, actor)
	}
	return results, nil
}

// LookupUser returns the account whose id is who, else the one whose
// username or email is who (compared after NormalizeLogin), else an error
// wrapping ErrNotFound. SetBindings names users this way.
func (s *Service) LookupUser(ctx context.Context, who string) (*authz.User, error) {
	if who == "" || len(who) > authz.MaxEmailLen { // no id, username or email is that long
		return nil, fmt.Errorf("accounts: lookup user: %w", authz.ErrNotFound)
	}
	u, err := s.store.UserByID(ctx, who)
	if errors.Is(err, authz.ErrNotFound) {
		u, err = s.store.UserByLogin(ctx, who)
	}
	return u, err
}
