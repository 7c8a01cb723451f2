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

// TestConsoleContactsPolicy: check-config and the gateway build accept and
// refuse the same console.contacts sections, with the file and line.
func TestConsoleContactsPolicy(t *testing.T) {
	dir := t.TempDir()
	_, dvEnv := startEmulator(t)
	write := func(name, section string) string {
		p := filepath.Join(dir, name)
		src := "routes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\nconsole:\n  contacts:\n" + section
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, section string
		valid         bool
		want          string
	}{
		{"good", "    filter: adx_organizationname eq 'Acme' and statecode eq 0\n    columns: [jobtitle]\n", true, "configuration is valid"},
		{"bad filter", "    filter: statecode gt 0\n", false, "bad.yaml:7: console.contacts.filter: authz: filter template: position"},
		{"placeholder", "    filter: emailaddress1 eq {email}\n", false, "console.contacts: contacts: filter: holds a placeholder"},
		{"fixed column", "    columns: [emailaddress1]\n", false, "console.contacts: contacts: columns[0]: emailaddress1 is shown already"},
		{"secret column", "    columns: [adx_identity_passwordhash]\n", false, "bad.yaml:7: console.contacts.columns[0]:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := "good.yaml"
			if !tt.valid {
				file = "bad.yaml"
			}
			env := baseEnv(t, dir, append([]string{"CRMGATE_POLICY_FILE=" + write(file, tt.section)}, dvEnv...)...)
			var out bytes.Buffer
			err := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard)
			if (err == nil) != tt.valid || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("check-config: %v, output lacks %q:\n%s", err, tt.want, out.String())
			}
			cfg, err := loadConfig(env)
			if err != nil {
				if tt.valid {
					t.Fatal(err)
				}
				// A problem the policy decoder reports: loadConfig already
				// refuses the file, as check-config did.
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("loadConfig: %v, want %q", err, tt.want)
				}
				return
			}
			g, err := buildGateway(context.Background(), cfg, io.Discard, nil)
			if tt.valid {
				if err != nil {
					t.Fatalf("buildGateway: %v", err)
				}
				g.Close()
				return
			}
			if err == nil {
				g.Close()
				t.Fatal("buildGateway accepted the policy")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("buildGateway: %v, want %q", err, tt.want)
			}
		})
	}
}
