package config

import (
	"strings"
	"testing"
	"time"
)

// TestRecoverySettings: the defaults, the reset switch that needs a mail
// server, and every bad value reported under its name.
func TestRecoverySettings(t *testing.T) {
	cfg, err := Load(validEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !cfg.Recovery.ResetEnabled || cfg.Recovery.ResetTTL != time.Hour || cfg.Recovery.ChangeColumn != "" {
		t.Fatalf("defaults: %+v", cfg.Recovery)
	}
	if cfg.ResetOn() {
		t.Fatal("reset on without a mail server")
	}
	smtp := []string{"CRMGATE_SMTP_URL=smtp://localhost:25?tls=none", "CRMGATE_SMTP_FROM=noreply@example.com"}
	for _, tc := range []struct {
		env []string
		on  bool
	}{
		{smtp, true},
		{append(smtp, "CRMGATE_RESET_ENABLED=false"), false},
	} {
		cfg, err := Load(append(validEnv(t), tc.env...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil || cfg.ResetOn() != tc.on {
			t.Errorf("%v: %v, on %v", tc.env, err, cfg.ResetOn())
		}
	}
	dv := []string{"CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com", "CRMGATE_DATAVERSE_TENANT_ID=contoso.example",
		"CRMGATE_DATAVERSE_CLIENT_ID=0c000000-0000-4000-8000-0000000000c1", "CRMGATE_DATAVERSE_CLIENT_SECRET=s"}
	for _, tc := range []struct {
		env  []string
		want string // "" when valid
	}{
		{append(dv, "CRMGATE_SIGNIN_DATAVERSE_CHECK=true", "CRMGATE_PASSWORD_CHANGE_COLUMN=new_mustchangepassword"), ""},
		{append(dv, "CRMGATE_PASSWORD_CHANGE_COLUMN=new_mustchangepassword"), "CRMGATE_PASSWORD_CHANGE_COLUMN: needs CRMGATE_SIGNIN_DATAVERSE_CHECK"},
		{[]string{"CRMGATE_PASSWORD_CHANGE_COLUMN=new_mustchangepassword"}, "CRMGATE_PASSWORD_CHANGE_COLUMN: needs"},
		{append(dv, "CRMGATE_SIGNIN_DATAVERSE_CHECK=true", "CRMGATE_PASSWORD_CHANGE_COLUMN=bad column;"), "CRMGATE_PASSWORD_CHANGE_COLUMN"},
		{[]string{"CRMGATE_RESET_TTL=30s"}, "CRMGATE_RESET_TTL: must be between 1m and 24h"},
		{[]string{"CRMGATE_RESET_TTL=48h"}, "CRMGATE_RESET_TTL"},
	} {
		cfg, err := Load(append(validEnv(t), tc.env...))
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		err = cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: got %v, want %q", tc.env, err, tc.want)
		}
	}
}
