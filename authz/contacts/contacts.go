// Package contacts is the admin console's management of Dataverse
// contacts: a list narrowed by a configured filter (like a saved view of
// the CRM) with a search, paged; reading, creating, editing and deleting a
// contact, each write sent to Dataverse with optimistic concurrency (the
// row version, If-Match); whether a contact is bound to accounts and to
// which; and, from a contact's row, an invitation (authz/invitations) or
// an account with a set-password link (authz/onboarding), both done by
// those services.
//
// The configured filter is a scope, not only a default view: a contact
// outside it is not found by Get, Update, Delete, Invite or CreateUser.
// Every write is audited (audit.EventContact*) with the columns written,
// never their values.
package contacts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/dataverse"
)

// Directory is the part of the Dataverse contact directory the service
// uses; crmclient.Directory satisfies it (the assertion is where
// cmd/crmgate wires it).
type Directory interface {
	// ListContactPage returns one page of contacts with their ETags.
	ListContactPage(ctx context.Context, q dataverse.ContactPageQuery) (*dataverse.ContactPage, error)
	// ContactByID returns contact id with columns and its ETag; a
	// missing contact wraps dataverse.ErrContactNotFound.
	ContactByID(ctx context.Context, id string, columns []string) (*dataverse.Contact, error)
	// CreateContact creates contact id (chosen by the caller); a retry
	// after a lost answer creates nothing twice.
	CreateContact(ctx context.Context, id string, columns map[string]any) error
	// UpdateContact writes columns if the row version is still etag;
	// otherwise the error wraps dataverse.ErrContactChanged.
	UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error
	// DeleteContact deletes contact id if its row version is still etag;
	// otherwise the error wraps dataverse.ErrContactChanged.
	DeleteContact(ctx context.Context, id, etag string) error
}

// Store is the part of the account store the service reads.
type Store interface {
	// UsersBoundToContacts returns, in one query, the users whose lookup
	// binding names one of ids and those bound in username mode whose
	// username is one of usernames.
	UsersBoundToContacts(ctx context.Context, ids, usernames []string) ([]*authz.User, error)
}

// Invitations creates crmgate invitations; *invitations.Service
// satisfies it.
type Invitations interface {
	Create(ctx context.Context, ni invitations.NewInvitation, actor string) (*invitations.Invitation, error)
}

// Onboarding generates accounts for contacts; *onboarding.Service
// satisfies it.
type Onboarding interface {
	InviteContacts(ctx context.Context, req onboarding.InviteRequest, actor string) ([]onboarding.InviteResult, error)
}

// Cache drops a contact's cached snapshot after a write;
// *crmclient.CachedDirectory satisfies it.
type Cache interface {
	InvalidateContact(id string)
}

// Limits of a list page and of the fields.
const (
	// DefaultLimit is the page size of a ListRequest without one.
	DefaultLimit = 50
	// MaxLimit is the largest page size a ListRequest may ask for.
	MaxLimit = 200
	// MaxColumns is the most extra columns Options.Columns may name.
	MaxColumns = 20
	// MaxSearchLen is the longest search, in bytes.
	MaxSearchLen = 200
	// Column lengths of the contact table
	// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact):
	// firstname and lastname 50 characters, emailaddress1 100.
	MaxFirstNameLen = 50
	MaxLastNameLen  = 50
	MaxEmailLen     = 100
	// MaxTextLen bounds the company column and the configured columns:
	// the largest single line of text Dataverse holds
	// (https://learn.microsoft.com/power-apps/maker/data-platform/types-of-fields).
	// A column defined shorter is refused by Dataverse itself.
	MaxTextLen = 4000
)

// DefaultCompanyColumn is the text column Options.CompanyColumn defaults
// to: the contact's organization name of the Power Pages data model.
const DefaultCompanyColumn = "adx_organizationname"

// Errors of the service; match them with errors.Is. Bad input is a
// *authz.ValidationError naming the field.
var (
	// ErrNotFound means there is no such contact, or it is outside the
	// configured filter. It is returned together with authz.ErrNotFound
	// and, when Dataverse said so, dataverse.ErrContactNotFound.
	ErrNotFound = errors.New("contacts: no such contact")
	// ErrChanged means the contact changed in Dataverse since the given
	// row version was read, and nothing was written: the console shows
	// "changed by someone else, reload". Errors wrapping it also wrap
	// dataverse.ErrContactChanged.
	ErrChanged = errors.New("contacts: the contact was changed by someone else; reload it")
	// ErrBound means the contact has accounts bound to it and was not
	// deleted (or not invited); the error is a *BoundError naming them.
	ErrBound = errors.New("contacts: the contact is bound to accounts")
	// ErrNoInvitations and ErrNoOnboarding mean Invite or CreateUser was
	// called on a service built without that feature.
	ErrNoInvitations = errors.New("contacts: invitations are not configured")
	ErrNoOnboarding  = errors.New("contacts: generated accounts are not configured")
)

// BoundError is the refusal of a change to a contact that accounts are
// bound to.
type BoundError struct {
	ContactID string
	Users     []BoundUser
}

// Error names the accounts.
func (e *BoundError) Error() string {
	names := make([]string, len(e.Users))
	for i, u := range e.Users {
		names[i] = u.Username
	}
	return fmt.Sprintf("contacts: contact %s is bound to %s; unbind or delete those accounts first", e.ContactID, strings.Join(names, ", "))
}

// Is makes errors.Is(err, ErrBound) hold.
func (e *BoundError) Is(target error) bool { return target == ErrBound }

// BoundUser is an account bound to a contact.
type BoundUser struct {
	ID       string            `json:"id"`
	Username string            `json:"username"`
	Email    string            `json:"email"`
	Status   authz.Status      `json:"status"`
	Mode     authz.BindingMode `json:"binding_mode"`
}

// Contact is one contact as the console shows it.
type Contact struct {
	// ID is contactid, a lower-case GUID.
	ID        string `json:"id"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	// FullName is Dataverse's fullname (computed from the names).
	FullName string `json:"full_name"`
	Email    string `json:"email"`
	// Company is the value of Options.CompanyColumn, "" when empty.
	Company string `json:"company"`
	// Columns holds each configured column (Options.Columns) as Dataverse
	// sent it: a string, a bool, a float64 or nil.
	Columns map[string]any `json:"columns"`
	// Active is statecode 0.
	Active bool `json:"active"`
	// ETag is the row version, to pass back to Update and Delete.
	ETag string `json:"etag"`
	// BoundUsers are the accounts bound to the contact (lookup bindings,
	// and username bindings to its username column), never nil. Custom
	// (filter) bindings are resolved at sign-in and not shown.
	BoundUsers []BoundUser `json:"bound_users"`
}

// ListRequest asks for one page of the list.
type ListRequest struct {
	// Search keeps contacts whose first name, last name, full name or
	// email address starts with it (case-insensitive); empty keeps all.
	Search string
	// Cursor is ListPage.Next of the previous page of the same search;
	// empty asks for the first page.
	Cursor string
	// Limit is the page size, 1 to MaxLimit; zero means DefaultLimit.
	Limit int
}

// ListPage is one page of the list. It may hold fewer than the Limit rows
// and still have a Next: rows Dataverse matched more loosely than the
// filter (strings compare case-insensitively there, with wildcards) are
// dropped from the page.
type ListPage struct {
	Contacts []*Contact `json:"contacts"`
	// Next is the cursor of the next page; empty on the last one.
	Next string `json:"next,omitempty"`
}

// Fields are the values Create and Update write. A nil pointer (or a
// column missing from Columns) is left as it is; an empty string clears
// the column (sent as null). Leading and trailing spaces are trimmed.
type Fields struct {
	FirstName *string
	LastName  *string
	Email     *string
	Company   *string
	// Columns are values of configured columns (Options.Columns) only,
	// by logical name, written as text.
	Columns map[string]string
}

// Options configure a Service. Directory, Store and Audit are required.
type Options struct {
	Directory Directory
	Store     Store
	Audit     *audit.Log
	// Filter is the configured base filter (the policy file's
	// console.contacts.filter), a binding filter template without
	// placeholders; nil lists every contact.
	Filter *binding.FilterTemplate
	// CompanyColumn is the text column shown and edited as the company;
	// empty means DefaultCompanyColumn. (The parent customer lookup,
	// parentcustomerid, is not edited here.)
	CompanyColumn string
	// Columns are extra contact columns shown and edited as text, at most
	// MaxColumns, each a valid, non-secret column
	// (dataverse.ValidContactColumn) other than the fixed ones.
	Columns []string
	// BindingUsernameColumn is the column username bindings compare with
	// usernames (binding.Options.UsernameColumn); empty means
	// binding.DefaultUsernameColumn.
	BindingUsernameColumn string
	// Invitations, when set, lets Invite create invitations.
	Invitations Invitations
	// Onboarding, when set, lets CreateUser generate accounts.
	Onboarding Onboarding
	// Cache, when set, has a contact's entry dropped after each write.
	Cache Cache
	// NewID returns the id of a new contact, a GUID; nil means a random
	// (version 4) GUID.
	NewID func() string
	// Now is the clock of the audit events; nil means time.Now.
	Now func() time.Time
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
}

// Service manages contacts. Build it with New; it is safe for concurrent
// use.
type Service struct {
	o       Options
	conds   []dataverse.Condition
	columns []string // the columns every read asks for: company, configured, binding username, filter
}

// fixedColumns are the columns of Contact's typed fields.
var fixedColumns = []string{"contactid", "fullname", "firstname", "lastname", "emailaddress1", "statecode"}

// New checks o and returns the service. A bad option is an error naming
// it: these come from the policy file, which check-config checks with
// the same function (CheckOptions).
func New(o Options) (*Service, error) {
	var errs []error
	if o.Directory == nil || o.Store == nil || o.Audit == nil {
		errs = append(errs, errors.New("contacts: nil directory, store or audit log"))
	}
	if err := CheckOptions(o.Filter, o.CompanyColumn, o.Columns); err != nil {
		errs = append(errs, err)
	}
	if o.BindingUsernameColumn != "" {
		if err := dataverse.ValidContactColumn(o.BindingUsernameColumn); err != nil {
			errs = append(errs, fmt.Errorf("contacts: binding username column: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.CompanyColumn == "" {
		o.CompanyColumn = DefaultCompanyColumn
	}
	if o.BindingUsernameColumn == "" {
		o.BindingUsernameColumn = binding.DefaultUsernameColumn
	}
	if o.NewID == nil {
		o.NewID = randomGUID
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o}
	if o.Filter != nil {
		s.conds, _ = o.Filter.Conditions(nil) // checked by CheckOptions
	}
	add := func(c string) {
		if !slices.Contains(fixedColumns, c) && !slices.Contains(s.columns, c) {
			s.columns = append(s.columns, c)
		}
	}
	add(o.CompanyColumn)
	for _, c := range o.Columns {
		add(c)
	}
	add(o.BindingUsernameColumn)
	return s, nil
}

// CheckOptions checks the configured filter, company column and extra
// columns, as New does: the filter must hold no placeholder such as
// {email} (it selects contacts, not users); the columns must be valid,
// non-secret contact columns (dataverse.ValidContactColumn), distinct,
// not one of the fixed columns, at most MaxColumns.
func CheckOptions(filter *binding.FilterTemplate, company string, columns []string) error {
	var errs []error
	if filter != nil {
		if filter.HasFields() {
			errs = append(errs, errors.New("contacts: filter: holds a placeholder such as {email}; the contact list's filter selects contacts, not users"))
		} else if _, err := filter.Conditions(nil); err != nil {
			errs = append(errs, fmt.Errorf("contacts: filter: %w", err))
		}
	}
	if company != "" {
		if err := dataverse.ValidContactColumn(company); err != nil {
			errs = append(errs, fmt.Errorf("contacts: company column: %w", err))
		} else if slices.Contains(fixedColumns, company) {
			errs = append(errs, fmt.Errorf("contacts: company column: %s is one of the fixed columns", company))
		}
	}
	if len(columns) > MaxColumns {
		errs = append(errs, fmt.Errorf("contacts: columns: %d given, at most %d", len(columns), MaxColumns))
	}
	for i, c := range columns {
		switch err := dataverse.ValidContactColumn(c); {
		case err != nil:
			errs = append(errs, fmt.Errorf("contacts: columns[%d]: %w", i, err))
		case slices.Contains(fixedColumns, c) || c == company || company == "" && c == DefaultCompanyColumn:
			errs = append(errs, fmt.Errorf("contacts: columns[%d]: %s is shown already (a fixed column or the company)", i, c))
		case slices.Contains(columns[:i], c):
			errs = append(errs, fmt.Errorf("contacts: columns[%d]: %s is listed twice", i, c))
		}
	}
	return errors.Join(errs...)
}

// randomGUID returns a version 4 GUID.
func randomGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read documents it)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// notFound is the error of a contact that does not exist or is outside
// the filter.
func notFound(id string, cause error) error {
	if cause != nil {
		return fmt.Errorf("%w: %w: %s: %w", ErrNotFound, authz.ErrNotFound, id, cause)
	}
	return fmt.Errorf("%w: %w: %s", ErrNotFound, authz.ErrNotFound, id)
}

// dirError maps a directory error.
func dirError(op, id string, err error) error {
	switch {
	case errors.Is(err, dataverse.ErrContactChanged):
		return fmt.Errorf("contacts: %s %s: %w: %w", op, id, ErrChanged, err)
	case errors.Is(err, dataverse.ErrContactNotFound):
		return notFound(id, err)
	}
	return fmt.Errorf("contacts: %s %s: %w", op, id, err)
}

// List returns one page of the contacts the filter selects, narrowed by
// req.Search, with the accounts bound to them read in one store query.
func (s *Service) List(ctx context.Context, req ListRequest) (*ListPage, error) {
	switch {
	case req.Limit == 0:
		req.Limit = DefaultLimit
	case req.Limit < 0 || req.Limit > MaxLimit:
		return nil, &authz.ValidationError{Field: "limit", Message: fmt.Sprintf("The page size must be from 1 to %d.", MaxLimit)}
	}
	req.Search = strings.TrimSpace(req.Search)
	if len(req.Search) > MaxSearchLen || !authz.Printable(req.Search) {
		return nil, &authz.ValidationError{Field: "search", Message: fmt.Sprintf("The search must be at most %d printable characters.", MaxSearchLen)}
	}
	if len(req.Cursor) > 16<<10 {
		return nil, &authz.ValidationError{Field: "cursor", Message: "This is not a page of this list; start again from the first page."}
	}
	page, err := s.o.Directory.ListContactPage(ctx, dataverse.ContactPageQuery{
		Conditions: s.conds, Search: req.Search, Columns: s.columns, PageSize: req.Limit, Cursor: req.Cursor,
	})
	if err != nil {
		if errors.Is(err, dataverse.ErrInvalidCursor) {
			return nil, &authz.ValidationError{Field: "cursor", Message: "This is not a page of this list; start again from the first page."}
		}
		return nil, fmt.Errorf("contacts: list: %w", err)
	}
	out := &ListPage{Contacts: make([]*Contact, 0, len(page.Contacts)), Next: page.Next}
	for _, c := range page.Contacts {
		out.Contacts = append(out.Contacts, s.contact(c))
	}
	if err := s.bind(ctx, out.Contacts, page.Contacts); err != nil {
		return nil, err
	}
	return out, nil
}

// contact converts a directory snapshot.
func (s *Service) contact(c *dataverse.Contact) *Contact {
	out := &Contact{ID: c.ID, FirstName: c.FirstName, LastName: c.LastName, FullName: c.Name, Email: c.Email,
		Active: c.Active, ETag: c.ETag, Columns: make(map[string]any, len(s.o.Columns)), BoundUsers: []BoundUser{}}
	out.Company, _ = c.Text(s.o.CompanyColumn)
	for _, col := range s.o.Columns {
		out.Columns[col] = c.Columns[col]
	}
	return out
}

// bind fills the BoundUsers of rows (whose snapshots are snaps, in the
// same order) with one store query.
func (s *Service) bind(ctx context.Context, rows []*Contact, snaps []*dataverse.Contact) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]string, len(rows))
	names := make([]string, 0, len(rows))
	byName := map[string][]*Contact{}
	byID := map[string]*Contact{}
	for i, r := range rows {
		ids[i] = r.ID
		byID[r.ID] = r
		if v, ok := snaps[i].Text(s.o.BindingUsernameColumn); ok && strings.TrimSpace(v) != "" {
			n := authz.NormalizeLogin(v)
			names = append(names, n)
			byName[n] = append(byName[n], r)
		}
	}
	users, err := s.o.Store.UsersBoundToContacts(ctx, ids, names)
	if err != nil {
		s.o.Logger.ErrorContext(ctx, "contacts: bound users not read", "err", err)
		return fmt.Errorf("contacts: bound users: %w", err)
	}
	for _, u := range users {
		b := BoundUser{ID: u.ID, Username: u.Username, Email: u.Email, Status: u.Status, Mode: u.Binding.Mode}
		switch u.Binding.Mode {
		case authz.BindingLookup:
			if u.Binding.Ref != nil {
				if r := byID[strings.ToLower(u.Binding.Ref.ID)]; r != nil {
					r.BoundUsers = append(r.BoundUsers, b)
				}
			}
		case authz.BindingUsername:
			for _, r := range byName[authz.NormalizeLogin(u.Username)] {
				r.BoundUsers = append(r.BoundUsers, b)
			}
		}
	}
	return nil
}

// read returns contact id if it is inside the filter, with its bound
// users.
func (s *Service) read(ctx context.Context, id string) (*Contact, *dataverse.Contact, error) {
	gid, err := dataverse.ParseID(strings.TrimSpace(id))
	if err != nil {
		return nil, nil, notFound(truncate(id, 64), nil)
	}
	cols := slices.Clone(s.columns)
	for _, c := range dataverse.ConditionColumns(s.conds) {
		if !slices.Contains(cols, c) && !slices.Contains(fixedColumns, c) {
			cols = append(cols, c)
		}
	}
	snap, err := s.o.Directory.ContactByID(ctx, gid, cols)
	if err != nil {
		return nil, nil, dirError("read", gid, err)
	}
	if !dataverse.MatchesAll(snap, s.conds) {
		return nil, nil, notFound(gid, nil)
	}
	c := s.contact(snap)
	if err := s.bind(ctx, []*Contact{c}, []*dataverse.Contact{snap}); err != nil {
		return nil, nil, err
	}
	return c, snap, nil
}

// Get returns contact id with its ETag and bound users. A contact that
// does not exist, or that the filter does not select, wraps ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (*Contact, error) {
	c, _, err := s.read(ctx, id)
	return c, err
}

// columnsOf validates f and returns the Dataverse columns it writes
// (values string, or nil to clear).
func (s *Service) columnsOf(f Fields) (map[string]any, error) {
	out := map[string]any{}
	put := func(col string, v *string, field string, max int, check func(string) error) error {
		if v == nil {
			return nil
		}
		t := strings.TrimSpace(*v)
		if !utf8.ValidString(t) || !authz.Printable(t) {
			return &authz.ValidationError{Field: field, Message: "The value must be text without control characters."}
		}
		if n := utf8.RuneCountInString(t); n > max {
			return &authz.ValidationError{Field: field, Message: fmt.Sprintf("At most %d characters (this has %d).", max, n)}
		}
		if t != "" && check != nil {
			if err := check(t); err != nil {
				return err
			}
		}
		if t == "" {
			out[col] = nil
		} else {
			out[col] = t
		}
		return nil
	}
	for _, p := range []struct {
		col, field string
		v          *string
		max        int
		check      func(string) error
	}{
		{"firstname", "first_name", f.FirstName, MaxFirstNameLen, nil},
		{"lastname", "last_name", f.LastName, MaxLastNameLen, nil},
		{"emailaddress1", "email", f.Email, MaxEmailLen, authz.ValidateEmail},
		{s.o.CompanyColumn, "company", f.Company, MaxTextLen, nil},
	} {
		if err := put(p.col, p.v, p.field, p.max, p.check); err != nil {
			return nil, err
		}
	}
	for _, col := range slices.Sorted(maps.Keys(f.Columns)) {
		if !slices.Contains(s.o.Columns, col) {
			return nil, &authz.ValidationError{Field: "columns", Message: fmt.Sprintf("%q is not a column of this list.", truncate(col, 64))}
		}
		v := f.Columns[col]
		if err := put(col, &v, col, MaxTextLen, nil); err != nil {
			return nil, err
		}
	}
	// Dataverse requires lastname on a contact
	// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact):
	// it may be left out of an update, never cleared.
	if v, ok := out["lastname"]; ok && v == nil {
		return nil, &authz.ValidationError{Field: "last_name", Message: "The last name is required."}
	}
	return out, nil
}

// changedColumns returns the columns of cols whose value differs from
// snap's, sorted.
func changedColumns(snap *dataverse.Contact, cols map[string]any) []string {
	var out []string
	for col, v := range cols {
		old, ok := snap.Value(col)
		if !ok || old != v && !(old == "" && v == nil) {
			out = append(out, col)
		}
	}
	slices.Sort(out)
	return out
}

// audit records a write.
func (s *Service) audit(ctx context.Context, typ, actor, id string, cols []string) {
	d := "contact " + id
	if len(cols) > 0 {
		d += " columns " + strings.Join(cols, ",")
	}
	s.o.Audit.Record(ctx, audit.Event{Time: s.o.Now(), Type: typ, Actor: actor, Detail: d})
}

func (s *Service) invalidate(id string) {
	if s.o.Cache != nil {
		s.o.Cache.InvalidateContact(id)
	}
}

// Create creates a contact with f (a last name is required), the eq terms
// of the filter whose columns f leaves out (so that the new contact is in
// the list; statecode and statuscode are left to Dataverse), and returns
// it as Get would. A contact that would still be outside the filter is
// refused with a *authz.ValidationError on "filter" and not created. The
// id is chosen here (Options.NewID), so a retry of the request to
// Dataverse never creates two.
func (s *Service) Create(ctx context.Context, f Fields, actor string) (*Contact, error) {
	if f.LastName == nil || strings.TrimSpace(*f.LastName) == "" {
		return nil, &authz.ValidationError{Field: "last_name", Message: "The last name is required."}
	}
	cols, err := s.columnsOf(f)
	if err != nil {
		return nil, err
	}
	for _, c := range s.conds {
		if _, set := cols[c.Column]; set || c.Op != "eq" || c.Value == nil || c.Column == "statecode" || c.Column == "statuscode" {
			continue
		}
		cols[c.Column] = c.Value
	}
	for col, v := range cols {
		if v == nil {
			delete(cols, col)
		}
	}
	// The new row as Dataverse will hold it (active; a column not given is
	// null) must be in the list, or the administrator could create a
	// contact they then cannot see.
	would := &dataverse.Contact{Active: true, Columns: map[string]any{}}
	for _, col := range dataverse.ConditionColumns(s.conds) {
		switch v, ok := cols[col]; {
		case ok:
			would.Columns[col] = v
		case col == "statuscode":
			would.Columns[col] = int64(1) // Active's default status
		case col != "statecode": // statecode comes from Active
			would.Columns[col] = nil
		}
	}
	if col := s.o.Filter.Columns(); !dataverse.MatchesAll(would, s.conds) {
		return nil, &authz.ValidationError{Field: "filter", Message: fmt.Sprintf("The new contact would be outside this list (%s); set the columns it filters on: %s.",
			s.o.Filter.String(), strings.Join(col, ", "))}
	}
	id := s.o.NewID()
	if err := s.o.Directory.CreateContact(ctx, id, cols); err != nil {
		s.o.Logger.WarnContext(ctx, "contacts: create refused", "contact_id", id, "actor", actor, "err", err)
		return nil, dirError("create", id, err)
	}
	s.audit(ctx, audit.EventContactCreated, actor, id, slices.Sorted(maps.Keys(cols)))
	c, _, err := s.read(ctx, id)
	return c, err
}

// checkETag refuses an empty row version, and one that is not the
// current one.
func checkETag(id, etag string, snap *dataverse.Contact) error {
	switch {
	case strings.TrimSpace(etag) == "" || etag == "*":
		return &authz.ValidationError{Field: "etag", Message: "The contact's version (etag) is required; reload the contact."}
	case snap.ETag != "" && etag != snap.ETag:
		return fmt.Errorf("contacts: %s: %w: %w", id, ErrChanged, dataverse.ErrContactChanged)
	}
	return nil
}

// Update writes f to contact id if its row version is still etag (from
// List or Get). A stale etag wraps ErrChanged and writes nothing; no
// change at all writes nothing either. It returns the contact as it is
// afterwards.
func (s *Service) Update(ctx context.Context, id, etag string, f Fields, actor string) (*Contact, error) {
	cols, err := s.columnsOf(f)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(etag) == "" || etag == "*" {
		return nil, checkETag(id, etag, nil)
	}
	cur, snap, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := checkETag(cur.ID, etag, snap); err != nil {
		return nil, err
	}
	changed := changedColumns(snap, cols)
	if len(changed) == 0 {
		return cur, nil
	}
	write := make(map[string]any, len(changed))
	for _, c := range changed {
		write[c] = cols[c]
	}
	if err := s.o.Directory.UpdateContact(ctx, cur.ID, write, etag); err != nil {
		s.o.Logger.WarnContext(ctx, "contacts: update refused", "contact_id", cur.ID, "actor", actor, "err", err)
		return nil, dirError("update", cur.ID, err)
	}
	s.invalidate(cur.ID)
	s.audit(ctx, audit.EventContactUpdated, actor, cur.ID, changed)
	c, _, err := s.read(ctx, cur.ID)
	return c, err
}

// Delete deletes contact id if its row version is still etag. A contact
// with accounts bound to it is not deleted: the error is a *BoundError
// naming them (unbind or delete them first). A stale etag wraps
// ErrChanged.
func (s *Service) Delete(ctx context.Context, id, etag, actor string) error {
	if strings.TrimSpace(etag) == "" || etag == "*" {
		return checkETag(id, etag, nil)
	}
	cur, snap, err := s.read(ctx, id)
	if err != nil {
		return err
	}
	if err := checkETag(cur.ID, etag, snap); err != nil {
		return err
	}
	if len(cur.BoundUsers) > 0 {
		s.o.Logger.InfoContext(ctx, "contacts: delete refused: bound", "contact_id", cur.ID, "actor", actor, "users", len(cur.BoundUsers))
		return &BoundError{ContactID: cur.ID, Users: cur.BoundUsers}
	}
	if err := s.o.Directory.DeleteContact(ctx, cur.ID, etag); err != nil {
		s.o.Logger.WarnContext(ctx, "contacts: delete refused", "contact_id", cur.ID, "actor", actor, "err", err)
		return dirError("delete", cur.ID, err)
	}
	s.invalidate(cur.ID)
	s.audit(ctx, audit.EventContactDeleted, actor, cur.ID, nil)
	return nil
}

// Invite creates a crmgate invitation for contact id through the
// invitations service: ni with ContactID set to the contact (an empty
// ni.Email takes its emailaddress1). A contact with accounts bound is
// refused with a *BoundError. The invitations service validates,
// audits and mails.
func (s *Service) Invite(ctx context.Context, id string, ni invitations.NewInvitation, actor string) (*invitations.Invitation, error) {
	if s.o.Invitations == nil {
		return nil, ErrNoInvitations
	}
	cur, _, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(cur.BoundUsers) > 0 {
		return nil, &BoundError{ContactID: cur.ID, Users: cur.BoundUsers}
	}
	ni.ContactID = cur.ID
	return s.o.Invitations.Create(ctx, ni, actor)
}

// CreateUser generates an account for contact id with a set-password
// link, through onboarding.Service.InviteContacts (which skips a contact
// bound already, and audits every outcome); the result says what
// happened.
func (s *Service) CreateUser(ctx context.Context, id, actor string) (onboarding.InviteResult, error) {
	if s.o.Onboarding == nil {
		return onboarding.InviteResult{}, ErrNoOnboarding
	}
	cur, _, err := s.read(ctx, id)
	if err != nil {
		return onboarding.InviteResult{}, err
	}
	res, err := s.o.Onboarding.InviteContacts(ctx, onboarding.InviteRequest{ContactIDs: []string{cur.ID}}, actor)
	if err != nil {
		return onboarding.InviteResult{}, fmt.Errorf("contacts: create user for %s: %w", cur.ID, err)
	}
	if len(res) != 1 {
		return onboarding.InviteResult{}, fmt.Errorf("contacts: create user for %s: %d results", cur.ID, len(res))
	}
	return res[0], nil
}

// truncate cuts s for an error message.
func truncate(s string, n int) string {
	if !authz.Printable(s) {
		return "(not printable)"
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// CompanyColumn is the column shown and edited as the company.
func (s *Service) CompanyColumn() string { return s.o.CompanyColumn }

// Columns are the configured extra columns, in their configured order.
func (s *Service) Columns() []string { return slices.Clone(s.o.Columns) }

// CanInvite reports whether Invite works (an invitations service is set).
func (s *Service) CanInvite() bool { return s.o.Invitations != nil }

// CanCreateUser reports whether CreateUser works (onboarding is set).
func (s *Service) CanCreateUser() bool { return s.o.Onboarding != nil }
