package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/proxy"
)

// actionLinkRE finds the set-password link of a mail composed by
// authztest.Composer (inviteHarness's).
var actionLinkRE = regexp.MustCompile(`https://portal\.example\.com/\.auth/reset/confirm\?[^\s"<]+`)

// TestRESTAccountActions: the actions a CRM flow calls, each with an API
// key holding only its permission, as Power Automate would (empty body,
// Bearer key): revoke-sessions ends a live session at its next request
// through the session feed (the stamp check is not due) and lets the user
// sign in again; lock disables the account, ends its session and refuses
// the last break-glass administrator; unlock re-enables it, clears a
// lockout and says so; send-set-password-link queues the set-password
// mail in the outbox, revokes the previous link and is refused for a
// disabled user. Each is audited with the key as actor; a key without the
// permission gets 403, no key 401, an unknown user 404.
func TestRESTAccountActions(t *testing.T) {
	var clock atomic.Pointer[fakeClock]
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "gw.db"), store.WithNow(func() time.Time {
		if c := clock.Load(); c != nil {
			return c.Now()
		}
		return time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := inviteHarness(t, harnessConfig{db: db, mutate: func(o *proxy.Options) {
		o.StampCheckInterval = 10 * time.Minute // only the feed can end a session within this test
		o.SessionFeed = db
	}}, func(o *wiring.Options) { o.BreakGlassRole = proxy.AdminRole })
	clock.Store(h.clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.WatchSessions(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	const pw = "correct horse battery"
	root := h.createUser("root", "root@example.test", pw, "admin")
	ana := h.createUser("ana", "ana@example.test", pw, "member")
	newKey := func(name string, scopes ...string) (string, string) {
		t.Helper()
		secret, k, err := h.svc.APIKeys.CreateAPIKey(ctx, name, scopes, time.Time{}, "test")
		if err != nil {
			t.Fatal(err)
		}
		return secret, "apikey:" + k.ID
	}
	writeKey, writeActor := newKey("crm-flow-write", permissions.UsersWrite)
	credKey, credActor := newKey("crm-flow-credentials", permissions.UsersCredentials)
	readKey, _ := newKey("crm-reader", permissions.UsersRead)
	// call posts to the action as Power Automate's HTTP action does: no
	// body, the key as a bearer token (none when key is empty).
	call := func(key, who, action string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", h.url("/.auth/api/users/"+url.PathEscape(who)+"/"+action), nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, body := h.do(&http.Client{}, req)
		var out map[string]any
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("%s %s: not JSON: %s", action, who, body)
		}
		return resp.StatusCode, out
	}
	user := func(id string) *authz.User {
		t.Helper()
		u, err := db.UserByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	audited := func(typ, actor, userID string) {
		t.Helper()
		es, err := h.svc.Audit.ListAudit(ctx, audit.Filter{Type: typ, Actor: actor, UserID: userID, Limit: 1})
		if err != nil || len(es) != 1 {
			t.Errorf("no %s audit row by %s about %s (%v)", typ, actor, userID, err)
		}
	}
	// endsSoon waits for c's session to be refused, as the session feed
	// makes it on every replica.
	endsSoon := func(c *http.Client, what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if resp, _ := h.get(c, "/account/x"); resp.StatusCode != http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the session was still served 5s later", what)
			}
		}
	}
	refusals := func(action, rightKey, wrongKey string) {
		t.Helper()
		if st, out := call(wrongKey, "ana", action); st != http.StatusForbidden || out["error"] != "forbidden" {
			t.Errorf("%s with the wrong scope: %d %v", action, st, out)
		}
		if st, out := call("", "ana", action); st != http.StatusUnauthorized {
			t.Errorf("%s anonymous: %d %v", action, st, out)
		}
		if st, out := call(rightKey, "nobody@example.test", action); st != http.StatusNotFound || out["error"] != "not_found" {
			t.Errorf("%s of an unknown user: %d %v", action, st, out)
		}
	}

	// revoke-sessions: the live session ends, the user signs in again.
	c := h.browser()
	h.signIn(c, "ana", pw)
	if resp, _ := h.get(c, "/account/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	refusals("revoke-sessions", writeKey, credKey)
	stamp := user(ana.ID).SecurityStamp
	if st, out := call(writeKey, ana.ID, "revoke-sessions"); st != http.StatusOK || out["id"] != ana.ID || out["status"] != "active" {
		t.Fatalf("revoke-sessions: %d %v", st, out)
	}
	if user(ana.ID).SecurityStamp == stamp {
		t.Error("revoke-sessions left the security stamp")
	}
	endsSoon(c, "revoke-sessions")
	audited(accounts.EventSessionsRevoked, writeActor, ana.ID)
	c = h.browser()
	h.signIn(c, "ana", pw)

	// lock: disabled, session ended, sign-in refused; the break-glass
	// administrator is refused with a reason naming the rule.
	refusals("lock", writeKey, readKey)
	if st, out := call(writeKey, "ana@example.test", "lock"); st != http.StatusOK || out["status"] != "disabled" {
		t.Fatalf("lock: %d %v", st, out)
	}
	if u := user(ana.ID); u.Status != authz.StatusDisabled {
		t.Errorf("after lock: status %s", u.Status)
	}
	endsSoon(c, "lock")
	if resp, _ := h.postSignIn(h.browser(), "ana", pw, nil); resp.StatusCode == http.StatusSeeOther {
		t.Error("a locked user signed in")
	}
	audited(audit.EventStatusSet, writeActor, ana.ID)
	st, out := call(writeKey, "root", "lock")
	if msg, _ := out["message"].(string); st != http.StatusConflict || out["error"] != "last_break_glass_admin" || !strings.Contains(msg, "break-glass") {
		t.Errorf("lock of the break-glass admin: %d %v", st, out)
	}
	if user(root.ID).Status != authz.StatusActive {
		t.Error("the break-glass admin was locked")
	}

	// send-set-password-link is refused while the user is disabled.
	refusals("send-set-password-link", credKey, writeKey)
	mails := len(h.mailsTo(ana.ID))
	if st, out := call(credKey, "ana", "send-set-password-link"); st != http.StatusConflict || out["error"] != "account_disabled" {
		t.Errorf("set-password link to a disabled user: %d %v", st, out)
	}
	if len(h.mailsTo(ana.ID)) != mails {
		t.Error("a disabled user was mailed a link")
	}

	// unlock: re-enabled, the lockout cleared, the answer says both.
	u := user(ana.ID)
	u.FailedCount, u.LockoutUntil = 20, h.clock.Now().Add(15*time.Minute)
	if err := db.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	refusals("unlock", writeKey, credKey)
	st, out = call(writeKey, "ana", "unlock")
	if st != http.StatusOK || out["reenabled"] != true || out["lockout_cleared"] != true {
		t.Fatalf("unlock: %d %v", st, out)
	}
	if got, _ := out["user"].(map[string]any); got["status"] != "active" || got["failed_count"] != 0.0 {
		t.Errorf("unlock answered the user %v", got)
	}
	if u := user(ana.ID); u.Status != authz.StatusActive || u.FailedCount != 0 || !u.LockoutUntil.IsZero() {
		t.Errorf("after unlock: %s, %d failures, lockout until %v", u.Status, u.FailedCount, u.LockoutUntil)
	}
	audited(audit.EventAccountUnlocked, writeActor, ana.ID)
	h.signIn(h.browser(), "ana", pw)
	if st, out := call(writeKey, "ana", "unlock"); st != http.StatusOK || out["reenabled"] != false || out["lockout_cleared"] != false {
		t.Errorf("unlock with nothing to do: %d %v", st, out)
	}
	// A registration waiting for approval stays pending: unlock is not
	// an approval.
	pat := h.pendingUser("pat")
	if st, out := call(writeKey, "pat", "unlock"); st != http.StatusOK || out["reenabled"] != false {
		t.Errorf("unlock of a pending user: %d %v", st, out)
	}
	if user(pat.ID).Status != authz.StatusPending {
		t.Error("unlock approved a pending registration")
	}

	// send-set-password-link: the mail is in the outbox with a working
	// link; a second one revokes it.
	link := func(n int) string {
		t.Helper()
		ms := h.mailsTo(ana.ID)
		if len(ms) != mails+n {
			t.Fatalf("%d mails, want %d", len(ms), mails+n)
		}
		m := ms[len(ms)-1]
		lu, err := url.Parse(actionLinkRE.FindString(m.Text))
		if m.To != "ana@example.test" || err != nil || lu.Query().Get("purpose") != string(tokens.PurposeSetPassword) {
			t.Fatalf("set-password mail %+v (%v)", m, err)
		}
		return lu.Query().Get("token")
	}
	st, out = call(credKey, "ana@example.test", "send-set-password-link")
	if st != http.StatusOK || out["user_id"] != ana.ID || out["email"] != "ana@example.test" || out["expires_at"] == nil {
		t.Fatalf("send-set-password-link: %d %v", st, out)
	}
	first := link(1)
	audited(onboarding.EventSetPasswordLinkSent, credActor, ana.ID)
	if st, out := call(credKey, ana.ID, "send-set-password-link"); st != http.StatusOK {
		t.Fatalf("second link: %d %v", st, out)
	}
	second := link(2)
	if _, err := h.svc.Tokens.Peek(ctx, tokens.PurposeSetPassword, first); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("the first link after the second was sent: %v, want ErrInvalidToken", err)
	}
	if tok, err := h.svc.Tokens.Peek(ctx, tokens.PurposeSetPassword, second); err != nil || tok.UserID != ana.ID {
		t.Errorf("the second link: %+v, %v", tok, err)
	}
}

// TestCRMActionsDoc holds docs/crm-actions.md to the route table: every
// row of its scope table names a guarded route with that permission, every
// POST route under /users it lists appears there, and every example
// request is to a guarded route.
func TestCRMActionsDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "crm-actions.md"))
	if err != nil {
		t.Fatal(err)
	}
	h := inviteHarness(t, harnessConfig{})
	perm := map[string]string{} // "POST /api/users/{id}/lock" -> permission
	for _, r := range h.srv.GuardedRoutes() {
		perm[r.Method+" "+r.Path] = r.Permission
	}
	rows := regexp.MustCompile("(?m)^\\| [^|]+ \\| (`POST [^|]+`) \\| `([a-z:]+)` \\|$").FindAllStringSubmatch(string(doc), -1)
	if len(rows) < 7 {
		t.Fatalf("%d rows in the scope table, want at least 7", len(rows))
	}
	listed := map[string]bool{}
	for _, row := range rows {
		for _, route := range regexp.MustCompile("`POST ([^`]+)`").FindAllStringSubmatch(row[1], -1) {
			k := "POST /api" + route[1]
			listed[k] = true
			if got, ok := perm[k]; !ok || got != row[2] {
				t.Errorf("the doc says %s needs %s; the route table: %q (exists %v)", k, row[2], got, ok)
			}
		}
	}
	for k := range perm {
		if strings.HasPrefix(k, "POST /api/users/{id}/") && !listed[k] && !strings.HasSuffix(k, "/reject") {
			t.Errorf("%s is not in the doc's scope table", k)
		}
	}
	examples := regexp.MustCompile(`(?m)^POST /\.auth(/api/users/[^/ ]+(?:/[a-z-]+)?) HTTP/1\.1$`).FindAllStringSubmatch(string(doc), -1)
	if len(examples) < 6 {
		t.Fatalf("%d example requests, want at least 6", len(examples))
	}
	for _, ex := range examples {
		path := regexp.MustCompile(`^/api/users/[^/]+%40[^/]+/`).ReplaceAllString(ex[1], "/api/users/{id}/")
		if _, ok := perm["POST "+path]; !ok {
			t.Errorf("the example request POST %s is to no guarded route (%s)", ex[1], path)
		}
	}
}
