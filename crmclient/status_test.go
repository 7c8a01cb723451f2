package crmclient_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
)

// TestStatusBreaker: failures against the emulator show in the status as
// they happen: consecutive failures while closed, then the breaker open
// since the moment it tripped, the refusals it makes, and half-open once
// its open timeout has passed; a success closes it again.
func TestStatusBreaker(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) {
		c.MaxRetries = -1
		c.BreakerFailures = 2
		c.BreakerOpenTimeout = 100 * time.Millisecond // the breaker's clock is the real one
	})
	ctx := context.Background()
	if _, err := r.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.client.Status()
	if st.Breaker != dataverse.BreakerClosed || !st.BreakerSince.IsZero() || st.ConsecutiveFailures != 0 ||
		len(st.Recent) != 0 || st.Errors != 0 || st.BreakerFailures != 2 || st.MaxRecent != crmclient.StatusRecent {
		t.Fatalf("status after a success = %+v", st)
	}

	r.srv.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	r.client.WhoAmI(ctx)
	st = r.client.Status()
	if st.Breaker != dataverse.BreakerClosed || st.ConsecutiveFailures != 1 || st.Errors != 1 || len(st.Recent) != 1 {
		t.Fatalf("status after one failure = %+v", st)
	}
	if ev := st.Recent[0]; ev.Op != "WhoAmI" || ev.Status != http.StatusServiceUnavailable || !ev.At.Equal(r.clock.Now()) || ev.Message == "" {
		t.Fatalf("recent[0] = %+v", ev)
	}

	r.clock.Advance(time.Second)
	tripped := r.clock.Now()
	r.client.WhoAmI(ctx)
	for range 3 {
		if _, err := r.client.WhoAmI(ctx); err == nil {
			t.Fatal("a call went through the open breaker")
		}
	}
	st = r.client.Status()
	if st.Breaker != dataverse.BreakerOpen || !st.BreakerSince.Equal(tripped) || st.RefusedByBreaker != 3 {
		t.Fatalf("status after tripping = %+v, want open since %v with 3 refusals", st, tripped)
	}
	if len(st.Recent) != 2 || st.Errors != 2 || !st.Recent[0].At.Equal(tripped) || st.Recent[0].At.Before(st.Recent[1].At) {
		t.Fatalf("recent after tripping = %+v (refusals must not be recorded as failures)", st.Recent)
	}

	time.Sleep(150 * time.Millisecond)
	r.clock.Advance(time.Second)
	if st = r.client.Status(); st.Breaker != dataverse.BreakerHalfOpen || !st.BreakerSince.Equal(r.clock.Now()) {
		t.Fatalf("status after the open timeout = %+v, want half-open", st)
	}
	r.srv.SetFaults(dataversetest.Faults{})
	if _, err := r.client.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	if st = r.client.Status(); st.Breaker != dataverse.BreakerClosed || st.ConsecutiveFailures != 0 || len(st.Recent) != 2 {
		t.Fatalf("status after recovery = %+v", st)
	}

	// The window: failures older than StatusWindow leave the counts, not
	// the list.
	r.clock.Advance(crmclient.StatusWindow + time.Minute)
	if st = r.client.Status(); st.Errors != 0 || len(st.Recent) != 2 {
		t.Fatalf("status after the window = %+v", st)
	}
}

// TestStatusThrottled: a 429 with Retry-After shows with its wait, counts in
// the window, and, while the wait lasts, as ThrottledUntil.
func TestStatusThrottled(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	r.srv.SetFaults(dataversetest.Faults{Status: http.StatusTooManyRequests, RetryAfter: 7 * time.Second, Count: 1})
	if _, err := r.client.WhoAmI(ctx); err != nil {
		t.Fatalf("a 429 within the budget is retried: %v", err)
	}
	st := r.client.Status()
	if st.Throttled != 1 || st.Errors != 0 || len(st.Recent) != 1 || !st.ThrottledUntil.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	if ev := st.Recent[0]; ev.Status != http.StatusTooManyRequests || ev.RetryAfter != 7*time.Second || ev.Op != "WhoAmI" {
		t.Fatalf("recent[0] = %+v", ev)
	}

	// A Retry-After beyond the budget fails at once; the status says until
	// when nothing is sent.
	r.srv.SetFaults(dataversetest.Faults{Status: http.StatusTooManyRequests, RetryAfter: time.Hour, Count: 1})
	at := r.clock.Now()
	if _, err := r.client.WhoAmI(ctx); !crmclient.IsThrottled(err) {
		t.Fatalf("err = %v, want throttled", err)
	}
	st = r.client.Status()
	if st.Throttled != 2 || !st.ThrottledUntil.Equal(at.Add(time.Hour)) || st.Recent[0].RetryAfter != time.Hour || st.Breaker != dataverse.BreakerClosed {
		t.Fatalf("status = %+v, want throttled until %v", st, at.Add(time.Hour))
	}
}

// TestStatusKeepsNoData: what the status keeps of a failure names no id,
// no email address and no token: the URL of a dropped request (whose
// filter holds an email address) is not kept, and the client id quoted by
// the token endpoint is redacted.
func TestStatusKeepsNoData(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) { c.MaxRetries = -1 })
	ctx := context.Background()
	// Not limited by Count: net/http sends a GET again on a new connection
	// when a reused one is dropped.
	r.srv.SetFaults(dataversetest.Faults{DropConnection: true})
	if _, err := r.client.ContactsByEmail(ctx, "ann.secret@example.com", nil); err == nil {
		t.Fatal("dropped connection: no error")
	}
	r.srv.SetFaults(dataversetest.Faults{})
	bad := newRig(t, nil, func(c *crmclient.Config) { c.ClientSecret = "wrong-secret"; c.MaxRetries = -1 })
	if _, err := bad.client.WhoAmI(ctx); err == nil {
		t.Fatal("wrong secret: no error")
	}
	dropped, refused := r.client.Status().Recent, bad.client.Status().Recent
	if len(dropped) != 1 || len(refused) != 1 {
		t.Fatalf("recent = %+v / %+v", dropped, refused)
	}
	if ev := refused[0]; ev.Status != http.StatusUnauthorized || ev.Code != "invalid_client" || !strings.HasPrefix(ev.Message, "token endpoint: ") {
		t.Fatalf("token refusal = %+v", ev)
	}
	for _, ev := range []dataverse.StatusEvent{dropped[0], refused[0]} {
		for _, leak := range []string{"ann.secret", "example.com", rigClientID, "wrong-secret", "contacts", "http://", "Bearer"} {
			if strings.Contains(ev.Message, leak) {
				t.Errorf("status message %q holds %q", ev.Message, leak)
			}
		}
		if len(ev.Message) > dataverse.MaxStatusMessage+len("…") || ev.Message == "" {
			t.Errorf("message %q: want 1 to %d bytes", ev.Message, dataverse.MaxStatusMessage)
		}
	}
}

// TestStatusCacheStats: the cache statistics follow hits, misses, loads,
// failed loads and stale answers.
func TestStatusCacheStats(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) { c.MaxRetries = -1 })
	cache, err := crmclient.NewSnapshotCache[crmclient.WhoAmIResponse](crmclient.CacheOptions{Name: "whoami",
		TTL: time.Minute, MaxStale: time.Hour, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func() bool {
		t.Helper()
		_, stale, err := cache.Get(ctx, "me", r.client.WhoAmI)
		if err != nil {
			t.Fatal(err)
		}
		return stale
	}
	want := dataverse.CacheStats{Name: "whoami"}
	check := func(step string) {
		t.Helper()
		if st := r.client.Status(cache); len(st.Cache) != 1 || st.Cache[0] != want {
			t.Fatalf("%s: cache stats = %+v, want %+v", step, st.Cache, want)
		}
	}
	check("empty")
	get()
	want.Entries, want.Misses, want.Loads = 1, 1, 1
	check("first lookup")
	get()
	get()
	want.Hits = 2
	check("two hits")
	r.clock.Advance(2 * time.Minute)
	r.srv.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable, Count: 1})
	if !get() {
		t.Fatal("want a stale value while Dataverse fails")
	}
	want.Stale, want.Loads, want.LoadErrors = 1, 2, 1
	check("stale")
	get()
	want.Misses, want.Loads = 2, 3
	check("reloaded")
}

// TestStatusConcurrent reads the status while calls fail, succeed and are
// throttled, and caches are used, from many goroutines (run with -race).
func TestStatusConcurrent(t *testing.T) {
	r := newRig(t, nil, func(c *crmclient.Config) { c.MaxRetries = 1; c.BreakerFailures = 1000 })
	cache, err := crmclient.NewSnapshotCache[crmclient.WhoAmIResponse](crmclient.CacheOptions{Name: "whoami", TTL: time.Second, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const callers, calls = 6, 40
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range calls {
				switch (g + i) % 4 {
				case 0:
					r.srv.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable, Count: 1})
				case 1:
					r.srv.SetFaults(dataversetest.Faults{Status: http.StatusTooManyRequests, RetryAfter: time.Second, Count: 1})
				}
				r.client.WhoAmI(ctx)
				cache.Get(ctx, "me", r.client.WhoAmI)
			}
		})
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				st := r.client.Status(cache)
				if len(st.Recent) > crmclient.StatusRecent || len(st.Cache) != 1 {
					t.Errorf("status = %+v", st)
					return
				}
				for i := 1; i < len(st.Recent); i++ {
					if st.Recent[i].At.After(st.Recent[i-1].At) {
						t.Errorf("recent not newest first: %v after %v", st.Recent[i].At, st.Recent[i-1].At)
						return
					}
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	st := r.client.Status(cache)
	if len(st.Recent) == 0 || st.Throttled+st.Errors == 0 {
		t.Fatalf("no failure recorded: %+v", st)
	}
	if c := st.Cache[0]; c.Hits+c.Misses != callers*calls {
		t.Fatalf("cache lookups = %d hits + %d misses, want %d", c.Hits, c.Misses, callers*calls)
	}
}

// TestStatusSuccessAllocs: recording happens on failure paths only, so a
// successful call allocates no more than it did before the status report
// existed. The figure is compared with a client whose status log has
// recorded failures (a full ring), which must not change it either.
func TestStatusSuccessAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	r := newRig(t, nil, func(c *crmclient.Config) { c.MaxRetries = -1; c.BreakerFailures = 1 << 20 })
	ctx := context.Background()
	call := func() {
		if _, err := r.client.WhoAmI(ctx); err != nil {
			t.Fatal(err)
		}
	}
	call()
	before := testing.AllocsPerRun(200, call)
	if st := r.client.Status(); len(st.Recent) != 0 || st.Errors != 0 {
		t.Fatalf("successful calls were recorded: %+v", st)
	}
	r.srv.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable, Count: crmclient.StatusRecent + 1})
	for range crmclient.StatusRecent + 1 {
		r.client.WhoAmI(ctx)
	}
	if st := r.client.Status(); len(st.Recent) != crmclient.StatusRecent {
		t.Fatalf("recent = %d, want a full ring of %d", len(st.Recent), crmclient.StatusRecent)
	}
	after := testing.AllocsPerRun(200, call)
	// The HTTP stack's allocations vary by a few between runs.
	if after > before+2 {
		t.Fatalf("allocations of a successful call: %.0f with a full status ring, %.0f without", after, before)
	}
	t.Logf("allocations of a successful WhoAmI: %.0f (empty ring), %.0f (full ring)", before, after)
}
