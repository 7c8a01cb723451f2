package policies

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCanonicalPath(t *testing.T) {
	long := "/" + strings.Repeat("segment/", 4096) + "end"
	tests := []struct {
		name, in, want string // want "" means an error wrapping ErrAmbiguousPath
	}{
		// Ordinary paths stay as they are.
		{"root", "/", "/"},
		{"plain", "/about", "/about"},
		{"trailing slash kept", "/a/", "/a/"},
		{"nested", "/a/b/c", "/a/b/c"},
		{"dotfile", "/.well-known/x", "/.well-known/x"},
		{"dots inside names", "/a..b/c.d/..e", "/a..b/c.d/..e"},
		{"encoded space", "/a%20b", "/a b"},
		{"encoded percent alone", "/100%25", "/100%"},
		{"encoded percent then non-hex", "/100%25zz", "/100%zz"},
		{"unicode encoded", "/%C3%BCber", "/über"},
		{"unicode raw", "/über", "/über"},
		{"unicode division slash is not a slash", "/a%E2%88%95b", "/a\u2215b"},
		{"unicode fullwidth dots are not dots", "/%EF%BC%8E%EF%BC%8E/admin", "/\uff0e\uff0e/admin"},
		{"asterisk is literal", "/files/*", "/files/*"},
		{"very long", long, long},

		// Merging and dot segments.
		{"double slash", "//admin", "/admin"},
		{"many slashes", "///a////b//", "/a/b/"},
		{"dot", "/./admin", "/admin"},
		{"dot dot", "/admin/../admin", "/admin"},
		{"dot dot to root", "/a/..", "/"},
		{"trailing dot becomes slash", "/a/.", "/a/"},
		{"trailing dot dot becomes slash", "/a/b/..", "/a/"},
		{"public dot dot admin", "/public/../admin", "/admin"},
		{"encoded dot dot", "/public/%2e%2e/admin", "/admin"},
		{"mixed case encoded dot dot", "/public/%2E%2e/admin", "/admin"},
		{"half encoded dot dot", "/public/.%2E/admin", "/admin"},
		{"encoded dot", "/public/%2e/x", "/public/x"},

		// Rejected: structure.
		{"empty", "", ""},
		{"relative", "admin", ""},
		{"asterisk form", "*", ""},
		{"absolute url", "http://x/admin", ""},
		{"above root", "/..", ""},
		{"above root later", "/a/../../admin", ""},
		{"above root encoded", "/%2e%2e/admin", ""},
		{"triple dot", "/.../admin", ""},
		{"dot space", "/public/.. /admin", ""},
		{"encoded dot space", "/public/..%20/admin", ""},
		{"only space segment", "/a/%20/b", ""},

		// Rejected: encoded slash and backslash.
		{"encoded slash", "/public%2f..%2fadmin", ""},
		{"encoded slash upper", "/public%2F..%2Fadmin", ""},
		{"dot dot encoded slash", "/public/..%2fadmin", ""},
		{"raw backslash", `/public\..\admin`, ""},
		{"encoded backslash", "/public%5c..%5cadmin", ""},
		{"encoded backslash upper", "/public%5C..%5Cadmin", ""},

		// Rejected: query and fragment delimiters hidden in a segment.
		{"encoded question mark", "/a%3Fb", ""},
		{"encoded question mark lower", "/a%3fb", ""},
		{"encoded hash", "/a%23b", ""},
		{"encoded hash at end", "/files/x%23", ""},
		{"raw hash left in request line", "/a#b", ""},
		{"raw question mark", "/a?b", ""},
		{"mid-path wildcard bypass", "/files/x%3F/public", ""},
		{"encoded hash before dot dot", "/a%23/../admin", ""},
		{"double encoded question mark", "/a%253F", ""},

		// Rejected: path parameters.
		{"semicolon", "/admin;jsessionid=x", ""},
		{"encoded semicolon", "/admin%3b", ""},
		{"encoded semicolon upper", "/admin%3B", ""},
		{"tomcat dot dot semicolon", "/public/..;/admin", ""},

		// Rejected: control characters.
		{"encoded NUL", "/%00", ""},
		{"raw NUL", "/a\x00", ""},
		{"CRLF injection", "/a%0d%0aSet-Cookie:x=y", ""},
		{"raw tab", "/a\tb", ""},
		{"encoded DEL", "/a%7f", ""},
		{"raw DEL", "/a\x7f", ""},
		{"C1 control", "/a%C2%85", ""},

		// Rejected: malformed or double encoding.
		{"lone percent", "/a%", ""},
		{"short escape", "/a%4", ""},
		{"non-hex escape", "/a%zz", ""},
		{"IIS unicode escape", "/%u002e%u002e/admin", ""},
		{"double encoded dot dot", "/%252e%252e/admin", ""},
		{"double encoded slash", "/public%252fadmin", ""},
		{"double encoding with encoded digits", "/a%25%32%65", ""},
		{"double encoding upper", "/a%252E", ""},

		// Rejected: invalid UTF-8.
		{"overlong dot", "/%c0%ae%c0%ae/admin", ""},
		{"overlong slash", "/a%c0%afb", ""},
		{"lone continuation", "/a%80", ""},
		{"truncated sequence", "/a%e2%88", ""},
		{"surrogate", "/a%ed%a0%80", ""},
		{"raw invalid byte", "/a\xff", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalPath(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("CanonicalPath(%q) = %q, want an error", tt.in, got)
				}
				if !errors.Is(err, ErrAmbiguousPath) {
					t.Fatalf("CanonicalPath(%q) error %v does not wrap ErrAmbiguousPath", tt.in, err)
				}
				if got != "" {
					t.Fatalf("CanonicalPath(%q) returned %q with an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("CanonicalPath(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("CanonicalPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
			checkCanonicalInvariants(t, tt.in, got)
		})
	}
}

func TestCanonicalPathErrorHidesInput(t *testing.T) {
	_, err := CanonicalPath("/a%0d%0aSet-Cookie:secret")
	if err == nil || strings.Contains(err.Error(), "Set-Cookie") || strings.Contains(err.Error(), "%0d") {
		t.Fatalf("error %v must exist and not echo the path", err)
	}
	if !strings.HasPrefix(err.Error(), "policies: ") {
		t.Fatalf("error %q lacks the package prefix", err)
	}
}

// escapePath is how a canonical path is sent upstream.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}

// checkCanonicalInvariants checks what every canonical path must satisfy.
func checkCanonicalInvariants(t *testing.T, in, got string) {
	t.Helper()
	if !strings.HasPrefix(got, "/") {
		t.Fatalf("CanonicalPath(%q) = %q does not start with /", in, got)
	}
	if strings.Contains(got, "//") {
		t.Fatalf("CanonicalPath(%q) = %q contains //", in, got)
	}
	if !utf8.ValidString(got) {
		t.Fatalf("CanonicalPath(%q) = %q is not valid UTF-8", in, got)
	}
	for _, seg := range strings.Split(got, "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("CanonicalPath(%q) = %q has a dot segment", in, got)
		}
	}
	for _, r := range got {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\\' || r == ';' || r == '?' || r == '#' {
			t.Fatalf("CanonicalPath(%q) = %q has forbidden character %U", in, got, r)
		}
	}
	again, err := CanonicalPath(escapePath(got))
	if err != nil {
		t.Fatalf("CanonicalPath(escape(%q)) failed: %v", got, err)
	}
	if again != got {
		t.Fatalf("not idempotent: %q -> %q -> %q", in, got, again)
	}
	raw, err := CanonicalPath(got)
	if err == nil && raw != got {
		// A canonical path that is also a valid escaped path must read the same.
		t.Fatalf("CanonicalPath(%q) = %q, want it unchanged", got, raw)
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{
		"/", "/a/b/", "//admin", "/admin/../admin", "/public/..%2fadmin", "/public/%2e%2e/admin",
		"/public%2f..%2fadmin", "/admin;jsessionid=x", "/admin%3b", "/%00", "/a%0d%0aSet-Cookie",
		`/public\..\admin`, "/%252e%252e/", "/%c0%ae", "/%2E", "/über", "/%C3%BCber", "/a/./b/../c",
		"/a%25", "/a%2", "/...", "/a/.", "", "/a%3Fb", "/a%23b", "/a#b", "/x%3f/../y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CanonicalPath(in)
		if err == nil {
			// What must be refused, in whatever case it was written.
			lower := strings.ToLower(in)
			for _, bad := range []string{"%2f", "%5c", "%3f", "%23", "%3b", "%00", "\\", ";", "#", "%c0", "%c1"} {
				if strings.Contains(lower, bad) {
					t.Fatalf("CanonicalPath(%q) = %q, want it refused (%q)", in, got, bad)
				}
			}
			for i := 0; i+4 < len(lower); i++ {
				if lower[i:i+3] == "%25" && isHex(lower[i+3]) && isHex(lower[i+4]) {
					t.Fatalf("CanonicalPath(%q) = %q, want double encoding refused", in, got)
				}
			}
		}
		if err != nil {
			if !errors.Is(err, ErrAmbiguousPath) || got != "" {
				t.Fatalf("CanonicalPath(%q) = %q, %v", in, got, err)
			}
			return
		}
		checkCanonicalInvariants(t, in, got)
	})
}

func TestCanonicalHost(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error wrapping ErrInvalidHost
	}{
		{"example.com", "example.com"},
		{"Example.COM", "example.com"},
		{"example.com:8080", "example.com"},
		{"example.com:", "example.com"},
		{"example.com.", "example.com"},
		{"Example.com.:443", "example.com"},
		{"my_host-1.internal", "my_host-1.internal"},
		{"10.0.0.1", "10.0.0.1"},
		{"10.0.0.1:80", "10.0.0.1"},
		{"[::1]", "::1"},
		{"[::1]:8443", "::1"},
		{"[2001:DB8::1]", "2001:db8::1"},
		{"[::FFFF:1.2.3.4]:80", "::ffff:1.2.3.4"},
		{"::1", "::1"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},

		{"", ""},
		{":80", ""},
		{".", ""},
		{"example..com", ""},
		{".example.com", ""},
		{"example.com..", ""},
		{"example.com:http", ""},
		{"example.com:99999", ""},
		{"example.com:123456", ""},
		{"example.com:-1", ""},
		{"example.com:80:80", ""},
		{"user@example.com", ""},
		{"exa mple.com", ""},
		{"example.com/", ""},
		{"example.com\x00", ""},
		{"example.com\r\nX: y", ""},
		{"bücher.example", ""},
		{"\u212Aelvin.example", ""}, // Kelvin sign, which ToLower maps to "k"
		{"%65xample.com", ""},
		{"[::1", ""},
		{"[::1]x", ""},
		{"[::1]:99999", ""},
		{"[1.2.3.4]", ""},
		{"[fe80::1%25eth0]", ""},
		{"fe80::1%eth0", ""},
		{"*.example.com", ""},
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("a.", 127) + "com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := CanonicalHost(tt.in)
			if tt.want == "" {
				if err == nil || !errors.Is(err, ErrInvalidHost) {
					t.Fatalf("CanonicalHost(%q) = %q, %v; want an ErrInvalidHost error", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CanonicalHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if again, err := CanonicalHost(got); err != nil || again != got {
				t.Fatalf("CanonicalHost not idempotent: %q -> %q -> %q, %v", tt.in, got, again, err)
			}
		})
	}
}
