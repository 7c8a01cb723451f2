package crmclient_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// The tests in this file run the real Client against the emulator over
// HTTP: faults, service protection limits and outages come from
// dataversetest, not from a handler written for the test. Waits go through
// an injected Sleep that advances one clock shared by the client and the
// emulator, so a Retry-After really lets the emulator's window pass and no
// test sleeps.

const (
	rigTenant   = "11111111-1111-1111-1111-111111111111"
	rigClientID = "22222222-2222-2222-2222-222222222222"
	rigSecret   = "s3cret~value"
	whoAmIOp    = "GET WhoAmI()"
	tokenOp     = "POST token"
)

// rigClock is the clock shared by the client and the emulator.
type rigClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *rigClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *rigClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// rig is a Client wired to a dataversetest.Server on a real socket.
type rig struct {
	srv    *dataversetest.Server
	client *crmclient.Client
	clock  *rigClock
	reg    *prometheus.Registry

	mu     sync.Mutex
	sleeps []time.Duration
}

func newRig(t testing.TB, opts func(*dataversetest.Options), cfg func(*crmclient.Config)) *rig {
	t.Helper()
	r := &rig{clock: &rigClock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry()}
	o := dataversetest.Options{
		TenantID: rigTenant,
		Clients:  []dataversetest.Client{{ID: rigClientID, Secret: rigSecret}},
		Now:      r.clock.Now,
	}
	if opts != nil {
		opts(&o)
	}
	r.srv = dataversetest.NewServer(o)
	t.Cleanup(r.srv.Close)
	c := crmclient.Config{
		URL:           r.srv.URL,
		AuthorityHost: r.srv.URL,
		TenantID:      rigTenant,
		ClientID:      rigClientID,
		ClientSecret:  rigSecret,
		Now:           r.clock.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			r.mu.Lock()
			r.sleeps = append(r.sleeps, d)
			r.mu.Unlock()
			r.clock.Advance(d)
			return ctx.Err()
		},
		Registerer: r.reg,
	}
	if cfg != nil {
		cfg(&c)
	}
	client, err := crmclient.New(c)
	if err != nil {
		t.Fatal(err)
	}
	r.client = client
	return r
}

func (r *rig) recordedSleeps() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.sleeps...)
}

// metric returns the value of the client's counter or gauge name with the
// given labels (all series summed when labels is empty).
func metric(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// checkBackoffs checks that sleeps are n jittered backoffs of 500 ms·2^i,
// each in [half, full].
func checkBackoffs(t *testing.T, sleeps []time.Duration, n int) {
	t.Helper()
	if len(sleeps) != n {
		t.Fatalf("sleeps = %v, want %d backoffs", sleeps, n)
	}
	for i, d := range sleeps {
		hi := 500 * time.Millisecond << i
		if d < hi/2 || d > hi {
			t.Errorf("backoff %d = %v, want in [%v, %v]", i, d, hi/2, hi)
		}
	}
}

func TestEmulatorTransientFaults(t *testing.T) {
	tests := []struct {
		name       string
		faults     dataversetest.Faults
		wantCalls  int // emulator Requests("GET WhoAmI()")
		wantSleeps int // jittered backoffs
		check      func(t *testing.T, err error)
	}{
		{name: "503 twice then success", faults: dataversetest.Faults{Status: 503, Count: 2}, wantCalls: 3, wantSleeps: 2, check: wantNoErr},
		{name: "500 then success", faults: dataversetest.Faults{Status: 500, Count: 1}, wantCalls: 2, wantSleeps: 1, check: wantNoErr},
		{name: "502 then success", faults: dataversetest.Faults{Status: 502, Count: 1}, wantCalls: 2, wantSleeps: 1, check: wantNoErr},
		{name: "504 three times then success", faults: dataversetest.Faults{Status: 504, Count: 3}, wantCalls: 4, wantSleeps: 3, check: wantNoErr},
		{name: "408 then success", faults: dataversetest.Faults{Status: 408, Count: 1}, wantCalls: 2, wantSleeps: 1, check: wantNoErr},
		{name: "503 retries exhausted", faults: dataversetest.Faults{Status: 503}, wantCalls: 4, wantSleeps: 3, check: wantUnavailable(503)},
		{name: "501 is final", faults: dataversetest.Faults{Status: 501}, wantCalls: 1, check: wantBusiness(501)},
		{name: "malformed JSON", faults: dataversetest.Faults{MalformedJSON: true}, wantCalls: 1, check: wantDecodeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil, nil)
			r.srv.SetFaults(tt.faults)
			_, err := r.client.WhoAmI(context.Background())
			tt.check(t, err)
			if n := r.srv.Requests(whoAmIOp); n != tt.wantCalls {
				t.Errorf("emulator %s = %d, want %d", whoAmIOp, n, tt.wantCalls)
			}
			checkBackoffs(t, r.recordedSleeps(), tt.wantSleeps)
			if got := metric(t, r.reg, "crmgate_dataverse_retries_total", nil); got != float64(tt.wantSleeps) {
				t.Errorf("retries_total = %v, want %d", got, tt.wantSleeps)
			}
		})
	}
}

// TestEmulatorDroppedConnection covers the emulator closing the
// connection without an answer. net/http itself replays a GET whose
// reused connection closed before any answer, so the emulator may see one
// more request than the client made attempts; what must hold is the
// outcome: a retry that succeeds, or ErrUnavailable with the cause.
func TestEmulatorDroppedConnection(t *testing.T) {
	t.Run("dropped once then success", func(t *testing.T) {
		r := newRig(t, nil, nil)
		r.srv.SetFaults(dataversetest.Faults{DropConnection: true, Count: 1})
		if _, err := r.client.WhoAmI(context.Background()); err != nil {
			t.Fatalf("err = %v", err)
		}
		if n := r.srv.Requests(whoAmIOp); n != 2 {
			t.Fatalf("emulator %s = %d, want 2", whoAmIOp, n)
		}
	})
	t.Run("always dropped", func(t *testing.T) {
		r := newRig(t, nil, nil)
		r.srv.SetFaults(dataversetest.Faults{DropConnection: true})
		_, err := r.client.WhoAmI(context.Background())
		if !errors.Is(err, crmclient.ErrUnavailable) || crmclient.IsThrottled(err) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		var ae *crmclient.APIError
		if errors.As(err, &ae) {
			t.Fatalf("err = %v carries an APIError although no answer came", err)
		}
		if !strings.Contains(err.Error(), "WhoAmI") {
			t.Fatalf("err = %v does not name the operation", err)
		}
		checkBackoffs(t, r.recordedSleeps(), 3)
		if n := r.srv.Requests(whoAmIOp); n < 4 {
			t.Fatalf("emulator %s = %d, want at least the client's 4 attempts", whoAmIOp, n)
		}
	})
}

// TestEmulatorAttemptTimeout shows that an emulator slower than
// Config.Timeout gives ErrUnavailable rather than a hang. Latency is real
// time in the emulator, so the timeout is 20 ms against 10 s of latency.
func TestEmulatorAttemptTimeout(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) { c.Timeout = 20 * time.Millisecond; c.MaxRetries = -1 })
	if _, err := r.client.WhoAmI(context.Background()); err != nil { // token fetched before the fault
		t.Fatal(err)
	}
	r.srv.SetFaults(dataversetest.Faults{Latency: 10 * time.Second})
	_, err := r.client.WhoAmI(context.Background())
	if !errors.Is(err, crmclient.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping the deadline", err)
	}
}

func TestEmulatorServiceProtectionLimits(t *testing.T) {
	// Three requests per 20 s window. The test makes three calls 5 s
	// apart, so the fourth, at +10 s, is refused until the first leaves
	// the window at +20 s: Retry-After 10.
	limits := func(o *dataversetest.Options) {
		o.Limits = dataversetest.Limits{Requests: 3, Window: 20 * time.Second}
	}
	fill := func(t *testing.T, r *rig) {
		t.Helper()
		for i := range 3 {
			if i > 0 {
				r.clock.Advance(5 * time.Second)
			}
			if _, err := r.client.WhoAmI(context.Background()); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
	}

	t.Run("Retry-After honoured exactly", func(t *testing.T) {
		r := newRig(t, limits, nil)
		fill(t, r)
		start := r.clock.Now()
		if _, err := r.client.WhoAmI(context.Background()); err != nil {
			t.Fatalf("throttled call: %v", err)
		}
		if s := r.recordedSleeps(); len(s) != 1 || s[0] != 10*time.Second {
			t.Fatalf("sleeps = %v, want exactly [10s] from the emulator's Retry-After", s)
		}
		if d := r.clock.Now().Sub(start); d != 10*time.Second {
			t.Fatalf("clock moved %v", d)
		}
		if n := r.srv.Requests(whoAmIOp); n != 5 {
			t.Fatalf("emulator %s = %d, want 5 (3 + the 429 + the retry)", whoAmIOp, n)
		}
		if got := metric(t, r.reg, "crmgate_dataverse_throttled_total", map[string]string{"operation": "WhoAmI"}); got != 1 {
			t.Fatalf("throttled_total = %v, want 1", got)
		}
		if got := metric(t, r.reg, "crmgate_dataverse_requests_total", map[string]string{"code": "429"}); got != 1 {
			t.Fatalf("requests_total{code=429} = %v, want 1", got)
		}
	})

	t.Run("Retry-After beyond the budget", func(t *testing.T) {
		r := newRig(t, limits, func(c *crmclient.Config) { c.RetryBudget = 5 * time.Second })
		fill(t, r)
		_, err := r.client.WhoAmI(context.Background())
		wantThrottled(t, err, "0x80072322")
		if s := r.recordedSleeps(); len(s) != 0 {
			t.Fatalf("sleeps = %v, want none: 10 s does not fit a 5 s budget", s)
		}
		// The next caller does not even send: the emulator would refuse it.
		_, err = r.client.WhoAmI(context.Background())
		wantThrottled(t, err, "")
		if n := r.srv.Requests(whoAmIOp); n != 4 {
			t.Fatalf("emulator %s = %d, want 4 (the second throttled call must not be sent)", whoAmIOp, n)
		}
		// Once the window has passed, calls go through again.
		r.clock.Advance(10 * time.Second)
		if _, err := r.client.WhoAmI(context.Background()); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})

	t.Run("retries disabled", func(t *testing.T) {
		r := newRig(t, limits, func(c *crmclient.Config) { c.MaxRetries = -1 })
		fill(t, r)
		_, err := r.client.WhoAmI(context.Background())
		wantThrottled(t, err, "0x80072322")
		if n := r.srv.Requests(whoAmIOp); n != 4 {
			t.Fatalf("emulator %s = %d, want 4", whoAmIOp, n)
		}
	})

	t.Run("shared Retry-After across callers", func(t *testing.T) {
		// One window of 3 requests per 20 s, three concurrent callers
		// after the window is full: the first 429 sets the wait for all.
		// Callers already in flight may each be refused once, and a caller
		// whose wait ends after the others refilled the window may be
		// refused once more (the injected clock moves with every wait), so
		// refusals are bounded by two per caller, not by one; every caller
		// still succeeds.
		r := newRig(t, limits, nil)
		fill(t, r)
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for range 3 {
			wg.Go(func() {
				_, err := r.client.WhoAmI(context.Background())
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("caller: %v", err)
			}
		}
		throttled := metric(t, r.reg, "crmgate_dataverse_throttled_total", nil)
		if n := r.srv.Requests(whoAmIOp); n != 3+3+int(throttled) || throttled < 1 || throttled > 6 {
			t.Fatalf("emulator %s = %d with %v throttled, want 6 + throttled and 1..6 throttled", whoAmIOp, n, throttled)
		}
	})
}

func TestEmulatorTokenEndpointDown(t *testing.T) {
	t.Run("retried like an outage, typed error", func(t *testing.T) {
		r := newRig(t, nil, nil)
		r.srv.SetFaults(dataversetest.Faults{TokenEndpointDown: true})
		_, err := r.client.WhoAmI(context.Background())
		var te *crmclient.TokenError
		if !errors.Is(err, crmclient.ErrUnavailable) || !errors.As(err, &te) || te.Status != http.StatusServiceUnavailable {
			t.Fatalf("err = %v, want ErrUnavailable wrapping a 503 TokenError", err)
		}
		if n := r.srv.Requests(tokenOp); n != 4 {
			t.Fatalf("token requests = %d, want 4 (1 + 3 retries)", n)
		}
		if n := r.srv.Requests(whoAmIOp); n != 0 {
			t.Fatalf("emulator %s = %d, want 0", whoAmIOp, n)
		}
		checkBackoffs(t, r.recordedSleeps(), 3)
	})
	t.Run("cached token keeps working", func(t *testing.T) {
		r := newRig(t, nil, nil)
		if _, err := r.client.WhoAmI(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.srv.SetFaults(dataversetest.Faults{TokenEndpointDown: true})
		if _, err := r.client.WhoAmI(context.Background()); err != nil {
			t.Fatalf("with a cached token: %v", err)
		}
		if n := r.srv.Requests(tokenOp); n != 1 {
			t.Fatalf("token requests = %d, want 1", n)
		}
	})
	t.Run("opens the breaker", func(t *testing.T) {
		r := newRig(t, nil, func(c *crmclient.Config) { c.MaxRetries = -1; c.BreakerFailures = 2 })
		r.srv.SetFaults(dataversetest.Faults{TokenEndpointDown: true})
		for i := range 2 {
			if _, err := r.client.WhoAmI(context.Background()); !errors.Is(err, crmclient.ErrUnavailable) {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		_, err := r.client.WhoAmI(context.Background())
		if !errors.Is(err, crmclient.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("err = %v, want the open breaker", err)
		}
		if n := r.srv.Requests(tokenOp); n != 2 {
			t.Fatalf("token requests = %d, want 2 (the open breaker fails fast)", n)
		}
	})
}

func TestEmulatorBreakerOpensAndFailsFast(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) { c.MaxRetries = -1; c.BreakerFailures = 3 })
	ctx := context.Background()
	r.srv.SetFaults(dataversetest.Faults{Status: 503})
	for i := range 3 {
		if _, err := r.client.WhoAmI(ctx); !errors.Is(err, crmclient.ErrUnavailable) || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("call %d: %v, want a 503 outage", i, err)
		}
	}
	if got := metric(t, r.reg, "crmgate_dataverse_breaker_state", nil); got != float64(gobreaker.StateOpen) {
		t.Fatalf("breaker_state = %v, want open", got)
	}
	// The emulator has recovered, but the open breaker does not ask it.
	r.srv.SetFaults(dataversetest.Faults{})
	for range 5 {
		_, err := r.client.WhoAmI(ctx)
		if !errors.Is(err, crmclient.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("err = %v, want the open breaker", err)
		}
	}
	if n := r.srv.Requests(whoAmIOp); n != 3 {
		t.Fatalf("emulator %s = %d, want 3: calls while open must not be sent", whoAmIOp, n)
	}
	if got := metric(t, r.reg, "crmgate_dataverse_requests_total", map[string]string{"code": "breaker_open"}); got != 5 {
		t.Fatalf("requests_total{code=breaker_open} = %v, want 5", got)
	}
}

func TestEmulatorBusinessAnswersDoNotTripBreaker(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) { c.BreakerFailures = 2 })
	ctx := context.Background()
	statuses := []int{404, 412, 400, 403, 404, 412, 400, 403}
	for _, status := range statuses {
		r.srv.SetFaults(dataversetest.Faults{Status: status, Count: 1})
		_, err := r.client.WhoAmI(ctx)
		var ae *crmclient.APIError
		if !errors.As(err, &ae) || ae.Status != status || errors.Is(err, crmclient.ErrUnavailable) {
			t.Fatalf("status %d: err = %v, want a business APIError", status, err)
		}
	}
	if n := r.srv.Requests(whoAmIOp); n != len(statuses) {
		t.Fatalf("emulator %s = %d, want %d (no retries, no fail-fast)", whoAmIOp, n, len(statuses))
	}
	if got := metric(t, r.reg, "crmgate_dataverse_breaker_state", nil); got != float64(gobreaker.StateClosed) {
		t.Fatalf("breaker_state = %v, want closed", got)
	}
	// Business answers also reset the consecutive-failure count: one
	// outage between them does not open the breaker either.
	r.srv.SetFaults(dataversetest.Faults{Status: 503, Count: 4})
	if _, err := r.client.WhoAmI(ctx); !errors.Is(err, crmclient.ErrUnavailable) {
		t.Fatalf("outage: %v", err)
	}
	r.srv.SetFaults(dataversetest.Faults{Status: 404, Count: 1})
	if _, err := r.client.WhoAmI(ctx); !crmclient.IsNotFound(err) {
		t.Fatalf("404: %v", err)
	}
	if _, err := r.client.WhoAmI(ctx); err != nil {
		t.Fatalf("after mixed answers: %v", err)
	}
}

func TestEmulatorConcurrencyLimitOverSockets(t *testing.T) {
	// The emulator's default limits (52 concurrent); each request holds
	// its slot for 5 ms of real latency. The client's default
	// MaxConcurrency (52) must never let a 53rd request reach it.
	r := newRig(t, nil, nil)
	if _, err := r.client.WhoAmI(context.Background()); err != nil { // token first
		t.Fatal(err)
	}
	r.srv.SetFaults(dataversetest.Faults{Latency: 5 * time.Millisecond})
	const callers = 200
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			if _, err := r.client.WhoAmI(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := r.srv.Requests(whoAmIOp); n != callers+1 {
		t.Fatalf("emulator %s = %d, want %d: a 429 would add a retry", whoAmIOp, n, callers+1)
	}
	if got := metric(t, r.reg, "crmgate_dataverse_throttled_total", nil); got != 0 {
		t.Fatalf("throttled_total = %v, want 0", got)
	}
}

// bubbleRig serves a dataversetest.Handler on a pipeListener inside a
// synctest bubble, where time.Now, timers and the gobreaker clock are the
// bubble's fake clock. It must be built inside synctest.Test.
func bubbleRig(t *testing.T, opts func(*dataversetest.Options), cfg func(*crmclient.Config)) (*dataversetest.Handler, *crmclient.Client, *prometheus.Registry) {
	t.Helper()
	o := dataversetest.Options{TenantID: rigTenant, Clients: []dataversetest.Client{{ID: rigClientID, Secret: rigSecret}}}
	if opts != nil {
		opts(&o)
	}
	h := dataversetest.NewHandler(o)
	pl := crmclient.NewPipeNet()
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(pl) }()
	tr := &http.Transport{DialContext: pl.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
	})
	reg := prometheus.NewRegistry()
	c := crmclient.Config{
		URL: "http://127.0.0.1", AuthorityHost: "http://127.0.0.1",
		TenantID: rigTenant, ClientID: rigClientID, ClientSecret: rigSecret,
		HTTPClient: &http.Client{Transport: tr},
		Registerer: reg,
	}
	if cfg != nil {
		cfg(&c)
	}
	client, err := crmclient.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return h, client, reg
}

// TestEmulatorBreakerHalfOpensAndRecovers runs in a synctest bubble because
// gobreaker reads the real clock: in the bubble, time.Sleep advances the
// fake clock at once.
func TestEmulatorBreakerHalfOpensAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c, reg := bubbleRig(t, nil, func(c *crmclient.Config) {
			c.MaxRetries = -1
			c.BreakerFailures = 2
			c.BreakerOpenTimeout = time.Minute
		})
		ctx := context.Background()
		state := func() gobreaker.State { return gobreaker.State(metric(t, reg, "crmgate_dataverse_breaker_state", nil)) }

		h.SetFaults(dataversetest.Faults{Status: 503})
		for range 2 {
			if _, err := c.WhoAmI(ctx); !errors.Is(err, crmclient.ErrUnavailable) {
				t.Fatalf("outage: %v", err)
			}
		}
		if _, err := c.WhoAmI(ctx); !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("want open: %v", err)
		}

		// Recovered, but the open timeout has not passed: still failing fast.
		h.SetFaults(dataversetest.Faults{})
		time.Sleep(59 * time.Second)
		if _, err := c.WhoAmI(ctx); !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("want still open before the timeout: %v", err)
		}
		if n := h.Requests(whoAmIOp); n != 2 {
			t.Fatalf("emulator %s = %d while open, want 2", whoAmIOp, n)
		}

		// After the timeout one trial goes through; a second caller
		// during the trial is refused without reaching the emulator.
		time.Sleep(2 * time.Second)
		h.SetFaults(dataversetest.Faults{Latency: time.Second})
		trial := make(chan error, 1)
		go func() {
			_, err := c.WhoAmI(ctx)
			trial <- err
		}()
		synctest.Wait() // the trial is in the emulator, waiting out its latency
		if st := state(); st != gobreaker.StateHalfOpen {
			t.Fatalf("state during the trial = %v, want half-open", st)
		}
		if _, err := c.WhoAmI(ctx); !errors.Is(err, crmclient.ErrUnavailable) || !errors.Is(err, gobreaker.ErrTooManyRequests) {
			t.Fatalf("second caller during the trial: %v, want ErrTooManyRequests", err)
		}
		if err := <-trial; err != nil {
			t.Fatalf("trial call: %v", err)
		}
		if st := state(); st != gobreaker.StateClosed {
			t.Fatalf("state after a good trial = %v, want closed", st)
		}
		if n := h.Requests(whoAmIOp); n != 3 {
			t.Fatalf("emulator %s = %d, want 3", whoAmIOp, n)
		}

		// A failed trial opens it again for another full timeout.
		h.SetFaults(dataversetest.Faults{Status: 503})
		for range 2 {
			_, _ = c.WhoAmI(ctx)
		}
		time.Sleep(61 * time.Second)
		if _, err := c.WhoAmI(ctx); !errors.Is(err, crmclient.ErrUnavailable) || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("failed trial: %v, want the 503 itself", err)
		}
		if st := state(); st != gobreaker.StateOpen {
			t.Fatalf("state after a failed trial = %v, want open", st)
		}
		if n := h.Requests(whoAmIOp); n != 6 {
			t.Fatalf("emulator %s = %d, want 6", whoAmIOp, n)
		}
	})
}

// TestEmulatorConcurrencyLimitExact uses the bubble to make the emulator's
// concurrency check deterministic: with one second of latency, every
// request the client lets through is inside the emulator at the same fake
// instant. At MaxConcurrency 52 (the default) 200 callers never see the
// emulator's concurrency 429; at 53 exactly one of 53 callers does, which
// shows the check is real.
func TestEmulatorConcurrencyLimitExact(t *testing.T) {
	tests := []struct {
		name          string
		maxConc       int
		callers       int
		wantThrottled int
	}{
		{name: "client at the limit", maxConc: 0, callers: 200, wantThrottled: 0},
		{name: "client one above the limit", maxConc: 53, callers: 53, wantThrottled: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, c, reg := bubbleRig(t, nil, func(c *crmclient.Config) {
					c.MaxConcurrency = tt.maxConc
					c.MaxRetries = -1 // a 429 is returned, so it can be counted
				})
				if _, err := c.WhoAmI(context.Background()); err != nil { // token first
					t.Fatal(err)
				}
				h.SetFaults(dataversetest.Faults{Latency: time.Second})
				var (
					wg        sync.WaitGroup
					mu        sync.Mutex
					throttled int
				)
				for range tt.callers {
					wg.Go(func() {
						_, err := c.WhoAmI(context.Background())
						var ae *crmclient.APIError
						switch {
						case err == nil:
						case crmclient.IsThrottled(err) && errors.As(err, &ae) && ae.Code == "0x80072326":
							mu.Lock()
							throttled++
							mu.Unlock()
						default:
							t.Error(err)
						}
					})
				}
				wg.Wait()
				if throttled != tt.wantThrottled {
					t.Fatalf("concurrency 429s = %d, want %d", throttled, tt.wantThrottled)
				}
				if n := h.Requests(whoAmIOp); n != tt.callers+1 {
					t.Fatalf("emulator %s = %d, want %d", whoAmIOp, n, tt.callers+1)
				}
				if got := metric(t, reg, "crmgate_dataverse_throttled_total", nil); got != float64(tt.wantThrottled) {
					t.Fatalf("throttled_total = %v, want %d", got, tt.wantThrottled)
				}
			})
		})
	}
}

func wantNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("err = %v", err)
	}
}

func wantUnavailable(status int) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ae *crmclient.APIError
		if !errors.Is(err, crmclient.ErrUnavailable) || !errors.As(err, &ae) || ae.Status != status || crmclient.IsThrottled(err) {
			t.Fatalf("err = %v, want ErrUnavailable wrapping a %d APIError", err, status)
		}
	}
}

func wantBusiness(status int) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ae *crmclient.APIError
		if !errors.As(err, &ae) || ae.Status != status || errors.Is(err, crmclient.ErrUnavailable) {
			t.Fatalf("err = %v, want a business APIError %d", err, status)
		}
	}
}

func wantDecodeError(t *testing.T, err error) {
	t.Helper()
	var ae *crmclient.APIError
	if err == nil || errors.Is(err, crmclient.ErrUnavailable) || errors.As(err, &ae) || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("err = %v, want a decode error", err)
	}
}

// wantThrottled checks a throttled error; code, when set, is the
// emulator's service protection code carried by the error.
func wantThrottled(t *testing.T, err error, code string) {
	t.Helper()
	if !crmclient.IsThrottled(err) || !errors.Is(err, crmclient.ErrUnavailable) {
		t.Fatalf("err = %v, want throttled and ErrUnavailable", err)
	}
	var ae *crmclient.APIError
	if code != "" && (!errors.As(err, &ae) || ae.Code != code) {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

const rigContact = "c0000000-0000-0000-0000-00000000000a"

// seedOne loads one contact with a sign-in user name.
func (r *rig) seedOne(t testing.TB) {
	t.Helper()
	seed := `{"contacts":[{"contactid":"` + rigContact + `","firstname":"Ann","lastname":"Lee","adx_identity_username":"ann"}]}`
	if err := r.srv.LoadSeed(strings.NewReader(seed)); err != nil {
		t.Fatal(err)
	}
}

// TestEmulatorWriteRetryPolicy checks, over the public write operations,
// that a write which may have been executed is not repeated (POST, PATCH
// without If-Match), that a conditional update is, and that a 429 is
// retried for any method because Dataverse did not execute it.
func TestEmulatorWriteRetryPolicy(t *testing.T) {
	contact := crmclient.ByID(crmclient.MustParseGUID(rigContact))
	create := func(r *rig) error {
		_, err := r.client.Create(context.Background(), "contacts", map[string]any{"lastname": "Storm"})
		return err
	}
	update := func(r *rig) error {
		return r.client.Update(context.Background(), "contacts", contact, map[string]any{"firstname": "Anna"}, "")
	}
	upsert := func(r *rig) error {
		_, err := r.client.Upsert(context.Background(), "contacts", contact, map[string]any{"firstname": "Anna"}, crmclient.UpsertCreateOrUpdate)
		return err
	}
	fullWindow := func(o *dataversetest.Options) {
		o.Limits = dataversetest.Limits{Requests: 1, Window: 7 * time.Second}
	}
	tests := []struct {
		name      string
		limits    func(*dataversetest.Options)
		faults    dataversetest.Faults
		call      func(*rig) error
		op        string
		wantCalls int
		check     func(*testing.T, error)
	}{
		{name: "POST 503 not retried", faults: dataversetest.Faults{Status: 503, Count: 1}, call: create, op: "POST contacts", wantCalls: 1, check: wantUnavailable(503)},
		{name: "POST dropped not retried", faults: dataversetest.Faults{DropConnection: true, Count: 1}, call: create, op: "POST contacts", wantCalls: 1, check: wantOutage},
		{name: "PATCH upsert 503 not retried", faults: dataversetest.Faults{Status: 503, Count: 1}, call: upsert, op: "PATCH contacts()", wantCalls: 1, check: wantUnavailable(503)},
		{name: "PATCH with If-Match 503 retried", faults: dataversetest.Faults{Status: 503, Count: 1}, call: update, op: "PATCH contacts()", wantCalls: 2, check: wantNoErr},
		{name: "POST 429 retried after Retry-After", limits: fullWindow, call: create, op: "POST contacts", wantCalls: 2, check: wantNoErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.limits, nil)
			r.seedOne(t)
			if tt.limits != nil {
				// Use up the window of one request.
				if _, err := r.client.WhoAmI(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			r.srv.SetFaults(tt.faults)
			tt.check(t, tt.call(r))
			if n := r.srv.Requests(tt.op); n != tt.wantCalls {
				t.Fatalf("emulator %s = %d, want %d", tt.op, n, tt.wantCalls)
			}
			if tt.limits != nil {
				if s := r.recordedSleeps(); len(s) != 1 || s[0] != 7*time.Second {
					t.Fatalf("sleeps = %v, want [7s]", s)
				}
			}
		})
	}
}

// TestEmulatorRealBusinessAnswersDoNotTripBreaker uses answers the
// emulator gives for real: a missing record (404), a stale ETag (412) and a
// filter on a column that does not exist (400).
func TestEmulatorRealBusinessAnswersDoNotTripBreaker(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) { c.BreakerFailures = 2 })
	r.seedOne(t)
	ctx := context.Background()
	contact := crmclient.ByID(crmclient.MustParseGUID(rigContact))
	etag, err := r.client.Retrieve(ctx, "contacts", contact, crmclient.RetrieveOptions{Select: []string{"firstname"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.client.Update(ctx, "contacts", contact, map[string]any{"firstname": "Anna"}, etag); err != nil {
		t.Fatal(err)
	}
	missing := crmclient.ByID(crmclient.MustParseGUID("c0000000-0000-0000-0000-0000000000ff"))
	answers := []struct {
		name string
		call func() error
		is   func(error) bool
	}{
		{"404 missing record", func() error {
			_, err := r.client.Retrieve(ctx, "contacts", missing, crmclient.RetrieveOptions{}, nil)
			return err
		}, crmclient.IsNotFound},
		{"412 stale ETag", func() error {
			return r.client.Update(ctx, "contacts", contact, map[string]any{"firstname": "Ann"}, etag)
		}, crmclient.IsConflict},
		{"400 unknown column", func() error {
			_, err := crmclient.ListAll[map[string]any](ctx, r.client, "contacts", crmclient.ListOptions{
				Query: crmclient.Query{Filter: crmclient.F.Eq("nosuchcolumn", "x")}})
			return err
		}, func(err error) bool {
			var ae *crmclient.APIError
			return errors.As(err, &ae) && ae.Status == http.StatusBadRequest
		}},
	}
	before := r.srv.Requests("")
	for round := range 3 {
		for _, a := range answers {
			err := a.call()
			if !a.is(err) || errors.Is(err, crmclient.ErrUnavailable) {
				t.Fatalf("round %d, %s: err = %v", round, a.name, err)
			}
		}
	}
	if n := r.srv.Requests("") - before; n != 3*len(answers) {
		t.Fatalf("emulator requests = %d, want %d: each answer sent once, none refused", n, 3*len(answers))
	}
	if got := metric(t, r.reg, "crmgate_dataverse_breaker_state", nil); got != float64(gobreaker.StateClosed) {
		t.Fatalf("breaker_state = %v, want closed", got)
	}
}

func wantOutage(t *testing.T, err error) {
	t.Helper()
	var ae *crmclient.APIError
	if !errors.Is(err, crmclient.ErrUnavailable) || errors.As(err, &ae) {
		t.Fatalf("err = %v, want ErrUnavailable without an answer", err)
	}
}
