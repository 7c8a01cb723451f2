// Package crmclient is crmgate's client of the Microsoft Dataverse Web API
// (v9.2): it acquires Entra ID tokens by the client credentials grant,
// sends requests with the documented headers, limits concurrency to the
// service protection limits, retries what is safe to retry, honours
// Retry-After, and trips a circuit breaker when Dataverse is down. The facts
// it follows are documented at
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
// and https://learn.microsoft.com/power-apps/developer/data-platform/api-limits;
// crmclient/dataversetest emulates the server for tests.
package crmclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// apiPath is the Web API root under the environment URL
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors).
const apiPath = "/api/data/v9.2/"

// DefaultAuthorityHost is the Microsoft Entra ID host used when
// Config.AuthorityHost is empty.
const DefaultAuthorityHost = "https://login.microsoftonline.com"

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout                 = 30 * time.Second
	DefaultMaxConcurrency          = 52 // Dataverse's concurrent-request limit per user (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits)
	DefaultMaxRetries              = 3
	DefaultRetryBudget             = 30 * time.Second
	DefaultBreakerFailures         = 5
	DefaultBreakerOpenTimeout      = 30 * time.Second
	DefaultBreakerHalfOpenRequests = 1
	DefaultTokenRefreshBefore      = 5 * time.Minute
	DefaultInteractiveBudget       = 5 * time.Second
)

// Config configures a Client. Zero values of optional fields take the
// Default* constants; New validates everything and reports every problem
// at once.
type Config struct {
	// URL is the environment URL, such as https://org.crm.dynamics.com,
	// without a path. It must be https, except on a loopback host (the
	// emulator). Required. The token scope is URL + "/.default".
	URL string
	// TenantID is the Entra ID tenant, a GUID or a domain name. Required.
	TenantID string
	// ClientID is the application (client) id, a GUID. Required.
	ClientID string

	// Exactly one credential must be set.

	// ClientSecret is the application's client secret. It is sent to
	// the token endpoint only and never logged.
	ClientSecret string
	// CertificateFile is a PEM file holding the registered certificate
	// and its unencrypted RSA private key; read once by New.
	CertificateFile string
	// FederatedTokenFile is a file holding a token of a federated
	// identity provider (for example a Kubernetes projected service
	// account token); read on every token acquisition, so rotation needs
	// no restart.
	FederatedTokenFile string

	// AuthorityHost is the Entra ID host; empty means
	// DefaultAuthorityHost. It must be https, except on a loopback host.
	AuthorityHost string
	// TokenRefreshBefore is how long before expiry a token is replaced;
	// zero means 5 minutes (at most half the token's lifetime is used).
	TokenRefreshBefore time.Duration

	// Timeout bounds one HTTP attempt, reading the body included; zero
	// means 30 s.
	Timeout time.Duration
	// MaxConcurrency bounds the requests in flight to Dataverse; zero
	// means 52, Dataverse's own limit per user. Waiting for a slot
	// honours the caller's context. Dataverse's x-ms-dop-hint answer
	// header lowers the bound to the degree of parallelism it
	// recommends, never above MaxConcurrency, and a later hint moves it
	// again (https://learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests).
	MaxConcurrency int
	// MaxRetries is how many times one call may be retried; zero means
	// 3, a negative value disables retries (a 429 then fails at once).
	MaxRetries int
	// RetryBudget is the total time one call may spend waiting between
	// attempts (backoff and Retry-After); zero means 30 s. A Retry-After
	// that does not fit fails the call at once with a throttled error.
	RetryBudget time.Duration
	// InteractiveBudget bounds a whole call of the Client's interactive
	// view (see Client.Interactive), the one a person waits for: the
	// token, the wait for a concurrency slot, every attempt and every wait
	// between them. Zero means 5 s. A Retry-After (or a shared wait) that
	// does not fit in what is left of it fails the call at once, without
	// waiting. The Client itself is not bounded by it.
	InteractiveBudget time.Duration

	// BreakerFailures is how many consecutive failed calls open the
	// circuit breaker; zero means 5.
	BreakerFailures int
	// BreakerOpenTimeout is how long the breaker stays open before it
	// lets trial calls through; zero means 30 s.
	BreakerOpenTimeout time.Duration
	// BreakerHalfOpenRequests is how many trial calls the half-open
	// breaker lets through; zero means 1.
	BreakerHalfOpenRequests int

	// HTTPClient sends all requests (token endpoint included); nil means
	// a client with its own transport that keeps MaxConcurrency idle
	// connections. Its Timeout, if any, applies on top of Timeout.
	HTTPClient *http.Client
	// Now is the clock for token expiry and retry waits; nil means
	// time.Now. The circuit breaker always uses the real clock.
	Now func() time.Time
	// Sleep waits for d or until ctx ends; nil means a timer. Tests
	// inject it so that retries take no real time.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives retries, throttling and breaker changes; nil
	// discards them.
	Logger *slog.Logger
	// Registerer receives the crmgate_dataverse_* metrics; nil means they
	// are kept but not registered. Two Clients cannot share one.
	Registerer prometheus.Registerer
}

// Client calls the Dataverse Web API of one environment. It is safe for
// concurrent use; build it with New. The Client New returns is for
// background work (the outbox worker, CLI commands): each call may take
// Timeout per attempt and RetryBudget of waits. Interactive returns a
// view of it for calls a person waits for.
type Client struct {
	*core
	// budget bounds a whole call of this view; zero means unbounded
	// (the background view).
	budget time.Duration
}

// core is the state every view of one Client shares: the token, the
// breaker, the concurrency limit and Dataverse's Retry-After.
type core struct {
	base              string // environment URL + apiPath
	tokens            *tokenSource
	httpClient        *http.Client
	slots             *slots
	breaker           *gobreaker.CircuitBreaker[*response]
	metrics           *metrics
	now               func() time.Time
	sleep             func(context.Context, time.Duration) error
	logger            *slog.Logger
	timeout           time.Duration
	maxRetries        int
	retryBudget       time.Duration
	interactiveBudget time.Duration

	mu        sync.Mutex
	notBefore time.Time // no request starts before it: Dataverse's Retry-After

	lastFailure atomic.Pointer[error] // the last outcome the breaker counted as a failure

	breakerFailures int       // Config.BreakerFailures
	status          statusLog // recent failures for Status; written on failure paths only
}

// Interactive returns the interactive view of c: the same Client (one
// token, one circuit breaker, one concurrency limit, one Retry-After
// wait), whose every call is bounded by Config.InteractiveBudget, for the
// calls a person waits for (a sign-in, the revalidation of a session on a
// proxied request). When the budget is spent the call fails with an error
// wrapping ErrUnavailable and does not count against the breaker (a slow
// answer may still be a healthy one for background work); a Retry-After
// beyond what is left of the budget fails at once, throttled, without
// waiting.
func (c *Client) Interactive() *Client {
	return &Client{core: c.core, budget: c.interactiveBudget}
}

// ConcurrencyLimit returns how many requests may be in flight to
// Dataverse now: Config.MaxConcurrency, or less when Dataverse's last
// x-ms-dop-hint recommended less.
func (c *Client) ConcurrencyLimit() int { return c.slots.current() }

// New validates cfg, applies the defaults, loads the certificate if one is
// configured, and returns a Client. It does not contact Dataverse or Entra
// ID.
func New(cfg Config) (*Client, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("crmclient: "+format, args...))
	}

	env, err := parseBaseURL("URL", cfg.URL, true)
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.AuthorityHost == "" {
		cfg.AuthorityHost = DefaultAuthorityHost
	}
	authority, err := parseBaseURL("AuthorityHost", cfg.AuthorityHost, true)
	if err != nil {
		errs = append(errs, err)
	}
	if !validTenant(cfg.TenantID) {
		bad("TenantID %q: want a tenant GUID or domain name", truncate(cfg.TenantID, 64))
	}
	if _, err := ParseGUID(cfg.ClientID); err != nil {
		bad("ClientID: want the application (client) id GUID")
	}
	set := 0
	for _, s := range []string{cfg.ClientSecret, cfg.CertificateFile, cfg.FederatedTokenFile} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		bad("set exactly one of ClientSecret, CertificateFile and FederatedTokenFile (%d set)", set)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Timeout", &cfg.Timeout, DefaultTimeout},
		{"RetryBudget", &cfg.RetryBudget, DefaultRetryBudget},
		{"InteractiveBudget", &cfg.InteractiveBudget, DefaultInteractiveBudget},
		{"BreakerOpenTimeout", &cfg.BreakerOpenTimeout, DefaultBreakerOpenTimeout},
		{"TokenRefreshBefore", &cfg.TokenRefreshBefore, DefaultTokenRefreshBefore},
	}
	for _, d := range durations {
		if *d.v < 0 {
			bad("%s %v is negative", d.name, *d.v)
		} else if *d.v == 0 {
			*d.v = d.def
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConcurrency", &cfg.MaxConcurrency, DefaultMaxConcurrency},
		{"BreakerFailures", &cfg.BreakerFailures, DefaultBreakerFailures},
		{"BreakerHalfOpenRequests", &cfg.BreakerHalfOpenRequests, DefaultBreakerHalfOpenRequests},
	}
	for _, n := range ints {
		if *n.v < 0 {
			bad("%s %d is negative", n.name, *n.v)
		} else if *n.v == 0 {
			*n.v = n.def
		}
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}

	var cred credential
	var endpoint string
	if authority != nil {
		endpoint = authority.String() + "/" + url.PathEscape(cfg.TenantID) + "/oauth2/v2.0/token"
	}
	switch {
	case set != 1:
	case cfg.ClientSecret != "":
		cred = secretCredential{cfg.ClientSecret}
	case cfg.CertificateFile != "":
		c, err := loadCertificateCredential(cfg.CertificateFile, cfg.ClientID, endpoint)
		if err != nil {
			errs = append(errs, err)
		}
		cred = c
	case cfg.FederatedTokenFile != "":
		if err := readableFile(cfg.FederatedTokenFile); err != nil {
			errs = append(errs, fmt.Errorf("crmclient: FederatedTokenFile: %w", err))
		}
		cred = federatedCredential{cfg.FederatedTokenFile}
	}

	m := newMetrics()
	if cfg.Registerer != nil {
		if err := m.register(cfg.Registerer); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepContext
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.MaxConcurrency
		cfg.HTTPClient = &http.Client{Transport: tr}
	}

	c := &Client{core: &core{
		base: env.String() + apiPath,
		tokens: &tokenSource{
			endpoint:      endpoint,
			clientID:      cfg.ClientID,
			scope:         env.String() + "/.default",
			cred:          cred,
			httpClient:    cfg.HTTPClient,
			now:           cfg.Now,
			refreshBefore: cfg.TokenRefreshBefore,
			timeout:       cfg.Timeout,
			logger:        cfg.Logger,
		},
		httpClient:        cfg.HTTPClient,
		slots:             newSlots(cfg.MaxConcurrency),
		metrics:           m,
		now:               cfg.Now,
		sleep:             cfg.Sleep,
		logger:            cfg.Logger,
		timeout:           cfg.Timeout,
		maxRetries:        cfg.MaxRetries,
		retryBudget:       cfg.RetryBudget,
		interactiveBudget: cfg.InteractiveBudget,
		breakerFailures:   cfg.BreakerFailures,
	}}
	m.concurrencyLimit.Set(float64(cfg.MaxConcurrency))
	failures := uint32(cfg.BreakerFailures)
	c.breaker = gobreaker.NewCircuitBreaker[*response](gobreaker.Settings{
		Name:        "dataverse",
		MaxRequests: uint32(cfg.BreakerHalfOpenRequests),
		Timeout:     cfg.BreakerOpenTimeout,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= failures
		},
		IsSuccessful: isBreakerSuccess,
		IsExcluded: func(err error) bool {
			var gone callerGone
			var spent *budgetSpent
			return errors.As(err, &gone) || errors.As(err, &spent)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			c.metrics.breakerState.Set(float64(to))
			c.status.breakerChanged(c.now())
			c.logger.Warn("crmclient: dataverse circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	return c, nil
}

// parseBaseURL checks an origin-only URL: https (or http on a loopback
// host, for emulators), a host, no user info, path, query or fragment.
func parseBaseURL(field, raw string, required bool) (*url.URL, error) {
	if raw == "" {
		if required {
			return nil, fmt.Errorf("crmclient: %s is required", field)
		}
		return nil, nil
	}
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("crmclient: %s: %w", field, err)
	}
	switch {
	case u.Host == "":
		return nil, fmt.Errorf("crmclient: %s %q: want scheme://host", field, raw)
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("crmclient: %s %q: want scheme://host[:port] only", field, raw)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("crmclient: %s %q: want https (http only on a loopback host)", field, raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host)}, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validTenant accepts a GUID or a domain name.
func validTenant(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WhoAmIResponse is the answer of the WhoAmI function: the identity
// Dataverse sees for this client's application user.
type WhoAmIResponse struct {
	// UserID is the systemuserid of the application user.
	UserID GUID `json:"UserId"`
	// BusinessUnitID is the user's business unit.
	BusinessUnitID GUID `json:"BusinessUnitId"`
	// OrganizationID is the Dataverse organization (environment).
	OrganizationID GUID `json:"OrganizationId"`
}

// WhoAmI calls the WhoAmI function (GET WhoAmI(),
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/use-web-api-functions).
// It is the cheapest authenticated call, used by readiness checks and to confirm
// the credentials at start-up.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmIResponse, error) {
	var out WhoAmIResponse
	resp, err := c.do(ctx, &request{op: "WhoAmI", method: http.MethodGet, path: "WhoAmI()"})
	if err != nil {
		return out, err
	}
	if err := resp.decode(&out); err != nil {
		return out, err
	}
	if out.UserID.IsZero() {
		return out, errors.New("crmclient: WhoAmI answer without UserId")
	}
	return out, nil
}
