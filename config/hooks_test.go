package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHooksValidate: the webhook receiver is off by default; a secret
// needs Dataverse, 32 characters, and a name for header and querystring;
// the bounds of the max age and body; the secret may come from a file.
func TestHooksValidate(t *testing.T) {
	dv := []string{"CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com", "CRMGATE_DATAVERSE_TENANT_ID=contoso.onmicrosoft.com",
		"CRMGATE_DATAVERSE_CLIENT_ID=00000000-0000-4000-8000-00000000c0de", "CRMGATE_DATAVERSE_CLIENT_SECRET=x"}
	secret := "CRMGATE_HOOKS_DATAVERSE_SECRET=" + strings.Repeat("k", 32)
	cfg, err := Load(validEnv(t))
	if err != nil || cfg.Hooks.Dataverse.Secret != "" || cfg.Hooks.Dataverse.Auth != "webhookkey" {
		t.Fatalf("defaults: %+v %v", cfg.Hooks, err)
	}
	for _, tt := range []struct {
		env  []string
		name string // "" means valid
	}{
		{[]string{secret}, "HOOKS_DATAVERSE_SECRET"}, // no Dataverse
		{append([]string{secret}, dv...), ""},
		{append([]string{"CRMGATE_HOOKS_DATAVERSE_SECRET=short"}, dv...), "HOOKS_DATAVERSE_SECRET"},
		{append([]string{secret, "CRMGATE_HOOKS_DATAVERSE_AUTH=header"}, dv...), "HOOKS_DATAVERSE_NAME"},
		{append([]string{secret, "CRMGATE_HOOKS_DATAVERSE_AUTH=header", "CRMGATE_HOOKS_DATAVERSE_NAME=X-Hook-Key"}, dv...), ""},
		{append([]string{secret, "CRMGATE_HOOKS_DATAVERSE_AUTH=querystring", "CRMGATE_HOOKS_DATAVERSE_NAME=a b"}, dv...), "HOOKS_DATAVERSE_NAME"},
		{append([]string{secret, "CRMGATE_HOOKS_DATAVERSE_AUTH=basic"}, dv...), "HOOKS_DATAVERSE_AUTH"},
		{[]string{"CRMGATE_HOOKS_DATAVERSE_MAX_AGE=30s"}, "HOOKS_DATAVERSE_MAX_AGE"},
		{[]string{"CRMGATE_HOOKS_DATAVERSE_MAX_AGE=2h"}, "HOOKS_DATAVERSE_MAX_AGE"},
		{[]string{"CRMGATE_HOOKS_DATAVERSE_MAX_BODY=100"}, "HOOKS_DATAVERSE_MAX_BODY"},
	} {
		cfg, err := Load(append(validEnv(t), tt.env...))
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		err = cfg.Validate()
		if (tt.name == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.name) {
			t.Errorf("%v: Validate = %v, want error naming %q", tt.env, err, tt.name)
		}
	}
	f := filepath.Join(t.TempDir(), "hook.key")
	if err := os.WriteFile(f, []byte(strings.Repeat("f", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(append(validEnv(t), "CRMGATE_HOOKS_DATAVERSE_SECRET_FILE="+f))
	if err != nil || !strings.HasPrefix(cfg.Hooks.Dataverse.Secret, strings.Repeat("f", 40)) {
		t.Fatalf("secret file: %q %v", cfg.Hooks.Dataverse.Secret, err)
	}
}
