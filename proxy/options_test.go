package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/proxy"
)

// TestOptionsNameEveryCapability: the identity layer reaches the server only
// through the typed fields of Options. A required one missing is an error
// naming it; an optional one left nil turns exactly its feature off, and
// nothing is discovered by type assertion.
func TestOptionsNameEveryCapability(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	base := h.opts
	base.Registerer = nil // the harness's server registered its metrics there
	o := base
	o.SignIn, o.Sessions, o.Users = nil, nil, nil
	o.TokenTTL, o.IdleTimeout = 0, 0
	_, err := proxy.New(o)
	for _, want := range []string{"Options.SignIn", "Options.Sessions", "Options.Users", "token TTL", "idle timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New without %s: %v", want, err)
		}
	}
	o = base
	o.Revalidator = nil
	o.ContactRevalidateInterval = 0 // needed only with a revalidator
	if _, err := proxy.New(o); err != nil {
		t.Errorf("New without a revalidator: %v", err)
	}
	// A second server on one registry is an error, not a panic.
	if _, err := proxy.New(h.opts); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("New on a registry already holding the metrics: %v", err)
	}

	// Every optional capability off: its endpoints are gone, the rest works.
	off := newHarness(t, harnessConfig{mutate: func(o *proxy.Options) {
		o.Profiles, o.APIKeys, o.Bindings, o.Contacts, o.Audit = nil, nil, nil, nil, nil
	}})
	off.createUser("root", "root@example.test", "correct horse battery", "admin")
	key, _, err := off.svc.APIKeys.CreateAPIKey(t.Context(), "k", []string{permissions.UsersRead}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	admin := off.browser()
	off.signIn(admin, "root", "correct horse battery")
	if resp, _ := off.get(admin, "/.auth/profile"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("profile page without Options.Profiles: %d", resp.StatusCode)
	}
	if resp, _ := off.get(&http.Client{}, "/.auth/api/users", "Authorization", "Bearer "+key); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API key without Options.APIKeys: %d", resp.StatusCode)
	}
	if resp, _ := off.get(admin, "/.auth/api/users"); resp.StatusCode != http.StatusOK {
		t.Errorf("admin session without Options.APIKeys: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("PUT", off.url("/.auth/api/users/x/binding"), strings.NewReader(`{"binding":{"mode":"none"}}`))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, body := off.do(admin, req); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no API endpoint") {
		t.Errorf("binding endpoint without Options.Bindings: %d %s", resp.StatusCode, body)
	}
	if resp, body := off.get(admin, "/.auth/api/contacts?email=a@example.test"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no API endpoint") {
		t.Errorf("contact search without Options.Contacts: %d %s", resp.StatusCode, body)
	}
	if resp, body := off.get(admin, "/.auth/api/audit"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no API endpoint") {
		t.Errorf("audit endpoint without Options.Audit: %d %s", resp.StatusCode, body)
	}
	// With them (the harness wires all, as cmd/crmgate does) the same
	// requests reach their features.
	on := newHarness(t, harnessConfig{})
	on.createUser("root", "root@example.test", "correct horse battery", "admin")
	a := on.browser()
	on.signIn(a, "root", "correct horse battery")
	if resp, _ := on.get(a, "/.auth/profile"); resp.StatusCode != http.StatusOK {
		t.Errorf("profile page with Options.Profiles: %d", resp.StatusCode)
	}
	if resp, body := on.get(a, "/.auth/api/contacts?email=a@example.test"); resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("contact search with Options.Contacts but no Dataverse: %d %s", resp.StatusCode, body)
	}
	if resp, body := on.get(a, "/.auth/api/audit"); resp.StatusCode != http.StatusOK {
		t.Errorf("audit endpoint with Options.Audit: %d %s", resp.StatusCode, body)
	}
}
