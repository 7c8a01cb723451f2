package proxy_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

// consoleGet fetches a console page as browser c and fails the test
// unless it answers want.
func (h *harness) consoleGet(c *http.Client, path string, want int) string {
	h.t.Helper()
	resp, body := h.get(c, "/.auth/admin"+path)
	if resp.StatusCode != want {
		h.t.Fatalf("GET /.auth/admin%s: %d, want %d\n%s", path, resp.StatusCode, want, body)
	}
	return body
}

// consolePost posts form to a console path as browser c, with the CSRF
// token of its pages, and returns the answer without following a redirect.
func (h *harness) consolePost(c *http.Client, path string, form url.Values) (*http.Response, string) {
	h.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf_token") == "" {
		form.Set("csrf_token", h.csrfToken(c))
	}
	noRedirect := *c
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return h.invPostForm(&noRedirect, "/.auth/admin"+path, form)
}

// seeOther fails the test unless resp is a 303 to a console page.
func seeOther(t *testing.T, resp *http.Response, body, wantPrefix string) {
	t.Helper()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, wantPrefix) {
		t.Fatalf("answer %d to %q, want 303 to %s…\n%s", resp.StatusCode, loc, wantPrefix, body)
	}
}

var rowRE = regexp.MustCompile(`<tr>\s*(?:<td class="select">[^\n]*</td>\s*)?<td><a href="/\.auth/admin/users/[0-9a-f]+">([^<]+)</a>`)

// tableUsers are the usernames of the users table in body, in order.
func tableUsers(body string) string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, ",")
}

// TestConsoleUsersTable: the users table searches, filters by status and
// binding mode, sorts both ways and pages, from the query string alone.
func TestConsoleUsersTable(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	for _, n := range []string{"dan", "eve", "fay", "gus"} {
		h.createUser(n, n+"@example.test", pw)
	}
	if err := h.svc.Accounts.SetStatus(t.Context(), "eve", authz.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Accounts.SetBinding(t.Context(), "fay", authz.Binding{Mode: authz.BindingUsername}, "test"); err != nil {
		t.Fatal(err)
	}
	admin := h.browser()
	h.signIn(admin, "root", pw)
	for _, tt := range []struct{ query, want string }{
		{"", "dan,eve,fay,gus,root"},
		{"?q=EVE", "eve"},
		{"?q=example.test&status=disabled", "eve"},
		{"?mode=username", "fay"},
		{"?sort=username&dir=desc", "root,gus,fay,eve,dan"},
		{"?sort=status", "dan,fay,gus,root,eve"},
	} {
		if got := tableUsers(h.consoleGet(admin, "/users"+tt.query, 200)); got != tt.want {
			t.Errorf("users%s: %s, want %s", tt.query, got, tt.want)
		}
	}
	body := h.consoleGet(admin, "/users?mode=bogus", 400)
	if !strings.Contains(body, "binding mode must be") {
		t.Errorf("a bad mode is not explained:\n%s", body)
	}
	for i := range 60 {
		n := "zz" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		h.createUser(n, n+"@example.test", pw)
	}
	body = h.consoleGet(admin, "/users?q=zz", 200)
	if !strings.Contains(body, "Users 1–50 of 60") || !strings.Contains(body, `href="/.auth/admin/users?page=2&amp;q=zz" rel="next"`) {
		t.Errorf("page 1 of 60 users:\n%s", body)
	}
	body = h.consoleGet(admin, "/users?q=zz&page=2", 200)
	if !strings.Contains(body, "Users 51–60 of 60") || strings.Contains(body, `rel="next"`) || tableUsers(body) != "zzby,zzbz,zzca,zzcb,zzcc,zzcd,zzce,zzcf,zzcg,zzch" {
		t.Errorf("page 2 of 60 users: %s\n%s", tableUsers(body), body)
	}
}

// TestConsoleUserPage: an administrator finds a Dataverse contact by
// email in the binding panel, binds a user to it (a second user only when
// sharing is ticked), sets roles, disables the user after a confirmation
// (which ends their session), and is refused, with the last break-glass
// administrator named, when disabling themselves; every change is in the
// audit trail with the administrator as actor.
func TestConsoleUserPage(t *testing.T) {
	h, _, _ := newContactHarness(t)
	ctx := t.Context()
	const pw = "correct horse battery"
	root := h.createUser("root", "root@example.test", pw, "admin")
	if err := h.svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	ann := h.createUser("ann", "ann@example.test", pw)
	dan := h.createUser("dan", "dan@example.test", pw)
	admin := h.browser()
	h.signIn(admin, "root", pw)
	annBrowser := h.browser()
	h.signIn(annBrowser, "ann", pw)

	// The binding panel resolves ann's username binding, and the lookup
	// finds contacts by email, saying who is bound to each.
	body := h.consoleGet(admin, "/users/"+ann.ID, 200)
	if !strings.Contains(body, annID) || !strings.Contains(body, "Ann Lee") {
		t.Errorf("ann's page does not show her contact:\n%s", body)
	}
	body = h.consoleGet(admin, "/users/"+dan.ID+"?lookup_field=email&lookup_q=ann%40example.test", 200)
	if !strings.Contains(body, `name="contact_id" value="`+annID+`"`) || !strings.Contains(body, "<td>ann</td>") {
		t.Errorf("lookup by email does not offer ann's contact, bound to ann:\n%s", body)
	}
	// Binding dan to it is refused while ann holds it, unless shared.
	resp, body := h.consolePost(admin, "/users/"+dan.ID+"/binding", url.Values{"mode": {"lookup"}, "contact_id": {annID}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already bound to ann") {
		t.Errorf("binding a held contact: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(admin, "/users/"+dan.ID+"/binding", url.Values{"mode": {"lookup"}, "contact_id": {annID}, "allow_shared": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/users/"+dan.ID+"?notice=binding")
	if u, _ := h.svc.Accounts.UserByID(ctx, dan.ID); u.Binding.Mode != authz.BindingLookup || u.Binding.Ref.ID != annID {
		t.Errorf("dan's binding = %+v", u.Binding)
	}
	body = h.consoleGet(admin, "/users/"+dan.ID+"?notice=binding", 200)
	if !strings.Contains(body, "The binding was saved.") || !strings.Contains(body, "Also bound</dt><dd>ann") {
		t.Errorf("dan's page after binding:\n%s", body)
	}
	// A notice is a key, never text from the link.
	if body = h.consoleGet(admin, "/users/"+dan.ID+"?notice=You+were+hacked", 200); strings.Contains(body, "hacked") {
		t.Error("the notice parameter is shown as text")
	}

	// Roles.
	resp, body = h.consolePost(admin, "/users/"+dan.ID+"/roles", url.Values{"roles": {"editor, viewer"}})
	seeOther(t, resp, body, "/.auth/admin/users/"+dan.ID)
	if u, _ := h.svc.Accounts.UserByID(ctx, dan.ID); strings.Join(u.Roles, ",") != "editor,viewer" {
		t.Errorf("roles = %v", u.Roles)
	}

	// Disabling asks first; confirmed, it ends ann's session.
	resp, body = h.consolePost(admin, "/users/"+ann.ID+"/status", url.Values{"status": {"disabled"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "Disable ann?") || !strings.Contains(body, `name="confirmed" value="yes"`) ||
		!strings.Contains(body, `name="status" value="disabled"`) {
		t.Fatalf("disable without confirmation: %d\n%s", resp.StatusCode, body)
	}
	if u, _ := h.svc.Accounts.UserByID(ctx, ann.ID); u.Status != authz.StatusActive {
		t.Fatal("the unconfirmed disable changed the account")
	}
	resp, body = h.consolePost(admin, "/users/"+ann.ID+"/status", url.Values{"status": {"disabled"}, "confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/users/"+ann.ID+"?notice=status-disabled")
	h.clock.Advance(5 * time.Minute) // past the stamp check (TestTimings: 2 min)
	if resp, _ := h.get(annBrowser, "/orders/1"); resp.StatusCode == 200 {
		t.Error("ann's session outlived her account being disabled")
	}

	// The last break-glass administrator cannot disable themselves; the
	// refusal names them.
	resp, body = h.consolePost(admin, "/users/"+root.ID+"/status", url.Values{"status": {"disabled"}, "confirmed": {"yes"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "root is the last active administrator who is not bound") {
		t.Errorf("disabling the last break-glass admin: %d\n%s", resp.StatusCode, body)
	}

	evs, err := h.svc.Audit.ListAudit(ctx, audit.Filter{Actor: root.ID, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, e := range evs {
		types[e.Type] = true
	}
	for _, want := range []string{audit.EventBindingSet, audit.EventRolesSet, audit.EventStatusSet} {
		if !types[want] {
			t.Errorf("no %s audit row by the administrator; have %v", want, types)
		}
	}
	body = h.consoleGet(admin, "/users/"+ann.ID, 200)
	if !strings.Contains(body, "Audit trail") || !strings.Contains(body, audit.EventStatusSet) {
		t.Errorf("ann's audit trail is not on her page:\n%s", body)
	}
}

// TestConsoleDeleteUser: deleting asks first, then deletes; the user is
// gone from the table.
func TestConsoleDeleteUser(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	gus := h.createUser("gus", "gus@example.test", pw)
	admin := h.browser()
	h.signIn(admin, "root", pw)
	resp, body := h.consolePost(admin, "/users/"+gus.ID+"/delete", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Delete gus?") {
		t.Fatalf("delete without confirmation: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(admin, "/users/"+gus.ID+"/delete", url.Values{"confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/users?notice=deleted")
	if got := tableUsers(h.consoleGet(admin, "/users", 200)); got != "root" {
		t.Errorf("users after the delete: %s", got)
	}
	h.consoleGet(admin, "/users/"+gus.ID, 404)
}

// TestConsoleSessionsAndLinks: from a user's page the administrator ends
// every session of the user (after a confirmation) and mails a
// set-password link; a disabled user is refused the link with a message.
func TestConsoleSessionsAndLinks(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	gus := h.createUser("gus", "gus@example.test", pw)
	admin, gusBrowser := h.browser(), h.browser()
	h.signIn(admin, "root", pw)
	h.signIn(gusBrowser, "gus", pw)
	body := h.consoleGet(admin, "/users/"+gus.ID, 200)
	for _, want := range []string{"End all sessions", "Send a set-password link"} {
		if !strings.Contains(body, want) {
			t.Fatalf("gus's page lacks %q:\n%s", want, body)
		}
	}
	resp, body := h.consolePost(admin, "/users/"+gus.ID+"/revoke-sessions", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "End every session of gus?") {
		t.Fatalf("revoke without confirmation: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(admin, "/users/"+gus.ID+"/revoke-sessions", url.Values{"confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/users/"+gus.ID+"?notice=sessions")
	h.clock.Advance(5 * time.Minute) // past the stamp check
	if resp, _ := h.get(gusBrowser, "/.auth/me"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("gus's session after revoke-sessions: %d", resp.StatusCode)
	}
	mails := len(h.mailsTo(gus.ID))
	resp, body = h.consolePost(admin, "/users/"+gus.ID+"/send-set-password-link", nil)
	seeOther(t, resp, body, "/.auth/admin/users/"+gus.ID+"?notice=set-password")
	if n := len(h.mailsTo(gus.ID)); n != mails+1 {
		t.Errorf("%d mails to gus after the link, want %d", n, mails+1)
	}
	if err := h.svc.Accounts.SetStatus(t.Context(), "gus", authz.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	resp, body = h.consolePost(admin, "/users/"+gus.ID+"/send-set-password-link", nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "The account is disabled") {
		t.Errorf("a link for a disabled user: %d\n%s", resp.StatusCode, body)
	}
}

// TestConsoleMenuServedOnly: the menu names only the sections the
// configured services serve (this harness has no Dataverse, so no
// contacts section), and only those the caller's roles allow.
func TestConsoleMenuServedOnly(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	admin := h.browser()
	h.signIn(admin, "root", pw)
	body := h.consoleGet(admin, "/", 200)
	for _, want := range []string{`href="/.auth/admin/users"`, `href="/.auth/admin/audit"`, `href="/.auth/admin/invitations"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the menu lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `href="/.auth/admin/contacts"`) {
		t.Error("the menu offers contacts without a contacts service")
	}
	h.consoleGet(admin, "/contacts", 404)
}
