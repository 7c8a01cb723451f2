package policies

import (
	"errors"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	p := mustParse(t, `
routes:
  - {name: public, paths: [/public], access: public}
  - {name: deny, paths: [/deny], access: deny}
  - {name: signed-in, paths: [/in], access: authenticated}
  - {name: roles, paths: [/roles], access: authenticated, roles: [admin, Super Users]}
  - name: staff
    paths: [/staff]
    access: authenticated
    condition: 'user.email_verified && user.email.endsWith("@example.com")'
  - name: not-contractor
    paths: [/employees]
    access: authenticated
    condition: '!user.email.endsWith("@contractor.example")'
  - name: roles-and-condition
    paths: [/both]
    access: authenticated
    roles: [admin]
    condition: 'request.method == "GET" && request.path.startsWith("/both") && request.host == "app.example.com"'
  - name: fields
    paths: [/fields]
    access: authenticated
    condition: >-
      user.id == "u1" && user.username == "bob" && user.name == "Bob B" &&
      user.auth_method == "password" && user.authenticated && "x" in user.roles
  - name: runtime-error
    paths: [/error]
    access: authenticated
    condition: 'user.roles[3] == "admin"'
  - name: cost
    paths: [/cost]
    access: authenticated
    condition: >-
      [1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c,
      [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f,
      a+b+c+d+e+f > 0))))))
`)
	admin := &Subject{ID: "u1", Username: "bob", Email: "Bob@Example.com", EmailVerified: true, Name: "Bob B", Roles: []string{"x", "admin"}, AuthMethod: "password"}
	superUser := &Subject{ID: "u2", Roles: []string{"Super Users"}}
	plain := &Subject{ID: "u3", Email: "eve@example.com"}
	contractor := &Subject{ID: "u4", Email: "Eve@CONTRACTOR.example", EmailVerified: true}
	get := RequestInfo{Method: "GET", Host: "app.example.com", Path: "/both"}

	tests := []struct {
		name    string
		route   string
		subject *Subject
		req     RequestInfo
		want    Decision
		wantErr bool
	}{
		{"public anonymous", "public", nil, get, Allow, false},
		{"public signed in", "public", plain, get, Allow, false},
		{"deny anonymous", "deny", nil, get, Forbidden, false},
		{"deny admin", "deny", admin, get, Forbidden, false},
		{"authenticated anonymous", "signed-in", nil, get, Unauthenticated, false},
		{"authenticated signed in", "signed-in", plain, get, Allow, false},
		{"roles anonymous", "roles", nil, get, Unauthenticated, false},
		{"roles missing", "roles", plain, get, Forbidden, false},
		{"roles held", "roles", admin, get, Allow, false},
		{"roles with spaces held", "roles", superUser, get, Allow, false},
		{"roles are case-sensitive", "roles", &Subject{Roles: []string{"Admin"}}, get, Forbidden, false},
		{"condition anonymous", "staff", nil, get, Unauthenticated, false},
		{"condition true, email lower-cased", "staff", admin, get, Allow, false},
		{"condition false: unverified email", "staff", plain, get, Forbidden, false},
		{"negated condition not dodged by case", "not-contractor", contractor, get, Forbidden, false},
		{"negated condition true", "not-contractor", plain, get, Allow, false},
		{"roles and condition", "roles-and-condition", admin, get, Allow, false},
		{"roles ok, condition false", "roles-and-condition", admin, RequestInfo{Method: "POST", Host: "app.example.com", Path: "/both"}, Forbidden, false},
		{"condition ok, roles missing", "roles-and-condition", plain, get, Forbidden, false},
		{"every user field", "fields", admin, get, Allow, false},
		{"nil roles are an empty list", "fields", &Subject{ID: "u1"}, get, Forbidden, false},
		{"runtime error fails closed", "runtime-error", admin, get, Forbidden, true},
		{"runtime error anonymous", "runtime-error", nil, get, Unauthenticated, false},
		{"cost limit fails closed", "cost", admin, get, Forbidden, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := routeNamed(t, p, tt.route)
			if got := r.Decide(tt.subject, tt.req); got != tt.want {
				t.Fatalf("Decide = %v, want %v", got, tt.want)
			}
			got, err := r.Check(tt.subject, tt.req)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("Check = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil {
				var ce *ConditionError
				if !errors.As(err, &ce) || ce.Route != tt.route || !strings.HasPrefix(err.Error(), "policies: ") {
					t.Fatalf("error %v is not a *ConditionError for %s", err, tt.route)
				}
			}
		})
	}
}

func TestDecideZeroValues(t *testing.T) {
	u := &Subject{Roles: []string{"admin"}}
	tests := []struct {
		name string
		r    *Route
	}{
		{"nil route", nil},
		{"zero route", &Route{}},
		{"unknown access", &Route{Access: "admin"}},
		{"hand-built condition", &Route{Name: "x", Access: AccessAuthenticated, Condition: "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Decide(u, RequestInfo{}); got != Forbidden {
				t.Fatalf("Decide = %v, want forbidden", got)
			}
		})
	}
	var d Decision
	if d != Forbidden || d.String() != "forbidden" || Allow.String() != "allow" || Unauthenticated.String() != "unauthenticated" {
		t.Fatalf("zero Decision is %v", d)
	}
	var zero Policy
	if zero.Route("h", "GET", "/") != nil || zero.Upstream("h", "/") != nil {
		t.Fatal("zero Policy matched")
	}
	if (&Route{Paths: []string{"/**"}}).matches("h", "GET", "/") {
		t.Fatal("hand-built Route matched")
	}
}

func TestDecideConcurrent(t *testing.T) {
	p := mustParse(t, `
routes:
  - name: c
    paths: ["/**"]
    access: authenticated
    condition: 'user.email.endsWith("@example.com") && request.path.startsWith("/ok")'
`)
	r := p.Routes[0]
	done := make(chan Decision)
	for i := range 8 {
		go func() {
			s := &Subject{Email: "a@example.com"}
			path := "/ok"
			if i%2 == 1 {
				path = "/no"
			}
			var d Decision
			for range 200 {
				d = r.Decide(s, RequestInfo{Method: "GET", Host: "h", Path: path})
			}
			done <- d
		}()
	}
	allow := 0
	for range 8 {
		if <-done == Allow {
			allow++
		}
	}
	if allow != 4 {
		t.Fatalf("%d goroutines allowed, want 4", allow)
	}
}

func routeNamed(t testing.TB, p *Policy, name string) *Route {
	t.Helper()
	for _, r := range p.Routes {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no route %q", name)
	return nil
}

func BenchmarkDecideCondition(b *testing.B) {
	p := mustParse(b, `
routes:
  - name: c
    paths: ["/**"]
    access: authenticated
    roles: [staff]
    condition: 'user.email_verified && user.email.endsWith("@example.com") && "staff" in user.roles'
`)
	r := p.Routes[0]
	s := &Subject{ID: "u", Email: "a@example.com", EmailVerified: true, Roles: []string{"user", "staff"}}
	req := RequestInfo{Method: "GET", Host: "app.example.com", Path: "/x"}
	b.ReportAllocs()
	for b.Loop() {
		if r.Decide(s, req) != Allow {
			b.Fatal("not allowed")
		}
	}
}
