package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/pages"
)

// loadConfig reads and validates the configuration from environ.
func loadConfig(environ []string) (*config.Config, error) {
	cfg, err := config.Check(environ)
	if err != nil {
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

// newComposer builds the mail composer: the embedded mail templates and
// their overrides in CRMGATE_TEMPLATES_DIR/mail, with the pages' branding
// and every link from CRMGATE_PUBLIC_URL.
func newComposer(cfg *config.Config) (*mail.Composer, error) {
	return mail.NewComposer(mail.ComposerOptions{PublicURL: cfg.PublicURL, AuthPrefix: cfg.AuthPrefix, Dir: cfg.Branding.TemplatesDir,
		Site: mail.Site{Name: cfg.Branding.SiteName, LogoURL: cfg.Branding.LogoURL, Color: cfg.Branding.BrandColor}})
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

// serveGateway serves the started g on the listeners until ctx ends, then
// shuts down gracefully.
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
	// So does the bulk-job worker of the admin console: a job another
	// replica or an earlier process left half done is taken over once its
	// lease has passed.
	jobsDone := make(chan struct{})
	go func() {
		defer close(jobsDone)
		if err := g.auth.Jobs.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("bulk job worker stopped", "err", err)
		}
	}()
	// So does the sweep of dead one-time tokens (every replica sweeps;
	// concurrent sweeps are harmless).
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		if err := g.auth.Tokens.RunSweeper(wctx, g.sweepEvery, cfg.Tokens.Retention); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("token sweep stopped", "err", err)
		}
	}()
	// And the sweep of throttle buckets that are as good as fresh (every
	// replica too).
	throttleSweepDone := make(chan struct{})
	go func() {
		defer close(throttleSweepDone)
		if err := throttle.RunSweeper(wctx, g.store, g.sweepEvery, g.now, log); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("throttle sweep stopped", "err", err)
		}
	}()
	// And the session feed: sign-outs and account changes made through
	// other replicas are honoured here within a second.
	feedDone := make(chan struct{})
	go func() {
		defer close(feedDone)
		if err := g.handler.WatchSessions(wctx, 0); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("session feed stopped", "err", err)
		}
	}()
	defer func() {
		stopWorker()
		<-workerDone
		<-jobsDone
		<-sweepDone
		<-throttleSweepDone
		<-feedDone
	}()
	if g.invitationSource != nil && g.auth.Invitations != nil {
		mailerDone := make(chan struct{})
		go func() {
			defer close(mailerDone)
			if err := g.auth.Invitations.RunDataverseMailer(wctx, g.invitationSource, cfg.Invitations.SendInterval); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("Dataverse invitation mailer stopped", "err", err)
			}
		}()
		defer func() { stopWorker(); <-mailerDone }()
	}
	ready := &proxy.Readiness{}
	return proxy.Listeners{
		Public: pub, Ops: ops, PublicHandler: g.publicHandler(), OpsHandler: proxy.OpsHandler(ready, g.registry),
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
	for _, w := range g.warnings {
		log.Warn(w)
	}
	if err := g.start(ctx); err != nil {
		return err
	}
	if v := g.store.Schema(); v.Database > v.Known {
		log.Warn("the database schema is newer than this crmgate: a newer release migrated it additively; running on it",
			"schema_version", v.Database, "known_version", v.Known)
	}
	// The build's transient memory, most of it the argon2 work area of the
	// dummy password hash (CRMGATE_PASSWORD_ARGON2_MEMORY_KIB), goes back
	// to the operating system now rather than when the scavenger gets to it.
	debug.FreeOSMemory()
	// One line with the effective configuration: what differs from the
	// defaults (secrets only as set), the database and whether Dataverse is on.
	log.Info("configuration", "database", string(g.store.Dialect()), "dataverse", cfg.Dataverse.Configured(),
		slog.GroupAttrs("settings", cfg.Changed()...))
	pub, ops, err := listen(cfg.Listen, cfg.OpsListen)
	if err != nil {
		return err
	}
	return serveGateway(ctx, cfg, g, log, pub, ops)
}

// runCheckConfig builds everything serve would build, starts nothing, and
// prints every problem; the error makes the exit status non-zero. It
// accepts exactly what serve accepts: serve is the same build followed by
// a start that only connects to the database and listens.
func runCheckConfig(ctx context.Context, environ []string, stdout io.Writer) error {
	cfg, err := config.Check(environ)
	var problems []error
	if err != nil {
		problems = append(problems, err)
		// The policy and the pages are still compiled, so that their
		// problems are reported together with the settings'.
		if cfg.PolicyFile != "" || cfg.UpstreamURL != "" {
			if pol, err := loadPolicy(cfg); err != nil {
				problems = append(problems, err)
			} else if err := checkUpstreamLoops(cfg, pol); err != nil {
				problems = append(problems, err)
			}
		}
		if _, err := newRenderer(cfg); err != nil {
			problems = append(problems, err)
		}
	} else {
		g, err := buildGateway(ctx, cfg, io.Discard, nil)
		if err != nil {
			problems = append(problems, err)
		} else {
			for _, w := range g.warnings {
				fmt.Fprintf(stdout, "warning: %s\n", w)
			}
			_ = g.Close()
		}
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

// runGenKeys prints a new cookie key and a new ES256 signing key, or, with
// --cookie-keys-file and --signing-key-file, writes each to a new file of
// mode 0600 (never overwriting one) and prints the settings that name them.
// The keys are printed only when they have no file.
func runGenKeys(stdout io.Writer, args ...string) error {
	fs := flag.NewFlagSet("gen-keys", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cookieFile := fs.String("cookie-keys-file", "", "write the cookie key to this new file (mode 0600) for CRMGATE_COOKIE_KEYS_FILE")
	signingFile := fs.String("signing-key-file", "", "write the signing key to this new file (mode 0600) for CRMGATE_SIGNING_KEYS_FILE")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("gen-keys: %v (flags: --cookie-keys-file FILE, --signing-key-file FILE)", err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("gen-keys: unexpected argument %q (flags: --cookie-keys-file FILE, --signing-key-file FILE)", fs.Arg(0))}
	}
	if *cookieFile != "" && *cookieFile == *signingFile {
		return usageError{"gen-keys: --cookie-keys-file and --signing-key-file must name different files"}
	}
	ck, err := config.GenerateCookieKey()
	if err != nil {
		return err
	}
	sk, err := config.GenerateSigningKey()
	if err != nil {
		return err
	}
	type secret struct {
		path, value, setting string
		f                    *os.File
	}
	secrets := []*secret{{path: *cookieFile, value: ck + "\n", setting: "CRMGATE_COOKIE_KEYS"}, {path: *signingFile, value: sk, setting: "CRMGATE_SIGNING_KEYS"}}
	// Both files are created before either is written, and a failure
	// removes what this run created, so nothing is left half done.
	var err2 error
	for _, s := range secrets {
		if s.path == "" {
			continue
		}
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			err2 = fmt.Errorf("gen-keys: %s already exists; it is never overwritten (remove it, or name another file)", s.path)
			break
		}
		if err != nil {
			err2 = fmt.Errorf("gen-keys: %w", err)
			break
		}
		s.f = f
	}
	for _, s := range secrets {
		if s.f == nil || err2 != nil {
			continue
		}
		if _, err := s.f.WriteString(s.value); err != nil {
			err2 = fmt.Errorf("gen-keys: write %s: %w", s.path, err)
		}
	}
	for _, s := range secrets {
		if s.f == nil {
			continue
		}
		if err := s.f.Close(); err != nil && err2 == nil {
			err2 = fmt.Errorf("gen-keys: write %s: %w", s.path, err)
		}
	}
	if err2 != nil {
		for _, s := range secrets {
			if s.f != nil {
				_ = os.Remove(s.path)
			}
		}
		return err2
	}
	if *cookieFile == "" && *signingFile == "" {
		fmt.Fprintf(stdout, "CRMGATE_COOKIE_KEYS=%s\n\n# CRMGATE_SIGNING_KEYS (or put it in a file and set CRMGATE_SIGNING_KEYS_FILE):\n%s", ck, sk)
		return nil
	}
	for _, s := range secrets {
		switch {
		case s.f != nil:
			// An absolute path, so that the line works from any directory.
			abs, err := filepath.Abs(s.path)
			if err != nil {
				abs = s.path
			}
			fmt.Fprintf(stdout, "%s_FILE=%s\n", s.setting, abs)
		case s.setting == "CRMGATE_COOKIE_KEYS":
			fmt.Fprintf(stdout, "CRMGATE_COOKIE_KEYS=%s\n", ck)
		default:
			fmt.Fprintf(stdout, "# CRMGATE_SIGNING_KEYS:\n%s", sk)
		}
	}
	return nil
}
