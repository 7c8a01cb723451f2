package proxy_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// verifyReq is one forward-auth subrequest: the form an ingress sends.
type verifyReq struct {
	path string   // the verify request's own path (Envoy appends the original)
	hdr  []string // header name, value pairs
	host string   // the verify request's Host; empty: the gateway's
	meth string   // the verify request's method; empty: GET
}

func (h *harness) verify(c *http.Client, v verifyReq) *http.Response {
	h.t.Helper()
	m := v.meth
	if m == "" {
		m = "GET"
	}
	req, _ := http.NewRequest(m, h.url(v.path), nil)
	for i := 0; i+1 < len(v.hdr); i += 2 {
		req.Header.Add(v.hdr[i], v.hdr[i+1])
	}
	if v.host != "" {
		req.Host = v.host
	}
	resp, _ := h.do(c, req)
	return resp
}

// The three forms of one original request, http://<gateway host><uri>.
func nginxForm(host, method, uri string) verifyReq {
	return verifyReq{path: "/.auth/verify", hdr: []string{"X-Original-URL", "http://" + host + uri, "X-Original-Method", method}}
}

func traefikForm(host, method, uri string) verifyReq {
	return verifyReq{path: "/.auth/verify", hdr: []string{"X-Forwarded-Method", method, "X-Forwarded-Proto", "http",
		"X-Forwarded-Host", host, "X-Forwarded-Uri", uri}}
}

func envoyForm(host, method, uri string) verifyReq {
	return verifyReq{path: "/.auth/verify" + uri, meth: method, host: host, hdr: []string{"X-Forwarded-Proto", "http"}}
}

var verifyForms = []struct {
	name string
	form func(host, method, uri string) verifyReq
}{{"nginx", nginxForm}, {"traefik", traefikForm}, {"envoy", envoyForm}}

// TestVerifyForms: each ingress form of /.auth/verify answers like the
// proxied pipeline would decide: signed out 401 with the sign-in page as
// Location, signed in 200 with the identity as response headers, forbidden
// and unmatched 403, a forced password change 403 with the change page.
func TestVerifyForms(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: trustLoopback})
	h.createUser("ann", "ann@example.test", "correct horse battery")
	h.createUser("jon", "jon@example.test", "correct horse battery")
	host := h.gw.Listener.Addr().String()
	anon := h.browser()
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	if _, err := h.svc.Accounts.ForcePasswordChange(context.Background(), "jon", "admin"); err != nil {
		t.Fatal(err)
	}
	jon := h.browser()
	h.signIn(jon, "jon", "correct horse battery")

	for _, f := range verifyForms {
		t.Run(f.name, func(t *testing.T) {
			cases := []struct {
				name     string
				c        *http.Client
				method   string
				uri      string
				status   int
				location string
				identity bool
			}{
				{"signed out, protected", anon, "GET", "/account/x?y=1", 401, "http://" + host + "/.auth/signin?redirect_url=" + url.QueryEscape("/account/x?y=1"), false},
				{"signed out, public", anon, "GET", "/public/a", 200, "", false},
				{"signed in, protected", ann, "GET", "/account/x", 200, "", true},
				{"signed in, POST", ann, "POST", "/api/things", 200, "", true},
				{"signed in, public", ann, "GET", "/public/a", 200, "", true},
				{"forbidden by role", ann, "GET", "/admin/x", 403, "", false},
				{"deny route", ann, "GET", "/closed/x", 403, "", false},
				{"unmatched route", ann, "GET", "/nothing/here", 403, "", false},
				{"dot segments canonicalised", ann, "GET", "/public/../admin/x", 403, "", false},
				{"encoded dot segments canonicalised", ann, "GET", "/public/%2e%2e/admin/x", 403, "", false},
				{"gateway paths are not decided", ann, "GET", "/.auth/me", 403, "", false},
				{"refused method", ann, "TRACE", "/public/a", 405, "", false},
				{"forced password change", jon, "GET", "/account/x", 403, "http://" + host + "/.auth/password?redirect_url=" + url.QueryEscape("/account/x"), false},
			}
			for _, tc := range cases {
				if f.name == "envoy" && strings.Contains(tc.uri, "..") {
					continue // the verify request's own path is canonicalised first (TestVerifyEnvoyTraversal)
				}
				v := f.form(host, tc.method, tc.uri)
				// Spoofed identity headers never come back.
				v.hdr = append(v.hdr, "X-Current-User", "forged", "X-Current-User-Roles", "admin", "X_Current_User_Id", "forged")
				resp := h.verify(tc.c, v)
				if resp.StatusCode != tc.status {
					t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
					continue
				}
				if got := resp.Header.Get("Location"); got != tc.location {
					t.Errorf("%s: Location %q, want %q", tc.name, got, tc.location)
				}
				if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("%s: Cache-Control %q", tc.name, cc)
				}
				tok := resp.Header.Get("X-Current-User")
				if tok == "forged" || resp.Header.Get("X-Current-User-Roles") == "admin" || resp.Header.Get("X-Current-User-Id") == "forged" {
					t.Errorf("%s: a spoofed identity header came back: %v", tc.name, resp.Header)
				}
				if !tc.identity {
					if tok != "" {
						t.Errorf("%s: identity headers on a %d", tc.name, resp.StatusCode)
					}
					continue
				}
				if tok == "" {
					t.Errorf("%s: no X-Current-User", tc.name)
					continue
				}
				claims := h.verifyToken(tok, strings.ToLower(h.up.srv.URL))
				if claims["email"] != "ann@example.test" || resp.Header.Get("X-Current-User-Email") != "ann@example.test" ||
					resp.Header.Get("X-Current-User-Id") == "" {
					t.Errorf("%s: identity %v %v", tc.name, claims, resp.Header)
				}
			}
		})
	}
	if h.up.count() != 0 {
		t.Errorf("verify proxied %d requests to the upstream", h.up.count())
	}
}

// TestVerifyRefusals: a verify request without a readable original request
// is never 2xx: missing or repeated forwarding headers, a bad X-Original-URL,
// encoded slashes, and any request from a peer that is not a trusted proxy,
// however well forged.
func TestVerifyRefusals(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: trustLoopback})
	h.createUser("ann", "ann@example.test", "correct horse battery")
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	host := h.gw.Listener.Addr().String()
	cases := []struct {
		name   string
		v      verifyReq
		status int
	}{
		{"no original request", verifyReq{path: "/.auth/verify"}, 400},
		{"traefik without method", verifyReq{path: "/.auth/verify", hdr: []string{"X-Forwarded-Host", host, "X-Forwarded-Uri", "/account/x"}}, 400},
		{"traefik without host", verifyReq{path: "/.auth/verify", hdr: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/account/x"}}, 400},
		{"repeated X-Forwarded-Uri", verifyReq{path: "/.auth/verify", hdr: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", host,
			"X-Forwarded-Uri", "/public/a", "X-Forwarded-Uri", "/account/x"}}, 400},
		{"relative X-Original-URL", verifyReq{path: "/.auth/verify", hdr: []string{"X-Original-URL", "/account/x", "X-Original-Method", "GET"}}, 400},
		{"X-Original-URL with user info", verifyReq{path: "/.auth/verify", hdr: []string{"X-Original-URL", "http://u:p@" + host + "/account/x", "X-Original-Method", "GET"}}, 400},
		{"X-Original-URL without method", verifyReq{path: "/.auth/verify", hdr: []string{"X-Original-URL", "http://" + host + "/account/x"}}, 400},
		{"ftp scheme", verifyReq{path: "/.auth/verify", hdr: []string{"X-Original-URL", "ftp://" + host + "/account/x", "X-Original-Method", "GET"}}, 400},
		{"encoded slash (nginx)", nginxForm(host, "GET", "/public%2F..%2Fadmin/x"), 400},
		{"encoded slash (traefik)", traefikForm(host, "GET", "/public%2F..%2Fadmin/x"), 400},
		{"encoded slash (envoy)", envoyForm(host, "GET", "/public%2F..%2Fadmin/x"), 400},
		{"bad host", traefikForm("exa mple", "GET", "/public/a"), 400},
		{"underscored spellings", verifyReq{path: "/.auth/verify", hdr: []string{"X_Original_URL", "http://" + host + "/public/a", "X_Original_Method", "GET"}}, 400},
	}
	for _, tc := range cases {
		if resp := h.verify(ann, tc.v); resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}

	// The same forged forms from a peer that is not a trusted proxy.
	u := newHarness(t, harnessConfig{})
	u.createUser("ann", "ann@example.test", "correct horse battery")
	c := u.browser()
	u.signIn(c, "ann", "correct horse battery")
	uhost := u.gw.Listener.Addr().String()
	for _, f := range verifyForms {
		for _, uri := range []string{"/public/a", "/account/x"} {
			resp := u.verify(c, f.form(uhost, "GET", uri))
			if resp.StatusCode != 400 || resp.Header.Get("X-Current-User") != "" {
				t.Errorf("untrusted %s %s: status %d, identity %q", f.name, uri, resp.StatusCode, resp.Header.Get("X-Current-User"))
			}
		}
	}
}

// TestVerifyEnvoyTraversal: Envoy appends the original path to the verify
// path, and the whole path is canonicalised first, like every request: dot
// segments that climb out of the verify path reach the proxied pipeline,
// which decides on them as on any request (here: sign in first).
func TestVerifyEnvoyTraversal(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: trustLoopback})
	resp := h.verify(h.browser(), verifyReq{path: "/.auth/verify/../../account/x"})
	if resp.StatusCode == 200 {
		t.Fatalf("status 200 for a path that climbs out of the verify path")
	}
	resp = h.verify(h.browser(), verifyReq{path: "/.auth/verify/public/../account/x"})
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Location"), "/.auth/signin?redirect_url=%2Faccount%2Fx") {
		t.Fatalf("envoy dot segments: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestVerifyCrossOriginAndMetrics: the original request's Origin is checked
// as the proxy checks it (another site's POST is refused), and verify
// answers are counted under the route label "verify".
func TestVerifyCrossOriginAndMetrics(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: trustLoopback})
	h.createUser("ann", "ann@example.test", "correct horse battery")
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	host := h.gw.Listener.Addr().String()
	v := traefikForm(host, "POST", "/api/things")
	v.hdr = append(v.hdr, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if resp := h.verify(ann, v); resp.StatusCode != 403 || resp.Header.Get("X-Current-User") != "" {
		t.Fatalf("cross-origin POST: %d %q", resp.StatusCode, resp.Header.Get("X-Current-User"))
	}
	if resp := h.verify(ann, traefikForm(host, "GET", "/account/x")); resp.StatusCode != 200 {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			if m.Counter != nil {
				got[key] = m.Counter.GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"crmgate_http_requests_total,code=403,route=verify":              1,
		"crmgate_http_requests_total,code=200,route=verify":              1,
		"crmgate_policy_decisions_total,decision=allow,route=verify":     1,
		"crmgate_policy_decisions_total,decision=forbidden,route=verify": 1,
		"crmgate_policy_decisions_total,decision=allow,route=account":    1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}

// TestVerifyBrowserRedirect: Traefik and Envoy pass the gateway's answer
// to the browser unchanged, so a signed-out page load in their forms gets
// 302 Found to the sign-in page; the nginx form keeps the 401 its
// error_page turns into a redirect, and fetches, API calls and unsafe
// methods get 401 with Location in every form.
func TestVerifyBrowserRedirect(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: trustLoopback})
	host := h.gw.Listener.Addr().String()
	anon := h.browser()
	signin := "http://" + host + "/.auth/signin?redirect_url=" + url.QueryEscape("/account/x?y=1")
	cases := []struct {
		name    string
		method  string
		hdr     []string
		nginx   int // the status in the nginx form
		proxied int // the status in the Traefik and Envoy forms
	}{
		{"page load (Sec-Fetch-Mode)", "GET", []string{"Sec-Fetch-Mode", "navigate", "Accept", "*/*"}, 401, 302},
		{"page load (Accept only)", "GET", []string{"Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}, 401, 302},
		{"HEAD page load", "HEAD", []string{"Accept", "TEXT/HTML"}, 401, 302},
		{"fetch asking for HTML", "GET", []string{"Sec-Fetch-Mode", "cors", "Accept", "text/html"}, 401, 401},
		{"API call", "GET", []string{"Accept", "application/json"}, 401, 401},
		{"no Accept", "GET", nil, 401, 401},
		{"form POST", "POST", []string{"Sec-Fetch-Mode", "navigate", "Accept", "text/html"}, 401, 401},
	}
	for _, f := range verifyForms {
		for _, tc := range cases {
			v := f.form(host, tc.method, "/account/x?y=1")
			v.hdr = append(v.hdr, tc.hdr...)
			resp := h.verify(anon, v)
			want := tc.proxied
			if f.name == "nginx" {
				want = tc.nginx
			}
			if resp.StatusCode != want || resp.Header.Get("Location") != signin {
				t.Errorf("%s, %s: %d %q, want %d %q", f.name, tc.name, resp.StatusCode, resp.Header.Get("Location"), want, signin)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("%s, %s: Cache-Control %q", f.name, tc.name, cc)
			}
		}
	}
	if h.up.count() != 0 {
		t.Errorf("verify proxied %d requests to the upstream", h.up.count())
	}
}
