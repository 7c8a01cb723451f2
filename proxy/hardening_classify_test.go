package proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestClassifyHeader(t *testing.T) {
	for _, tt := range []struct {
		name string
		want headerClass
	}{
		{"X-Current-User", headerIdentity}, {"x_current_user_id", headerIdentity}, {"X-CURRENT-USER-CONTACT-FULLNAME", headerIdentity},
		{"X-Current-Username", headerPass}, {"X-Current-Use", headerPass},
		{"X-Forwarded-For", headerForwarding}, {"X-Forwarded", headerForwarding}, {"x-forwardedfor", headerForwarding},
		{"X-Forwarded-User", headerIdentity}, {"X_Forwarded_Access_Token", headerIdentity}, {"X-Auth-Request-Email", headerIdentity},
		{"X-Ms-Client-Principal-Name", headerIdentity}, {"X-MS-TOKEN-AAD-ID-TOKEN", headerIdentity},
		{"Forwarded", headerForwarding}, {"X-Real-Ip", headerForwarding}, {"Cf-Connecting-Ip", headerForwarding},
		{"X-Original-Url", headerOverride}, {"X-Http-Method-Override", headerOverride}, {"Proxy", headerOverride},
		{"Cookie", headerDecided}, {"X-Request-Id", headerDecided}, {"Sec-Fetch-Site", headerDecided},
		{"User-Agent", headerPass}, {"Accept-Language", headerPass}, {"X-Custom", headerPass}, {"", headerPass},
		{strings.Repeat("x", 200), headerPass}, {"X-Forwarded-" + strings.Repeat("x", 200), headerForwarding},
		{"X-Current-User-" + strings.Repeat("y", 100), headerIdentity},
	} {
		if got := classifyHeader(tt.name); got != tt.want {
			t.Errorf("classifyHeader(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestClientHeaderRulesNilHeader(t *testing.T) {
	clientHeaderRules{}.strip(nil) // nil trailer maps are fine
}

func TestClassifyHeaderDoesNotAllocate(t *testing.T) {
	h := http.Header{"Cookie": {"a=b"}, "User-Agent": {"x"}, "Accept": {"*/*"}, "X-Forwarded-For": {"1.2.3.4"}}
	allocs := testing.AllocsPerRun(100, func() {
		for k := range h {
			classifyHeader(k)
		}
	})
	if allocs != 0 {
		t.Fatalf("classifyHeader allocates %.1f times per request", allocs)
	}
}

func BenchmarkStripClientHeaders(b *testing.B) {
	src := http.Header{"Cookie": {"a=b"}, "User-Agent": {"bench"}, "Accept": {"*/*"}, "Accept-Language": {"de"},
		"Accept-Encoding": {"gzip"}, "Referer": {"https://x/"}, "Sec-Fetch-Site": {"same-origin"}}
	rules := clientHeaderRules{}
	for b.Loop() {
		for k := range src {
			classifyHeader(k)
		}
		rules.strip(src)
	}
}
