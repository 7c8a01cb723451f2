package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

func TestSignInRedirectBackAndIdentityUpstream(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	u := h.createUser("alice", "Alice@Example.test", "correct horse battery", "partner")
	c := h.browser()

	// Anonymous browser: sent to sign in, with the way back.
	resp, _ := h.get(c, "/account/orders?id=7")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("anonymous /account: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if loc != "/.auth/signin?redirect_url="+url.QueryEscape("/account/orders?id=7") {
		t.Fatalf("Location = %q", loc)
	}
	if h.up.count() != 0 {
		t.Fatal("upstream reached without a session")
	}

	// Sign in by email in another case, back to where we came from.
	resp, _ = h.postSignIn(c, "ALICE@example.TEST", "correct horse battery", url.Values{"redirect_url": {"/account/orders?id=7"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account/orders?id=7" {
		t.Fatalf("sign-in: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := h.sessionCookie(c)
	if ck == nil {
		t.Fatal("no session cookie")
	}
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "crmgate_session=") {
			for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
				if !strings.Contains(sc, attr) {
					t.Errorf("session cookie lacks %s: %s", attr, sc)
				}
			}
			if strings.Contains(sc, "Domain=") || strings.Contains(sc, "Max-Age") || strings.Contains(sc, "Expires") {
				t.Errorf("session cookie should be host-only and a browser-session cookie: %s", sc)
			}
		}
	}

	// The upstream receives the identity, and another cookie of its own, but never the gateway's cookies.
	req, _ := http.NewRequest("GET", h.url("/account/orders?id=7"), nil)
	req.AddCookie(&http.Cookie{Name: "PHPSESSID", Value: "legacy"})
	resp, body := h.do(c, req)
	if resp.StatusCode != 200 || body != "upstream GET /account/orders" {
		t.Fatalf("proxied: %d %q", resp.StatusCode, body)
	}
	got := h.up.last(t)
	if got.Query != "id=7" {
		t.Errorf("query = %q", got.Query)
	}
	if got.Header.Get("X-Current-User-Id") != u.ID || got.Header.Get("X-Current-User-Email") != "Alice@Example.test" ||
		got.Header.Get("X-Current-User-Name") != "Alice" || got.Header.Get("X-Current-User-Roles") != "partner" {
		t.Errorf("plain identity headers: %v", got.Header)
	}
	if cookie := got.Header.Get("Cookie"); cookie != "PHPSESSID=legacy" {
		t.Errorf("upstream Cookie = %q, want only the site's own cookie", cookie)
	}
	if got.Header.Get("X-Request-Id") == "" || got.Header.Get("X-Request-Id") != resp.Header.Get("X-Request-Id") {
		t.Errorf("request id upstream %q, response %q", got.Header.Get("X-Request-Id"), resp.Header.Get("X-Request-Id"))
	}
	claims := h.verifyToken(got.Header.Get("X-Current-User"), h.up.srv.URL)
	if claims["sub"] != u.ID || claims["email"] != "Alice@Example.test" || claims["preferred_username"] != "alice" ||
		claims["name"] != "Alice" || claims["auth_method"] != "password" {
		t.Errorf("claims: %v", claims)
	}
	if roles, _ := claims["roles"].([]any); len(roles) != 1 || roles[0] != "partner" {
		t.Errorf("roles claim: %v", claims["roles"])
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat > 300 || exp <= iat {
		t.Errorf("lifetime exp-iat = %v", exp-iat)
	}

	// /.auth/me shows the same user.
	resp, body = h.get(c, "/.auth/me")
	var me struct {
		User struct {
			ID, Username string
			Roles        []string
		}
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &me) != nil || me.User.ID != u.ID || me.User.Username != "alice" {
		t.Fatalf("/.auth/me: %d %s", resp.StatusCode, body)
	}
	resp, body = h.get(h.browser(), "/.auth/me")
	if resp.StatusCode != 401 || !strings.Contains(body, `"unauthenticated"`) {
		t.Fatalf("/.auth/me signed out: %d %s", resp.StatusCode, body)
	}
}

func TestTokenReusedUntilShortlyBeforeExpiry(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")

	h.get(c, "/account/a")
	first := h.up.last(t).Header.Get("X-Current-User")
	h.clock.Advance(time.Minute)
	h.get(c, "/account/b")
	if again := h.up.last(t).Header.Get("X-Current-User"); again != first {
		t.Fatal("token re-signed within its reuse window")
	}
	h.clock.Advance(3*time.Minute + 30*time.Second) // 4m30s after issue: within the last minute of 5m
	h.get(c, "/account/c")
	fresh := h.up.last(t).Header.Get("X-Current-User")
	if fresh == first {
		t.Fatal("token reused too close to expiry")
	}
	h.verifyToken(fresh, h.up.srv.URL)
}

func TestSignOut(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")
	stolen := *h.sessionCookie(c)

	// GET only shows a confirmation: no state change from a link.
	resp, body := h.get(c, "/.auth/signout")
	if resp.StatusCode != 200 || !strings.Contains(body, `method="post"`) || h.sessionCookie(c) == nil {
		t.Fatalf("GET signout: %d, cookie kept: %v", resp.StatusCode, h.sessionCookie(c) != nil)
	}
	// Cross-site POST is refused.
	req, _ := http.NewRequest("POST", h.url("/.auth/signout"), nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := h.do(c, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-out: %d", resp.StatusCode)
	}
	// A same-origin POST, as from a sign-out button in the upstream app.
	req, _ = http.NewRequest("POST", h.url("/.auth/signout"), nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, _ = h.do(c, req)
	if resp.StatusCode != 200 || h.sessionCookie(c) != nil {
		t.Fatalf("sign-out: %d, cookie still there: %v", resp.StatusCode, h.sessionCookie(c) != nil)
	}
	if resp, _ := h.get(c, "/account"); resp.StatusCode != http.StatusFound {
		t.Fatalf("after sign-out /account: %d", resp.StatusCode)
	}
	// A copy of the cookie taken before sign-out no longer works.
	replay := h.browser()
	req, _ = http.NewRequest("GET", h.url("/account"), nil)
	req.AddCookie(&stolen)
	if resp, _ := h.do(replay, req); resp.StatusCode != http.StatusFound {
		t.Fatalf("replayed cookie after sign-out: %d", resp.StatusCode)
	}
	events, err := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventSignOut})
	if err != nil || len(events) != 1 {
		t.Fatalf("sign-out audit: %v %v", events, err)
	}
}

// TestSignOutReachesOtherReplicas runs two gateways on one store: a sign-out
// on one ends the session on the other at its next security-stamp check.
func TestSignOutReachesOtherReplicas(t *testing.T) {
	keys := [][]byte{randomKey()}
	signing := []*ecdsa.PrivateKey{newKey(t)}
	a := newHarness(t, harnessConfig{cookieKeys: keys, signingKeys: signing})
	b := newHarness(t, harnessConfig{cookieKeys: keys, signingKeys: signing, db: a.db})
	a.createUser("alice", "alice@example.test", "correct horse battery")
	c := a.browser()
	a.signIn(c, "alice", "correct horse battery")
	copied := *a.sessionCookie(c)
	get := func(h *harness) int {
		req, _ := http.NewRequest("GET", h.url("/account"), nil)
		req.AddCookie(&copied)
		resp, _ := h.do(h.browser(), req)
		return resp.StatusCode
	}
	if code := get(b); code != 200 {
		t.Fatalf("replica b before sign-out: %d", code)
	}
	req, _ := http.NewRequest("POST", a.url("/.auth/signout"), nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	a.do(c, req)
	b.clock.Advance(2*time.Minute + time.Second)
	if code := get(b); code != http.StatusFound {
		t.Fatalf("replica b after sign-out on a: %d", code)
	}
}

func TestLockoutAndGenericErrors(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	c := h.browser()

	_, unknown := h.postSignIn(c, "nobody", "whatever-password", nil)
	for i := 0; i < 5; i++ {
		resp, body := h.postSignIn(c, "alice", "wrong password!", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, resp.StatusCode)
		}
		if msg(body) != msg(unknown) {
			t.Fatalf("wrong password and unknown user differ:\n%s\n%s", msg(body), msg(unknown))
		}
	}
	// Locked: even the right password fails, with the same message.
	resp, body := h.postSignIn(c, "alice", "correct horse battery", nil)
	if resp.StatusCode != http.StatusUnauthorized || msg(body) != msg(unknown) {
		t.Fatalf("locked account: %d %s", resp.StatusCode, msg(body))
	}
	h.clock.Advance(15*time.Minute + time.Second)
	h.signIn(c, "alice", "correct horse battery")
}

func TestThrottlePerClient(t *testing.T) {
	h := newHarness(t, harnessConfig{clientBurst: 3})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	c := h.browser()
	for i := 0; i < 3; i++ {
		h.postSignIn(c, fmt.Sprintf("user%d", i), "wrong password!", nil)
	}
	resp, body := h.postSignIn(c, "alice", "correct horse battery", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many") {
		t.Fatalf("over the rate: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	h.clock.Advance(time.Minute)
	h.signIn(c, "alice", "correct horse battery")
}

// msg extracts the alert text of a sign-in page.
func msg(body string) string {
	i := strings.Index(body, `role="alert"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</")
	return body[i : i+j]
}

func TestSessionLifetimes(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")

	t.Run("idle", func(t *testing.T) {
		c := h.browser()
		h.signIn(c, "alice", "correct horse battery")
		h.clock.Advance(59 * time.Minute)
		if resp, _ := h.get(c, "/account"); resp.StatusCode != 200 {
			t.Fatalf("within idle: %d", resp.StatusCode)
		}
		h.clock.Advance(59 * time.Minute) // active 59 minutes ago: still fine
		if resp, _ := h.get(c, "/account"); resp.StatusCode != 200 {
			t.Fatalf("activity moved the idle deadline: %d", resp.StatusCode)
		}
		h.clock.Advance(61 * time.Minute)
		if resp, _ := h.get(c, "/account"); resp.StatusCode != http.StatusFound {
			t.Fatalf("after idle timeout: %d", resp.StatusCode)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		c := h.browser()
		h.signIn(c, "alice", "correct horse battery")
		for i := 0; i < 13; i++ { // 13 × 59m > 12h, never idle for an hour
			h.clock.Advance(59 * time.Minute)
			h.get(c, "/account")
		}
		if resp, _ := h.get(c, "/account"); resp.StatusCode != http.StatusFound {
			t.Fatalf("after absolute timeout: %d", resp.StatusCode)
		}
	})
	t.Run("remember me is persistent", func(t *testing.T) {
		c := h.browser()
		resp, _ := h.postSignIn(c, "alice", "correct horse battery", url.Values{"remember": {"1"}})
		sc := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
		if !strings.Contains(sc, "Max-Age=2592000") {
			t.Fatalf("remember-me cookie not persistent for 30 days: %s", sc)
		}
		h.clock.Advance(20 * time.Hour)
		if resp, _ := h.get(c, "/account"); resp.StatusCode != 200 {
			t.Fatalf("remembered session after 20h: %d", resp.StatusCode)
		}
	})
}

func TestSecurityStampEndsSessions(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	h.createUser("bob", "bob@example.test", "correct horse battery")
	ctx := context.Background()
	a, b := h.browser(), h.browser()
	h.signIn(a, "alice", "correct horse battery")
	h.signIn(b, "bob", "correct horse battery")

	if err := h.svc.Accounts.SetStatus(ctx, "alice", authz.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Accounts.SetPassword(ctx, "bob", "a new password!", "test"); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2*time.Minute + time.Second)
	for name, c := range map[string]*http.Client{"disabled": a, "password changed": b} {
		if resp, _ := h.get(c, "/account"); resp.StatusCode != http.StatusFound {
			t.Errorf("%s: session still valid after the stamp check: %d", name, resp.StatusCode)
		}
	}
	// Role changes reach the headers at the next check without signing in again.
	c := h.browser()
	h.createUser("carol", "carol@example.test", "correct horse battery")
	h.signIn(c, "carol", "correct horse battery")
	if resp, _ := h.get(c, "/admin/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("carol on /admin before promotion: %d", resp.StatusCode)
	}
	if err := h.svc.Accounts.SetRoles(ctx, "carol", []string{"admin"}, "test"); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2*time.Minute + time.Second)
	// Setting roles rotates the stamp, so carol signs in again and gets the role.
	if resp, _ := h.get(c, "/admin/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("carol after role change: %d", resp.StatusCode)
	}
	h.signIn(c, "carol", "correct horse battery")
	if resp, _ := h.get(c, "/admin/"); resp.StatusCode != 200 {
		t.Fatalf("carol as admin: %d", resp.StatusCode)
	}
}

func TestTamperedAndForeignCookies(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")
	good := h.sessionCookie(c).Value

	for name, v := range map[string]string{
		"flipped byte": good[:10] + string(good[10]^1) + good[11:],
		"truncated":    good[:len(good)-4],
		"garbage":      "not-a-cookie",
		"empty parts":  "||",
		"huge":         strings.Repeat("A", 6000),
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.url("/account"), nil)
			req.AddCookie(&http.Cookie{Name: "crmgate_session", Value: v})
			resp, _ := h.do(h.browser(), req)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "crmgate_session=;") || !strings.Contains(sc, "Max-Age=0") {
				t.Fatalf("bad cookie not cleared: %q", sc)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	db := newHarness(t, harnessConfig{}).db // one store shared by three gateway generations
	k1, k2 := randomKey(), randomKey()
	s1, s2 := newKey(t), newKey(t)

	old := newHarness(t, harnessConfig{db: db, cookieKeys: [][]byte{k1}, signingKeys: []*ecdsa.PrivateKey{s1}})
	old.createUser("alice", "alice@example.test", "correct horse battery")
	c := old.browser()
	old.signIn(c, "alice", "correct horse battery")
	cookie := old.sessionCookie(c)

	rotated := newHarness(t, harnessConfig{db: db, cookieKeys: [][]byte{k2, k1}, signingKeys: []*ecdsa.PrivateKey{s2, s1}})
	retired := newHarness(t, harnessConfig{db: db, cookieKeys: [][]byte{k2}, signingKeys: []*ecdsa.PrivateKey{s2}})

	req, _ := http.NewRequest("GET", rotated.url("/account"), nil)
	req.AddCookie(cookie)
	if resp, _ := rotated.do(rotated.browser(), req); resp.StatusCode != 200 {
		t.Fatalf("old cookie under rotated keys: %d", resp.StatusCode)
	}
	// The rotated gateway signs with the new key and publishes both.
	tok := rotated.up.last(t).Header.Get("X-Current-User")
	rotated.verifyToken(tok, rotated.up.srv.URL)
	var set struct{ Keys []map[string]any }
	_, body := rotated.get(http.DefaultClient, "/.auth/jwks.json")
	if json.Unmarshal([]byte(body), &set) != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS during rotation: %s", body)
	}
	for _, k := range set.Keys {
		if k["d"] != nil || k["kty"] != "EC" || k["alg"] != "ES256" || k["kid"] == "" {
			t.Fatalf("JWKS key: %v", k)
		}
	}
	req, _ = http.NewRequest("GET", retired.url("/account"), nil)
	req.AddCookie(cookie)
	if resp, _ := retired.do(retired.browser(), req); resp.StatusCode != http.StatusFound {
		t.Fatalf("cookie of a retired key accepted: %d", resp.StatusCode)
	}
}

func TestSessionFixation(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	h.createUser("mallory", "mallory@example.test", "correct horse battery")

	// Mallory plants her own valid session cookie in the victim's browser.
	m := h.browser()
	h.signIn(m, "mallory", "correct horse battery")
	planted := h.sessionCookie(m)
	victim := h.browser()
	u, _ := url.Parse(h.gw.URL)
	victim.Jar.SetCookies(u, []*http.Cookie{planted})

	h.signIn(victim, "alice", "correct horse battery")
	if got := h.sessionCookie(victim); got == nil || got.Value == planted.Value {
		t.Fatal("sign-in kept the planted session")
	}
	h.get(victim, "/account")
	if h.up.last(t).Header.Get("X-Current-User-Email") != "alice@example.test" {
		t.Fatal("victim is not alice after signing in")
	}
	// Two sign-ins of the same user get different sessions.
	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")
	first := h.sessionCookie(c).Value
	h.signIn(c, "alice", "correct horse battery")
	if h.sessionCookie(c).Value == first {
		t.Fatal("session cookie reused across sign-ins")
	}
}

func TestSignInCSRFAndOpenRedirect(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")

	post := func(c *http.Client, form url.Values, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("POST", h.url("/.auth/signin"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, _ := h.do(c, req)
		return resp
	}
	c := h.browser()
	tok := h.csrfToken(c)
	creds := url.Values{"login": {"alice"}, "password": {"correct horse battery"}}

	if resp := post(c, creds, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	withTok := url.Values{"login": {"alice"}, "password": {"correct horse battery"}, "csrf_token": {tok}}
	if resp := post(c, withTok, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d", resp.StatusCode)
	}
	if resp := post(c, withTok, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign Origin: %d", resp.StatusCode)
	}
	// Another browser's token does not fit this browser.
	other := h.browser()
	if resp := post(other, withTok, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("token of another browser: %d", resp.StatusCode)
	}
	if h.sessionCookie(c) != nil || h.sessionCookie(other) != nil {
		t.Fatal("a refused sign-in set a session")
	}
	for _, hostile := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/%2f/evil.example"} {
		resp, _ := h.postSignIn(h.browser(), "alice", "correct horse battery", url.Values{"redirect_url": {hostile}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("redirect_url %q: %d Location %q", hostile, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// The sign-in page does not echo a hostile redirect_url into its form.
	_, body := h.get(h.browser(), "/.auth/signin?redirect_url="+url.QueryEscape("//evil.example"))
	if strings.Contains(body, "evil.example") {
		t.Error("hostile redirect_url rendered into the sign-in page")
	}
}

func TestPolicyDecisions(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	h.createUser("root", "root@staff.test", "correct horse battery", "admin")
	anon, alice, root := h.browser(), h.browser(), h.browser()
	h.signIn(alice, "alice", "correct horse battery")
	h.signIn(root, "root", "correct horse battery")

	json := []string{"Accept", "application/json"}
	xhr := []string{"X-Requested-With", "XMLHttpRequest"}
	tests := []struct {
		name   string
		c      *http.Client
		path   string
		hdr    []string
		status int
	}{
		{"public anonymous", anon, "/public/page", nil, 200},
		{"home anonymous", anon, "/", nil, 200},
		{"account anonymous browser", anon, "/account", nil, 302},
		{"account anonymous api", anon, "/account", json, 401},
		{"account anonymous xhr", anon, "/api/x", xhr, 401},
		{"account signed in", alice, "/account", nil, 200},
		{"admin as non-admin", alice, "/admin/users", nil, 403},
		{"admin as non-admin api", alice, "/admin/users", json, 403},
		{"admin as admin", root, "/admin/users", nil, 200},
		{"condition false", alice, "/staff/x", nil, 403},
		{"condition true", root, "/staff/x", nil, 200},
		{"condition anonymous", anon, "/staff/x", nil, 302},
		{"deny", root, "/closed/x", nil, 403},
		{"unmatched", root, "/nowhere", nil, 404}, // no route: "no page here", not "access denied"
		{"unmatched anonymous", anon, "/nowhere", nil, 404},
		{"unknown gateway page", anon, "/.auth/nope", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.get(tt.c, tt.path, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s: %d, want %d", tt.path, resp.StatusCode, tt.status)
			}
			if tt.status >= 400 {
				rid := resp.Header.Get("X-Request-Id")
				if rid == "" || !strings.Contains(body, rid) {
					t.Errorf("error response lacks the request ID %q", rid)
				}
				isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
				if isJSON != (tt.hdr != nil) {
					t.Errorf("Content-Type %q for headers %v", resp.Header.Get("Content-Type"), tt.hdr)
				}
			}
		})
	}
}

func TestPathCanonicalisationEndToEnd(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	alice := h.browser()
	h.signIn(alice, "alice", "correct horse battery")

	// Every spelling of /admin either is refused outright or meets the admin rule:
	// alice (no admin role) must never reach the upstream.
	for _, p := range []string{
		"/public/..%2fadmin/x", "/public/%2e%2e/admin/x", "/public%2f..%2fadmin/x", "/admin;x=1/x", "/admin%3bx/x",
		"/public/..%5cadmin/x", "/%2561dmin/x", "/public/%252e%252e/admin/x", "/public/%c0%ae%c0%ae/admin/x",
		"/admin%00/x", "/public/%0d%0a/x", "//admin/x", "/public/../admin/x", "/./admin/x", "/public/./../admin/x",
		"/ADMIN/../admin/x",
	} {
		t.Run(p, func(t *testing.T) {
			before := h.up.count()
			status := h.rawRequest("GET " + p + " HTTP/1.1\r\nHost: " + h.gw.Listener.Addr().String() +
				"\r\nCookie: crmgate_session=" + h.sessionCookie(alice).Value + "\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(status, "400") && !strings.HasPrefix(status, "403") {
				t.Fatalf("status %s", status)
			}
			if h.up.count() != before {
				t.Fatalf("reached upstream as %q", h.up.last(t).Path)
			}
		})
	}
	// A non-canonical but harmless path is proxied in its canonical form.
	h.get(alice, "/account//a/./b/../c/")
	if got := h.up.last(t).Path; got != "/account/a/c/" {
		t.Fatalf("proxied path %q", got)
	}
}

func TestIdentityHeaderSpoofing(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	u := h.createUser("alice", "alice@example.test", "correct horse battery")
	alice := h.browser()
	h.signIn(alice, "alice", "correct horse battery")
	cookie := "crmgate_session=" + h.sessionCookie(alice).Value
	host := h.gw.Listener.Addr().String()

	forged := "X-Current-User: forged.jwt.value\r\n" +
		"x-current-user-id: attacker\r\n" +
		"X_Current_User_Roles: admin\r\n" +
		"X-CURRENT-USER-EMAIL: root@staff.test\r\n" +
		"x_current_user: underscore\r\n" +
		"X-Current-User-Contact-Id: 00000000-0000-0000-0000-000000000000\r\n" +
		"X-Current_User-Name: Mixed\r\n"

	t.Run("anonymous on a public page", func(t *testing.T) {
		h.rawRequest("GET /public/x HTTP/1.1\r\nHost: " + host + "\r\n" + forged + "Connection: close\r\n\r\n")
		for k := range h.up.last(t).Header {
			if strings.HasPrefix(strings.ReplaceAll(strings.ToLower(k), "_", "-"), "x-current-user") {
				t.Errorf("forged header %q reached the upstream", k)
			}
		}
	})
	t.Run("signed in", func(t *testing.T) {
		h.rawRequest("GET /account HTTP/1.1\r\nHost: " + host + "\r\nCookie: " + cookie + "\r\n" + forged + "Connection: close\r\n\r\n")
		got := h.up.last(t).Header
		if got.Get("X-Current-User-Id") != u.ID || got.Get("X-Current-User-Roles") != "" || got.Get("X-Current-User-Contact-Id") != "" {
			t.Errorf("identity after forging: %v", got)
		}
		for k := range got {
			if strings.Contains(k, "_") {
				t.Errorf("underscore header %q reached the upstream", k)
			}
		}
		if len(got.Values("X-Current-User")) != 1 {
			t.Errorf("X-Current-User values: %q", got.Values("X-Current-User"))
		}
		h.verifyToken(got.Get("X-Current-User"), h.up.srv.URL)
	})
	t.Run("Connection header cannot remove the gateway's headers", func(t *testing.T) {
		h.rawRequest("GET /account HTTP/1.1\r\nHost: " + host + "\r\nCookie: " + cookie +
			"\r\nConnection: X-Current-User, X-Current-User-Id, keep-alive\r\nConnection: close\r\n\r\n")
		got := h.up.last(t).Header
		if got.Get("X-Current-User") == "" || got.Get("X-Current-User-Id") != u.ID {
			t.Errorf("Connection: trick removed identity headers: %v", got)
		}
	})
	t.Run("method override headers", func(t *testing.T) {
		h.rawRequest("GET /public/x HTTP/1.1\r\nHost: " + host + "\r\nX-HTTP-Method-Override: DELETE\r\nX-Http-Method: DELETE\r\nX-Method-Override: PUT\r\nConnection: close\r\n\r\n")
		got := h.up.last(t).Header
		for _, k := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
			if got.Get(k) != "" {
				t.Errorf("%s reached the upstream", k)
			}
		}
	})
	t.Run("trailers", func(t *testing.T) {
		h.rawRequest("POST /account HTTP/1.1\r\nHost: " + host + "\r\nCookie: " + cookie +
			"\r\nSec-Fetch-Site: same-origin\r\nTransfer-Encoding: chunked\r\nTrailer: X-Current-User-Roles\r\nConnection: close\r\n\r\n" +
			"1\r\nx\r\n0\r\nX-Current-User-Roles: admin\r\n\r\n")
		got := h.up.last(t)
		if got.Method != "POST" || got.Header.Get("X-Current-User-Roles") != "" {
			t.Errorf("trailer smuggled roles: %v", got.Header)
		}
	})
}

func TestCrossOriginProxiedPost(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")
	req, _ := http.NewRequest("POST", h.url("/account/transfer"), strings.NewReader("amount=1000"))
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	before := h.up.count()
	if resp, _ := h.do(c, req); resp.StatusCode != http.StatusForbidden || h.up.count() != before {
		t.Fatalf("cross-site POST: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", h.url("/account/transfer"), strings.NewReader("amount=1000"))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, _ := h.do(c, req); resp.StatusCode != 200 {
		t.Fatalf("same-origin POST: %d", resp.StatusCode)
	}
}
