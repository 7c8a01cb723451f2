package crmclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"
)

// scriptedDataverse is a small scripted Dataverse for transport tests: the token
// endpoint of https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
// plus /api/data/v9.2/, where handle answers call number n (from 1). It
// checks the headers of https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
// on every call.
type scriptedDataverse struct {
	tokens tokenEndpoint
	calls  atomic.Int64
	handle func(w http.ResponseWriter, r *http.Request, n int64)
	t      *testing.T
}

func (d *scriptedDataverse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, apiPath) {
		d.tokens.ServeHTTP(w, r)
		return
	}
	n := d.calls.Add(1)
	for k, v := range map[string]string{"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"} {
		if got := r.Header.Get(k); got != v {
			d.t.Errorf("call %d: header %s = %q, want %q", n, k, got, v)
		}
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer token-") {
		w.Header().Set("WWW-Authenticate", "Bearer authorization_uri=https://login.microsoftonline.com/x/oauth2/authorize")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"code":"0x80044302","message":"Request is not authenticated."}}`)
		return
	}
	d.handle(w, r, n)
}

func dvError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
}

func whoAmIBody(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.Header().Set("OData-Version", "4.0")
	fmt.Fprint(w, `{"@odata.context":"https://org.crm.dynamics.com/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",`+
		`"BusinessUnitId":"0F3162F6-804A-E611-80D1-00155D4333FA","UserId":"1f3162f6-804a-e611-80d1-00155d4333fa","OrganizationId":"2f3162f6-804a-e611-80d1-00155d4333fa"}`)
}

// harness is a Client wired to a dataverse with a fake clock and a Sleep
// that records waits and advances the clock instead of sleeping.
type harness struct {
	dv     *scriptedDataverse
	srv    *httptest.Server
	client *Client
	clock  *fakeClock
	reg    *prometheus.Registry
	mu     sync.Mutex
	sleeps []time.Duration
}

func newHarness(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int64), mod func(*Config)) *harness {
	t.Helper()
	h := &harness{dv: &scriptedDataverse{handle: handle, t: t}, clock: newFakeClock(), reg: prometheus.NewRegistry()}
	h.srv = httptest.NewServer(h.dv)
	t.Cleanup(h.srv.Close)
	cfg := Config{
		URL:           h.srv.URL,
		TenantID:      testTenant,
		ClientID:      testClientID,
		ClientSecret:  testSecret,
		AuthorityHost: h.srv.URL,
		HTTPClient:    h.srv.Client(),
		Now:           h.clock.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.mu.Lock()
			h.sleeps = append(h.sleeps, d)
			h.mu.Unlock()
			h.clock.Advance(d)
			return ctx.Err()
		},
		Registerer: h.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.client = c
	return h
}

func (h *harness) recordedSleeps() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.sleeps...)
}

func TestWhoAmI(t *testing.T) {
	var scope string
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Method != http.MethodGet || r.URL.Path != apiPath+"WhoAmI()" {
			dvError(w, 404, "", "No HTTP resource was found that matches the request URI")
			return
		}
		if r.Header.Get("If-None-Match") != "null" {
			t.Errorf("If-None-Match = %q", r.Header.Get("If-None-Match"))
		}
		whoAmIBody(w)
	}, nil)
	got, err := h.client.WhoAmI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := WhoAmIResponse{
		UserID:         MustParseGUID("1f3162f6-804a-e611-80d1-00155d4333fa"),
		BusinessUnitID: MustParseGUID("0f3162f6-804a-e611-80d1-00155d4333fa"),
		OrganizationID: MustParseGUID("2f3162f6-804a-e611-80d1-00155d4333fa"),
	}
	if got != want {
		t.Fatalf("WhoAmI = %+v, want %+v", got, want)
	}
	scope = h.dv.tokens.lastForm().Get("scope")
	if scope != h.srv.URL+"/.default" {
		t.Fatalf("scope = %q", scope)
	}
	if v := metricValue(t, h.client.metrics.requests.WithLabelValues("WhoAmI", "200")); v != 1 {
		t.Fatalf("requests_total{WhoAmI,200} = %v", v)
	}
	if mfs, err := h.reg.Gather(); err != nil || len(mfs) == 0 {
		t.Fatalf("registered metrics: %d, %v", len(mfs), err)
	}
}

func TestWhoAmIMalformedAnswer(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int64) { fmt.Fprint(w, `{"UserId":"nope"}`) }, nil)
	if _, err := h.client.WhoAmI(context.Background()); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("err = %v", err)
	}
}

// script answers call n with statuses[n-1] (the last one repeats); 200
// answers WhoAmI, "drop" closes the connection without an answer.
func script(statuses ...string) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		s := statuses[min(int(n), len(statuses))-1]
		switch {
		case s == "200":
			whoAmIBody(w)
		case s == "204":
			w.WriteHeader(204)
		case s == "drop":
			// Answer half a response and close the connection, so the
			// client sees a broken body rather than a refused request
			// (net/http itself repeats a request whose reused connection
			// closed before any answer).
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"User")
				conn.Close()
			}
		case strings.HasPrefix(s, "429/"):
			w.Header().Set("Retry-After", strings.TrimPrefix(s, "429/"))
			dvError(w, 429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.")
		default:
			var status int
			fmt.Sscan(s, &status)
			dvError(w, status, "0x80040217", "status "+s)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	ifMatch := http.Header{"If-Match": {`W/"1"`}}
	tests := []struct {
		name        string
		statuses    []string
		method      string
		header      http.Header
		mod         func(*Config)
		wantCalls   int64
		wantSleeps  []time.Duration // exact waits; nil with backoffs set checks ranges
		wantBackoff int             // number of jittered backoff waits
		check       func(t *testing.T, err error)
	}{
		{name: "GET 503 retried then succeeds", statuses: []string{"503", "503", "200"}, method: "GET", wantCalls: 3, wantBackoff: 2, check: noErr},
		{name: "GET 503 retries exhausted", statuses: []string{"503"}, method: "GET", wantCalls: 4, wantBackoff: 3, check: unavailable(503)},
		{name: "GET 408 and 502 and 504 retried", statuses: []string{"408", "502", "504", "200"}, method: "GET", wantCalls: 4, wantBackoff: 3, check: noErr},
		{name: "GET connection dropped retried", statuses: []string{"drop", "200"}, method: "GET", wantCalls: 2, wantBackoff: 1, check: noErr},
		{name: "POST 503 not retried", statuses: []string{"503", "200"}, method: "POST", wantCalls: 1, check: unavailable(503)},
		{name: "POST connection dropped not retried", statuses: []string{"drop", "200"}, method: "POST", wantCalls: 1, check: unavailable(0)},
		{name: "PATCH without If-Match not retried", statuses: []string{"503", "204"}, method: "PATCH", wantCalls: 1, check: unavailable(503)},
		{name: "PATCH with If-Match retried", statuses: []string{"503", "204"}, method: "PATCH", header: ifMatch, wantCalls: 2, wantBackoff: 1, check: noErr},
		{name: "DELETE 500 retried", statuses: []string{"500", "204"}, method: "DELETE", wantCalls: 2, wantBackoff: 1, check: noErr},
		{name: "501 not retried", statuses: []string{"501", "200"}, method: "GET", wantCalls: 1, check: business(func(error) bool { return true }, 501)},
		{name: "404 not retried", statuses: []string{"404", "200"}, method: "GET", wantCalls: 1, check: business(IsNotFound, 404)},
		{name: "412 not retried", statuses: []string{"412", "200"}, method: "PATCH", header: ifMatch, wantCalls: 1, check: business(IsConflict, 412)},
		{name: "400 not retried", statuses: []string{"400", "200"}, method: "GET", wantCalls: 1, check: business(func(error) bool { return true }, 400)},
		{name: "POST 429 honours Retry-After", statuses: []string{"429/7", "204"}, method: "POST", wantCalls: 2, wantSleeps: []time.Duration{7 * time.Second}, check: noErr},
		{name: "429 twice", statuses: []string{"429/2", "429/3", "200"}, method: "GET", wantCalls: 3, wantSleeps: []time.Duration{2 * time.Second, 3 * time.Second}, check: noErr},
		{name: "429 beyond the budget", statuses: []string{"429/31", "200"}, method: "GET", wantCalls: 1, check: throttled},
		{name: "429 budget used up by earlier waits", statuses: []string{"429/20", "429/20", "200"}, method: "GET", wantCalls: 2, wantSleeps: []time.Duration{20 * time.Second}, check: throttled},
		{name: "429 retries exhausted", statuses: []string{"429/1"}, method: "GET", mod: func(c *Config) { c.MaxRetries = 2 }, wantCalls: 3, wantSleeps: []time.Duration{time.Second, time.Second}, check: throttled},
		{name: "429 with retries disabled", statuses: []string{"429/1", "200"}, method: "GET", mod: func(c *Config) { c.MaxRetries = -1 }, wantCalls: 1, check: throttled},
		{name: "backoff beyond the budget", statuses: []string{"503", "200"}, method: "GET", mod: func(c *Config) { c.RetryBudget = time.Millisecond }, wantCalls: 1, check: unavailable(503)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, script(tt.statuses...), tt.mod)
			var body []byte
			if tt.method == "POST" || tt.method == "PATCH" {
				body = []byte(`{}`)
			}
			_, err := h.client.do(context.Background(), &request{op: "Test", method: tt.method, path: "WhoAmI()", header: tt.header, body: body})
			tt.check(t, err)
			if n := h.dv.calls.Load(); n != tt.wantCalls {
				t.Errorf("server calls = %d, want %d", n, tt.wantCalls)
			}
			sleeps := h.recordedSleeps()
			if tt.wantBackoff > 0 {
				if len(sleeps) != tt.wantBackoff {
					t.Fatalf("sleeps = %v, want %d backoffs", sleeps, tt.wantBackoff)
				}
				for i, d := range sleeps {
					hi := backoffBase << i
					if d < hi/2 || d > hi {
						t.Errorf("backoff %d = %v, want in [%v, %v]", i, d, hi/2, hi)
					}
				}
			} else if fmt.Sprint(sleeps) != fmt.Sprint(tt.wantSleeps) && !(len(sleeps) == 0 && len(tt.wantSleeps) == 0) {
				t.Errorf("sleeps = %v, want %v", sleeps, tt.wantSleeps)
			}
			if retries := metricValue(t, h.client.metrics.retries.WithLabelValues("Test")); retries != float64(tt.wantCalls-1) {
				t.Errorf("retries_total = %v, want %d", retries, tt.wantCalls-1)
			}
		})
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("err = %v", err)
	}
}

func unavailable(status int) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		var ae *APIError
		if status != 0 && (!errors.As(err, &ae) || ae.Status != status) {
			t.Fatalf("err = %v, want an APIError %d inside", err, status)
		}
		if IsThrottled(err) || IsNotFound(err) {
			t.Fatalf("err = %v classified as throttled/not found", err)
		}
	}
}

func business(is func(error) bool, status int) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != status || !is(err) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want a business APIError %d", err, status)
		}
		if ae.Code != "0x80040217" {
			t.Fatalf("code = %q", ae.Code)
		}
	}
}

func throttled(t *testing.T, err error) {
	t.Helper()
	if !IsThrottled(err) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want throttled and ErrUnavailable", err)
	}
}

func TestRetryAfterIsShared(t *testing.T) {
	h := newHarness(t, script("429/10", "200"), func(c *Config) { c.MaxRetries = -1 })
	ctx := context.Background()
	if _, err := h.client.WhoAmI(ctx); !IsThrottled(err) {
		t.Fatalf("first call: %v", err)
	}
	if got := metricValue(t, h.client.metrics.throttled.WithLabelValues("WhoAmI")); got != 1 {
		t.Fatalf("throttled_total = %v", got)
	}
	// Another caller, with no 429 of its own, waits for the Retry-After
	// before sending anything.
	if _, err := h.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	if s := h.recordedSleeps(); len(s) != 1 || s[0] != 10*time.Second {
		t.Fatalf("sleeps = %v, want [10s]", s)
	}
	if n := h.dv.calls.Load(); n != 2 {
		t.Fatalf("calls = %d", n)
	}
}

func TestRetryAfterBeyondBudgetFailsWithoutCalling(t *testing.T) {
	h := newHarness(t, script("429/120", "200"), func(c *Config) { c.MaxRetries = -1 })
	ctx := context.Background()
	h.client.WhoAmI(ctx)
	_, err := h.client.WhoAmI(ctx)
	throttled(t, err)
	if n := h.dv.calls.Load(); n != 1 {
		t.Fatalf("calls = %d, want 1 (the second call must not reach the server)", n)
	}
}

func TestUnauthorizedRefreshesTokenOnce(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Header.Get("Authorization") == "Bearer token-1" {
			dvError(w, 401, "0x80044302", "Request is not authenticated.")
			return
		}
		whoAmIBody(w)
	}, nil)
	if _, err := h.client.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.dv.tokens.requests.Load(); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
	// Always 401: one retry with a fresh token, then the 401 is returned.
	h2 := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int64) { dvError(w, 401, "0x80044302", "no") }, nil)
	var ae *APIError
	if _, err := h2.client.WhoAmI(context.Background()); !errors.As(err, &ae) || ae.Status != 401 || h2.dv.calls.Load() != 2 {
		t.Fatalf("err = %v, calls = %d", err, h2.dv.calls.Load())
	}
}

func TestTokenErrorNotRetried(t *testing.T) {
	h := newHarness(t, script("200"), nil)
	h.dv.tokens.check = func(*http.Request, url.Values) (int, string, string) {
		return 401, "invalid_client", "AADSTS7000215: Invalid client secret provided."
	}
	var te *TokenError
	if _, err := h.client.WhoAmI(context.Background()); !errors.As(err, &te) || te.Code != "invalid_client" {
		t.Fatalf("err = %v", err)
	}
	if h.dv.calls.Load() != 0 || h.dv.tokens.requests.Load() != 1 {
		t.Fatalf("calls = %d, token requests = %d", h.dv.calls.Load(), h.dv.tokens.requests.Load())
	}
}

func TestCallerContextCanceled(t *testing.T) {
	h := newHarness(t, script("200"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.client.WhoAmI(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	h := newHarness(t, script("503"), func(c *Config) { c.MaxRetries = -1; c.BreakerFailures = 3 })
	ctx := context.Background()
	for i := range 3 {
		if _, err := h.client.WhoAmI(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := h.client.WhoAmI(ctx)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("open breaker: err = %v", err)
	}
	if n := h.dv.calls.Load(); n != 3 {
		t.Fatalf("server calls = %d, want 3 (the 4th must fail fast)", n)
	}
	if s := metricValue(t, h.client.metrics.breakerState); s != float64(gobreaker.StateOpen) {
		t.Fatalf("breaker gauge = %v", s)
	}
}

func TestBusinessAnswersDoNotTripBreaker(t *testing.T) {
	h := newHarness(t, script("404", "412", "400", "403", "404", "412", "400", "403"), func(c *Config) { c.BreakerFailures = 2 })
	for range 8 {
		_, err := h.client.do(context.Background(), &request{op: "Test", method: "GET", path: "contacts"})
		if errors.Is(err, ErrUnavailable) {
			t.Fatalf("business answer gave %v", err)
		}
	}
	if st := h.client.breaker.State(); st != gobreaker.StateClosed {
		t.Fatalf("breaker %v after business answers", st)
	}
	if h.dv.calls.Load() != 8 {
		t.Fatalf("calls = %d", h.dv.calls.Load())
	}
}

func TestConcurrencyLimit(t *testing.T) {
	const limit, callers = 4, 40
	var inFlight, peak atomic.Int64
	gate := make(chan struct{})
	var once sync.Once
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		if cur == limit {
			once.Do(func() { close(gate) })
		}
		<-gate
		whoAmIBody(w)
	}, func(c *Config) { c.MaxConcurrency = limit })
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			if _, err := h.client.WhoAmI(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p != limit {
		t.Fatalf("peak concurrency = %d, want exactly %d", p, limit)
	}
	if n := h.dv.calls.Load(); n != callers {
		t.Fatalf("calls = %d", n)
	}
}

func TestNewValidation(t *testing.T) {
	_, err := New(Config{
		URL:             "http://org.crm.dynamics.com/api",
		TenantID:        "bad tenant/",
		ClientID:        "not-a-guid",
		ClientSecret:    "x",
		CertificateFile: "/nonexistent",
		AuthorityHost:   "ftp://login",
		Timeout:         -1,
		MaxConcurrency:  -1,
	})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"URL", "AuthorityHost", "TenantID", "ClientID", "exactly one", "Timeout", "MaxConcurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{TenantID: testTenant, ClientID: testClientID, ClientSecret: "x"}, "URL is required"},
		{"http non-loopback", Config{URL: "http://org.crm.dynamics.com", TenantID: testTenant, ClientID: testClientID, ClientSecret: "x"}, "want https"},
		{"no credential", Config{URL: "https://org.crm.dynamics.com", TenantID: testTenant, ClientID: testClientID}, "exactly one"},
		{"federated file missing", Config{URL: "https://org.crm.dynamics.com", TenantID: testTenant, ClientID: testClientID, FederatedTokenFile: "/nonexistent/x"}, "FederatedTokenFile"},
		{"registry clash", Config{URL: "https://org.crm.dynamics.com", TenantID: testTenant, ClientID: testClientID, ClientSecret: "x", Registerer: clashRegistry(t)}, "register metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	c, err := New(Config{URL: "https://ORG.crm.dynamics.com/", TenantID: testTenant, ClientID: testClientID, ClientSecret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.base != "https://org.crm.dynamics.com/api/data/v9.2/" || c.tokens.scope != "https://org.crm.dynamics.com/.default" ||
		c.tokens.endpoint != "https://login.microsoftonline.com/"+testTenant+"/oauth2/v2.0/token" || c.slots.max != 52 || c.slots.current() != 52 || c.maxRetries != 3 {
		t.Fatalf("defaults: base %q scope %q endpoint %q sem %d retries %d", c.base, c.tokens.scope, c.tokens.endpoint, c.slots.max, c.maxRetries)
	}
}

func clashRegistry(t *testing.T) prometheus.Registerer {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{URL: "https://org.crm.dynamics.com", TenantID: testTenant, ClientID: testClientID, ClientSecret: "x", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestNewWithCertificate(t *testing.T) {
	path, _, _ := writeCertificate(t, "PRIVATE KEY")
	h := newHarness(t, script("200"), func(c *Config) { c.ClientSecret = ""; c.CertificateFile = path })
	if _, err := h.client.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := h.dv.tokens.lastForm()
	if f.Get("client_assertion_type") != clientAssertionType || f.Get("client_assertion") == "" {
		t.Fatalf("form = %v", f)
	}
}

// TestBreakerHalfOpensAndCloses runs in a synctest bubble because
// gobreaker reads the real clock: there, time.Sleep advances a fake clock
// at once.
func TestBreakerHalfOpensAndCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var healthy atomic.Bool
		dv := &scriptedDataverse{t: t, handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			if healthy.Load() {
				whoAmIBody(w)
				return
			}
			dvError(w, 503, "", "Service Unavailable")
		}}
		pn := NewPipeNet()
		srv := &http.Server{Handler: dv}
		go srv.Serve(pn)
		tr := &http.Transport{DialContext: pn.DialContext}
		defer func() {
			tr.CloseIdleConnections()
			srv.Close()
		}()
		c, err := New(Config{
			URL: "http://127.0.0.1", AuthorityHost: "http://127.0.0.1",
			TenantID: testTenant, ClientID: testClientID, ClientSecret: testSecret,
			HTTPClient: &http.Client{Transport: tr},
			MaxRetries: -1, BreakerFailures: 2, BreakerOpenTimeout: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for range 2 {
			c.WhoAmI(ctx)
		}
		if _, err := c.WhoAmI(ctx); !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("want open: %v", err)
		}
		time.Sleep(59 * time.Second)
		healthy.Store(true)
		if _, err := c.WhoAmI(ctx); !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("want still open before the timeout: %v", err)
		}
		time.Sleep(2 * time.Second)
		if st := c.breaker.State(); st != gobreaker.StateHalfOpen {
			t.Fatalf("state after timeout = %v, want half-open", st)
		}
		if _, err := c.WhoAmI(ctx); err != nil {
			t.Fatalf("trial call: %v", err)
		}
		if st := c.breaker.State(); st != gobreaker.StateClosed {
			t.Fatalf("state after a good trial = %v, want closed", st)
		}
		if n := dv.calls.Load(); n != 3 {
			t.Fatalf("calls = %d, want 3", n)
		}
		// A failed trial opens it again.
		healthy.Store(false)
		for range 2 {
			c.WhoAmI(ctx)
		}
		time.Sleep(61 * time.Second)
		c.WhoAmI(ctx)
		if st := c.breaker.State(); st != gobreaker.StateOpen {
			t.Fatalf("state after a failed trial = %v, want open", st)
		}
	})
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}
