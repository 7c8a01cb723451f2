package proxy

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestJoinRolesRoundTrip: splitting X-Current-User-Roles on commas and
// percent-decoding each part gives back exactly the roles, whatever their
// names hold; names without a comma or percent sign are sent as they are.
func TestJoinRolesRoundTrip(t *testing.T) {
	for _, roles := range [][]string{
		{"admin"}, {"admin", "Partners"}, {"Partners, EU"}, {"100%"}, {"%2C"}, {"%"}, {","}, {",,", "%%"},
		{"a,b", "c"}, {"Zürich team", "東京"}, {"trailing,"}, {",leading"}, {"50% off, today"}, {"%25"},
	} {
		joined := joinRoles(roles)
		var back []string
		for _, p := range strings.Split(joined, ",") {
			r, err := url.PathUnescape(p)
			if err != nil {
				t.Fatalf("%q: part %q: %v", roles, p, err)
			}
			back = append(back, r)
		}
		if !slices.Equal(back, roles) {
			t.Errorf("joinRoles(%q) = %q, which reads back as %q", roles, joined, back)
		}
	}
	if got := joinRoles([]string{"admin", "Partners EU"}); got != "admin,Partners EU" {
		t.Errorf("plain roles changed: %q", got)
	}
	if got := joinRoles(nil); got != "" {
		t.Errorf("no roles: %q", got)
	}
}
