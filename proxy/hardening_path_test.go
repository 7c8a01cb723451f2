package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

// pathPolicy has a mid-path wildcard: the route must never match a path an
// upstream would read as shorter.
const pathPolicy = `upstreams:
  - name: app
    url: %s
routes:
  - name: files
    paths: ["/files/*/public"]
    access: public
  - name: home
    paths: ["/", "/public/**"]
    access: public
  - name: admin
    paths: ["/admin/**"]
    access: authenticated
`

// hostilePaths are request targets that must be refused with 400 and never
// reach the upstream. They are written to the connection as they are.
var hostilePaths = []string{
	// Query and fragment delimiters hidden in a segment.
	"/files/x%3F/public", "/files/x%3f/public", "/files/x%23/public", "/files/x%23/public?y=1",
	"/public/a%3Fb", "/public/a%3fb", "/public/a%23b", "/public/%23", "/public/%3F", "/public/a#b",
	"/files/x%253F/public", "/files/x%2523/public",
	// Dot segments above the root, raw and encoded.
	"/..", "/../admin", "/public/../../admin", "/%2e%2e/admin", "/%2E%2E/admin", "/.%2e/admin", "/%2e./admin",
	// Dot and space segments some platforms read as dots.
	"/public/.../admin", "/public/..%20/admin", "/public/.%20./admin", "/public/%20/admin",
	// Encoded slashes and backslashes.
	"/public%2f..%2fadmin", "/public%2F..%2Fadmin", "/public/..%2fadmin", "/public/..%2Fadmin",
	"/public%5c..%5cadmin", "/public%5C..%5Cadmin", `/public\..\admin`, `/public/..\admin`,
	// Path parameters.
	"/admin;jsessionid=x", "/public/..;/admin", "/public;/../admin", "/admin%3b", "/admin%3B", "/public/%3b/../admin",
	// Control characters.
	"/public/%00", "/public/a%00.html", "/public/%0d%0aSet-Cookie:x=y", "/public/%0a", "/public/%09", "/public/%7f",
	"/public/%C2%85", "/public/%c2%9f",
	// Malformed and double encoding.
	"/public/%", "/public/%4", "/public/%zz", "/public/%u002e%u002e/admin", "/%252e%252e/admin", "/public%252fadmin",
	"/public/%25%32%65", "/public/%252E", "/public/%255c",
	// Invalid UTF-8 and overlong forms.
	"/%c0%ae%c0%ae/admin", "/public/%c0%af", "/public/%e0%80%af", "/public/%f0%80%80%af", "/public/%80",
	"/public/%e2%88", "/public/%ed%a0%80", "/public/%ff",
	// Not a path at all.
	"*", "admin", "public/x",
}

func TestHardeningHostilePaths(t *testing.T) {
	h := newHarness(t, harnessConfig{policy: pathPolicy})
	for _, target := range hostilePaths {
		before := h.up.count()
		resp, body := rawResponse(t, h, rawGet(h, "GET", target))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %q: status %d, want 400\n%s", target, resp.StatusCode, body)
		}
		if h.up.count() != before {
			t.Errorf("GET %q reached the upstream as %q", target, h.up.last(t).Path)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
			t.Errorf("GET %q set cookies: %q", target, sc)
		}
	}
	// Also under the gateway's own prefix.
	for _, target := range []string{"/.auth/signin%3F", "/.auth/%23/signin", "/.auth/..%2fsignin", "/.auth/signin;x"} {
		if resp, _ := rawResponse(t, h, rawGet(h, "GET", target)); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %q: status %d, want 400", target, resp.StatusCode)
		}
	}
}

func TestHardeningPathsNormalised(t *testing.T) {
	// What is not ambiguous is cleaned, then decided on and proxied in its
	// canonical form.
	h := newHarness(t, harnessConfig{policy: pathPolicy})
	for _, tt := range []struct{ target, want string }{
		{"//public//x", "/public/x"},
		{"/public/./x", "/public/x"},
		{"/admin/../public/x", "/public/x"},
		{"/public/%2e/x", "/public/x"},
		{"/public/%2E%2e/public/x", "/public/x"},
		{"/files/a/public", "/files/a/public"},
		{"/files/%C3%BCber/public", "/files/über/public"},
		{"/public/a%20b", "/public/a b"},
		{"/public/100%25", "/public/100%"},
		{"/public/x?a=%3F#frag", "/public/x"},
	} {
		resp, body := rawResponse(t, h, rawGet(h, "GET", tt.target))
		if resp.StatusCode != 200 {
			t.Errorf("GET %q: status %d\n%s", tt.target, resp.StatusCode, body)
			continue
		}
		if got := h.up.last(t).Path; got != tt.want {
			t.Errorf("GET %q proxied as %q, want %q", tt.target, got, tt.want)
		}
	}
	// A path the canonicaliser moves onto a protected route is decided there.
	if resp, _ := rawResponse(t, h, rawGet(h, "GET", "/public/../admin/x")); resp.StatusCode != http.StatusFound {
		t.Errorf("/public/../admin/x: status %d, want the sign-in redirect of /admin", resp.StatusCode)
	}
}

func TestHardeningRefusedMethods(t *testing.T) {
	h := newHarness(t, harnessConfig{policy: pathPolicy})
	for _, tt := range []struct{ method, target string }{
		{"TRACE", "/public/x"}, {"TRACE", "/"}, {"TRACE", "/admin/x"}, {"TRACE", "/.auth/signin"}, {"TRACE", "/.auth/jwks.json"},
		{"trace", "/public/x"}, {"Trace", "/public/x"}, {"TRACK", "/public/x"}, {"track", "/.auth/signin"},
		{"CONNECT", h.gw.Listener.Addr().String()}, {"CONNECT", "evil.example:443"}, {"CONNECT", "/public/x"},
		{"connect", "/public/x"}, {"TRACE", "/public/%3F"}, {"TRACE", "*"},
	} {
		before := h.up.count()
		resp, body := rawResponse(t, h, rawGet(h, tt.method, tt.target, "Cookie: crmgate_session=x", "Accept: application/json"))
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d, want 405\n%s", tt.method, tt.target, resp.StatusCode, body)
		}
		if h.up.count() != before {
			t.Errorf("%s %s reached the upstream", tt.method, tt.target)
		}
		if strings.Contains(body, "crmgate_session") {
			t.Errorf("%s %s echoed the request: %s", tt.method, tt.target, body)
		}
		if !strings.Contains(body, "method_not_allowed") || resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: want a method_not_allowed error with Allow, got %q %s", tt.method, tt.target, resp.Header.Get("Allow"), body)
		}
	}
}
