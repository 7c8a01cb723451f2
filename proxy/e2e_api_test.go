package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/permissions"
)

func TestRESTAPIUsers(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	root := h.createUser("root", "root@example.test", "correct horse battery", "admin")
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		h.createUser(n, n+"@example.test", "correct horse battery")
	}
	admin, alice, anon := h.browser(), h.browser(), h.browser()
	h.signIn(admin, "root", "correct horse battery")
	h.signIn(alice, "alice", "correct horse battery")

	type list struct {
		Users []map[string]any
		Next  string
	}
	getList := func(c *http.Client, q string) (int, list, string) {
		resp, body := h.get(c, "/.auth/api/users"+q)
		var l list
		_ = json.Unmarshal([]byte(body), &l)
		return resp.StatusCode, l, body
	}

	code, l, body := getList(admin, "")
	if code != 200 || len(l.Users) != 5 || l.Next != "" {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, u := range l.Users {
		for _, secret := range []string{"PasswordHash", "password_hash", "SecurityStamp", "security_stamp"} {
			if _, ok := u[secret]; ok {
				t.Fatalf("user JSON carries %s", secret)
			}
		}
	}
	if strings.Contains(body, "argon2id") {
		t.Fatal("a password hash leaked into the API")
	}
	// Paging with a cursor, in username order.
	code, l, _ = getList(admin, "?limit=2")
	if code != 200 || len(l.Users) != 2 || l.Users[0]["username"] != "alice" || l.Next != "bob" {
		t.Fatalf("page 1: %d %+v", code, l)
	}
	_, l, _ = getList(admin, "?limit=2&after="+l.Next)
	if len(l.Users) != 2 || l.Users[0]["username"] != "carol" {
		t.Fatalf("page 2: %+v", l)
	}
	_, l, _ = getList(admin, "?query=ROOT@")
	if len(l.Users) != 1 || l.Users[0]["id"] != root.ID {
		t.Fatalf("query: %+v", l)
	}

	resp, body := h.get(admin, "/.auth/api/users/"+root.ID)
	var u map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &u) != nil || u["username"] != "root" {
		t.Fatalf("get user: %d %s", resp.StatusCode, body)
	}

	for _, tt := range []struct {
		name   string
		c      *http.Client
		path   string
		status int
		code   string
	}{
		{"anonymous", anon, "/.auth/api/users", 401, "unauthenticated"},
		{"not an admin", alice, "/.auth/api/users", 403, "forbidden"},
		{"bad status", admin, "/.auth/api/users?status=sleeping", 400, "bad_request"},
		{"bad limit", admin, "/.auth/api/users?limit=0", 400, "bad_request"},
		{"limit too big", admin, "/.auth/api/users?limit=100000", 400, "bad_request"},
		{"unknown user", admin, "/.auth/api/users/nope", 404, "not_found"},
		{"unknown endpoint", admin, "/.auth/api/frobs", 404, "not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.get(tt.c, tt.path) // a browser's Accept: the API still answers JSON
			var e struct{ Error, Message, RequestID string }
			if resp.StatusCode != tt.status || json.Unmarshal([]byte(body), &e) != nil || e.Error != tt.code || resp.Header.Get("X-Request-Id") == "" {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

// TestOpenAPIDocumentMatchesRoutes: the OpenAPI document is valid JSON and
// every path it lists is served (not the API's 404).
func TestOpenAPIDocumentMatchesRoutes(t *testing.T) {
	// With mail, so that every optional endpoint (invitations) is served.
	h := inviteHarness(t, harnessConfig{})
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	admin := h.browser()
	h.signIn(admin, "root", "correct horse battery")
	resp, body := h.get(admin, "/.auth/api/openapi.json")
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &doc) != nil || !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) == 0 {
		t.Fatalf("openapi.json: %d", resp.StatusCode)
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			req, _ := http.NewRequest(strings.ToUpper(method), h.url("/.auth/api"+strings.ReplaceAll(path, "{id}", "x")), nil)
			resp, body := h.do(admin, req)
			if resp.StatusCode == 404 && strings.Contains(body, "no API endpoint") {
				t.Errorf("%s %s is documented but not served", method, path)
			}
		}
	}
}

func TestRESTAPIKeys(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	ctx := context.Background()
	readKey, _, err := h.svc.APIKeys.CreateAPIKey(ctx, "power automate", []string{permissions.UsersRead}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	bindOnly, info, _ := h.svc.APIKeys.CreateAPIKey(ctx, "binder", []string{permissions.BindingsWrite}, time.Time{}, "test")
	c := &http.Client{}
	call := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", h.url("/.auth/api/users"), nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, body := h.do(c, req)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(body), &e)
		return resp.StatusCode, e.Error
	}
	if code, _ := call("Bearer " + readKey); code != 200 {
		t.Fatalf("read key: %d", code)
	}
	for name, tt := range map[string]struct {
		auth, code string
		status     int
	}{
		"wrong scope":     {"Bearer " + bindOnly, "forbidden", 403},
		"tampered secret": {"Bearer " + readKey[:len(readKey)-2] + "AA", "invalid_api_key", 401},
		"garbage":         {"Bearer nonsense", "invalid_api_key", 401},
		"basic scheme":    {"Basic dXNlcjpwdw==", "unauthenticated", 401},
	} {
		if status, code := call(tt.auth); status != tt.status || code != tt.code {
			t.Errorf("%s: %d %s", name, status, code)
		}
	}
	if err := h.svc.APIKeys.RevokeAPIKey(ctx, info.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if status, code := call("Bearer " + bindOnly); status != 401 || code != "invalid_api_key" {
		t.Errorf("revoked key: %d %s", status, code)
	}
}

// TestRESTAPIBulkBindings: POST /users/bindings changes many users' bindings
// in one call, by an admin session (same origin only) and by an API key
// with users:bind. Users are named by id, username or email; each item
// succeeds or fails alone (unknown user, bad binding, the last break-glass
// admin), every applied change is audited with its actor and leaves its
// lifecycle event, and a malformed or oversize body changes nothing.
func TestRESTAPIBulkBindings(t *testing.T) {
	h, _, _ := newContactHarness(t)
	ctx := context.Background()
	for _, n := range []string{"root", "ops"} {
		h.createUser(n, n+"@example.test", "correct horse battery", "admin")
		if err := h.svc.Accounts.SetBinding(ctx, n, authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	dave := h.createUser("dave", "dave@example.test", "correct horse battery")
	erin := h.createUser("erin", "erin@example.test", "correct horse battery")
	frank := h.createUser("frank", "frank@example.test", "correct horse battery")
	root := mustUserID(t, h, "root")
	admin := h.browser()
	h.signIn(admin, "root", "correct horse battery")

	type result struct {
		User  string
		ID    string
		OK    bool
		Error *struct{ Code, Message string }
	}
	post := func(c *http.Client, body string, hdr ...string) (int, []result, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", h.url("/.auth/api/users/bindings"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, b := h.do(c, req)
		var out struct{ Results []result }
		if resp.StatusCode == 200 {
			dec := json.NewDecoder(strings.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&out); err != nil {
				t.Fatalf("results: %v in %s", err, b)
			}
		}
		return resp.StatusCode, out.Results, b
	}
	binding := func(login string) authz.Binding {
		t.Helper()
		u, err := h.svc.Accounts.UserByID(ctx, mustUserID(t, h, login))
		if err != nil {
			t.Fatal(err)
		}
		return u.Binding
	}
	lookupAnn := `{"mode":"lookup","ref":{"Id":"` + annID + `","LogicalName":"contact","Name":"Ann Lee"}}`
	batch := `{"items":[
		{"user":"` + dave.ID + `","binding":` + lookupAnn + `},
		{"user":"erin","binding":{"mode":"none"}},
		{"user":"FRANK@example.test","binding":{"mode":"none"}},
		{"user":"nobody","binding":{"mode":"none"}},
		{"user":"erin","binding":{"mode":"lookup"}},
		{"user":"dave","binding":{"mode":"sometimes"}},
		{"user":"ops","binding":` + lookupAnn + `,"allow_shared":true},
		{"user":"root","binding":{"mode":"username"}}
	]}`

	// A cookie caller from another site is refused before anything happens.
	if code, _, b := post(admin, batch, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden || !strings.Contains(b, "cross_origin") {
		t.Fatalf("cross-site POST with a cookie: %d %s", code, b)
	}
	if binding("dave").Mode != authz.BindingUsername {
		t.Fatal("the cross-site batch changed a user")
	}

	code, res, b := post(admin, batch, "Sec-Fetch-Site", "same-origin")
	if code != 200 || len(res) != 8 {
		t.Fatalf("batch by session: %d %s", code, b)
	}
	wants := []struct{ user, id, code string }{
		{dave.ID, dave.ID, ""}, {"erin", erin.ID, ""}, {"FRANK@example.test", frank.ID, ""},
		{"nobody", "", "not_found"}, {"erin", "", "invalid_binding"}, {"dave", "", "invalid_binding"},
		{"ops", mustUserID(t, h, "ops"), ""}, {"root", root, "last_break_glass_admin"},
	}
	for i, w := range wants {
		r := res[i]
		got := ""
		if r.Error != nil {
			got = r.Error.Code
			if r.Error.Message == "" || r.OK {
				t.Errorf("item %d: error without message or with ok: %+v", i, r)
			}
		}
		if r.User != w.user || got != w.code || r.OK != (w.code == "") || (w.id != "" && r.ID != w.id) {
			t.Errorf("item %d: %+v %v, want user %q id %q code %q", i, r, r.Error, w.user, w.id, w.code)
		}
	}
	if b := binding("dave"); b.Mode != authz.BindingLookup || b.Ref.ID != annID {
		t.Errorf("dave: %+v", b)
	}
	if binding("erin").Mode != authz.BindingNone || binding("frank").Mode != authz.BindingNone || binding("ops").Mode != authz.BindingLookup {
		t.Error("a successful item was not saved")
	}
	// Root, the caller, was refused as the last break-glass admin, so its
	// session lives on for the rest of the test.
	if binding("root").Mode != authz.BindingNone {
		t.Fatal("the last break-glass admin was bound")
	}
	events, _ := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventBindingSet, UserID: dave.ID})
	if len(events) != 1 || events[0].Actor != root {
		t.Fatalf("dave's binding audit: %+v", events)
	}
	if es, err := h.db.OutboxEvents(ctx, erin.ID); err != nil || es[len(es)-1].Type != lifecycle.Unbound {
		t.Fatalf("erin's lifecycle events: %v %+v", err, es)
	}
	// Dave, bound by lookup in the batch, signs in as Ann's contact.
	dc := h.browser()
	h.signIn(dc, "dave", "correct horse battery")
	h.get(dc, "/orders/1")
	if got := h.up.last(t).Header.Get("X-Current-User-Contact-Id"); got != annID {
		t.Fatalf("lookup binding at sign-in: contact %q", got)
	}

	// An API key with users:bind (Power Automate) needs no same-origin.
	key, info, err := h.svc.APIKeys.CreateAPIKey(ctx, "flow", []string{permissions.BindingsWrite}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	code, res, b = post(&http.Client{}, `{"items":[{"user":"erin","binding":{"mode":"username"}},{"user":"`+erin.ID+`","binding":`+lookupAnn+`,"allow_shared":true}]}`,
		"Authorization", "Bearer "+key)
	if code != 200 || len(res) != 2 || !res[0].OK || !res[1].OK {
		t.Fatalf("batch by API key: %d %s", code, b)
	}
	events, _ = h.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventBindingSet, UserID: erin.ID, Limit: 2})
	if len(events) != 2 || events[0].Actor != "apikey:"+info.ID || events[1].Actor != "apikey:"+info.ID || events[0].Detail != "lookup" {
		t.Fatalf("erin's binding audit: %+v", events)
	}
	readKey, _, _ := h.svc.APIKeys.CreateAPIKey(ctx, "reader", []string{permissions.UsersRead}, time.Time{}, "test")
	if code, _, _ := post(&http.Client{}, `{"items":[{"user":"erin","binding":{"mode":"none"}}]}`, "Authorization", "Bearer "+readKey); code != http.StatusForbidden {
		t.Errorf("read-only key changed a binding: %d", code)
	}

	// Malformed bodies are refused whole and change nothing.
	item := `{"user":"frank","binding":{"mode":"username"}}`
	many := strings.Repeat(item+",", accounts.MaxBindingChanges) + item
	huge := `{"items":[{"user":"frank","binding":{"mode":"username","ref":{"Id":"` + annID + `","LogicalName":"contact","Name":"` +
		strings.Repeat("x", 1<<20) + `"}}}]}`
	for name, tt := range map[string]struct {
		body, code string
		status     int
	}{
		"not JSON":            {`items=frank`, "bad_request", 400},
		"unknown field":       {`{"items":[` + item + `],"dry_run":true}`, "bad_request", 400},
		"unknown item field":  {`{"items":[{"user":"frank","binding":{"mode":"username"},"why":"x"}]}`, "bad_request", 400},
		"unknown ref field":   {`{"items":[{"user":"frank","binding":{"mode":"lookup","ref":{"Id":"` + annID + `","LogicalName":"contact","Guid":"x"}}}]}`, "bad_request", 400},
		"no items":            {`{}`, "bad_request", 400},
		"empty items":         {`{"items":[]}`, "bad_request", 400},
		"item without user":   {`{"items":[` + item + `,{"binding":{"mode":"none"}}]}`, "bad_request", 400},
		"item without mode":   {`{"items":[` + item + `,{"user":"frank"}]}`, "bad_request", 400},
		"two JSON values":     {`{"items":[` + item + `]} {"items":[]}`, "bad_request", 400},
		"items not an array":  {`{"items":{"user":"frank"}}`, "bad_request", 400},
		"one over the limit":  {`{"items":[` + many + `]}`, "bad_request", 400},
		"over the byte limit": {huge, "too_large", 413},
	} {
		code, _, b := post(admin, tt.body, "Sec-Fetch-Site", "same-origin")
		var e struct {
			Error, Message string
			RequestID      string `json:"request_id"`
		}
		if code != tt.status || json.Unmarshal([]byte(b), &e) != nil || e.Error != tt.code || e.Message == "" || e.RequestID == "" {
			t.Errorf("%s: %d %s", name, code, b)
		}
	}
	if binding("frank").Mode != authz.BindingNone {
		t.Fatal("a refused batch changed frank")
	}
	// At the limit the batch is taken.
	atLimit := strings.Repeat(`{"user":"nobody","binding":{"mode":"none"}},`, accounts.MaxBindingChanges-1) + item
	if code, res, b := post(admin, `{"items":[`+atLimit+`]}`, "Sec-Fetch-Site", "same-origin"); code != 200 || len(res) != accounts.MaxBindingChanges || !res[len(res)-1].OK {
		t.Fatalf("batch of %d: %d %.300s", accounts.MaxBindingChanges, code, b)
	}
	if binding("frank").Mode != authz.BindingUsername {
		t.Fatal("the batch at the limit did not change frank")
	}
}
