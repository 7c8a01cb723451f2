package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
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
	h := newHarness(t, harnessConfig{})
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
	readKey, _, err := h.svc.CreateAPIKey(ctx, "power automate", []string{authz.ScopeUsersRead}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	bindOnly, info, _ := h.svc.CreateAPIKey(ctx, "binder", []string{authz.ScopeUsersBind}, time.Time{}, "test")
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
	if err := h.svc.RevokeAPIKey(ctx, info.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if status, code := call("Bearer " + bindOnly); status != 401 || code != "invalid_api_key" {
		t.Errorf("revoked key: %d %s", status, code)
	}
}
