package config

import (
	"strings"
	"testing"
)

// TestBindingDefaults keeps bindingDefaults (used to tell which settings
// were changed) equal to what Load applies, and the sign-in check off.
func TestBindingDefaults(t *testing.T) {
	cfg, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Binding != bindingDefaults {
		t.Fatalf("Load defaults %+v, bindingDefaults %+v", cfg.Binding, bindingDefaults)
	}
	if cfg.SignIn.DataverseCheck || !cfg.SignIn.RequireLogonEnabled {
		t.Fatalf("sign-in check defaults: %+v", cfg.SignIn)
	}
}

func TestValidateBinding(t *testing.T) {
	dv := []string{"CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com", "CRMGATE_DATAVERSE_TENANT_ID=contoso.onmicrosoft.com",
		"CRMGATE_DATAVERSE_CLIENT_ID=00000000-0000-4000-8000-00000000c0de", "CRMGATE_DATAVERSE_CLIENT_SECRET=x"}
	with := func(extra ...string) []string { return append(append([]string{}, dv...), extra...) }
	tests := []struct {
		name string
		env  []string
		want []string // substrings of the error; none means valid
	}{
		{"defaults without dataverse", nil, nil},
		{"explicit defaults without dataverse", []string{"CRMGATE_BINDING_DEFAULT_MODE=none",
			"CRMGATE_BINDING_USERNAME_COLUMN=adx_identity_username", "CRMGATE_BINDING_AUTO_MAP_EMAIL=false",
			"CRMGATE_SIGNIN_DATAVERSE_CHECK=false", "CRMGATE_SIGNIN_REQUIRE_LOGON_ENABLED=true"}, nil},
		{"username mode with the check", with("CRMGATE_BINDING_DEFAULT_MODE=username", "CRMGATE_SIGNIN_DATAVERSE_CHECK=true"), nil},
		{"custom mode, own column, auto-map, no logon check", with("CRMGATE_BINDING_DEFAULT_MODE=custom",
			"CRMGATE_BINDING_USERNAME_COLUMN=alex_login", "CRMGATE_BINDING_AUTO_MAP_EMAIL=true",
			"CRMGATE_SIGNIN_DATAVERSE_CHECK=true", "CRMGATE_SIGNIN_REQUIRE_LOGON_ENABLED=false"), nil},
		{"lookup as the default", with("CRMGATE_BINDING_DEFAULT_MODE=lookup"),
			[]string{"CRMGATE_BINDING_DEFAULT_MODE: cannot be lookup"}},
		{"unknown mode", with("CRMGATE_BINDING_DEFAULT_MODE=Username"),
			[]string{`CRMGATE_BINDING_DEFAULT_MODE: must be none, username or custom, got "Username"`}},
		{"bad columns", with("CRMGATE_BINDING_USERNAME_COLUMN=adx identity"),
			[]string{"CRMGATE_BINDING_USERNAME_COLUMN: must be a Dataverse column name"}},
		{"keyword column", with("CRMGATE_BINDING_USERNAME_COLUMN=eq"),
			[]string{`CRMGATE_BINDING_USERNAME_COLUMN: must be a Dataverse column name, not the OData keyword "eq"`}},
		{"column starting with a digit", with("CRMGATE_BINDING_USERNAME_COLUMN=1name"),
			[]string{"CRMGATE_BINDING_USERNAME_COLUMN: must be a Dataverse column name (letters"}},
		{"column too long", with("CRMGATE_BINDING_USERNAME_COLUMN=" + strings.Repeat("a", 129)),
			[]string{"CRMGATE_BINDING_USERNAME_COLUMN: must be a Dataverse column name of 1 to 128 characters"}},
		{"everything without dataverse", []string{"CRMGATE_BINDING_DEFAULT_MODE=username", "CRMGATE_BINDING_USERNAME_COLUMN=alex_login",
			"CRMGATE_BINDING_AUTO_MAP_EMAIL=true", "CRMGATE_SIGNIN_DATAVERSE_CHECK=true", "CRMGATE_SIGNIN_REQUIRE_LOGON_ENABLED=false"},
			[]string{"CRMGATE_DATAVERSE_URL: required because CRMGATE_BINDING_DEFAULT_MODE, CRMGATE_BINDING_USERNAME_COLUMN, " +
				"CRMGATE_BINDING_AUTO_MAP_EMAIL, CRMGATE_SIGNIN_DATAVERSE_CHECK, CRMGATE_SIGNIN_REQUIRE_LOGON_ENABLED set"}},
		{"check alone without dataverse", []string{"CRMGATE_SIGNIN_DATAVERSE_CHECK=1"},
			[]string{"CRMGATE_DATAVERSE_URL: required because CRMGATE_SIGNIN_DATAVERSE_CHECK set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidate(t, tt.env, tt.want) })
	}
}

func TestLoadRejectsBadBooleans(t *testing.T) {
	_, err := Load(append(validEnv(t), "CRMGATE_SIGNIN_DATAVERSE_CHECK=yes please", "CRMGATE_BINDING_AUTO_MAP_EMAIL=maybe"))
	if err == nil || !strings.Contains(err.Error(), `CRMGATE_SIGNIN_DATAVERSE_CHECK: "yes please" is not true or false`) ||
		!strings.Contains(err.Error(), "CRMGATE_BINDING_AUTO_MAP_EMAIL") {
		t.Fatalf("Load: %v", err)
	}
}
