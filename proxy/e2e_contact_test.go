package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy/console"
)

const (
	dvTenant = "contoso.example"
	dvClient = "0c000000-0000-4000-8000-0000000000c1"
	dvSecret = "emulator secret"
	annID    = "c0000000-0000-4000-8000-00000000000a"
	bobID    = "c0000000-0000-4000-8000-00000000000b"
	caraID   = "c0000000-0000-4000-8000-00000000000c"
	roleID   = "d0000000-0000-4000-8000-00000000000a"
)

const contactSeed = `{
 "contacts": [
  {"contactid": "` + annID + `", "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.test",
   "adx_identity_username": "ann", "adx_identity_logonenabled": true},
  {"contactid": "` + bobID + `", "firstname": "Bob", "lastname": "Gone", "emailaddress1": "bob@example.test",
   "adx_identity_username": "bob", "adx_identity_logonenabled": true, "statecode": 1, "statuscode": 2},
  {"contactid": "` + caraID + `", "firstname": "Cara", "lastname": "Off", "emailaddress1": "cara@example.test",
   "adx_identity_username": "cara", "adx_identity_logonenabled": false}
 ],
 "adx_webroles": [{"adx_webroleid": "` + roleID + `", "adx_name": "Partners"}],
 "associations": [{"relationship": "adx_webrole_contact", "contactid": "` + annID + `", "adx_webroleid": "` + roleID + `"}]
}`

const contactPolicy = `upstreams:
  - name: app
    url: %s
routes:
  - name: orders
    paths: ["/orders/**"]
    access: bound
    contact_columns: [fullname, emailaddress1]
  - name: partners
    paths: ["/partners/**"]
    access: authenticated
    roles: [Partners]
  - name: other
    paths: ["/**"]
    access: authenticated
`

// TestSignInBoundToContact drives sign-in of users bound by username to
// emulator contacts through the whole gateway: one Dataverse request per
// cold sign-in, none per proxied request, contact headers and claims per
// route, web roles in roles, the generic refusal for an inactive contact
// and a disabled login, and fail-closed while Dataverse is down, when an
// unbound admin still signs in.
// newContactHarness is a gateway whose users are bound by username to the
// contacts of a seeded emulator, with the sign-in check on and
// revalidations through a contact cache, as serve builds it; mods adjust
// the authz options first.
func newContactHarness(t *testing.T, mods ...func(*wiring.Options)) (*harness, *dataversetest.Server, *crmclient.Client) {
	t.Helper()
	emu, client := newContactEmulator(t)
	return contactHarness(t, client, mods...), emu, client
}

// contactHarness is newContactHarness over a given client of the emulator.
func contactHarness(t *testing.T, client *crmclient.Client, mods ...func(*wiring.Options)) *harness {
	t.Helper()
	return contactHarnessWith(t, client, harnessConfig{}, mods...)
}

// contactHarnessWith is contactHarness whose other settings come from hc
// (its identity options are the contact harness's, and its policy unless
// hc names one).
func contactHarnessWith(t *testing.T, client *crmclient.Client, hc harnessConfig, mods ...func(*wiring.Options)) *harness {
	t.Helper()
	if hc.policy == "" {
		hc.policy = contactPolicy
	}
	if hc.console == nil {
		// As serve wires it: the console's contacts service over the
		// emulator (its search is the binding panel's lookup).
		hc.console = func(h *harness, o *console.Options) {
			admin, err := contacts.New(contacts.Options{Directory: crmclient.NewDirectory(client, crmclient.WebRoleModelStandard),
				Store: h.db, Audit: h.svc.Audit, Now: h.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			o.ContactAdmin = admin
		}
	}
	hc.authz = func(o *wiring.Options) {
		dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
		o.Contacts = dir
		o.Binding = binding.Options{DefaultMode: authz.BindingUsername}
		o.SignInCheck = signin.Check{Enabled: true, RequireLogonEnabled: true}
		o.BreakGlassRole = "admin"
		// These tests tell the refusals apart; e2e_lockout_test.go shows
		// the default, which answers them like a wrong password.
		o.ExplainRefusals = true
		for _, m := range mods {
			m(o)
		}
		if o.Contacts == dir && o.Snapshots == nil {
			// As serve wires it: revalidations share a contact cache (on
			// the harness clock) holding every column they read.
			cache, err := crmclient.NewContactCache(client, wiring.SnapshotColumns([]string{"emailaddress1", "fullname"}, *o),
				crmclient.WebRoleModelStandard, crmclient.CacheOptions{TTL: time.Minute, Now: o.Now})
			if err != nil {
				t.Fatal(err)
			}
			cd := crmclient.NewCachedDirectory(dir, cache)
			o.Contacts, o.Snapshots = cd, cd
		}
	}
	return newHarness(t, hc)
}

// newContactEmulator is an emulator seeded with contactSeed and a client of
// it that neither retries nor trips its breaker, so tests see each fault.
func newContactEmulator(t *testing.T) (*dataversetest.Server, *crmclient.Client) {
	t.Helper()
	return seededContactEmulator(t, contactSeed)
}

// seededContactEmulator is newContactEmulator seeded with seed.
func seededContactEmulator(t *testing.T, seed string) (*dataversetest.Server, *crmclient.Client) {
	t.Helper()
	emu := dataversetest.NewServer(dataversetest.Options{TenantID: dvTenant, Clients: []dataversetest.Client{{ID: dvClient, Secret: dvSecret}}})
	t.Cleanup(emu.Close)
	if err := emu.LoadSeed(strings.NewReader(seed)); err != nil {
		t.Fatal(err)
	}
	client, err := crmclient.New(crmclient.Config{URL: emu.URL, AuthorityHost: emu.URL, TenantID: dvTenant, ClientID: dvClient,
		ClientSecret: dvSecret, MaxRetries: -1, BreakerFailures: 100})
	if err != nil {
		t.Fatal(err)
	}
	return emu, client
}

func TestSignInBoundToContact(t *testing.T) {
	h, emu, _ := newContactHarness(t)
	ctx := context.Background()
	for _, n := range []string{"ann", "bob", "cara"} {
		h.createUser(n, n+"@example.test", "correct horse battery")
	}
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	if err := h.svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	contactRequests := func() int { return emu.Requests("GET contacts") + emu.Requests("GET contacts()") }

	// Ann: bound, active, may sign in. One Dataverse request for the cold sign-in.
	ann := h.browser()
	before := contactRequests()
	h.signIn(ann, "ann", "correct horse battery")
	if n := contactRequests() - before; n != 1 {
		t.Errorf("cold sign-in made %d contact requests, want 1", n)
	}
	before = contactRequests()
	h.get(ann, "/orders/7")
	got := h.up.last(t).Header
	if got.Get("X-Current-User-Contact-Id") != annID || got.Get("X-Current-User-Contact-Fullname") != "Ann Lee" ||
		got.Get("X-Current-User-Contact-Emailaddress1") != "ann@example.test" {
		t.Errorf("contact headers on /orders: %v", got)
	}
	claims := h.verifyToken(got.Get("X-Current-User"), h.up.srv.URL)
	ct, _ := claims["contact"].(map[string]any)
	if ct["id"] != annID || len(ct["columns"].(map[string]any)) != 2 {
		t.Errorf("contact claim: %v", claims["contact"])
	}
	if resp, _ := h.get(ann, "/partners/x"); resp.StatusCode != 200 {
		t.Errorf("web role Partners did not grant /partners: %d", resp.StatusCode)
	}
	if got := h.up.last(t).Header; got.Get("X-Current-User-Contact-Fullname") != "" || !strings.Contains(got.Get("X-Current-User-Roles"), "Partners") {
		t.Errorf("/partners forwards columns it does not list, or lacks the web role: %v", got)
	}
	if n := contactRequests() - before; n != 0 {
		t.Errorf("proxied requests made %d Dataverse requests, want 0", n)
	}

	// Refusals: the same message whatever failed; the audit log knows why.
	_, refusedInactive := h.postSignIn(h.browser(), "bob", "correct horse battery", nil)
	resp, refusedLogon := h.postSignIn(h.browser(), "cara", "correct horse battery", nil)
	if resp.StatusCode != http.StatusForbidden || msg(refusedInactive) != msg(refusedLogon) || msg(refusedLogon) == "" {
		t.Fatalf("refusals: %d %q %q", resp.StatusCode, msg(refusedInactive), msg(refusedLogon))
	}
	events, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventSignInFailed})
	reasons := ""
	for _, e := range events {
		reasons += e.Detail + " "
	}
	if !strings.Contains(reasons, binding.ReasonContactInactive) || !strings.Contains(reasons, binding.ReasonContactLogonDisabled) {
		t.Errorf("audit reasons: %q", reasons)
	}

	// Dataverse down: bound users fail closed with a try-again page; the
	// unbound (break-glass) admin signs in.
	emu.SetFaults(dataversetest.Faults{Status: 503, Count: 1000})
	resp, body := h.postSignIn(h.browser(), "ann", "correct horse battery", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "try again") {
		t.Errorf("sign-in while Dataverse is down: %d", resp.StatusCode)
	}
	h.signIn(h.browser(), "root", "correct horse battery")
}

// TestContactRevalidation: a session's contact snapshot is re-checked
// after the revalidation interval (5m). A contact deactivated in Dataverse
// ends the session; while Dataverse is down the session keeps its snapshot
// for the grace period (15m) and then ends.
func TestContactRevalidation(t *testing.T) {
	h, emu, client := newContactHarness(t)
	ctx := context.Background()
	h.createUser("ann", "ann@example.test", "correct horse battery")
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	requests := func() int { return emu.Requests("GET contacts") + emu.Requests("GET contacts()") }

	before := requests()
	h.clock.Advance(4 * time.Minute)
	if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != 200 || requests() != before {
		t.Fatalf("fresh snapshot: %d, %d Dataverse requests", resp.StatusCode, requests()-before)
	}
	// Deactivated in Dataverse: the next revalidation ends the session.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"statecode": 1, "statuscode": 2}, ""); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Minute)
	if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != http.StatusFound {
		t.Fatalf("after deactivation: %d", resp.StatusCode)
	}
	events, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventSessionRevoked})
	if len(events) != 1 || events[0].Detail != binding.ReasonContactInactive {
		t.Fatalf("session.revoked audit: %+v", events)
	}

	// Reactivated, signed in again; then Dataverse goes down.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"statecode": 0, "statuscode": 1}, ""); err != nil {
		t.Fatal(err)
	}
	h.signIn(ann, "ann", "correct horse battery")
	emu.SetFaults(dataversetest.Faults{Status: 503, Count: 100000})
	h.clock.Advance(6 * time.Minute)
	if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != 200 {
		t.Fatalf("within the grace period: %d", resp.StatusCode)
	}
	if h.up.last(t).Header.Get("X-Current-User-Contact-Id") != annID {
		t.Fatal("the snapshot was not kept during the outage")
	}
	h.clock.Advance(15 * time.Minute) // 21 minutes after the last confirmation: beyond 5m + 15m
	if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != http.StatusFound {
		t.Fatalf("beyond the grace period: %d", resp.StatusCode)
	}
}

// TestRESTAPIBinding: search contacts and change a user's binding with the
// EntityReference body, by an admin session (same origin only) and by an
// API key with users:bind (Power Automate); every change is audited with
// its actor; the last break-glass admin cannot be bound away.
func TestRESTAPIBinding(t *testing.T) {
	h, _, _ := newContactHarness(t)
	ctx := context.Background()
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	if err := h.svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	dave := h.createUser("dave", "dave@example.test", "correct horse battery")
	admin := h.browser()
	h.signIn(admin, "root", "correct horse battery")

	resp, body := h.get(admin, "/.auth/api/contacts?email=ANN@example.test")
	var found struct {
		Contacts []struct {
			Ref    dataverse.EntityReference
			Active bool
		}
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &found) != nil || len(found.Contacts) != 1 || found.Contacts[0].Ref.ID != annID || !found.Contacts[0].Active {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}

	put := func(c *http.Client, id, body string, hdr ...string) (int, string) {
		req, _ := http.NewRequest("PUT", h.url("/.auth/api/users/"+id+"/binding"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, b := h.do(c, req)
		return resp.StatusCode, b
	}
	lookupAnn := `{"binding":{"mode":"lookup","ref":{"Id":"` + annID + `","LogicalName":"contact","Name":"Ann Lee"}}}`
	if code, b := put(admin, dave.ID, lookupAnn, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden || !strings.Contains(b, "cross_origin") {
		t.Fatalf("cross-site PUT with a cookie: %d %s", code, b)
	}
	code, b := put(admin, dave.ID, lookupAnn, "Sec-Fetch-Site", "same-origin")
	var u authz.User
	if code != 200 || json.Unmarshal([]byte(b), &u) != nil || u.Binding.Mode != authz.BindingLookup || u.Binding.Ref == nil || u.Binding.Ref.ID != annID {
		t.Fatalf("bind by session: %d %s", code, b)
	}
	// Dave, now bound by lookup, signs in as Ann's contact.
	dc := h.browser()
	h.signIn(dc, "dave", "correct horse battery")
	h.get(dc, "/orders/1")
	if got := h.up.last(t).Header.Get("X-Current-User-Contact-Id"); got != annID {
		t.Fatalf("lookup binding at sign-in: contact %q", got)
	}

	key, info, err := h.svc.APIKeys.CreateAPIKey(ctx, "flow", []string{permissions.BindingsWrite}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if code, b := put(&http.Client{}, dave.ID, `{"binding":{"mode":"none"}}`, "Authorization", "Bearer "+key); code != 200 {
		t.Fatalf("unbind by API key: %d %s", code, b)
	}
	events, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventBindingSet, UserID: dave.ID})
	if len(events) != 2 || events[0].Actor != "apikey:"+info.ID || events[1].Actor == "" {
		t.Fatalf("binding audit: %+v", events)
	}

	for name, tt := range map[string]struct {
		id, body string
		status   int
	}{
		"unknown field":          {dave.ID, `{"binding":{"mode":"none"},"extra":1}`, 400},
		"lookup without ref":     {dave.ID, `{"binding":{"mode":"lookup"}}`, 400},
		"not a contact":          {dave.ID, `{"binding":{"mode":"lookup","ref":{"Id":"` + annID + `","LogicalName":"account"}}}`, 400},
		"bad mode":               {dave.ID, `{"binding":{"mode":"sometimes"}}`, 400},
		"not JSON":               {dave.ID, `binding=none`, 400},
		"unknown user":           {"nope", `{"binding":{"mode":"none"}}`, 404},
		"last break-glass admin": {mustUserID(t, h, "root"), lookupAnn, 409},
	} {
		if code, b := put(admin, tt.id, tt.body, "Sec-Fetch-Site", "same-origin"); code != tt.status {
			t.Errorf("%s: %d %s", name, code, b)
		}
	}
	// A key without users:bind cannot bind.
	readKey, _, _ := h.svc.APIKeys.CreateAPIKey(ctx, "reader", []string{permissions.UsersRead}, time.Time{}, "test")
	if code, _ := put(&http.Client{}, dave.ID, lookupAnn, "Authorization", "Bearer "+readKey); code != http.StatusForbidden {
		t.Errorf("read-only key bound a user: %d", code)
	}
}

// TestRESTAPIBindingChecked: a lookup binding is checked against the
// emulator before it is saved: a contact that does not exist is 422, one
// already bound to another user is 409 naming that user, and
// "allow_shared" binds it anyway, audited with whom it is shared. The bulk
// endpoint answers the same codes per item.
func TestRESTAPIBindingChecked(t *testing.T) {
	h, _, _ := newContactHarness(t)
	ctx := context.Background()
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	if err := h.svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	dave := h.createUser("dave", "dave@example.test", "correct horse battery")
	erin := h.createUser("erin", "erin@example.test", "correct horse battery")
	admin := h.browser()
	h.signIn(admin, "root", "correct horse battery")
	call := func(method, path, body string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, h.url(path), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, b := h.do(admin, req)
		var e struct{ Error, Message string }
		_ = json.Unmarshal([]byte(b), &e)
		return resp.StatusCode, e.Error, b
	}
	lookup := func(id, extra string) string {
		return `{"binding":{"mode":"lookup","ref":{"Id":"` + id + `","LogicalName":"contact"}}` + extra + `}`
	}
	const missing = "c0000000-0000-4000-8000-0000000000ff"
	if status, code, b := call("PUT", "/.auth/api/users/"+dave.ID+"/binding", lookup(missing, "")); status != 422 || code != "contact_not_found" || !strings.Contains(b, missing) {
		t.Fatalf("missing contact: %d %s", status, b)
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, dave.ID); u.Binding.Mode != authz.BindingUsername {
		t.Fatalf("a refused binding changed dave: %+v", u.Binding)
	}
	if status, _, b := call("PUT", "/.auth/api/users/"+dave.ID+"/binding", lookup(annID, "")); status != 200 {
		t.Fatalf("free contact: %d %s", status, b)
	}
	status, code, b := call("PUT", "/.auth/api/users/"+erin.ID+"/binding", lookup(annID, ""))
	if status != 409 || code != "contact_bound" || !strings.Contains(b, "already bound to dave") || !strings.Contains(b, "allow_shared") {
		t.Fatalf("bound contact: %d %s", status, b)
	}
	if status, _, b := call("PUT", "/.auth/api/users/"+erin.ID+"/binding", lookup(annID, `,"allow_shared":true`)); status != 200 {
		t.Fatalf("shared contact: %d %s", status, b)
	}
	es, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventBindingShared, UserID: erin.ID})
	if len(es) != 1 || es[0].Detail != "contact "+annID+" also bound to "+dave.ID || es[0].Actor == "" {
		t.Fatalf("shared binding audit: %+v", es)
	}
	// The bulk endpoint, item by item.
	frank := h.createUser("frank", "frank@example.test", "correct horse battery")
	status, _, b = call("POST", "/.auth/api/users/bindings", `{"items":[
		{"user":"frank","binding":{"mode":"lookup","ref":{"Id":"`+annID+`","LogicalName":"contact"}}},
		{"user":"frank","binding":{"mode":"lookup","ref":{"Id":"`+missing+`","LogicalName":"contact"}}}]}`)
	var out struct {
		Results []struct {
			OK    bool
			Error *struct{ Code, Message string }
		}
	}
	if status != 200 || json.Unmarshal([]byte(b), &out) != nil || len(out.Results) != 2 ||
		out.Results[0].Error == nil || out.Results[0].Error.Code != "contact_bound" || !strings.Contains(out.Results[0].Error.Message, "dave, erin") ||
		out.Results[1].Error == nil || out.Results[1].Error.Code != "contact_not_found" {
		t.Fatalf("bulk: %d %s", status, b)
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, frank.ID); u.Binding.Mode != authz.BindingUsername {
		t.Fatalf("a refused bulk binding changed frank: %+v", u.Binding)
	}
}

func mustUserID(t *testing.T, h *harness, login string) string {
	t.Helper()
	users, err := h.svc.Accounts.ListUsers(context.Background(), authz.UserFilter{Query: login})
	if err != nil || len(users) == 0 {
		t.Fatalf("user %s: %v", login, err)
	}
	return users[0].ID
}

// TestRESTAPIBindingUncheckable: a lookup binding that cannot be checked
// is refused, not saved unchecked: 501 no_dataverse when no Dataverse is
// configured, 503 dataverse_unavailable with Retry-After while Dataverse
// answers 503; the user's binding is unchanged, and the same change passes
// once Dataverse is back.
func TestRESTAPIBindingUncheckable(t *testing.T) {
	put := func(h *harness, c *http.Client, userID, contactID string) (*http.Response, string, string) {
		t.Helper()
		req, _ := http.NewRequest("PUT", h.url("/.auth/api/users/"+userID+"/binding"),
			strings.NewReader(`{"binding":{"mode":"lookup","ref":{"Id":"`+contactID+`","LogicalName":"contact"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, b := h.do(c, req)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(b), &e)
		return resp, e.Error, b
	}
	const someContact = "c0000000-0000-4000-8000-0000000000aa"

	t.Run("no Dataverse", func(t *testing.T) {
		h := newHarness(t, harnessConfig{})
		h.createUser("root", "root@example.test", "correct horse battery", "admin")
		dave := h.createUser("dave", "dave@example.test", "correct horse battery")
		admin := h.browser()
		h.signIn(admin, "root", "correct horse battery")
		resp, code, b := put(h, admin, dave.ID, someContact)
		if resp.StatusCode != http.StatusNotImplemented || code != "no_dataverse" {
			t.Fatalf("lookup binding without Dataverse: %d %s", resp.StatusCode, b)
		}
		if u, _ := h.svc.Accounts.UserByID(context.Background(), dave.ID); u.Binding.Mode == authz.BindingLookup {
			t.Fatalf("an unchecked lookup binding was saved: %+v", u.Binding)
		}
	})

	t.Run("Dataverse down", func(t *testing.T) {
		h, emu, _ := newContactHarness(t)
		ctx := context.Background()
		h.createUser("root", "root@example.test", "correct horse battery", "admin")
		if err := h.svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
			t.Fatal(err)
		}
		dave := h.createUser("dave", "dave@example.test", "correct horse battery")
		admin := h.browser()
		h.signIn(admin, "root", "correct horse battery")

		emu.SetFaults(dataversetest.Faults{Status: 503, Count: 1000})
		resp, code, b := put(h, admin, dave.ID, annID)
		if resp.StatusCode != http.StatusServiceUnavailable || code != "dataverse_unavailable" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("lookup binding while Dataverse is down: %d %s (Retry-After %q)", resp.StatusCode, b, resp.Header.Get("Retry-After"))
		}
		if u, _ := h.svc.Accounts.UserByID(ctx, dave.ID); u.Binding.Mode == authz.BindingLookup {
			t.Fatalf("an unchecked lookup binding was saved: %+v", u.Binding)
		}

		emu.SetFaults(dataversetest.Faults{})
		if resp, _, b := put(h, admin, dave.ID, annID); resp.StatusCode != http.StatusOK {
			t.Fatalf("the same binding once Dataverse is back: %d %s", resp.StatusCode, b)
		}
	})
}

// TestCustomBindingAndExtraFilterOverHTTP: custom mode binds through a
// filter template filled with the user's email (a literal escaped by the
// client: quotes and wildcards in it find nothing), and an extra sign-in
// filter refuses with the same generic message and its own audit reason.
func TestCustomBindingAndExtraFilterOverHTTP(t *testing.T) {
	h, _, client := newContactHarness(t, func(o *wiring.Options) {
		o.Binding = binding.Options{DefaultMode: authz.BindingCustom,
			Custom: binding.MustParseFilterTemplate("emailaddress1 eq {email}")}
		o.SignInCheck.Extra = binding.MustParseFilterTemplate("lastname ne 'Blocked'")
	})
	ctx := context.Background()
	h.createUser("ann2", "ann@example.test", "correct horse battery") // Ann's contact, found by email
	h.createUser("mallory", "o'r%_@example.test", "correct horse battery")

	c := h.browser()
	h.signIn(c, "ann2", "correct horse battery")
	h.get(c, "/orders/1")
	if got := h.up.last(t).Header.Get("X-Current-User-Contact-Id"); got != annID {
		t.Fatalf("custom binding: contact %q, want %s", got, annID)
	}
	lastReason := func() string {
		events, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventSignInFailed})
		if len(events) == 0 {
			return ""
		}
		return events[0].Detail
	}
	// Quotes and wildcards in the email are data: no contact matches.
	resp, refusedNoContact := h.postSignIn(h.browser(), "mallory", "correct horse battery", nil)
	if resp.StatusCode != http.StatusForbidden || lastReason() != binding.ReasonContactNotFound {
		t.Fatalf("hostile email: %d, reason %q", resp.StatusCode, lastReason())
	}
	// Ann's contact renamed Blocked: the extra filter refuses, same message.
	if err := client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"lastname": "Blocked"}, ""); err != nil {
		t.Fatal(err)
	}
	resp, refusedFilter := h.postSignIn(h.browser(), "ann2", "correct horse battery", nil)
	if resp.StatusCode != http.StatusForbidden || lastReason() != binding.ReasonContactFilter || msg(refusedFilter) != msg(refusedNoContact) {
		t.Fatalf("extra filter: %d, reason %q", resp.StatusCode, lastReason())
	}
}
