package config

import (
	"time"

	"github.com/crmgate/crmgate/dataverse"
)

// RecoveryConfig configures the password reset and the forced password
// change (package authz/recovery). Its variables carry their full names
// (no common prefix): CRMGATE_RESET_* and CRMGATE_PASSWORD_CHANGE_COLUMN.
type RecoveryConfig struct {
	ResetEnabled bool          `env:"RESET_ENABLED" envDefault:"true" desc:"Offer \"Forgot your password?\" (/.auth/reset): a reset link mailed to the account's address. Takes effect only with CRMGATE_SMTP_URL: without a mail server the link and the pages are off."`
	ResetTTL     time.Duration `env:"RESET_TTL" envDefault:"1h" desc:"How long a password reset link works (once); 1m to 24h."`
	// ChangeColumn is read at the sign-in check, in the same request.
	ChangeColumn string `env:"PASSWORD_CHANGE_COLUMN" desc:"Boolean contact column (e.g. a custom new_mustchangepassword) that, when true at sign-in, sends the user to /.auth/password before anything else; the gateway sets it back to false (through the outbox, retried until Dataverse takes it) once the password is changed. Read in the sign-in check's one request: needs CRMGATE_SIGNIN_DATAVERSE_CHECK. Empty: only the local must-change flag forces a change."`
}

// ResetOn reports whether the reset pages are served: enabled and a mail
// server configured.
func (c *Config) ResetOn() bool { return c.Recovery.ResetEnabled && c.SMTP.Configured() }

// validateRecovery checks the recovery settings.
func (c *Config) validateRecovery(add func(name, format string, args ...any)) {
	r := c.Recovery
	if r.ResetTTL < time.Minute || r.ResetTTL > 24*time.Hour {
		add("RESET_TTL", "must be between 1m and 24h, got %s", r.ResetTTL)
	}
	if r.ChangeColumn != "" {
		if err := dataverse.ValidContactColumn(r.ChangeColumn); err != nil {
			add("PASSWORD_CHANGE_COLUMN", "%v", err)
		}
		if !c.SignIn.DataverseCheck || !c.Dataverse.Configured() {
			add("PASSWORD_CHANGE_COLUMN", "needs CRMGATE_SIGNIN_DATAVERSE_CHECK=true and CRMGATE_DATAVERSE_URL: the column is read by the sign-in check")
		}
	}
}
