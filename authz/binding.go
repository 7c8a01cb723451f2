package authz

import (
	"context"
	"errors"
	"fmt"
	"github.com/crmgate/crmgate/dataverse"
	"slices"
	"strings"
)

// DefaultUsernameColumn is the contact column a username binding compares
// with the username: the Power Pages local sign-in name (WEBAPI.md §7.1).
const DefaultUsernameColumn = "adx_identity_username"

// BindingOptions configure how users are bound to contacts. The zero value
// leaves new users unbound, compares usernames with DefaultUsernameColumn
// and has no custom filter, so custom bindings fail to resolve.
type BindingOptions struct {
	// DefaultMode is the binding of new users: none (the zero value),
	// username or custom. Lookup needs a contact and cannot be a default.
	DefaultMode BindingMode
	// UsernameColumn is the contact column a username binding matches;
	// empty means DefaultUsernameColumn.
	UsernameColumn string
	// Custom is the filter of custom bindings, e.g.
	// "emailaddress1 eq {email}". It must name at least one user field,
	// or every user would be bound to the same contact. Nil makes every
	// custom binding fail with ReasonBindingUnconfigured.
	Custom *FilterTemplate
	// AutoMapEmail binds a new user (CreateUser) to the single active
	// contact whose emailaddress1 equals the user's email and that no
	// other user is bound to; otherwise the user gets DefaultMode.
	// Dangerous where people register themselves: the address is not yet
	// confirmed at that point, so anyone who registers with a customer's
	// address would receive that customer's contact. Enable it only where
	// administrators create the accounts, or call AutoMapEmail yourself
	// once the address is confirmed.
	AutoMapEmail bool
}

// validate checks o and fills in defaults; hasContacts tells whether a
// Contacts directory is configured.
func (o *BindingOptions) validate(hasContacts bool) error {
	var errs []error
	switch o.DefaultMode {
	case "", BindingNone:
		o.DefaultMode = BindingNone
	case BindingUsername, BindingCustom:
		if !hasContacts {
			errs = append(errs, fmt.Errorf("authz: default binding mode %s needs a contact directory (Options.Contacts)", o.DefaultMode))
		}
	case BindingLookup:
		errs = append(errs, errors.New("authz: the default binding mode cannot be lookup: a lookup names one contact"))
	default:
		errs = append(errs, fmt.Errorf("authz: unknown default binding mode %q", o.DefaultMode))
	}
	if o.DefaultMode == BindingCustom && o.Custom == nil {
		errs = append(errs, errors.New("authz: default binding mode custom needs a custom filter"))
	}
	if o.UsernameColumn == "" {
		o.UsernameColumn = DefaultUsernameColumn
	}
	if err := dataverse.ValidContactColumn(o.UsernameColumn); err != nil {
		errs = append(errs, fmt.Errorf("authz: username binding column: %w", err))
	}
	if o.Custom != nil && !o.Custom.HasFields() {
		errs = append(errs, fmt.Errorf("authz: custom binding filter %q names no user field such as {email}: every user would be bound to the same contact", o.Custom))
	}
	if o.AutoMapEmail && !hasContacts {
		errs = append(errs, errors.New("authz: email auto-map needs a contact directory (Options.Contacts)"))
	}
	return errors.Join(errs...)
}

// Reasons a binding fails or a bound user's sign-in is refused. They are
// BindingError.Reason and SignInRefusedError.Reason, and the Detail of the
// EventSignInFailed audit event of a refused sign-in.
const (
	ReasonContactNotFound      = "contact_not_found"      // no contact matches the binding
	ReasonContactAmbiguous     = "contact_ambiguous"      // several active contacts match
	ReasonContactInactive      = "contact_inactive"       // the contact's statecode is not 0
	ReasonContactLogonDisabled = "contact_logon_disabled" // adx_identity_logonenabled is false
	ReasonContactFilter        = "contact_filter"         // the extra sign-in filter does not match
	ReasonUserFieldEmpty       = "user_field_empty"       // a filter placeholder names an empty user field
	ReasonBindingUnconfigured  = "binding_unconfigured"   // no directory, or custom mode without a filter
	ReasonDirectoryUnavailable = "directory_unavailable"  // Dataverse could not answer
	ReasonDirectoryError       = "directory_error"        // Dataverse answered with another error
)

// ErrBindingFailed matches (errors.Is) every *BindingError.
var ErrBindingFailed = errors.New("authz: binding failed")

// BindingError reports that a user's binding does not name exactly one
// contact (one active contact for the username and custom modes). Its
// text is meant for administrators and the logs, not for the user.
type BindingError struct {
	// Mode is the user's binding mode.
	Mode BindingMode
	// Reason is one of the Reason* constants.
	Reason string
	// Detail says what happened, as a sentence.
	Detail string
}

// Error implements error.
func (e *BindingError) Error() string {
	return fmt.Sprintf("authz: %s binding: %s", e.Mode, e.Detail)
}

// Is reports whether target is ErrBindingFailed.
func (e *BindingError) Is(target error) bool { return target == ErrBindingFailed }

// bindingSearchLimit is how many rows a username or custom binding reads.
// Rows are checked again for exact matches (see dataverse.ContactQuery), and a full
// page counts as ambiguous: a match beyond it cannot be ruled out.
const bindingSearchLimit = 50

// ResolveBinding returns the contact u is bound to, with columns in
// dataverse.Contact.Columns and its web roles, in one Dataverse request; nil for an
// unbound user (mode none), without any request. A lookup binding returns
// its contact active or not; the username and custom modes need exactly
// one active contact among the rows that match exactly. A binding that
// does not resolve gives a *BindingError; Dataverse being unavailable
// gives an error wrapping dataverse.ErrUnavailable.
func (s *Service) ResolveBinding(ctx context.Context, u *User, columns []string) (*dataverse.Contact, error) {
	return s.resolveBinding(ctx, u, columns, true)
}

func (s *Service) resolveBinding(ctx context.Context, u *User, columns []string, roles bool) (*dataverse.Contact, error) {
	mode := u.Binding.Mode
	if mode == "" || mode == BindingNone {
		return nil, nil
	}
	if s.contacts == nil {
		return nil, &BindingError{Mode: mode, Reason: ReasonBindingUnconfigured, Detail: "no contact directory is configured"}
	}
	switch mode {
	case BindingLookup:
		if u.Binding.Ref == nil {
			return nil, &BindingError{Mode: mode, Reason: ReasonContactNotFound, Detail: "the binding names no contact"}
		}
		c, err := s.contacts.ContactByID(ctx, strings.ToLower(u.Binding.Ref.ID), columns)
		if errors.Is(err, dataverse.ErrContactNotFound) {
			return nil, &BindingError{Mode: mode, Reason: ReasonContactNotFound, Detail: fmt.Sprintf("contact %s does not exist", u.Binding.Ref.ID)}
		}
		if err != nil {
			return nil, fmt.Errorf("authz: resolve binding: %w", err)
		}
		c.KeepColumns(columns)
		return c, nil
	case BindingUsername:
		return s.findBound(ctx, mode, []dataverse.Condition{{Column: s.binding.UsernameColumn, Op: "eq", Value: u.Username}}, columns, roles)
	case BindingCustom:
		if s.binding.Custom == nil {
			return nil, &BindingError{Mode: mode, Reason: ReasonBindingUnconfigured, Detail: "no custom binding filter is configured"}
		}
		conds, err := s.binding.Custom.Conditions(u)
		if err != nil {
			return nil, &BindingError{Mode: mode, Reason: ReasonUserFieldEmpty, Detail: strings.TrimPrefix(err.Error(), "authz: ")}
		}
		return s.findBound(ctx, mode, conds, columns, roles)
	}
	return nil, &BindingError{Mode: mode, Reason: ReasonBindingUnconfigured, Detail: "unknown binding mode"}
}

// findBound runs one query and returns its single exact, active match.
func (s *Service) findBound(ctx context.Context, mode BindingMode, conds []dataverse.Condition, columns []string, roles bool) (*dataverse.Contact, error) {
	if mode == BindingUsername && conds[0].Value == "" {
		return nil, &BindingError{Mode: mode, Reason: ReasonUserFieldEmpty, Detail: "the username is empty"}
	}
	query := withColumns(columns, dataverse.ConditionColumns(conds))
	rows, err := s.contacts.FindContacts(ctx, dataverse.ContactQuery{Conditions: conds, Columns: query, Roles: roles, Limit: bindingSearchLimit})
	if err != nil {
		return nil, fmt.Errorf("authz: resolve binding: %w", err)
	}
	var active []*dataverse.Contact
	inactive := 0
	for _, c := range rows {
		switch {
		case !dataverse.MatchesAll(c, conds):
		case c.Active:
			active = append(active, c)
		default:
			inactive++
		}
	}
	switch {
	case len(rows) >= bindingSearchLimit:
		return nil, &BindingError{Mode: mode, Reason: ReasonContactAmbiguous,
			Detail: fmt.Sprintf("the filter matched %d or more contacts", bindingSearchLimit)}
	case len(active) > 1:
		return nil, &BindingError{Mode: mode, Reason: ReasonContactAmbiguous,
			Detail: fmt.Sprintf("%d active contacts match; exactly one must", len(active))}
	case len(active) == 0 && inactive > 0:
		return nil, &BindingError{Mode: mode, Reason: ReasonContactInactive,
			Detail: fmt.Sprintf("no active contact matches (%d inactive do)", inactive)}
	case len(active) == 0:
		return nil, &BindingError{Mode: mode, Reason: ReasonContactNotFound, Detail: "no contact matches"}
	}
	c := active[0]
	c.KeepColumns(columns)
	return c, nil
}

// withColumns returns a new slice of cols followed by the extra columns
// not among them.
func withColumns(cols []string, extra []string) []string {
	out := slices.Clone(cols)
	for _, c := range extra {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// AutoMapEmail looks for the contact a new user should be bound to: the
// single active contact whose emailaddress1 equals u.Email (ignoring
// case) and that no other user is bound to. ok is false, with a zero
// Binding, when there is none or more than one. It reads Dataverse once
// and, only when a candidate exists, scans every user of the store: a
// contact counts as bound to another user when that user's lookup binding
// names it, or when that user's username binding matches it by username;
// custom bindings are not evaluated. Two concurrent auto-maps can still pick
// the same contact. See BindingOptions.AutoMapEmail for the danger of
// unconfirmed addresses.
func (s *Service) AutoMapEmail(ctx context.Context, u *User) (b Binding, ok bool, err error) {
	if s.contacts == nil {
		return Binding{}, false, errors.New("authz: email auto-map: no contact directory is configured")
	}
	if u.Email == "" {
		return Binding{}, false, nil
	}
	conds := []dataverse.Condition{{Column: "emailaddress1", Op: "eq", Value: u.Email}}
	rows, err := s.contacts.FindContacts(ctx, dataverse.ContactQuery{Conditions: conds,
		Columns: []string{"emailaddress1", s.binding.UsernameColumn}, Limit: bindingSearchLimit})
	if err != nil {
		return Binding{}, false, fmt.Errorf("authz: email auto-map: %w", err)
	}
	if len(rows) >= bindingSearchLimit {
		return Binding{}, false, nil
	}
	var cands []*dataverse.Contact
	for _, c := range rows {
		if c.Active && dataverse.MatchesAll(c, conds) {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return Binding{}, false, nil
	}
	err = s.eachUser(ctx, "", func(o *User) bool {
		if o.ID == u.ID && u.ID != "" {
			return true
		}
		cands = slices.DeleteFunc(cands, func(c *dataverse.Contact) bool {
			switch o.Binding.Mode {
			case BindingLookup:
				return o.Binding.Ref != nil && strings.EqualFold(o.Binding.Ref.ID, c.ID)
			case BindingUsername:
				v, _ := c.Value(s.binding.UsernameColumn)
				name, _ := v.(string)
				return name != "" && strings.EqualFold(name, o.Username)
			}
			return false
		})
		return len(cands) > 0
	})
	if err != nil {
		return Binding{}, false, fmt.Errorf("authz: email auto-map: %w", err)
	}
	if len(cands) != 1 {
		return Binding{}, false, nil
	}
	b, err = ValidateBinding(Binding{Mode: BindingLookup, Ref: &dataverse.EntityReference{ID: cands[0].ID, LogicalName: "contact", Name: cands[0].Name}})
	if err != nil {
		return Binding{}, false, fmt.Errorf("authz: email auto-map: contact id %q: %w", cands[0].ID, err)
	}
	return b, true, nil
}

// initialBinding is the binding CreateUser gives u: the auto-mapped
// contact when enabled and found, else the default mode. Dataverse being
// unavailable does not stop account creation; the user gets the default.
func (s *Service) initialBinding(ctx context.Context, u *User) Binding {
	if s.binding.AutoMapEmail {
		b, ok, err := s.AutoMapEmail(ctx, u)
		if err != nil {
			s.log.WarnContext(ctx, "email auto-map failed; the new user gets the default binding", "username", u.Username, "err", err)
		}
		if ok {
			return b
		}
	}
	return Binding{Mode: s.binding.DefaultMode}
}

// ErrLastBreakGlassAdmin is returned (wrapped) by SetRoles, SetStatus,
// SetBinding, SetBindings and DeleteUser for a change after which no
// break-glass account (see IsBreakGlass and Options.BreakGlassRole) would
// remain: such a user is the only one who can sign in while Dataverse is
// down. Stores return it (wrapped) from UpdateUserKeepingBreakGlass and
// DeleteUserKeepingBreakGlass.
var ErrLastBreakGlassAdmin = errors.New("authz: refused: this is the last active unbound administrator (break-glass account)")

// IsBreakGlass reports whether u is a break-glass account for role: active,
// holding role, and unbound (binding mode none or empty). It is false for
// everyone when role is empty.
func IsBreakGlass(u *User, role string) bool {
	return role != "" && u.Status == StatusActive && u.HasRole(role) &&
		(u.Binding.Mode == "" || u.Binding.Mode == BindingNone)
}

// isBreakGlass reports whether u is a break-glass account for the
// configured role; false for everyone when the guard is off.
func (s *Service) isBreakGlass(u *User) bool { return IsBreakGlass(u, s.breakGlassRole) }

// eachUser calls fn for every user in status st (empty: any), page by
// page, until fn returns false.
func (s *Service) eachUser(ctx context.Context, st Status, fn func(*User) bool) error {
	after := ""
	for {
		page, err := s.store.ListUsers(ctx, UserFilter{Status: st, After: after, Limit: MaxListLimit})
		if err != nil {
			return err
		}
		for _, u := range page {
			if !fn(u) {
				return nil
			}
		}
		if len(page) < MaxListLimit {
			return nil
		}
		after = NormalizeLogin(page[len(page)-1].Username)
	}
}
