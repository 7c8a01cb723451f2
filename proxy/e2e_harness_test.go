package proxy_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/console"
	"github.com/crmgate/crmgate/proxy/pages"
)

// fakeClock is a settable clock shared by the gateway and the sign-in service.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// seen is what the upstream received.
type seen struct {
	Method, Path, RawPath, Query string
	Header                       http.Header
}

// upstreamRecorder is a real upstream that records every request.
type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []seen
	srv  *httptest.Server
}

func (u *upstreamRecorder) last(t *testing.T) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstreamRecorder) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.reqs) }

const testPolicy = `upstreams:
  - name: app
    url: %s
routes:
  - name: home
    paths: ["/", "/public/**"]
    access: public
  - name: admin
    paths: ["/admin/**"]
    access: authenticated
    roles: [admin]
  - name: staff
    paths: ["/staff/**"]
    access: authenticated
    condition: 'user.email.endsWith("@staff.test")'
  - name: account
    paths: ["/account/**", "/api/**", "/ws", "/stream"]
    access: authenticated
  - name: closed
    paths: ["/closed/**"]
    access: deny
`

// harness is a whole gateway on a real listener in front of a real upstream.
type harness struct {
	t        *testing.T
	clock    *fakeClock
	svc      *wiring.Services
	db       *store.DB
	up       *upstreamRecorder
	gw       *httptest.Server
	srv      *proxy.Server
	opts     proxy.Options
	registry *prometheus.Registry
}

type harnessConfig struct {
	cookieKeys  [][]byte
	signingKeys []*ecdsa.PrivateKey
	db          *store.DB
	clientBurst int
	upstream    http.Handler
	mutate      func(*proxy.Options)
	authz       func(*wiring.Options) // e.g. Contacts and SignInCheck
	policy      string                // replaces testPolicy; %s is the upstream URL
	// store wraps the database the identity layer uses, e.g. to count or
	// fail its calls; nil uses the database as it is.
	store func(*store.DB) wiring.Store
	// guesses is the invitation guess limiter's rate per hour and burst;
	// zero means 20.
	guesses int
	// console adjusts the admin console's services, with the identity
	// layer and the store at hand (e.g. a contacts service).
	console func(h *harness, o *console.Options)
}

var testPassword = password.Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

func newHarness(t *testing.T, hc harnessConfig) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}, up: &upstreamRecorder{}}
	upHandler := hc.upstream
	if upHandler == nil {
		upHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "upstream %s %s", r.Method, r.URL.Path)
		})
	}
	h.up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.up.mu.Lock()
		h.up.reqs = append(h.up.reqs, seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Header: r.Header.Clone()})
		h.up.mu.Unlock()
		upHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(h.up.srv.Close)

	policyText := testPolicy
	if hc.policy != "" {
		policyText = hc.policy
	}
	pol, err := policies.Parse("test.yaml", fmt.Appendf(nil, policyText, h.up.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	h.db = hc.db
	if h.db == nil {
		h.db, err = store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "gw.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.db.Close() })
	}
	burst := hc.clientBurst
	if burst == 0 {
		burst = 1000
	}
	// The listener comes first: the public URL is the gateway's own address,
	// and mailed links are built from it.
	h.gw = httptest.NewUnstartedServer(nil)
	composer, err := mail.NewComposer(mail.ComposerOptions{PublicURL: "http://" + h.gw.Listener.Addr().String(), AuthPrefix: "/.auth",
		Site: mail.Site{Name: "Test Site"}})
	if err != nil {
		t.Fatal(err)
	}
	ao := wiring.Options{Password: testPassword, MaxFailures: 5, AccountMaxFailures: 20, LockoutDuration: 15 * time.Minute,
		ClientRate: rate.Every(time.Minute), ClientBurst: burst, Mail: composer, Now: h.clock.Now}
	if hc.authz != nil {
		hc.authz(&ao)
	}
	var db wiring.Store = h.db
	if hc.store != nil {
		db = hc.store(h.db)
	}
	h.svc, err = wiring.New(db, ao)
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := pages.New(pages.Options{Branding: pages.Branding{SiteName: "Test Site", AuthPrefix: "/.auth"}})
	if err != nil {
		t.Fatal(err)
	}
	if hc.cookieKeys == nil {
		hc.cookieKeys = [][]byte{randomKey()}
	}
	if hc.signingKeys == nil {
		hc.signingKeys = []*ecdsa.PrivateKey{newKey(t)}
	}
	h.registry = prometheus.NewRegistry()
	h.opts = proxy.Options{
		PublicURL: "http://" + h.gw.Listener.Addr().String(), Policy: pol, Pages: renderer,
		CookieName: "crmgate_session", CookieKeys: hc.cookieKeys, SigningKeys: hc.signingKeys,
		Now: h.clock.Now, Registerer: h.registry,
	}
	if hc.guesses > 0 {
		if h.opts.InvitationGuesses, err = throttle.New(h.db, throttle.InvitationGuesses, throttle.PerHour(hc.guesses), hc.guesses); err != nil {
			t.Fatal(err)
		}
	}
	h.opts = withIdentity(h.opts, h.svc, h.db)
	if hc.console != nil {
		hc.console(h, h.opts.Console)
	}
	if hc.mutate != nil {
		hc.mutate(&h.opts)
	}
	h.srv, err = proxy.New(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	h.gw.Config.Handler = h.srv
	h.gw.Start()
	t.Cleanup(h.gw.Close)
	return h
}

// withIdentity connects every capability of the identity layer to o, as
// cmd/crmgate does, and sets the values the configuration supplies in
// production (its defaults) where o leaves them zero (proxy.TestTimings).
// The invitation guess limiter keeps its buckets in db.
func withIdentity(o proxy.Options, s *wiring.Services, db throttle.Store) proxy.Options {
	o.SignIn, o.Sessions, o.Users, o.Revalidator = s.SignIn, s.SignIn, s.Accounts, s.SignIn
	o.Profiles, o.APIKeys, o.Bindings, o.Contacts, o.Audit, o.AuditLog = s.Profile, s.APIKeys, s.Accounts, s.Binding, s.Audit, s.Audit
	if s.Onboarding != nil {
		o.Onboarding, o.SetPasswordLinks = s.Onboarding, s.Onboarding
	}
	o.Registration = s.Registration
	o.Passwords, o.AccountActions = s.Accounts, s.Accounts
	o.Console = &console.Options{Users: s.Accounts, Accounts: s.Accounts, Bindings: s.Accounts, Passwords: s.Accounts,
		Audit: s.Audit, Jobs: s.Jobs, BreakGlassRole: proxy.AdminRole}
	if s.Binding != nil && s.Binding.Configured() {
		o.Console.Contacts = s.Binding
	}
	o.Console.Sessions = s.Accounts
	if s.Onboarding != nil {
		o.Console.Approvals, o.Console.SetPasswordLinks = s.Onboarding, s.Onboarding
	}
	if st, ok := db.(outbox.AdminStore); ok { // the outbox's administration, as cmd/crmgate wires it
		if admin, err := outbox.NewAdmin(st, s.Audit, outbox.AdminOptions{Now: o.Now}); err == nil {
			o.Console.Outbox = admin
		}
	}
	if s.Recovery != nil { // built only with a mail composer
		o.Recovery, o.ResetPages = s.Recovery, true
	}
	if s.Invitations != nil {
		o.Invitations = s.Invitations
		o.Console.Invitations = s.Invitations
		if o.InvitationGuesses == nil {
			o.InvitationGuesses, _ = throttle.New(db, throttle.InvitationGuesses, throttle.PerHour(20), 20)
		}
	}
	return proxy.TestTimings(o)
}

func (h *harness) createUser(username, email, password string, roles ...string) *authz.User {
	h.t.Helper()
	u, err := h.svc.Accounts.CreateUser(context.Background(), accounts.NewUser{Username: username, Email: email, Password: password,
		DisplayName: strings.ToUpper(username[:1]) + username[1:], Roles: roles}, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// browser is a client with a cookie jar that does not follow redirects, so
// tests see every hop.
func (h *harness) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (h *harness) url(path string) string { return h.gw.URL + path }

func (h *harness) get(c *http.Client, path string, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.url(path), nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return h.do(c, req)
}

func (h *harness) do(c *http.Client, req *http.Request) (*http.Response, string) {
	h.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrfToken loads the sign-in page and returns its form token.
func (h *harness) csrfToken(c *http.Client) string {
	h.t.Helper()
	resp, body := h.get(c, "/.auth/signin")
	if resp.StatusCode != 200 {
		h.t.Fatalf("sign-in page: %d", resp.StatusCode)
	}
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("no csrf_token on sign-in page:\n%s", body)
	}
	return html.UnescapeString(m[1])
}

// postSignIn submits the sign-in form as a same-origin browser would.
func (h *harness) postSignIn(c *http.Client, login, password string, extra url.Values) (*http.Response, string) {
	h.t.Helper()
	form := url.Values{"login": {login}, "password": {password}, "csrf_token": {h.csrfToken(c)}}
	for k, v := range extra {
		form[k] = v
	}
	req, _ := http.NewRequest("POST", h.url("/.auth/signin"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return h.do(c, req)
}

func (h *harness) signIn(c *http.Client, login, password string) {
	h.t.Helper()
	resp, body := h.postSignIn(c, login, password, nil)
	if resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("sign-in of %s: status %d\n%s", login, resp.StatusCode, body)
	}
}

func (h *harness) sessionCookie(c *http.Client) *http.Cookie {
	u, _ := url.Parse(h.gw.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "crmgate_session" {
			return ck
		}
	}
	return nil
}

// verifyToken checks an X-Current-User JWT against the gateway's JWKS.
func (h *harness) verifyToken(token, audience string) map[string]any {
	h.t.Helper()
	resp, body := h.get(http.DefaultClient, "/.auth/jwks.json")
	if resp.StatusCode != 200 {
		h.t.Fatalf("jwks: %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		h.t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		h.t.Fatalf("parse token: %v", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		h.t.Fatalf("token has no kid")
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		h.t.Fatalf("kid %q not in JWKS", tok.Headers[0].KeyID)
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		h.t.Fatalf("verify: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: h.gw.URL, AnyAudience: jwt.Audience{audience}, Time: h.clock.Now()}, 0); err != nil {
		h.t.Fatalf("claims: %v", err)
	}
	return all
}

// rawRequest sends bytes as they are on a new connection and returns the
// status line, so tests can send header spellings Go's client would fix.
func (h *harness) rawRequest(raw string) string {
	h.t.Helper()
	conn, err := net.Dial("tcp", h.gw.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Status
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
