package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz/registration"
)

// RegistrationConfig configures self-registration at /.auth/register
// (package authz/registration).
type RegistrationConfig struct {
	Mode          string        `env:"MODE" envDefault:"off" desc:"Self-registration at /.auth/register: off (no page, no link on the sign-in page), open (new accounts are active), approval (new accounts wait as pending for an administrator) or invitation (only by redeeming an invitation at /.auth/invitation). The email address is the username."`
	ConfirmEmail  bool          `env:"CONFIRM_EMAIL" envDefault:"true" desc:"A new account confirms its email address with an emailed single-use link before it may sign in (and before any binding by email). Needs CRMGATE_SMTP_URL."`
	ConfirmTTL    time.Duration `env:"CONFIRM_TTL" envDefault:"24h" desc:"How long a confirmation link works; 5m to 168h. A new link revokes the older ones."`
	CreateContact bool          `env:"CREATE_CONTACT" envDefault:"false" desc:"Create a Dataverse contact for every confirmed registration (firstname, lastname, emailaddress1 and CRMGATE_REGISTRATION_FIELDS) and bind the account to it (lookup), through the outbox: a Dataverse outage delays it and loses nothing. The account signs in once bound. false: the binding rules (CRMGATE_BINDING_*) apply at confirmation. Needs CRMGATE_DATAVERSE_URL."`
	Fields        string        `env:"FIELDS" desc:"Extra plain-text contact columns of the form, comma-separated column:Label pairs, e.g. telephone1:Phone,jobtitle:Job title (at most 10; optional fields). Stored with the registration and written to the contact when one is created."`
	ClientRate    int           `env:"CLIENT_RATE" envDefault:"20" desc:"Registrations and confirmation resends allowed per client address (an IPv6 /64) per hour; bursts of a quarter of it. Counted in the database across every replica."`
	EmailRate     int           `env:"EMAIL_RATE" envDefault:"5" desc:"Registrations and confirmation resends allowed per email address per hour; bursts of 3. Counted in the database across every replica (the address kept only as a hash)."`
}

// maxRegistrationFields bounds CRMGATE_REGISTRATION_FIELDS.
const maxRegistrationFields = 10

// RegistrationFields parses CRMGATE_REGISTRATION_FIELDS.
func (r RegistrationConfig) RegistrationFields() ([]registration.Field, error) {
	var out []registration.Field
	if strings.TrimSpace(r.Fields) == "" {
		return nil, nil
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(r.Fields, ",") {
		col, label, _ := strings.Cut(strings.TrimSpace(item), ":")
		col, label = strings.TrimSpace(col), strings.TrimSpace(label)
		if err := registration.ValidField(col); err != nil {
			return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "registration: "))
		}
		if label == "" {
			label = col
		}
		if len(label) > 100 || strings.ContainsAny(label, "<>\"") {
			return nil, fmt.Errorf("label of %s must be plain text of at most 100 characters", col)
		}
		if seen[col] {
			return nil, fmt.Errorf("%s is listed twice", col)
		}
		seen[col] = true
		out = append(out, registration.Field{Column: col, Label: label})
	}
	if len(out) > maxRegistrationFields {
		return nil, fmt.Errorf("at most %d fields, got %d", maxRegistrationFields, len(out))
	}
	return out, nil
}

// RegistrationMode is the mode as the registration package names it.
func (r RegistrationConfig) RegistrationMode() registration.Mode {
	return registration.Mode(strings.ToLower(strings.TrimSpace(r.Mode)))
}

// validateRegistration checks the registration section.
func (c *Config) validateRegistration(add func(name, format string, args ...any)) {
	r := c.Registration
	mode := r.RegistrationMode()
	if !mode.Valid() {
		add("REGISTRATION_MODE", "must be off, open, approval or invitation, got %q", r.Mode)
		return
	}
	if r.ConfirmTTL < 5*time.Minute || r.ConfirmTTL > 7*24*time.Hour {
		add("REGISTRATION_CONFIRM_TTL", "must be between 5m and 168h, got %s", r.ConfirmTTL)
	}
	if r.ClientRate < 1 || r.ClientRate > 100000 {
		add("REGISTRATION_CLIENT_RATE", "must be between 1 and 100000, got %d", r.ClientRate)
	}
	if r.EmailRate < 1 || r.EmailRate > 1000 {
		add("REGISTRATION_EMAIL_RATE", "must be between 1 and 1000, got %d", r.EmailRate)
	}
	if _, err := r.RegistrationFields(); err != nil {
		add("REGISTRATION_FIELDS", "%v", err)
	}
	if r.CreateContact && !c.Dataverse.Configured() {
		add("REGISTRATION_CREATE_CONTACT", "needs Dataverse (CRMGATE_DATAVERSE_URL)")
	}
	if mode != registration.ModeOpen && mode != registration.ModeApproval {
		return
	}
	if !r.ConfirmEmail && c.Binding.AutoMapEmail {
		add("REGISTRATION_CONFIRM_EMAIL", "must be true with CRMGATE_BINDING_AUTO_MAP_EMAIL: an unconfirmed address would bind its registrant to the contact of whoever owns it")
	}
	if r.ConfirmEmail && !c.SMTP.Configured() {
		add("REGISTRATION_CONFIRM_EMAIL", "needs a mail server (CRMGATE_SMTP_URL) to send the confirmation links; set it, or set CRMGATE_REGISTRATION_CONFIRM_EMAIL=false (then anyone may register any address)")
	}
}
