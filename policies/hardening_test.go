package policies

import (
	"strings"
	"testing"
)

func TestCrossOriginOption(t *testing.T) {
	p := mustParse(t, `
routes:
  - name: payment-return
    paths: ["/pay/return"]
    access: public
    cross_origin: allow
  - name: shop
    paths: ["/shop/**"]
    access: public
    cross_origin: refuse
  - name: rest
    paths: ["/**"]
    access: public
`)
	for _, tt := range []struct {
		path string
		want bool
	}{{"/pay/return", true}, {"/shop/cart", false}, {"/pay/return/x", false}, {"/", false}} {
		r := p.Route("example.com", "POST", tt.path)
		if r == nil || r.AllowCrossOrigin != tt.want {
			t.Errorf("Route(%s) = %+v, want AllowCrossOrigin %v", tt.path, r, tt.want)
		}
	}
}

func TestCrossOriginOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		name, src, want string
	}{
		{"authenticated", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: authenticated\n    cross_origin: allow\n",
			"policy.yaml:5: routes[0] (r): cross_origin: allow is only for access public"},
		{"bound", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: bound\n    cross_origin: allow\n",
			"policy.yaml:5: routes[0] (r): cross_origin: allow is only for access public"},
		{"deny", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: deny\n    cross_origin: allow\n",
			"policy.yaml:5: routes[0] (r): cross_origin: allow is only for access public"},
		{"unknown value", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: public\n    cross_origin: yes\n",
			`policy.yaml:5: routes[0].cross_origin: "yes" must be allow or refuse`},
		{"upper case", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: public\n    cross_origin: ALLOW\n",
			`policy.yaml:5: routes[0].cross_origin: "ALLOW" must be allow or refuse`},
		{"boolean", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: public\n    cross_origin: true\n",
			`policy.yaml:5: routes[0].cross_origin: "true" must be allow or refuse`},
		{"list", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: public\n    cross_origin: [allow]\n",
			"policy.yaml:5: routes[0].cross_origin"},
		{"repeated", "routes:\n  - name: r\n    paths: [\"/a\"]\n    access: public\n    cross_origin: allow\n    cross_origin: allow\n",
			"policy.yaml:6:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestNamesAndServesHost(t *testing.T) {
	p := mustParse(t, `
upstreams:
  - name: app
    url: http://127.0.0.1:8080
    hosts: [app.example.com]
  - name: tenants
    url: http://127.0.0.1:8081
    hosts: ["*.tenants.example.com"]
routes:
  - name: docs
    hosts: [docs.example.com]
    paths: ["/**"]
    access: public
  - name: rest
    paths: ["/**"]
    access: public
`)
	for _, tt := range []struct {
		host          string
		names, serves bool
	}{
		{"app.example.com", true, true},
		{"a.tenants.example.com", true, true},
		{"tenants.example.com", false, false},
		{"a.b.tenants.example.com", false, false},
		{"docs.example.com", true, false}, // a route names it, no upstream serves it
		{"evil.example", false, false},
		{"example.com", false, false},
		{"", false, false},
	} {
		if got := p.NamesHost(tt.host); got != tt.names {
			t.Errorf("NamesHost(%q) = %v, want %v", tt.host, got, tt.names)
		}
		if got := p.ServesHost(tt.host); got != tt.serves {
			t.Errorf("ServesHost(%q) = %v, want %v", tt.host, got, tt.serves)
		}
	}

	// An upstream without hosts serves every host but names none.
	any := mustParse(t, "upstreams:\n  - name: app\n    url: http://127.0.0.1:8080\nroutes:\n  - name: r\n    paths: [\"/**\"]\n    access: public\n")
	if any.NamesHost("evil.example") || !any.ServesHost("evil.example") {
		t.Fatal("an upstream without hosts must serve every host and name none")
	}
	var zero Policy
	if zero.NamesHost("x.example") || zero.ServesHost("x.example") {
		t.Fatal("a zero policy names and serves no host")
	}
}
