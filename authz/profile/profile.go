// Package profile is the user's own profile and its field sync with the
// bound Dataverse contact: pulls at every contact read (Dataverse wins) and
// pushes of the user's changes, conditional on the contact's ETag.
package profile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/dataverse"
)

// profileFields are the fields of a profile, in the order pages show them.
var profileFields = []string{authz.FieldFirstName, authz.FieldLastName, authz.FieldDisplayName, authz.FieldEmail}

// readOnlyContactColumns are contact columns Dataverse computes or owns
// (fullname is read-only, composed from first and last name:
// https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact).
// A field mapped to one of them is only ever pulled.
var readOnlyContactColumns = []string{"contactid", "fullname", "statecode", "statuscode", "createdon", "modifiedon", "yomifullname"}

// FieldSync keeps user fields and the columns of the bound contact in
// step. The zero value syncs nothing.
//
// Pull: whenever the bound contact is read (the sign-in check and the
// revalidation of a session), every mapped user field whose value differs
// from the contact's takes the contact's value: Dataverse wins. A pull
// enqueues no lifecycle event, since the change came from Dataverse.
//
// Push: UpdateProfile writes a changed field to its column, conditional on
// the contact's ETag, unless Dataverse changed that column since the user's
// value was last pulled (the contact's value is neither the old nor the new
// one): then Dataverse wins again and the change is not applied.
//
// Email is pull-only: a user cannot change it on the profile, since that
// would need the new address confirmed first. A pulled address that another
// account uses is skipped (and logged); a pulled address that differs from
// the account's is not confirmed (User.EmailConfirmed becomes false).
// Fields mapped to a column Dataverse computes, such as fullname, are
// pull-only as well.
type FieldSync struct {
	// Columns maps a user field (authz.FieldEmail, FieldFirstName,
	// FieldLastName, FieldDisplayName) to a contact column, e.g. {"first_name":
	// "firstname", "last_name": "lastname", "email": "emailaddress1"}.
	// Two fields cannot share a column. Field sync needs the sign-in
	// check (signin.Check.Enabled), where pulls happen.
	Columns map[string]string
}

// Validate reports every problem of f: an unknown field, an invalid
// column name, a column mapped twice.
func (f FieldSync) Validate() error {
	var errs []error
	seen := map[string]string{}
	for _, field := range slices.Sorted(maps.Keys(f.Columns)) {
		col := f.Columns[field]
		if !slices.Contains(profileFields, field) {
			errs = append(errs, fmt.Errorf("profile: field sync: unknown user field %q (want email, first_name, last_name or display_name)", field))
			continue
		}
		if err := dataverse.ValidContactColumn(col); err != nil {
			errs = append(errs, fmt.Errorf("profile: field sync: %s: %w", field, err))
			continue
		}
		if other, ok := seen[strings.ToLower(col)]; ok {
			errs = append(errs, fmt.Errorf("profile: field sync: %s and %s both map to column %s", other, field, col))
		}
		seen[strings.ToLower(col)] = field
	}
	return errors.Join(errs...)
}

// ColumnNames returns the mapped contact columns, sorted.
func (f FieldSync) ColumnNames() []string { return f.columns() }

// columns returns the mapped columns, sorted.
func (f FieldSync) columns() []string {
	cols := make([]string, 0, len(f.Columns))
	for _, c := range f.Columns {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	return cols
}

// pushable reports whether a change of field may be written to its column.
func (f FieldSync) pushable(field string) bool {
	col, ok := f.Columns[field]
	return ok && field != authz.FieldEmail && !slices.Contains(readOnlyContactColumns, strings.ToLower(col))
}

// setUserField sets field of u to v; a changed email is not confirmed.
func setUserField(u *authz.User, field, v string) {
	switch field {
	case authz.FieldEmail:
		if !strings.EqualFold(u.Email, v) {
			u.EmailConfirmed = false
		}
		u.Email = v
	case authz.FieldFirstName:
		u.FirstName = v
	case authz.FieldLastName:
		u.LastName = v
	case authz.FieldDisplayName:
		u.DisplayName = v
	}
}

// pullValue checks a contact value before it replaces field: names must be
// plain text of at most MaxNameLen characters, an email a valid address.
func pullValue(field, v string) bool {
	if field == authz.FieldEmail {
		return authz.ValidateEmail(v) == nil
	}
	return authz.ValidateName(v) == nil
}

// Store is the part of the account store profiles use.
type Store interface {
	// UserByID returns the user with that id, or authz.ErrNotFound.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// UserByLogin returns the user whose username or email equals login
	// after authz.NormalizeLogin, or authz.ErrNotFound.
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	// UpdateUser saves every field of u except ID and CreatedAt, provided
	// the stored row still has u.UpdatedAt (optimistic concurrency); then
	// it sets u.UpdatedAt to the new, strictly later, value. A changed row
	// gives authz.ErrStale, a missing one authz.ErrNotFound, a duplicate
	// username or email authz.ErrConflict.
	UpdateUser(ctx context.Context, u *authz.User) error
	// UpdateUserAndEnqueue is UpdateUser that also enqueues events in the
	// outbox, in the same transaction.
	UpdateUserAndEnqueue(ctx context.Context, u *authz.User, events ...outbox.Event) error
}

// Contacts is what profiles need from Dataverse; crmclient.Directory
// satisfies it. Each call is one Web API request.
type Contacts interface {
	// ContactByID returns contact id with columns; a missing contact gives
	// dataverse.ErrContactNotFound.
	ContactByID(ctx context.Context, id string, columns []string) (*dataverse.Contact, error)
	// UpdateContact writes columns (logical name to a string, a bool, an
	// int64 or nil) to contact id, only if the contact still has etag
	// (If-Match); an empty etag updates whatever version is there. It never
	// creates a contact: a missing one gives dataverse.ErrContactNotFound,
	// a changed one dataverse.ErrContactChanged.
	UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error
}

// Resolver resolves a user's binding; *binding.Resolver satisfies it.
type Resolver interface {
	// Resolve returns u's contact with columns (and its web roles when
	// roles), nil for an unbound user, a *binding.Error for a binding that
	// does not resolve, or an error wrapping dataverse.ErrUnavailable.
	Resolve(ctx context.Context, u *authz.User, columns []string, roles bool) (*dataverse.Contact, error)
}

// Options configure a Service.
type Options struct {
	// Sync maps user fields to contact columns; the zero value syncs
	// nothing. A mapping needs Contacts and Resolver.
	Sync FieldSync
	// Contacts reads and writes the bound contacts; nil means no Dataverse:
	// profiles are then the account's alone.
	Contacts Contacts
	// Resolver resolves bindings; it must be set when Contacts is.
	Resolver Resolver
	// Audit receives EventProfileUpdated and EventProfileSynced; required.
	Audit *audit.Log
	// Notify, when set, is called after a change that enqueued outbox
	// events has been committed (outbox.Worker.Notify). It must not block.
	Notify func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures the caller does not see; nil discards them.
	Logger *slog.Logger
}

// Service shows and changes users' own profiles and keeps the synced
// fields in step with the bound contacts. Build it with New; it is safe for
// concurrent use.
type Service struct {
	store    Store
	contacts Contacts
	resolver Resolver
	sync     FieldSync
	audit    *audit.Log
	notify   func()
	now      func() time.Time
	log      *slog.Logger
}

// New returns the profile service over store.
func New(store Store, o Options) (*Service, error) {
	if store == nil || o.Audit == nil {
		return nil, errors.New("profile: nil store or audit log")
	}
	sync := FieldSync{Columns: maps.Clone(o.Sync.Columns)}
	if err := sync.Validate(); err != nil {
		return nil, err
	}
	if len(sync.Columns) > 0 && (o.Contacts == nil || o.Resolver == nil) {
		return nil, errors.New("profile: field sync needs a contact directory and a binding resolver")
	}
	if o.Contacts != nil && o.Resolver == nil {
		return nil, errors.New("profile: a contact directory needs a binding resolver")
	}
	s := &Service{store: store, contacts: o.Contacts, resolver: o.Resolver, sync: sync, audit: o.Audit,
		notify: o.Notify, now: o.Now, log: o.Logger}
	if s.notify == nil {
		s.notify = func() {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Columns returns the contact columns the field sync reads, sorted; nil
// when nothing is synced.
func (s *Service) Columns() []string {
	if len(s.sync.Columns) == 0 {
		return nil
	}
	return s.sync.columns()
}

// modifyAttempts bounds the read-modify-write retries of a change.
const modifyAttempts = 5

// syncDiff returns the mapped fields of u whose value differs from the
// contact's, with the contact's value, skipping values that could not be
// stored.
func (s *Service) syncDiff(u *authz.User, c *dataverse.Contact) map[string]string {
	var diff map[string]string
	for field, col := range s.sync.Columns {
		v, ok := c.Text(col)
		if !ok || v == u.Field(field) {
			continue
		}
		if field == authz.FieldEmail && v == "" {
			continue // an account keeps its sign-in address when the contact has none
		}
		if !pullValue(field, v) {
			s.log.Warn("field sync: the contact's value cannot be stored; the account keeps its own", "user_id", u.ID, "field", field, "column", col)
			continue
		}
		if diff == nil {
			diff = map[string]string{}
		}
		diff[field] = v
	}
	return diff
}

// Pull copies the mapped columns of c into u's account where they
// differ (Dataverse wins), and into u itself once stored. Failures are
// logged, never returned: a sign-in does not fail because its account
// could not be refreshed.
func (s *Service) Pull(ctx context.Context, u *authz.User, c *dataverse.Contact) {
	if len(s.syncDiff(u, c)) == 0 {
		return // nothing differs: no write, not even a read
	}
	skipEmail := false
	for range modifyAttempts {
		cur, err := s.store.UserByID(ctx, u.ID)
		if err != nil {
			s.log.WarnContext(ctx, "field sync: read account", "user_id", u.ID, "err", err)
			return
		}
		diff := s.syncDiff(cur, c)
		if v, ok := diff[authz.FieldEmail]; ok && (skipEmail || s.emailTaken(ctx, cur, v)) {
			// Known before writing: a pull whose only change is an address
			// another account holds writes nothing, at every revalidation.
			s.log.WarnContext(ctx, "field sync: the contact's email address belongs to another account; the account keeps its own", "user_id", u.ID)
			delete(diff, authz.FieldEmail)
			skipEmail = true
		}
		if len(diff) == 0 {
			return
		}
		for f, v := range diff {
			setUserField(cur, f, v)
		}
		err = s.store.UpdateUser(ctx, cur)
		switch {
		case errors.Is(err, authz.ErrStale):
			continue
		case errors.Is(err, authz.ErrConflict) && diff[authz.FieldEmail] != "":
			skipEmail = true // taken between the check and the write
			continue
		case err != nil:
			s.log.WarnContext(ctx, "field sync: save account", "user_id", u.ID, "err", err)
			return
		}
		fields := slices.Sorted(maps.Keys(diff))
		for _, f := range fields {
			setUserField(u, f, diff[f])
		}
		u.UpdatedAt = cur.UpdatedAt
		s.audit.Record(ctx, audit.Event{Type: audit.EventProfileSynced, Actor: "dataverse", UserID: u.ID, Detail: strings.Join(fields, ",")})
		return
	}
	s.log.WarnContext(ctx, "field sync: the account kept changing; not refreshed this time", "user_id", u.ID)
}

// emailTaken reports whether another account than u signs in with email (as
// its email or its username); a failed read counts as taken, so nothing is
// written on a guess.
func (s *Service) emailTaken(ctx context.Context, u *authz.User, email string) bool {
	o, err := s.store.UserByLogin(ctx, email)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		return false
	case err != nil:
		s.log.WarnContext(ctx, "field sync: check the contact's email address", "user_id", u.ID, "err", err)
		return true
	}
	return o.ID != u.ID
}

// Profile is what a user may change on their own profile page. Fields are
// trimmed; empty clears a field.
type Profile struct {
	FirstName, LastName, DisplayName string
}

// Field describes one field of a user's profile page.
type Field struct {
	// Name is FieldFirstName, FieldLastName, FieldDisplayName or FieldEmail.
	Name string
	// Value is the account's current value.
	Value string
	// Editable reports whether the user may change it: email never is,
	// nor a field synced from a column Dataverse computes.
	Editable bool
	// Column is the contact column the field is synced with; empty when
	// the field is not synced (or the user is not bound).
	Column string
}

// ProfileFields returns the profile of u as its page shows it.
func (s *Service) ProfileFields(u *authz.User) []Field {
	bound := u.Binding.Mode != "" && u.Binding.Mode != authz.BindingNone && s.contacts != nil
	out := make([]Field, 0, len(profileFields))
	for _, f := range profileFields {
		pf := Field{Name: f, Value: u.Field(f), Editable: f != authz.FieldEmail}
		if col, ok := s.sync.Columns[f]; ok && bound {
			pf.Column = col
			pf.Editable = s.sync.pushable(f)
		}
		out = append(out, pf)
	}
	return out
}

// Result is what UpdateProfile did.
type Result struct {
	// User is the account as saved.
	User *authz.User
	// Pushed are the fields written to the bound contact.
	Pushed []string
	// Kept are the fields whose change was not applied because Dataverse
	// had changed them since they were last pulled: they now hold
	// Dataverse's value.
	Kept []string
}

// UpdateProfile applies a user's own profile change to account userID
// (actor is who made it, for the audit log). For a user bound to a contact,
// with FieldSync mapping the changed fields, the change is first written to
// the contact in one conditional request after one read, so Dataverse and
// the account agree; see FieldSync for who wins a conflict. Bad input, or a
// change of a field that is not editable, gives a *ValidationError.
// Dataverse being unavailable gives an error wrapping
// dataverse.ErrUnavailable and changes nothing, so the caller can ask the
// user to try again shortly. The account's sessions stay valid (the
// security stamp is kept), and lifecycle.Updated is enqueued with the
// change.
func (s *Service) UpdateProfile(ctx context.Context, userID string, p Profile, actor string) (*Result, error) {
	want := map[string]string{
		authz.FieldFirstName:   strings.TrimSpace(p.FirstName),
		authz.FieldLastName:    strings.TrimSpace(p.LastName),
		authz.FieldDisplayName: strings.TrimSpace(p.DisplayName),
	}
	for _, f := range []string{authz.FieldFirstName, authz.FieldLastName, authz.FieldDisplayName} {
		if err := authz.ValidateName(want[f]); err != nil {
			return nil, &authz.ValidationError{Field: f, Message: fmt.Sprintf("Names must be plain text of at most %d characters.", authz.MaxNameLen)}
		}
	}
	for range modifyAttempts {
		res, err := s.updateProfile(ctx, userID, want, actor)
		if errors.Is(err, authz.ErrStale) || errors.Is(err, dataverse.ErrContactChanged) {
			continue
		}
		return res, err
	}
	return nil, fmt.Errorf("profile: update: %w", authz.ErrStale)
}

// updateProfile is one attempt of UpdateProfile; ErrStale or
// dataverse.ErrContactChanged ask for another.
func (s *Service) updateProfile(ctx context.Context, userID string, want map[string]string, actor string) (*Result, error) {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("profile: update: %w", err)
	}
	var changed []string
	for _, pf := range s.ProfileFields(u) {
		v, ok := want[pf.Name]
		if !ok || v == pf.Value {
			continue
		}
		if !pf.Editable {
			return nil, &authz.ValidationError{Field: pf.Name, Message: "This field is managed in the CRM and cannot be changed here."}
		}
		changed = append(changed, pf.Name)
	}
	res := &Result{User: u}
	if len(changed) == 0 {
		return res, nil
	}
	next := *u
	next.Roles = slices.Clone(u.Roles)
	for _, f := range changed {
		setUserField(&next, f, want[f])
	}
	if c, err := s.syncedContact(ctx, u, changed); err != nil {
		return nil, err
	} else if c != nil {
		patch := map[string]any{}
		pulled := s.syncDiff(u, c) // what a sign-in would pull now
		for field, col := range s.sync.Columns {
			if !slices.Contains(changed, field) {
				if v, ok := pulled[field]; ok {
					setUserField(&next, field, v)
				}
				continue
			}
			dv, ok := c.Text(col)
			if !ok {
				continue
			}
			old := u.Field(field)
			switch {
			case dv == want[field]:
				// Already there (an earlier attempt, or the same edit in the CRM).
			case dv != old:
				// Dataverse changed it: Dataverse wins, unless its value
				// cannot be stored; then the account keeps its own.
				if pullValue(field, dv) {
					setUserField(&next, field, dv)
				} else {
					setUserField(&next, field, old)
				}
				res.Kept = append(res.Kept, field)
			default:
				patch[col] = want[field]
				res.Pushed = append(res.Pushed, field)
			}
		}
		if len(patch) > 0 {
			if err := s.contacts.UpdateContact(ctx, c.ID, patch, c.ETag); err != nil {
				if errors.Is(err, dataverse.ErrContactChanged) {
					return nil, err
				}
				return nil, fmt.Errorf("profile: update: write contact: %w", err)
			}
			s.pullComputed(ctx, &next, c.ID)
		}
	}
	ev, err := lifecycle.NewEvent(lifecycle.Updated, &next, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.store.UpdateUserAndEnqueue(ctx, &next, ev); err != nil {
		if errors.Is(err, authz.ErrStale) {
			return nil, err
		}
		return nil, fmt.Errorf("profile: update: %w", err)
	}
	s.notify()
	slices.Sort(res.Pushed)
	slices.Sort(res.Kept)
	detail := strings.Join(changed, ",")
	if len(res.Pushed) > 0 {
		detail += "; pushed " + strings.Join(res.Pushed, ",")
	}
	if len(res.Kept) > 0 {
		detail += "; kept Dataverse's " + strings.Join(res.Kept, ",")
	}
	s.audit.Record(ctx, audit.Event{Type: audit.EventProfileUpdated, Actor: actor, UserID: u.ID, Detail: detail})
	res.User = &next
	return res, nil
}

// pullComputed reads contact id again after a push when a field is synced
// from a column Dataverse computes (fullname from firstname and lastname),
// and pulls those fields into u, so the account shows the new value at
// once. It costs one request, only with such a mapping; a failure is
// logged and leaves the values to the next pull.
func (s *Service) pullComputed(ctx context.Context, u *authz.User, id string) {
	var computed []string
	for field := range s.sync.Columns {
		if field != authz.FieldEmail && !s.sync.pushable(field) {
			computed = append(computed, field)
		}
	}
	if len(computed) == 0 {
		return
	}
	c, err := s.contacts.ContactByID(ctx, id, s.sync.columns())
	if err != nil {
		s.log.WarnContext(ctx, "field sync: re-read the contact after a push", "user_id", u.ID, "err", err)
		return
	}
	for _, field := range computed {
		if v, ok := c.Text(s.sync.Columns[field]); ok && pullValue(field, v) {
			setUserField(u, field, v)
		}
	}
}

// syncedContact returns the contact a profile change of u must be
// reconciled with, read with the synced columns; nil when nothing is
// synced for u or its binding does not resolve (then the change is saved
// on the account alone, and logged).
func (s *Service) syncedContact(ctx context.Context, u *authz.User, changed []string) (*dataverse.Contact, error) {
	if len(s.sync.Columns) == 0 || s.contacts == nil || u.Binding.Mode == "" || u.Binding.Mode == authz.BindingNone {
		return nil, nil
	}
	if !slices.ContainsFunc(changed, func(f string) bool { _, ok := s.sync.Columns[f]; return ok }) {
		return nil, nil
	}
	c, err := s.resolver.Resolve(ctx, u, s.sync.columns(), false)
	var berr *binding.Error
	switch {
	case errors.As(err, &berr):
		s.log.WarnContext(ctx, "profile change saved on the account only: its binding does not resolve", "user_id", u.ID, "reason", berr.Reason)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("profile: update: %w", err)
	}
	return c, nil
}
