package binding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

// DefaultUsernameColumn is the contact column a username binding compares
// with the username: the Power Pages local sign-in name (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact).
const DefaultUsernameColumn = "adx_identity_username"

// Options configure how users are bound to contacts. The zero value leaves
// new users unbound, compares usernames with DefaultUsernameColumn and has
// no custom filter, so custom bindings fail to resolve.
type Options struct {
	// DefaultMode is the binding of new users: none (the zero value),
	// username or custom. Lookup needs a contact and cannot be a default.
	DefaultMode authz.BindingMode
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
func (o *Options) validate(hasContacts bool) error {
	var errs []error
	switch o.DefaultMode {
	case "", authz.BindingNone:
		o.DefaultMode = authz.BindingNone
	case authz.BindingUsername, authz.BindingCustom:
		if !hasContacts {
			errs = append(errs, fmt.Errorf("binding: default binding mode %s needs a contact directory (a Contacts directory)", o.DefaultMode))
		}
	case authz.BindingLookup:
		errs = append(errs, errors.New("binding: the default binding mode cannot be lookup: a lookup names one contact"))
	default:
		errs = append(errs, fmt.Errorf("binding: unknown default binding mode %q", o.DefaultMode))
	}
	if o.DefaultMode == authz.BindingCustom && o.Custom == nil {
		errs = append(errs, errors.New("binding: default binding mode custom needs a custom filter"))
	}
	if o.UsernameColumn == "" {
		o.UsernameColumn = DefaultUsernameColumn
	}
	if err := dataverse.ValidContactColumn(o.UsernameColumn); err != nil {
		errs = append(errs, fmt.Errorf("binding: username binding column: %w", err))
	}
	if o.Custom != nil && !o.Custom.HasFields() {
		errs = append(errs, fmt.Errorf("binding: custom binding filter %q names no user field such as {email}: every user would be bound to the same contact", o.Custom))
	}
	if o.AutoMapEmail && !hasContacts {
		errs = append(errs, errors.New("binding: email auto-map needs a contact directory (a Contacts directory)"))
	}
	return errors.Join(errs...)
}

// Reasons a binding fails or a bound user's sign-in is refused. They are
// Error.Reason and signin.RefusedError.Reason, and the Detail of the
// audit.EventSignInFailed event of a refused sign-in.
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

// ErrFailed matches (errors.Is) every *Error.
var ErrFailed = errors.New("binding: failed")

// Error reports that a user's binding does not name exactly one
// contact (one active contact for the username and custom modes). Its
// text is meant for administrators and the logs, not for the user.
type Error struct {
	// Mode is the user's binding mode.
	Mode authz.BindingMode
	// Reason is one of the Reason* constants.
	Reason string
	// Detail says what happened, as a sentence.
	Detail string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("binding: %s binding: %s", e.Mode, e.Detail)
}

// Is reports whether target is ErrFailed.
func (e *Error) Is(target error) bool { return target == ErrFailed }

// bindingSearchLimit is how many rows a username or custom binding reads.
// Rows are checked again for exact matches (see dataverse.ContactQuery), and a full
// page counts as ambiguous: a match beyond it cannot be ruled out.
const bindingSearchLimit = 50

// Contacts is what binding needs from Dataverse: crmclient.Directory and
// crmclient.CachedDirectory satisfy it. Every method makes exactly one Web
// API request, so that a sign-in costs one round trip when no cache
// answers. Implementations return an error wrapping
// dataverse.ErrUnavailable when Dataverse cannot answer; they must then not
// answer from a stale cache, since the sign-in check fails closed on it.
type Contacts interface {
	// ContactByID returns contact id (a lower-case GUID) with columns in
	// Contact.Columns and its active web roles, in one request, whether or
	// not it is active. A missing contact gives dataverse.ErrContactNotFound.
	ContactByID(ctx context.Context, id string, columns []string) (*dataverse.Contact, error)
	// FindContacts returns the contacts, active or not, that match q, at
	// most q.Limit, ordered by id, in one request (with the web roles
	// expanded when q.Roles). No match is an empty slice, not an error.
	FindContacts(ctx context.Context, q dataverse.ContactQuery) ([]*dataverse.Contact, error)
}

// Users is the part of the account store binding reads: which users are
// already bound to a contact.
type Users interface {
	// UserByLogin returns the user whose username or email equals login
	// after authz.NormalizeLogin, or authz.ErrNotFound.
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	// UsersBoundToContact returns users whose lookup binding names contact
	// id (compared in lower case), a bounded number of them.
	UsersBoundToContact(ctx context.Context, id string) ([]*authz.User, error)
}

// Resolver resolves users' bindings to contacts, binds new users (the
// default mode or the email auto-map) and searches contacts to bind to.
// Build it with New; it is safe for concurrent use.
type Resolver struct {
	contacts Contacts // nil: no Dataverse; no binding resolves
	users    Users
	opts     Options
	log      *slog.Logger
}

// New returns a Resolver reading contacts and users. contacts nil means no
// Dataverse is configured: then every binding other than none fails with
// ReasonBindingUnconfigured, and opts must not need one (a default mode
// other than none, or the email auto-map, are refused). users must not be
// nil. logger nil discards what callers do not see.
func New(contacts Contacts, users Users, opts Options, logger *slog.Logger) (*Resolver, error) {
	if users == nil {
		return nil, errors.New("binding: nil user store")
	}
	if err := opts.validate(contacts != nil); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Resolver{contacts: contacts, users: users, opts: opts, log: logger}, nil
}

// Configured reports whether a contact directory is configured.
func (s *Resolver) Configured() bool { return s.contacts != nil }

// UsernameColumn is the contact column a username binding compares with the
// username.
func (s *Resolver) UsernameColumn() string { return s.opts.UsernameColumn }

// Columns returns the columns confirming a binding reads: the username
// column and the custom filter's columns.
func (s *Resolver) Columns() []string {
	return withColumns([]string{s.opts.UsernameColumn}, s.opts.Custom.Columns())
}

// ResolveBinding returns the contact u is bound to, with columns in
// dataverse.Contact.Columns and its web roles, in one Dataverse request; nil for an
// unbound user (mode none), without any request. A lookup binding returns
// its contact active or not; the username and custom modes need exactly
// one active contact among the rows that match exactly. A binding that
// does not resolve gives a *Error; Dataverse being unavailable
// gives an error wrapping dataverse.ErrUnavailable.
func (s *Resolver) ResolveBinding(ctx context.Context, u *authz.User, columns []string) (*dataverse.Contact, error) {
	return s.Resolve(ctx, u, columns, true)
}

// Resolve is ResolveBinding that asks for the web roles only when roles is
// set.
func (s *Resolver) Resolve(ctx context.Context, u *authz.User, columns []string, roles bool) (*dataverse.Contact, error) {
	mode := u.Binding.Mode
	if mode == "" || mode == authz.BindingNone {
		return nil, nil
	}
	if s.contacts == nil {
		return nil, &Error{Mode: mode, Reason: ReasonBindingUnconfigured, Detail: "no contact directory is configured"}
	}
	switch mode {
	case authz.BindingLookup:
		if u.Binding.Ref == nil {
			return nil, &Error{Mode: mode, Reason: ReasonContactNotFound, Detail: "the binding names no contact"}
		}
		c, err := s.contacts.ContactByID(ctx, strings.ToLower(u.Binding.Ref.ID), columns)
		if errors.Is(err, dataverse.ErrContactNotFound) {
			return nil, &Error{Mode: mode, Reason: ReasonContactNotFound, Detail: fmt.Sprintf("contact %s does not exist", u.Binding.Ref.ID)}
		}
		if err != nil {
			return nil, fmt.Errorf("binding: resolve: %w", err)
		}
		c.KeepColumns(columns)
		return c, nil
	case authz.BindingUsername:
		return s.findBound(ctx, mode, []dataverse.Condition{{Column: s.opts.UsernameColumn, Op: "eq", Value: u.Username}}, columns, roles)
	case authz.BindingCustom:
		if s.opts.Custom == nil {
			return nil, &Error{Mode: mode, Reason: ReasonBindingUnconfigured, Detail: "no custom binding filter is configured"}
		}
		conds, err := s.opts.Custom.Conditions(u)
		if err != nil {
			return nil, &Error{Mode: mode, Reason: ReasonUserFieldEmpty, Detail: strings.TrimPrefix(err.Error(), "authz: ")}
		}
		return s.findBound(ctx, mode, conds, columns, roles)
	}
	return nil, &Error{Mode: mode, Reason: ReasonBindingUnconfigured, Detail: "unknown binding mode"}
}

// findBound runs one query and returns its single exact, active match.
func (s *Resolver) findBound(ctx context.Context, mode authz.BindingMode, conds []dataverse.Condition, columns []string, roles bool) (*dataverse.Contact, error) {
	if mode == authz.BindingUsername && conds[0].Value == "" {
		return nil, &Error{Mode: mode, Reason: ReasonUserFieldEmpty, Detail: "the username is empty"}
	}
	query := withColumns(columns, dataverse.ConditionColumns(conds))
	rows, err := s.contacts.FindContacts(ctx, dataverse.ContactQuery{Conditions: conds, Columns: query, Roles: roles, Limit: bindingSearchLimit})
	if err != nil {
		return nil, fmt.Errorf("binding: resolve: %w", err)
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
		return nil, &Error{Mode: mode, Reason: ReasonContactAmbiguous,
			Detail: fmt.Sprintf("the filter matched %d or more contacts", bindingSearchLimit)}
	case len(active) > 1:
		return nil, &Error{Mode: mode, Reason: ReasonContactAmbiguous,
			Detail: fmt.Sprintf("%d active contacts match; exactly one must", len(active))}
	case len(active) == 0 && inactive > 0:
		return nil, &Error{Mode: mode, Reason: ReasonContactInactive,
			Detail: fmt.Sprintf("no active contact matches (%d inactive do)", inactive)}
	case len(active) == 0:
		return nil, &Error{Mode: mode, Reason: ReasonContactNotFound, Detail: "no contact matches"}
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
// case) and that no other user is bound to (see BoundTo). ok is false, with
// a zero Binding, when there is none or more than one. It reads Dataverse
// once and, for each candidate, the store twice. Two concurrent auto-maps can still pick
// the same contact. See BindingOptions.AutoMapEmail for the danger of
// unconfirmed addresses.
func (s *Resolver) AutoMapEmail(ctx context.Context, u *authz.User) (b authz.Binding, ok bool, err error) {
	if s.contacts == nil {
		return authz.Binding{}, false, errors.New("binding: email auto-map: no contact directory is configured")
	}
	if u.Email == "" {
		return authz.Binding{}, false, nil
	}
	conds := []dataverse.Condition{{Column: "emailaddress1", Op: "eq", Value: u.Email}}
	rows, err := s.contacts.FindContacts(ctx, dataverse.ContactQuery{Conditions: conds,
		Columns: []string{"emailaddress1", s.opts.UsernameColumn}, Limit: bindingSearchLimit})
	if err != nil {
		return authz.Binding{}, false, fmt.Errorf("binding: email auto-map: %w", err)
	}
	if len(rows) >= bindingSearchLimit {
		return authz.Binding{}, false, nil
	}
	var cands []*dataverse.Contact
	for _, c := range rows {
		if c.Active && dataverse.MatchesAll(c, conds) {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return authz.Binding{}, false, nil
	}
	var free []*dataverse.Contact
	for _, c := range cands {
		others, err := s.boundTo(ctx, c, u.ID)
		if err != nil {
			return authz.Binding{}, false, fmt.Errorf("binding: email auto-map: %w", err)
		}
		if len(others) == 0 {
			free = append(free, c)
		}
	}
	cands = free
	if len(cands) != 1 {
		return authz.Binding{}, false, nil
	}
	b, err = authz.ValidateBinding(authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: cands[0].ID, LogicalName: "contact", Name: cands[0].Name}})
	if err != nil {
		return authz.Binding{}, false, fmt.Errorf("binding: email auto-map: contact id %q: %w", cands[0].ID, err)
	}
	return b, true, nil
}

// BoundTo returns contact id, read from Dataverse with the username column,
// and the users other than exceptID already bound to it (see boundTo). A
// missing contact gives an error wrapping dataverse.ErrContactNotFound;
// Dataverse being unavailable one wrapping dataverse.ErrUnavailable; no
// directory ErrNoDirectory.
func (s *Resolver) BoundTo(ctx context.Context, id, exceptID string) (*dataverse.Contact, []*authz.User, error) {
	if s.contacts == nil {
		return nil, nil, ErrNoDirectory
	}
	c, err := s.contacts.ContactByID(ctx, strings.ToLower(id), []string{s.opts.UsernameColumn})
	if err != nil {
		return nil, nil, fmt.Errorf("binding: contact %s: %w", id, err)
	}
	others, err := s.boundTo(ctx, c, exceptID)
	if err != nil {
		return nil, nil, err
	}
	return c, others, nil
}

// boundTo returns the users other than exceptID bound to contact c: those
// whose lookup binding names it, and the user whose username binding
// matches it by its username column. Custom bindings are not evaluated: a
// filter can match any number of contacts.
func (s *Resolver) boundTo(ctx context.Context, c *dataverse.Contact, exceptID string) ([]*authz.User, error) {
	us, err := s.users.UsersBoundToContact(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("binding: users bound to contact %s: %w", c.ID, err)
	}
	others := slices.DeleteFunc(us, func(o *authz.User) bool { return o.ID == exceptID })
	if name, _ := c.Text(s.opts.UsernameColumn); name != "" {
		o, err := s.users.UserByLogin(ctx, name)
		switch {
		case errors.Is(err, authz.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("binding: user %q: %w", name, err)
		case o.ID != exceptID && o.Binding.Mode == authz.BindingUsername && strings.EqualFold(o.Username, name):
			others = append(others, o)
		}
	}
	return others, nil
}

// InitialBinding is the binding a new account u gets: the auto-mapped
// contact when enabled and found, else the default mode. Dataverse being
// unavailable does not stop account creation; the user gets the default.
func (s *Resolver) InitialBinding(ctx context.Context, u *authz.User) authz.Binding {
	if s.opts.AutoMapEmail {
		b, ok, err := s.AutoMapEmail(ctx, u)
		if err != nil {
			s.log.WarnContext(ctx, "email auto-map failed; the new user gets the default binding", "username", u.Username, "err", err)
		}
		if ok {
			return b
		}
	}
	return authz.Binding{Mode: s.opts.DefaultMode}
}

// Conditions returns what contact id must satisfy to still be u's
// contact, for a revalidation that reads the contact through a cache; nil when it cannot be told without a fresh resolve (a lookup
// that names another contact).
func (s *Resolver) Conditions(u *authz.User, id string) ([]dataverse.Condition, error) {
	switch u.Binding.Mode {
	case authz.BindingLookup:
		if u.Binding.Ref == nil || !strings.EqualFold(u.Binding.Ref.ID, id) {
			return nil, nil
		}
		return []dataverse.Condition{}, nil
	case authz.BindingUsername:
		return []dataverse.Condition{{Column: s.opts.UsernameColumn, Op: "eq", Value: u.Username}}, nil
	case authz.BindingCustom:
		if s.opts.Custom == nil {
			return nil, nil
		}
		return s.opts.Custom.Conditions(u)
	}
	return nil, nil
}
