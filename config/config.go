// Package config holds crmgate's one configuration struct, read from
// CRMGATE_* environment variables, and its single pure validation step.
//
// Structured rules (routes, upstreams, policies) live in the YAML policy file
// named by CRMGATE_POLICY_FILE and are compiled by package policies; this
// package only carries the file name.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/store/dburl"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/smtpurl"
)

// Prefix is the prefix of every environment variable crmgate reads.
const Prefix = "CRMGATE_"

// Config is the whole gateway configuration. The zero value is not usable:
// build it with Load, which applies the documented defaults, then call
// Validate.
//
// Fields tagged secret:"true" may also be given as <NAME>_FILE, the path of
// a file holding the value (as mounted from a Kubernetes Secret); setting
// both is an error, unless <NAME> is empty (then the file wins, so that a
// container can override a value its image sets). Secrets are never
// printed by String or logged.
type Config struct {
	PublicURL            string        `env:"PUBLIC_URL" desc:"External URL of the gateway, scheme://host[:port]. Issuer of X-Current-User; https makes cookies Secure and __Host- prefixed. Required."`
	Listen               string        `env:"LISTEN" envDefault:":8080" desc:"Address of the public listener."`
	OpsListen            string        `env:"OPS_LISTEN" envDefault:":9090" desc:"Address of the ops listener (/livez, /readyz, /metrics). Keep it off the public network."`
	AuthPrefix           string        `env:"AUTH_PREFIX" envDefault:"/.auth" desc:"Path prefix of the gateway's own pages and APIs; never proxied."`
	PolicyFile           string        `env:"POLICY_FILE" desc:"YAML file of upstreams and route rules, compiled at start-up. Required unless UPSTREAM_URL is set (then everything needs sign-in)."`
	UpstreamURL          string        `env:"UPSTREAM_URL" desc:"Default upstream used when the policy file lists none."`
	DatabaseURL          string        `env:"DATABASE_URL" envDefault:"sqlite:crmgate.db" secret:"true" desc:"Accounts store: sqlite:PATH (embedded, default) or postgres://... for several replicas."`
	TrustedProxies       []string      `env:"TRUSTED_PROXIES" desc:"Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed for the client address (throttling, logs) and whose X-Forwarded-* and client-IP headers (X-Real-IP, CF-Connecting-IP, ...) reach the upstream. Empty: the TCP peer is the client, and such headers are removed."`
	UnderscoresInHeaders bool          `env:"UNDERSCORES_IN_HEADERS" envDefault:"false" desc:"Keep client header names containing '_' unless they fold onto a header the gateway sets, removes or decides on (X_Forwarded_For, X_Current_User). false (default, as nginx's underscores_in_headers off): every such name is removed."`
	GatewayBodyTimeout   time.Duration `env:"GATEWAY_BODY_TIMEOUT" envDefault:"10s" desc:"How long the gateway's own pages and APIs wait for a request body (sign-in form, REST API); a slower client gets 408. 1s to 10m."`
	RedirectAllowlist    []string      `env:"REDIRECT_ALLOWLIST" desc:"Comma-separated absolute origins (https://app.example.com) that redirect_url may point to besides same-site relative paths."`

	Cookie      CookieConfig   `envPrefix:"COOKIE_"`
	Session     SessionConfig  `envPrefix:"SESSION_"`
	Signing     SigningConfig  `envPrefix:"SIGNING_"`
	SignIn      SignInConfig   `envPrefix:"SIGNIN_"`
	Password    PasswordConfig `envPrefix:"PASSWORD_"`
	Branding    BrandingConfig
	Proxy       ProxyConfig       `envPrefix:"PROXY_"`
	Log         LogConfig         `envPrefix:"LOG_"`
	Shutdown    ShutdownConfig    `envPrefix:"SHUTDOWN_"`
	Dataverse   DataverseConfig   `envPrefix:"DATAVERSE_"`
	Binding     BindingConfig     `envPrefix:"BINDING_"`
	Outbox      OutboxConfig      `envPrefix:"OUTBOX_"`
	SMTP        SMTPConfig        `envPrefix:"SMTP_"`
	Credentials CredentialsConfig `envPrefix:"CREDENTIALS_"`
	Tokens      TokensConfig      `envPrefix:"TOKENS_"`
	Jobs        JobsConfig        `envPrefix:"JOBS_"`
	Hooks       HooksConfig       `envPrefix:"HOOKS_"`

	Registration RegistrationConfig `envPrefix:"REGISTRATION_"`
	Recovery     RecoveryConfig
	Invitations  InvitationsConfig `envPrefix:"INVITATIONS_"`

	// Unknown lists CRMGATE_* variables that name no setting (likely typos).
	// Load fills it; it is reported as a warning, not an error, because
	// Kubernetes injects CRMGATE_SERVICE_* variables for a Service named crmgate.
	Unknown []string `env:"-"`
}

// CookieConfig configures the session cookie.
type CookieConfig struct {
	Keys   string `env:"KEYS" secret:"true" desc:"Comma-separated base64 secrets of at least 32 bytes, newest first. The first encodes; all decode (rotation). Generate with: crmgate gen-keys."`
	Name   string `env:"NAME" envDefault:"crmgate_session" desc:"Session cookie name; with an https public URL and no domain it gets the __Host- prefix."`
	Domain string `env:"DOMAIN" desc:"Cookie Domain attribute. Empty (default) makes the cookie host-only, the safest choice."`
}

// SessionConfig bounds session lifetimes.
type SessionConfig struct {
	IdleTimeout               time.Duration `env:"IDLE_TIMEOUT" envDefault:"1h" desc:"A session unused for this long ends."`
	AbsoluteTimeout           time.Duration `env:"ABSOLUTE_TIMEOUT" envDefault:"12h" desc:"A session ends this long after sign-in, however active."`
	RememberTimeout           time.Duration `env:"REMEMBER_TIMEOUT" envDefault:"720h" desc:"Absolute and idle lifetime of a \"keep me signed in\" session; its cookie is persistent."`
	StampCheckInterval        time.Duration `env:"STAMP_CHECK_INTERVAL" envDefault:"2m" desc:"How often a session's security stamp is checked against the store, so a disabled user or changed password ends sessions."`
	ContactRevalidateInterval time.Duration `env:"CONTACT_REVALIDATE_INTERVAL" envDefault:"5m" desc:"How old a session's contact snapshot may get before Dataverse re-checks it (the sign-in check again); a deactivated or unbound contact then ends the session. Proxied requests make no Dataverse request in between."`
	ContactGrace              time.Duration `env:"CONTACT_GRACE" envDefault:"15m" desc:"How much longer a contact snapshot is trusted while Dataverse cannot answer; after that the session ends."`
}

// SigningConfig configures the X-Current-User JWT.
type SigningConfig struct {
	Keys     string        `env:"KEYS" secret:"true" desc:"PEM ECDSA P-256 private keys (PKCS#8 or SEC1), newest first. The first signs; all are published in the JWKS (rotation). Generate with: crmgate gen-keys."`
	TokenTTL time.Duration `env:"TOKEN_TTL" envDefault:"5m" desc:"Lifetime of X-Current-User tokens, at most 5m. Tokens are reused per session and audience until shortly before expiry."`
}

// SignInConfig configures brute-force defences.
type SignInConfig struct {
	MaxFailures        int           `env:"MAX_FAILURES" envDefault:"5" desc:"Failed passwords from one client address (an IPv6 /64) that lock that address out of the account; other addresses, the owner's among them, may still sign in."`
	AccountMaxFailures int           `env:"ACCOUNT_MAX_FAILURES" envDefault:"20" desc:"Failed passwords from all addresses within CRMGATE_SIGNIN_LOCKOUT_DURATION that soft-lock an account: until it ends, only addresses without a recent failure on the account have their password checked, so the owner still signs in from their own network. At least CRMGATE_SIGNIN_MAX_FAILURES."`
	LockoutDuration    time.Duration `env:"LOCKOUT_DURATION" envDefault:"15m" desc:"How long both lockouts last, and how long a failed password is remembered."`
	ClientRate         int           `env:"CLIENT_RATE" envDefault:"10" desc:"Sign-in attempts per minute allowed from one client address, counted in the database across every replica."`
	ClientBurst        int           `env:"CLIENT_BURST" envDefault:"10" desc:"Burst of sign-in attempts allowed from one client address."`
	// DataverseCheck is off by default so that configuring Dataverse (for
	// lifecycle actions, say) never starts refusing sign-ins by itself.
	DataverseCheck      bool `env:"DATAVERSE_CHECK" envDefault:"false" desc:"Check bound users against Dataverse at sign-in (one request): the bound contact must exist and be active, and pass the policy file's dataverse.signin_filter. Fails closed while Dataverse is unavailable; unbound users (break-glass admins) are never checked. Off by default, so that a contact deactivated in Dataverse still signs in. Needs CRMGATE_DATAVERSE_URL."`
	RequireLogonEnabled bool `env:"REQUIRE_LOGON_ENABLED" envDefault:"true" desc:"With CRMGATE_SIGNIN_DATAVERSE_CHECK, also require the contact's adx_identity_logonenabled to be true, as Power Pages does."`
	// ExplainRefusals is off by default: explanations answer a correct
	// password differently from a wrong one.
	ExplainRefusals bool `env:"EXPLAIN_REFUSALS" envDefault:"false" desc:"Tell a user whose password was right why they cannot sign in (account disabled or waiting for approval, refused by Dataverse). DANGEROUS: it leaks account state and confirms a guessed password to anyone. Off (default): those get the same answer as a wrong password; the audit and structured logs still carry the real reason."`
}

// MinArgon2MemoryKiB is the least argon2id memory cost the configuration
// accepts.
const MinArgon2MemoryKiB = 8 * 1024

// PasswordConfig sets the argon2id cost and the password policy. The argon2id defaults follow the OWASP password
// storage cheat sheet (m=19 MiB, t=2, p=1).
type PasswordConfig struct {
	MemoryKiB   uint32 `env:"ARGON2_MEMORY_KIB" envDefault:"19456" desc:"argon2id memory cost in KiB."`
	Iterations  uint32 `env:"ARGON2_ITERATIONS" envDefault:"2" desc:"argon2id time cost."`
	Parallelism uint8  `env:"ARGON2_PARALLELISM" envDefault:"1" desc:"argon2id parallelism."`
	// MinLength is password.Policy.MinLength; its default must equal
	// password.DefaultMinLength (TestPasswordMinLengthDefault).
	MinLength int `env:"MIN_LENGTH" envDefault:"12" desc:"Fewest characters (Unicode code points) of a password being set (users create and set-password, and every later flow that sets one); 8 to 256. Sign-in never applies it, so existing passwords keep working."`
}

// BrandingConfig customises the gateway's pages.
type BrandingConfig struct {
	SiteName     string `env:"SITE_NAME" envDefault:"crmgate" desc:"Name shown on the gateway's pages."`
	LogoURL      string `env:"LOGO_URL" desc:"Logo image URL (https or a same-site path)."`
	BrandColor   string `env:"BRAND_COLOR" desc:"Primary colour, #RGB or #RRGGBB; text colour on it is chosen for contrast."`
	TemplatesDir string `env:"TEMPLATES_DIR" desc:"Directory whose templates and static files replace the embedded ones of the same name."`
}

// ProxyConfig tunes the upstream transport.
type ProxyConfig struct {
	MaxIdleConnsPerHost   int           `env:"MAX_IDLE_CONNS_PER_HOST" envDefault:"256" desc:"Idle keep-alive connections kept per upstream (Go's default of 2 costs a third of the throughput)."`
	DialTimeout           time.Duration `env:"DIAL_TIMEOUT" envDefault:"5s" desc:"Timeout to connect to an upstream."`
	ResponseHeaderTimeout time.Duration `env:"RESPONSE_HEADER_TIMEOUT" envDefault:"60s" desc:"Timeout for an upstream's response headers (0 = none)."`
	UploadIdleTimeout     time.Duration `env:"UPLOAD_IDLE_TIMEOUT" envDefault:"60s" desc:"A proxied request body (an upload) that sends nothing for this long is cut off with 408; a steady upload, however slow, keeps going. 0 = none, at most 24h."`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `env:"LEVEL" envDefault:"info" desc:"debug, info, warn or error."`
	Format string `env:"FORMAT" envDefault:"json" desc:"json or text."`
	Access bool   `env:"ACCESS" envDefault:"true" desc:"Log one line per request (method, host, path without query, status, route, duration). Lines are written in batches every 100 ms, so a crash may lose the last 100 ms of them; security events are logged unbatched."`
}

// ShutdownConfig configures graceful shutdown.
type ShutdownConfig struct {
	Delay   time.Duration `env:"DELAY" envDefault:"5s" desc:"After SIGTERM, how long /readyz reports not ready before the listener stops accepting (lets load balancers notice)."`
	Timeout time.Duration `env:"TIMEOUT" envDefault:"30s" desc:"How long in-flight requests may take to finish after that."`
}

// DataverseConfig connects the gateway to a Dataverse environment. With URL
// empty (the default) there is no Dataverse: nothing is looked up and
// lifecycle events are dropped once written; every other field must then
// keep its default, so a half-configured connection is an error rather
// than silently off. Lifecycle action names and parameters live in the
// policy file's dataverse section.
type DataverseConfig struct {
	URL                string        `env:"URL" desc:"Dataverse environment URL, e.g. https://org.crm.dynamics.com (https; http only on a loopback host, for the emulator). Empty: no Dataverse, and every other CRMGATE_DATAVERSE_* setting must be left unset."`
	TenantID           string        `env:"TENANT_ID" desc:"Microsoft Entra tenant of the app registration, a GUID or domain name. Required with CRMGATE_DATAVERSE_URL."`
	ClientID           string        `env:"CLIENT_ID" desc:"Application (client) id GUID of the app registration whose application user calls Dataverse. Required with CRMGATE_DATAVERSE_URL."`
	ClientSecret       string        `env:"CLIENT_SECRET" secret:"true" desc:"Client secret of the app registration. Set exactly one of CLIENT_SECRET, CERTIFICATE_FILE and FEDERATED_TOKEN_FILE."`
	CertificateFile    string        `env:"CERTIFICATE_FILE" desc:"PEM file holding the registered certificate and its unencrypted RSA private key (read at start-up); the alternative to a client secret."`
	FederatedTokenFile string        `env:"FEDERATED_TOKEN_FILE" desc:"File holding a federated identity token (e.g. a projected Kubernetes service account token for workload identity), read at every token request so it may rotate."`
	AuthorityHost      string        `env:"AUTHORITY_HOST" envDefault:"https://login.microsoftonline.com" desc:"Microsoft Entra host the token is requested from (https; http only on a loopback host). Change it for sovereign clouds or the emulator."`
	Timeout            time.Duration `env:"TIMEOUT" envDefault:"30s" desc:"Timeout of one HTTP attempt to Dataverse or Entra, reading the answer included."`
	MaxConcurrency     int           `env:"MAX_CONCURRENCY" envDefault:"52" desc:"Requests in flight to Dataverse per replica; 52 is Dataverse's concurrent-request limit per user. Dataverse's x-ms-dop-hint answer header (its recommended degree of parallelism) lowers it while it recommends less, never above this."`
	// InteractiveBudget bounds the Dataverse calls a person waits for.
	// Background work (the outbox, CLI commands) keeps Timeout and the
	// client's retry budget.
	InteractiveBudget time.Duration `env:"INTERACTIVE_BUDGET" envDefault:"5s" desc:"How long a Dataverse call a person waits for (the sign-in check and binding lookups at sign-in, a session's contact revalidation on a proxied request, admin and profile contact edits) may take in all, retries and waits included, before the gateway answers with its try-again page; a Retry-After longer than what is left fails at once. Between 100ms and 1m. The outbox worker and CLI commands keep CRMGATE_DATAVERSE_TIMEOUT per attempt and their longer retry budget."`
	ContactCacheTTL   time.Duration `env:"CONTACT_CACHE_TTL" envDefault:"1m" desc:"How long a contact read to revalidate sessions is shared by every session of that contact before Dataverse is asked again (concurrent revalidations of one contact also share one request). Sign-ins always ask Dataverse. A change made in Dataverse reaches a session at most CRMGATE_SESSION_CONTACT_REVALIDATE_INTERVAL plus this late."`
	WebRoleModel      string        `env:"WEB_ROLE_MODEL" envDefault:"standard" desc:"Power Pages data model of web roles: standard (adx_webrole) or enhanced (powerpagecomponent)."`
}

// Configured reports whether a Dataverse environment is configured.
func (d DataverseConfig) Configured() bool { return d.URL != "" }

// dataverseDefaults is DataverseConfig as Load builds it when no
// CRMGATE_DATAVERSE_* variable is set.
var dataverseDefaults = DataverseConfig{AuthorityHost: "https://login.microsoftonline.com", Timeout: 30 * time.Second,
	MaxConcurrency: 52, InteractiveBudget: 5 * time.Second, ContactCacheTTL: time.Minute, WebRoleModel: "standard"}

// BindingConfig configures how users are bound to Dataverse contacts. The
// zero value is not what Load builds; with no Dataverse configured every
// field must keep its default (Validate). The custom mode's filter lives in
// the policy file's dataverse.binding_filter.
type BindingConfig struct {
	DefaultMode    string `env:"DEFAULT_MODE" envDefault:"none" desc:"Binding of new users: none (unbound until an administrator binds them), username (the contact whose CRMGATE_BINDING_USERNAME_COLUMN equals the username) or custom (the policy file's dataverse.binding_filter, which is then required). Anything but none needs CRMGATE_DATAVERSE_URL."`
	UsernameColumn string `env:"USERNAME_COLUMN" envDefault:"adx_identity_username" desc:"Contact column a username binding compares with the username (a Dataverse logical column name)."`
	// AutoMapEmail is dangerous with self-registration: see its desc.
	// SyncFields is parsed by SyncFieldMap.
	SyncFields   string `env:"SYNC_FIELDS" desc:"Field sync between users and their bound contacts: comma-separated user_field=contact_column pairs, user fields being email, first_name, last_name and display_name, e.g. first_name=firstname,last_name=lastname,email=emailaddress1. A sign-in or session revalidation pulls the columns into the account and a change on the profile page pushes to the contact; Dataverse wins a conflict. email, and fields mapped to columns Dataverse computes (fullname), are pull-only. Empty (default) syncs nothing. Needs CRMGATE_DATAVERSE_URL and CRMGATE_SIGNIN_DATAVERSE_CHECK=true (pulls happen at the sign-in check)."`
	AutoMapEmail bool   `env:"AUTO_MAP_EMAIL" envDefault:"false" desc:"Bind each new user to the single active contact whose emailaddress1 equals the user's email and that no other user is bound to. DANGEROUS where people register themselves: it binds on an email address that is not yet confirmed, so anyone registering with a customer's address receives that customer's contact. Enable only where administrators create the accounts. Needs CRMGATE_DATAVERSE_URL."`
}

// syncFields are the user fields CRMGATE_BINDING_SYNC_FIELDS may name.
var syncFields = []string{"email", "first_name", "last_name", "display_name"}

// SyncFieldMap parses SyncFields into user field → contact column; nil
// when empty. It reports every malformed pair, unknown field, invalid
// column, and field or column named twice.
func (b BindingConfig) SyncFieldMap() (map[string]string, error) {
	if strings.TrimSpace(b.SyncFields) == "" {
		return nil, nil
	}
	m := map[string]string{}
	cols := map[string]string{}
	var errs []error
	for _, pair := range strings.Split(b.SyncFields, ",") {
		field, col, ok := strings.Cut(strings.TrimSpace(pair), "=")
		field, col = strings.TrimSpace(field), strings.TrimSpace(col)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%q is not user_field=contact_column", pair))
			continue
		case !slices.Contains(syncFields, field):
			errs = append(errs, fmt.Errorf("unknown user field %q (want %s)", field, strings.Join(syncFields, ", ")))
			continue
		}
		if err := dataverse.ValidContactColumn(col); err != nil {
			errs = append(errs, fmt.Errorf("%s: column %w", field, err))
			continue
		}
		if _, dup := m[field]; dup {
			errs = append(errs, fmt.Errorf("%s is mapped twice", field))
			continue
		}
		if other, dup := cols[strings.ToLower(col)]; dup {
			errs = append(errs, fmt.Errorf("%s and %s both map to column %s", other, field, col))
			continue
		}
		m[field], cols[strings.ToLower(col)] = col, field
	}
	return m, errors.Join(errs...)
}

// Binding modes accepted by CRMGATE_BINDING_DEFAULT_MODE.
const (
	BindingModeNone     = "none"
	BindingModeUsername = "username"
	BindingModeCustom   = "custom"
)

// bindingDefaults is BindingConfig as Load builds it when no
// CRMGATE_BINDING_* variable is set.
var bindingDefaults = BindingConfig{DefaultMode: BindingModeNone, UsernameColumn: "adx_identity_username"}

// OutboxConfig tunes the delivery of durable events (user lifecycle events
// to Dataverse). Events are never dropped: a failing event is retried
// forever, at most MaxBackoff apart.
type OutboxConfig struct {
	PollInterval time.Duration `env:"POLL_INTERVAL" envDefault:"5s" desc:"How often each replica looks for due outbox events; events written by this replica are picked up at once."`
	MaxBackoff   time.Duration `env:"MAX_BACKOFF" envDefault:"10m" desc:"Longest wait between two delivery attempts of a failing event (the wait starts at 1s and doubles)."`
	Lease        time.Duration `env:"LEASE" envDefault:"2m" desc:"How long a replica owns the events it is delivering; after a crash they are retried by any replica once it ends. Must exceed CRMGATE_DATAVERSE_TIMEOUT; an attempt still running at its end is cancelled."`
}

// SMTPConfig configures outgoing mail (package mail). Mail waits in the
// outbox: a mail server outage delays it, a permanent refusal (5xx) is
// recorded failed. The zero URL means no mail server: mail events are
// recorded failed unsent.
type SMTPConfig struct {
	URL     string        `env:"URL" secret:"true" desc:"Mail server: smtps://user:pass@host:465 (implicit TLS), smtp://user:pass@host:587 (STARTTLS, required) or smtp://host:25?tls=none (a local relay without TLS and without credentials). Percent-encode special characters of user and password. Empty: no mail is sent."`
	From    string        `env:"FROM" desc:"Sender address of every mail, e.g. 'Example <noreply@example.com>'. Required with CRMGATE_SMTP_URL."`
	Timeout time.Duration `env:"TIMEOUT" envDefault:"30s" desc:"Longest exchange with the mail server for one mail (connect, TLS, AUTH, send); 1s to 5m, below CRMGATE_OUTBOX_LEASE."`
}

// Configured reports whether a mail server is set.
func (s SMTPConfig) Configured() bool { return s.URL != "" }

// validateSMTP checks the SMTP settings with the rules the sender uses
// (smtpurl.Parse, mail.ValidAddress); no message echoes the password.
func (c *Config) validateSMTP(add func(name, format string, args ...any)) {
	s := c.SMTP
	if s.URL != "" {
		if _, err := smtpurl.Parse(s.URL); err != nil {
			add("SMTP_URL", "%s", strings.TrimPrefix(err.Error(), "SMTP URL: "))
		}
		if s.From == "" {
			add("SMTP_FROM", "required with CRMGATE_SMTP_URL")
		}
	} else if s.From != "" {
		add("SMTP_FROM", "set without CRMGATE_SMTP_URL: no mail would be sent")
	}
	if s.From != "" {
		if err := mail.ValidAddress(s.From); err != nil {
			add("SMTP_FROM", "%v", err)
		}
	}
	if s.Timeout < time.Second || s.Timeout > 5*time.Minute {
		add("SMTP_TIMEOUT", "must be between 1s and 5m, got %s", s.Timeout)
	} else if s.URL != "" && s.Timeout >= c.Outbox.Lease {
		add("SMTP_TIMEOUT", "must be below CRMGATE_OUTBOX_LEASE (%s) so that one attempt fits in it, got %s", c.Outbox.Lease, s.Timeout)
	}
}

var companionSuffixRE = regexp.MustCompile(`_[0-9]+$`)

var colorRE = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// Validate checks the whole configuration and reports every problem at once,
// joined with errors.Join; nil means valid. It reads no files and changes
// nothing.
func (c *Config) Validate() error {
	var errs []error
	add := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	}

	if c.PublicURL == "" {
		add("PUBLIC_URL", "required (e.g. https://app.example.com)")
	} else if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("PUBLIC_URL", "must be an absolute http or https URL, got %q", c.PublicURL)
	} else if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		add("PUBLIC_URL", "must be an origin without path, query, fragment or user info, got %q", c.PublicURL)
	}
	for name, addr := range map[string]string{"LISTEN": c.Listen, "OPS_LISTEN": c.OpsListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add(name, "must be host:port, got %q", addr)
		}
	}
	if c.Listen == c.OpsListen && c.Listen != "" {
		add("OPS_LISTEN", "must differ from CRMGATE_LISTEN")
	}
	if !validPrefix(c.AuthPrefix) {
		add("AUTH_PREFIX", "must start with / and be one or more plain segments without a trailing slash, got %q", c.AuthPrefix)
	}
	if c.PolicyFile == "" && c.UpstreamURL == "" {
		add("POLICY_FILE", "required unless CRMGATE_UPSTREAM_URL is set")
	}
	if c.UpstreamURL != "" {
		if u, err := url.Parse(c.UpstreamURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			add("UPSTREAM_URL", "must be an absolute http or https URL without query or fragment, got %q", c.UpstreamURL)
		}
	}
	if c.DatabaseURL == "" {
		add("DATABASE_URL", "required")
	} else if _, err := dburl.Parse(c.DatabaseURL); err != nil {
		// The rule the store opens it with; the message never echoes a password.
		add("DATABASE_URL", "%s", strings.TrimPrefix(err.Error(), "database URL: "))
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			if _, err2 := netip.ParseAddr(strings.TrimSpace(p)); err2 != nil {
				add("TRUSTED_PROXIES", "%q is not a CIDR or IP address", p)
			}
		}
	}
	for _, o := range c.RedirectAllowlist {
		if _, err := ParseOrigin(o); err != nil {
			add("REDIRECT_ALLOWLIST", "%v", err)
		}
	}

	if _, err := c.Cookie.DecodeKeys(); err != nil {
		add("COOKIE_KEYS", "%v", err)
	}
	if !cookieNameRE.MatchString(c.Cookie.Name) {
		add("COOKIE_NAME", "must be a cookie token of letters, digits, '-' or '_', got %q", c.Cookie.Name)
	} else if companionSuffixRE.MatchString(c.Cookie.Name) {
		// <name>_2 … hold the parts of a large session: another gateway's
		// cookie of such a name on the same domain would collide with them.
		add("COOKIE_NAME", "must not end in '_' and digits (the gateway names a large session's extra parts <name>_2, <name>_3, ...), got %q", c.Cookie.Name)
	}
	if c.Cookie.Domain != "" && strings.HasPrefix(c.Cookie.Name, "__Host-") {
		add("COOKIE_DOMAIN", "a __Host- cookie cannot have a Domain")
	}

	s := c.Session
	for name, d := range map[string]time.Duration{"SESSION_IDLE_TIMEOUT": s.IdleTimeout, "SESSION_ABSOLUTE_TIMEOUT": s.AbsoluteTimeout, "SESSION_REMEMBER_TIMEOUT": s.RememberTimeout, "SESSION_STAMP_CHECK_INTERVAL": s.StampCheckInterval} {
		if d <= 0 {
			add(name, "must be positive, got %s", d)
		}
	}
	if s.IdleTimeout > s.AbsoluteTimeout {
		add("SESSION_IDLE_TIMEOUT", "must not exceed CRMGATE_SESSION_ABSOLUTE_TIMEOUT")
	}
	if s.ContactRevalidateInterval < 30*time.Second || s.ContactRevalidateInterval > 24*time.Hour {
		add("SESSION_CONTACT_REVALIDATE_INTERVAL", "must be between 30s and 24h, got %s", s.ContactRevalidateInterval)
	}
	if s.ContactGrace < 0 || s.ContactGrace > 7*24*time.Hour {
		add("SESSION_CONTACT_GRACE", "must be between 0s and 168h, got %s", s.ContactGrace)
	}
	if s.StampCheckInterval > 15*time.Minute {
		add("SESSION_STAMP_CHECK_INTERVAL", "must be at most 15m so revoked sessions end promptly, got %s", s.StampCheckInterval)
	}

	if _, err := c.Signing.PrivateKeys(); err != nil {
		add("SIGNING_KEYS", "%v", err)
	}
	if c.Signing.TokenTTL < 30*time.Second || c.Signing.TokenTTL > 5*time.Minute {
		add("SIGNING_TOKEN_TTL", "must be between 30s and 5m, got %s", c.Signing.TokenTTL)
	}

	if c.SignIn.MaxFailures < 1 {
		add("SIGNIN_MAX_FAILURES", "must be at least 1")
	}
	if c.SignIn.AccountMaxFailures < 1 || c.SignIn.AccountMaxFailures < c.SignIn.MaxFailures {
		add("SIGNIN_ACCOUNT_MAX_FAILURES", "must be at least 1 and at least SIGNIN_MAX_FAILURES (%d), got %d", c.SignIn.MaxFailures, c.SignIn.AccountMaxFailures)
	}
	if c.SignIn.LockoutDuration <= 0 {
		add("SIGNIN_LOCKOUT_DURATION", "must be positive")
	}
	if c.SignIn.ClientRate < 1 || c.SignIn.ClientBurst < 1 {
		add("SIGNIN_CLIENT_RATE", "rate and burst must be at least 1")
	}

	p := c.Password
	if err := (password.Policy{MinLength: p.MinLength}).Validate(); err != nil || p.MinLength == 0 {
		add("PASSWORD_MIN_LENGTH", "must be between %d and %d, got %d", password.MinMinLength, password.MaxLength, p.MinLength)
	}
	if p.MemoryKiB < MinArgon2MemoryKiB {
		// A floor for production strength; the password package's bounds
		// (below) only keep a hash computable, and tests go lower.
		add("PASSWORD_ARGON2_MEMORY_KIB", "must be at least %d (8 MiB), got %d", MinArgon2MemoryKiB, p.MemoryKiB)
	} else if err := (password.Params{Memory: p.MemoryKiB, Iterations: p.Iterations, Parallelism: p.Parallelism,
		SaltLen: password.Default.SaltLen, KeyLen: password.Default.KeyLen}).Validate(); err != nil {
		// The rule the sign-in service applies, reported here with the others.
		add("PASSWORD_ARGON2_MEMORY_KIB", "the argon2id parameters (memory %d KiB, %d iterations, parallelism %d) are unusable: %s",
			p.MemoryKiB, p.Iterations, p.Parallelism, strings.TrimPrefix(err.Error(), "password: params: "))
	}

	if strings.TrimSpace(c.Branding.SiteName) == "" {
		add("SITE_NAME", "must not be empty")
	}
	if c.Branding.BrandColor != "" && !colorRE.MatchString(c.Branding.BrandColor) {
		add("BRAND_COLOR", "must be #RGB or #RRGGBB, got %q", c.Branding.BrandColor)
	}
	if l := c.Branding.LogoURL; l != "" {
		if u, err := url.Parse(l); err != nil || !(u.Scheme == "https" || (u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/"))) {
			add("LOGO_URL", "must be an https URL or a path starting with /, got %q", l)
		}
	}

	if c.Proxy.MaxIdleConnsPerHost < 2 {
		add("PROXY_MAX_IDLE_CONNS_PER_HOST", "must be at least 2")
	}
	if c.Proxy.DialTimeout <= 0 {
		add("PROXY_DIAL_TIMEOUT", "must be positive")
	}
	if c.Proxy.ResponseHeaderTimeout < 0 {
		add("PROXY_RESPONSE_HEADER_TIMEOUT", "must not be negative")
	}
	if d := c.Proxy.UploadIdleTimeout; d < 0 || d > 24*time.Hour || d > 0 && d < time.Second {
		add("PROXY_UPLOAD_IDLE_TIMEOUT", "must be 0 (none) or between 1s and 24h, got %s", d)
	}
	if d := c.GatewayBodyTimeout; d < time.Second || d > 10*time.Minute {
		add("GATEWAY_BODY_TIMEOUT", "must be between 1s and 10m, got %s", d)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("LOG_FORMAT", "must be json or text, got %q", c.Log.Format)
	}
	if c.Shutdown.Delay < 0 || c.Shutdown.Timeout <= 0 {
		add("SHUTDOWN_TIMEOUT", "delay must not be negative and timeout must be positive")
	}
	c.validateDataverse(add)
	c.validateBinding(add)
	o := c.Outbox
	if o.PollInterval < 10*time.Millisecond || o.PollInterval > time.Hour {
		add("OUTBOX_POLL_INTERVAL", "must be between 10ms and 1h, got %s", o.PollInterval)
	}
	if o.MaxBackoff < time.Second {
		add("OUTBOX_MAX_BACKOFF", "must be at least 1s, got %s", o.MaxBackoff)
	}
	if o.Lease < time.Second {
		add("OUTBOX_LEASE", "must be at least 1s, got %s", o.Lease)
	} else if c.Dataverse.Configured() && o.Lease <= c.Dataverse.Timeout {
		add("OUTBOX_LEASE", "must exceed CRMGATE_DATAVERSE_TIMEOUT (%s) so that one delivery attempt fits in it, got %s", c.Dataverse.Timeout, o.Lease)
	}
	c.validateSMTP(add)
	c.validateCredentials(add)
	c.validateRegistration(add)
	c.validateRecovery(add)
	c.validateTokens(add)
	c.validateJobs(add)
	c.validateInvitations(add)
	c.validateHooks(add)
	return errors.Join(errs...)
}

// ValidateDataverse checks the Dataverse section alone, with the rules
// Validate applies to it, for commands (crmgate users set-binding) that
// need Dataverse but not the rest of the configuration.
func (c *Config) ValidateDataverse() error {
	var errs []error
	c.validateDataverse(func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	})
	return errors.Join(errs...)
}

// validateDataverse checks the Dataverse section: complete when URL is set,
// untouched when it is not.
func (c *Config) validateDataverse(add func(name, format string, args ...any)) {
	d := c.Dataverse
	if !d.Configured() {
		var set []string
		for _, f := range []struct {
			name    string
			changed bool
		}{
			{"TENANT_ID", d.TenantID != ""},
			{"CLIENT_ID", d.ClientID != ""},
			{"CLIENT_SECRET", d.ClientSecret != ""},
			{"CERTIFICATE_FILE", d.CertificateFile != ""},
			{"FEDERATED_TOKEN_FILE", d.FederatedTokenFile != ""},
			{"AUTHORITY_HOST", d.AuthorityHost != dataverseDefaults.AuthorityHost},
			{"TIMEOUT", d.Timeout != dataverseDefaults.Timeout},
			{"MAX_CONCURRENCY", d.MaxConcurrency != dataverseDefaults.MaxConcurrency},
			{"INTERACTIVE_BUDGET", d.InteractiveBudget != dataverseDefaults.InteractiveBudget},
			{"CONTACT_CACHE_TTL", d.ContactCacheTTL != dataverseDefaults.ContactCacheTTL},
			{"WEB_ROLE_MODEL", d.WebRoleModel != dataverseDefaults.WebRoleModel},
		} {
			if f.changed {
				set = append(set, Prefix+"DATAVERSE_"+f.name)
			}
		}
		if len(set) > 0 {
			add("DATAVERSE_URL", "required because %s set (leave every CRMGATE_DATAVERSE_* setting unset to run without Dataverse)",
				strings.Join(set, ", "))
		}
		return
	}
	if err := checkServiceURL(d.URL); err != nil {
		add("DATAVERSE_URL", "%v", err)
	}
	if err := checkServiceURL(d.AuthorityHost); err != nil {
		add("DATAVERSE_AUTHORITY_HOST", "%v", err)
	}
	if d.TenantID == "" {
		add("DATAVERSE_TENANT_ID", "required with CRMGATE_DATAVERSE_URL")
	} else if !tenantRE.MatchString(d.TenantID) {
		add("DATAVERSE_TENANT_ID", "must be a tenant GUID or domain name, got %q", d.TenantID)
	}
	if d.ClientID == "" {
		add("DATAVERSE_CLIENT_ID", "required with CRMGATE_DATAVERSE_URL")
	} else if _, err := dataverse.ParseID(d.ClientID); err != nil {
		add("DATAVERSE_CLIENT_ID", "must be the application (client) id, a GUID like 0f8fad5b-d9cb-469f-a165-70867728950e, got %q", d.ClientID)
	}
	creds := 0
	for _, v := range []string{d.ClientSecret, d.CertificateFile, d.FederatedTokenFile} {
		if v != "" {
			creds++
		}
	}
	if creds != 1 {
		add("DATAVERSE_CLIENT_SECRET", "set exactly one credential of CRMGATE_DATAVERSE_CLIENT_SECRET, CRMGATE_DATAVERSE_CERTIFICATE_FILE and CRMGATE_DATAVERSE_FEDERATED_TOKEN_FILE (%d set)", creds)
	}
	if d.Timeout <= 0 {
		add("DATAVERSE_TIMEOUT", "must be positive, got %s", d.Timeout)
	}
	if d.MaxConcurrency < 1 || d.MaxConcurrency > 1000 {
		add("DATAVERSE_MAX_CONCURRENCY", "must be between 1 and 1000, got %d", d.MaxConcurrency)
	}
	if d.InteractiveBudget < 100*time.Millisecond || d.InteractiveBudget > time.Minute {
		add("DATAVERSE_INTERACTIVE_BUDGET", "must be between 100ms and 1m (a person is waiting), got %s", d.InteractiveBudget)
	}
	if d.ContactCacheTTL <= 0 {
		add("DATAVERSE_CONTACT_CACHE_TTL", "must be positive, got %s", d.ContactCacheTTL)
	}
	if d.WebRoleModel != "standard" && d.WebRoleModel != "enhanced" {
		add("DATAVERSE_WEB_ROLE_MODEL", "must be standard or enhanced, got %q", d.WebRoleModel)
	}
}

// validateBinding checks the binding and sign-in check settings, which
// only make sense with a Dataverse connection.
func (c *Config) validateBinding(add func(name, format string, args ...any)) {
	b := c.Binding
	switch b.DefaultMode {
	case BindingModeNone, BindingModeUsername, BindingModeCustom:
	case "lookup":
		add("BINDING_DEFAULT_MODE", "cannot be lookup: a lookup binding names one contact, so it is set per user; use none, username or custom")
	default:
		add("BINDING_DEFAULT_MODE", "must be none, username or custom, got %q", b.DefaultMode)
	}
	if err := dataverse.ValidContactColumn(b.UsernameColumn); err != nil {
		add("BINDING_USERNAME_COLUMN", "%v", err)
	}
	if _, err := b.SyncFieldMap(); err != nil {
		add("BINDING_SYNC_FIELDS", "%v", err)
	} else if strings.TrimSpace(b.SyncFields) != "" && !c.SignIn.DataverseCheck && c.Dataverse.Configured() {
		add("BINDING_SYNC_FIELDS", "needs CRMGATE_SIGNIN_DATAVERSE_CHECK=true: fields are pulled from the contact at the sign-in check, and without pulls every profile change would lose to Dataverse as a conflict")
	}
	if c.Dataverse.Configured() {
		return
	}
	var set []string
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"BINDING_DEFAULT_MODE", b.DefaultMode != bindingDefaults.DefaultMode},
		{"BINDING_USERNAME_COLUMN", b.UsernameColumn != bindingDefaults.UsernameColumn},
		{"BINDING_AUTO_MAP_EMAIL", b.AutoMapEmail != bindingDefaults.AutoMapEmail},
		{"BINDING_SYNC_FIELDS", b.SyncFields != ""},
		{"SIGNIN_DATAVERSE_CHECK", c.SignIn.DataverseCheck},
		{"SIGNIN_REQUIRE_LOGON_ENABLED", !c.SignIn.RequireLogonEnabled},
	} {
		if f.changed {
			set = append(set, Prefix+f.name)
		}
	}
	if len(set) > 0 {
		add("DATAVERSE_URL", "required because %s set (bindings and the sign-in check read Dataverse contacts)", strings.Join(set, ", "))
	}
}

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9.-]{1,253}$`)

// checkServiceURL accepts an origin (scheme://host[:port]) that is https, or
// http on a loopback host (an emulator on the same machine).
func checkServiceURL(raw string) error {
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return fmt.Errorf("must be an absolute https URL, got %q", raw)
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("must be scheme://host[:port] without path, query or user info, got %q", raw)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		return fmt.Errorf("must be https (http only on a loopback host), got %q", raw)
	}
	return nil
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

var cookieNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func validPrefix(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-~", r)) {
				return false
			}
		}
	}
	return true
}

// ParseOrigin parses s as an absolute http(s) origin and returns it in the
// form scheme://host[:port], lower-cased.
func ParseOrigin(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an origin like https://app.example.com", s)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// SecureCookies reports whether cookies must carry the Secure attribute,
// which is when the public URL is https.
func (c *Config) SecureCookies() bool { return strings.HasPrefix(c.PublicURL, "https://") }

// CookieName returns the session cookie name in effect: the configured name,
// with the __Host- prefix added when cookies are Secure and host-only.
func (c *Config) CookieName() string {
	if c.SecureCookies() && c.Cookie.Domain == "" && !strings.HasPrefix(c.Cookie.Name, "__Host-") {
		return "__Host-" + c.Cookie.Name
	}
	return c.Cookie.Name
}
