package crmclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	gocache "github.com/patrickmn/go-cache"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/crmgate/crmgate/dataverse"
)

// Defaults applied by NewSnapshotCache to zero CacheOptions fields.
const (
	DefaultCacheTTL         = time.Minute
	DefaultCacheLoadTimeout = time.Minute
)

// CacheOptions configures a SnapshotCache. Zero values of optional fields
// take the DefaultCache* constants; NewSnapshotCache reports every problem
// at once.
type CacheOptions struct {
	// Name labels the cache's metrics (for example "contact"); required.
	// Caches that share a Registerer must have different names, or their
	// series are merged.
	Name string
	// TTL is how long a loaded value is served without calling the
	// loader again; zero means 1 minute. A change made in Dataverse by
	// someone else is seen at most TTL late, unless the key is
	// invalidated.
	TTL time.Duration
	// MaxStale is how long past TTL a value may still be served when the
	// loader fails with a "try later" error (see SnapshotCache.Get). Zero
	// means never: a failed refresh is always reported. A large value lets
	// a snapshot outlive changes made in Dataverse (a disabled contact,
	// removed roles) for as long as Dataverse is down.
	MaxStale time.Duration
	// LoadTimeout bounds one call of the loader, which runs on a context
	// detached from the callers' (see SnapshotCache.Get); zero means 1
	// minute. It should cover the loader's own retries and Retry-After
	// waits.
	LoadTimeout time.Duration
	// Now is the clock for TTL and MaxStale decisions; nil means
	// time.Now.
	Now func() time.Time
	// Registerer receives the crmgate_dataverse_cache_* metrics; nil means
	// they are kept but not registered. Caches may share one (see Name).
	Registerer prometheus.Registerer
}

// SnapshotCache caches values by key for a TTL, serves a stale value when
// a refresh fails with a "try later" error (stale-if-error, up to
// MaxStale past the TTL), and coalesces concurrent loads of one key into
// one call of the loader. It does no negative caching: a failed load,
// including a 404, stores nothing, so the next Get calls the loader again.
//
// Values are shared between callers and with the cache: a value holding
// maps, slices or pointers must be treated as read-only by everyone.
//
// The zero SnapshotCache is not usable; build it with NewSnapshotCache. It
// is safe for concurrent use.
type SnapshotCache[T any] struct {
	name        string
	ttl         time.Duration
	maxStale    time.Duration
	loadTimeout time.Duration
	now         func() time.Time
	metrics     *cacheMetrics

	// items holds *cacheEntry[T] values. go-cache expires entries by the
	// wall clock, so it is given TTL+MaxStale only to free memory; every
	// freshness decision uses cacheEntry.loadedAt and the injected clock.
	items *gocache.Cache
	group singleflight.Group

	mu sync.Mutex // serialises storing a load's result against Invalidate
	// loading holds the loads in flight by key. Invalidate marks them
	// dropped so that their results are not stored. It holds only keys
	// with a load in flight, so it does not grow with the cache.
	loading map[string]map[*cacheLoad]struct{}

	// The counters of CacheStats, kept beside the metrics so that the
	// status report need not gather them.
	hits, misses, stale, loads, loadErrors atomic.Uint64
}

// cacheEntry is one stored value and when its load started: the data is
// at least that old.
type cacheEntry[T any] struct {
	value    T
	loadedAt time.Time
}

// cacheFlight is what one coalesced section of Get hands its callers: the
// loaded value, or (hit) a fresh value another load stored just before
// the section began, with no load made.
type cacheFlight[T any] struct {
	value T
	hit   bool
}

// cacheLoad is one call of a loader in flight.
type cacheLoad struct {
	dropped bool // guarded by SnapshotCache.mu
}

// NewSnapshotCache validates opts, applies the defaults and returns an
// empty cache. Its memory is freed from time to time by a go-cache janitor
// goroutine, which stops when the cache is garbage collected.
func NewSnapshotCache[T any](opts CacheOptions) (*SnapshotCache[T], error) {
	var errs []error
	if opts.Name == "" {
		errs = append(errs, errors.New("crmclient: cache Name is required"))
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"TTL", &opts.TTL, DefaultCacheTTL},
		{"MaxStale", &opts.MaxStale, 0},
		{"LoadTimeout", &opts.LoadTimeout, DefaultCacheLoadTimeout},
	}
	for _, d := range durations {
		if *d.v < 0 {
			errs = append(errs, fmt.Errorf("crmclient: cache %s %v is negative", d.name, *d.v))
		} else if *d.v == 0 {
			*d.v = d.def
		}
	}
	m := newCacheMetrics()
	if opts.Registerer != nil && opts.Name != "" {
		if err := m.register(opts.Registerer); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &SnapshotCache[T]{
		name:        opts.Name,
		ttl:         opts.TTL,
		maxStale:    opts.MaxStale,
		loadTimeout: opts.LoadTimeout,
		now:         opts.Now,
		metrics:     m.curry(opts.Name),
		items:       gocache.New(opts.TTL+opts.MaxStale, opts.TTL),
		loading:     make(map[string]map[*cacheLoad]struct{}),
	}, nil
}

// Get returns the value of key: the cached one while it is younger than
// the TTL, otherwise the result of load. Concurrent Gets of one key that
// miss share one call of load (the load of the first of them), and a Get
// that misses just as a load of key ends gets that load's value instead of
// loading again (the freshness check is made again inside the coalesced
// section); a Get that starts after Invalidate(key) does not join a load
// that started before.
//
// load runs on a context detached from the callers' cancellation
// (context.WithoutCancel of the first caller's context, so it keeps that
// caller's values) and bounded by LoadTimeout. A caller whose ctx ends
// stops waiting and gets ctx.Err(), but the load goes on for the other
// callers and its result is still cached. load must not panic: singleflight
// re-raises the panic on a goroutine of its own, which ends the process.
//
// When load fails with a "try later" error (one wrapping ErrUnavailable, an
// *APIError with status 408, 429 or 5xx, or the LoadTimeout expiring) and
// the cached value is less than TTL+MaxStale old, Get returns that value
// with stale true and a nil error. Other errors are returned as they are;
// a 404 (IsNotFound) also removes the cached value, so a deleted record is
// not served from the cache.
//
// The returned value is shared: treat it as read-only.
func (c *SnapshotCache[T]) Get(ctx context.Context, key string, load func(ctx context.Context) (T, error)) (v T, stale bool, err error) {
	if v, ok := c.fresh(key); ok {
		c.metrics.requests.WithLabelValues("hit").Inc()
		c.hits.Add(1)
		return v, false, nil
	}
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, false, err // start no load for a caller that has gone
	}
	ch := c.group.DoChan(key, func() (any, error) {
		// Look again inside the coalesced section: a load of key may have
		// stored its value and left the group between the look above and
		// DoChan, and loading again would repeat its request.
		if v, ok := c.fresh(key); ok {
			return cacheFlight[T]{value: v, hit: true}, nil
		}
		v, err := c.load(ctx, key, load)
		return cacheFlight[T]{value: v}, err
	})
	select {
	case <-ctx.Done():
		c.metrics.requests.WithLabelValues("miss").Inc()
		c.misses.Add(1)
		return zero, false, ctx.Err()
	case r := <-ch:
		if r.Err == nil {
			f := r.Val.(cacheFlight[T])
			if f.hit {
				c.metrics.requests.WithLabelValues("hit").Inc()
				c.hits.Add(1)
			} else {
				c.metrics.requests.WithLabelValues("miss").Inc()
				c.misses.Add(1)
			}
			return f.value, false, nil
		}
		if tryLater(r.Err) {
			if e, ok := c.entry(key); ok {
				age := c.now().Sub(e.loadedAt)
				if age < c.ttl {
					// Stored by a newer load while this one failed.
					c.metrics.requests.WithLabelValues("hit").Inc()
					c.hits.Add(1)
					return e.value, false, nil
				}
				if age < c.ttl+c.maxStale {
					c.metrics.requests.WithLabelValues("stale").Inc()
					c.stale.Add(1)
					return e.value, true, nil
				}
			}
		}
		c.metrics.requests.WithLabelValues("miss").Inc()
		c.misses.Add(1)
		return zero, false, r.Err
	}
}

// Invalidate removes the cached value of key, and makes the loads of key
// in flight not store their results, so an invalidation during a load is
// not undone by it. Gets that start afterwards call the loader again.
// Callers already waiting on a load in flight still get its result.
func (c *SnapshotCache[T]) Invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items.Delete(key)
	for l := range c.loading[key] {
		l.dropped = true
	}
	c.group.Forget(key)
}

// CacheStats returns the cache's counters since it was built and how many
// entries it holds; it satisfies CacheReporter. Reading is a few atomic
// loads, safe concurrently with lookups.
func (c *SnapshotCache[T]) CacheStats() dataverse.CacheStats {
	return dataverse.CacheStats{
		Name:       c.name,
		Entries:    c.items.ItemCount(),
		Hits:       c.hits.Load(),
		Misses:     c.misses.Load(),
		Stale:      c.stale.Load(),
		Loads:      c.loads.Load(),
		LoadErrors: c.loadErrors.Load(),
	}
}

// fresh returns the stored value of key if it is younger than the TTL.
func (c *SnapshotCache[T]) fresh(key string) (T, bool) {
	if e, ok := c.entry(key); ok && c.now().Sub(e.loadedAt) < c.ttl {
		return e.value, true
	}
	var zero T
	return zero, false
}

// entry returns the stored entry of key, whatever its age.
func (c *SnapshotCache[T]) entry(key string) (*cacheEntry[T], bool) {
	x, ok := c.items.Get(key)
	if !ok {
		return nil, false
	}
	e, ok := x.(*cacheEntry[T])
	return e, ok
}

// load calls the loader once for key and stores its result unless an
// Invalidate ran meanwhile.
func (c *SnapshotCache[T]) load(callerCtx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	l := &cacheLoad{}
	c.mu.Lock()
	if c.loading[key] == nil {
		c.loading[key] = make(map[*cacheLoad]struct{})
	}
	c.loading[key][l] = struct{}{}
	c.mu.Unlock()

	loadedAt := c.now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(callerCtx), c.loadTimeout)
	defer cancel()
	v, err := load(ctx)

	c.mu.Lock()
	delete(c.loading[key], l)
	if len(c.loading[key]) == 0 {
		delete(c.loading, key)
	}
	switch {
	case err == nil:
		if !l.dropped {
			c.items.Set(key, &cacheEntry[T]{value: v, loadedAt: loadedAt}, c.ttl+c.maxStale)
		}
	case IsNotFound(err):
		// Even for a dropped load: removing is always safe.
		c.items.Delete(key)
	}
	c.mu.Unlock()

	c.metrics.loads.WithLabelValues(loadOutcome(err)).Inc()
	c.loads.Add(1)
	if err != nil {
		c.loadErrors.Add(1)
	}
	return v, err
}

// tryLater reports whether err means "Dataverse cannot answer now", the
// errors for which a stale value may be served.
func tryLater(err error) bool {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) &&
		(ae.Status >= 500 || ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusRequestTimeout)
}

// loadOutcome is the outcome label of a loader's result.
func loadOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case IsNotFound(err):
		return "not_found"
	case tryLater(err):
		return "unavailable"
	default:
		return "error"
	}
}

// cacheMetrics are the crmgate_dataverse_cache_* series, labelled by
// cache name, never by key.
type cacheMetrics struct {
	requests *prometheus.CounterVec
	loads    *prometheus.CounterVec
}

func newCacheMetrics() *cacheMetrics {
	return &cacheMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_dataverse_cache_requests_total",
			Help: "Lookups in a Dataverse snapshot cache by result: \"hit\" (fresh value), \"miss\" (waited for a load, whatever its outcome), \"stale\" (load failed, stale value served).",
		}, []string{"cache", "result"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_dataverse_cache_loads_total",
			Help: "Loads from Dataverse by a snapshot cache, coalesced lookups counted once, by outcome: \"ok\", \"not_found\", \"unavailable\" (try later), \"error\".",
		}, []string{"cache", "outcome"}),
	}
}

// register registers m on r. When another cache registered the same
// series first, m uses those, so caches can share a Registerer.
func (m *cacheMetrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, v := range []**prometheus.CounterVec{&m.requests, &m.loads} {
		err := r.Register(*v)
		var are prometheus.AlreadyRegisteredError
		switch {
		case err == nil:
		case errors.As(err, &are):
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				errs = append(errs, err)
				continue
			}
			*v = existing
		default:
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("crmclient: register cache metrics: %w", err)
	}
	return nil
}

// curry fixes the cache label.
func (m *cacheMetrics) curry(name string) *cacheMetrics {
	l := prometheus.Labels{"cache": name}
	return &cacheMetrics{
		requests: m.requests.MustCurryWith(l),
		loads:    m.loads.MustCurryWith(l),
	}
}
