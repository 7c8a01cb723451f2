// Package dataversetest is a Dataverse Web API emulator over real HTTP: it is
// to Dataverse what net/http/httptest is to HTTP. It serves the Entra ID
// client-credentials token endpoint (the emulator is its own authority host)
// and /api/data/v9.2 for contacts, accounts, web roles, invitations and
// external identities, following Microsoft's Dataverse Web API
// documentation (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-operations-web-api):
// response shapes, ETags, conditional operations, paging, N:N $ref,
// unbound actions, service protection limits and error bodies. Each
// emulated behaviour cites its source where it is implemented.
//
// It is for tests and local development only. Tokens and data live in
// memory, secrets are compared as plain strings, and nothing is persisted.
package dataversetest

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// APIPrefix is the path prefix of the Web API served by the emulator.
const APIPrefix = "/api/data/v9.2/"

// Options configures a Handler. The zero value is usable: any tenant in the
// token path is accepted, no client is registered (so no token can be
// obtained), tokens live 3599 seconds, and the default service protection
// limits apply (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits).
type Options struct {
	// BaseURL is the environment URL (scheme://host, no trailing slash) used
	// in @odata.context, nextLink, OData-EntityId and the token scope. Empty
	// means it is derived from each request's Host (http scheme), which is
	// what NewServer relies on.
	BaseURL string
	// TenantID is the tenant accepted in /{tenant}/oauth2/v2.0/token and
	// named in the 401 challenge. Empty accepts any tenant and the challenge
	// names "common".
	TenantID string
	// Clients are the app registrations allowed to obtain tokens.
	Clients []Client
	// TokenLifetime is the access token lifetime; zero means 3599 seconds,
	// the expires_in of https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow.
	TokenLifetime time.Duration
	// Now is the clock for token expiry, assertion checks, limits and
	// createdon/modifiedon. Nil means time.Now.
	Now func() time.Time
	// NewID generates lower-case GUIDs for new records, trace ids and
	// defaulted ids (access tokens stay random). Nil means random version 4
	// UUIDs; tests set it for deterministic golden files.
	NewID func() string
	// OrganizationID and BusinessUnitID are returned by WhoAmI; empty means
	// generated with NewID at construction.
	OrganizationID, BusinessUnitID string
	// Actions are the unbound actions (custom APIs) the emulator accepts,
	// keyed by unique name (case-sensitive). Any other name gives the 404
	// "Resource not found for the segment" (https://learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors).
	Actions map[string]Action
	// AlternateKeys lists, per table logical name, the alternate keys
	// defined in the environment (each a set of column names). By default
	// contact has no alternate keys
	// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api),
	// so nil defines none.
	AlternateKeys map[string][][]string
	// Limits are the service protection limits; zero fields take the
	// defaults of https://learn.microsoft.com/power-apps/developer/data-platform/api-limits.
	Limits Limits
	// DOPHint, when positive, is sent as the x-ms-dop-hint header of every
	// Web API answer: the degree of parallelism Dataverse recommends for
	// the environment (https://learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests).
	// Zero sends no hint. SetDOPHint changes it while serving.
	DOPHint int
}

// Client is an app registration with its Dataverse application user.
type Client struct {
	// ID is the application (client) ID.
	ID string
	// Secret is the client secret; empty means secrets are not accepted.
	Secret string
	// Certificate, when set, accepts client_assertion JWTs signed with its
	// key: PS256 (https://learn.microsoft.com/entra/identity-platform/certificate-credentials),
	// or RS256 as older samples use.
	Certificate *x509.Certificate
	// Federated lists the federated identity credentials
	// (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
	Federated []FederatedCredential
	// UserID is the systemuserid of the application user, returned by
	// WhoAmI and used to count service protection limits. Empty means
	// generated with NewID when the handler is built.
	UserID string
	// Denied lists what the application user's security role does not
	// allow, as "METHOD entityset" ("POST contacts", "GET adx_invitations")
	// or "* entityset" for every method; such requests get 403
	// PrivilegeDenied (https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes).
	// Nil allows everything.
	Denied []string
}

// FederatedCredential is a federated identity credential: an external IdP's
// JWT with this issuer, subject and audience is accepted as
// client_assertion. Real Entra fetches the issuer's keys by OIDC discovery;
// the emulator is given the verification key directly.
type FederatedCredential struct {
	Issuer  string
	Subject string
	// Audience defaults to "api://AzureADTokenExchange", the value widely
	// used in practice (not confirmed by the documentation).
	Audience string
	// Key verifies the assertion's signature (*rsa.PublicKey or
	// *ecdsa.PublicKey). Nil rejects every assertion.
	Key crypto.PublicKey
}

// Action is the configured response of an unbound action.
type Action struct {
	// Response is the action's response properties. Nil answers 204 No
	// Content; otherwise 200 with the properties after an @odata.context of
	// Microsoft.Dynamics.CRM.<name>Response (https://learn.microsoft.com/power-apps/developer/data-platform/custom-api).
	Response map[string]any
}

// Handler is the emulator as an http.Handler. It is safe for concurrent use.
// Build it with NewHandler; the zero Handler is not usable.
type Handler struct {
	opts    Options
	now     func() time.Time
	newID   func() string
	tables  map[string]*table // by logical name
	bySet   map[string]*table // by entity set name
	clients map[string]*Client

	mu       sync.Mutex
	records  map[string]map[string]*record // logical name → id → record
	links    map[string]map[[2]string]bool // relationship → {entity1 id, entity2 id}
	version  int64
	tokens   map[string]tokenInfo
	calls    map[string][]map[string]any
	requests map[string]int
	faults   Faults
	limiter  *limiter
	dopHint  string // x-ms-dop-hint value; empty sends none

	inFlight, peak int // Web API requests being handled, and the most at once

	hooks webhooks // registrations and deliveries (webhooks.go)
}

type record struct {
	row     map[string]any
	targets map[string]string // lookup column → target logical name
	version int64
}

// NewHandler returns the emulator as an http.Handler, for the
// `crmgate dataverse-emulator` subcommand or a custom listener.
func NewHandler(opts Options) *Handler {
	h := &Handler{
		opts:     opts,
		now:      opts.Now,
		newID:    opts.NewID,
		tables:   builtinTables(),
		bySet:    map[string]*table{},
		clients:  map[string]*Client{},
		records:  map[string]map[string]*record{},
		links:    map[string]map[[2]string]bool{},
		version:  1000000,
		tokens:   map[string]tokenInfo{},
		calls:    map[string][]map[string]any{},
		requests: map[string]int{},
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.newID == nil {
		h.newID = randomUUID
	}
	if h.opts.TokenLifetime <= 0 {
		h.opts.TokenLifetime = 3599 * time.Second
	}
	if h.opts.OrganizationID == "" {
		h.opts.OrganizationID = h.newID()
	}
	if h.opts.BusinessUnitID == "" {
		h.opts.BusinessUnitID = h.newID()
	}
	h.opts.BaseURL = strings.TrimRight(h.opts.BaseURL, "/")
	for i := range opts.Clients {
		c := opts.Clients[i]
		if c.UserID == "" {
			c.UserID = h.newID()
		}
		h.clients[c.ID] = &c
	}
	for logical, t := range h.tables {
		h.bySet[t.typ.EntitySet] = t
		h.records[logical] = map[string]*record{}
	}
	for _, r := range relationships {
		h.links[r.name] = map[[2]string]bool{}
	}
	h.limiter = newLimiter(opts.Limits)
	if opts.DOPHint > 0 {
		h.dopHint = strconv.Itoa(opts.DOPHint)
	}
	return h
}

// ServeHTTP routes token and Web API requests.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		h.count("POST token")
		h.serveToken(w, r)
		return
	}
	if r.URL.Path+"/" == APIPrefix || strings.HasPrefix(r.URL.Path, APIPrefix) {
		h.serveAPI(w, r)
		return
	}
	writeError(w, segmentNotFound(strings.TrimPrefix(r.URL.Path, "/")))
}

// baseURL is the environment URL for r.
func (h *Handler) baseURL(r *http.Request) string {
	if h.opts.BaseURL != "" {
		return h.opts.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Requests returns how many requests for op have arrived, whatever their
// outcome. op is "POST token" for the token endpoint, otherwise the method,
// a space and the path after /api/data/v9.2/ with every key in parentheses
// replaced by "()", for example "GET contacts", "GET contacts()",
// "POST contacts()/adx_webrole_contact/$ref", "GET WhoAmI()".
// An empty op returns the total.
func (h *Handler) Requests(op string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op == "" {
		n := 0
		for _, c := range h.requests {
			n += c
		}
		return n
	}
	return h.requests[op]
}

func (h *Handler) count(op string) {
	h.mu.Lock()
	h.requests[op]++
	h.mu.Unlock()
}

// SetDOPHint sets the x-ms-dop-hint header value sent with every Web API
// answer from now on, as given: a number such as "8", or a malformed
// value ("0", "-3", "many") to test how a client copes; empty sends none.
func (h *Handler) SetDOPHint(value string) {
	h.mu.Lock()
	h.dopHint = value
	h.mu.Unlock()
}

// PeakConcurrency returns the most Web API requests that were being
// handled at once since the handler was built or ResetPeakConcurrency
// last ran. Token requests are not counted.
func (h *Handler) PeakConcurrency() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak
}

// ResetPeakConcurrency restarts PeakConcurrency from the requests being
// handled now.
func (h *Handler) ResetPeakConcurrency() {
	h.mu.Lock()
	h.peak = h.inFlight
	h.mu.Unlock()
}

// enter counts a Web API request in, returning the hint to send; leave
// counts it out.
func (h *Handler) enter() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight++
	h.peak = max(h.peak, h.inFlight)
	return h.dopHint
}

func (h *Handler) leave() {
	h.mu.Lock()
	h.inFlight--
	h.mu.Unlock()
}

// ActionCalls returns the JSON parameters of every call of the unbound
// action name, oldest first.
func (h *Handler) ActionCalls(name string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.calls[name]...)
}

// Server is a Handler listening on 127.0.0.1 on a random port, in the spirit
// of httptest.Server.
type Server struct {
	*Handler
	// URL is the environment URL, http://127.0.0.1:port, with no trailing
	// slash. It is also the authority host of the token endpoint.
	URL string

	srv *http.Server
	ln  net.Listener
}

// NewServer starts an emulator on 127.0.0.1:0. opts.BaseURL, when empty, is
// set to the server's URL. It panics if it cannot listen, as
// httptest.NewServer does. Call Close when done.
func NewServer(opts Options) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("dataversetest: listen: %v", err))
	}
	url := "http://" + ln.Addr().String()
	if opts.BaseURL == "" {
		opts.BaseURL = url
	}
	s := &Server{Handler: NewHandler(opts), URL: url, ln: ln}
	s.srv = &http.Server{Handler: s.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s
}

// Close shuts the server down, closing idle and active connections.
func (s *Server) Close() {
	_ = s.srv.Close()
}

// randomUUID returns a random lower-case version 4 UUID.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
