package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/proxy"
)

// rawResponse sends raw as it is on a new connection to the gateway and
// returns the response with its body read, so tests can send what Go's
// client would normalise (underscored names, odd cases, raw paths).
func rawResponse(t *testing.T, h *harness, raw string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", h.gw.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", strings.SplitN(raw, "\r\n", 2)[0], err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// rawGet builds a raw HTTP/1.1 request line and headers for the gateway.
func rawGet(h *harness, method, target string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, h.gw.Listener.Addr().String())
	for _, line := range headers {
		fmt.Fprintf(&b, "%s\r\n", line)
	}
	b.WriteString("\r\n")
	return b.String()
}

// fold is how CGI, PHP and others read a header name: lower case, "_" as "-".
func fold(name string) string { return strings.ReplaceAll(strings.ToLower(name), "_", "-") }

// hasFolded reports whether hdr holds a header that folds to name.
func hasFolded(hdr http.Header, name string) (string, bool) {
	for k := range hdr {
		if fold(k) == fold(name) {
			return k, true
		}
	}
	return "", false
}

// forwardingHeaders are what only a trusted proxy may pass upstream.
var forwardingHeaders = []string{
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Server", "X-Forwarded-Uri",
	"X-Forwarded-Method", "X-Forwarded-Scheme", "X-Forwarded-Path", "X-ForwardedFor", "x-forwarded-anything",
	"X-FORWARDED-PREFIX", "X-Real-IP", "x-real-ip", "True-Client-IP", "X-Client-IP", "Client-IP", "X-Client-Addr",
	"CF-Connecting-IP", "CF-Connecting-IPv6", "CF-Pseudo-IPv4", "Fastly-Client-IP", "Akamai-Client-IP",
	"X-Cluster-Client-IP", "X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "X-ProxyUser-Ip",
	"X-Envoy-External-Address", "X-Azure-ClientIP", "X-Azure-SocketIP", "X-AppEngine-User-IP", "X-Host", "X-Original-Host",
}

// alwaysStripped never reach an upstream, whoever sent them: URL and method
// overrides, httpoxy's Proxy, the gateway's identity headers and other
// gateways' identity headers.
var alwaysStripped = []string{
	"X-Original-URL", "X-Original-URI", "X-Original-Path", "X-Original-Method", "X-Rewrite-URL", "X-Rewrite-URI",
	"X-Override-URL", "X-Override-URI", "X-Request-URI", "X-HTTP-DestinationURL", "X-Proxy-URL", "X-Envoy-Original-Path",
	"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-HTTP-Command", "x-original-url",
	"X-ORIGINAL-URL", "Proxy",
	"X-Current-User", "X-Current-User-Id", "x-current-user-email", "X-CURRENT-USER-ROLES", "X-Current-User-Contact-Id",
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
	"X-Forwarded-Access-Token", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
	"X-Auth-Request-Access-Token", "X-MS-Client-Principal", "X-MS-Client-Principal-Name", "X-MS-Client-Principal-Id",
	"X-MS-Client-Principal-Idp", "X-MS-Token-AAD-Access-Token", "Remote-User", "Remote-Email", "Remote-Name",
	"Remote-Groups", "X-Remote-User", "X-WEBAUTH-USER",
}

// underscored fold onto headers the gateway sets, strips or decides on; they
// are removed even when UnderscoresInHeaders keeps the others.
var underscored = []string{
	"X_Forwarded_For", "X-Forwarded_For", "x_forwarded_for", "X_FORWARDED_HOST", "X_Forwarded_Proto",
	"X_Forwarded_Prefix", "X_Real_IP", "x_real_ip", "True_Client_IP", "CF_Connecting_IP", "X_Original_URL",
	"X_Rewrite_URL", "X-Original_URI", "X_HTTP_Method_Override", "X_Method_Override", "X_Current_User",
	"X_Current_User_Id", "x_current_user_email", "X-Current_User-Roles", "X_Forwarded_User", "X_Auth_Request_Email",
	"X_MS_Client_Principal_Name", "Remote_User", "X_Request_Id", "X_Requested_With", "Sec_Fetch_Site",
	"Content_Length", "Transfer_Encoding", "Proxy_Authorization",
}

// gatewaySet are the headers the gateway writes itself; their values are
// checked on their own.
var gatewaySet = map[string]bool{"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true, "x-request-id": true}

// leaked returns the header of got that carries what the client sent as
// name: for an underscored name, a header still spelled with "_"; for
// others, any spelling, except the headers the gateway writes itself.
func leaked(got http.Header, name string) (string, bool) {
	for k := range got {
		if fold(k) != fold(name) {
			continue
		}
		if strings.Contains(name, "_") {
			if strings.Contains(k, "_") {
				return k, true
			}
			continue
		}
		if !gatewaySet[fold(k)] {
			return k, true
		}
	}
	return "", false
}

func hostileHeaderLines(names []string, value string) []string {
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = n + ": " + value
	}
	return lines
}

func TestHardeningForwardingHeadersUntrustedPeer(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	var lines []string
	lines = append(lines, hostileHeaderLines(forwardingHeaders, "6.6.6.6")...)
	lines = append(lines, hostileHeaderLines(alwaysStripped, "/admin")...)
	lines = append(lines, hostileHeaderLines(underscored, "6.6.6.6")...)
	lines = append(lines, "X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 7.7.7.7", "x-forwarded-host: evil.example",
		"X-Forwarded-Proto: https", "Forwarded: for=6.6.6.6;host=evil.example;proto=https",
		"X_Custom_Header: kept?", "X-Custom-Header: kept", "Accept-Language: de")
	resp, body := rawResponse(t, h, rawGet(h, "GET", "/public/x", lines...))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := h.up.last(t).Header
	for _, name := range append(append(append([]string{}, forwardingHeaders...), alwaysStripped...), underscored...) {
		if k, ok := leaked(got, name); ok {
			t.Errorf("%s reached the upstream as %s: %q", name, k, got[k])
		}
	}
	if _, ok := hasFolded(got, "Forwarded"); ok {
		t.Errorf("Forwarded reached the upstream: %q", got.Get("Forwarded"))
	}
	if _, ok := got["X_custom_header"]; ok {
		t.Error("an underscored header name reached the upstream by default")
	}
	if got.Get("X-Custom-Header") != "kept" || got.Get("Accept-Language") != "de" {
		t.Errorf("ordinary headers lost: %v", got)
	}
	if xff := got.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the peer only", xff)
	}
	if xfh := got.Values("X-Forwarded-Host"); len(xfh) != 1 || xfh[0] != h.gw.Listener.Addr().String() {
		t.Errorf("X-Forwarded-Host = %q, want the request's Host", xfh)
	}
	if xfp := got.Values("X-Forwarded-Proto"); len(xfp) != 1 || xfp[0] != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want the gateway's http", xfp)
	}
}

func TestHardeningForwardingHeadersEachAlone(t *testing.T) {
	// Each header alone, in every spelling, so that no other header's
	// presence hides a miss.
	h := newHarness(t, harnessConfig{})
	for _, name := range append(append(append([]string{}, forwardingHeaders...), alwaysStripped...), underscored...) {
		for _, spelling := range []string{name, strings.ToLower(name), strings.ToUpper(name), strings.ReplaceAll(name, "-", "_")} {
			resp, body := rawResponse(t, h, rawGet(h, "GET", "/public/x", spelling+": 6.6.6.6"))
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d: %s", spelling, resp.StatusCode, body)
			}
			got := h.up.last(t).Header
			if k, ok := leaked(got, spelling); ok {
				t.Errorf("%s reached the upstream as %s: %q", spelling, k, got[k])
			}
			for k, v := range got {
				if gatewaySet[fold(k)] && strings.Contains(strings.Join(v, ","), "6.6.6.6") {
					t.Errorf("%s changed the gateway's own %s: %q", spelling, k, v)
				}
			}
		}
	}
}

func TestHardeningForwardingHeadersTrustedPeer(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: func(o *proxy.Options) { o.TrustedProxies = []string{"127.0.0.1/32"} }})
	var lines []string
	lines = append(lines, hostileHeaderLines(forwardingHeaders, "203.0.113.9")...)
	lines = append(lines, hostileHeaderLines(alwaysStripped, "/admin")...)
	lines = append(lines, hostileHeaderLines(underscored, "6.6.6.6")...)
	lines = append(lines, "X-Forwarded-For: 203.0.113.9", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https",
		"Forwarded: for=203.0.113.9")
	resp, body := rawResponse(t, h, rawGet(h, "GET", "/public/x", lines...))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := h.up.last(t).Header
	for _, name := range forwardingHeaders {
		if k, ok := hasFolded(got, name); !ok || got[k][0] != "203.0.113.9" {
			t.Errorf("%s from a trusted proxy did not reach the upstream: %v", name, got[k])
		}
	}
	for _, name := range append(append([]string{}, alwaysStripped...), underscored...) {
		if k, ok := leaked(got, name); ok {
			t.Errorf("%s reached the upstream from a trusted proxy as %s: %q", name, k, got[k])
		}
	}
	if xff := got.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the proxy's chain and the peer", xff)
	}
	if xfp := got.Get("X-Forwarded-Proto"); xfp != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want the trusted proxy's https", xfp)
	}
	if xfh := got.Values("X-Forwarded-Host"); len(xfh) != 1 || xfh[0] != h.gw.Listener.Addr().String() {
		t.Errorf("X-Forwarded-Host = %q, want the Host the policy decided on", xfh)
	}
	if f := got.Get("Forwarded"); f != "" {
		t.Errorf("Forwarded = %q; the gateway does not extend it, so it never goes upstream", f)
	}
	if rid := got.Values("X-Request-Id"); len(rid) != 1 || rid[0] != resp.Header.Get("X-Request-Id") {
		t.Errorf("X-Request-Id = %q, want the gateway's %q", rid, resp.Header.Get("X-Request-Id"))
	}
}

func TestHardeningUnderscoresInHeaders(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: func(o *proxy.Options) {
		o.UnderscoresInHeaders = true
		o.TrustedProxies = []string{"127.0.0.1"} // even a trusted proxy's underscored spellings are dropped
	}})
	lines := hostileHeaderLines(underscored, "6.6.6.6")
	lines = append(lines, "X_Custom_Header: kept", "My_App_Token: kept")
	resp, body := rawResponse(t, h, rawGet(h, "GET", "/public/x", lines...))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := h.up.last(t).Header
	for _, name := range underscored {
		for k, v := range got {
			if strings.Contains(k, "_") && fold(k) == fold(name) {
				t.Errorf("%s reached the upstream as %s: %q", name, k, v)
			}
		}
	}
	if got.Get("X_custom_header") != "kept" || got.Get("My_app_token") != "kept" {
		t.Errorf("non-colliding underscored headers were dropped with UnderscoresInHeaders: %v", got)
	}
}

func TestHardeningHeadersOnGatewayPages(t *testing.T) {
	// The gateway's own pages never see the stripped headers either: an
	// override cannot make /.auth/me answer for another user or path.
	h := newHarness(t, harnessConfig{})
	for _, name := range append(append([]string{}, alwaysStripped...), underscored...) {
		resp, _ := rawResponse(t, h, rawGet(h, "GET", "/.auth/me", name+": x"))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: /.auth/me answered %d, want 401", name, resp.StatusCode)
		}
	}
	// A signed identity header the client made up never counts.
	resp, _ := rawResponse(t, h, rawGet(h, "GET", "/.auth/me", "X_Current_User_Id: 1", "X-Original-URL: /.auth/jwks.json"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/.auth/me with forged headers: %d", resp.StatusCode)
	}
}
