package profile_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/crmgate/crmgate/authz/authztest"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/profile"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
)

// syncDir is a directory over one contact that applies updates to it,
// checking the ETag as Dataverse does; every write gets a new ETag.
type syncDir struct {
	*authztest.Directory
	mu      sync.Mutex
	c       *dataverse.Contact
	version int
}

func newSyncDir(c *dataverse.Contact) *syncDir {
	s := &syncDir{c: c, version: 1}
	c.ETag = `W/"1"`
	s.Directory = &authztest.Directory{
		ByID: func(_ context.Context, id string, _ []string) (*dataverse.Contact, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if id != s.c.ID {
				return nil, dataverse.ErrContactNotFound
			}
			cp := *s.c
			cp.Columns = map[string]any{}
			for k, v := range s.c.Columns {
				cp.Columns[k] = v
			}
			return &cp, nil
		},
		Update: func(_ context.Context, id string, cols map[string]any, etag string) error {
			return s.write(id, cols, etag)
		},
	}
	return s
}

// write changes the contact if etag matches (or is empty).
func (s *syncDir) write(id string, cols map[string]any, etag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != s.c.ID {
		return dataverse.ErrContactNotFound
	}
	if etag != "" && etag != s.c.ETag {
		return dataverse.ErrContactChanged
	}
	for k, v := range cols {
		s.c.Columns[k] = v
		switch k {
		case "firstname":
			s.c.FirstName = v.(string)
		case "lastname":
			s.c.LastName = v.(string)
		case "emailaddress1":
			s.c.Email = v.(string)
		}
	}
	s.version++
	s.c.ETag = `W/"` + strings.Repeat("1", s.version) + `"`
	return nil
}

func syncFixture(t *testing.T, dir wiring.Contacts, sync map[string]string) *authztest.Fixture {
	t.Helper()
	f := authztest.NewFixture(t, wiring.Options{Contacts: dir, SignInCheck: signin.Check{Enabled: true},
		FieldSync: profile.FieldSync{Columns: sync}})
	f.CreateUser(t, "ana", authz.StatusActive)
	// Bound earlier, when the contact existed.
	f.Bind(t, "ana", authztest.Lookup(authztest.C1))
	return f
}

func names() map[string]string {
	return map[string]string{"first_name": "firstname", "last_name": "lastname", "email": "emailaddress1"}
}

func TestFieldSyncValidate(t *testing.T) {
	err := profile.FieldSync{Columns: map[string]string{"nickname": "x", "first_name": "1bad", "last_name": "fullname", "display_name": "fullname", "email": "adx_identity_securitystamp"}}.Validate()
	for _, want := range []string{`unknown user field "nickname"`, "first_name", "display_name and last_name both map to column", "email: must not be adx_identity_securitystamp"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q: %v", want, err)
		}
	}
	if err := (profile.FieldSync{Columns: names()}).Validate(); err != nil {
		t.Errorf("valid mapping refused: %v", err)
	}
	if err := authztest.BuildErr(t, wiring.Options{FieldSync: profile.FieldSync{Columns: names()}}); err == nil || !strings.Contains(err.Error(), "field sync needs a contact directory") {
		t.Errorf("field sync without a directory: %v", err)
	}
}

// TestPullAtSignIn: the contact's values replace the account's; a contact
// email used by another account, or a value that cannot be stored, is
// skipped; a changed email is no longer confirmed.
func TestPullAtSignIn(t *testing.T) {
	c := authztest.Contact(authztest.C1, "ana.new@example.com", "ana", true)
	c.FirstName, c.LastName = "Ana", "Lima\u0007" // a control character is never stored
	dir := newSyncDir(c)
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	confirmed := f.UserByLogin(t, "ana")
	confirmed.EmailConfirmed = true
	if err := f.DB.UpdateUser(ctx, confirmed); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.SignIn.SignIn(ctx, signin.Credentials{Login: "ana", Password: authztest.GoodPassword}); err != nil {
		t.Fatal(err)
	}
	u := f.UserByLogin(t, "ana")
	if u.FirstName != "Ana" || u.LastName != "" || u.Email != "ana.new@example.com" || u.EmailConfirmed {
		t.Errorf("after the pull: first %q last %q email %q confirmed %v", u.FirstName, u.LastName, u.Email, u.EmailConfirmed)
	}

	// Another account takes an address; the contact then names it.
	f.CreateUser(t, "bea", authz.StatusActive)
	dir.write(authztest.C1, map[string]any{"emailaddress1": "bea@example.com", "firstname": "Anna"}, "")
	if _, err := f.Svc.SignIn.SignIn(ctx, signin.Credentials{Login: "ana", Password: authztest.GoodPassword}); err != nil {
		t.Fatal(err)
	}
	u = f.UserByLogin(t, "ana")
	if u.Email != "ana.new@example.com" || u.FirstName != "Anna" {
		t.Errorf("email taken by another account: email %q first %q; want the email kept and the name pulled", u.Email, u.FirstName)
	}
	events, _ := f.Svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventProfileSynced})
	if len(events) != 2 || events[0].Actor != "dataverse" {
		t.Errorf("profile_synced events: %+v", events)
	}
}

// TestUpdateProfileRetriesAChangedContact: a contact written between the
// read and the conditional update (412) is read again, and the user's
// change still wins where the CRM did not touch that field.
func TestUpdateProfileRetriesAChangedContact(t *testing.T) {
	c := authztest.Contact(authztest.C1, "ana@example.com", "ana", true)
	dir := newSyncDir(c)
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	raced := false
	dir.Update = func(ctx context.Context, id string, cols map[string]any, etag string) error {
		if !raced {
			raced = true
			dir.write(id, map[string]any{"new_tier": "silver"}, "") // someone else's write
		}
		return dir.write(id, cols, etag)
	}
	res, err := f.Svc.Profile.UpdateProfile(ctx, f.UserByLogin(t, "ana").ID, profile.Profile{FirstName: "Ana", LastName: "Lima"}, "u")
	if err != nil {
		t.Fatal(err)
	}
	if len(dir.Updates) != 2 || dir.c.FirstName != "Ana" || dir.c.LastName != "Lima" || strings.Join(res.Pushed, ",") != "first_name,last_name" {
		t.Errorf("after a 412: %d updates, contact %q %q, pushed %v", len(dir.Updates), dir.c.FirstName, dir.c.LastName, res.Pushed)
	}
}

// TestUpdateProfileWithoutContact: a binding that no longer resolves saves
// on the account alone; Dataverse down changes nothing.
func TestUpdateProfileWithoutContact(t *testing.T) {
	dir := newSyncDir(authztest.Contact(authztest.C2, "x@example.com", "x", true)) // not ana's contact
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	id := f.UserByLogin(t, "ana").ID
	if _, err := f.Svc.Profile.UpdateProfile(ctx, id, profile.Profile{FirstName: "Ana"}, "u"); err != nil {
		t.Fatal(err)
	}
	if u := f.UserByLogin(t, "ana"); u.FirstName != "Ana" || len(dir.Updates) != 0 {
		t.Errorf("unresolved binding: first %q, %d updates", u.FirstName, len(dir.Updates))
	}

	g := syncFixture(t, authztest.Down(), names())
	_, err := g.Svc.Profile.UpdateProfile(ctx, g.UserByLogin(t, "ana").ID, profile.Profile{FirstName: "Anabel"}, "u")
	if !errors.Is(err, dataverse.ErrUnavailable) {
		t.Fatalf("Dataverse down: %v", err)
	}
	if u := g.UserByLogin(t, "ana"); u.FirstName != "" {
		t.Errorf("saved during an outage: %q", u.FirstName)
	}
	var verr *authz.ValidationError
	if _, err := g.Svc.Profile.UpdateProfile(ctx, g.UserByLogin(t, "ana").ID, profile.Profile{LastName: strings.Repeat("é", authz.MaxNameLen+1)}, "u"); !errors.As(err, &verr) || verr.Field != "last_name" {
		t.Errorf("too long a name: %v", err)
	}
}

// snapshots is an signin.Snapshots over a directory's byID, counting calls.
type snapshots struct {
	dir   *authztest.Directory
	mu    sync.Mutex
	calls int
}

func (s *snapshots) ContactSnapshot(ctx context.Context, id string, columns []string) (*dataverse.Contact, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	return s.dir.ByID(ctx, id, columns)
}

// TestRevalidateThroughSnapshots: a due session is confirmed from the
// snapshot cache when the cached contact still satisfies the binding, and
// resolved afresh (as at sign-in) when it does not.
func TestRevalidateThroughSnapshots(t *testing.T) {
	ana := authztest.Contact(authztest.C1, "ana@example.com", "ana", true)
	other := authztest.Contact(authztest.C2, "x@example.com", "someone-else", true)
	dir := authztest.Rows(nil, ana, other)
	snap := &snapshots{dir: dir}
	f := authztest.NewFixture(t, wiring.Options{Contacts: dir, Snapshots: snap, SignInCheck: signin.Check{Enabled: true},
		Binding: binding.Options{DefaultMode: authz.BindingUsername}})
	ctx := t.Context()
	u := f.CreateUser(t, "ana", authz.StatusActive)

	_, c, err := f.Svc.SignIn.RevalidateContact(ctx, u.ID, authztest.C1, []string{"emailaddress1"})
	if err != nil || c.ID != authztest.C1 || snap.calls != 1 || dir.Requests() != 0 {
		t.Fatalf("cached confirmation: %v %v, %d snapshot calls, %d directory requests", c, err, snap.calls, dir.Requests())
	}
	// The session names a contact whose username is not ana's: resolved
	// afresh, which finds authztest.C1 again.
	_, c, err = f.Svc.SignIn.RevalidateContact(ctx, u.ID, authztest.C2, nil)
	if err != nil || c.ID != authztest.C1 || dir.Requests() != 1 {
		t.Fatalf("mismatched snapshot: %v %v, %d directory requests", c, err, dir.Requests())
	}
	// A contact gone from the cache's view: resolved afresh too.
	if _, _, err := f.Svc.SignIn.RevalidateContact(ctx, u.ID, "44444444-4444-4444-8444-444444444444", nil); err != nil || dir.Requests() != 2 {
		t.Fatalf("missing snapshot: %v, %d directory requests", err, dir.Requests())
	}
	// Deactivated: refused from the snapshot, audited as session.revoked.
	ana.Active = false
	_, _, err = f.Svc.SignIn.RevalidateContact(ctx, u.ID, authztest.C1, nil)
	var refused *signin.RefusedError
	if !errors.As(err, &refused) || refused.Reason != binding.ReasonContactInactive {
		t.Fatalf("deactivated: %v", err)
	}
	events, _ := f.Svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventSessionRevoked})
	if len(events) != 1 || events[0].Detail != binding.ReasonContactInactive {
		t.Errorf("session.revoked events: %+v", events)
	}
	// Unavailable: passed through for the session's grace period.
	unavailable := &snapshots{dir: authztest.Down()}
	g := authztest.NewFixture(t, wiring.Options{Contacts: dir, Snapshots: unavailable, SignInCheck: signin.Check{Enabled: true},
		Binding: binding.Options{DefaultMode: authz.BindingUsername}})
	v := g.CreateUser(t, "ana", authz.StatusActive)
	if _, _, err := g.Svc.SignIn.RevalidateContact(ctx, v.ID, authztest.C1, nil); !errors.Is(err, dataverse.ErrUnavailable) {
		t.Errorf("snapshots down: %v", err)
	}
}

// TestConflictWithUnstorableValue: when Dataverse changed a field the user
// edits to a value that cannot be stored (a control character), the edit
// still loses, and the account keeps its own value rather than the bad one.
func TestConflictWithUnstorableValue(t *testing.T) {
	dir := newSyncDir(authztest.Contact(authztest.C1, "ana@example.com", "ana", true))
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	id := f.UserByLogin(t, "ana").ID
	dir.write(authztest.C1, map[string]any{"lastname": "Li\u0007ma"}, "")
	res, err := f.Svc.Profile.UpdateProfile(ctx, id, profile.Profile{LastName: "Lima"}, "u")
	if err != nil {
		t.Fatal(err)
	}
	if u := f.UserByLogin(t, "ana"); u.LastName != "" || len(res.Kept) != 1 || res.Kept[0] != "last_name" || len(dir.Updates) != 0 {
		t.Errorf("last name %q, kept %v, %d updates; want the old empty name kept and nothing written", u.LastName, res.Kept, len(dir.Updates))
	}
}
