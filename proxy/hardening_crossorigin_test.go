package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

const crossOriginPolicy = `upstreams:
  - name: app
    url: %s
routes:
  - name: payment-return
    paths: ["/pay/return", "/saml/acs"]
    access: public
    cross_origin: allow
  - name: home
    paths: ["/", "/public/**"]
    access: public
  - name: account
    paths: ["/account/**"]
    access: authenticated
`

// crossOriginHeaders are ways a browser tells that a request came from
// another site.
var crossOriginHeaders = [][]string{
	{"Sec-Fetch-Site", "cross-site"},
	{"Sec-Fetch-Site", "same-site"},
	{"Sec-Fetch-Site", "cross-site", "Origin", "https://psp.example"},
	{"Origin", "https://psp.example"},
	{"Origin", "null"},
	{"Origin", "http://127.0.0.1.evil.example"},
	{"Origin", "https://idp.example:8443"},
}

func TestHardeningCrossOriginOptOut(t *testing.T) {
	h := newHarness(t, harnessConfig{policy: crossOriginPolicy})
	h.createUser("alice", "alice@example.test", "correct horse battery")
	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")

	post := func(path string, hdr []string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", h.url(path), strings.NewReader("status=paid"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return h.do(c, req)
	}
	for _, hdr := range crossOriginHeaders {
		for _, p := range []string{"/pay/return", "/saml/acs"} {
			resp, body := post(p, hdr)
			if resp.StatusCode != 200 {
				t.Errorf("cross-origin POST %s %v: status %d, want it proxied\n%s", p, hdr, resp.StatusCode, body)
				continue
			}
			got := h.up.last(t).Header
			for k := range got {
				if strings.HasPrefix(strings.ToLower(k), "x-current-user") {
					t.Errorf("cross-origin POST %s %v carried the user's identity: %s", p, hdr, k)
				}
			}
		}
		// Routes that did not opt out keep refusing.
		for _, p := range []string{"/public/x", "/", "/account/x", "/nowhere", "/pay/return/x"} {
			before := h.up.count()
			if resp, _ := post(p, hdr); resp.StatusCode != http.StatusForbidden {
				t.Errorf("cross-origin POST %s %v: status %d, want 403", p, hdr, resp.StatusCode)
			}
			if h.up.count() != before {
				t.Errorf("cross-origin POST %s %v reached the upstream", p, hdr)
			}
		}
	}
	// The same route from the gateway's own origin carries the identity.
	resp, _ := post("/pay/return", []string{"Sec-Fetch-Site", "same-origin", "Origin", h.gw.URL})
	if resp.StatusCode != 200 || h.up.last(t).Header.Get("X-Current-User") == "" {
		t.Errorf("same-origin POST /pay/return: status %d, identity %q", resp.StatusCode, h.up.last(t).Header.Get("X-Current-User-Id"))
	}
	// Gateway pages never opt out.
	resp, _ = post("/.auth/signout", []string{"Sec-Fetch-Site", "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST /.auth/signout: status %d, want 403", resp.StatusCode)
	}
}
