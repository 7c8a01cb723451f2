package permissions_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz/permissions"
)

func TestVocabulary(t *testing.T) {
	want := []string{"users:read", "users:write", "users:approve", "users:credentials", "bindings:write",
		"contacts:read", "contacts:write", "invitations:read", "invitations:write", "audit:read", "outbox:write"}
	if got := permissions.All(); !slices.Equal(got, want) {
		t.Fatalf("All() = %v", got)
	}
	all := permissions.All()
	all[0] = "mutated"
	if permissions.All()[0] != "users:read" {
		t.Fatal("All returns a shared slice")
	}
	for _, p := range want {
		if !permissions.Valid(p) {
			t.Errorf("%s not valid", p)
		}
	}
	for _, p := range []string{"", "admin", "users:bind", "USERS:READ", "users:read "} {
		if permissions.Valid(p) {
			t.Errorf("%q valid", p)
		}
	}
}

// TestLegacyScopeNames: the scope names keys were created with before the
// vocabulary was unified still mean their replacement.
func TestLegacyScopeNames(t *testing.T) {
	for old, repl := range map[string]string{"users:bind": "bindings:write", "users:password": "users:credentials",
		"users:invite": "users:credentials", "users:read": "users:read"} {
		if p, ok := permissions.Canonical(old); !ok || p != repl {
			t.Errorf("Canonical(%q) = %q %v, want %q", old, p, ok, repl)
		}
	}
	if _, ok := permissions.Canonical("admin"); ok {
		t.Error("admin is a permission")
	}
	ps, unknown := permissions.Normalize([]string{"users:invite", "audit:read", "users:password", "frob", "users:bind"})
	if !slices.Equal(ps, []string{"users:credentials", "bindings:write", "audit:read"}) || !slices.Equal(unknown, []string{"frob"}) {
		t.Fatalf("Normalize = %v, %v", ps, unknown)
	}
}

func TestGrants(t *testing.T) {
	var zero permissions.Grants
	for _, p := range permissions.All() {
		if !zero.Allows([]string{"member", "admin"}, p) {
			t.Errorf("admin lacks %s", p)
		}
		if zero.Allows([]string{"member", "helpdesk"}, p) || zero.Allows(nil, p) {
			t.Errorf("zero grants give %s to a non-admin", p)
		}
	}
	if zero.Allows([]string{"admin"}, "users:bind") || zero.Allows([]string{"admin"}, "") {
		t.Error("admin is allowed a name that is no permission")
	}
	g, err := permissions.NewGrants(map[string][]string{"helpdesk": {"users:credentials", "users:read"}, "auditor": {"audit:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if !g.Allows([]string{"helpdesk"}, "users:read") || g.Allows([]string{"helpdesk"}, "audit:read") ||
		!g.Allows([]string{"member", "auditor"}, "audit:read") || g.Allows([]string{"Helpdesk"}, "users:read") {
		t.Error("Allows")
	}
	if got := g.Of([]string{"auditor", "helpdesk"}); !slices.Equal(got, []string{"users:read", "users:credentials", "audit:read"}) {
		t.Errorf("Of = %v", got)
	}
	if got := g.Of([]string{"admin"}); !slices.Equal(got, permissions.All()) {
		t.Errorf("Of(admin) = %v", got)
	}
	if got := g.Roles(); !slices.Equal(got, []string{"auditor", "helpdesk"}) {
		t.Errorf("Roles = %v", got)
	}
}

func TestGrantErrors(t *testing.T) {
	for _, tt := range []struct {
		role  string
		perms []string
		want  string
	}{
		{"admin", []string{"users:read"}, "cannot be listed"},
		{"bad role", []string{"users:read"}, "not a role name"},
		{"", []string{"users:read"}, "not a role name"},
		{strings.Repeat("r", 65), []string{"users:read"}, "not a role name"},
		{"helpdesk", nil, "list one or more"},
		{"helpdesk", []string{"users:read", "users:read"}, "permissions.helpdesk[1]: \"users:read\" is listed twice"},
		{"helpdesk", []string{"users:frob"}, "unknown permission \"users:frob\""},
		{"helpdesk", []string{"users:bind"}, "write \"bindings:write\""},
	} {
		_, err := permissions.NewGrants(map[string][]string{tt.role: tt.perms})
		var ge *permissions.GrantError
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &ge) {
			t.Errorf("%q %v: %v, want %q", tt.role, tt.perms, err, tt.want)
		}
	}
}
