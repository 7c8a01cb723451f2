package crmclient_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
)

const interactiveContact = "1c000000-0000-4000-8000-000000000001"

func seedInteractive(t *testing.T, h *dataversetest.Handler) {
	t.Helper()
	if err := h.LoadSeed(strings.NewReader(`{"contacts":[{"contactid":"` + interactiveContact +
		`","lastname":"Budget","adx_identity_username":"budget@example.com","adx_identity_logonenabled":true}]}`)); err != nil {
		t.Fatal(err)
	}
}

// TestInteractiveBudgetWhileDataverseIsSlow: Dataverse answers after 20 s.
// A sign-in style lookup through the interactive view gives up after
// exactly its 3 s budget with dataverse.ErrUnavailable (the "try again"
// page), and however many do, the breaker stays closed; the background
// view, bounded by the 30 s attempt timeout, waits and gets the contact.
func TestInteractiveBudgetWhileDataverseIsSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c, reg := bubbleRig(t, nil, func(c *crmclient.Config) {
			c.InteractiveBudget = 3 * time.Second
			c.BreakerFailures = 2
		})
		seedInteractive(t, h)
		ctx := context.Background()
		if _, err := c.WhoAmI(ctx); err != nil { // the token, fetched before the outage
			t.Fatal(err)
		}
		h.SetFaults(dataversetest.Faults{Latency: 20 * time.Second})
		signIn := crmclient.NewDirectory(c.Interactive(), crmclient.WebRoleModelStandard)
		for i := range 5 {
			start := time.Now()
			_, err := signIn.ContactByID(ctx, interactiveContact, nil)
			if took := time.Since(start); took != 3*time.Second {
				t.Fatalf("interactive call %d took %v, want the 3s budget", i, took)
			}
			if !errors.Is(err, dataverse.ErrUnavailable) || !errors.Is(err, crmclient.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("interactive call %d: %v, want dataverse.ErrUnavailable only", i, err)
			}
		}
		if n := metric(t, reg, "crmgate_dataverse_interactive_budget_exceeded_total", map[string]string{"operation": "Retrieve contacts"}); n != 5 {
			t.Fatalf("interactive_budget_exceeded_total = %v, want 5", n)
		}
		if st := metric(t, reg, "crmgate_dataverse_breaker_state", nil); st != 0 {
			t.Fatalf("breaker state %v after slow interactive calls, want closed", st)
		}

		start := time.Now()
		ct, err := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard).ContactByID(ctx, interactiveContact, nil)
		if err != nil || ct.ID != interactiveContact {
			t.Fatalf("background call: %+v, %v", ct, err)
		}
		if took := time.Since(start); took != 20*time.Second {
			t.Fatalf("background call took %v, want Dataverse's 20s", took)
		}

		// A caller that goes away is its own error, not a spent budget.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := c.Interactive().WhoAmI(cctx); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, crmclient.ErrUnavailable) {
			t.Fatalf("caller gone: %v, want its context error", err)
		}
		if n := metric(t, reg, "crmgate_dataverse_interactive_budget_exceeded_total", nil); n != 5 {
			t.Fatalf("interactive_budget_exceeded_total = %v after the caller left, want still 5", n)
		}
	})
}

// TestInteractiveBudgetWhileThrottled: Dataverse refuses with a 60 s
// Retry-After. The interactive view (5 s budget) fails at once as
// throttled, without sleeping, and so does the next interactive call that
// meets the shared wait; the background view (10 min retry budget) waits
// out the Retry-After and succeeds. A Retry-After that fits in the budget
// is still waited out.
func TestInteractiveBudgetWhileThrottled(t *testing.T) {
	r := newRig(t, func(o *dataversetest.Options) {
		o.Limits = dataversetest.Limits{Requests: 2, Window: time.Minute}
	}, func(c *crmclient.Config) {
		c.RetryBudget = 10 * time.Minute
	})
	ctx := context.Background()
	for range 2 {
		if _, err := r.client.WhoAmI(ctx); err != nil {
			t.Fatal(err)
		}
	}
	start := r.clock.Now()
	interactive := r.client.Interactive()
	for i := range 2 {
		_, err := interactive.WhoAmI(ctx)
		if !crmclient.IsThrottled(err) || !errors.Is(err, crmclient.ErrUnavailable) {
			t.Fatalf("interactive call %d: %v, want throttled", i, err)
		}
	}
	if s := r.recordedSleeps(); len(s) != 0 || !r.clock.Now().Equal(start) {
		t.Fatalf("interactive calls slept %v (clock moved %v), want no wait", s, r.clock.Now().Sub(start))
	}
	if n := r.srv.Requests(whoAmIOp); n != 3 {
		t.Fatalf("emulator %s = %d, want 3: the second interactive call must not be sent", whoAmIOp, n)
	}

	if _, err := r.client.WhoAmI(ctx); err != nil {
		t.Fatalf("background call: %v", err)
	}
	s := r.recordedSleeps()
	if len(s) != 1 || s[0] < 59*time.Second || s[0] > 60*time.Second {
		t.Fatalf("background sleeps %v, want the 60s Retry-After", s)
	}

	// A 2 s window: its Retry-After fits the 5 s budget and is waited.
	r2 := newRig(t, func(o *dataversetest.Options) {
		o.Limits = dataversetest.Limits{Requests: 1, Window: 2 * time.Second}
	}, nil)
	if _, err := r2.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.client.Interactive().WhoAmI(ctx); err != nil {
		t.Fatalf("interactive call with a 2s Retry-After: %v", err)
	}
	if s := r2.recordedSleeps(); len(s) != 1 || s[0] != 2*time.Second {
		t.Fatalf("interactive sleeps %v, want the 2s Retry-After", s)
	}

	// An injected 429 with a 20 s Retry-After (1.5 s rounds up to 2 s on
	// the wire): interactive fails at once, background waits.
	r3 := newRig(t, nil, nil)
	if _, err := r3.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	r3.srv.SetFaults(dataversetest.Faults{Status: 429, RetryAfter: 19500 * time.Millisecond, Count: 1})
	if _, err := r3.client.Interactive().WhoAmI(ctx); !crmclient.IsThrottled(err) {
		t.Fatalf("interactive with an injected 429: %v", err)
	}
	if s := r3.recordedSleeps(); len(s) != 0 {
		t.Fatalf("interactive slept %v", s)
	}
	if _, err := r3.client.WhoAmI(ctx); err != nil {
		t.Fatalf("background after an injected 429: %v", err)
	}
	if s := r3.recordedSleeps(); len(s) != 1 || s[0] != 20*time.Second {
		t.Fatalf("background sleeps %v, want the 20s Retry-After", s)
	}
}

// TestInteractiveBudgetBoundsRetries: Dataverse answers 503. The
// interactive view retries only while the backoff fits in its budget; the
// background view spends its retries.
func TestInteractiveBudgetBoundsRetries(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) {
		c.InteractiveBudget = 600 * time.Millisecond
		c.BreakerFailures = 100
	})
	ctx := context.Background()
	if _, err := r.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	r.srv.SetFaults(dataversetest.Faults{Status: 503})
	if _, err := r.client.Interactive().WhoAmI(ctx); !errors.Is(err, crmclient.ErrUnavailable) {
		t.Fatalf("interactive: %v", err)
	}
	var waited time.Duration
	for _, d := range r.recordedSleeps() {
		waited += d
	}
	if waited > 600*time.Millisecond {
		t.Fatalf("interactive call waited %v, beyond its 600ms budget", waited)
	}
	before := len(r.recordedSleeps())
	if _, err := r.client.WhoAmI(ctx); !errors.Is(err, crmclient.ErrUnavailable) {
		t.Fatalf("background: %v", err)
	}
	checkBackoffs(t, r.recordedSleeps()[before:], 3)
}

// burst runs n WhoAmI calls at once and returns the most that the emulator
// handled at the same time.
func burst(t *testing.T, h *dataversetest.Handler, c *crmclient.Client, n int) int {
	t.Helper()
	h.ResetPeakConcurrency()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := c.WhoAmI(context.Background()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return h.PeakConcurrency()
}

// TestDOPHintLimitsConcurrency: the emulator recommends a degree of
// parallelism in x-ms-dop-hint; the client's in-flight requests, counted
// at the emulator, follow it down and up, never above MaxConcurrency, and
// a malformed hint changes nothing.
func TestDOPHintLimitsConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c, reg := bubbleRig(t, func(o *dataversetest.Options) { o.DOPHint = 4 }, func(c *crmclient.Config) {
			c.MaxConcurrency = 30
		})
		h.SetFaults(dataversetest.Faults{Latency: time.Second})
		limit := func(want int) {
			t.Helper()
			if got := c.ConcurrencyLimit(); got != want {
				t.Fatalf("ConcurrencyLimit = %d, want %d", got, want)
			}
			if got := metric(t, reg, "crmgate_dataverse_concurrency_limit", nil); got != float64(want) {
				t.Fatalf("concurrency_limit gauge = %v, want %d", got, want)
			}
		}
		limit(30)
		if _, err := c.WhoAmI(context.Background()); err != nil {
			t.Fatal(err)
		}
		limit(4)
		if peak := burst(t, h, c, 40); peak != 4 {
			t.Fatalf("peak concurrency with hint 4 = %d, want 4", peak)
		}
		// The interactive view shares the limit (16 calls: 4 rounds of 1 s fit in its 5 s budget).
		if peak := burst(t, h, c.Interactive(), 16); peak != 4 {
			t.Fatalf("interactive peak concurrency with hint 4 = %d, want 4", peak)
		}

		h.SetDOPHint("20") // the first answer raises the limit, then the rest follow
		if peak := burst(t, h, c, 60); peak != 20 {
			t.Fatalf("peak concurrency after hint 20 = %d, want 20", peak)
		}
		limit(20)

		h.SetDOPHint("100")
		if peak := burst(t, h, c, 60); peak != 30 {
			t.Fatalf("peak concurrency with hint 100 = %d, want MaxConcurrency 30", peak)
		}
		limit(30)

		h.SetDOPHint("6")
		burst(t, h, c, 1)
		limit(6)
		for _, bad := range []string{"", "0", "-3", "+4", "0x10", "6.5", "4, 8", "4 8", "many", "1e3",
			"10001", "99999999999999999999", "٣", "\t", "NaN"} {
			h.SetDOPHint(bad)
			if peak := burst(t, h, c, 20); peak != 6 {
				t.Fatalf("peak concurrency after hint %q = %d, want 6 (ignored)", bad, peak)
			}
			limit(6)
		}
		h.SetDOPHint(" 1 ")
		burst(t, h, c, 1) // the limit moves when an answer carries the hint
		if peak := burst(t, h, c, 10); peak != 1 {
			t.Fatalf("peak concurrency with hint 1 = %d, want 1", peak)
		}
		limit(1)
	})
}

// TestDOPHintCancelledWaiters: callers waiting for a slot under a low hint
// leave when their context ends, and leave no slot taken behind them.
func TestDOPHintCancelledWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c, _ := bubbleRig(t, func(o *dataversetest.Options) { o.DOPHint = 2 }, nil)
		if _, err := c.WhoAmI(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.SetFaults(dataversetest.Faults{Latency: 10 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ok, gone int
		for range 12 {
			wg.Go(func() {
				_, err := c.WhoAmI(ctx)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, context.DeadlineExceeded):
					gone++
				default:
					t.Errorf("waiter: %v", err)
				}
			})
		}
		wg.Wait()
		if ok != 0 || gone != 12 {
			t.Fatalf("ok %d, gone %d, want every caller gone", ok, gone)
		}
		// Let the emulator see the two abandoned requests end before
		// counting again: the client gives their slots back at once, the
		// server notices the closed connections a moment later.
		synctest.Wait()
		h.ResetPeakConcurrency()
		if n := h.PeakConcurrency(); n != 0 {
			t.Fatalf("emulator still handles %d requests", n)
		}
		h.SetFaults(dataversetest.Faults{Latency: time.Second})
		if peak := burst(t, h, c, 8); peak != 2 {
			t.Fatalf("peak after cancelled waiters = %d, want 2 (no slot leaked or lost)", peak)
		}
	})
}
