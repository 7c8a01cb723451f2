package policies

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

const examplePolicy = `
upstreams:
  - name: app
    url: http://127.0.0.1:8080
  - name: api
    url: https://API.internal:8443/base
    path_prefix: /api
  - name: api-v2
    url: http://[::1]:9000
    path_prefix: /api/v2
  - name: api-dup
    url: http://10.0.0.9
    path_prefix: /api/v2
  - name: tenant
    url: http://tenant.internal/
    hosts: ["*.tenants.example.com"]
    audience: urn:tenant
routes:
  - name: home
    paths: ["/", "/public/**", "/about"]
    methods: [GET, head]
    access: public
  - name: files
    paths: ["/files/*", "/files/*/"]
    access: public
  - name: admin
    paths: ["/admin/**"]
    access: authenticated
    roles: [admin, Super Users]
  - name: staff
    paths: ["/staff/**"]
    access: authenticated
    condition: 'user.email_verified && user.email.endsWith("@example.com")'
    audience: urn:staff
  - name: tenant-only
    hosts: ["*.tenants.example.com", example.org]
    paths: ["/**"]
    access: authenticated
  - name: api-write
    paths: ["/api/**"]
    methods: [POST, PUT, DELETE]
    access: authenticated
    roles: [writer]
  - name: api-read
    paths: ["/api/**"]
    access: authenticated
  - name: blocked
    paths: ["/**"]
    access: deny
`

func TestRouteMatching(t *testing.T) {
	p := mustParse(t, examplePolicy)
	tests := []struct {
		host, method, path, want string // want "" means no route
	}{
		{"app.example.com", "GET", "/", "home"},
		{"app.example.com", "HEAD", "/about", "home"},
		{"app.example.com", "head", "/about", "home"},
		{"app.example.com", "POST", "/about", "blocked"},
		{"app.example.com", "GET", "/about/", "blocked"},
		{"app.example.com", "GET", "/public", "home"},
		{"app.example.com", "GET", "/public/", "home"},
		{"app.example.com", "GET", "/public/a/b.css", "home"},
		{"app.example.com", "GET", "/publicity", "blocked"},
		{"app.example.com", "GET", "/files/a", "files"},
		{"app.example.com", "GET", "/files/a/", "files"},
		{"app.example.com", "GET", "/files/a/b", "blocked"},
		{"app.example.com", "GET", "/files", "blocked"},
		{"app.example.com", "GET", "/files/", "blocked"},
		{"app.example.com", "GET", "/admin", "admin"},
		{"app.example.com", "GET", "/admin/users", "admin"},
		{"app.example.com", "GET", "/administrator", "blocked"},
		{"x.tenants.example.com", "GET", "/anything", "tenant-only"},
		{"example.org", "GET", "/anything", "tenant-only"},
		{"x.y.tenants.example.com", "GET", "/anything", "blocked"},
		{"tenants.example.com", "GET", "/anything", "blocked"},
		{"x.tenants.example.com", "GET", "/about", "home"}, // order: home comes first
		{"app.example.com", "POST", "/api/items", "api-write"},
		{"app.example.com", "delete", "/api/items", "api-write"},
		{"app.example.com", "GET", "/api/items", "api-read"},
	}
	for _, tt := range tests {
		t.Run(tt.host+" "+tt.method+" "+tt.path, func(t *testing.T) {
			r := p.Route(tt.host, tt.method, tt.path)
			got := ""
			if r != nil {
				got = r.Name
			}
			if got != tt.want {
				t.Fatalf("Route = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("unmatched is nil", func(t *testing.T) {
		p := mustParse(t, "routes:\n  - {name: a, paths: [/a], access: public}\n")
		if r := p.Route("h", "GET", "/b"); r != nil {
			t.Fatalf("Route = %q, want nil", r.Name)
		}
		if d := p.Route("h", "GET", "/b").Decide(nil, RequestInfo{}); d != Forbidden {
			t.Fatalf("nil route decides %v, want forbidden", d)
		}
	})
}

func TestCompiledFields(t *testing.T) {
	p := mustParse(t, examplePolicy)
	home := p.Routes[0]
	if got := strings.Join(home.Methods, ","); got != "GET,HEAD" {
		t.Errorf("methods = %s, want upper-cased GET,HEAD", got)
	}
	if got := strings.Join(home.Paths, ","); got != "/,/public/**,/about" {
		t.Errorf("paths = %s", got)
	}
	if home.Access != AccessPublic {
		t.Errorf("access = %q", home.Access)
	}
	if len(p.Routes) != 8 || len(p.Upstreams) != 5 {
		t.Fatalf("got %d routes and %d upstreams", len(p.Routes), len(p.Upstreams))
	}
}

func TestUpstream(t *testing.T) {
	p := mustParse(t, examplePolicy)
	tests := []struct {
		host, path, want, audience string
	}{
		{"app.example.com", "/", "app", "http://127.0.0.1:8080"},
		{"app.example.com", "/apix", "app", "http://127.0.0.1:8080"},
		{"app.example.com", "/api", "api", "https://api.internal:8443"},
		{"app.example.com", "/api/", "api", "https://api.internal:8443"},
		{"app.example.com", "/api/v1/x", "api", "https://api.internal:8443"},
		{"app.example.com", "/api/v2", "api-v2", "http://[::1]:9000"}, // first of two equal prefixes
		{"app.example.com", "/api/v2/x", "api-v2", "http://[::1]:9000"},
		{"app.example.com", "/api/v20", "api", "https://api.internal:8443"},
		{"a.tenants.example.com", "/x", "tenant", "urn:tenant"},   // a matching host beats an upstream for any host
		{"a.tenants.example.com", "/api", "tenant", "urn:tenant"}, // even with a longer prefix elsewhere
		{"b.c.tenants.example.com", "/x", "app", "http://127.0.0.1:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			u := p.Upstream(tt.host, tt.path)
			if u == nil || u.Name != tt.want {
				t.Fatalf("Upstream = %v, want %s", u, tt.want)
			}
			if u.Audience != tt.audience {
				t.Fatalf("Audience = %q, want %q", u.Audience, tt.audience)
			}
		})
	}

	t.Run("host specific and explicit audience", func(t *testing.T) {
		p := mustParse(t, `
upstreams:
  - {name: tenant, url: "http://tenant.internal/", hosts: ["*.tenants.example.com"], audience: "urn:tenant"}
  - {name: app, url: "http://app.internal", hosts: [app.example.com]}
routes: [{name: r, paths: ["/**"], access: public}]
`)
		if u := p.Upstream("x.tenants.example.com", "/"); u == nil || u.Name != "tenant" || u.Audience != "urn:tenant" || u.URL.Path != "/" {
			t.Fatalf("Upstream = %+v", u)
		}
		if u := p.Upstream("other.example.com", "/"); u != nil {
			t.Fatalf("Upstream for unknown host = %s, want nil", u.Name)
		}
	})

	t.Run("audience for route", func(t *testing.T) {
		staff := p.Route("h", "GET", "/staff/x")
		app := p.Upstream("h", "/staff/x")
		if got := staff.AudienceFor(app); got != "urn:staff" {
			t.Errorf("route override: %q", got)
		}
		admin := p.Route("h", "GET", "/admin")
		if got := admin.AudienceFor(app); got != "http://127.0.0.1:8080" {
			t.Errorf("upstream default: %q", got)
		}
		if got := admin.AudienceFor(nil); got != "" {
			t.Errorf("no upstream: %q", got)
		}
	})
}

func TestParseErrors(t *testing.T) {
	const ok = "routes:\n  - {name: r, paths: [/], access: public}\n"
	tests := []struct {
		name, src string
		line      int
		want      string
	}{
		{"empty file", "", 0, "empty policy file"},
		{"comment only", "# nothing\n", 0, "empty policy file"},
		{"no routes", "upstreams: []\n", 1, "at least one route"},
		{"empty routes", "routes: []\n", 1, "at least one route"},
		{"syntax", "routes:\n  - name: a\n\tpaths: x\n", 2, "found a tab character"},
		{"two documents", ok + "---\n" + ok, 3, "only one YAML document"},
		{"top level list", "- a\n", 1, "document: must be a mapping"},
		{"unknown top field", ok + "rutes: []\n", 3, "rutes: unknown field"},
		{"unknown route field", "routes:\n  - name: r\n    paths: [/]\n    access: public\n    rolse: [a]\n", 5, "routes[0].rolse: unknown field"},
		{"unknown upstream field", "upstreams:\n  - name: u\n    url: http://x\n    prefix: /a\n" + ok, 4, "upstreams[0].prefix: unknown field"},
		{"repeated field", "routes:\n  - name: r\n    paths: [/]\n    access: public\n    access: deny\n", 5, "repeated (first at line 4)"},
		{"bad access", "routes:\n  - name: r\n    paths: [/]\n    access: admin\n", 4, `"admin" must be public, authenticated, bound or deny`},
		{"missing access", "routes:\n  - name: r\n    paths: [/]\n", 2, "access is required"},
		{"missing name", "routes:\n  - paths: [/]\n    access: public\n", 2, "name is required"},
		{"missing paths", "routes:\n  - name: r\n    access: public\n", 2, "paths is required"},
		{"empty paths", "routes:\n  - name: r\n    paths: []\n    access: public\n", 2, "paths is required"},
		{"paths not a list", "routes:\n  - name: r\n    paths: /a\n    access: public\n", 3, "routes[0].paths: must be a list"},
		{"bad name", "routes:\n  - name: 'a b'\n    paths: [/]\n    access: public\n", 2, `"a b" must be`},
		{"duplicate route name", ok + "  - name: r\n    paths: [/x]\n    access: deny\n", 3, `duplicate name "r" (first at line 2)`},
		{"duplicate upstream name", "upstreams:\n  - {name: u, url: http://a}\n  - {name: u, url: http://b}\n" + ok, 3, `duplicate name "u" (first at line 2)`},
		{"public with roles", "routes:\n  - name: r\n    paths: [/]\n    access: public\n    roles: [a]\n", 5, "roles cannot be used with access public"},
		{"public with condition", "routes:\n  - name: r\n    paths: [/]\n    access: public\n    condition: 'true'\n", 5, "condition cannot be used with access public"},
		{"deny with roles", "routes:\n  - name: r\n    paths: [/]\n    access: deny\n    roles: [a]\n", 5, "roles cannot be used with access deny"},
		{"deny with condition", "routes:\n  - name: r\n    paths: [/]\n    access: deny\n    condition: 'true'\n", 5, "condition cannot be used with access deny"},
		{"bad role", "routes:\n  - name: r\n    paths: [/]\n    access: authenticated\n    roles: ['a,b']\n", 5, "without commas"},
		{"star method", "routes:\n  - name: r\n    paths: [/]\n    access: public\n    methods: ['*']\n", 5, "omit methods"},
		{"bad method", "routes:\n  - name: r\n    paths: [/]\n    access: public\n    methods: ['GE T']\n", 5, "is not an HTTP method"},
		{"cel syntax", "routes:\n  - name: r\n    paths: [/]\n    access: authenticated\n    condition: 'user.email =='\n", 5, "routes[0].condition: CEL error"},
		{"cel unknown field", "routes:\n  - name: r\n    paths: [/]\n    access: authenticated\n    condition: 'user.emial == \"x\"'\n", 5, "undefined field 'emial'"},
		{"cel unknown variable", "routes:\n  - name: r\n    paths: [/]\n    access: authenticated\n    condition: 'account.id == \"x\"'\n", 5, "undeclared reference"},
		{"cel not bool", "routes:\n  - name: r\n    paths: [/]\n    access: authenticated\n    condition: 'user.email'\n", 5, "must be a bool expression, not string"},
		{"cel bad regex", "routes:\n  - name: r\n    paths: [/]\n    access: authenticated\n    condition: 'user.email.matches(\"[\")'\n", 5, "routes[0].condition: "},
		{"bad url scheme", "upstreams:\n  - {name: u, url: 'ftp://x'}\n" + ok, 2, "must be an http or https URL"},
		{"url without host", "upstreams:\n  - {name: u, url: 'http:///a'}\n" + ok, 2, "has no host"},
		{"url with query", "upstreams:\n  - {name: u, url: 'http://x/?a=b'}\n" + ok, 2, "must not have a query or fragment"},
		{"url with fragment", "upstreams:\n  - {name: u, url: 'http://x/#f'}\n" + ok, 2, "must not have a query or fragment"},
		{"url with credentials", "upstreams:\n  - {name: u, url: 'http://u:p@x/'}\n" + ok, 2, "must not hold credentials"},
		{"url unparsable", "upstreams:\n  - {name: u, url: 'http://x:port/'}\n" + ok, 2, "upstreams[0].url"},
		{"url base path not canonical", "upstreams:\n  - {name: u, url: 'http://x/a/../b'}\n" + ok, 2, `write "/b"`},
		{"missing url", "upstreams:\n  - {name: u}\n" + ok, 2, "url is required"},
		{"prefix trailing slash", "upstreams:\n  - {name: u, url: 'http://x', path_prefix: /api/}\n" + ok, 2, `write "/api"`},
		{"prefix wildcard", "upstreams:\n  - {name: u, url: 'http://x', path_prefix: /api/**}\n" + ok, 2, "no wildcards"},
		{"pattern not canonical", "routes:\n  - name: r\n    paths: [/a//b]\n    access: public\n", 3, `not canonical, write "/a/b"`},
		{"pattern dot dot", "routes:\n  - name: r\n    paths: [/a/../b]\n    access: public\n", 3, `write "/b"`},
		{"pattern relative", "routes:\n  - name: r\n    paths: [admin]\n    access: public\n", 3, "must start with /"},
		{"pattern partial wildcard", "routes:\n  - name: r\n    paths: ['/a*']\n    access: public\n", 3, "must be whole segments"},
		{"pattern inner double star", "routes:\n  - name: r\n    paths: ['/**/a']\n    access: public\n", 3, "only as the last segment"},
		{"pattern semicolon", "routes:\n  - name: r\n    paths: ['/a;b']\n    access: public\n", 3, "not a valid path"},
		{"host uppercase", "routes:\n  - name: r\n    hosts: [App.example.com]\n    paths: [/]\n    access: public\n", 3, `write "app.example.com"`},
		{"host with port", "routes:\n  - name: r\n    hosts: ['app.example.com:8080']\n    paths: [/]\n    access: public\n", 3, `write "app.example.com"`},
		{"host bad wildcard", "routes:\n  - name: r\n    hosts: ['a.*.example.com']\n    paths: [/]\n    access: public\n", 3, "wildcard is allowed only"},
		{"host wildcard tld", "routes:\n  - name: r\n    hosts: ['*.com']\n    paths: [/]\n    access: public\n", 3, "at least two labels"},
		{"host junk", "routes:\n  - name: r\n    hosts: ['a b']\n    paths: [/]\n    access: public\n", 3, "invalid host"},
		{"null name", "routes:\n  - name:\n    paths: [/]\n    access: public\n", 2, "routes[0].name: must be a string"},
		{"bad audience", "routes:\n  - name: r\n    paths: [/]\n    access: public\n    audience: 'a b'\n", 5, "without spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(tt.src))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.File != "policy.yaml" || pe.Line != tt.line {
				t.Fatalf("error %q at %s:%d, want line %d", err, pe.File, pe.Line, tt.line)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			wantPrefix := "policies: policy.yaml:"
			if !strings.HasPrefix(err.Error(), wantPrefix) {
				t.Fatalf("error %q does not start with %q", err, wantPrefix)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse("policy.yaml", []byte(`
routes:
  - name: a
    paths: [/a]
    access: nope
  - name: b
    paths: [/b]
    access: public
    colour: red
`))
	var lines []int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *ParseError
		if !errors.As(e, &pe) {
			t.Fatalf("%v is not a *ParseError", e)
		}
		lines = append(lines, pe.Line)
	}
	if len(lines) != 2 || lines[0] != 5 || lines[1] != 9 {
		t.Fatalf("problems at lines %v, want [5 9]; error: %v", lines, err)
	}
}

func TestParseAliases(t *testing.T) {
	p := mustParse(t, `
routes:
  - name: a
    hosts: &h [a.example.com, "*.b.example.com"]
    paths: [/a]
    access: public
  - name: b
    hosts: *h
    paths: [/b]
    access: public
`)
	if got := p.Route("x.b.example.com", "GET", "/b"); got == nil || got.Name != "b" {
		t.Fatalf("alias hosts did not apply: %v", got)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte("routes:\n  - {name: r, paths: [/], access: nope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), "policies: policy.yaml:2: ") {
		t.Fatalf("LoadFile error = %v", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadFile of a missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte(examplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadFile(path); err != nil || len(p.Routes) != 8 {
		t.Fatalf("LoadFile = %v, %v", p, err)
	}
}
