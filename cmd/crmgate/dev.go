package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/mail/capture"
	"github.com/crmgate/crmgate/proxy/demo"
)

// demoPolicy is the policy of `crmgate dev`: a public home page, a signed-in
// area and an admin-only area of the demo upstream.
const demoPolicy = `upstreams:
  - name: demo
    url: %q
routes:
  - name: home
    paths: ["/", "/favicon.ico"]
    access: public
  - name: admin
    paths: ["/admin/**"]
    access: authenticated
    roles: [admin]
  - name: account
    paths: ["/account/**", "/api/**"]
    access: authenticated
    contact_columns: [fullname, emailaddress1, _parentcustomerid_value]
dataverse:
  lifecycle_actions:
    created: {name: alex_WPUserCreated, params: {UserId: id, Email: email, Roles: roles}}
    updated: {name: alex_WPUserUpdated, params: {UserId: id, Email: email, Roles: roles, Status: status}}
    deleted: {name: alex_WPUserDeleted, params: {UserId: id, ContactId: contact_id}}
    bound: {name: alex_WPUserBound, params: {UserId: id, ContactId: contact_id}}
    unbound: {name: alex_WPUserUnbound, params: {UserId: id}}
`

// demoActions are the unbound actions of demoPolicy, which the demo
// emulator accepts.
var demoActions = []string{"alex_WPUserCreated", "alex_WPUserUpdated", "alex_WPUserDeleted", "alex_WPUserBound", "alex_WPUserUnbound"}

// The emulator's demo app registration.
const (
	demoTenant   = "emulator.local"
	demoClientID = "00000000-0000-4000-8000-00000000c0de"
)

// demoSeed is the emulator's demo data: an account, a contact for each demo
// account (adx_identity_username = username, so the username binding of
// `crmgate dev` binds them), and web roles. Only alice's contact holds one
// (Partners): the admin's contact holds none, so that the admin's roles
// stay exactly its local [admin]. Bea and Carl (jobtitle Buyer) have no
// account: generate credentials for them with crmgate users
// invite-contacts or the REST API. Dora's contact waits for an account
// named dora (one created pending, then approved).
const demoSeed = `{
  "accounts": [{"accountid": "a0000000-0000-4000-8000-000000000001", "name": "Contoso Partners"}],
  "contacts": [
    {"contactid": "c0000000-0000-4000-8000-000000000001", "firstname": "Ada", "lastname": "Admin",
     "emailaddress1": "admin@demo.crmgate.test", "adx_identity_username": "admin", "adx_identity_logonenabled": true},
    {"contactid": "c0000000-0000-4000-8000-000000000002", "firstname": "Alice", "lastname": "Example",
     "emailaddress1": "alice@demo.crmgate.test", "adx_identity_username": "alice", "adx_identity_logonenabled": true,
     "parentcustomerid_account@odata.bind": "/accounts(a0000000-0000-4000-8000-000000000001)"},
    {"contactid": "c0000000-0000-4000-8000-000000000003", "firstname": "Bea", "lastname": "Buyer",
     "emailaddress1": "bea@demo.crmgate.test", "jobtitle": "Buyer", "adx_identity_logonenabled": true,
     "parentcustomerid_account@odata.bind": "/accounts(a0000000-0000-4000-8000-000000000001)"},
    {"contactid": "c0000000-0000-4000-8000-000000000004", "firstname": "Carl", "lastname": "Client",
     "emailaddress1": "carl@demo.crmgate.test", "jobtitle": "Buyer", "adx_identity_logonenabled": true,
     "parentcustomerid_account@odata.bind": "/accounts(a0000000-0000-4000-8000-000000000001)"},
    {"contactid": "c0000000-0000-4000-8000-000000000005", "firstname": "Dora", "lastname": "Newcomer",
     "emailaddress1": "dora@demo.crmgate.test", "adx_identity_username": "dora", "adx_identity_logonenabled": true}
  ],
  "adx_webroles": [
    {"adx_webroleid": "d0000000-0000-4000-8000-000000000001", "adx_name": "Administrators"},
    {"adx_webroleid": "d0000000-0000-4000-8000-000000000002", "adx_name": "Partners"}
  ],
  "associations": [
    {"relationship": "adx_webrole_contact", "contactid": "c0000000-0000-4000-8000-000000000002", "adx_webroleid": "d0000000-0000-4000-8000-000000000002"}
  ]
}`

// demoAccount is a seeded account of `crmgate dev`.
type demoAccount struct {
	username, email, name string
	roles                 []string
	// unbound leaves the account without a contact (binding mode none),
	// although new users are bound by username.
	unbound bool
}

// demoAccounts are the accounts of `crmgate dev`: users bound to their demo
// contacts, and beside them one unbound admin, the break-glass pattern the
// README recommends: it has no contact, so it signs in while Dataverse is
// down or refuses the bound users, and the gateway refuses to bind, demote,
// disable or delete it while it is the last one.
var demoAccounts = []demoAccount{
	{"admin", "admin@demo.crmgate.test", "Ada Admin", []string{"admin"}, false},
	{"alice", "alice@demo.crmgate.test", "Alice Example", nil, false},
	{"breakglass", "breakglass@demo.crmgate.test", "Break-glass Admin", []string{"admin"}, true},
}

// runDev runs the gateway with everything generated: a temporary SQLite
// database, fresh keys, the demo upstream, a demo policy and seeded accounts.
func runDev(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listenAddr := fs.String("listen", "127.0.0.1:8080", "address of the gateway")
	opsAddr := fs.String("ops-listen", "127.0.0.1:9090", "address of the ops listener")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("dev: %v (flags: --listen, --ops-listen)", err)}
	}

	dir, err := os.MkdirTemp("", "crmgate-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	pub, ops, err := listen(*listenAddr, *opsAddr)
	if err != nil {
		return fmt.Errorf("%w (choose other ports with --listen and --ops-listen)", err)
	}
	publicURL := "http://" + pub.Addr().String()

	// The demo upstream verifies X-Current-User against the gateway's JWKS.
	upl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upstream := &http.Server{Handler: demo.NewUpstream(demo.UpstreamOptions{
		JWKSURL: publicURL + "/.auth/jwks.json", Issuer: publicURL}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = upstream.Serve(upl) }()
	defer upstream.Close()

	// The Dataverse emulator with demo contacts and the demo lifecycle
	// actions: the gateway is configured against it, so creating the demo
	// users sends their created events.
	dvl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	dvURL := "http://" + dvl.Addr().String()
	dvSecret := rand.Text()
	dvActions := map[string]dataversetest.Action{}
	for _, a := range demoActions {
		dvActions[a] = dataversetest.Action{}
	}
	dv := dataversetest.NewHandler(dataversetest.Options{BaseURL: dvURL, TenantID: demoTenant,
		Clients: []dataversetest.Client{{ID: demoClientID, Secret: dvSecret}}, Actions: dvActions})
	if err := dv.LoadSeed(strings.NewReader(demoSeed)); err != nil {
		return fmt.Errorf("demo seed: %w", err)
	}
	dvServer := &http.Server{Handler: dv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = dvServer.Serve(dvl) }()
	defer dvServer.Close()

	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, fmt.Appendf(nil, demoPolicy, "http://"+upl.Addr().String()), 0o600); err != nil {
		return err
	}
	cookieKey, err := config.GenerateCookieKey()
	if err != nil {
		return err
	}
	signingKey, err := config.GenerateSigningKey()
	if err != nil {
		return err
	}
	env := []string{
		"CRMGATE_PUBLIC_URL=" + publicURL,
		"CRMGATE_LISTEN=" + pub.Addr().String(),
		"CRMGATE_OPS_LISTEN=" + ops.Addr().String(),
		"CRMGATE_POLICY_FILE=" + policyFile,
		"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(dir, "crmgate.db"),
		"CRMGATE_COOKIE_KEYS=" + cookieKey,
		"CRMGATE_SIGNING_KEYS=" + signingKey,
		"CRMGATE_SITE_NAME=crmgate demo",
		"CRMGATE_LOG_FORMAT=text",
		"CRMGATE_SHUTDOWN_DELAY=0s",
		"CRMGATE_DATAVERSE_URL=" + dvURL,
		"CRMGATE_DATAVERSE_AUTHORITY_HOST=" + dvURL,
		"CRMGATE_DATAVERSE_TENANT_ID=" + demoTenant,
		"CRMGATE_DATAVERSE_CLIENT_ID=" + demoClientID,
		"CRMGATE_DATAVERSE_CLIENT_SECRET=" + dvSecret,
		// The demo users are bound by username to their demo contacts and
		// checked against the emulator at every sign-in.
		"CRMGATE_BINDING_DEFAULT_MODE=username",
		"CRMGATE_SIGNIN_DATAVERSE_CHECK=true",
		// Names are kept in step with the contacts: a sign-in pulls them,
		// the profile page pushes changes back to the emulator.
		"CRMGATE_BINDING_SYNC_FIELDS=first_name=firstname,last_name=lastname,display_name=fullname,email=emailaddress1",
	}
	// Branding and logging settings from the environment still apply, and
	// so does a mail server: an explicit CRMGATE_SMTP_URL (a test's
	// server, a team's relay) is used as it is.
	keeps := []string{"CRMGATE_SITE_NAME=", "CRMGATE_BRAND_COLOR=", "CRMGATE_LOGO_URL=", "CRMGATE_TEMPLATES_DIR=", "CRMGATE_LOG_LEVEL=",
		// To try self-registration, the reset and forced password changes
		// against the emulator.
		"CRMGATE_REGISTRATION_", "CRMGATE_SIGNIN_REQUIRE_LOGON_ENABLED=", "CRMGATE_RESET_", "CRMGATE_PASSWORD_CHANGE_COLUMN="}
	externalMail := slices.ContainsFunc(environ, func(kv string) bool {
		return strings.HasPrefix(kv, "CRMGATE_SMTP_URL=") && kv != "CRMGATE_SMTP_URL=" || strings.HasPrefix(kv, "CRMGATE_SMTP_URL_FILE=")
	})
	if externalMail {
		keeps = append(keeps, "CRMGATE_SMTP_")
	}
	// Anyone may register in the demo (unless the environment says
	// otherwise): the confirmation mail lands on the dev mail page, and the
	// new contact is created in the emulator.
	if !slices.ContainsFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, "CRMGATE_REGISTRATION_") }) {
		env = append(env, "CRMGATE_REGISTRATION_MODE=open", "CRMGATE_REGISTRATION_CREATE_CONTACT=true")
	}
	for _, kv := range environ {
		for _, keep := range keeps {
			if strings.HasPrefix(kv, keep) {
				env = append(env, kv)
			}
		}
	}
	// Otherwise the gateway sends to the built-in capture, through its
	// ordinary SMTP sender and outbox, and the dev mail page shows it.
	var capt *capture.Server
	if !externalMail {
		if capt, err = capture.Listen(capture.Options{Max: devMailKept}); err != nil {
			return fmt.Errorf("dev mail capture: %w", err)
		}
		defer capt.Close()
		env = append(env, "CRMGATE_SMTP_URL="+capt.URL(), "CRMGATE_SMTP_FROM="+devMailFrom)
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	g, err := buildGateway(ctx, cfg, stderr, nil)
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.start(ctx); err != nil {
		return err
	}
	mailLine := "Mail:  sent to " + redactedSMTP(cfg.SMTP.URL) + " (CRMGATE_SMTP_URL)"
	if capt != nil {
		page, err := devMailPage(cfg, g, capt, log)
		if err != nil {
			return err
		}
		g.public = page
		mailLine = "Mail:  " + publicURL + cfg.AuthPrefix + devMailPath + " (every mail the gateway sends, captured here; none leaves this machine)"
	}

	// The accounts are created before anything is printed, so that their
	// audit log lines (on the log) come before the block, not inside it.
	var accountLines strings.Builder
	for _, a := range demoAccounts {
		pw := rand.Text()[:16]
		if _, err := g.auth.Accounts.CreateUser(ctx, accounts.NewUser{Username: a.username, Email: a.email, DisplayName: a.name,
			Password: pw, Roles: a.roles}, "dev"); err != nil && !errors.Is(err, authz.ErrConflict) {
			return err
		}
		if a.unbound {
			if err := g.auth.Accounts.SetBinding(ctx, a.username, authz.Binding{Mode: authz.BindingNone}, "dev"); err != nil {
				return err
			}
		}
		fmt.Fprintf(&accountLines, "  %-10s password %s  roles [%s]\n", a.username, pw, strings.Join(a.roles, ","))
	}
	accountLines.WriteString("  (admin and alice are bound to demo contacts; breakglass is not: the break-glass admin signs in even while Dataverse is down)\n")
	fmt.Fprintf(stdout, "crmgate dev: open %s\n\nDemo accounts (generated for this run):\n%s", publicURL, accountLines.String())
	fmt.Fprintf(stdout, "\nPages: %s/ (public), %s/account (signed in), %s/admin (admin only)\n", publicURL, publicURL, publicURL)
	fmt.Fprintf(stdout, "Admin: %s%s/admin/ (the admin console; sign in as admin or breakglass)\n", publicURL, cfg.AuthPrefix)
	fmt.Fprintf(stdout, "Ops:   http://%s/metrics\n", ops.Addr())
	fmt.Fprintln(stdout, mailLine)
	fmt.Fprintf(stdout, "Dataverse: %s/api/data/v9.2/ (emulator; tenant %s, client %s, secret %s)\n", dvURL, demoTenant, demoClientID, dvSecret)
	fmt.Fprintf(stdout, "Data:  %s (deleted on exit). Press Ctrl-C to stop.\n", dir)
	return serveGateway(ctx, cfg, g, log, pub, ops)
}
