package proxy

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedirectValidator(t *testing.T) {
	v := newRedirectValidator("https://gw.example.com", []string{"https://app.example.com", "http://legacy.example.com:8080"})
	tests := []struct {
		in   string
		want string // "" means refused
	}{
		{"/", "/"},
		{"/account", "/account"},
		{"/a/b?x=1&y=2", "/a/b?x=1&y=2"},
		{"/a#frag", "/a#frag"},
		{"/caf%C3%A9", "/caf%C3%A9"},
		{"https://gw.example.com/x", "https://gw.example.com/x"},
		{"HTTPS://GW.EXAMPLE.COM/x", "https://GW.EXAMPLE.COM/x"},
		{"https://app.example.com/home?q=1", "https://app.example.com/home?q=1"},
		{"http://legacy.example.com:8080/", "http://legacy.example.com:8080/"},
		// hostile
		{"", ""},
		{"//evil.com", ""},
		{"///evil.com", ""},
		{"/\\evil.com", ""},
		{"\\\\evil.com", ""},
		{"/\t/evil.com", ""},
		{"/\n/evil.com", ""},
		{"/\r\n/evil.com", ""},
		{" /x", ""},
		{"/x y", ""},
		{"/%2f/evil.com", ""},           // decodes to //evil.com
		{"/%2F%2Fevil.com", ""},         // same, upper case
		{"https://evil.com", ""},        // not allow-listed
		{"http://gw.example.com/x", ""}, // scheme differs from the public origin
		{"https://app.example.com.evil.com/", ""},
		{"https://evil.com@app.example.com/", ""}, // user info
		{"https://app.example.com@evil.com/", ""},
		{"https://legacy.example.com/", ""}, // port differs
		{"javascript:alert(1)", ""},
		{"JaVaScRiPt:alert(1)", ""},
		{"data:text/html,<script>alert(1)</script>", ""},
		{"vbscript:x", ""},
		{"mailto:a@b.c", ""},
		{"evil.com", ""},
		{"./x", ""},
		{"../x", ""},
		{"https:/evil.com", ""},
		{"https:evil.com", ""},
		{"http:\\\\evil.com", ""},
		{"//gw.example.com/x", ""}, // protocol-relative, even to ourselves
		{"/x\x00", ""},
		{"/x\x7f", ""},
		{"/" + strings.Repeat("a", maxRedirectLen), ""},
		{"https://[::1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := v.validate(tt.in)
			if tt.want == "" {
				if ok {
					t.Fatalf("validate(%q) = %q, want refusal", tt.in, got)
				}
				if d := v.orDefault(tt.in); d != "/" {
					t.Fatalf("orDefault(%q) = %q, want /", tt.in, d)
				}
				return
			}
			if !ok || got != tt.want {
				t.Fatalf("validate(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
			}
		})
	}
}

// FuzzRedirect checks that whatever is accepted stays on an allowed origin
// when a browser resolves it against the gateway's own URL.
func FuzzRedirect(f *testing.F) {
	for _, s := range []string{"/", "/a?b#c", "//evil.com", "/\\evil", "https://app.example.com/x", "https://evil.com", "/%2f%2fevil",
		"javascript:alert(1)", "/\t/x", "http://app.example.com@evil.com", "/..//evil.com", "https://app.example.com:443/"} {
		f.Add(s)
	}
	v := newRedirectValidator("https://gw.example.com", []string{"https://app.example.com"})
	base, _ := url.Parse("https://gw.example.com/.auth/signin")
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := v.validate(in)
		if !ok {
			return
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c <= 0x20 || c == 0x7f || c == '\\' {
				t.Fatalf("accepted %q -> %q with control/space/backslash", in, out)
			}
		}
		ref, err := url.Parse(out)
		if err != nil {
			t.Fatalf("accepted %q -> unparseable %q", in, out)
		}
		abs := base.ResolveReference(ref)
		origin := strings.ToLower(abs.Scheme + "://" + abs.Host)
		if origin != "https://gw.example.com" && origin != "https://app.example.com" {
			t.Fatalf("accepted %q -> %q resolving to origin %q", in, out, origin)
		}
		if abs.User != nil {
			t.Fatalf("accepted %q with user info", in)
		}
		if strings.HasPrefix(out, "//") {
			t.Fatalf("accepted protocol-relative %q", out)
		}
		// What the gateway echoes in a form comes back in the next request.
		if len(out) > maxRedirectLen {
			t.Fatalf("accepted %q -> %d bytes", in, len(out))
		}
		if again, ok := v.validate(out); !ok || again != out {
			t.Fatalf("accepted %q -> %q, which validates to %q, %v", in, out, again, ok)
		}
	})
}

// TestRedirectLengthBound: 8 KB is accepted, one byte more is refused, and
// an address whose re-serialised form would grow past the limit (raw
// non-ASCII is percent-encoded) is refused rather than echoed in a form
// that the next validation would refuse.
func TestRedirectLengthBound(t *testing.T) {
	v := newRedirectValidator("https://gw.example.com", []string{"https://app.example.com"})
	for _, tt := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"path of 8 KB", "/" + strings.Repeat("a", maxRedirectLen-1), true},
		{"path of 8 KB + 1", "/" + strings.Repeat("a", maxRedirectLen), false},
		{"absolute of 8 KB", "https://app.example.com/" + strings.Repeat("a", maxRedirectLen-len("https://app.example.com/")), true},
		{"absolute of 8 KB + 1", "https://app.example.com/" + strings.Repeat("a", maxRedirectLen+1-len("https://app.example.com/")), false},
		{"grows when encoded", "/" + strings.Repeat("é", maxRedirectLen/4), false},
		{"encoded already", "/" + strings.Repeat("%C3%A9", (maxRedirectLen-1)/6), true},
		{"1 MB", "/" + strings.Repeat("a", 1<<20), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := v.validate(tt.in)
			if ok != tt.ok {
				t.Fatalf("validate(%d bytes) ok = %v, want %v", len(tt.in), ok, tt.ok)
			}
			if !ok {
				return
			}
			if len(got) > maxRedirectLen {
				t.Fatalf("validated value is %d bytes", len(got))
			}
			if again, ok := v.validate(got); !ok || again != got {
				t.Fatalf("the validated value does not validate to itself")
			}
		})
	}
}
