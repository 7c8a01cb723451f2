package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/profile"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/smtpurl"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/pages"
)

// The wiring below connects each capability to the interface its consumer
// declares. These assertions make a renamed method a build error rather
// than a silently disabled feature.
var (
	_ proxy.PasswordSignIn        = (*signin.Service)(nil)
	_ proxy.SessionStore          = (*signin.Service)(nil)
	_ proxy.SessionFeed           = (*store.DB)(nil)
	_ proxy.ContactRevalidator    = (*signin.Service)(nil)
	_ proxy.UserDirectory         = (*accounts.Service)(nil)
	_ proxy.BindingEditor         = (*accounts.Service)(nil)
	_ proxy.ProfileEditor         = (*profile.Service)(nil)
	_ proxy.APIKeys               = (*apikeys.Service)(nil)
	_ proxy.ContactSearch         = (*binding.Resolver)(nil)
	_ proxy.AuditReader           = (*audit.Log)(nil)
	_ proxy.AuditRecorder         = (*audit.Log)(nil)
	_ proxy.Registrar             = (*registration.Service)(nil)
	_ registration.ContactCreator = (*crmclient.Directory)(nil)
	_ outbox.Deliverer            = (*registration.ContactDeliverer)(nil)
	_ proxy.Onboarding            = (*onboarding.Service)(nil)
	_ proxy.PasswordRecovery      = (*recovery.Service)(nil)
	_ proxy.PasswordAdmin         = (*accounts.Service)(nil)
	_ recovery.ContactWriter      = (*crmclient.Directory)(nil)
	_ outbox.Deliverer            = recovery.ContactFlagDeliverer{}
	_ proxy.Invitations           = (*invitations.Service)(nil)

	_ wiring.Store               = (*store.DB)(nil)
	_ wiring.Contacts            = (*crmclient.Directory)(nil)
	_ wiring.Contacts            = (*crmclient.CachedDirectory)(nil)
	_ signin.Snapshots           = (*crmclient.CachedDirectory)(nil)
	_ proxy.ContactInvalidator   = (*crmclient.CachedDirectory)(nil)
	_ proxy.WebhookStore         = (*store.DB)(nil)
	_ proxy.HookAuditor          = (*audit.Log)(nil)
	_ lifecycle.ActionCaller     = (*crmclient.Client)(nil)
	_ outbox.Deliverer           = (*lifecycle.ActionDeliverer)(nil)
	_ outbox.Deliverer           = (*mail.Deliverer)(nil)
	_ outbox.Deliverer           = mail.Unconfigured{}
	_ mail.Sender                = (*mail.SMTP)(nil)
	_ invitations.Dataverse      = (*crmclient.Directory)(nil)
	_ invitations.Recorder       = (*crmclient.Directory)(nil)
	_ invitations.NewInvitations = (*crmclient.Directory)(nil)
	_ outbox.Deliverer           = invitations.WriteBack{}
)

// gateway is everything serve runs, built from a validated configuration
// by buildGateway, which starts nothing.
type gateway struct {
	store   *store.DB
	auth    *wiring.Services
	handler *proxy.Server
	// public is what the public listener serves; nil means handler. dev
	// puts its mail page in front of handler here.
	public http.Handler
	pages  *pages.Renderer
	// sweepEvery is how often the one-time tokens are swept; zero means
	// tokens.DefaultSweepInterval (hourly).
	sweepEvery time.Duration
	// now is the clock of the build (nil: the real one), which the
	// throttles' sweep shares with the throttles.
	now       func() time.Time
	registry  *prometheus.Registry
	accessBuf *proxy.LineBuffer // nil when the access log is off
	outbox    *outbox.Worker
	dataverse *dataverseConn // nil when no Dataverse is configured
	// invitationSource lists new Dataverse invitations to mail
	// (CRMGATE_INVITATIONS_SEND_DATAVERSE); nil when off.
	invitationSource invitations.NewInvitations
	// warnings are settings that are valid but probably not what the
	// operator meant; check-config prints them, serve logs them.
	warnings []string
}

// publicHandler is what the public listener serves.
func (g *gateway) publicHandler() http.Handler {
	if g.public != nil {
		return g.public
	}
	return g.handler
}

// start connects to the database and applies pending migrations: the only
// I/O of the build, left out of check-config.
func (g *gateway) start(ctx context.Context) error {
	return g.store.Start(ctx)
}

// Close flushes the access log and closes the store.
func (g *gateway) Close() error {
	if g.accessBuf != nil {
		_ = g.accessBuf.Close()
	}
	return g.store.Close()
}

// buildGateway builds the whole gateway from a validated configuration:
// the policy, the pages, the keys, the store (not yet connected), the
// Dataverse client (contacting nothing), the identity layer, the outbox
// worker and the HTTP edge. serve, dev and check-config all build with it.
// Logs go to logw. now may be nil (real clock).
func buildGateway(_ context.Context, cfg *config.Config, logw io.Writer, now func() time.Time) (_ *gateway, err error) {
	log := newLogger(cfg, logw)
	pol, err := loadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkUpstreamLoops(cfg, pol); err != nil {
		return nil, err
	}
	filters, err := parseContactFilters(cfg, pol)
	if err != nil {
		return nil, err
	}
	actions, err := lifecycleActions(pol)
	if err != nil {
		return nil, err
	}
	renderer, err := newRenderer(cfg)
	if err != nil {
		return nil, err
	}
	cookieKeys, err := cfg.Cookie.DecodeKeys()
	if err != nil {
		return nil, err
	}
	signingKeys, err := cfg.Signing.PrivateKeys()
	if err != nil {
		return nil, err
	}
	db, err := store.New(cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	g := &gateway{store: db, pages: renderer, warnings: dataverseWarnings(cfg, pol), now: now}
	defer func() {
		if err != nil {
			_ = g.Close()
		}
	}()
	g.registry = prometheus.NewRegistry()
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if g.dataverse, err = newDataverse(cfg, g.registry, log, now); err != nil {
		return nil, err
	}
	// Lifecycle events wait in the outbox until the worker hands them to
	// the Dataverse actions of the policy (or, with no Dataverse or no
	// action, marks them done unsent).
	deliverer, err := newDeliverer(g.dataverse, actions, len(pol.Dataverse.LifecycleActions) > 0, log)
	if err != nil {
		return nil, err
	}
	// Mail waits in the outbox too; the worker hands each event to the
	// deliverer of its kind.
	mailer, err := newMailDeliverer(cfg.SMTP, g.registry, log)
	if err != nil {
		return nil, err
	}
	kinds := outbox.ByKind{lifecycle.Kind: deliverer, mail.Kind: mailer}
	if g.dataverse != nil {
		// A forced password change sets the contact's column back to
		// false through the outbox: retried until Dataverse takes it.
		kinds[recovery.ContactFlagKind] = recovery.ContactFlagDeliverer{Contacts: g.dataverse.directory}
		// Redemptions of Dataverse invitations are written back by the
		// background client (its retries and timeout, not a person's).
		kinds[invitations.OutboxKind] = invitations.WriteBack{Dataverse: g.dataverse.directory}
	}
	if g.outbox, err = outbox.NewWorker(db, kinds, outbox.Options{
		PollInterval: cfg.Outbox.PollInterval, MaxBackoff: cfg.Outbox.MaxBackoff, Lease: cfg.Outbox.Lease,
		Now: now, Logger: log, Registerer: g.registry}); err != nil {
		return nil, err
	}
	wo := identityOptions(cfg, now, log)
	wo.OutboxNotify = g.outbox.Notify
	wo.ResetTTL = cfg.Recovery.ResetTTL
	if wo.Mail, err = newComposer(cfg); err != nil {
		return nil, err
	}
	if err := contactOptions(cfg, filters, g.dataverse, pol.ContactColumns(), &wo); err != nil {
		return nil, err
	}
	wo.SkipInvitationProof = cfg.Invitations.SkipDataverseProof
	if g.dataverse != nil {
		wo.Invitations = g.dataverse.interactive
		if cfg.Invitations.SendDataverse {
			g.invitationSource = g.dataverse.directory
		}
	}
	if g.auth, err = wiring.New(db, wo); err != nil {
		return nil, err
	}
	// Registrations that create their contact wait in the outbox too, so
	// that a Dataverse outage delays them and loses none. The worker
	// starts later (serve), after this entry is in place.
	if cfg.Registration.CreateContact && g.dataverse != nil {
		if kinds[registration.ContactKind], err = registration.NewContactDeliverer(db, g.dataverse.directory, g.auth.Audit, now, log, contactDefaults(cfg)); err != nil {
			return nil, err
		}
	}
	var accessLog *slog.Logger
	if cfg.Log.Access {
		// Batched: one write per 100 ms instead of one per request.
		g.accessBuf = proxy.NewLineBuffer(logw, 100*time.Millisecond, 64<<10)
		accessLog = newLogger(cfg, g.accessBuf)
	}
	s := g.auth
	var passwords proxy.PasswordRecovery
	if s.Recovery != nil { // never a typed nil in the interface
		passwords = s.Recovery
	}
	var invites proxy.Invitations
	if s.Invitations != nil {
		invites = s.Invitations
	}
	var links proxy.SetPasswordLinks
	if s.Onboarding != nil {
		links = s.Onboarding
	}
	// Refused invitation codes are counted in the store, so that every
	// replica counts against one limit.
	guesses, err := throttle.New(db, throttle.InvitationGuesses, throttle.PerHour(cfg.Invitations.GuessesPerHour), cfg.Invitations.GuessesPerHour)
	if err != nil {
		return nil, err
	}
	// The Dataverse webhook (off without a secret) and the contact cache
	// it invalidates (contactOptions built a *crmclient.CachedDirectory).
	var hook *proxy.DataverseHook
	if h := cfg.Hooks.Dataverse; h.Secret != "" {
		hook = &proxy.DataverseHook{Auth: h.Auth, Name: h.Name, Secret: []byte(h.Secret), MaxAge: h.MaxAge,
			MaxBody: h.MaxBody, Store: db, Audit: s.Audit}
	}
	contactCache, _ := wo.Snapshots.(proxy.ContactInvalidator)
	admin, err := contactAdmin(g.dataverse, db, pol, filters, wo, s, now, log)
	if err != nil {
		return nil, err
	}
	// The Dataverse page shows the contact cache's statistics.
	var caches []crmclient.CacheReporter
	if cd, ok := wo.Snapshots.(*crmclient.CachedDirectory); ok {
		caches = append(caches, cd)
	}
	consoleOpts, err := consoleOptions(s, admin, g.dataverse, db, g.outbox.Notify, now, log, caches...)
	if err != nil {
		return nil, err
	}
	if g.handler, err = proxy.New(proxy.Options{
		DataverseHook: hook, ContactCache: contactCache, Console: consoleOpts,
		Recovery: passwords, ResetPages: passwords != nil && cfg.ResetOn(), Passwords: s.Accounts,
		AccountActions: s.Accounts, SetPasswordLinks: links,
		PublicURL: cfg.PublicURL, AuthPrefix: cfg.AuthPrefix, Policy: pol, Pages: renderer,
		SignIn: s.SignIn, Sessions: s.SignIn, SessionFeed: db, Users: s.Accounts, Revalidator: s.SignIn,
		Profiles: s.Profile, APIKeys: s.APIKeys, Bindings: s.Accounts, Contacts: s.Binding, Audit: s.Audit, AuditLog: s.Audit,
		Registration: s.Registration, Onboarding: onboardingCapability(s.Onboarding),
		Invitations: invites, InvitationGuesses: guesses, InvitationExistingUserURL: cfg.Invitations.ExistingUserURL,
		CookieName: cfg.CookieName(), CookieDomain: cfg.Cookie.Domain, CookieKeys: cookieKeys,
		SigningKeys: signingKeys, TokenTTL: cfg.Signing.TokenTTL,
		IdleTimeout: cfg.Session.IdleTimeout, AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		RememberTimeout: cfg.Session.RememberTimeout, StampCheckInterval: cfg.Session.StampCheckInterval,
		ContactRevalidateInterval: cfg.Session.ContactRevalidateInterval, ContactGrace: cfg.Session.ContactGrace,
		TrustedProxies: cfg.TrustedProxies, RedirectAllowlist: cfg.RedirectAllowlist,
		MaxIdleConnsPerHost: cfg.Proxy.MaxIdleConnsPerHost, DialTimeout: cfg.Proxy.DialTimeout,
		ResponseHeaderTimeout: cfg.Proxy.ResponseHeaderTimeout,
		GatewayBodyTimeout:    cfg.GatewayBodyTimeout, UploadIdleTimeout: cfg.Proxy.UploadIdleTimeout,
		UnderscoresInHeaders: cfg.UnderscoresInHeaders,
		SiteName:             cfg.Branding.SiteName, Logger: log, AccessLog: accessLog, Registerer: g.registry, Now: now,
	}); err != nil {
		return nil, err
	}
	return g, nil
}

// identityOptions are the identity layer's options from the configuration,
// Dataverse aside (contactOptions adds it).
func identityOptions(cfg *config.Config, now func() time.Time, log *slog.Logger) wiring.Options {
	return wiring.Options{
		JobLease:           cfg.Jobs.Lease,
		JobPollInterval:    cfg.Jobs.PollInterval,
		Password:           passwordParams(cfg),
		PasswordPolicy:     password.Policy{MinLength: cfg.Password.MinLength},
		MaxFailures:        cfg.SignIn.MaxFailures,
		AccountMaxFailures: cfg.SignIn.AccountMaxFailures,
		LockoutDuration:    cfg.SignIn.LockoutDuration,
		ClientRate:         rate.Limit(float64(cfg.SignIn.ClientRate) / 60),
		ClientBurst:        cfg.SignIn.ClientBurst,
		ExplainRefusals:    cfg.SignIn.ExplainRefusals,
		// The last active, unbound admin (the break-glass account, who
		// signs in while Dataverse is down) cannot be demoted, disabled,
		// bound or deleted.
		BreakGlassRole:            proxy.AdminRole,
		SetPasswordTTL:            cfg.Credentials.SetPasswordTTL,
		CredentialsUsernameColumn: cfg.Credentials.UsernameColumn,
		// A new confirmation or reset link revokes the oldest beyond this.
		MaxOutstandingTokens: cfg.Tokens.MaxOutstanding,
		Registration:         registrationOptions(cfg),
		Now:                  now,
		Logger:               log,
	}
}

// onboardingCapability is the REST API's approval and credentials
// capability: nil (the endpoints answer 404) when the identity layer built
// no onboarding service, rather than a typed nil.
func onboardingCapability(s *onboarding.Service) proxy.Onboarding {
	if s == nil {
		return nil
	}
	return s
}

// contactDefaults are the columns every contact created for a registration
// gets besides its fields: the Power Pages logon flag when the sign-in check
// requires it (the column then exists in that environment, and without it
// the new user would be refused at every sign-in).
func contactDefaults(cfg *config.Config) map[string]any {
	if cfg.SignIn.DataverseCheck && cfg.SignIn.RequireLogonEnabled {
		return map[string]any{registration.LogonEnabledColumn: true}
	}
	return nil
}

// registrationOptions are the self-registration settings of the
// configuration (validated already: the fields parse).
func registrationOptions(cfg *config.Config) registration.Options {
	r := cfg.Registration
	fields, _ := r.RegistrationFields()
	return registration.Options{Mode: r.RegistrationMode(), ConfirmEmail: r.ConfirmEmail, ConfirmTTL: r.ConfirmTTL,
		CreateContact: r.CreateContact, Fields: fields, ClientRate: r.ClientRate, ClientBurst: max(1, r.ClientRate/4),
		EmailRate: r.EmailRate, EmailBurst: min(3, r.EmailRate)}
}

// passwordParams are the argon2id parameters of the configuration, with
// password.Default's salt and key lengths.
func passwordParams(cfg *config.Config) password.Params {
	return password.Params{Memory: cfg.Password.MemoryKiB, Iterations: cfg.Password.Iterations,
		Parallelism: cfg.Password.Parallelism, SaltLen: password.Default.SaltLen, KeyLen: password.Default.KeyLen}
}

// checkUpstreamLoops refuses upstreams that would proxy requests back to the
// gateway itself (config.Config.UpstreamLoop), naming each.
func checkUpstreamLoops(cfg *config.Config, pol *policies.Policy) error {
	var local []netip.Addr
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local = append(local, p.Addr())
			}
		}
	}
	var errs []error
	for _, u := range pol.Upstreams {
		if setting := cfg.UpstreamLoop(u.URL, local); setting != "" {
			errs = append(errs, fmt.Errorf("upstream %q (%s) is the gateway's own address (%s): every request would be proxied back to the gateway", u.Name, u.URL.Redacted(), setting))
		}
	}
	return errors.Join(errs...)
}

// newMailDeliverer is the outbox deliverer of mail: SMTP to the configured
// server, or, with none, mail.Unconfigured (every mail recorded failed).
func newMailDeliverer(c config.SMTPConfig, reg prometheus.Registerer, log *slog.Logger) (outbox.Deliverer, error) {
	if !c.Configured() {
		return mail.Unconfigured{}, nil
	}
	u, err := smtpurl.Parse(c.URL) // validated already; parsed again by the one rule
	if err != nil {
		return nil, fmt.Errorf("CRMGATE_SMTP_URL: %w", err)
	}
	s, err := mail.NewSMTP(mail.SMTPOptions{Server: u, From: c.From, Timeout: c.Timeout})
	if err != nil {
		return nil, err
	}
	log.Info("outgoing mail configured", "smtp", u.String())
	return mail.NewDeliverer(s, mail.DelivererOptions{Logger: log, Registerer: reg})
}
