package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/proxy"
)

const hookSecret = "0123456789abcdef0123456789abcdef-hook"

// hookEnv is two gateway replicas on one store, each watching the session
// feed, in front of one emulator whose webhook posts to replica a.
type hookEnv struct {
	a, b  *harness
	emu   *dataversetest.Server
	dir   *crmclient.Directory // uncached: changes made as someone in Dataverse would
	clock atomic.Pointer[fakeClock]
}

// newHookEnv authenticates the webhook with WebhookKey, or with the
// header X-Hook-Key when header is set.
func newHookEnv(t *testing.T, header ...bool) *hookEnv {
	t.Helper()
	byHeader := len(header) > 0 && header[0]
	e := &hookEnv{}
	now := func() time.Time {
		if c := e.clock.Load(); c != nil {
			return c.Now()
		}
		return time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	}
	e.emu = dataversetest.NewServer(dataversetest.Options{TenantID: dvTenant, Clients: []dataversetest.Client{{ID: dvClient, Secret: dvSecret}}, Now: now})
	t.Cleanup(e.emu.Close)
	if err := e.emu.LoadSeed(strings.NewReader(contactSeed)); err != nil {
		t.Fatal(err)
	}
	client, err := crmclient.New(crmclient.Config{URL: e.emu.URL, AuthorityHost: e.emu.URL, TenantID: dvTenant, ClientID: dvClient,
		ClientSecret: dvSecret, MaxRetries: -1, BreakerFailures: 100})
	if err != nil {
		t.Fatal(err)
	}
	e.dir = crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "gw.db"), store.WithNow(now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys := [][]byte{randomKey()}
	replica := func() *harness {
		var cache *crmclient.CachedDirectory
		h := contactHarnessWith(t, client, harnessConfig{db: db, cookieKeys: keys, mutate: func(o *proxy.Options) {
			o.SessionFeed = db
			o.ContactCache = cache
			o.DataverseHook = &proxy.DataverseHook{Auth: proxy.HookAuthWebhookKey, Secret: []byte(hookSecret), MaxAge: 5 * time.Minute,
				MaxBody: 64 << 10, Store: db, Audit: o.Audit.(proxy.HookAuditor)}
			if byHeader {
				o.DataverseHook.Auth, o.DataverseHook.Name = proxy.HookAuthHeader, "X-Hook-Key"
			}
		}}, func(o *wiring.Options) {
			// As serve wires it: revalidations read a contact cache,
			// which the webhook must invalidate.
			c, err := crmclient.NewContactCache(client, wiring.SnapshotColumns([]string{"emailaddress1", "fullname"}, *o),
				crmclient.WebRoleModelStandard, crmclient.CacheOptions{TTL: time.Hour, Now: o.Now})
			if err != nil {
				t.Fatal(err)
			}
			cache = crmclient.NewCachedDirectory(o.Contacts.(*crmclient.Directory), c)
			o.Contacts, o.Snapshots = cache, cache
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = h.srv.WatchSessions(ctx, 10*time.Millisecond); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return h
	}
	e.a = replica()
	e.b = replica()
	// Both replicas' clocks start at the same time; the store and Dataverse
	// read a's.
	e.clock.Store(e.a.clock)
	reg := dataversetest.Webhook{URL: e.a.url("/.auth/hooks/dataverse"), Auth: dataversetest.WebhookKey,
		Key: hookSecret, RetryDelay: 10 * time.Millisecond}
	if byHeader {
		reg.Auth, reg.Key, reg.Values = dataversetest.WebhookHTTPHeader, "", map[string]string{"X-Hook-Key": hookSecret}
	}
	if _, err := e.emu.RegisterWebhook(reg); err != nil {
		t.Fatal(err)
	}
	return e
}

// signInBoth signs ann in on replica a and returns a browser for each
// replica carrying the same session cookie.
func (e *hookEnv) signInBoth(t *testing.T) (ca, cb *http.Client) {
	t.Helper()
	ca = e.a.browser()
	e.a.signIn(ca, "ann", "correct horse battery")
	cb = e.b.browser()
	ua, _ := url.Parse(e.a.gw.URL)
	ub, _ := url.Parse(e.b.gw.URL)
	cb.Jar.SetCookies(ub, ca.Jar.Cookies(ua))
	for _, c := range []struct {
		h *harness
		c *http.Client
	}{{e.a, ca}, {e.b, cb}} {
		if resp, body := c.h.get(c.c, "/orders/1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("signed in: %d %s", resp.StatusCode, body)
		}
	}
	return ca, cb
}

// endsWithin polls path through c until the session is gone, and fails
// after d.
func endsWithin(t *testing.T, h *harness, c *http.Client, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		resp, _ := h.get(c, "/orders/1")
		if resp.StatusCode != http.StatusOK {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("the session on %s still works after %s", h.gw.URL, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *hookEnv) waitWebhooks(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.emu.WaitWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range e.emu.WebhookDeliveries() {
		if d.Status != http.StatusOK {
			t.Fatalf("webhook delivery %s %s answered %d", d.Message, d.ID, d.Status)
		}
	}
}

// TestDataverseHookEndsSessions: a contact deactivated in Dataverse ends
// its user's session on both replicas within a second, with the contact
// revalidation (5m) far from due: the emulator posts the webhook to one
// replica, the other learns it from the session feed, and both drop the
// cached snapshot (an hour's TTL) before asking Dataverse again.
func TestDataverseHookEndsSessions(t *testing.T) {
	e := newHookEnv(t)
	e.a.createUser("ann", "ann@example.test", "correct horse battery")
	ca, cb := e.signInBoth(t)
	// An update that changes nothing the session depends on keeps it.
	if err := e.dir.UpdateContact(context.Background(), annID, map[string]any{"lastname": "Lee-Smith"}, ""); err != nil {
		t.Fatal(err)
	}
	e.waitWebhooks(t)
	for _, c := range []struct {
		h *harness
		c *http.Client
	}{{e.a, ca}, {e.b, cb}} {
		start := time.Now()
		for {
			if resp, _ := c.h.get(c.c, "/orders/1"); resp.StatusCode != http.StatusOK {
				t.Fatalf("a harmless update ended the session: %d", resp.StatusCode)
			}
			if c.h.up.last(t).Header.Get("X-Current-User-Contact-Fullname") == "Ann Lee-Smith" {
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatal("the snapshot still has the old name after 2s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if err := e.dir.UpdateContact(context.Background(), annID, map[string]any{"statecode": int64(1), "statuscode": int64(2)}, ""); err != nil {
		t.Fatal(err)
	}
	copied := e.a.sessionCookie(ca) // as a thief would keep it
	e.waitWebhooks(t)
	da := endsWithin(t, e.a, ca, 2*time.Second)
	db := endsWithin(t, e.b, cb, 2*time.Second)
	t.Logf("session ended %s (receiving replica) and %s (other replica) after the delivery", da, db)
	// The ended session is remembered as revoked: replaying its cookie is
	// refused without asking Dataverse or writing another audit row.
	revokedRows := func() int {
		evs, err := e.a.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventSessionRevoked, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	rows, requests := revokedRows(), e.emu.Requests("GET contacts")+e.emu.Requests("GET contacts()")
	for range 3 {
		for _, h := range []*harness{e.a, e.b} {
			replay := h.browser()
			u, _ := url.Parse(h.gw.URL)
			replay.Jar.SetCookies(u, []*http.Cookie{{Name: copied.Name, Value: copied.Value, Path: "/"}})
			if resp, _ := h.get(replay, "/orders/1"); resp.StatusCode == http.StatusOK {
				t.Fatalf("%s served the replayed cookie of the ended session", h.gw.URL)
			}
		}
	}
	if n, m := revokedRows(), e.emu.Requests("GET contacts")+e.emu.Requests("GET contacts()"); n != rows || m != requests {
		t.Errorf("replaying the ended session's cookie 6 times wrote %d audit rows and made %d Dataverse requests, want none", n-rows, m-requests)
	}
	events, err := e.a.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: proxy.EventHookContactChanged})
	if err != nil || len(events) != 2 || events[0].Detail != "Update "+annID || events[0].Actor != "dataverse" {
		t.Errorf("contact_changed audit = %+v %v", events, err)
	}
}

// TestDataverseHookDelete: a deleted contact's sessions end on both
// replicas without asking Dataverse (which is down meanwhile).
func TestDataverseHookDelete(t *testing.T) {
	e := newHookEnv(t)
	e.a.createUser("ann", "ann@example.test", "correct horse battery")
	ca, cb := e.signInBoth(t)
	e.deleteContact(t, annID)
	e.waitWebhooks(t)
	e.emu.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable, Count: 1 << 20})
	endsWithin(t, e.a, ca, 2*time.Second)
	endsWithin(t, e.b, cb, 2*time.Second)
	events, _ := e.a.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventSessionRevoked})
	if len(events) == 0 || !strings.HasPrefix(events[0].Detail, "contact_deleted") {
		t.Errorf("session.revoked audit = %+v", events)
	}
}

// TestDataverseHookRefusals: every refused delivery gets a clear 4xx and
// an audit row; a repeated delivery is answered 200 and acted on once.
func TestDataverseHookRefusals(t *testing.T) {
	e := newHookEnv(t)
	h := e.a
	now := h.clock.Now()
	body := func(msg string, at time.Time) []byte {
		return fmt.Appendf(nil, `{"MessageName":%q,"PrimaryEntityName":"contact","PrimaryEntityId":%q,"OperationCreatedOn":"/Date(%d)/",`+
			`"OperationId":"0a000000-0000-4000-8000-000000000001","RequestId":null,"CorrelationId":"0b000000-0000-4000-8000-000000000001","Depth":1,`+
			`"InputParameters":[{"key":"Target","value":{"Id":%q,"LogicalName":"contact"}}]}`, msg, annID, at.UnixMilli(), annID)
	}
	post := func(method, query, ctype string, b []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, h.url("/.auth/hooks/dataverse")+query, bytes.NewReader(b))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Error  string `json:"error"`
			Status string `json:"status"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Error + out.Status
	}
	key := "?code=" + url.QueryEscape(hookSecret)
	good := body("Update", now)
	big := append(bytes.Repeat([]byte(" "), 64<<10), good...)
	for _, c := range []struct {
		name, method, query, ctype string
		body                       []byte
		status                     int
		code                       string
	}{
		{"no key", "POST", "", "application/json", good, 401, "no_key"},
		{"wrong key", "POST", "?code=" + strings.Repeat("x", len(hookSecret)), "application/json", good, 401, "wrong_key"},
		{"key twice", "POST", key + "&code=other", "application/json", good, 401, "wrong_key"},
		{"GET", "GET", key, "", nil, 405, "method"},
		{"form", "POST", key, "application/x-www-form-urlencoded", good, 415, "content_type"},
		{"too large", "POST", key, "application/json", big, 413, "too_large"},
		{"bad JSON", "POST", key, "application/json", []byte(`{"MessageName":`), 400, "bad_json"},
		{"no time", "POST", key, "application/json", []byte(`{"MessageName":"Update"}`), 400, "bad_json"},
		{"bad id", "POST", key, "application/json", bytes.Replace(good, []byte(`"PrimaryEntityId":"`+annID), []byte(`"PrimaryEntityId":"x`), 1), 400, "bad_json"},
		{"stale", "POST", key, "application/json", body("Update", now.Add(-6*time.Minute)), 400, "stale"},
		{"future", "POST", key, "application/json", body("Update", now.Add(6*time.Minute)), 400, "stale"},
		{"other table", "POST", key, "application/json", bytes.Replace(good, []byte(`"PrimaryEntityName":"contact"`), []byte(`"PrimaryEntityName":"account"`), 1), 200, "ignored"},
		{"accepted", "POST", key, "application/json; charset=utf-8", good, 200, "accepted"},
		{"repeated", "POST", key, "application/json", good, 200, "duplicate"},
	} {
		if status, code := post(c.method, c.query, c.ctype, c.body); status != c.status || code != c.code {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, code, c.status, c.code)
		}
	}
	// The other replica remembers the delivery too (the store).
	req, _ := http.NewRequest("POST", e.b.url("/.auth/hooks/dataverse")+key, bytes.NewReader(good))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// After the max age the same delivery is stale.
	h.clock.Advance(6 * time.Minute)
	if status, code := post("POST", key, "application/json", good); status != 400 || code != "stale" {
		t.Errorf("replayed after the max age: %d %q", status, code)
	}
	// A flood of bad deliveries from one address: every one refused and
	// logged, one audit row per reason a minute.
	for range 50 {
		if status, _ := post("POST", "?code=flood", "application/json", good); status != 401 {
			t.Fatalf("flood: %d", status)
		}
	}
	ctx := context.Background()
	refused, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: proxy.EventHookRefused})
	changed, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: proxy.EventHookContactChanged})
	dups, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: proxy.EventHookDuplicate})
	// 15 refusals and the flood, from one address, for 7 reasons: no_key,
	// wrong_key, method, content_type, too_large, bad_json and stale.
	if len(refused) != 7 || len(changed) != 1 || len(dups) != 2 {
		t.Errorf("audit: %d refused (want 7, one per reason), %d changed (want 1), %d duplicates (want 2)", len(refused), len(changed), len(dups))
	}
	for _, ev := range refused {
		if strings.Contains(ev.Detail, hookSecret) {
			t.Errorf("an audit row holds the secret: %+v", ev)
		}
	}
}

// api sends a Web API request to the emulator as someone in Dataverse
// would (crmclient deletes no contacts and removes no web roles) and
// wants 204.
func (e *hookEnv) api(t *testing.T, method, path string) {
	t.Helper()
	resp, err := http.PostForm(e.emu.URL+"/"+dvTenant+"/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {dvClient}, "client_secret": {dvSecret}, "scope": {e.emu.URL + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	req, _ := http.NewRequest(method, e.emu.URL+dataversetest.APIPrefix+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}

// deleteContact deletes a contact through the emulator's Web API.
func (e *hookEnv) deleteContact(t *testing.T, id string) {
	e.api(t, http.MethodDelete, "contacts("+id+")")
}

// TestDataverseHookWebRoles: a web role removed in Dataverse (a
// Disassociate, the webhook authenticated by a header) is gone from the
// session on both replicas at their next request.
func TestDataverseHookWebRoles(t *testing.T) {
	e := newHookEnv(t, true)
	e.a.createUser("ann", "ann@example.test", "correct horse battery")
	ca, cb := e.signInBoth(t)
	for _, c := range []struct {
		h *harness
		c *http.Client
	}{{e.a, ca}, {e.b, cb}} {
		if resp, _ := c.h.get(c.c, "/partners/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("with the web role: %d", resp.StatusCode)
		}
	}
	e.api(t, http.MethodDelete, "contacts("+annID+")/adx_webrole_contact("+roleID+")/$ref")
	e.waitWebhooks(t)
	for _, c := range []struct {
		h *harness
		c *http.Client
	}{{e.a, ca}, {e.b, cb}} {
		start := time.Now()
		for {
			resp, _ := c.h.get(c.c, "/partners/x")
			if resp.StatusCode == http.StatusForbidden {
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("the removed web role still grants /partners: %d", resp.StatusCode)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if resp, _ := c.h.get(c.c, "/orders/1"); resp.StatusCode != http.StatusOK {
			t.Errorf("the session ended with its web role: %d", resp.StatusCode)
		}
	}
}
