package config

import (
	"strings"
	"testing"
)

// TestInvitationSettings: the defaults are valid; sending Dataverse
// invitations needs Dataverse and mail; the interval, the guess limit and
// the existing-user page are checked, each reported under its name.
func TestInvitationSettings(t *testing.T) {
	dv := []string{"CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com", "CRMGATE_DATAVERSE_TENANT_ID=00000000-0000-4000-8000-000000000001",
		"CRMGATE_DATAVERSE_CLIENT_ID=00000000-0000-4000-8000-000000000002", "CRMGATE_DATAVERSE_CLIENT_SECRET=s"}
	smtp := []string{"CRMGATE_SMTP_URL=smtp://localhost:25?tls=none", "CRMGATE_SMTP_FROM=noreply@example.com"}
	ok := [][]string{
		nil,
		append(append([]string{"CRMGATE_INVITATIONS_SEND_DATAVERSE=true", "CRMGATE_INVITATIONS_SEND_INTERVAL=30s"}, dv...), smtp...),
		{"CRMGATE_INVITATIONS_EXISTING_USER_URL=/portal/signin"},
		{"CRMGATE_INVITATIONS_EXISTING_USER_URL=https://gw.example.com/login"},
		{"CRMGATE_INVITATIONS_EXISTING_USER_URL=https://app.example.com/login", "CRMGATE_REDIRECT_ALLOWLIST=https://app.example.com"},
		{"CRMGATE_INVITATIONS_GUESSES_PER_HOUR=100", "CRMGATE_INVITATIONS_SKIP_DATAVERSE_PROOF=true"},
	}
	for _, env := range ok {
		cfg, err := Load(append(validEnv(t), env...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"send without Dataverse": {append([]string{"CRMGATE_INVITATIONS_SEND_DATAVERSE=true"}, smtp...), "CRMGATE_INVITATIONS_SEND_DATAVERSE"},
		"send without mail":      {append([]string{"CRMGATE_INVITATIONS_SEND_DATAVERSE=true"}, dv...), "needs outgoing mail"},
		"interval":               {[]string{"CRMGATE_INVITATIONS_SEND_INTERVAL=1s"}, "CRMGATE_INVITATIONS_SEND_INTERVAL"},
		"guesses":                {[]string{"CRMGATE_INVITATIONS_GUESSES_PER_HOUR=0"}, "CRMGATE_INVITATIONS_GUESSES_PER_HOUR"},
		"foreign page":           {[]string{"CRMGATE_INVITATIONS_EXISTING_USER_URL=https://evil.example/login"}, "CRMGATE_INVITATIONS_EXISTING_USER_URL"},
		"scheme-relative page":   {[]string{"CRMGATE_INVITATIONS_EXISTING_USER_URL=//evil.example/login"}, "CRMGATE_INVITATIONS_EXISTING_USER_URL"},
		"javascript page":        {[]string{"CRMGATE_INVITATIONS_EXISTING_USER_URL=javascript:alert(1)"}, "CRMGATE_INVITATIONS_EXISTING_USER_URL"},
	} {
		cfg, err := Load(append(validEnv(t), tc.env...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.want)
		}
	}
}
