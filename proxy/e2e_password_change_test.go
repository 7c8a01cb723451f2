package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
)

// changePassword posts the change form from c.
func (h *harness) changePassword(c *http.Client, current, next, redirect string) (*http.Response, string) {
	h.t.Helper()
	form := url.Values{"new_password": {next}}
	if current != "" {
		form.Set("current_password", current)
	}
	if redirect != "" {
		form.Set("redirect_url", redirect)
	}
	return h.postForm(c, "/.auth/password", "/.auth/password", form)
}

// TestPasswordChange: the current password is needed and counted against
// the sign-in lockout; the change keeps this session (under a new ID) and
// ends the others; redirect_url is honoured only when safe.
func TestPasswordChange(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	h.createUser("ivy", "ivy@example.com", "old password 123")
	c, other := h.browser(), h.browser()
	h.signIn(c, "ivy", "old password 123")
	h.signIn(other, "ivy", "old password 123")
	before := h.sessionCookie(c)

	resp, body := h.get(c, "/.auth/password")
	if resp.StatusCode != 200 || !strings.Contains(body, `name="current_password"`) || !strings.Contains(body, `autocomplete="new-password"`) {
		t.Fatalf("change page: %d\n%s", resp.StatusCode, body)
	}
	// Signed out: to sign in first, and back.
	if resp, _ := h.get(h.browser(), "/.auth/password"); resp.StatusCode != http.StatusFound ||
		resp.Header.Get("Location") != "/.auth/signin?redirect_url=%2F.auth%2Fpassword" {
		t.Fatalf("signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Wrong current passwords are sign-in failures: five lock this address
	// out of the account, for the change and for sign-in alike.
	for i := range 5 {
		resp, body := h.changePassword(c, "wrong password "+itoa(i), "new password 456", "")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "current password is incorrect") {
			t.Fatalf("wrong current %d: %d\n%s", i, resp.StatusCode, body)
		}
	}
	if resp, _ := h.changePassword(c, "old password 123", "new password 456", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the right password while locked out: %d", resp.StatusCode)
	}
	if resp, _ := h.postSignIn(h.browser(), "ivy", "old password 123", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign-in while locked out by the change form: %d", resp.StatusCode)
	}
	h.clock.Advance(16 * time.Minute)
	// Sessions idle 16 minutes are still within the test idle timeout?
	if resp, _ := h.get(c, "/account/x"); resp.StatusCode != 200 {
		t.Fatalf("session after the lockout: %d", resp.StatusCode)
	}
	if resp, _ := h.get(other, "/account/x"); resp.StatusCode != 200 {
		t.Fatalf("other session after the lockout: %d", resp.StatusCode)
	}

	// Same password, weak password: refused, nothing changes.
	if resp, _ := h.changePassword(c, "old password 123", "old password 123", ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("same password: %d", resp.StatusCode)
	}
	if resp, _ := h.changePassword(c, "old password 123", "short", ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("weak password: %d", resp.StatusCode)
	}
	// An unsafe return address is dropped.
	resp, _ = h.changePassword(c, "old password 123", "new password 456", "https://evil.example/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("change: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	after := h.sessionCookie(c)
	if after == nil || after.Value == before.Value {
		t.Fatal("the session was not re-issued")
	}
	// This session goes on, past a stamp check; the other ends.
	h.clock.Advance(3 * time.Minute)
	if resp, _ := h.get(c, "/account/x"); resp.StatusCode != 200 {
		t.Fatalf("current session after the change: %d", resp.StatusCode)
	}
	if resp, _ := h.get(other, "/account/x"); resp.StatusCode != http.StatusFound {
		t.Fatalf("other session survived the change: %d", resp.StatusCode)
	}
	// The cookie from before the change is refused.
	stale := &http.Client{CheckRedirect: c.CheckRedirect}
	req, _ := http.NewRequest("GET", h.url("/account/x"), nil)
	req.AddCookie(&http.Cookie{Name: before.Name, Value: before.Value})
	if resp, _ := h.do(stale, req); resp.StatusCode != http.StatusFound {
		t.Fatalf("the pre-change cookie still works: %d", resp.StatusCode)
	}
	// A safe return address is honoured.
	resp, _ = h.changePassword(c, "new password 456", "third password 789", "/account/done")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account/done" {
		t.Fatalf("change with a return address: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	h.signIn(h.browser(), "ivy", "third password 789")
}

// TestForcedPasswordChange: a user whose account must change its password
// reaches nothing but the change page (and sign-out, /me, static files)
// until it is done; then the flag is gone.
func TestForcedPasswordChange(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	u := h.createUser("jon", "jon@example.com", "given password 1")
	if _, err := h.svc.Accounts.ForcePasswordChange(context.Background(), "jon", "admin"); err != nil {
		t.Fatal(err)
	}
	c := h.browser()
	resp, _ := h.postSignIn(c, "jon", "given password 1", url.Values{"redirect_url": {"/account/start"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.auth/password?redirect_url=%2Faccount%2Fstart" {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/account/x?y=1", "/", "/public/page", "/.auth/profile", "/.auth/signin"} {
		resp, _ := h.get(c, path)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/.auth/password") {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp, _ := h.get(c, "/account/x"); resp.Header.Get("Location") != "/.auth/password?redirect_url=%2Faccount%2Fx" {
		t.Errorf("return address: %s", resp.Header.Get("Location"))
	}
	// API clients and other methods: 403 with the reason.
	resp, body := h.get(c, "/api/items", "Accept", "application/json")
	var je struct{ Error string }
	if resp.StatusCode != http.StatusForbidden || json.Unmarshal([]byte(body), &je) != nil || je.Error != "password_change_required" {
		t.Errorf("API client: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("POST", h.url("/account/x"), strings.NewReader("a=1"))
	req.Header.Set("Origin", h.gw.URL)
	if resp, _ := h.do(c, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	if resp, _ := h.get(c, "/.auth/api/users", "Accept", "application/json"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("REST API: %d", resp.StatusCode)
	}
	// Still reachable; /me says why the rest is not.
	if _, body := h.get(c, "/.auth/me"); !strings.Contains(body, `"must_change_password":true`) {
		t.Errorf("/me: %s", body)
	}
	for _, path := range []string{"/.auth/me", "/.auth/password", "/.auth/signout"} {
		if resp, _ := h.get(c, path); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}
	_, body = h.get(c, "/.auth/password")
	if !strings.Contains(body, "You must choose a new password") {
		t.Fatalf("forced page:\n%s", body)
	}
	resp, _ = h.changePassword(c, "given password 1", "my own password 2", "/account/start")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account/start" {
		t.Fatalf("change: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := h.get(c, "/account/start"); resp.StatusCode != 200 {
		t.Fatalf("after the change: %d", resp.StatusCode)
	}
	got, err := h.svc.Accounts.UserByID(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.MustChangePassword {
		t.Fatal("the must-change flag is still set")
	}
	// A fresh sign-in goes straight on.
	d := h.browser()
	if resp, _ := h.postSignIn(d, "jon", "my own password 2", nil); resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in after the change: %s", resp.Header.Get("Location"))
	}
}

const flagContactID = "c0000000-0000-4000-8000-0000000000f1"

// TestForcedChangeFromContactColumn: the contact's password-change column,
// read in the sign-in check, forces the change; afterwards the outbox sets
// it back to false in Dataverse.
func TestForcedChangeFromContactColumn(t *testing.T) {
	seed := `{"contacts": [{"contactid": "` + flagContactID + `", "firstname": "Kim", "lastname": "Flag", "emailaddress1": "kim@example.test",
	  "adx_identity_username": "kim", "adx_identity_logonenabled": true, "new_mustchangepassword": true}]}`
	emu, client := seededContactEmulator(t, seed)
	h := contactHarness(t, client, func(o *wiring.Options) {
		o.Mail = testComposer(t)
		o.SignInCheck.PasswordChangeColumn = "new_mustchangepassword"
	})
	h.createUser("kim", "kim@example.test", "given password 1")
	c := h.browser()
	requests := func() int { return emu.Requests("GET contacts") + emu.Requests("GET contacts()") }
	before := requests()
	resp, _ := h.postSignIn(c, "kim", "given password 1", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.auth/password" {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := requests() - before; n != 1 {
		t.Fatalf("the sign-in made %d Dataverse requests, want 1 (the column read with the check)", n)
	}
	if resp, _ := h.get(c, "/orders/1"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("bound route before the change: %d", resp.StatusCode)
	}
	if resp, _ := h.changePassword(c, "given password 1", "my own password 2", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("change: %d", resp.StatusCode)
	}
	if resp, _ := h.get(c, "/orders/1"); resp.StatusCode != 200 {
		t.Fatalf("bound route after the change: %d", resp.StatusCode)
	}
	// The outbox delivers the clearing of the column.
	dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	d := recovery.ContactFlagDeliverer{Contacts: dir}
	evs, err := h.db.ClaimOutbox(context.Background(), time.Now().Add(24*365*time.Hour), time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for len(evs) > 0 {
		for _, e := range evs {
			if e.Kind == recovery.ContactFlagKind {
				if err := d.Deliver(context.Background(), e); err != nil {
					t.Fatal(err)
				}
				delivered++
			}
			if err := h.db.CompleteOutbox(context.Background(), e, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if evs, err = h.db.ClaimOutbox(context.Background(), time.Now().Add(24*365*time.Hour), time.Minute, 100); err != nil {
			t.Fatal(err)
		}
	}
	if delivered != 1 {
		t.Fatalf("%d contact flag events, want 1", delivered)
	}
	ct, err := dir.ContactByID(context.Background(), flagContactID, []string{"new_mustchangepassword"})
	if err != nil {
		t.Fatal(err)
	}
	if v := ct.Columns["new_mustchangepassword"]; v != false {
		t.Fatalf("column after the change: %v", v)
	}
	// The next sign-in is not forced.
	if resp, _ := h.postSignIn(h.browser(), "kim", "my own password 2", nil); resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in after the change: %s", resp.Header.Get("Location"))
	}
}

// TestRESTAPIForcePasswordChange: an API key with users:password (and no
// other) forces a change; the user's session then reaches only the change
// page.
func TestRESTAPIForcePasswordChange(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	h.createUser("lea", "lea@example.com", "given password 1")
	c := h.browser()
	h.signIn(c, "lea", "given password 1")
	ctx := context.Background()
	key, _, err := h.svc.APIKeys.CreateAPIKey(ctx, "helpdesk", []string{permissions.UsersCredentials}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	readKey, _, err := h.svc.APIKeys.CreateAPIKey(ctx, "reader", []string{permissions.UsersRead}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	call := func(key, who string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", h.url("/.auth/api/users/"+who+"/force-password-change"), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		return h.do(&http.Client{}, req)
	}
	if resp, _ := call(readKey, "lea"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("without the scope: %d", resp.StatusCode)
	}
	if resp, _ := call(key, "nobody"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown user: %d", resp.StatusCode)
	}
	resp, body := call(key, "lea@example.com")
	var u struct {
		MustChange bool `json:"must_change_password"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &u) != nil || !u.MustChange {
		t.Fatalf("force: %d %s", resp.StatusCode, body)
	}
	// The stamp changed: the session ends at its check; the next sign-in
	// is forced.
	h.clock.Advance(3 * time.Minute)
	if resp, _ := h.get(c, "/account/x"); resp.StatusCode != http.StatusFound {
		t.Fatalf("old session: %d", resp.StatusCode)
	}
	if resp, _ := h.postSignIn(c, "lea", "given password 1", nil); resp.Header.Get("Location") != "/.auth/password" {
		t.Fatalf("sign-in: %s", resp.Header.Get("Location"))
	}
}
