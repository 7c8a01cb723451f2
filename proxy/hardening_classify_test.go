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

// TestMayStripCoversEveryClass: the fast path never skips a name strip must
// act on, in any case; and it does skip the ordinary browser headers.
func TestMayStripCoversEveryClass(t *testing.T) {
	var names []string
	for name, class := range headerClasses {
		if class != headerDecided {
			names = append(names, name)
		}
	}
	names = append(names, "x-current-user", "x-current-user-contact-fullname", "x-auth-request-email",
		"x-ms-client-principal-name", "x-ms-token-aad-id-token", "x-forwarded-prefix", "x-forwardedfor", "x", "X")
	for _, n := range names {
		for _, spelling := range []string{n, strings.ToUpper(n), http.CanonicalHeaderKey(n)} {
			if !mayStrip(spelling) {
				t.Errorf("mayStrip(%q) = false; strip would let it through unclassified", spelling)
			}
			if c := classifyHeader(spelling); c == headerPass && len(n) > 1 {
				t.Errorf("classifyHeader(%q) = pass", spelling)
			}
		}
	}
	for _, n := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Cookie", "User-Agent", "Sec-Fetch-Site",
		"Cache-Control", "Connection", "Upgrade-Insecure-Requests", "Dnt"} {
		if mayStrip(n) {
			t.Errorf("mayStrip(%q) = true: the fast path does not skip an ordinary header", n)
		}
	}
	// Every name strip would remove or keep is decided the same with and
	// without the fast path.
	for _, n := range append(names, "Accept", "Cookie", "Referer", "Remote-User", "Xyz", "é-x", "A") {
		for _, trusted := range []bool{false, true} {
			h := http.Header{n: {"v"}}
			clientHeaderRules{trustedPeer: trusted}.strip(h)
			_, kept := h[n]
			c := classifyHeader(n)
			want := c == headerPass || c == headerDecided || c == headerForwarding && trusted
			if kept != want {
				t.Errorf("strip(%q, trusted %v): kept %v, want %v", n, trusted, kept, want)
			}
		}
	}
}
