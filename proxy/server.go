// Package proxy is crmgate's HTTP edge: the request pipeline, the session
// cookie, the identity headers, the gateway's own pages under the auth
// prefix, and the reverse proxy to the upstreams.
//
// The pipeline, in Server.ServeHTTP, reads top to bottom: strip identity
// headers → canonicalise → gateway pages → cross-origin check → load session
// → match route → decide → sign identity → proxy.
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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy/pages"
)

// Authenticator is what the proxy needs from the identity layer.
// *authz.Service satisfies it.
type Authenticator interface {
	// SignIn verifies credentials; see authz.Service.SignIn for its errors.
	SignIn(ctx context.Context, c authz.Credentials) (*authz.User, error)
	// UserByID returns the current state of a user, for security-stamp checks.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// EndSession revokes a session at sign-out and audits it.
	EndSession(ctx context.Context, sessionID, userID, clientAddr string, expiresAt time.Time) error
	// SessionRevoked reports whether a session was ended by EndSession (on any replica).
	SessionRevoked(ctx context.Context, sessionID string) (bool, error)
}

// Options configure a Server. Every field without a documented default is
// required; New reports what is missing.
type Options struct {
	PublicURL  string // origin of the gateway; the JWT issuer
	AuthPrefix string // e.g. "/.auth"; default "/.auth"
	Policy     *policies.Policy
	Auth       Authenticator
	Pages      *pages.Renderer
	// Users serves the REST API's account reads. Nil means Auth, when it
	// implements UserDirectory (as *authz.Service does).
	Users UserDirectory
	// APIKeys authenticates REST API keys. Nil means Auth, when it
	// implements APIKeys; if neither, the API accepts admin sessions only.
	APIKeys APIKeys
	// Profiles serves the profile page. Nil means Auth, when it implements
	// ProfileEditor; if neither, the profile page answers 404.
	Profiles ProfileEditor

	CookieName   string   // session cookie name as it should appear in the browser
	CookieDomain string   // empty: host-only (recommended)
	CookieKeys   [][]byte // newest first, each at least 32 bytes

	SigningKeys []*ecdsa.PrivateKey // newest first
	TokenTTL    time.Duration       // default 5m, at most 5m

	IdleTimeout        time.Duration // default 1h
	AbsoluteTimeout    time.Duration // default 12h
	RememberTimeout    time.Duration // default 30 days
	StampCheckInterval time.Duration // default 2m
	// ContactRevalidateInterval is how old a session's contact snapshot may
	// get before Dataverse is asked again (default 5m); ContactGrace is how
	// much longer a snapshot is trusted while Dataverse cannot answer
	// (zero means 15m, a negative value none; then the session ends).
	ContactRevalidateInterval time.Duration
	ContactGrace              time.Duration

	TrustedProxies    []string // CIDRs whose X-Forwarded-For is believed
	RedirectAllowlist []string // absolute origins redirect_url may name

	// Transport carries proxied requests. Nil means a transport tuned for a
	// gateway (see NewTransport) built from the Transport* fields.
	Transport             http.RoundTripper
	MaxIdleConnsPerHost   int           // default 256
	DialTimeout           time.Duration // default 5s
	ResponseHeaderTimeout time.Duration // zero means none

	SiteName   string                // used in the WWW-Authenticate realm; default "crmgate"
	Logger     *slog.Logger          // default: discard
	AccessLog  *slog.Logger          // one line per request; nil: no access log
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
	Now        func() time.Time      // default time.Now
}

// Server is the gateway's public handler. Build it with New.
type Server struct {
	opts       Options
	log        *slog.Logger
	now        func() time.Time
	prefix     string
	publicURL  *url.URL
	secure     bool
	cookieName string
	csrfName   string

	policy         *policies.Policy
	auth           Authenticator
	users          UserDirectory
	apiKeys        APIKeys
	profiles       ProfileEditor      // nil: no profile page
	binder         BindingAdmin       // nil: no binding endpoints
	contactColumns []string           // the policy's union: what a sign-in fetches
	revalidator    ContactRevalidator // nil: contact snapshots are never refreshed
	pages          *pages.Renderer
	codec          *sessionCodec
	sessions       sessionPolicy
	csrf           *csrfTokens
	cop            *http.CrossOriginProtection
	signer         *signer
	redirects      redirectValidator
	clients        clientAddrs
	revoked        revokedSessions
	sessionCache   sessionCache
	upstreams      map[*policies.Upstream]*upstream
	gateway        http.Handler
	metrics        *metrics
}

// New validates opts and builds the server.
func New(opts Options) (*Server, error) {
	if opts.AuthPrefix == "" {
		opts.AuthPrefix = "/.auth"
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = time.Hour
	}
	if opts.AbsoluteTimeout == 0 {
		opts.AbsoluteTimeout = 12 * time.Hour
	}
	if opts.RememberTimeout == 0 {
		opts.RememberTimeout = 30 * 24 * time.Hour
	}
	if opts.StampCheckInterval == 0 {
		opts.StampCheckInterval = 2 * time.Minute
	}
	if opts.ContactRevalidateInterval == 0 {
		opts.ContactRevalidateInterval = 5 * time.Minute
	}
	switch {
	case opts.ContactGrace == 0:
		opts.ContactGrace = 15 * time.Minute
	case opts.ContactGrace < 0:
		opts.ContactGrace = 0
	}
	if opts.SiteName == "" {
		opts.SiteName = "crmgate"
	}
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
	if opts.Policy == nil {
		errs = append(errs, errors.New("proxy: no policy"))
	}
	if opts.Auth == nil {
		errs = append(errs, errors.New("proxy: no authenticator"))
	}
	if opts.Profiles == nil {
		opts.Profiles, _ = opts.Auth.(ProfileEditor)
	}
	if opts.APIKeys == nil {
		opts.APIKeys, _ = opts.Auth.(APIKeys)
	}
	if opts.Users == nil {
		if ud, ok := opts.Auth.(UserDirectory); ok {
			opts.Users = ud
		} else {
			errs = append(errs, errors.New("proxy: no user directory for the REST API"))
		}
	}
	if opts.Pages == nil {
		errs = append(errs, errors.New("proxy: no page renderer"))
	}
	if opts.CookieName == "" {
		errs = append(errs, errors.New("proxy: no cookie name"))
	}
	if opts.TokenTTL > 5*time.Minute {
		errs = append(errs, errors.New("proxy: token TTL above 5m"))
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
	origin := strings.ToLower(pub.Scheme + "://" + pub.Host)
	sig, err := newSigner(origin, opts.SigningKeys, opts.TokenTTL, opts.Now)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	srv := &Server{
		opts:         opts,
		log:          opts.Logger,
		now:          opts.Now,
		prefix:       opts.AuthPrefix,
		publicURL:    pub,
		secure:       pub.Scheme == "https",
		cookieName:   opts.CookieName,
		csrfName:     opts.CookieName + csrfCookieSuffix,
		policy:       opts.Policy,
		auth:         opts.Auth,
		users:        opts.Users,
		apiKeys:      opts.APIKeys,
		profiles:     opts.Profiles,
		pages:        opts.Pages,
		codec:        codec,
		sessions:     sessionPolicy{idle: opts.IdleTimeout, absolute: opts.AbsoluteTimeout, remember: opts.RememberTimeout, stampCheck: opts.StampCheckInterval},
		signer:       sig,
		redirects:    newRedirectValidator(origin, opts.RedirectAllowlist),
		clients:      clients,
		cop:          http.NewCrossOriginProtection(),
		metrics:      newMetrics(opts.Registerer),
		revoked:      revokedSessions{m: map[string]time.Time{}},
		sessionCache: newSessionCache(),
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
	srv.revalidator, _ = opts.Auth.(ContactRevalidator)
	srv.binder, _ = opts.Auth.(BindingAdmin)
	srv.gateway = srv.gatewayMux()
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
	// nor make the upstream run another method than the one policies saw.
	stripIdentityHeaders(r.Header)
	stripIdentityHeaders(r.Trailer)
	for _, h := range methodOverrideHeaders {
		delete(r.Header, h)
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

	// 3. The gateway's own pages are never proxied.
	if path == srv.prefix || strings.HasPrefix(path, srv.prefix+"/") {
		srv.gateway.ServeHTTP(w, r)
		return "auth"
	}

	// 4. State-changing requests from other origins are refused (CSRF).
	if err := srv.cop.Check(r); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "cross_origin", Title: "Request refused",
			Message: "This request came from another site and was refused.", Err: err})
		return "invalid"
	}

	st := stateOf(r.Context())

	// 5. The session, if any (expired or revoked sessions count as none).
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return "invalid"
	}

	// 6. The first matching route decides; unmatched requests are denied.
	route := srv.policy.Route(host, r.Method, path)
	if route == nil {
		srv.metrics.route("unmatched").deny.Inc()
		srv.renderError(w, r, errForbidden(""))
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

	// 7. The upstream for this host and path.
	pu := srv.policy.Upstream(host, path)
	up := srv.upstreams[pu]
	if up == nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadGateway, Code: "no_upstream", Title: "Site unavailable",
			Message: "No site is configured at this address.", Err: fmt.Errorf("no upstream for host %q path %q", host, path)})
		return route.Name
	}

	// 8. Sign the identity; never proxy a request whose identity could not be signed.
	_, st.trustedPeer = srv.clients.of(r)
	if sess != nil {
		id, err := srv.signer.identity(sess, route.AudienceFor(pu), route)
		if err != nil {
			srv.renderError(w, r, fmt.Errorf("sign identity: %w", err))
			return route.Name
		}
		st.identity = id
	}

	// 9. Proxy.
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

// methodOverrideHeaders let frameworks (Laravel, Symfony, Rails, ASP.NET,
// Express) run another method than the request's. Policies decide on the
// request's own method, so these never reach an upstream.
var methodOverrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

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
	if back == "" || back == "/" || strings.HasPrefix(back, srv.prefix+"/") {
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
