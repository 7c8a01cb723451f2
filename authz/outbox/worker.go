package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Deliverer hands one outbox event to its destination. It returns nil once
// the destination has it, ErrNothingToDeliver (wrapped or not) when there
// is nothing to do for the event, and any other error to have the event
// retried later. It may be called more than once for one event (at least
// once delivery), also after the destination already took it. An error
// wrapped with Permanent ends the event's deliveries: it is recorded failed
// and never retried.
type Deliverer interface {
	Deliver(ctx context.Context, e Event) error
}

// ErrNothingToDeliver is returned by a Deliverer for an event it has
// nothing to do for, for example a lifecycle event type without a
// configured action. The worker marks the event delivered and counts it as
// skipped.
var ErrNothingToDeliver = errors.New("outbox: nothing to deliver")

// Defaults for Options.
const (
	DefaultPollInterval = 5 * time.Second
	DefaultBatchSize    = 20
	DefaultLease        = 2 * time.Minute
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 10 * time.Minute
	DefaultRetention    = 7 * 24 * time.Hour
)

// Options configure a Worker. The zero value is usable: every
// zero field means its default.
type Options struct {
	// PollInterval is how often the worker looks for due events when it is
	// not notified; zero or less means DefaultPollInterval.
	PollInterval time.Duration
	// BatchSize is how many events one claim takes; zero or less means
	// DefaultBatchSize.
	BatchSize int
	// Lease is how long a claimed batch belongs to this worker. A worker
	// that dies (or takes longer) loses its events to the next claimer
	// after the lease, so the lease bounds the delay a crash adds, and an
	// event still being delivered when its lease ends may be delivered
	// twice. Each delivery is cancelled when its lease ends. Zero or less
	// means DefaultLease.
	Lease time.Duration
	// MinBackoff is the delay before the second attempt of a failed event;
	// it doubles with each failure up to MaxBackoff, and each delay is
	// drawn at random from its upper half (jitter). Zero or less means
	// DefaultMinBackoff.
	MinBackoff time.Duration
	// MaxBackoff caps the delay between attempts; zero or less means
	// DefaultMaxBackoff. Failing events are retried forever: they are
	// never dropped, and later events of the same user wait for them;
	// only a Permanent error ends an event's deliveries (recorded failed).
	MaxBackoff time.Duration
	// Retention is how long delivered events are kept before they are
	// purged; zero means DefaultRetention, a negative value keeps
	// them forever.
	Retention time.Duration
	// Now is the clock; nil means time.Now. Leases and schedules are
	// compared across processes, so replicas need roughly agreeing clocks.
	Now func() time.Time
	// Logger receives delivery failures; nil discards them.
	Logger *slog.Logger
	// Registerer receives the crmgate_outbox_* metrics; nil registers
	// nothing (the worker still works).
	Registerer prometheus.Registerer
}

// Worker delivers outbox events at least once: it claims due events
// with a lease, hands them to its Deliverer in ID order, marks them
// delivered or reschedules them with exponential backoff. Several workers,
// in one process or in replicas sharing a database, may run at once. Build
// it with NewWorker and start it with Run.
type Worker struct {
	store   Store
	deliver Deliverer
	poll    time.Duration
	batch   int
	lease   time.Duration
	minBack time.Duration
	maxBack time.Duration
	keep    time.Duration
	now     func() time.Time
	log     *slog.Logger
	wake    chan struct{}
	m       outboxMetrics

	lastPurge time.Time
}

type outboxMetrics struct {
	pending   prometheus.Gauge
	oldestAge prometheus.Gauge
	delivered *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	failed    *prometheus.CounterVec
	abandoned *prometheus.CounterVec
}

// NewWorker returns a worker that takes events from store and hands
// them to deliver. It fails only for nil arguments or a metrics
// registration error.
func NewWorker(store Store, deliver Deliverer, opts Options) (*Worker, error) {
	if store == nil || deliver == nil {
		return nil, errors.New("outbox: worker needs a store and a deliverer")
	}
	w := &Worker{
		store: store, deliver: deliver,
		poll: opts.PollInterval, batch: opts.BatchSize, lease: opts.Lease,
		minBack: opts.MinBackoff, maxBack: opts.MaxBackoff, keep: opts.Retention,
		now: opts.Now, log: opts.Logger,
		wake: make(chan struct{}, 1),
	}
	if w.poll <= 0 {
		w.poll = DefaultPollInterval
	}
	if w.batch <= 0 {
		w.batch = DefaultBatchSize
	}
	if w.lease <= 0 {
		w.lease = DefaultLease
	}
	if w.minBack <= 0 {
		w.minBack = DefaultMinBackoff
	}
	if w.maxBack <= 0 {
		w.maxBack = DefaultMaxBackoff
	}
	w.maxBack = max(w.maxBack, w.minBack)
	if w.keep == 0 {
		w.keep = DefaultRetention
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.m = outboxMetrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crmgate_outbox_pending_events",
			Help: "Outbox events not delivered yet, as of the worker's last poll.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crmgate_outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest outbox event not delivered yet, as of the worker's last poll; 0 when none.",
		}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_outbox_delivered_total",
			Help: "Outbox events delivered, by event type.",
		}, []string{"type"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_outbox_skipped_total",
			Help: "Outbox events marked delivered with nothing to do (no action configured), by event type.",
		}, []string{"type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_outbox_failed_attempts_total",
			Help: "Failed outbox delivery attempts, each rescheduled with backoff, by event type.",
		}, []string{"type"}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_outbox_permanent_failures_total",
			Help: "Outbox events recorded failed after a permanent error (never retried), by event type.",
		}, []string{"type"}),
	}
	if opts.Registerer != nil {
		var errs []error
		for _, c := range []prometheus.Collector{w.m.pending, w.m.oldestAge, w.m.delivered, w.m.skipped, w.m.failed, w.m.abandoned} {
			if err := opts.Registerer.Register(c); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("outbox: register metrics: %w", err)
		}
	}
	return w, nil
}

// Notify wakes a running worker to poll now, for example after a local
// change enqueued events. It never blocks; notifications while a poll is
// pending merge into one.
func (w *Worker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run polls until ctx ends, then returns ctx.Err(). A poll that claimed
// events is followed by the next poll at once: a batch may have been full,
// and delivering an event makes the next event of its user due (only the
// oldest pending event of each user is claimed), so a registration's
// lifecycle events and its confirmation mail go out one after the other
// without waiting a PollInterval each. A poll that claimed nothing waits
// for PollInterval or Notify. Store and delivery failures are logged and
// retried, never returned. Events being delivered when ctx ends are
// rescheduled or, failing that, claimable again when their lease ends.
func (w *Worker) Run(ctx context.Context) error {
	t := time.NewTimer(w.poll)
	defer t.Stop()
	for {
		n, err := w.Poll(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			w.log.ErrorContext(ctx, "outbox poll failed", "err", err)
		}
		if err == nil && n > 0 {
			continue
		}
		t.Reset(w.poll)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.wake:
		case <-t.C:
		}
	}
}

// Poll claims one batch of due events, delivers them in ID order and
// records each outcome; it returns how many events it claimed. Run calls it
// in a loop; tests call it directly with an injected clock. Do not call it
// while Run runs on the same worker; use another worker instead.
func (w *Worker) Poll(ctx context.Context) (int, error) {
	now := w.now()
	evs, err := w.store.ClaimOutbox(ctx, now, w.lease, w.batch)
	if err != nil {
		return 0, err
	}
	for _, e := range evs {
		if ctx.Err() != nil {
			break // the leases end and the events become claimable again
		}
		w.handle(ctx, e)
	}
	w.housekeep(ctx)
	return len(evs), nil
}

// handle delivers one claimed event and records the outcome.
func (w *Worker) handle(ctx context.Context, e Event) {
	left := e.LockedUntil.Sub(w.now())
	if left <= 0 {
		return // the lease is over: another worker may have the event now
	}
	dctx, cancel := context.WithTimeout(ctx, left)
	err := w.deliver.Deliver(dctx, e)
	cancel()
	// Record the outcome even when ctx ended meanwhile.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	switch {
	case err == nil || errors.Is(err, ErrNothingToDeliver):
		if cerr := w.store.CompleteOutbox(rctx, e, w.now()); cerr != nil {
			// The event stays claimed and is delivered again after its lease.
			w.log.ErrorContext(ctx, "outbox event delivered but not marked", "id", e.ID, "type", e.Type, "err", cerr)
			return
		}
		if err == nil {
			w.m.delivered.WithLabelValues(e.Type).Inc()
		} else {
			w.m.skipped.WithLabelValues(e.Type).Inc()
		}
	case IsPermanent(err):
		w.m.abandoned.WithLabelValues(e.Type).Inc()
		w.log.ErrorContext(ctx, "outbox delivery failed permanently; not retried", "id", e.ID, "kind", e.Kind,
			"type", e.Type, "attempts", e.Attempts, "err", err)
		if ferr := w.store.FailOutbox(rctx, e, w.now(), truncateError(err.Error())); ferr != nil &&
			!errors.Is(ferr, ErrLeaseLost) {
			w.log.ErrorContext(ctx, "outbox event not marked failed; retried after its lease", "id", e.ID, "err", ferr)
		}
	default:
		w.m.failed.WithLabelValues(e.Type).Inc()
		delay := backoff(e.Attempts, w.minBack, w.maxBack, rand.Float64())
		w.log.WarnContext(ctx, "outbox delivery failed", "id", e.ID, "type", e.Type, "attempts", e.Attempts,
			"retry_in", delay, "err", err)
		if rerr := w.store.RetryOutbox(rctx, e, w.now().Add(delay), truncateError(err.Error())); rerr != nil &&
			!errors.Is(rerr, ErrLeaseLost) {
			w.log.ErrorContext(ctx, "outbox event not rescheduled; retried after its lease", "id", e.ID, "err", rerr)
		}
	}
}

// housekeep refreshes the pending gauges and, at most hourly, purges old
// delivered events.
func (w *Worker) housekeep(ctx context.Context) {
	now := w.now()
	if st, err := w.store.OutboxStats(ctx); err != nil {
		w.log.WarnContext(ctx, "outbox stats failed", "err", err)
	} else {
		w.m.pending.Set(float64(st.Pending))
		age := 0.0
		if !st.OldestCreatedAt.IsZero() {
			age = max(now.Sub(st.OldestCreatedAt).Seconds(), 0)
		}
		w.m.oldestAge.Set(age)
	}
	if w.keep < 0 || now.Sub(w.lastPurge) < time.Hour {
		return
	}
	w.lastPurge = now
	if _, err := w.store.PurgeOutbox(ctx, now.Add(-w.keep)); err != nil {
		w.log.WarnContext(ctx, "outbox purge failed", "err", err)
	}
}

// backoff is the delay after the attempts-th failed attempt: minBack
// doubled attempts-1 times, capped at maxBack, then scaled into its upper
// half by jitter in [0, 1).
func backoff(attempts int, minBack, maxBack time.Duration, jitter float64) time.Duration {
	d := minBack
	for i := 1; i < attempts && d < maxBack; i++ {
		d *= 2
	}
	d = min(d, maxBack)
	return d/2 + time.Duration(jitter*float64(d/2))
}

// NoDeliverer is the Deliverer when no Dataverse is configured: it sends
// nothing and answers ErrNothingToDeliver, so the worker marks every event
// done (counted as skipped) and the outbox stays bounded by its retention.
// Dangerous only if used by mistake with Dataverse configured: its events
// would never reach Dataverse.
type NoDeliverer struct{}

// Deliver implements Deliverer.
func (NoDeliverer) Deliver(context.Context, Event) error { return ErrNothingToDeliver }

// ByKind is a Deliverer that hands each event to the Deliverer of its Kind,
// so one worker serves every kind of durable work (lifecycle events,
// mail). An event of a kind without a Deliverer is an error and is retried,
// so that a replica built without that kind leaves it to one that has it.
// A nil or empty ByKind delivers nothing.
type ByKind map[string]Deliverer

var _ Deliverer = ByKind(nil)

// Deliver implements Deliverer.
func (b ByKind) Deliver(ctx context.Context, e Event) error {
	d := b[e.Kind]
	if d == nil {
		return fmt.Errorf("outbox: no deliverer for event %d of kind %q", e.ID, e.Kind)
	}
	return d.Deliver(ctx, e)
}
