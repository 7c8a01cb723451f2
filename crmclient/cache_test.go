package crmclient

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const cacheTestTTL = time.Minute

// newTestCache builds a string cache on clock, registered on reg when it
// is not nil. Tests that use synctest build it outside the bubble: the
// go-cache janitor goroutine never ends, which a bubble does not allow.
func newTestCache(t *testing.T, clock *fakeClock, maxStale time.Duration, reg prometheus.Registerer) *SnapshotCache[string] {
	t.Helper()
	c, err := NewSnapshotCache[string](CacheOptions{
		Name:        "contact",
		TTL:         cacheTestTTL,
		MaxStale:    maxStale,
		LoadTimeout: 5 * time.Second,
		Now:         clock.Now,
		Registerer:  reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cacheLoader is a loader that counts its calls and answers with the
// value and error set last.
type cacheLoader struct {
	calls atomic.Int64
	mu    sync.Mutex
	value string
	err   error
}

func (l *cacheLoader) set(value string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.value, l.err = value, err
}

func (l *cacheLoader) load(context.Context) (string, error) {
	l.calls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.value, l.err
}

func mustGet(t *testing.T, c *SnapshotCache[string], key string, load func(context.Context) (string, error), want string, wantStale bool) {
	t.Helper()
	v, stale, err := c.Get(t.Context(), key, load)
	if err != nil || v != want || stale != wantStale {
		t.Fatalf("Get(%q) = %q, stale %v, %v; want %q, stale %v, nil", key, v, stale, err, want, wantStale)
	}
}

func TestNewSnapshotCacheValidation(t *testing.T) {
	tests := []struct {
		name string
		opts CacheOptions
		want []string // substrings of the error; none means valid
	}{
		{"defaults", CacheOptions{Name: "contact"}, nil},
		{"no name", CacheOptions{}, []string{"Name is required"}},
		{"negatives reported together", CacheOptions{Name: "c", TTL: -1, MaxStale: -1, LoadTimeout: -1},
			[]string{"TTL -1ns is negative", "MaxStale -1ns is negative", "LoadTimeout -1ns is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewSnapshotCache[int](tt.opts)
			if len(tt.want) == 0 {
				if err != nil || c == nil {
					t.Fatalf("NewSnapshotCache = %v, %v; want a cache", c, err)
				}
				if c.ttl != DefaultCacheTTL || c.loadTimeout != DefaultCacheLoadTimeout || c.maxStale != 0 {
					t.Errorf("defaults: ttl %v, loadTimeout %v, maxStale %v", c.ttl, c.loadTimeout, c.maxStale)
				}
				return
			}
			if err == nil {
				t.Fatal("NewSnapshotCache succeeded; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSnapshotCacheHitWithinTTLMissAfter(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, clock, 0, nil)
	var l cacheLoader
	l.set("v1", nil)

	mustGet(t, c, "a", l.load, "v1", false) // miss: loads
	l.set("v2", nil)
	clock.Advance(cacheTestTTL - time.Nanosecond)
	mustGet(t, c, "a", l.load, "v1", false) // hit: still within the TTL
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times within the TTL; want 1", n)
	}
	clock.Advance(time.Nanosecond)
	mustGet(t, c, "a", l.load, "v2", false) // TTL reached: loads again
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times after the TTL; want 2", n)
	}
	mustGet(t, c, "b", l.load, "v2", false) // keys are separate
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("loader called %d times for a second key; want 3", n)
	}
}

func TestSnapshotCacheCoalescesConcurrentLookups(t *testing.T) {
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	c := newTestCache(t, clock, 0, reg)
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		release := make(chan struct{})
		load := func(context.Context) (string, error) {
			calls.Add(1)
			<-release
			return "snapshot", nil
		}
		const n = 100
		var wg sync.WaitGroup
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		defer wg.Wait() // on failure too: a bubble must end with no goroutine blocked
		defer unblock()
		results := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				results[i], _, errs[i] = c.Get(t.Context(), "contact-1", load)
			})
		}
		synctest.Wait() // all 100 are waiting, on one load
		if got := calls.Load(); got != 1 {
			t.Fatalf("loader called %d times by %d concurrent lookups; want 1", got, n)
		}
		unblock()
		wg.Wait()
		for i := range n {
			if errs[i] != nil || results[i] != "snapshot" {
				t.Fatalf("lookup %d = %q, %v; want snapshot", i, results[i], errs[i])
			}
		}
		mustGet(t, c, "contact-1", load, "snapshot", false)
		if got := calls.Load(); got != 1 {
			t.Fatalf("loader called %d times; want 1", got)
		}
	})
	if got := counterValue(t, c.metrics.requests.WithLabelValues("miss")); got != 100 {
		t.Errorf("misses = %v; want 100", got)
	}
	if got := counterValue(t, c.metrics.requests.WithLabelValues("hit")); got != 1 {
		t.Errorf("hits = %v; want 1", got)
	}
	if got := counterValue(t, c.metrics.loads.WithLabelValues("ok")); got != 1 {
		t.Errorf("ok loads = %v; want 1", got)
	}
}

// gatedClock is a fakeClock one reading of which can be held: after arm,
// the next Now closes entered and returns only once release is closed. A
// Get whose freshness check reads the clock is so held between finding a
// value past the TTL and starting a load, while other Gets run.
type gatedClock struct {
	*fakeClock
	mu      sync.Mutex
	entered chan struct{}
	release chan struct{}
}

func (g *gatedClock) arm() (entered, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	return g.entered, g.release
}

func (g *gatedClock) Now() time.Time {
	g.mu.Lock()
	entered, release := g.entered, g.release
	g.entered, g.release = nil, nil
	g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	return g.fakeClock.Now()
}

// TestSnapshotCacheMissDuringEndingLoad: a Get that found the value past
// its TTL, and reaches the coalesced section only after another Get's load
// of the key has stored a fresh value and left it, serves that value
// (a hit) instead of loading again.
func TestSnapshotCacheMissDuringEndingLoad(t *testing.T) {
	clock := &gatedClock{fakeClock: newFakeClock()}
	c, err := NewSnapshotCache[string](CacheOptions{Name: "contact", TTL: cacheTestTTL, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	var l cacheLoader
	l.set("old", nil)
	mustGet(t, c, "k", l.load, "old", false)
	clock.Advance(cacheTestTTL) // "old" is due for a refresh
	l.set("new", nil)

	entered, release := clock.arm()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	var wg sync.WaitGroup
	defer wg.Wait() // on failure too: no goroutine left waiting on the clock
	defer unblock()
	var late string
	var lateErr error
	wg.Go(func() { late, _, lateErr = c.Get(t.Context(), "k", l.load) })
	// The late Get has read "old" and is checking its age while another
	// Get refreshes it, start to end; then the late Get finds "old" past
	// its TTL.
	<-entered
	mustGet(t, c, "k", l.load, "new", false)
	unblock()
	wg.Wait()
	if lateErr != nil || late != "new" {
		t.Fatalf("late Get = %q, %v; want new", late, lateErr)
	}
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times; want 2 (the late Get repeated the refresh it just missed)", n)
	}
	if got := counterValue(t, c.metrics.loads.WithLabelValues("ok")); got != 2 {
		t.Errorf("ok loads = %v; want 2", got)
	}
	if got := counterValue(t, c.metrics.requests.WithLabelValues("hit")); got != 1 {
		t.Errorf("hits = %v; want 1 (the late Get)", got)
	}
	if got := counterValue(t, c.metrics.requests.WithLabelValues("miss")); got != 2 {
		t.Errorf("misses = %v; want 2", got)
	}
}

func TestSnapshotCacheStaleIfError(t *testing.T) {
	const maxStale = 10 * time.Minute
	unavailable := fmt.Errorf("crmclient: GET contacts: %w", ErrUnavailable)
	tests := []struct {
		name      string
		maxStale  time.Duration
		age       time.Duration // of the cached value when the refresh fails
		err       error
		wantStale bool // else the load's error is returned
	}{
		{"unavailable within MaxStale", maxStale, cacheTestTTL + maxStale - time.Nanosecond, unavailable, true},
		{"unavailable beyond MaxStale", maxStale, cacheTestTTL + maxStale, unavailable, false},
		{"unavailable with MaxStale zero", 0, cacheTestTTL, unavailable, false},
		{"503", maxStale, cacheTestTTL, &APIError{Status: http.StatusServiceUnavailable, Message: "down"}, true},
		{"500 wrapped", maxStale, cacheTestTTL, fmt.Errorf("x: %w", &APIError{Status: 500, Message: "boom"}), true},
		{"429", maxStale, cacheTestTTL, &APIError{Status: http.StatusTooManyRequests, Message: "slow down"}, true},
		{"load timeout", maxStale, cacheTestTTL, context.DeadlineExceeded, true},
		{"400 not masked", maxStale, cacheTestTTL, &APIError{Status: http.StatusBadRequest, Message: "bad"}, false},
		{"403 not masked", maxStale, cacheTestTTL, &APIError{Status: http.StatusForbidden, Message: "no"}, false},
		{"plain error not masked", maxStale, cacheTestTTL, errors.New("decode failed"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			c := newTestCache(t, clock, tt.maxStale, nil)
			var l cacheLoader
			l.set("old", nil)
			mustGet(t, c, "k", l.load, "old", false)
			clock.Advance(tt.age)
			l.set("", tt.err)

			v, stale, err := c.Get(t.Context(), "k", l.load)
			if tt.wantStale {
				if err != nil || v != "old" || !stale {
					t.Fatalf("Get = %q, stale %v, %v; want the stale value", v, stale, err)
				}
			} else if !errors.Is(err, tt.err) || v != "" || stale {
				t.Fatalf("Get = %q, stale %v, %v; want the load's error %v", v, stale, err, tt.err)
			}
			if n := l.calls.Load(); n != 2 {
				t.Fatalf("loader called %d times; want 2 (a stale value is served only after a refresh fails)", n)
			}
		})
	}
}

func TestSnapshotCacheNoValueNoStale(t *testing.T) {
	c := newTestCache(t, newFakeClock(), time.Hour, nil)
	var l cacheLoader
	l.set("", ErrUnavailable)
	if _, _, err := c.Get(t.Context(), "k", l.load); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get = %v; want ErrUnavailable", err)
	}
	// No negative caching: the next Get loads again.
	l.set("v", nil)
	mustGet(t, c, "k", l.load, "v", false)
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times; want 2", n)
	}
}

func TestSnapshotCacheNotFoundRemovesEntry(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, clock, time.Hour, nil)
	var l cacheLoader
	l.set("alive", nil)
	mustGet(t, c, "k", l.load, "alive", false)
	clock.Advance(cacheTestTTL)

	l.set("", fmt.Errorf("get contact: %w", &APIError{Status: http.StatusNotFound, Code: "0x80040217", Message: "gone"}))
	v, stale, err := c.Get(t.Context(), "k", l.load)
	if !IsNotFound(err) || v != "" || stale {
		t.Fatalf("Get after a 404 = %q, stale %v, %v; want the 404", v, stale, err)
	}
	// The entry is gone: an outage now has no stale value to serve.
	l.set("", ErrUnavailable)
	if v, stale, err := c.Get(t.Context(), "k", l.load); !errors.Is(err, ErrUnavailable) || v != "" || stale {
		t.Fatalf("Get during an outage after a 404 = %q, stale %v, %v; want ErrUnavailable", v, stale, err)
	}
}

func TestSnapshotCacheInvalidate(t *testing.T) {
	c := newTestCache(t, newFakeClock(), time.Hour, nil)
	var l cacheLoader
	l.set("v1", nil)
	mustGet(t, c, "k", l.load, "v1", false)
	mustGet(t, c, "other", l.load, "v1", false)
	l.set("v2", nil)
	c.Invalidate("k")
	mustGet(t, c, "k", l.load, "v2", false)
	mustGet(t, c, "other", l.load, "v1", false) // other keys are kept
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("loader called %d times; want 3", n)
	}
	// An invalidated value is not served stale either.
	c.Invalidate("k")
	l.set("", ErrUnavailable)
	if _, _, err := c.Get(t.Context(), "k", l.load); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get = %v; want ErrUnavailable", err)
	}
}

// TestSnapshotCacheInvalidateDuringLoad checks that a load in flight when
// the key is invalidated does not store its (possibly older) result, and
// that a Get after the invalidation does not join it.
func TestSnapshotCacheInvalidateDuringLoad(t *testing.T) {
	c := newTestCache(t, newFakeClock(), time.Hour, nil)
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		release := []chan string{make(chan string), make(chan string), make(chan string)}
		load := func(context.Context) (string, error) {
			n := calls.Add(1) - 1
			return <-release[n], nil
		}
		get := func(out *string) func() {
			return func() {
				v, _, err := c.Get(t.Context(), "k", load)
				if err != nil {
					t.Errorf("Get: %v", err)
				}
				*out = v
			}
		}
		var before, after string
		var wg sync.WaitGroup
		defer func() { // on failure too: a bubble must end with no goroutine blocked
			for _, r := range release {
				close(r)
			}
			wg.Wait()
		}()
		wg.Go(get(&before)) // load 0 starts
		synctest.Wait()
		c.Invalidate("k")  // e.g. the contact was just updated
		wg.Go(get(&after)) // must start load 1, not join load 0
		synctest.Wait()
		if n := calls.Load(); n != 2 {
			t.Fatalf("loader called %d times; want 2 (a Get after Invalidate joined the old load)", n)
		}
		release[1] <- "new"
		synctest.Wait()
		release[0] <- "old" // finishes last, but was invalidated
		wg.Wait()
		if before != "old" || after != "new" {
			t.Fatalf("callers got %q and %q; want old and new (callers keep the result they waited for)", before, after)
		}
		mustGet(t, c, "k", load, "new", false)
		if n := calls.Load(); n != 2 {
			t.Fatalf("loader called %d times; want 2 (new was cached)", n)
		}

		// Invalidated with no later Get: the load's result is not stored.
		c.Invalidate("k")
		wg.Go(get(&before)) // load 2
		synctest.Wait()
		c.Invalidate("k")
		release[2] <- "raced"
		wg.Wait()
		if _, ok := c.entry("k"); ok {
			t.Fatal("a load invalidated in flight stored its result")
		}
		if len(c.loading) != 0 {
			t.Fatalf("loading = %v; want empty after all loads ended", c.loading)
		}
	})
}

func TestSnapshotCacheCancelledCallerDoesNotCancelLoad(t *testing.T) {
	c := newTestCache(t, newFakeClock(), time.Hour, nil)
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		release := make(chan struct{})
		var loadErr error
		load := func(ctx context.Context) (string, error) {
			calls.Add(1)
			select {
			case <-release:
				loadErr = ctx.Err()
				return "v", nil
			case <-ctx.Done():
				loadErr = ctx.Err()
				return "", ctx.Err()
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		var first error
		var second string
		var wg sync.WaitGroup
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		defer wg.Wait() // on failure too: a bubble must end with no goroutine blocked
		defer unblock()
		wg.Go(func() { _, _, first = c.Get(ctx, "k", load) }) // starts the load
		synctest.Wait()
		wg.Go(func() {
			var err error
			second, _, err = c.Get(t.Context(), "k", load)
			if err != nil {
				t.Errorf("second Get: %v", err)
			}
		})
		synctest.Wait()
		cancel()
		synctest.Wait()
		if !errors.Is(first, context.Canceled) {
			t.Fatalf("cancelled Get = %v; want context.Canceled", first)
		}
		unblock()
		wg.Wait()
		if loadErr != nil || second != "v" {
			t.Fatalf("load saw %v, second caller got %q; want the load to go on", loadErr, second)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("loader called %d times; want 1", n)
		}
		mustGet(t, c, "k", load, "v", false) // the result was cached

		// A caller whose context has already ended starts no load.
		if _, _, err := c.Get(ctx, "other", load); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get with an ended context = %v; want context.Canceled", err)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("loader called %d times; want 1", n)
		}
	})
}

// TestSnapshotCacheLoadTimeout checks that the detached load is still
// bounded by LoadTimeout, and that its expiry counts as "try later".
func TestSnapshotCacheLoadTimeout(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, clock, time.Hour, nil)
	mustGet(t, c, "k", func(context.Context) (string, error) { return "old", nil }, "old", false)
	clock.Advance(cacheTestTTL)
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		hang := func(ctx context.Context) (string, error) {
			<-ctx.Done() // a loader that only ends with its context
			return "", fmt.Errorf("load: %w", ctx.Err())
		}
		v, stale, err := c.Get(t.Context(), "k", hang)
		if err != nil || v != "old" || !stale {
			t.Fatalf("Get = %q, stale %v, %v; want the stale value", v, stale, err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Fatalf("load ended after %v; want LoadTimeout 5s", d)
		}
	})
	if got := counterValue(t, c.metrics.loads.WithLabelValues("unavailable")); got != 1 {
		t.Errorf("unavailable loads = %v; want 1", got)
	}
}

func TestSnapshotCacheMetrics(t *testing.T) {
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	contacts := newTestCache(t, clock, time.Hour, reg)
	roles, err := NewSnapshotCache[[]string](CacheOptions{Name: "roles", Now: clock.Now, Registerer: reg})
	if err != nil {
		t.Fatalf("second cache on one Registerer: %v", err)
	}

	var l cacheLoader
	l.set("v", nil)
	mustGet(t, contacts, "a", l.load, "v", false) // miss, ok
	mustGet(t, contacts, "a", l.load, "v", false) // hit
	clock.Advance(cacheTestTTL)
	l.set("", ErrUnavailable)
	mustGet(t, contacts, "a", l.load, "v", true) // stale, unavailable
	l.set("", &APIError{Status: http.StatusNotFound, Message: "gone"})
	_, _, _ = contacts.Get(t.Context(), "a", l.load) // miss, not_found
	l.set("", &APIError{Status: http.StatusBadRequest, Message: "bad"})
	_, _, _ = contacts.Get(t.Context(), "a", l.load) // miss, error
	if _, _, err := roles.Get(t.Context(), "a", func(context.Context) ([]string, error) { return []string{"admin"}, nil }); err != nil {
		t.Fatal(err)
	}

	want := map[string]float64{
		`crmgate_dataverse_cache_loads_total{cache="contact",outcome="error"}`:       1,
		`crmgate_dataverse_cache_loads_total{cache="contact",outcome="not_found"}`:   1,
		`crmgate_dataverse_cache_loads_total{cache="contact",outcome="ok"}`:          1,
		`crmgate_dataverse_cache_loads_total{cache="contact",outcome="unavailable"}`: 1,
		`crmgate_dataverse_cache_loads_total{cache="roles",outcome="ok"}`:            1,
		`crmgate_dataverse_cache_requests_total{cache="contact",result="hit"}`:       1,
		`crmgate_dataverse_cache_requests_total{cache="contact",result="miss"}`:      3,
		`crmgate_dataverse_cache_requests_total{cache="contact",result="stale"}`:     1,
		`crmgate_dataverse_cache_requests_total{cache="roles",result="miss"}`:        1,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("gathered %v\nwant %v", got, want)
	}
}

// counterValue reads one counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
