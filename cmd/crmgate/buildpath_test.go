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

// TestCheckConfigAcceptsWhatServeAccepts: check-config builds everything
// serve builds and starts nothing, so for each configuration it refuses
// exactly when serve would fail before listening, with the same reason.
// serve's part is loadConfig, buildGateway and the start (the database
// connection).
func TestCheckConfigAcceptsWhatServeAccepts(t *testing.T) {
	dir := t.TempDir()
	policy := func(name, route string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte("upstreams:\n  - name: app\n    url: http://127.0.0.1:3000\nroutes:\n  - name: r\n    paths: [\"/**\"]\n"+route), 0o600); err != nil {
			t.Fatal(err)
		}
		return "CRMGATE_POLICY_FILE=" + p
	}
	_, dvEnv := startEmulator(t)
	for _, tt := range []struct {
		name string
		env  []string
		want string // "" when both accept
	}{
		{"valid", nil, ""},
		{"valid with Dataverse", append(append([]string{}, dvEnv...), "CRMGATE_SIGNIN_DATAVERSE_CHECK=true", policy("bound", "    access: bound\n    contact_columns: [fullname]\n")), ""},
		{"argon2 memory beyond what a hash may use", []string{"CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=3000000"}, "memory must be between"},
		{"argon2 memory below the floor", []string{"CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=1024"}, "must be at least 8192"},
		{"argon2 iterations", []string{"CRMGATE_PASSWORD_ARGON2_ITERATIONS=101"}, "iterations must be between 1 and 100"},
		{"credential column in a route", append(append([]string{}, dvEnv...), "CRMGATE_SIGNIN_DATAVERSE_CHECK=true",
			policy("secret", "    access: bound\n    contact_columns: [adx_identity_passwordhash]\n")), "holds a credential"},
		{"keyword column in a condition", append(append([]string{}, dvEnv...), "CRMGATE_SIGNIN_DATAVERSE_CHECK=true",
			policy("keyword", "    access: authenticated\n    condition: 'contact.columns[\"or\"] == \"x\"'\n")), `not the OData keyword "or"`},
		{"credential column synced", append(append([]string{}, dvEnv...), "CRMGATE_SIGNIN_DATAVERSE_CHECK=true",
			"CRMGATE_BINDING_SYNC_FIELDS=first_name=adx_identity_securitystamp"), "holds a credential"},
		{"credential column as the username column", append(append([]string{}, dvEnv...), "CRMGATE_BINDING_USERNAME_COLUMN=adx_identity_passwordhash"), "holds a credential"},
		{"in-memory SQLite", []string{"CRMGATE_DATABASE_URL=sqlite::memory:"}, "give a file path"},
		{"unsupported database", []string{"CRMGATE_DATABASE_URL=mysql://db/crm"}, `scheme "mysql"`},
		{"bad binding filter", append(append([]string{}, dvEnv...), policy("filter", "    access: authenticated\ndataverse:\n  binding_filter: \"emailaddress1 eq {mail}\"\n")), "unknown field {mail}"},
		{"unreadable certificate", append(append([]string{}, dvEnv[:len(dvEnv)-1]...), "CRMGATE_DATAVERSE_CERTIFICATE_FILE="+filepath.Join(dir, "missing.pem")), "missing.pem"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv(t, t.TempDir(), tt.env...)
			var out bytes.Buffer
			checkErr := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard)
			serveErr := func() error {
				cfg, err := loadConfig(env)
				if err != nil {
					return err
				}
				g, err := buildGateway(context.Background(), cfg, io.Discard, nil)
				if err != nil {
					return err
				}
				defer g.Close()
				return g.start(context.Background())
			}()
			if (checkErr == nil) != (serveErr == nil) {
				t.Fatalf("check-config: %v (%s); serve: %v", checkErr, out.String(), serveErr)
			}
			if tt.want == "" {
				if checkErr != nil {
					t.Fatalf("both refuse a valid configuration: %s / %v", out.String(), serveErr)
				}
				return
			}
			if checkErr == nil {
				t.Fatalf("both accept it; want %q", tt.want)
			}
			if !strings.Contains(out.String(), tt.want) || !strings.Contains(serveErr.Error(), tt.want) {
				t.Errorf("check-config says %q, serve %q; want both to say %q", out.String(), serveErr, tt.want)
			}
		})
	}
}
