package config

import (
	"time"

	"github.com/crmgate/crmgate/dataverse"
)

// CredentialsConfig configures generated credentials (crmgate users
// invite-contacts and POST /.auth/api/users/invite-contacts, package
// authz/onboarding): accounts created for Dataverse contacts, each mailed
// a link to choose a password.
type CredentialsConfig struct {
	SetPasswordTTL time.Duration `env:"SET_PASSWORD_TTL" envDefault:"168h" desc:"How long the set-password link mailed to an account generated for a contact works (one use); 1h to 8784h (366 days). A contact that already has an account gets no new link from a rerun: it can ask for a password reset."`
	UsernameColumn string        `env:"USERNAME_COLUMN" desc:"Contact column (a Dataverse logical name, e.g. adx_identity_username) whose value becomes the username of an account generated for a contact; a contact whose column is empty gets its email address. Empty (default): the username is the contact's email address (emailaddress1)."`
}

// validateCredentials checks the credentials settings.
func (c *Config) validateCredentials(add func(name, format string, args ...any)) {
	cc := c.Credentials
	if cc.SetPasswordTTL < time.Hour || cc.SetPasswordTTL > 366*24*time.Hour {
		add("CREDENTIALS_SET_PASSWORD_TTL", "must be between 1h and 8784h, got %s", cc.SetPasswordTTL)
	}
	if cc.UsernameColumn != "" {
		if err := dataverse.ValidContactColumn(cc.UsernameColumn); err != nil {
			add("CREDENTIALS_USERNAME_COLUMN", "%v", err)
		}
	}
}
