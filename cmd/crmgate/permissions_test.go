package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigPermissions: check-config shows each problem of the
// policy file's permissions section at its line (an unknown permission, an
// admin grant, a bad role name), serve refuses the same file, and a valid
// section is accepted.
func TestCheckConfigPermissions(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	const head = "upstreams:\n  - name: app\n    url: http://127.0.0.1:3000\nroutes:\n  - name: r\n    paths: [\"/**\"]\n    access: authenticated\n"
	write := func(s string) {
		if err := os.WriteFile(pol, []byte(head+s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := baseEnv(t, dir, "CRMGATE_POLICY_FILE="+pol)
	write("permissions:\n  helpdesk: [users:read, users:frob]\n  admin: [audit:read]\n  \"help desk\": [audit:read]\n")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard); err == nil {
		t.Fatalf("check-config accepted it:\n%s", out.String())
	}
	for _, want := range []string{`policy.yaml:9: permissions.helpdesk[1]: unknown permission "users:frob"`,
		"policy.yaml:10: permissions.admin: the admin role has every permission", `policy.yaml:11: permissions.help desk: "help desk" is not a role name`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check-config does not show %q:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"serve"}, env, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "users:frob") {
		t.Errorf("serve: %v, want the permissions problem", err)
	}
	write("permissions:\n  helpdesk: [users:read, users:credentials]\n")
	out.Reset()
	if err := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard); err != nil {
		t.Fatalf("check-config refused a valid section: %v\n%s", err, out.String())
	}
}
