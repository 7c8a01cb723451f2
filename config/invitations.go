package config

import (
	"net/url"
	"strings"
	"time"
)

// InvitationsConfig configures invitations (package authz/invitations):
// crmgate's own, and Power Pages invitation records (adx_invitation).
type InvitationsConfig struct {
	SendDataverse      bool          `env:"SEND_DATAVERSE" envDefault:"false" desc:"Email the invitations created in Dataverse (adx_invitation with an invited contact) with a link to /.auth/invitation, found by a periodic query of new records and each sent once across replicas, so no Power Automate flow is needed. Needs Dataverse and CRMGATE_SMTP_URL. The first run only records its time: older invitations are not mailed."`
	SendInterval       time.Duration `env:"SEND_INTERVAL" envDefault:"1m" desc:"How often new Dataverse invitations are looked for, with CRMGATE_INVITATIONS_SEND_DATAVERSE; 10s to 24h."`
	ExistingUserURL    string        `env:"EXISTING_USER_URL" desc:"Where a person whose invited contact or address already has an account is sent to sign in (the portal products' existing user page), with redirect_url back to the invitation added. A same-site path or an allow-listed URL. Empty: the sign-in page."`
	SkipDataverseProof bool          `env:"SKIP_DATAVERSE_PROOF" envDefault:"false" desc:"Dangerous. Make the account of a redeemed Dataverse invitation at once, without mailing a confirmation to the invited contact's address: whoever learns the code is bound to the contact. false (default): the account is made once the mailed link is followed. crmgate's own codes travel only in their mail, so redeeming them proves the address either way."`
	GuessesPerHour     int           `env:"GUESSES_PER_HOUR" envDefault:"20" desc:"Refused invitation codes and confirmation links allowed per client address and hour (burst of the same size), counted in the database across every replica; beyond it the page answers 429 and the refusal is audited. 1 to 10000."`
}

// validateInvitations checks the invitation settings.
func (c *Config) validateInvitations(add func(name, format string, args ...any)) {
	v := c.Invitations
	if v.SendDataverse {
		if !c.Dataverse.Configured() {
			add("INVITATIONS_SEND_DATAVERSE", "needs Dataverse (CRMGATE_DATAVERSE_URL)")
		}
		if !c.SMTP.Configured() {
			add("INVITATIONS_SEND_DATAVERSE", "needs outgoing mail (CRMGATE_SMTP_URL)")
		}
	}
	if v.SendInterval < 10*time.Second || v.SendInterval > 24*time.Hour {
		add("INVITATIONS_SEND_INTERVAL", "must be between 10s and 24h, got %s", v.SendInterval)
	}
	if v.GuessesPerHour < 1 || v.GuessesPerHour > 10000 {
		add("INVITATIONS_GUESSES_PER_HOUR", "must be 1 to 10000, got %d", v.GuessesPerHour)
	}
	if u := v.ExistingUserURL; u != "" {
		p, err := url.Parse(u)
		switch {
		case err != nil || strings.ContainsAny(u, "\\ \t\r\n"):
			add("INVITATIONS_EXISTING_USER_URL", "must be a URL, got %q", u)
		case p.Scheme == "" && p.Host == "":
			if !strings.HasPrefix(u, "/") || strings.HasPrefix(u, "//") {
				add("INVITATIONS_EXISTING_USER_URL", "must be a path starting with one / or an absolute URL, got %q", u)
			}
		case p.Scheme != "https" && p.Scheme != "http":
			add("INVITATIONS_EXISTING_USER_URL", "must be an http(s) URL, got %q", u)
		default:
			origin := strings.ToLower(p.Scheme + "://" + p.Host)
			ok := strings.EqualFold(strings.TrimRight(c.PublicURL, "/"), origin)
			for _, a := range c.RedirectAllowlist {
				ok = ok || strings.EqualFold(strings.TrimRight(a, "/"), origin)
			}
			if !ok {
				add("INVITATIONS_EXISTING_USER_URL", "origin %s is neither CRMGATE_PUBLIC_URL nor in CRMGATE_REDIRECT_ALLOWLIST", origin)
			}
		}
	}
}
