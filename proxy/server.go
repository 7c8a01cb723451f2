// Package proxy is crmgate's HTTP edge: the request pipeline, the session
// cookie, the identity headers, the gateway's own pages under the auth
// prefix, and the reverse proxy to the upstreams.
//
// The pipeline, in Server.ServeHTTP, reads top to bottom: strip client
// headers (identity, overrides, forwarding from untrusted peers, underscored
// names) and refuse TRACE/CONNECT → canonicalise → served host → gateway
// pages (and the forward-auth endpoint, verify.go) → cross-origin check → read session
// → check its security stamp → revalidate its contact → save it → forced
// password change → match route → decide → sign identity → proxy.
package proxy

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/patrickmn/go-cache"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy/console"
	"github.com/crmgate/crmgate/proxy/pages"
)

// Options configure a Server. Every field without a documented zero value
// is required, and New reports every one that is missing or invalid: the
// configuration (package config) supplies the defaults, so that no default
// is set twice.
type Options struct {
	PublicURL  string // origin of the gateway, http(s)://host[:port]; the JWT issuer
	AuthPrefix string // the gateway's own path prefix, e.g. "/.auth"
	Policy     *policies.Policy
	Pages      *pages.Renderer

	// The identity layer, one field per capability. Each is the small
	// interface this package declares; cmd/crmgate asserts at compile time
	// that the authz service it passes satisfies it.

	// SignIn checks the sign-in form's credentials (and, for a bound user,
	// asks Dataverse). Required.
	SignIn PasswordSignIn
	// Sessions revokes sessions at sign-out and tells whether one was
	// revoked on another replica. Required.
	Sessions SessionStore
	// SessionFeed lists the sign-outs and account changes made through any
	// replica, for WatchSessions. Nil means none: this replica honours a
	// sign-out or an account change made through another one at the
	// session's next stamp check (StampCheckInterval) only.
	SessionFeed SessionFeed
	// DataverseHook is the receiver of Dataverse webhooks
	// (POST <prefix>/hooks/dataverse; see handlers_hooks.go); nil means
	// none (404): contact changes then reach sessions at
	// ContactRevalidateInterval only.
	DataverseHook *DataverseHook
	// ContactCache is the cache of contact snapshots that revalidation
	// reads; a contact reported changed is dropped from it. Nil means
	// there is none to drop. Dangerous to leave nil when revalidation
	// reads a cache: the forced revalidation would read the old snapshot.
	ContactCache ContactInvalidator
	// Users reads accounts: the security-stamp check of every session and
	// the REST API's listings. Required.
	Users UserDirectory
	// Revalidator re-checks a session's contact snapshot against Dataverse
	// once it is ContactRevalidateInterval old. Nil means snapshots are
	// never refreshed: a contact deactivated in Dataverse keeps its
	// sessions until they expire. Dangerous when routes depend on the
	// contact; leave it nil only without Dataverse.
	Revalidator ContactRevalidator
	// Profiles serves the profile page; nil means there is none (404).
	Profiles ProfileEditor
	// APIKeys authenticates REST API keys; nil means the REST API accepts
	// admin sessions only.
	APIKeys APIKeys
	// Bindings changes users' bindings through the REST API; nil means the
	// binding endpoints answer 404.
	Bindings BindingEditor
	// Contacts searches Dataverse contacts for the REST API; nil means the
	// contact search answers 404.
	Contacts ContactSearch
	// Audit reads the audit trail for the REST API; nil means the audit
	// endpoint answers 404.
	Audit AuditReader
	// AuditLog records the security events the gateway decides itself (an
	// API call refused for a missing permission). Nil means they are only
	// logged.
	AuditLog AuditRecorder
	// Onboarding approves and rejects pending registrations and generates
	// credentials for Dataverse contacts through the REST API; nil means
	// those endpoints answer 404.
	Onboarding Onboarding
	// Registration serves /register, /confirm and /confirm/resend; nil
	// means none of them exists (404). With its mode off, /register
	// answers 404 and the sign-in page shows no link, while confirmation
	// links already sent keep working.
	Registration Registrar
	// Recovery changes passwords: the change page (/password, also the
	// forced change after sign-in) and, with ResetPages, the reset pages.
	// Nil means none of them (404), and a session that must change its
	// password can then only sign out: give it whenever accounts may carry
	// the must-change flag.
	Recovery PasswordRecovery
	// Passwords forces password changes through the REST API
	// (POST /api/users/{id}/force-password-change); nil means 404.
	Passwords PasswordAdmin
	// AccountActions locks, unlocks and signs out users through the REST
	// API (POST /api/users/{id}/lock, /unlock, /revoke-sessions); nil
	// means 404.
	AccountActions AccountActions
	// SetPasswordLinks mails users set-password links through the REST
	// API (POST /api/users/{id}/send-set-password-link); nil means 404.
	SetPasswordLinks SetPasswordLinks
	// ResetPages serves the password reset (/reset, /reset/confirm) and
	// links to it from the sign-in page; it needs Recovery and a mail
	// server (the link is mailed). False: no reset pages and no link.
	ResetPages bool
	// Invitations serves /.auth/invitation and the invitation endpoints
	// of the REST API; nil means neither exists (404).
	Invitations Invitations
	// InvitationGuesses limits the refused invitation codes (and
	// confirmation links) of one client address; nil with Invitations set
	// is an error. Its buckets are in the store, shared by every replica.
	InvitationGuesses *throttle.Limiter
	// InvitationExistingUserURL is where a person whose account already
	// exists is sent to sign in (the portal products' "existing user
	// page"), with redirect_url back to the invitation added; empty means
	// the sign-in page. It must be a same-site path or an allow-listed URL.
	InvitationExistingUserURL string
	// Console is the admin console at <prefix>/admin/: its services (see
	// console.Options). New fills in the prefix, the pages, the error
	// rendering, the logger and the clock. Nil means no console (404).
	Console *console.Options

	CookieName   string   // session cookie name as it should appear in the browser
	CookieDomain string   // empty: host-only (recommended)
	CookieKeys   [][]byte // newest first, each at least 32 bytes

	SigningKeys []*ecdsa.PrivateKey // newest first
	TokenTTL    time.Duration       // lifetime of X-Current-User tokens, 30s to 5m

	IdleTimeout        time.Duration // a session unused this long ends
	AbsoluteTimeout    time.Duration // a session ends this long after sign-in
	RememberTimeout    time.Duration // lifetime of a "keep me signed in" session
	StampCheckInterval time.Duration // how often a session's security stamp is checked
	// ContactRevalidateInterval is how old a session's contact snapshot may
	// get before Dataverse is asked again; required with Revalidator.
	// ContactGrace is how much longer a snapshot is trusted while Dataverse
	// cannot answer; zero means no grace: the session then ends at once.
	ContactRevalidateInterval time.Duration
	ContactGrace              time.Duration

	// TrustedProxies are CIDRs or addresses whose X-Forwarded-For is
	// believed and whose X-Forwarded-* and client-IP headers reach the
	// upstream. Empty: the TCP peer is the client and such headers are
	// removed. Dangerous when too wide: every client inside may claim any
	// address.
	TrustedProxies []string
	// UnderscoresInHeaders keeps client header names that contain "_"
	// unless they fold (case-insensitively, "_" read as "-") onto a header
	// the gateway sets, removes or decides on. False (the default, as
	// nginx's underscores_in_headers off) removes every such name: CGI,
	// PHP and other stacks read X_Forwarded_For as X-Forwarded-For.
	UnderscoresInHeaders bool
	RedirectAllowlist    []string // absolute origins redirect_url may name besides same-site paths

	// Transport carries proxied requests. Nil means a transport tuned for a
	// gateway (see NewTransport) built from MaxIdleConnsPerHost,
	// DialTimeout and ResponseHeaderTimeout (zero: none).
	Transport             http.RoundTripper
	MaxIdleConnsPerHost   int
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration

	// GatewayBodyTimeout is how long the gateway's own pages and APIs wait
	// for a request body, from when the handler starts; a slower body is
	// answered 408. Zero means no limit: dangerous, a client that sends its
	// body slowly then holds a handler for as long as it likes.
	GatewayBodyTimeout time.Duration
	// UploadIdleTimeout is how long a proxied request body may send nothing
	// before it is cut off (408); a steady upload, however slow, keeps going.
	// Zero means no limit.
	UploadIdleTimeout time.Duration

	SiteName   string                // used in the WWW-Authenticate realm
	Logger     *slog.Logger          // nil: discard
	AccessLog  *slog.Logger          // one line per request; nil: no access log
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
	Now        func() time.Time      // nil: time.Now
}

// Server is the gateway's public handler. Build it with New.
type Server struct {
	opts       Options
	log        *slog.Logger
	now        func() time.Time
	prefix     string
	publicURL  *url.URL
	publicHost string // the public URL's host as CanonicalHost returns it
	verifyPath string // the forward-auth endpoint, prefix + "/verify"
	secure     bool
	cookieName string
	csrfName   string

	policy        *policies.Policy
	signIns       PasswordSignIn
	sessionStore  SessionStore
	users         UserDirectory
	apiKeys       APIKeys       // nil: admin sessions only
	profiles      ProfileEditor // nil: no profile page
	invitations   Invitations   // nil: no invitation page or endpoints
	inviteGuesses *throttle.Limiter
	bindings      BindingEditor // nil: no binding endpoints
	contactSearch ContactSearch // nil: no contact search
	onboarding    Onboarding    // nil: no approval or credentials endpoints
	audit         AuditReader   // nil: no audit endpoint
	auditLog      AuditRecorder // nil: refusals only logged
	// refusalsAudited holds the (caller, permission) pairs audited within
	// refusalAuditInterval.
	refusalsAudited *cache.Cache
	registrar       Registrar          // nil: no registration pages
	recovery        PasswordRecovery   // nil: no password pages
	contactColumns  []string           // the policy's union: what a sign-in fetches
	revalidator     ContactRevalidator // nil: contact snapshots are never refreshed
	pages           *pages.Renderer
	codec           *sessionCodec
	sessions        sessionPolicy
	csrf            *csrfTokens
	cop             *http.CrossOriginProtection
	signer          *signer
	redirects       redirectValidator
	clients         clientAddrs
	revoked         revokedSessions
	changedUsers    changedUsers
	// changedContacts are the contacts the Dataverse webhook reported
	// changed; hook is its receiver (nil: none) and contactCache the
	// contact snapshots it invalidates (nil: none).
	changedContacts changedContacts
	hook            *DataverseHook
	contactCache    ContactInvalidator
	sessionFeed     SessionFeed
	sessionCache    sessionCache
	upstreams       map[*policies.Upstream]*upstream
	gateway         http.Handler
	metrics         *metrics
	console         *console.Console // nil: no admin console
}

// New validates opts and builds the server. It starts nothing.
func New(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	pub, err := url.Parse(opts.PublicURL)
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
		errs = append(errs, fmt.Errorf("proxy: public URL %q is not an absolute http(s) URL", opts.PublicURL))
		pub = &url.URL{}
	}
	if !strings.HasPrefix(opts.AuthPrefix, "/") || strings.HasSuffix(opts.AuthPrefix, "/") {
		errs = append(errs, fmt.Errorf("proxy: auth prefix %q must start with / and not end with one", opts.AuthPrefix))
	}
	for _, req := range []struct {
		missing bool
		what    string
	}{
		{opts.Policy == nil, "policy"}, {opts.Pages == nil, "page renderer"}, {opts.SignIn == nil, "sign-in (Options.SignIn)"},
		{opts.Sessions == nil, "session store (Options.Sessions)"}, {opts.Users == nil, "user directory (Options.Users)"},
		{opts.CookieName == "", "cookie name"}, {opts.SiteName == "", "site name"},
	} {
		if req.missing {
			errs = append(errs, errors.New("proxy: no "+req.what))
		}
	}
	if opts.DataverseHook != nil {
		if err := opts.DataverseHook.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if opts.TokenTTL < 30*time.Second || opts.TokenTTL > 5*time.Minute {
		errs = append(errs, fmt.Errorf("proxy: token TTL %s: want 30s to 5m", opts.TokenTTL))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"idle timeout", opts.IdleTimeout}, {"absolute timeout", opts.AbsoluteTimeout}, {"remember timeout", opts.RememberTimeout},
		{"stamp check interval", opts.StampCheckInterval}} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("proxy: %s must be positive", d.name))
		}
	}
	if opts.Revalidator != nil && opts.ContactRevalidateInterval <= 0 {
		errs = append(errs, errors.New("proxy: contact revalidate interval must be positive with a revalidator"))
	}
	if opts.GatewayBodyTimeout < 0 || opts.UploadIdleTimeout < 0 {
		errs = append(errs, errors.New("proxy: body timeouts must not be negative"))
	}
	if opts.ResetPages && opts.Recovery == nil {
		errs = append(errs, errors.New("proxy: the reset pages need Options.Recovery"))
	}
	if opts.ContactGrace < 0 {
		errs = append(errs, errors.New("proxy: contact grace must not be negative"))
	}
	if opts.Invitations != nil && opts.InvitationGuesses == nil {
		errs = append(errs, errors.New("proxy: invitations need a guess limiter (InvitationGuesses)"))
	}
	if opts.Transport == nil && (opts.MaxIdleConnsPerHost < 1 || opts.DialTimeout <= 0 || opts.ResponseHeaderTimeout < 0) {
		errs = append(errs, errors.New("proxy: without a transport, MaxIdleConnsPerHost and DialTimeout must be positive and ResponseHeaderTimeout not negative"))
	}
	maxAge := max(opts.AbsoluteTimeout, opts.RememberTimeout)
	codec, err := newSessionCodec(opts.CookieName, opts.CookieKeys, maxAge+time.Hour)
	if err != nil {
		errs = append(errs, err)
	}
	clients, err := newClientAddrs(opts.TrustedProxies)
	if err != nil {
		errs = append(errs, fmt.Errorf("proxy: trusted proxies: %w", err))
	}
	publicHost := ""
	if pub.Host != "" {
		if publicHost, err = policies.CanonicalHost(pub.Host); err != nil {
			errs = append(errs, fmt.Errorf("proxy: public URL host: %w", err))
		}
	}
	origin := strings.ToLower(pub.Scheme + "://" + pub.Host)
	sig, err := newSigner(origin, opts.SigningKeys, opts.TokenTTL, opts.Now)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}

	srv := &Server{
		opts:            opts,
		log:             opts.Logger,
		now:             opts.Now,
		prefix:          opts.AuthPrefix,
		verifyPath:      opts.AuthPrefix + "/verify",
		publicURL:       pub,
		publicHost:      publicHost,
		secure:          pub.Scheme == "https",
		cookieName:      opts.CookieName,
		csrfName:        opts.CookieName + csrfCookieSuffix,
		policy:          opts.Policy,
		signIns:         opts.SignIn,
		sessionStore:    opts.Sessions,
		users:           opts.Users,
		apiKeys:         opts.APIKeys,
		profiles:        opts.Profiles,
		invitations:     opts.Invitations,
		inviteGuesses:   opts.InvitationGuesses,
		bindings:        opts.Bindings,
		contactSearch:   opts.Contacts,
		onboarding:      opts.Onboarding,
		audit:           opts.Audit,
		auditLog:        opts.AuditLog,
		refusalsAudited: cache.New(refusalAuditInterval, refusalAuditInterval),
		registrar:       opts.Registration,
		recovery:        opts.Recovery,
		revalidator:     opts.Revalidator,
		pages:           opts.Pages,
		codec:           codec,
		sessions:        sessionPolicy{idle: opts.IdleTimeout, absolute: opts.AbsoluteTimeout, remember: opts.RememberTimeout, stampCheck: opts.StampCheckInterval},
		signer:          sig,
		redirects:       newRedirectValidator(origin, opts.RedirectAllowlist),
		clients:         clients,
		cop:             http.NewCrossOriginProtection(),
		metrics:         m,
		revoked:         revokedSessions{m: map[string]time.Time{}},
		changedUsers:    changedUsers{m: map[string]int64{}},
		changedContacts: changedContacts{m: map[string]contactMark{}},
		hook:            opts.DataverseHook,
		contactCache:    opts.ContactCache,
		sessionFeed:     opts.SessionFeed,
		sessionCache:    newSessionCache(),
	}
	if u := opts.InvitationExistingUserURL; u != "" {
		if _, ok := srv.redirects.validate(u); !ok {
			return nil, fmt.Errorf("proxy: invitation existing-user page %q is neither a same-site path nor an allow-listed URL", u)
		}
	}
	srv.csrf = newCSRFTokens(opts.CookieKeys, srv.csrfName, srv.secure)
	if err := srv.cop.AddTrustedOrigin(origin); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	transport := opts.Transport
	if transport == nil {
		transport = NewTransport(opts.MaxIdleConnsPerHost, opts.DialTimeout, opts.ResponseHeaderTimeout)
	}
	srv.upstreams = map[*policies.Upstream]*upstream{}
	for _, u := range opts.Policy.Upstreams {
		srv.upstreams[u] = srv.newUpstream(u, transport)
	}
	srv.contactColumns = opts.Policy.ContactColumns()
	if opts.Console != nil {
		co := *opts.Console
		co.Prefix, co.Pages, co.RenderError, co.Log, co.Now = srv.prefix, opts.Pages, srv.consoleError, opts.Logger, opts.Now
		if srv.console, err = console.New(co); err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	srv.gateway = srv.withBodyDeadline(srv.gatewayMux())
	return srv, nil
}

// ServeHTTP runs the request pipeline and records metrics and the access log.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := newRequestID()
	// One request-scoped value carries the request ID and, later, what the
	// pipeline decided for the proxy hooks.
	st := &requestState{rid: rid, ridHeader: []string{rid}[:1:1]}
	r = r.WithContext(context.WithValue(r.Context(), requestStateKey{}, st))
	rec := &statusRecorder{ResponseWriter: w}
	rec.Header()["X-Request-Id"] = st.ridHeader

	label := srv.serve(rec, r)

	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	elapsed := time.Since(start)
	rm := srv.metrics.route(label)
	rm.request(status)
	rm.duration.Observe(elapsed.Seconds())
	if srv.opts.AccessLog != nil {
		srv.opts.AccessLog.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", rid), slog.String("method", r.Method), slog.String("host", r.Host),
			slog.String("path", r.URL.Path), slog.Int("status", status), slog.String("route", label),
			slog.Duration("duration", elapsed), slog.Int64("bytes", rec.bytes))
	}
}

// serve is the pipeline. It returns the route label for metrics.
func (srv *Server) serve(w http.ResponseWriter, r *http.Request) string {
	// 1. Nothing the client sent may pose as the gateway's identity headers,
	// speak for a proxy it is not, or make the upstream run another URL or
	// method than the one policies saw (see clientHeaderRules).
	st := stateOf(r.Context())
	st.trustedPeer = srv.clients.peerTrusted(r)
	srv.captureVerify(st, r) // the verify endpoint's X-Original-* of a trusted proxy, before they go
	rules := clientHeaderRules{trustedPeer: st.trustedPeer, keepUnderscores: srv.opts.UnderscoresInHeaders}
	rules.strip(r.Header)
	rules.strip(r.Trailer)
	if refusedMethod(r.Method) {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		srv.renderError(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Title: "Method not allowed",
			Message: "This gateway never forwards " + r.Method + " requests.", Err: fmt.Errorf("refused method %q", r.Method)})
		return "invalid"
	}

	// 2. One canonical form of the request, used for matching and for proxying.
	path, err := policies.CanonicalPath(r.URL.EscapedPath())
	if err != nil {
		srv.renderError(w, r, errBadRequest(err))
		return "invalid"
	}
	host, err := policies.CanonicalHost(r.Host)
	if err != nil {
		srv.renderError(w, r, errBadRequest(err))
		return "invalid"
	}
	r.URL.Path, r.URL.RawPath = path, ""

	// 3. The gateway's own pages are never proxied, and answer only on the
	// hosts the gateway serves; a request for a host no upstream serves is
	// misdirected too. Neither sets a cookie.
	if path == srv.prefix || strings.HasPrefix(path, srv.prefix+"/") {
		// The forward-auth endpoint answers a trusted proxy on whatever
		// host it calls; the original request's host is checked instead.
		if srv.isVerifyPath(path) {
			srv.verify(w, r, path)
			return "verify"
		}
		if host != srv.publicHost && !srv.policy.NamesHost(host) {
			srv.renderError(w, r, errMisdirected(host))
			return "invalid"
		}
		// A session that must change its password reaches only the
		// change page and a few others (see forcedChangeExempt).
		if !srv.forcedChangeExempt(path) && srv.mustChangeSession(r) {
			srv.forcePasswordChange(w, r)
			return "auth"
		}
		srv.gateway.ServeHTTP(w, r)
		return "auth"
	}
	if host != srv.publicHost && !srv.policy.ServesHost(host) {
		srv.renderError(w, r, errMisdirected(host))
		return "invalid"
	}

	// 4. State-changing requests from other origins are refused (CSRF),
	// except on public routes that opt out (cross_origin: allow); those
	// are proxied as if nobody were signed in (step 9).
	crossOrigin := false
	if err := srv.cop.Check(r); err != nil {
		if route := srv.policy.Route(host, r.Method, path); route == nil || !route.AllowCrossOrigin {
			srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "cross_origin", Title: "Request refused",
				Message: "This request came from another site and was refused.", Err: err})
			return "invalid"
		}
		crossOrigin = true
	}

	// 5. The session, if any: the cookie decoded, within its lifetimes,
	// not signed out here (expired or revoked sessions count as none).
	ls := srv.readSession(w, r)

	// 6. Every StampCheckInterval, the security stamp: the account still
	// exists, is active, has the session's stamp, and the session was not
	// signed out on another replica. A store that cannot answer gets a 503.
	if err := srv.checkSessionStamp(w, r, &ls); err != nil {
		srv.renderError(w, r, err)
		return "invalid"
	}

	// 7. Once the contact snapshot is due, Dataverse is asked again (the
	// sign-in check); within the grace period an outage keeps the snapshot.
	if err := srv.revalidateSessionContact(w, r, &ls); err != nil {
		srv.renderError(w, r, err)
		return "invalid"
	}

	// 8. A changed session, or one whose idle deadline must move, is
	// written back to its cookie.
	if err := srv.saveSession(w, r, &ls); err != nil {
		srv.renderError(w, r, err)
		return "invalid"
	}
	sess := ls.sess
	if crossOrigin {
		// Another site's request never carries the user's identity: the
		// upstream must not act on it for the user (CSRF).
		sess = nil
	}

	// 8a. A user who must change the password (the account's flag, or the
	// contact's password-change column at sign-in) reaches no route until
	// it is done: browsers reading a page go to the change page, anything
	// else gets 403. One bool of the session: free for every other session.
	if sess != nil && sess.MustChange {
		srv.forcePasswordChange(w, r)
		return "password_change"
	}

	// 9. The first matching route decides; unmatched requests are denied,
	// with a "no page here" 404: no rule names the address at all.
	route := srv.policy.Route(host, r.Method, path)
	if route == nil {
		srv.metrics.route("unmatched").deny.Inc()
		srv.renderError(w, r, errNoPage())
		return "unmatched"
	}
	rm := srv.metrics.route(route.Name)
	decision, cerr := route.Check(sess.subject(), policies.RequestInfo{Method: r.Method, Host: host, Path: path})
	if cerr != nil { // the condition failed at run time: denied, and worth an operator's look
		srv.log.Warn("policy condition failed", "request_id", st.rid, "route", route.Name, "err", cerr)
	}
	switch decision {
	case policies.Allow:
		rm.allow.Inc()
	case policies.Unauthenticated:
		rm.unauthenticated.Inc()
		srv.challenge(w, r)
		return route.Name
	default:
		rm.deny.Inc()
		srv.renderError(w, r, errForbidden(""))
		return route.Name
	}

	// 10. The upstream for this host and path.
	pu := srv.policy.Upstream(host, path)
	up := srv.upstreams[pu]
	if up == nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadGateway, Code: "no_upstream", Title: "Site unavailable",
			Message: "No site is configured at this address.", Err: fmt.Errorf("no upstream for host %q path %q", host, path)})
		return route.Name
	}

	// 11. Sign the identity; never proxy a request whose identity could not be signed.
	if sess != nil {
		id, err := srv.signer.identity(sess, route.AudienceFor(pu), route)
		if err != nil {
			srv.renderError(w, r, fmt.Errorf("sign identity: %w", err))
			return route.Name
		}
		st.identity = id
	}

	// 12. Proxy (an upload that goes quiet for too long is cut off).
	srv.limitUploadIdle(w, r)
	up.proxy.ServeHTTP(w, r)
	return route.Name
}

// statusCodes are the decimal forms of status codes, so metrics need not
// format one per request.
var statusCodes = func() (m [600]string) {
	for i := 100; i < 600; i++ {
		m[i] = strconv.Itoa(i)
	}
	return m
}()

func statusText(code int) string {
	if code >= 100 && code < 600 {
		return statusCodes[code]
	}
	return strconv.Itoa(code)
}

// refusedMethod reports whether method is one the gateway never forwards,
// compared ignoring case as some servers do: TRACE and TRACK echo the
// request, headers and cookies included, back to whoever sent it (cross-site
// tracing, https://owasp.org/www-community/attacks/Cross_Site_Tracing), and
// CONNECT would turn the gateway into a tunnel past every route.
func refusedMethod(method string) bool {
	return strings.EqualFold(method, http.MethodTrace) || strings.EqualFold(method, "TRACK") ||
		strings.EqualFold(method, http.MethodConnect)
}

// errMisdirected answers a request for a host the gateway does not serve
// (RFC 9110 section 15.5.20, 421 Misdirected Request).
func errMisdirected(host string) *Error {
	return &Error{Status: http.StatusMisdirectedRequest, Code: "misdirected", Title: "Unknown site",
		Message: "This gateway does not serve this address.", Err: fmt.Errorf("host %q is not served", host)}
}

// challenge answers an unauthenticated request: browsers reading a page are
// sent to sign in and back; API clients and other methods get 401.
func (srv *Server) challenge(w http.ResponseWriter, r *http.Request) {
	if wantsJSON(r) || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		srv.renderError(w, r, errUnauthenticated())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, srv.signInURL(r.URL.RequestURI()), http.StatusFound)
}

// signInURL is the sign-in page that returns to back afterwards.
func (srv *Server) signInURL(back string) string {
	if back == "" || back == "/" || (strings.HasPrefix(back, srv.prefix+"/") && !srv.isConsolePath(back)) {
		return srv.prefix + "/signin"
	}
	return srv.prefix + "/signin?redirect_url=" + url.QueryEscape(back)
}

// requestState is the request-scoped state of the pipeline: the request ID
// and what was decided for the proxy hooks. Rewrite only applies decisions.
type requestState struct {
	rid         string
	ridHeader   []string         // rid as a header value, shared read-only by the response and the upstream request
	identity    *identityHeaders // nil for anonymous requests
	trustedPeer bool
	verify      *verifyOverrides // a trusted peer's X-Original-* for the verify endpoint; nil otherwise
	// bodyTimedOut is set when the request's body missed its read
	// deadline (bodies.go); it may be set from the proxy's body reader.
	bodyTimedOut atomic.Bool
}

type requestStateKey struct{}

// stateOf returns the pipeline's state of a request; never nil.
func stateOf(ctx context.Context) *requestState {
	if st, ok := ctx.Value(requestStateKey{}).(*requestState); ok {
		return st
	}
	return &requestState{}
}

// requestID returns the request ID the pipeline assigned, or "".
func requestID(ctx context.Context) string { return stateOf(ctx).rid }

// newRequestID returns a random 16-hex-digit ID. It is for correlation, not
// secrecy, so the fast non-cryptographic generator is enough.
func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [16]byte
	v := rand.Uint64()
	for i := range b {
		b[i] = hex[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// statusRecorder remembers the status and size of a response. Unwrap lets
// http.ResponseController reach Flush and Hijack (streaming, WebSockets).
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
