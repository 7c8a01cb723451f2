package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/pages"
)

// loadConfig reads and validates the configuration from environ.
func loadConfig(environ []string) (*config.Config, error) {
	cfg, err := config.Load(environ)
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	return cfg, nil
}

// newLogger builds the process logger from the configuration.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// loadPolicy compiles the policy file, or the single-upstream default policy
// (everything behind sign-in) when only CRMGATE_UPSTREAM_URL is set.
func loadPolicy(cfg *config.Config) (*policies.Policy, error) {
	if cfg.PolicyFile == "" {
		return policies.Parse("CRMGATE_UPSTREAM_URL", []byte(defaultPolicy(cfg.UpstreamURL)))
	}
	p, err := policies.LoadFile(cfg.PolicyFile)
	if err != nil {
		return nil, err
	}
	if len(p.Upstreams) == 0 {
		if cfg.UpstreamURL == "" {
			return nil, fmt.Errorf("%s: no upstreams; list some or set CRMGATE_UPSTREAM_URL", cfg.PolicyFile)
		}
		up, err := policies.Parse("CRMGATE_UPSTREAM_URL", []byte(defaultPolicy(cfg.UpstreamURL)))
		if err != nil {
			return nil, err
		}
		p.Upstreams = up.Upstreams
	}
	return p, nil
}

func defaultPolicy(upstreamURL string) string {
	return fmt.Sprintf("upstreams:\n  - name: default\n    url: %q\nroutes:\n  - name: default\n    paths: [\"/**\"]\n    access: authenticated\n", upstreamURL)
}

// newRenderer parses the pages with the configured branding and overrides.
func newRenderer(cfg *config.Config) (*pages.Renderer, error) {
	var origins []string
	for _, o := range cfg.RedirectAllowlist {
		if origin, err := config.ParseOrigin(o); err == nil {
			origins = append(origins, origin)
		}
	}
	return pages.New(pages.Options{Dir: cfg.Branding.TemplatesDir, FormActionOrigins: origins, Branding: pages.Branding{
		SiteName: cfg.Branding.SiteName, LogoURL: cfg.Branding.LogoURL, PrimaryColor: cfg.Branding.BrandColor, AuthPrefix: cfg.AuthPrefix}})
}

// gateway is everything serve runs, built from a validated configuration.
type gateway struct {
	store     *store.DB
	auth      *authz.Service
	handler   *proxy.Server
	registry  *prometheus.Registry
	accessBuf *proxy.LineBuffer // nil when the access log is off
	outbox    *authz.OutboxWorker
	dataverse *dataverseConn // nil when no Dataverse is configured
}

// Close flushes the access log and closes the store.
func (g *gateway) Close() error {
	if g.accessBuf != nil {
		_ = g.accessBuf.Close()
	}
	return g.store.Close()
}

// buildGateway connects the packages. Logs go to logw. now may be nil (real clock).
func buildGateway(ctx context.Context, cfg *config.Config, logw io.Writer, now func() time.Time) (*gateway, error) {
	log := newLogger(cfg, logw)
	pol, err := loadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	filters, err := parseContactFilters(cfg, pol)
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
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dv, err := newDataverse(cfg, reg, log, now)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	// Lifecycle events wait in the outbox until the worker hands them to
	// the Dataverse actions of the policy (or, with no Dataverse or no
	// action, marks them done unsent).
	deliverer, err := newDeliverer(dv, pol, log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	outbox, err := authz.NewOutboxWorker(db, deliverer, authz.OutboxOptions{
		PollInterval: cfg.Outbox.PollInterval, MaxBackoff: cfg.Outbox.MaxBackoff, Lease: cfg.Outbox.Lease,
		Now: now, Logger: log, Registerer: reg})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	authOpts := authz.Options{
		OutboxNotify: outbox.Notify,
		// The last active, unbound admin (the break-glass account, who
		// signs in while Dataverse is down) cannot be demoted or bound.
		BreakGlassRole: "admin",
		Password: authz.PasswordParams{Memory: cfg.Password.MemoryKiB, Iterations: cfg.Password.Iterations,
			Parallelism: cfg.Password.Parallelism, SaltLen: authz.DefaultPasswordParams.SaltLen, KeyLen: authz.DefaultPasswordParams.KeyLen},
		MaxFailures:     cfg.SignIn.MaxFailures,
		LockoutDuration: cfg.SignIn.LockoutDuration,
		ClientRate:      rate.Limit(float64(cfg.SignIn.ClientRate) / 60),
		ClientBurst:     cfg.SignIn.ClientBurst,
		Now:             now,
		Logger:          log,
	}
	if err := contactOptions(cfg, filters, dv, pol.ContactColumns(), &authOpts); err != nil {
		_ = db.Close()
		return nil, err
	}
	auth, err := authz.NewService(db, authOpts)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	var accessLog *slog.Logger
	var accessBuf *proxy.LineBuffer
	if cfg.Log.Access {
		// Batched: one write per 100 ms instead of one per request.
		accessBuf = proxy.NewLineBuffer(logw, 100*time.Millisecond, 64<<10)
		accessLog = newLogger(cfg, accessBuf)
	}
	srv, err := proxy.New(proxy.Options{
		PublicURL: cfg.PublicURL, AuthPrefix: cfg.AuthPrefix, Policy: pol, Auth: auth, Pages: renderer,
		CookieName: cfg.CookieName(), CookieDomain: cfg.Cookie.Domain, CookieKeys: cookieKeys,
		SigningKeys: signingKeys, TokenTTL: cfg.Signing.TokenTTL,
		IdleTimeout: cfg.Session.IdleTimeout, AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		RememberTimeout: cfg.Session.RememberTimeout, StampCheckInterval: cfg.Session.StampCheckInterval,
		ContactRevalidateInterval: cfg.Session.ContactRevalidateInterval, ContactGrace: contactGrace(cfg.Session.ContactGrace),
		TrustedProxies: cfg.TrustedProxies, RedirectAllowlist: cfg.RedirectAllowlist,
		MaxIdleConnsPerHost: cfg.Proxy.MaxIdleConnsPerHost, DialTimeout: cfg.Proxy.DialTimeout,
		ResponseHeaderTimeout: cfg.Proxy.ResponseHeaderTimeout,
		SiteName:              cfg.Branding.SiteName, Logger: log, AccessLog: accessLog, Registerer: reg, Now: now,
	})
	if err != nil {
		if accessBuf != nil {
			_ = accessBuf.Close()
		}
		_ = db.Close()
		return nil, err
	}
	return &gateway{store: db, auth: auth, handler: srv, registry: reg, accessBuf: accessBuf, outbox: outbox, dataverse: dv}, nil
}

// listen opens the public and ops listeners.
func listen(publicAddr, opsAddr string) (pub, ops net.Listener, err error) {
	pub, err = net.Listen("tcp", publicAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", publicAddr, err)
	}
	ops, err = net.Listen("tcp", opsAddr)
	if err != nil {
		_ = pub.Close()
		return nil, nil, fmt.Errorf("listen %s: %w", opsAddr, err)
	}
	return pub, ops, nil
}

// serveGateway serves g on the listeners until ctx ends, then shuts down gracefully.
func serveGateway(ctx context.Context, cfg *config.Config, g *gateway, log *slog.Logger, pub, ops net.Listener) error {
	// The outbox worker runs for as long as the listeners do.
	wctx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		if err := g.outbox.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("outbox worker stopped", "err", err)
		}
	}()
	defer func() { stopWorker(); <-workerDone }()
	ready := &proxy.Readiness{}
	return proxy.Listeners{
		Public: pub, Ops: ops, PublicHandler: g.handler, OpsHandler: proxy.OpsHandler(ready, g.registry),
		Ready: ready, ShutdownDelay: cfg.Shutdown.Delay, ShutdownTimeout: cfg.Shutdown.Timeout, Logger: log,
	}.Serve(ctx)
}

func runServe(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := loadConfig(environ)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	if len(cfg.Unknown) > 0 {
		log.Warn("ignoring unknown settings (typos?)", "names", strings.Join(cfg.Unknown, ","))
	}
	g, err := buildGateway(ctx, cfg, stderr, nil)
	if err != nil {
		return err
	}
	defer g.Close()
	pub, ops, err := listen(cfg.Listen, cfg.OpsListen)
	if err != nil {
		return err
	}
	return serveGateway(ctx, cfg, g, log, pub, ops)
}

// runCheckConfig validates everything serve would load and prints every
// problem; the error makes the exit status non-zero.
func runCheckConfig(_ context.Context, environ []string, stdout io.Writer) error {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return errors.New("configuration is invalid")
	}
	var problems []error
	if err := cfg.Validate(); err != nil {
		problems = append(problems, err)
	}
	if cfg.PolicyFile != "" || cfg.UpstreamURL != "" {
		if pol, err := loadPolicy(cfg); err != nil {
			problems = append(problems, err)
		} else {
			warnings, err := checkDataverse(cfg, pol)
			if err != nil {
				problems = append(problems, err)
			}
			for _, w := range warnings {
				fmt.Fprintf(stdout, "warning: %s\n", w)
			}
		}
	}
	if _, err := newRenderer(cfg); err != nil {
		problems = append(problems, err)
	}
	for _, u := range cfg.Unknown {
		fmt.Fprintf(stdout, "warning: %s is not a crmgate setting\n", u)
	}
	if len(problems) > 0 {
		fmt.Fprintln(stdout, errors.Join(problems...))
		return errors.New("configuration is invalid")
	}
	fmt.Fprintln(stdout, "configuration is valid")
	return nil
}

func runGenKeys(stdout io.Writer) error {
	ck, err := config.GenerateCookieKey()
	if err != nil {
		return err
	}
	sk, err := config.GenerateSigningKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CRMGATE_COOKIE_KEYS=%s\n\n# CRMGATE_SIGNING_KEYS (or put it in a file and set CRMGATE_SIGNING_KEYS_FILE):\n%s", ck, sk)
	return nil
}

// contactGrace maps the setting (0 = no grace) to proxy.Options (0 = default, negative = none).
func contactGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
