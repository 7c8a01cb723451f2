package proxy_test

import (
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/proxy"
)

// TestContactHeadersBounded: a contact whose columns are far too large for
// a session (a 100 KB memo, a value that JSON escapes six-fold, columns that
// are only too large together) still signs in; what does not fit is left
// out of the token and the plain headers, the longest first, with one
// warning naming columns and sizes but no values; and web roles whose
// names hold a comma or a percent sign reach the plain roles header
// unambiguously.
func TestContactHeadersBounded(t *testing.T) {
	memo := strings.Repeat("m", 100_000)
	escaped := strings.Repeat("<>&", 400) // 1,200 bytes plain, 7,202 as JSON
	line := strings.Repeat("l", 2500)
	seed := `{
 "contacts": [
  {"contactid": "` + annID + `", "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.test",
   "adx_identity_username": "ann", "adx_identity_logonenabled": true,
   "description": "` + memo + `", "nickname": "` + strings.Repeat("n", 1500) + `", "jobtitle": "` + escaped + `",
   "address1_line1": "` + line + `", "address1_line2": "` + line + `", "address1_line3": "` + line + `",
   "address1_city": "` + line + `"}
 ],
 "adx_webroles": [{"adx_webroleid": "` + roleID + `", "adx_name": "Partners, EU"},
  {"adx_webroleid": "d0000000-0000-4000-8000-00000000000b", "adx_name": "100%"}],
 "associations": [{"relationship": "adx_webrole_contact", "contactid": "` + annID + `", "adx_webroleid": "` + roleID + `"},
  {"relationship": "adx_webrole_contact", "contactid": "` + annID + `", "adx_webroleid": "d0000000-0000-4000-8000-00000000000b"}]
}`
	_, client := seededContactEmulator(t, seed)
	logs := &lockedBuffer{}
	h := contactHarnessWith(t, client, harnessConfig{
		policy: `upstreams:
  - name: app
    url: %s
routes:
  - name: orders
    paths: ["/orders/**"]
    access: bound
    contact_columns: [fullname, description, nickname, jobtitle, address1_line1, address1_line2, address1_line3, address1_city]
`,
		mutate: func(o *proxy.Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) },
	})
	h.createUser("ann", "ann@example.test", "correct horse battery")
	c := h.browser()
	h.signIn(c, "ann", "correct horse battery") // fails the test unless 303

	resp, _ := h.get(c, "/orders/1")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /orders/1: %d", resp.StatusCode)
	}
	got := h.up.last(t).Header
	// Left out: the memo (value cap), the escaped title (its JSON form),
	// and of the four 2,500-byte lines (2,516 or 2,515 bytes as JSON with
	// their names), the two longest, by name, until the rest fit 7,168 bytes.
	for _, col := range []string{"Description", "Jobtitle", "Address1-Line1", "Address1-Line2"} {
		if v := got.Get("X-Current-User-Contact-" + col); v != "" {
			t.Errorf("X-Current-User-Contact-%s is sent (%d bytes)", col, len(v))
		}
	}
	for col, want := range map[string]string{"Fullname": "Ann Lee", "Nickname": strings.Repeat("n", 1500),
		"Address1-Line3": line, "Address1-City": line} {
		if v := got.Get("X-Current-User-Contact-" + col); v != want {
			t.Errorf("X-Current-User-Contact-%s = %.40q (%d bytes), want %.40q", col, v, len(v), want)
		}
	}
	claims := h.verifyToken(got.Get("X-Current-User"), h.up.srv.URL)
	cols, _ := claims["contact"].(map[string]any)["columns"].(map[string]any)
	var names []string
	for k := range cols {
		names = append(names, k)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "address1_city,address1_line3,fullname,nickname" {
		t.Errorf("token columns: %v", names)
	}

	// Roles: split on commas, percent-decode each: the token's roles.
	var roles []string
	for _, part := range strings.Split(got.Get("X-Current-User-Roles"), ",") {
		r, err := url.PathUnescape(part)
		if err != nil {
			t.Fatalf("roles header %q: %v", got.Get("X-Current-User-Roles"), err)
		}
		roles = append(roles, r)
	}
	var tokenRoles []string
	for _, r := range claims["roles"].([]any) {
		tokenRoles = append(tokenRoles, r.(string))
	}
	slices.Sort(roles)
	slices.Sort(tokenRoles)
	if !slices.Equal(roles, tokenRoles) || !slices.Contains(roles, "Partners, EU") || !slices.Contains(roles, "100%") {
		t.Errorf("roles header %q decodes to %q; token roles %q", got.Get("X-Current-User-Roles"), roles, tokenRoles)
	}

	// One warning at sign-in, naming the columns and sizes, not the values.
	l := logs.String()
	if n := strings.Count(l, "contact columns left out of the session"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%.2000s", n, l)
	}
	for _, want := range []string{`"description":100002`, `"jobtitle":7202`, `"address1_line1":2516`, `"address1_line2":2516`} {
		if !strings.Contains(l, want) {
			t.Errorf("warning lacks %s:\n%.2000s", want, l)
		}
	}
	if strings.Contains(l, "mmmmmmmmmm") || strings.Contains(l, "llllllllll") {
		t.Error("the warning shows column values")
	}
}
