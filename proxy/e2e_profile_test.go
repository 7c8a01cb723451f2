package proxy_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/profile"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// syncAll maps every profile field; display_name to the computed fullname,
// so it is pull-only.
var syncAll = profile.FieldSync{Columns: map[string]string{
	"first_name": "firstname", "last_name": "lastname", "email": "emailaddress1", "display_name": "fullname"}}

// profileForm loads the profile page and returns its status, body and the
// value of each input by id.
func profileForm(h *harness, c *http.Client) (int, string, map[string]string) {
	h.t.Helper()
	resp, body := h.get(c, "/.auth/profile")
	values := map[string]string{}
	for _, m := range regexp.MustCompile(`<input id="([a-z_]+)"[^>]*? value="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		values[m[1]] = html.UnescapeString(m[2])
	}
	return resp.StatusCode, body, values
}

// postProfile submits the profile form as a same-origin browser would,
// with the page's own CSRF token unless form carries one.
func postProfile(h *harness, c *http.Client, form url.Values) (*http.Response, string) {
	h.t.Helper()
	if _, ok := form["csrf_token"]; !ok {
		_, body, _ := profileForm(h, c)
		m := csrfRE.FindStringSubmatch(body)
		if m == nil {
			h.t.Fatalf("no csrf_token on the profile page:\n%s", body)
		}
		form.Set("csrf_token", html.UnescapeString(m[1]))
	}
	req, _ := http.NewRequest("POST", h.url("/.auth/profile"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return h.do(c, req)
}

// contactRow reads a contact from the emulator.
func contactRow(t *testing.T, client *crmclient.Client, id string) *crmclient.Contact {
	t.Helper()
	c, err := client.GetContact(context.Background(), crmclient.MustParseGUID(id), nil, crmclient.WebRoleModelStandard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProfileFieldSync drives field sync through the profile page and the
// sign-in against the emulator: a sign-in pulls the contact's fields into
// the account; a profile change pushes to the contact in one conditional
// PATCH; a field changed in Dataverse meanwhile keeps Dataverse's value;
// pull-only fields cannot be changed; bad input and an outage change
// nothing and keep what the user typed; a revalidation pulls again.
func TestProfileFieldSync(t *testing.T) {
	h, emu, client := newContactHarness(t, func(o *wiring.Options) { o.FieldSync = syncAll })
	ctx := context.Background()
	u := h.createUser("ann", "ann@example.test", "correct horse battery")
	ann := h.browser()

	// Pull at sign-in: the account takes the contact's names.
	h.signIn(ann, "ann", "correct horse battery")
	u, _ = h.svc.Accounts.UserByID(ctx, u.ID)
	if u.FirstName != "Ann" || u.LastName != "Lee" || u.DisplayName != "Ann Lee" {
		t.Fatalf("after sign-in the account has %q %q %q, want the contact's Ann, Lee, Ann Lee", u.FirstName, u.LastName, u.DisplayName)
	}
	h.get(ann, "/orders/1")
	if got := h.up.last(t).Header.Get("X-Current-User-Name"); got != "Ann Lee" {
		t.Errorf("X-Current-User-Name = %q, want the pulled display name", got)
	}

	// The page: names editable, display name (fullname) and email read-only.
	status, body, values := profileForm(h, ann)
	if status != 200 || values["first_name"] != "Ann" || values["last_name"] != "Lee" || values["email"] != "ann@example.test" {
		t.Fatalf("profile page %d %v\n%s", status, values, body)
	}
	for _, ro := range []string{"display_name", "email"} {
		if !regexp.MustCompile(`<input id="` + ro + `" type="text"[^>]* readonly`).MatchString(body) {
			t.Errorf("%s is not read-only on the page", ro)
		}
	}

	// Push: one conditional PATCH; Dataverse recomputes fullname.
	stamp := u.SecurityStamp
	patches := emu.Requests("PATCH contacts()")
	resp, body := postProfile(h, ann, url.Values{"first_name": {"Annie"}, "last_name": {"Lee"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "Your profile was saved.") {
		t.Fatalf("save: %d\n%s", resp.StatusCode, body)
	}
	if n := emu.Requests("PATCH contacts()") - patches; n != 1 {
		t.Errorf("a profile change made %d PATCH requests, want 1", n)
	}
	if c := contactRow(t, client, annID); c.FirstName != "Annie" || c.FullName != "Annie Lee" {
		t.Errorf("contact after push: %q / %q", c.FirstName, c.FullName)
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, u.ID); u.FirstName != "Annie" || u.DisplayName != "Annie Lee" || u.SecurityStamp != stamp {
		t.Errorf("account after push: %+v (the display name is pulled from the recomputed fullname; the stamp is kept)", u)
	}
	if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != 200 {
		t.Fatalf("the session did not survive the profile change: %d", resp.StatusCode)
	}

	// Conflict: the CRM changed the last name since it was pulled; the
	// user's edit of it loses, the other edit is pushed.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)), map[string]any{"lastname": "Leigh"}, ""); err != nil {
		t.Fatal(err)
	}
	resp, body = postProfile(h, ann, url.Values{"first_name": {"Anne"}, "last_name": {"Lea"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "last name") || !strings.Contains(body, "Please review them") {
		t.Fatalf("conflict: %d\n%s", resp.StatusCode, body)
	}
	if c := contactRow(t, client, annID); c.LastName != "Leigh" || c.FirstName != "Anne" {
		t.Errorf("contact after conflict: %q %q; want Anne Leigh (Dataverse wins for lastname)", c.FirstName, c.LastName)
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, u.ID); u.LastName != "Leigh" || u.FirstName != "Anne" {
		t.Errorf("account after conflict: %q %q", u.FirstName, u.LastName)
	}
	events, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventProfileUpdated})
	if len(events) != 2 || !strings.Contains(events[0].Detail+events[1].Detail, "kept Dataverse's last_name") {
		t.Errorf("profile audit events: %+v", events)
	}

	// A pull-only field sent anyway is refused, and so is bad input;
	// neither changes anything and the typed values stay on the page.
	patches = emu.Requests("PATCH contacts()")
	resp, body = postProfile(h, ann, url.Values{"first_name": {"Anne"}, "last_name": {"Leigh"}, "display_name": {"Queen Anne"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "managed in the CRM") {
		t.Errorf("pull-only field: %d\n%s", resp.StatusCode, body)
	}
	resp, body = postProfile(h, ann, url.Values{"first_name": {"An\x07ne"}, "last_name": {"Leigh"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `aria-invalid="true"`) {
		t.Errorf("control character: %d\n%s", resp.StatusCode, body)
	}
	resp, body = postProfile(h, ann, url.Values{"first_name": {strings.Repeat("x", authz.MaxNameLen+1)}, "last_name": {"Leigh"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, strings.Repeat("x", authz.MaxNameLen+1)) {
		t.Errorf("too long: %d (typed value kept: %v)", resp.StatusCode, strings.Contains(body, strings.Repeat("x", 50)))
	}
	if n := emu.Requests("PATCH contacts()") - patches; n != 0 {
		t.Errorf("refused changes made %d PATCH requests", n)
	}

	// Without a valid form token, or from another site: refused.
	resp, _ = postProfile(h, ann, url.Values{"first_name": {"Mallory"}, "csrf_token": {"forged"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged CSRF token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", h.url("/.auth/profile"), strings.NewReader("first_name=Mallory"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := h.do(ann, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d", resp.StatusCode)
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, u.ID); u.FirstName != "Anne" {
		t.Errorf("a refused request changed the account: %q", u.FirstName)
	}

	// Dataverse down: 503, nothing saved anywhere, the typed value kept.
	emu.SetFaults(dataversetest.Faults{Status: 503})
	resp, body = postProfile(h, ann, url.Values{"first_name": {"Annabel"}, "last_name": {"Leigh"}})
	emu.SetFaults(dataversetest.Faults{})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, `value="Annabel"`) || !strings.Contains(body, "have not been saved") {
		t.Errorf("outage: %d %q\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, u.ID); u.FirstName != "Anne" {
		t.Errorf("account changed during the outage: %q", u.FirstName)
	}
	if c := contactRow(t, client, annID); c.FirstName != "Anne" {
		t.Errorf("contact changed during the outage: %q", c.FirstName)
	}

	// Pull at revalidation: a change in Dataverse reaches the account, and
	// the session's name at its next stamp check.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)), map[string]any{"firstname": "Anya"}, ""); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(6 * time.Minute)
	h.get(ann, "/orders/1")
	if u, _ := h.svc.Accounts.UserByID(ctx, u.ID); u.FirstName != "Anya" || u.DisplayName != "Anya Leigh" {
		t.Errorf("after revalidation the account has %q / %q, want Anya / Anya Leigh", u.FirstName, u.DisplayName)
	}
	h.clock.Advance(3 * time.Minute)
	h.get(ann, "/orders/1")
	if got := h.up.last(t).Header.Get("X-Current-User-Name"); got != "Anya Leigh" {
		t.Errorf("X-Current-User-Name after the next stamp check = %q", got)
	}
	synced, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventProfileSynced})
	if len(synced) < 2 {
		t.Errorf("profile_synced audit events: %+v", synced)
	}
}

// TestProfilePage covers the page around the sync: signed out it sends the
// browser to sign in and back; an unbound user's change is saved on the
// account without any Dataverse request; a no-op says so.
func TestProfilePage(t *testing.T) {
	h, emu, _ := newContactHarness(t, func(o *wiring.Options) {
		o.FieldSync = syncAll
		o.Binding.DefaultMode = authz.BindingNone
	})
	ctx := context.Background()
	c := h.browser()
	resp, _ := h.get(c, "/.auth/profile")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "/.auth/signin?redirect_url=%2F.auth%2Fprofile" {
		t.Errorf("signed out GET: %d %q", resp.StatusCode, loc)
	}
	req, _ := http.NewRequest("POST", h.url("/.auth/profile"), strings.NewReader("first_name=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, _ := h.do(c, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("signed out POST: %d", resp.StatusCode)
	}

	dave := h.createUser("dave", "dave@example.test", "correct horse battery")
	resp, _ = h.postSignIn(c, "dave", "correct horse battery", url.Values{"redirect_url": {"/.auth/profile"}})
	if loc := resp.Header.Get("Location"); loc != "/.auth/profile" {
		t.Errorf("sign-in did not return to the profile: %q", loc)
	}
	_, body, values := profileForm(h, c)
	if values["display_name"] != "Dave" || strings.Contains(body, "customer record") {
		t.Errorf("an unbound user's page mentions sync: %v\n%s", values, body)
	}
	before := emu.Requests("")
	resp, body = postProfile(h, c, url.Values{"first_name": {"  Dave "}, "last_name": {"Jones"}, "display_name": {"DJ"}})
	if resp.StatusCode != 200 || emu.Requests("") != before {
		t.Fatalf("unbound save: %d, %d Dataverse requests\n%s", resp.StatusCode, emu.Requests("")-before, body)
	}
	u, _ := h.svc.Accounts.UserByID(ctx, dave.ID)
	if u.FirstName != "Dave" || u.LastName != "Jones" || u.DisplayName != "DJ" {
		t.Errorf("unbound account: %+v", u)
	}
	_, body = h.get(c, "/.auth/me")
	if !strings.Contains(body, `"name":"DJ"`) {
		t.Errorf("/.auth/me does not show the new name at once: %s", body)
	}
	resp, body = postProfile(h, c, url.Values{"first_name": {"Dave"}, "last_name": {"Jones"}, "display_name": {"DJ"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "unchanged") {
		t.Errorf("no-op save: %d\n%s", resp.StatusCode, body)
	}
	if events, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventProfileUpdated}); len(events) != 1 {
		t.Errorf("profile_updated events: %d, want 1 (a no-op writes none)", len(events))
	}
}

// TestRevalidationSharesContactCache: the sessions of one contact revalidate
// through the shared cache, so many due sessions make one Dataverse
// request, concurrent ones included, and none more within the cache TTL;
// a contact deactivated in Dataverse is seen once the TTL has passed.
func TestRevalidationSharesContactCache(t *testing.T) {
	h, emu, client := newContactHarness(t)
	ctx := context.Background()
	h.createUser("ann", "ann@example.test", "correct horse battery")
	const sessions = 8
	browsers := make([]*http.Client, sessions)
	for i := range browsers {
		browsers[i] = h.browser()
		h.signIn(browsers[i], "ann", "correct horse battery")
	}
	byID := func() int { return emu.Requests("GET contacts()") + emu.Requests("GET contacts") }
	h.clock.Advance(6 * time.Minute) // every snapshot is due
	before := byID()
	var wg sync.WaitGroup
	codes := make([]int, sessions)
	for i, b := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.Get(h.url("/orders/1"))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("session %d after revalidation: %d", i, c)
		}
	}
	if n := byID() - before; n != 1 {
		t.Errorf("%d due sessions of one contact made %d Dataverse requests, want 1", sessions, n)
	}
	// Deactivated in Dataverse: within the cache TTL the cached snapshot
	// answers; after it, the revalidation sees the change.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"statecode": 1, "statuscode": 2}, ""); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(6 * time.Minute)
	for i, b := range browsers {
		resp, _ := h.get(b, "/orders/1")
		if resp.StatusCode != http.StatusFound {
			t.Errorf("session %d of a deactivated contact: %d, want the sign-in redirect", i, resp.StatusCode)
		}
	}
	if n := byID() - before; n != 2 {
		t.Errorf("two revalidation rounds made %d requests, want 2", n)
	}
}
