package config

import (
	"net/netip"
	"net/url"
	"testing"
)

// TestUpstreamLoop: an upstream that would send requests back to one of
// the gateway's own listeners or its public address is found, in every
// spelling of the address; upstreams elsewhere are not.
func TestUpstreamLoop(t *testing.T) {
	local := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")}
	tests := []struct {
		listen, ops, public, upstream, want string
	}{
		{":8080", ":9090", "https://gw.example.com", "http://127.0.0.1:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://localhost:8080/app", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://LOCALHOST:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://app.localhost:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://[::1]:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://0.0.0.0:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://[::ffff:127.0.0.1]:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://127.1.2.3:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://10.0.0.5:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://[fd00::5]:8080", "CRMGATE_LISTEN"},
		{"0.0.0.0:8080", ":9090", "https://gw.example.com", "http://127.0.0.1:8080", "CRMGATE_LISTEN"},
		{"[::]:8080", ":9090", "https://gw.example.com", "http://127.0.0.1:8080", "CRMGATE_LISTEN"},
		{":80", ":9090", "https://gw.example.com", "http://127.0.0.1", "CRMGATE_LISTEN"},
		{":443", ":9090", "https://gw.example.com", "https://localhost", "CRMGATE_LISTEN"},
		{"127.0.0.1:8080", ":9090", "https://gw.example.com", "http://localhost:8080", "CRMGATE_LISTEN"},
		{"127.0.0.1:8080", ":9090", "https://gw.example.com", "http://127.0.0.1:8080", "CRMGATE_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "http://127.0.0.1:9090", "CRMGATE_OPS_LISTEN"},
		{":8080", "127.0.0.1:9090", "https://gw.example.com", "http://localhost:9090/metrics", "CRMGATE_OPS_LISTEN"},
		{":8080", ":9090", "https://gw.example.com", "https://gw.example.com", "CRMGATE_PUBLIC_URL"},
		{":8080", ":9090", "https://gw.example.com", "http://GW.example.com:443", "CRMGATE_PUBLIC_URL"},
		{":8080", ":9090", "http://gw.example.com:8443", "http://gw.example.com:8443/x", "CRMGATE_PUBLIC_URL"},

		{":8080", ":9090", "https://gw.example.com", "http://127.0.0.1:3000", ""},
		{":8080", ":9090", "https://gw.example.com", "http://10.0.0.6:8080", ""},
		{":8080", ":9090", "https://gw.example.com", "http://app.internal:8080", ""},
		{"127.0.0.1:8080", ":9090", "https://gw.example.com", "http://10.0.0.5:8080", ""},
		{"10.0.0.5:8080", ":9090", "https://gw.example.com", "http://127.0.0.1:8080", ""},
		{":8080", ":9090", "https://gw.example.com", "http://gw.example.com", ""},
		{":8080", ":9090", "https://gw.example.com", "https://app.example.com", ""},
		{"bogus", "also bogus", "::", "http://127.0.0.1:8080", ""},
	}
	for _, tt := range tests {
		c := &Config{Listen: tt.listen, OpsListen: tt.ops, PublicURL: tt.public}
		u, err := url.Parse(tt.upstream)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.UpstreamLoop(u, local); got != tt.want {
			t.Errorf("listen %s, ops %s, public %s, upstream %s: %q, want %q", tt.listen, tt.ops, tt.public, tt.upstream, got, tt.want)
		}
	}
}
