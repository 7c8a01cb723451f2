package policies

import (
	"fmt"
	"strings"
	"testing"
)

// bypassPolicy protects /admin behind a role and leaves /public, /files/*
// and /static open; everything else is denied.
const bypassPolicy = `
routes:
  - {name: admin, paths: ["/admin/**"], access: authenticated, roles: [admin]}
  - {name: public, paths: ["/public/**", "/"], access: public}
  - {name: files, paths: ["/files/*"], access: public}
  - {name: static, paths: ["/static/**"], access: public, methods: [GET]}
  - {name: rest, paths: ["/**"], access: deny}
`

// adminVariants returns escaped paths that some server, proxy or framework
// could read as "/admin/secret": dot segments, encodings, separators and
// parameters combined.
func adminVariants() []string {
	prefixes := []string{
		"", "/", "/.", "/public/..", "/public/./..", "/public/x/../..", "/files/..", "/static/..",
		"/public/%2e%2e", "/public/%2E%2E", "/public/.%2e", "/public/%2e.", "/public/%252e%252e",
		"/public/%c0%ae%c0%ae", "/public/%e0%80%ae%e0%80%ae", "/public/..;", "/public/..%3b",
		"/public/..%00", "/public/..%20", "/public/...", "/public\\..", "/public%5c..", "/public%2f..",
		"/public%2F..", "/public%252f..", "/public/..%2f", "/static/..%5c", "/public/%u002e%u002e",
		"/public/..\x00", "/public/.. ",
	}
	seps := []string{"/", "//", "/./", "%2f", "%2F", "\\", "%5c", "%252f", "/;x=y/", "/%3b/"}
	names := []string{"admin", "%61dmin", "%61%64%6d%69%6e", "%41dmin", "admin;jsessionid=1", "admin%3b", "admin%00", "admin%20", "admin.", "%2561dmin"}
	suffixes := []string{"", "/", "/.", "/x/..", "%2f", ";", "%00"}
	var out []string
	for _, p := range prefixes {
		for _, s1 := range seps {
			for _, n := range names {
				for _, s2 := range seps {
					for _, suf := range suffixes {
						out = append(out, p+s1+n+s2+"secret"+suf)
					}
				}
			}
		}
	}
	return out
}

// TestNoBypass checks that no variant of an /admin path reaches a rule more
// permissive than the one its canonical form reaches: each variant is either
// rejected by CanonicalPath, or canonicalises to a path under /admin (so the
// admin route decides it) or to a path that only the deny rule matches.
func TestNoBypass(t *testing.T) {
	p := mustParse(t, bypassPolicy)
	anonymous, user := (*Subject)(nil), &Subject{ID: "u", Roles: []string{"user"}}
	variants := adminVariants()
	var rejected, admin, denied int
	for _, v := range variants {
		canon, err := CanonicalPath(v)
		if err != nil {
			rejected++
			continue
		}
		r := p.Route("app.example.com", "GET", canon)
		switch {
		case r == nil:
			t.Fatalf("variant %q -> %q matched no route", v, canon)
		case r.Name == "admin":
			admin++
			if d := r.Decide(anonymous, RequestInfo{"GET", "app.example.com", canon}); d != Unauthenticated {
				t.Fatalf("variant %q -> %q: anonymous %v", v, canon, d)
			}
			if d := r.Decide(user, RequestInfo{"GET", "app.example.com", canon}); d != Forbidden {
				t.Fatalf("variant %q -> %q: non-admin %v", v, canon, d)
			}
		case r.Name == "rest":
			denied++
			// Only variants that visibly name something other than "admin" may land here.
			if strings.HasPrefix(canon, "/admin/") || canon == "/admin" {
				t.Fatalf("variant %q -> %q matched %s", v, canon, r.Name)
			}
		default:
			t.Fatalf("variant %q -> canonical %q reached the more permissive route %q", v, canon, r.Name)
		}
	}
	t.Logf("%d variants: %d rejected, %d matched admin, %d denied", len(variants), rejected, admin, denied)
	if admin == 0 || rejected == 0 {
		t.Fatal("variant generator lost its coverage")
	}
}

func TestNoBypassNamed(t *testing.T) {
	p := mustParse(t, bypassPolicy)
	for _, v := range []string{
		"/admin/../admin", "//admin", "/public/..%2fadmin", "/public/%2e%2e/admin", "/public%2f..%2fadmin",
		"/admin;jsessionid=x", "/admin%3b", "/public/..;/admin", `/public\..\admin`, "/%252e%252e/admin",
		"/public/%c0%ae%c0%ae/admin", "/public/%2E%2e/admin", "/files/..%2fadmin", "/files/%2e%2e/admin/x",
		"/static/./../admin", "/public/.%2e/admin/", "///admin///x", "/./admin",
	} {
		t.Run(v, func(t *testing.T) {
			canon, err := CanonicalPath(v)
			if err != nil {
				return
			}
			if r := p.Route("h", "GET", canon); r == nil || r.Name != "admin" {
				t.Fatalf("%q -> %q reached %v", v, canon, r)
			}
		})
	}
}

// refMatch is a deliberately simple reference implementation of path
// patterns, for cross-checking the compiled matcher.
func refMatch(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/")[1:], strings.Split(path, "/")[1:]
	for i, p := range ps {
		if p == "**" {
			return true
		}
		if i >= len(xs) {
			return false
		}
		if p == "*" && xs[i] == "" || p != "*" && p != xs[i] {
			return false
		}
	}
	return len(ps) == len(xs)
}

func refRoute(p *Policy, method, path string) *Route {
	for _, r := range p.Routes {
		if len(r.Methods) > 0 && !hasMethod(r.Methods, method) {
			continue
		}
		for _, pat := range r.Paths {
			if refMatch(pat, path) {
				return r
			}
		}
	}
	return nil
}

const fuzzPolicy = `
routes:
  - {name: admin, paths: ["/admin/**"], access: authenticated, roles: [admin]}
  - {name: exact, paths: ["/about", "/about/", "/"], access: public}
  - {name: one, paths: ["/files/*", "/files/*/meta"], access: public}
  - {name: mid, paths: ["/u/*/p/**"], access: public}
  - {name: deep, paths: ["/a/b/c/**"], access: public, methods: [POST]}
  - {name: rest, paths: ["/**"], access: deny}
`

func FuzzPolicyRoute(f *testing.F) {
	p := mustParse(f, fuzzPolicy)
	for _, s := range []string{
		"/admin", "/admin/x", "/public/..%2fadmin", "/files/a", "/files/a/meta", "/files//meta", "/u/x/p",
		"/u//p/x", "/a/b/c", "/about/", "/%2e%2e/admin", "/files/%2e%2e/admin", "/u/%2e/p/x",
	} {
		f.Add(s, "GET")
	}
	f.Add("/a/b/c/d", "post")
	f.Fuzz(func(t *testing.T, escaped, method string) {
		canon, err := CanonicalPath(escaped)
		if err != nil {
			return
		}
		got, want := p.Route("h", method, canon), refRoute(p, method, canon)
		if got != want {
			t.Fatalf("Route(%q) = %v, reference %v", canon, got, want)
		}
		if (canon == "/admin" || strings.HasPrefix(canon, "/admin/")) && got.Name != "admin" {
			t.Fatalf("admin path %q matched %s", canon, got.Name)
		}
	})
}

// BenchmarkRoute matches against a 20-route policy; the paths hit routes
// early, late and not at all.
func BenchmarkRoute(b *testing.B) {
	var src strings.Builder
	src.WriteString("routes:\n")
	for i := range 18 {
		fmt.Fprintf(&src, "  - {name: r%d, hosts: [app%d.example.com, \"*.t%d.example.com\"], paths: [\"/section%d/**\", \"/page%d\", \"/items%d/*/edit\"], methods: [GET, POST], access: authenticated}\n", i, i, i, i, i, i)
	}
	src.WriteString("  - {name: public, paths: [\"/public/**\", \"/\"], access: public}\n")
	src.WriteString("  - {name: rest, paths: [\"/**\"], access: deny}\n")
	p := mustParse(b, src.String())
	cases := []struct{ host, method, path, want string }{
		{"app0.example.com", "GET", "/section0/a/b", "r0"},
		{"x.t9.example.com", "POST", "/items9/42/edit", "r9"},
		{"app17.example.com", "GET", "/page17", "r17"},
		{"www.example.com", "GET", "/public/css/site.css", "public"},
		{"www.example.com", "GET", "/nothing/here", "rest"},
	}
	for _, c := range cases {
		if r := p.Route(c.host, c.method, c.path); r == nil || r.Name != c.want {
			b.Fatalf("Route(%s %s) = %v, want %s", c.host, c.path, r, c.want)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range cases {
			p.Route(c.host, c.method, c.path)
		}
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, in := range []string{"/public/css/site.css", "/a/%C3%BCber/../b//c/"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CanonicalPath(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
