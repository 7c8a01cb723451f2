package policies

import (
	"slices"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz/permissions"
)

func TestPermissionsSection(t *testing.T) {
	p := mustParse(t, dvRoutes+`permissions:
  helpdesk: [users:read, users:credentials]
  auditor:
    - audit:read
`)
	if !p.Permissions.Allows([]string{"helpdesk"}, permissions.UsersCredentials) || p.Permissions.Allows([]string{"helpdesk"}, permissions.AuditRead) ||
		!p.Permissions.Allows([]string{"auditor"}, permissions.AuditRead) || !slices.Equal(p.Permissions.Roles(), []string{"auditor", "helpdesk"}) {
		t.Fatalf("grants = %+v", p.Permissions)
	}
	// No section: only admin has permissions.
	none := mustParse(t, dvRoutes)
	if len(none.Permissions.Roles()) != 0 || !none.Permissions.Allows([]string{"admin"}, permissions.AuditRead) ||
		none.Permissions.Allows([]string{"helpdesk"}, permissions.UsersRead) {
		t.Fatalf("default grants = %+v", none.Permissions)
	}
	if empty := mustParse(t, dvRoutes+"permissions: {}\n"); len(empty.Permissions.Roles()) != 0 {
		t.Fatal("empty section grants")
	}
}

func TestPermissionsSectionErrors(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"admin narrowed", "permissions:\n  admin: [users:read]\n", "test.yaml:6: permissions.admin: the admin role has every permission"},
		{"unknown permission", "permissions:\n  helpdesk:\n    - users:read\n    - users:frob\n", "test.yaml:8: permissions.helpdesk[1]: unknown permission \"users:frob\"; the permissions are users:read,"},
		{"legacy name", "permissions:\n  helpdesk: [users:bind]\n", "write \"bindings:write\""},
		{"bad role", "permissions:\n  \"help desk\": [users:read]\n", "test.yaml:6: permissions.help desk: \"help desk\" is not a role name"},
		{"duplicate", "permissions:\n  h: [audit:read, audit:read]\n", "listed twice"},
		{"repeated role", "permissions:\n  h: [audit:read]\n  h: [users:read]\n", "permissions.h: repeated"},
		{"empty list", "permissions:\n  h: []\n", "list one or more permissions"},
		{"null list", "permissions:\n  h:\n", "list one or more permissions"},
		{"not a list", "permissions:\n  h: audit:read\n", "permissions.h: must be a list of permissions"},
		{"not a mapping", "permissions: [audit:read]\n", "permissions: must be a mapping of role name"},
		{"not a string", "permissions:\n  h: [[audit:read]]\n", "permissions.h[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(dvRoutes+tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
