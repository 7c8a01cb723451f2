package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/proxy"
)

// seenIdentity is what one proxied request carried and what /.auth/me said.
type seenIdentity struct {
	token, name, roles string // X-Current-User, X-Current-User-Name, X-Current-User-Roles
	claimName          string
	claimRoles         []string
	meName             string
	meRoles            []string
}

// identityOf makes one proxied request to path and one to /.auth/me.
func identityOf(t *testing.T, h *harness, c *http.Client, path string) seenIdentity {
	t.Helper()
	if resp, body := h.get(c, path); resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	hdr := h.up.last(t).Header
	id := seenIdentity{token: hdr.Get(proxy.HeaderCurrentUser), name: hdr.Get("X-Current-User-Name"), roles: hdr.Get("X-Current-User-Roles")}
	claims := h.verifyToken(id.token, h.up.srv.URL)
	id.claimName, _ = claims["name"].(string)
	for _, r := range claims["roles"].([]any) {
		id.claimRoles = append(id.claimRoles, r.(string))
	}
	resp, body := h.get(c, "/.auth/me")
	var me struct {
		User struct {
			Name  string
			Roles []string
		}
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &me) != nil {
		t.Fatalf("/.auth/me: %d %s", resp.StatusCode, body)
	}
	id.meName, id.meRoles = me.User.Name, me.User.Roles
	return id
}

// TestIdentityNeverStale: after a profile save, a pull from Dataverse at
// revalidation and a change of web roles, the very next proxied request
// carries the new values in X-Current-User, the plain headers and
// /.auth/me; while nothing changes (stamp checks included) the signed
// token is reused.
func TestIdentityNeverStale(t *testing.T) {
	h, _, client := newContactHarness(t, func(o *wiring.Options) { o.FieldSync = syncAll })
	ctx := context.Background()
	h.createUser("ann", "ann@example.test", "correct horse battery")
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	want := func(t *testing.T, id seenIdentity, name string, partner bool) {
		t.Helper()
		has := func(rs []string) bool { return slices.Contains(rs, "Partners") }
		if id.name != name || id.claimName != name || id.meName != name {
			t.Errorf("name: header %q, token %q, /me %q; want %q", id.name, id.claimName, id.meName, name)
		}
		if has(strings.Split(id.roles, ",")) != partner || has(id.claimRoles) != partner || has(id.meRoles) != partner {
			t.Errorf("web role Partners: header %q, token %v, /me %v; want %v", id.roles, id.claimRoles, id.meRoles, partner)
		}
	}
	first := identityOf(t, h, ann, "/orders/1")
	want(t, first, "Ann Lee", true)

	// Unchanged, across a stamp check (2m): the same token.
	h.clock.Advance(3 * time.Minute)
	if again := identityOf(t, h, ann, "/orders/1"); again.token != first.token {
		t.Error("the token was signed again although nothing changed")
	}

	// A profile save: the next request carries the new name.
	if resp, body := postProfile(h, ann, url.Values{"first_name": {"Annie"}, "last_name": {"Lee"}}); resp.StatusCode != 200 {
		t.Fatalf("profile save: %d %s", resp.StatusCode, body)
	}
	saved := identityOf(t, h, ann, "/orders/1")
	want(t, saved, "Annie Lee", true)
	if saved.token == first.token {
		t.Error("the token signed before the profile save was reused")
	}

	// Changed in Dataverse: new last name, the web role taken away. The
	// request that revalidates (5m after the last confirmation) already
	// carries them, and so does the next one.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"lastname": "Lee-Smith"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := client.RemoveContactFromWebRole(ctx, crmclient.WebRoleModelStandard, crmclient.MustParseGUID(annID), crmclient.MustParseGUID(roleID)); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(5 * time.Minute)
	want(t, identityOf(t, h, ann, "/orders/1"), "Annie Lee-Smith", false)
	want(t, identityOf(t, h, ann, "/orders/1"), "Annie Lee-Smith", false)
	if resp, _ := h.get(ann, "/partners/x"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("/partners after the web role was taken away: %d", resp.StatusCode)
	}
	// Given back: the next revalidation grants it again.
	if err := client.AddContactToWebRole(ctx, crmclient.WebRoleModelStandard, crmclient.MustParseGUID(annID), crmclient.MustParseGUID(roleID)); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(6 * time.Minute)
	want(t, identityOf(t, h, ann, "/orders/1"), "Annie Lee-Smith", true)
}

// flakyStore is the real store whose UserByID fails while failing is set,
// as a database that does not answer.
type flakyStore struct {
	*store.DB
	failing atomic.Bool
}

func (s *flakyStore) UserByID(ctx context.Context, id string) (*authz.User, error) {
	if s.failing.Load() {
		return nil, errors.New("database is locked")
	}
	return s.DB.UserByID(ctx, id)
}

// TestRevalidationStoreFailureKeepsSession: a transient store failure
// during a contact revalidation answers that request with 503 and keeps
// the session, as the stamp check does; once the store answers, the same
// session goes on.
func TestRevalidationStoreFailureKeepsSession(t *testing.T) {
	_, client := newContactEmulator(t)
	fs := &flakyStore{}
	h := contactHarnessWith(t, client, harnessConfig{
		store:  func(db *store.DB) wiring.Store { fs.DB = db; return fs },
		mutate: func(o *proxy.Options) { o.StampCheckInterval = 10 * time.Minute }, // only the revalidation is due at 6m
	})
	h.createUser("ann", "ann@example.test", "correct horse battery")
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	before := h.sessionCookie(ann).Value
	h.clock.Advance(6 * time.Minute)

	fs.failing.Store(true)
	req, _ := http.NewRequest("GET", h.url("/orders/1"), nil)
	req.Header.Set("Accept", "application/json")
	resp, body := h.do(ann, req)
	fs.failing.Store(false)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("revalidation with the store down: %d %s", resp.StatusCode, body)
	}
	if c := h.sessionCookie(ann); c == nil || c.Value != before {
		t.Fatal("the session cookie was cleared or replaced by a store failure")
	}
	if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != 200 || h.up.last(t).Header.Get("X-Current-User-Contact-Id") != annID {
		t.Fatalf("after the store recovered: %d", resp.StatusCode)
	}
}

// writeCounter is the real store that counts the calls that write users.
type writeCounter struct {
	*store.DB
	mu     sync.Mutex
	writes []string
}

func (w *writeCounter) note(what string) {
	w.mu.Lock()
	w.writes = append(w.writes, what)
	w.mu.Unlock()
}

func (w *writeCounter) count() int { w.mu.Lock(); defer w.mu.Unlock(); return len(w.writes) }

func (w *writeCounter) UpdateUser(ctx context.Context, u *authz.User) error {
	w.note("UpdateUser")
	return w.DB.UpdateUser(ctx, u)
}

func (w *writeCounter) UpdateUserAndEnqueue(ctx context.Context, u *authz.User, evs ...outbox.Event) error {
	w.note("UpdateUserAndEnqueue")
	return w.DB.UpdateUserAndEnqueue(ctx, u, evs...)
}

func (w *writeCounter) RecordSignInSuccess(ctx context.Context, id, client string, at time.Time) error {
	w.note("RecordSignInSuccess")
	return w.DB.RecordSignInSuccess(ctx, id, client, at)
}

func (w *writeCounter) BeginSignInAttempt(ctx context.Context, id, client string, now time.Time, limits signin.Limits) (signin.Attempt, error) {
	w.note("BeginSignInAttempt")
	return w.DB.BeginSignInAttempt(ctx, id, client, now, limits)
}

// TestNoWritesOnProxiedPath: proxied requests write no account row, across
// stamp checks and revalidations, unless a pull from Dataverse actually
// changed a field; a contact address that another account holds is not
// written at every revalidation either.
func TestNoWritesOnProxiedPath(t *testing.T) {
	_, client := newContactEmulator(t)
	wc := &writeCounter{}
	h := contactHarnessWith(t, client, harnessConfig{store: func(db *store.DB) wiring.Store { wc.DB = db; return wc }},
		func(o *wiring.Options) { o.FieldSync = syncAll })
	ctx := context.Background()
	h.createUser("ann", "ann@example.test", "correct horse battery")
	h.createUser("other", "other@example.test", "correct horse battery")
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	browse := func(minutes int) {
		t.Helper()
		for range minutes {
			h.clock.Advance(time.Minute)
			if resp, body := h.get(ann, "/orders/1"); resp.StatusCode != 200 {
				t.Fatalf("GET: %d %s", resp.StatusCode, body)
			}
		}
	}
	start := wc.count()
	browse(12) // four stamp checks and two revalidations, nothing changed
	if n := wc.count() - start; n != 0 {
		t.Fatalf("%d writes (%v) on proxied requests with nothing changed, want 0", n, wc.writes[start:])
	}
	// A field changed in Dataverse: one write, at the revalidation that
	// pulls it, and none after.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"firstname": "Annie"}, ""); err != nil {
		t.Fatal(err)
	}
	start = wc.count()
	browse(12)
	if n := wc.count() - start; n != 1 || wc.writes[start] != "UpdateUser" {
		t.Fatalf("%d writes (%v) for one changed field, want 1 UpdateUser", n, wc.writes[start:])
	}
	// The contact's address is another account's: never written.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"emailaddress1": "other@example.test"}, ""); err != nil {
		t.Fatal(err)
	}
	start = wc.count()
	browse(12)
	if n := wc.count() - start; n != 0 {
		t.Fatalf("%d writes (%v) for an address another account holds, want 0", n, wc.writes[start:])
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, mustUserID(t, h, "ann")); u.Email != "ann@example.test" || u.FirstName != "Annie" {
		t.Fatalf("account after the pulls: %q %q", u.Email, u.FirstName)
	}
}
