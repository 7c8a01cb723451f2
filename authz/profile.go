package authz

import (
	"context"
	"errors"
	"fmt"
	"github.com/crmgate/crmgate/dataverse"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The user fields a FieldSync can map and a profile can show. They are the
// LifecycleField* names of the same fields.
const (
	FieldEmail       = LifecycleFieldEmail
	FieldFirstName   = LifecycleFieldFirstName
	FieldLastName    = LifecycleFieldLastName
	FieldDisplayName = LifecycleFieldDisplayName
)

// profileFields are the fields of a profile, in the order pages show them.
var profileFields = []string{FieldFirstName, FieldLastName, FieldDisplayName, FieldEmail}

// readOnlyContactColumns are contact columns Dataverse computes or owns
// (WEBAPI.md §7: fullname is "read-only, composed from first/last name").
// A field mapped to one of them is only ever pulled.
var readOnlyContactColumns = []string{"contactid", "fullname", "statecode", "statuscode", "createdon", "modifiedon", "yomifullname"}

// FieldSync keeps user fields and the columns of the bound contact in
// step. The zero value syncs nothing.
//
// Pull: whenever authz reads the bound contact (the sign-in check and the
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
	// Columns maps a user field (FieldEmail, FieldFirstName, FieldLastName,
	// FieldDisplayName) to a contact column, e.g. {"first_name":
	// "firstname", "last_name": "lastname", "email": "emailaddress1"}.
	// Two fields cannot share a column. Field sync needs the sign-in
	// check (SignInCheck.Enabled), where pulls happen.
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
			errs = append(errs, fmt.Errorf("authz: field sync: unknown user field %q (want email, first_name, last_name or display_name)", field))
			continue
		}
		if err := dataverse.ValidContactColumn(col); err != nil {
			errs = append(errs, fmt.Errorf("authz: field sync: %s: %w", field, err))
			continue
		}
		if other, ok := seen[strings.ToLower(col)]; ok {
			errs = append(errs, fmt.Errorf("authz: field sync: %s and %s both map to column %s", other, field, col))
		}
		seen[strings.ToLower(col)] = field
	}
	return errors.Join(errs...)
}

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
	return ok && field != FieldEmail && !slices.Contains(readOnlyContactColumns, strings.ToLower(col))
}

// userField returns field of u.
func userField(u *User, field string) string {
	switch field {
	case FieldEmail:
		return u.Email
	case FieldFirstName:
		return u.FirstName
	case FieldLastName:
		return u.LastName
	case FieldDisplayName:
		return u.DisplayName
	}
	return ""
}

// setUserField sets field of u to v; a changed email is not confirmed.
func setUserField(u *User, field, v string) {
	switch field {
	case FieldEmail:
		if !strings.EqualFold(u.Email, v) {
			u.EmailConfirmed = false
		}
		u.Email = v
	case FieldFirstName:
		u.FirstName = v
	case FieldLastName:
		u.LastName = v
	case FieldDisplayName:
		u.DisplayName = v
	}
}

// pullValue checks a contact value before it replaces field: names must be
// plain text of at most MaxNameLen characters, an email a valid address.
func pullValue(field, v string) bool {
	if field == FieldEmail {
		return ValidateEmail(v) == nil
	}
	return validName(v) == nil
}

// validName checks a name a user entered or Dataverse sent.
func validName(v string) error {
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxNameLen {
		return fmt.Errorf("names must be valid text of at most %d characters", MaxNameLen)
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		return errors.New("names must not contain control characters")
	}
	return nil
}

// syncDiff returns the mapped fields of u whose value differs from the
// contact's, with the contact's value, skipping values that could not be
// stored.
func (s *Service) syncDiff(u *User, c *dataverse.Contact) map[string]string {
	var diff map[string]string
	for field, col := range s.sync.Columns {
		v, ok := c.Text(col)
		if !ok || v == userField(u, field) {
			continue
		}
		if field == FieldEmail && v == "" {
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

// pullFields copies the mapped columns of c into u's account where they
// differ (Dataverse wins), and into u itself once stored. Failures are
// logged, never returned: a sign-in does not fail because its account
// could not be refreshed.
func (s *Service) pullFields(ctx context.Context, u *User, c *dataverse.Contact) {
	diff := s.syncDiff(u, c)
	if len(diff) == 0 {
		return
	}
	for range modifyAttempts {
		cur, err := s.store.UserByID(ctx, u.ID)
		if err != nil {
			s.log.WarnContext(ctx, "field sync: read account", "user_id", u.ID, "err", err)
			return
		}
		for f, v := range diff {
			setUserField(cur, f, v)
		}
		err = s.store.UpdateUser(ctx, cur)
		switch {
		case errors.Is(err, ErrStale):
			continue
		case errors.Is(err, ErrConflict) && diff[FieldEmail] != "":
			s.log.WarnContext(ctx, "field sync: the contact's email address belongs to another account; the account keeps its own", "user_id", u.ID)
			delete(diff, FieldEmail)
			if len(diff) == 0 {
				return
			}
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
		s.audit(ctx, AuditEvent{Type: EventProfileSynced, Actor: "dataverse", UserID: u.ID, Detail: strings.Join(fields, ",")})
		return
	}
	s.log.WarnContext(ctx, "field sync: the account kept changing; not refreshed this time", "user_id", u.ID)
}

// Profile is what a user may change on their own profile page. Fields are
// trimmed; empty clears a field.
type Profile struct {
	FirstName, LastName, DisplayName string
}

// ProfileField describes one field of a user's profile page.
type ProfileField struct {
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
func (s *Service) ProfileFields(u *User) []ProfileField {
	bound := u.Binding.Mode != "" && u.Binding.Mode != BindingNone && s.contacts != nil
	out := make([]ProfileField, 0, len(profileFields))
	for _, f := range profileFields {
		pf := ProfileField{Name: f, Value: userField(u, f), Editable: f != FieldEmail}
		if col, ok := s.sync.Columns[f]; ok && bound {
			pf.Column = col
			pf.Editable = s.sync.pushable(f)
		}
		out = append(out, pf)
	}
	return out
}

// ProfileResult is what UpdateProfile did.
type ProfileResult struct {
	// User is the account as saved.
	User *User
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
// security stamp is kept), and LifecycleUpdated is enqueued with the
// change.
func (s *Service) UpdateProfile(ctx context.Context, userID string, p Profile, actor string) (*ProfileResult, error) {
	want := map[string]string{
		FieldFirstName:   strings.TrimSpace(p.FirstName),
		FieldLastName:    strings.TrimSpace(p.LastName),
		FieldDisplayName: strings.TrimSpace(p.DisplayName),
	}
	for _, f := range []string{FieldFirstName, FieldLastName, FieldDisplayName} {
		if err := validName(want[f]); err != nil {
			return nil, &ValidationError{Field: f, Message: fmt.Sprintf("Names must be plain text of at most %d characters.", MaxNameLen)}
		}
	}
	for range modifyAttempts {
		res, err := s.updateProfile(ctx, userID, want, actor)
		if errors.Is(err, ErrStale) || errors.Is(err, dataverse.ErrContactChanged) {
			continue
		}
		return res, err
	}
	return nil, fmt.Errorf("authz: update profile: %w", ErrStale)
}

// updateProfile is one attempt of UpdateProfile; ErrStale or
// dataverse.ErrContactChanged ask for another.
func (s *Service) updateProfile(ctx context.Context, userID string, want map[string]string, actor string) (*ProfileResult, error) {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("authz: update profile: %w", err)
	}
	var changed []string
	for _, pf := range s.ProfileFields(u) {
		v, ok := want[pf.Name]
		if !ok || v == pf.Value {
			continue
		}
		if !pf.Editable {
			return nil, &ValidationError{Field: pf.Name, Message: "This field is managed in the CRM and cannot be changed here."}
		}
		changed = append(changed, pf.Name)
	}
	res := &ProfileResult{User: u}
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
			old := userField(u, field)
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
				return nil, fmt.Errorf("authz: update profile: write contact: %w", err)
			}
			s.pullComputed(ctx, &next, c.ID)
		}
	}
	ev, err := lifecycleEvent(LifecycleUpdated, &next, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.store.UpdateUserAndEnqueue(ctx, &next, ev); err != nil {
		if errors.Is(err, ErrStale) {
			return nil, err
		}
		return nil, fmt.Errorf("authz: update profile: %w", err)
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
	s.audit(ctx, AuditEvent{Type: EventProfileUpdated, Actor: actor, UserID: u.ID, Detail: detail})
	res.User = &next
	return res, nil
}

// pullComputed reads contact id again after a push when a field is synced
// from a column Dataverse computes (fullname from firstname and lastname),
// and pulls those fields into u, so the account shows the new value at
// once. It costs one request, only with such a mapping; a failure is
// logged and leaves the values to the next pull.
func (s *Service) pullComputed(ctx context.Context, u *User, id string) {
	var computed []string
	for field := range s.sync.Columns {
		if field != FieldEmail && !s.sync.pushable(field) {
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
func (s *Service) syncedContact(ctx context.Context, u *User, changed []string) (*dataverse.Contact, error) {
	if len(s.sync.Columns) == 0 || s.contacts == nil || u.Binding.Mode == "" || u.Binding.Mode == BindingNone {
		return nil, nil
	}
	if !slices.ContainsFunc(changed, func(f string) bool { _, ok := s.sync.Columns[f]; return ok }) {
		return nil, nil
	}
	c, err := s.resolveBinding(ctx, u, s.sync.columns(), false)
	var berr *BindingError
	switch {
	case errors.As(err, &berr):
		s.log.WarnContext(ctx, "profile change saved on the account only: its binding does not resolve", "user_id", u.ID, "reason", berr.Reason)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("authz: update profile: %w", err)
	}
	return c, nil
}
