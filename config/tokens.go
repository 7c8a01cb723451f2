package config

import "time"

// TokensConfig configures the one-time tokens of the emailed links
// (confirmation, reset, set-password, invitation; package authz/tokens).
type TokensConfig struct {
	MaxOutstanding int           `env:"MAX_OUTSTANDING" envDefault:"3" desc:"Unused links of one kind (confirmation, reset, ...) a user may hold at once: asking for one more revokes the oldest, so only the newest links work. 1 to 100."`
	Retention      time.Duration `env:"RETENTION" envDefault:"168h" desc:"How long used, expired and revoked one-time tokens are kept (hashed) before the hourly sweep deletes them; until then the audit log tells a reused link from an unknown one. 1h to 8760h."`
}

// validateTokens checks the one-time token settings.
func (c *Config) validateTokens(add func(name, format string, args ...any)) {
	t := c.Tokens
	if t.MaxOutstanding < 1 || t.MaxOutstanding > 100 {
		add("TOKENS_MAX_OUTSTANDING", "must be between 1 and 100, got %d", t.MaxOutstanding)
	}
	if t.Retention < time.Hour || t.Retention > 8760*time.Hour {
		add("TOKENS_RETENTION", "must be between 1h and 8760h, got %s", t.Retention)
	}
}
