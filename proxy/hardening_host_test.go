package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// hostPolicy serves two named hosts; a route names a third that no upstream
// serves.
const hostPolicy = `upstreams:
  - name: app
    url: %s
    hosts: [app.example.test, "*.tenants.test"]
routes:
  - name: docs
    hosts: [docs.example.test]
    paths: ["/**"]
    access: public
  - name: home
    paths: ["/", "/public/**"]
    access: public
`

// rawHost builds a raw request with the given Host header (or none).
func rawHost(method, target, host string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	if host != "" {
		fmt.Fprintf(&b, "Host: %s\r\n", host)
	}
	b.WriteString("Connection: close\r\n")
	for _, l := range headers {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// foreignHosts are Host values the gateway does not serve.
var foreignHosts = []string{
	"evil.example", "evil.example:80", "EVIL.example", "127.0.0.2", "127.0.0.1.evil.example", "[::1]", "localhost",
	"app.example.test.evil.example", "example.test", "tenants.test", "a.b.tenants.test", "xn--80ak6aa92e.com",
	"app-example.test", "0x7f.0.0.1", "2130706433",
}

func TestHardeningGatewayPagesOnForeignHosts(t *testing.T) {
	h := newHarness(t, harnessConfig{policy: hostPolicy})
	gwHost := h.gw.Listener.Addr().String()
	pages := []string{"/.auth/signin", "/.auth/jwks.json", "/.auth/me", "/.auth/signout", "/.auth/api/users", "/.auth/nothing", "/.auth"}
	for _, host := range foreignHosts {
		for _, p := range pages {
			resp, body := rawResponse(t, h, rawHost("GET", p, host))
			if resp.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("GET %s on Host %q: status %d, want 421\n%s", p, host, resp.StatusCode, body)
			}
			if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
				t.Errorf("GET %s on Host %q set cookies: %q", p, host, sc)
			}
		}
		// A POST too: no form is read, no cookie is set.
		resp, _ := rawResponse(t, h, rawHost("POST", "/.auth/signin", host, "Content-Type: application/x-www-form-urlencoded", "Content-Length: 0"))
		if resp.StatusCode != http.StatusMisdirectedRequest || len(resp.Header.Values("Set-Cookie")) > 0 {
			t.Errorf("POST /.auth/signin on Host %q: %d %q", host, resp.StatusCode, resp.Header.Values("Set-Cookie"))
		}
	}
	// An absolute-form target names the host too; it wins over the Host
	// header (RFC 9112 section 3.2.2).
	resp, _ := rawResponse(t, h, rawHost("GET", "http://evil.example/.auth/signin", gwHost))
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("absolute-form evil.example target: status %d, want 421", resp.StatusCode)
	}

	// The hosts the gateway serves: its public URL's host (any port, any
	// case, a trailing dot) and every host the policy names.
	for _, host := range []string{gwHost, "127.0.0.1", "127.0.0.1:1", "app.example.test", "APP.example.test:8443",
		"app.example.test.", "a.tenants.test", "docs.example.test"} {
		resp, body := rawResponse(t, h, rawHost("GET", "/.auth/signin", host))
		if resp.StatusCode != 200 {
			t.Errorf("GET /.auth/signin on Host %q: status %d\n%s", host, resp.StatusCode, body)
		}
	}
	// No Host at all is a bad request (HTTP/1.1 requires one).
	if resp, _ := rawResponse(t, h, rawHost("GET", "/.auth/signin", "")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no Host: status %d, want 400", resp.StatusCode)
	}
}

func TestHardeningProxiedForeignHosts(t *testing.T) {
	h := newHarness(t, harnessConfig{policy: hostPolicy})
	for _, host := range append(append([]string{}, foreignHosts...), "docs.example.test") { // docs: a route names it, no upstream serves it
		before := h.up.count()
		resp, body := rawResponse(t, h, rawHost("GET", "/public/x", host, "Cookie: crmgate_session=stale"))
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET /public/x on Host %q: status %d, want 421\n%s", host, resp.StatusCode, body)
		}
		if h.up.count() != before {
			t.Errorf("Host %q reached the upstream", host)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
			t.Errorf("Host %q set cookies: %q", host, sc)
		}
	}
	for _, host := range []string{"app.example.test", "x.tenants.test", "APP.EXAMPLE.TEST:80"} {
		resp, body := rawResponse(t, h, rawHost("GET", "/public/x", host))
		if resp.StatusCode != 200 {
			t.Errorf("GET /public/x on Host %q: status %d\n%s", host, resp.StatusCode, body)
		}
	}
}

func TestHardeningAnyHostUpstream(t *testing.T) {
	// An upstream without hosts serves every host, as documented, but that
	// does not make the gateway's pages answer on every host.
	h := newHarness(t, harnessConfig{})
	for _, host := range foreignHosts {
		if resp, _ := rawResponse(t, h, rawHost("GET", "/public/x", host)); resp.StatusCode != 200 {
			t.Errorf("GET /public/x on Host %q: status %d, want 200 (upstream without hosts)", host, resp.StatusCode)
		}
		if resp, _ := rawResponse(t, h, rawHost("GET", "/.auth/signin", host)); resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET /.auth/signin on Host %q: status %d, want 421", host, resp.StatusCode)
		}
	}
}
