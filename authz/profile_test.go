package authz_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

// syncDir is a directory over one contact that applies updates to it,
// checking the ETag as Dataverse does; every write gets a new ETag.
type syncDir struct {
	*directory
	mu      sync.Mutex
	c       *dataverse.Contact
	version int
}

func newSyncDir(c *dataverse.Contact) *syncDir {
	s := &syncDir{c: c, version: 1}
	c.ETag = `W/"1"`
	s.directory = &directory{
		byID: func(_ context.Context, id string, _ []string) (*dataverse.Contact, error) {
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
		update: func(_ context.Context, id string, cols map[string]any, etag string) error {
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

func syncFixture(t *testing.T, dir authz.Contacts, sync map[string]string) *fixture {
	t.Helper()
	f := newFixture(t, authz.Options{Contacts: dir, SignInCheck: authz.SignInCheck{Enabled: true},
		FieldSync: authz.FieldSync{Columns: sync}})
	f.createUser(t, "ana", authz.StatusActive)
	if err := f.svc.SetBinding(t.Context(), "ana", lookup(c1), "cli:test"); err != nil {
		t.Fatal(err)
	}
	return f
}

func names() map[string]string {
	return map[string]string{"first_name": "firstname", "last_name": "lastname", "email": "emailaddress1"}
}

func TestFieldSyncValidate(t *testing.T) {
	err := authz.FieldSync{Columns: map[string]string{"nickname": "x", "first_name": "1bad", "last_name": "fullname", "display_name": "fullname", "email": "adx_identity_securitystamp"}}.Validate()
	for _, want := range []string{`unknown user field "nickname"`, "first_name", "display_name and last_name both map to column", "email: must not be adx_identity_securitystamp"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q: %v", want, err)
		}
	}
	if err := (authz.FieldSync{Columns: names()}).Validate(); err != nil {
		t.Errorf("valid mapping refused: %v", err)
	}
	if err := newServiceErr(t, authz.Options{FieldSync: authz.FieldSync{Columns: names()}}); err == nil || !strings.Contains(err.Error(), "field sync needs a contact directory") {
		t.Errorf("field sync without a directory: %v", err)
	}
}

// TestPullAtSignIn: the contact's values replace the account's; a contact
// email used by another account, or a value that cannot be stored, is
// skipped; a changed email is no longer confirmed.
func TestPullAtSignIn(t *testing.T) {
	c := contact(c1, "ana.new@example.com", "ana", true)
	c.FirstName, c.LastName = "Ana", "Lima\u0007" // a control character is never stored
	dir := newSyncDir(c)
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	confirmed := f.userByLogin(t, "ana")
	confirmed.EmailConfirmed = true
	if err := f.db.UpdateUser(ctx, confirmed); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SignIn(ctx, authz.Credentials{Login: "ana", Password: goodPassword}); err != nil {
		t.Fatal(err)
	}
	u := f.userByLogin(t, "ana")
	if u.FirstName != "Ana" || u.LastName != "" || u.Email != "ana.new@example.com" || u.EmailConfirmed {
		t.Errorf("after the pull: first %q last %q email %q confirmed %v", u.FirstName, u.LastName, u.Email, u.EmailConfirmed)
	}

	// Another account takes an address; the contact then names it.
	f.createUser(t, "bea", authz.StatusActive)
	dir.write(c1, map[string]any{"emailaddress1": "bea@example.com", "firstname": "Anna"}, "")
	if _, err := f.svc.SignIn(ctx, authz.Credentials{Login: "ana", Password: goodPassword}); err != nil {
		t.Fatal(err)
	}
	u = f.userByLogin(t, "ana")
	if u.Email != "ana.new@example.com" || u.FirstName != "Anna" {
		t.Errorf("email taken by another account: email %q first %q; want the email kept and the name pulled", u.Email, u.FirstName)
	}
	events, _ := f.svc.ListAudit(ctx, authz.AuditFilter{Type: authz.EventProfileSynced})
	if len(events) != 2 || events[0].Actor != "dataverse" {
		t.Errorf("profile_synced events: %+v", events)
	}
}

// TestUpdateProfileRetriesAChangedContact: a contact written between the
// read and the conditional update (412) is read again, and the user's
// change still wins where the CRM did not touch that field.
func TestUpdateProfileRetriesAChangedContact(t *testing.T) {
	c := contact(c1, "ana@example.com", "ana", true)
	dir := newSyncDir(c)
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	raced := false
	dir.update = func(ctx context.Context, id string, cols map[string]any, etag string) error {
		if !raced {
			raced = true
			dir.write(id, map[string]any{"new_tier": "silver"}, "") // someone else's write
		}
		return dir.write(id, cols, etag)
	}
	res, err := f.svc.UpdateProfile(ctx, f.userByLogin(t, "ana").ID, authz.Profile{FirstName: "Ana", LastName: "Lima"}, "u")
	if err != nil {
		t.Fatal(err)
	}
	if len(dir.updates) != 2 || dir.c.FirstName != "Ana" || dir.c.LastName != "Lima" || strings.Join(res.Pushed, ",") != "first_name,last_name" {
		t.Errorf("after a 412: %d updates, contact %q %q, pushed %v", len(dir.updates), dir.c.FirstName, dir.c.LastName, res.Pushed)
	}
}

// TestUpdateProfileWithoutContact: a binding that no longer resolves saves
// on the account alone; Dataverse down changes nothing.
func TestUpdateProfileWithoutContact(t *testing.T) {
	dir := newSyncDir(contact(c2, "x@example.com", "x", true)) // not ana's contact
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	id := f.userByLogin(t, "ana").ID
	if _, err := f.svc.UpdateProfile(ctx, id, authz.Profile{FirstName: "Ana"}, "u"); err != nil {
		t.Fatal(err)
	}
	if u := f.userByLogin(t, "ana"); u.FirstName != "Ana" || len(dir.updates) != 0 {
		t.Errorf("unresolved binding: first %q, %d updates", u.FirstName, len(dir.updates))
	}

	g := syncFixture(t, down(), names())
	_, err := g.svc.UpdateProfile(ctx, g.userByLogin(t, "ana").ID, authz.Profile{FirstName: "Anabel"}, "u")
	if !errors.Is(err, dataverse.ErrUnavailable) {
		t.Fatalf("Dataverse down: %v", err)
	}
	if u := g.userByLogin(t, "ana"); u.FirstName != "" {
		t.Errorf("saved during an outage: %q", u.FirstName)
	}
	var verr *authz.ValidationError
	if _, err := g.svc.UpdateProfile(ctx, g.userByLogin(t, "ana").ID, authz.Profile{LastName: strings.Repeat("é", authz.MaxNameLen+1)}, "u"); !errors.As(err, &verr) || verr.Field != "last_name" {
		t.Errorf("too long a name: %v", err)
	}
}

// snapshots is an authz.ContactSnapshots over a directory's byID, counting calls.
type snapshots struct {
	dir   *directory
	mu    sync.Mutex
	calls int
}

func (s *snapshots) ContactSnapshot(ctx context.Context, id string, columns []string) (*dataverse.Contact, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	return s.dir.byID(ctx, id, columns)
}

// TestRevalidateThroughSnapshots: a due session is confirmed from the
// snapshot cache when the cached contact still satisfies the binding, and
// resolved afresh (as at sign-in) when it does not.
func TestRevalidateThroughSnapshots(t *testing.T) {
	ana := contact(c1, "ana@example.com", "ana", true)
	other := contact(c2, "x@example.com", "someone-else", true)
	dir := rows(nil, ana, other)
	snap := &snapshots{dir: dir}
	f := newFixture(t, authz.Options{Contacts: dir, Snapshots: snap, SignInCheck: authz.SignInCheck{Enabled: true},
		Binding: authz.BindingOptions{DefaultMode: authz.BindingUsername}})
	ctx := t.Context()
	u := f.createUser(t, "ana", authz.StatusActive)

	c, err := f.svc.RevalidateContact(ctx, u.ID, c1, []string{"emailaddress1"})
	if err != nil || c.ID != c1 || snap.calls != 1 || dir.requests() != 0 {
		t.Fatalf("cached confirmation: %v %v, %d snapshot calls, %d directory requests", c, err, snap.calls, dir.requests())
	}
	// The session names a contact whose username is not ana's: resolved
	// afresh, which finds c1 again.
	c, err = f.svc.RevalidateContact(ctx, u.ID, c2, nil)
	if err != nil || c.ID != c1 || dir.requests() != 1 {
		t.Fatalf("mismatched snapshot: %v %v, %d directory requests", c, err, dir.requests())
	}
	// A contact gone from the cache's view: resolved afresh too.
	if _, err := f.svc.RevalidateContact(ctx, u.ID, "44444444-4444-4444-8444-444444444444", nil); err != nil || dir.requests() != 2 {
		t.Fatalf("missing snapshot: %v, %d directory requests", err, dir.requests())
	}
	// Deactivated: refused from the snapshot, audited as session.revoked.
	ana.Active = false
	_, err = f.svc.RevalidateContact(ctx, u.ID, c1, nil)
	var refused *authz.SignInRefusedError
	if !errors.As(err, &refused) || refused.Reason != authz.ReasonContactInactive {
		t.Fatalf("deactivated: %v", err)
	}
	events, _ := f.svc.ListAudit(ctx, authz.AuditFilter{Type: authz.EventSessionRevoked})
	if len(events) != 1 || events[0].Detail != authz.ReasonContactInactive {
		t.Errorf("session.revoked events: %+v", events)
	}
	// Unavailable: passed through for the session's grace period.
	unavailable := &snapshots{dir: down()}
	g := newFixture(t, authz.Options{Contacts: dir, Snapshots: unavailable, SignInCheck: authz.SignInCheck{Enabled: true},
		Binding: authz.BindingOptions{DefaultMode: authz.BindingUsername}})
	v := g.createUser(t, "ana", authz.StatusActive)
	if _, err := g.svc.RevalidateContact(ctx, v.ID, c1, nil); !errors.Is(err, dataverse.ErrUnavailable) {
		t.Errorf("snapshots down: %v", err)
	}
}

// TestConflictWithUnstorableValue: when Dataverse changed a field the user
// edits to a value that cannot be stored (a control character), the edit
// still loses, and the account keeps its own value rather than the bad one.
func TestConflictWithUnstorableValue(t *testing.T) {
	dir := newSyncDir(contact(c1, "ana@example.com", "ana", true))
	f := syncFixture(t, dir, names())
	ctx := t.Context()
	id := f.userByLogin(t, "ana").ID
	dir.write(c1, map[string]any{"lastname": "Li\u0007ma"}, "")
	res, err := f.svc.UpdateProfile(ctx, id, authz.Profile{LastName: "Lima"}, "u")
	if err != nil {
		t.Fatal(err)
	}
	if u := f.userByLogin(t, "ana"); u.LastName != "" || len(res.Kept) != 1 || res.Kept[0] != "last_name" || len(dir.updates) != 0 {
		t.Errorf("last name %q, kept %v, %d updates; want the old empty name kept and nothing written", u.LastName, res.Kept, len(dir.updates))
	}
}
