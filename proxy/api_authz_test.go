package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/console"
)

// authzPolicy is testPolicy with a permissions section granting, for each
// permission p, the role "only-p" exactly p and the role "lacks-p" every
// permission but p.
func authzPolicy() string {
	var b strings.Builder
	b.WriteString(testPolicy + "permissions:\n")
	for _, p := range permissions.All() {
		fmt.Fprintf(&b, "  only-%s: [%s]\n", p, p)
		others := slices.DeleteFunc(permissions.All(), func(q string) bool { return q == p })
		fmt.Fprintf(&b, "  lacks-%s: [%s]\n", p, strings.Join(others, ", "))
	}
	return b.String()
}

// TestGuardedRoutesAreComplete: every guarded route has a permission of
// the vocabulary and a (method, path) of its own, and the list is exactly
// the operations openapi.json documents, so neither can forget a route.
func TestGuardedRoutesAreComplete(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	routes := h.srv.GuardedRoutes()
	seen := map[string]string{} // "METHOD /api/path" -> permission
	consoleRoutes := 0
	for _, r := range routes {
		isConsole := strings.HasPrefix(r.Path, "/admin/")
		if isConsole {
			consoleRoutes++
		}
		if !permissions.Valid(r.Permission) && (!isConsole || r.Permission != console.AnyPermission) {
			t.Errorf("%s %s: permission %q is not one of %v", r.Method, r.Path, r.Permission, permissions.All())
		}
		if !isConsole && !strings.HasPrefix(r.Path, "/api/") {
			t.Errorf("%s %s: a guarded route is under /api/ or /admin/", r.Method, r.Path)
		}
		k := r.Method + " " + r.Path
		if _, dup := seen[k]; dup {
			t.Errorf("%s registered twice", k)
		}
		seen[k] = r.Permission
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	_, body := h.get(&http.Client{}, "/.auth/api/openapi.json")
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m, raw := range ops {
			if path == "/openapi.json" || m == "parameters" {
				continue
			}
			k := strings.ToUpper(m) + " /api" + path
			documented[k] = true
			var op struct {
				Security []map[string][]string `json:"security"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			// Both schemes name exactly the route's permission.
			want := []map[string][]string{{"session": {seen[k]}}, {"apiKey": {seen[k]}}}
			if _, ok := seen[k]; ok && !reflect.DeepEqual(op.Security, want) {
				t.Errorf("%s: openapi.json security %v, want %v", k, op.Security, want)
			}
		}
	}
	for k := range documented {
		if _, ok := seen[k]; !ok {
			t.Errorf("%s is documented but not a guarded route", k)
		}
	}
	for k := range seen {
		if strings.Contains(k, " /admin/") {
			continue // the console's pages are not the REST API's
		}
		if !documented[k] {
			t.Errorf("%s is a guarded route but not documented in openapi.json", k)
		}
	}
	if len(routes) == 0 || consoleRoutes == 0 {
		t.Errorf("%d guarded routes, %d of the console", len(routes), consoleRoutes)
	}
}

// TestGuardedRoutesAuthorization walks every guarded route (the generated
// list the mux is built from) and calls it as anonymous, as a plain
// signed-in user, as a user whose roles grant every permission but the
// route's, with an API key holding every scope but the route's, with a
// bad API key, and, for unsafe methods, as an administrator from a foreign
// origin: each is refused with a JSON error and a request id. The route's
// permission alone then suffices, through a role or an API key, and the
// admin role has it.
func TestGuardedRoutesAuthorization(t *testing.T) {
	h := inviteHarness(t, harnessConfig{policy: authzPolicy()})
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	h.createUser("plain", "plain@example.test", pw, "member")
	admin, plain := h.browser(), h.browser()
	h.signIn(admin, "root", pw)
	h.signIn(plain, "plain", pw)
	only, lacks := map[string]*http.Client{}, map[string]*http.Client{}
	onlyKey, lacksKey := map[string]string{}, map[string]string{}
	for i, p := range permissions.All() {
		for _, v := range []struct {
			prefix  string
			clients map[string]*http.Client
			keys    map[string]string
			scopes  []string
		}{
			{"only", only, onlyKey, []string{p}},
			{"lacks", lacks, lacksKey, slices.DeleteFunc(permissions.All(), func(q string) bool { return q == p })},
		} {
			login := fmt.Sprintf("%s%d", v.prefix, i)
			h.createUser(login, login+"@example.test", pw, v.prefix+"-"+p)
			c := h.browser()
			h.signIn(c, login, pw)
			v.clients[p] = c
			key, _, err := h.svc.APIKeys.CreateAPIKey(t.Context(), login, v.scopes, time.Time{}, "test")
			if err != nil {
				t.Fatal(err)
			}
			v.keys[p] = key
		}
	}

	// call sends one request to route as client c; origin "" is a
	// same-origin browser, anything else a foreign site; key, when set, is
	// sent as a bearer token.
	call := func(c *http.Client, r proxy.GuardedRoute, origin, key string) (int, string, *http.Response) {
		t.Helper()
		path := "/.auth" + strings.ReplaceAll(r.Path, "{id}", "nobody")
		req, _ := http.NewRequest(r.Method, h.url(path), nil)
		if r.Method != "GET" {
			req, _ = http.NewRequest(r.Method, h.url(path), strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
		}
		switch origin {
		case "":
			req.Header.Set("Origin", h.gw.URL)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		case "sec-fetch-site":
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		default:
			req.Header.Set("Origin", origin)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, body := h.do(c, req)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(body), &e)
		return resp.StatusCode, e.Error, resp
	}
	tokens := func(cs map[string]*http.Client) map[string]string {
		out := map[string]string{}
		for p, c := range cs {
			out[p] = h.csrfToken(c)
		}
		return out
	}
	adminToken, plainToken, onlyToken, lacksToken := h.csrfToken(admin), h.csrfToken(plain), tokens(only), tokens(lacks)
	anon := h.browser()
	anonToken := h.csrfToken(anon)
	routes := h.srv.GuardedRoutes()
	for _, r := range routes {
		if strings.HasPrefix(r.Path, "/admin/") {
			t.Run(r.Method+" "+r.Path, func(t *testing.T) {
				checkConsoleRoute(t, h, r, consoleCallers{admin: admin, plain: plain, anon: anon, only: only, lacks: lacks,
					adminToken: adminToken, plainToken: plainToken, anonToken: anonToken, onlyToken: onlyToken, lacksToken: lacksToken,
					onlyKey: onlyKey, lacksKey: lacksKey})
			})
			continue
		}
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			if !permissions.Valid(r.Permission) {
				t.Fatalf("permission %q is not one of %v", r.Permission, permissions.All())
			}
			refusals := []struct {
				name        string
				c           *http.Client
				origin, key string
				status      int
				code        string
			}{
				{"anonymous", &http.Client{}, "", "", 401, "unauthenticated"},
				{"plain user", plain, "", "", 403, "forbidden"},
				{"every permission but " + r.Permission, lacks[r.Permission], "", "", 403, "forbidden"},
				{"API key with every scope but " + r.Permission, &http.Client{}, "", lacksKey[r.Permission], 403, "forbidden"},
				{"bad API key", &http.Client{}, "", "cgk_notakey", 401, "invalid_api_key"},
				// A request with a key is judged by the key alone, not by an admin cookie.
				{"admin cookie, key lacking the scope", admin, "", lacksKey[r.Permission], 403, "forbidden"},
			}
			if r.Method != "GET" {
				refusals = append(refusals,
					struct {
						name        string
						c           *http.Client
						origin, key string
						status      int
						code        string
					}{"admin from a foreign Origin", admin, "https://evil.example", "", 403, "cross_origin"},
					struct {
						name        string
						c           *http.Client
						origin, key string
						status      int
						code        string
					}{"admin from a cross-site fetch", admin, "sec-fetch-site", "", 403, "cross_origin"},
					struct {
						name        string
						c           *http.Client
						origin, key string
						status      int
						code        string
					}{"only " + r.Permission + " from a foreign Origin", only[r.Permission], "https://evil.example", "", 403, "cross_origin"},
				)
			}
			for _, tt := range refusals {
				status, code, resp := call(tt.c, r, tt.origin, tt.key)
				if status != tt.status || code != tt.code || resp.Header.Get("X-Request-Id") == "" ||
					!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
					t.Errorf("%s: %d %q (%s), want %d %q", tt.name, status, code, resp.Header.Get("Content-Type"), tt.status, tt.code)
				}
			}
			for _, ok := range []struct {
				name string
				c    *http.Client
				key  string
			}{
				{"role with only " + r.Permission, only[r.Permission], ""},
				{"API key with only " + r.Permission, &http.Client{}, onlyKey[r.Permission]},
				{"admin", admin, ""},
			} {
				// The route's own answer (a 404 for the user "nobody", a 400
				// for the empty body) shows that authorization let it through.
				if status, code, _ := call(ok.c, r, "", ok.key); status == 401 || status == 403 || status >= 500 && status != 501 {
					t.Errorf("%s: answered %d %q", ok.name, status, code)
				} else {
					t.Logf("%s: %d %s", ok.name, status, code)
				}
			}
		})
	}
	// Refusals for a missing permission are audit rows too, one per caller
	// and permission a minute: by the plain user and the users lacking it
	// (a user id as actor) and by the keys lacking it ("apikey:<id>").
	evs, err := h.svc.Audit.ListAudit(t.Context(), audit.Filter{Type: audit.EventAPIRefused, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	byKey, byUser := 0, 0
	seen := map[string]bool{}
	for _, e := range evs {
		perm, _, _ := strings.Cut(e.Detail, " ")
		if seen[e.Actor+" "+perm] {
			t.Errorf("two api.refused rows within a minute for %s and %s", e.Actor, perm)
		}
		seen[e.Actor+" "+perm] = true
		switch {
		case strings.HasPrefix(e.Actor, "apikey:"):
			byKey++
		case e.Actor != "" && e.UserID == e.Actor:
			byUser++
		}
		if !strings.Contains(e.Detail, " /.auth/api/") && !strings.Contains(e.Detail, " /.auth/admin/") {
			t.Errorf("audit detail %q does not name the permission and the path", e.Detail)
		}
	}
	// Keys are refused by the console before any permission (it takes
	// sessions only); the plain user alone lacks the console's "any
	// permission", which every other caller holds.
	perms, apiPerms, anyPerm := map[string]bool{}, map[string]bool{}, false
	for _, r := range routes {
		anyPerm = anyPerm || r.Permission == console.AnyPermission
		if r.Permission != console.AnyPermission {
			perms[r.Permission] = true
		}
		if strings.HasPrefix(r.Path, "/api/") {
			apiPerms[r.Permission] = true
		}
	}
	wantUser := 2 * len(perms)
	if anyPerm {
		wantUser++ // the plain user on the console's start page
	}
	if byKey != len(apiPerms) || byUser != wantUser {
		t.Errorf("%d api.refused rows by keys and %d by users, want %d and %d", byKey, byUser, len(apiPerms), wantUser)
	}
}

// consoleCallers are the clients and credentials of
// TestGuardedRoutesAuthorization, for the console's routes.
type consoleCallers struct {
	admin, plain, anon                *http.Client
	only, lacks                       map[string]*http.Client
	adminToken, plainToken, anonToken string
	onlyToken, lacksToken             map[string]string
	onlyKey, lacksKey                 map[string]string
}

// checkConsoleRoute calls one console route as each caller that must be
// refused, then as the callers it must let through. A page is asked for
// as a browser asks (no JSON): the refusals are HTML error pages with a
// request id, except the sign-in redirect of an anonymous GET. The code
// of a refusal is read from the JSON an API client asking for it gets.
func checkConsoleRoute(t *testing.T, h *harness, r proxy.GuardedRoute, cc consoleCallers) {
	path := "/.auth" + strings.ReplaceAll(r.Path, "{id}", "nobody")
	path = strings.ReplaceAll(path, "{$}", "")
	post := r.Method != "GET"
	call := func(c *http.Client, origin, key, token string, jsonErr bool) (*http.Response, string) {
		t.Helper()
		var req *http.Request
		if post {
			form := url.Values{"confirmed": {"yes"}}
			if token != "" {
				form.Set("csrf_token", token)
			}
			req, _ = http.NewRequest(r.Method, h.url(path), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(r.Method, h.url(path), nil)
		}
		switch origin {
		case "":
			req.Header.Set("Origin", h.gw.URL)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		case "sec-fetch-site":
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		default:
			req.Header.Set("Origin", origin)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if jsonErr {
			req.Header.Set("Accept", "application/json")
		}
		noRedirect := *c
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, body := h.do(&noRedirect, req)
		return resp, body
	}
	perm := r.Permission
	lacking := cc.lacks[perm]
	lackingToken := cc.lacksToken[perm]
	if perm == console.AnyPermission {
		lacking, lackingToken = cc.plain, cc.plainToken
	}
	type refusal struct {
		name               string
		c                  *http.Client
		origin, key, token string
		status             int
		code               string
	}
	refusals := []refusal{
		{"plain user", cc.plain, "", "", cc.plainToken, 403, "forbidden"},
		{"a user lacking " + perm, lacking, "", "", lackingToken, 403, "forbidden"},
		{"API key with every scope", &http.Client{}, "", cc.onlyKey[permissions.UsersRead], "", 401, "console_session_required"},
		{"admin cookie with an API key", cc.admin, "", cc.lacksKey[permissions.UsersRead], cc.adminToken, 401, "console_session_required"},
	}
	if post {
		refusals = append(refusals,
			refusal{"anonymous", cc.anon, "", "", cc.anonToken, 401, "unauthenticated"},
			refusal{"anonymous without a token", &http.Client{}, "", "", "", 403, "form_expired"},
			refusal{"admin without a CSRF token", cc.admin, "", "", "", 403, "form_expired"},
			refusal{"admin with another browser's CSRF token", cc.admin, "", "", cc.plainToken, 403, "form_expired"},
			refusal{"admin from a foreign Origin", cc.admin, "https://evil.example", "", cc.adminToken, 403, "cross_origin"},
			refusal{"admin from a cross-site fetch", cc.admin, "sec-fetch-site", "", cc.adminToken, 403, "cross_origin"},
		)
	} else {
		resp, _ := call(&http.Client{}, "", "", "", false)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound ||
			loc != "/.auth/signin?redirect_url="+url.QueryEscape(path) {
			t.Errorf("anonymous: %d to %q, want 302 to the sign-in page and back", resp.StatusCode, loc)
		}
	}
	for _, tt := range refusals {
		resp, body := call(tt.c, tt.origin, tt.key, tt.token, false)
		if resp.StatusCode != tt.status || resp.Header.Get("X-Request-Id") == "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, resp.Header.Get("X-Request-Id")) {
			t.Errorf("%s: %d (%s), want an HTML page %d with the request id", tt.name, resp.StatusCode, resp.Header.Get("Content-Type"), tt.status)
		}
		resp, body = call(tt.c, tt.origin, tt.key, tt.token, true)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(body), &e)
		if resp.StatusCode != tt.status || e.Error != tt.code {
			t.Errorf("%s: %d %q, want %d %q", tt.name, resp.StatusCode, e.Error, tt.status, tt.code)
		}
	}
	oks := []struct {
		name  string
		c     *http.Client
		token string
	}{{"admin", cc.admin, cc.adminToken}}
	if perm == console.AnyPermission {
		for p, c := range cc.only {
			oks = append(oks, struct {
				name  string
				c     *http.Client
				token string
			}{"role with only " + p, c, cc.onlyToken[p]})
		}
	} else {
		oks = append(oks, struct {
			name  string
			c     *http.Client
			token string
		}{"role with only " + perm, cc.only[perm], cc.onlyToken[perm]})
	}
	for _, ok := range oks {
		// The route's own answer (a 404 for the user "nobody") shows that
		// authorization let it through.
		resp, _ := call(ok.c, "", "", ok.token, false)
		if s := resp.StatusCode; s == 401 || s == 403 || s >= 500 && s != 501 || s == http.StatusFound {
			t.Errorf("%s: answered %d", ok.name, s)
		}
	}
}
