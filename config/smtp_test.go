package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const smtpSecret = "Sup3r-Secret-Pw"

// TestSMTPSettings shows the SMTP block: the accepted forms, the URL from a
// _FILE, and that every bad value is reported under its name without the
// password.
func TestSMTPSettings(t *testing.T) {
	for _, env := range [][]string{
		nil,
		{"CRMGATE_SMTP_URL=smtps://u:" + smtpSecret + "@mail.example.com", "CRMGATE_SMTP_FROM=Example <noreply@example.com>"},
		{"CRMGATE_SMTP_URL=smtp://u:" + smtpSecret + "@mail.example.com:587", "CRMGATE_SMTP_FROM=noreply@example.com"},
		{"CRMGATE_SMTP_URL=smtp://localhost:25?tls=none", "CRMGATE_SMTP_FROM=noreply@example.com", "CRMGATE_SMTP_TIMEOUT=5s"},
	} {
		cfg, err := Load(append(validEnv(t), env...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
	f := filepath.Join(t.TempDir(), "smtp-url")
	if err := os.WriteFile(f, []byte("smtps://u:"+smtpSecret+"@mail.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(append(validEnv(t), "CRMGATE_SMTP_URL_FILE="+f, "CRMGATE_SMTP_FROM=noreply@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || !cfg.SMTP.Configured() {
		t.Fatalf("URL from file: %v, configured %v", err, cfg.SMTP.Configured())
	}
	if strings.Contains(fmt.Sprint(cfg.Changed()), smtpSecret) {
		t.Fatal("the summary shows the SMTP password")
	}

	for _, tc := range []struct {
		env  []string
		name string
	}{
		{[]string{"CRMGATE_SMTP_URL=http://u:" + smtpSecret + "@host", "CRMGATE_SMTP_FROM=a@example.com"}, "CRMGATE_SMTP_URL"},
		{[]string{"CRMGATE_SMTP_URL=smtp://u:" + smtpSecret + "@host?tls=none", "CRMGATE_SMTP_FROM=a@example.com"}, "CRMGATE_SMTP_URL"},
		{[]string{"CRMGATE_SMTP_URL=smtp://u:" + smtpSecret + "@:587", "CRMGATE_SMTP_FROM=a@example.com"}, "CRMGATE_SMTP_URL"},
		{[]string{"CRMGATE_SMTP_URL=smtp://u:" + smtpSecret + "@host:70000", "CRMGATE_SMTP_FROM=a@example.com"}, "CRMGATE_SMTP_URL"},
		{[]string{"CRMGATE_SMTP_URL=smtp://u:" + smtpSecret + "%zz@host", "CRMGATE_SMTP_FROM=a@example.com"}, "CRMGATE_SMTP_URL"},
		{[]string{"CRMGATE_SMTP_URL=smtps://u:" + smtpSecret + "@host"}, "CRMGATE_SMTP_FROM"},
		{[]string{"CRMGATE_SMTP_FROM=a@example.com"}, "CRMGATE_SMTP_FROM"},
		{[]string{"CRMGATE_SMTP_URL=smtps://host", "CRMGATE_SMTP_FROM=a@example.com\r\nBcc: e@evil.test"}, "CRMGATE_SMTP_FROM"},
		{[]string{"CRMGATE_SMTP_URL=smtps://host", "CRMGATE_SMTP_FROM=a@example.com, e@evil.test"}, "CRMGATE_SMTP_FROM"},
		{[]string{"CRMGATE_SMTP_URL=smtps://host", "CRMGATE_SMTP_FROM=not an address"}, "CRMGATE_SMTP_FROM"},
		{[]string{"CRMGATE_SMTP_URL=smtps://host", "CRMGATE_SMTP_FROM=a@example.com", "CRMGATE_SMTP_TIMEOUT=0s"}, "CRMGATE_SMTP_TIMEOUT"},
		{[]string{"CRMGATE_SMTP_URL=smtps://host", "CRMGATE_SMTP_FROM=a@example.com", "CRMGATE_SMTP_TIMEOUT=10m"}, "CRMGATE_SMTP_TIMEOUT"},
		{[]string{"CRMGATE_SMTP_URL=smtps://host", "CRMGATE_SMTP_FROM=a@example.com", "CRMGATE_SMTP_TIMEOUT=3m"}, "CRMGATE_SMTP_TIMEOUT"},
	} {
		cfg, err := Load(append(validEnv(t), tc.env...))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%q: Validate = %v, want a problem with %s", tc.env, err, tc.name)
		} else if strings.Contains(err.Error(), smtpSecret) {
			t.Errorf("%q: the error shows the password: %v", tc.env, err)
		}
	}
}
