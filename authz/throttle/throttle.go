// Package throttle limits how often one key may do something: a client
// address submitting a form, an account asking for another link. Every
// flow that accepts a form (sign-in, registration, reset, invitations,
// resends) throttles with it, so that they share one rule for folding
// client addresses (ClientKey), one bucket behaviour and one store.
//
// The buckets live in the store (Store, satisfied by *store.DB), one row
// per limiter and key, so that every replica on one database counts
// against the same limit: a limit reached through one replica holds on
// the others. Each bucket is the generic cell rate algorithm (GCRA), a
// token bucket kept as a single "theoretical arrival time" (TAT): an
// event at now is allowed when max(TAT, now) - now <= (burst-1)·interval,
// and then moves TAT to max(TAT, now) + interval
// (https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm). The store
// applies that rule in one atomic statement, so concurrent events on any
// replicas never let more than the burst through.
//
// Keys are stored as their SHA-256 only: the table holds no address and no
// email. Time comes from the caller (an injected clock); replicas' clocks
// should agree (NTP): a skew of s loosens or tightens a bucket by at most
// s of refill, and a clock far ahead (or stepped back) makes a bucket at
// worst empty, refilled after one full window, never blocked for longer.
package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/time/rate"
)

// Name names a limiter; buckets of different names never share a row. Each
// name is used by one limiter of the gateway (two limiters built with one
// name would share their buckets): the names are the constants below.
type Name string

// The limiters of the gateway, one place for every name.
const (
	SignInClient        Name = "signin.client"        // password attempts per client address (sign-in, re-authentication)
	RegistrationClient  Name = "registration.client"  // registrations and resends per client address
	RegistrationEmail   Name = "registration.email"   // registrations and resends per email address typed in
	RegistrationConfirm Name = "registration.confirm" // confirmation link posts per client address
	RecoveryClient      Name = "recovery.client"      // reset requests per client address
	RecoveryAccount     Name = "recovery.account"     // reset mails per account
	RecoveryLink        Name = "recovery.link"        // reset and set-password link checks per client address
	InvitationGuesses   Name = "invitations.guess"    // refused invitation codes and confirmation links per client address
)

// Names returns every limiter name, in no particular order.
func Names() []Name {
	return []Name{SignInClient, RegistrationClient, RegistrationEmail, RegistrationConfirm,
		RecoveryClient, RecoveryAccount, RecoveryLink, InvitationGuesses}
}

// ErrUnavailable matches (errors.Is) every error of Allow and Blocked: the
// store could not answer, so nobody can tell whether the event is within
// its limit. Callers fail closed: they refuse the event and answer "try
// again later" (the HTTP edge answers 503 with a request ID), never
// proceed unthrottled, since an attacker who can overload the database
// would otherwise switch every limit off.
var ErrUnavailable = errors.New("throttle: store unavailable")

// Bucket is a stored bucket.
type Bucket struct {
	// TAT is the theoretical arrival time; the zero time for a bucket with
	// no row (as fresh as one whose TAT is past).
	TAT time.Time
	// Refusals counts the events refused since the last allowed one:
	// zero after an allowed event, one at the first refusal of a run.
	Refusals int64
}

// Store keeps the buckets where every replica sees them; *store.DB
// satisfies it. key is always the 64-character hex SHA-256 of the caller's
// key, never the key itself. Times are kept to the microsecond.
type Store interface {
	// TakeThrottle applies one event at now to the bucket (limiter, key),
	// atomically (concurrent calls on any replica serialise on the row),
	// and returns the bucket as stored after it. Let c be the stored TAT
	// but no later than now + tolerance + interval (the TAT of an empty
	// bucket: a later one was written by a clock ahead of this one, or
	// before this clock stepped back, and counts as empty), and
	// t = max(c, now), a missing row counting as TAT now. If
	// t - now <= tolerance the event is allowed, TAT becomes t + interval
	// and Refusals 0; otherwise TAT becomes c and Refusals grows by one.
	// interval is positive and tolerance not negative.
	TakeThrottle(ctx context.Context, limiter Name, key string, now time.Time, interval, tolerance time.Duration) (Bucket, error)
	// PeekThrottle returns the bucket (limiter, key) as stored, changing
	// nothing; the zero Bucket when there is no row.
	PeekThrottle(ctx context.Context, limiter Name, key string) (Bucket, error)
	// SweepThrottles deletes the buckets, of every limiter, whose TAT is
	// at or before before, and returns how many it deleted.
	SweepThrottles(ctx context.Context, before time.Time) (int64, error)
}

// maxWindow bounds the time a bucket takes to refill from empty.
const maxWindow = 366 * 24 * time.Hour

// Limiter is a set of buckets in a Store, one per key, each refilled at a
// rate per second up to a burst. Build it with New; it is safe for
// concurrent use, and limiters of one name on several replicas share their
// buckets.
type Limiter struct {
	store     Store
	name      Name
	interval  time.Duration // between two events at the sustained rate
	tolerance time.Duration // (burst-1)·interval: how far TAT may run ahead of now
	off       bool          // rate.Inf: everything is allowed and the store is never asked
}

// New returns the limiter name (one of Names()) over store, allowing burst
// events at once per key and r per second after that. r must be positive
// and burst at least 1; rate.Inf allows everything without asking the
// store (DANGEROUS outside tests: no limit at all). The interval 1/r must
// be at least a microsecond and a full refill (burst/r) at most a year.
func New(store Store, name Name, r rate.Limit, burst int) (*Limiter, error) {
	if store == nil {
		return nil, errors.New("throttle: nil store")
	}
	if !slices.Contains(Names(), name) {
		return nil, fmt.Errorf("throttle: unknown limiter name %q", name)
	}
	if r <= 0 || burst < 1 || math.IsNaN(float64(r)) {
		return nil, fmt.Errorf("throttle: %s: rate must be positive and burst at least 1", name)
	}
	l := &Limiter{store: store, name: name}
	if r == rate.Inf {
		l.off = true
		return l, nil
	}
	window := float64(burst) / float64(r) * float64(time.Second)
	interval := time.Duration(float64(time.Second) / float64(r))
	if window > float64(maxWindow) || interval < time.Microsecond {
		return nil, fmt.Errorf("throttle: %s: rate %v with burst %d is out of range (an event every microsecond at most, a full refill within a year)", name, r, burst)
	}
	l.interval = interval.Truncate(time.Microsecond)
	l.tolerance = time.Duration(burst-1) * l.interval
	return l, nil
}

// PerHour returns the rate of n events per hour.
func PerHour(n int) rate.Limit { return rate.Limit(float64(n) / 3600) }

// Name returns the limiter's name.
func (l *Limiter) Name() Name { return l.name }

// Allow takes one event for key at now. It returns ok and the zero
// duration when allowed; otherwise how long until the next event would be
// allowed, and whether this is the first refusal of a run on any replica
// (so that a caller audits a flood once, not once per request). A refused
// event takes nothing. When the store fails it returns an error matching
// ErrUnavailable and ok false: the caller must refuse the event (see
// ErrUnavailable).
func (l *Limiter) Allow(ctx context.Context, key string, now time.Time) (ok bool, retryAfter time.Duration, firstRefusal bool, err error) {
	if l.off {
		return true, 0, false, nil
	}
	b, err := l.store.TakeThrottle(ctx, l.name, HashKey(key), now, l.interval, l.tolerance)
	if err != nil {
		return false, 0, false, fmt.Errorf("%w: %s: %w", ErrUnavailable, l.name, err)
	}
	if b.Refusals == 0 {
		return true, 0, false, nil
	}
	return false, l.retryAfter(b, now), b.Refusals == 1, nil
}

// Blocked reports, without taking an event, whether key's next event at
// now would be refused, and for how long. A caller that counts only
// failures (wrong invitation codes) asks Blocked before it tries, and
// Allow after each failure. A store failure gives an error matching
// ErrUnavailable, to be treated as blocked.
func (l *Limiter) Blocked(ctx context.Context, key string, now time.Time) (blocked bool, retryAfter time.Duration, err error) {
	if l.off {
		return false, 0, nil
	}
	b, err := l.store.PeekThrottle(ctx, l.name, HashKey(key))
	if err != nil {
		return true, 0, fmt.Errorf("%w: %s: %w", ErrUnavailable, l.name, err)
	}
	if b.TAT.IsZero() || b.TAT.Sub(now) <= l.tolerance {
		return false, 0, nil
	}
	return true, l.retryAfter(b, now), nil
}

// retryAfter is the wait until an event fits into the refused bucket b.
func (l *Limiter) retryAfter(b Bucket, now time.Time) time.Duration {
	return max(b.TAT.Sub(now)-l.tolerance, time.Microsecond)
}

// HashKey returns the hex SHA-256 of key, what a Store keeps instead of
// the key.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// maxKey bounds a client key that is not an IP address.
const maxKey = 64

// ClientKey folds a client address into the key its limits count under:
// the port and zone are dropped, IPv4-mapped IPv6 addresses become IPv4,
// and IPv6 addresses are reduced to their /64, since one client usually
// holds a whole /64. Anything that is not an IP address is kept, cut to 64
// bytes.
func ClientKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			if len(addr) > maxKey {
				addr = addr[:maxKey]
			}
			return addr
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// Defaults of the periodic sweep.
const (
	// DefaultSweepInterval is how often RunSweeper sweeps when every is zero.
	DefaultSweepInterval = time.Hour
	// SweepMargin is how long past its TAT a bucket is kept, so that a
	// replica whose clock is behind the sweeper's by less than this never
	// sees a bucket vanish early.
	SweepMargin = time.Minute
)

// Sweep deletes the buckets that are as good as fresh at now: their TAT
// is more than SweepMargin past. An event on a missing bucket behaves as
// on such a one, so sweeping never loosens a limit.
func Sweep(ctx context.Context, store Store, now time.Time) (int64, error) {
	n, err := store.SweepThrottles(ctx, now.Add(-SweepMargin))
	if err != nil {
		return 0, fmt.Errorf("throttle: sweep: %w", err)
	}
	return n, nil
}

// RunSweeper calls Sweep at once and then every interval until ctx ends,
// and returns ctx.Err(). now is the clock (nil means time.Now); the
// interval is real time, zero meaning DefaultSweepInterval and a negative
// one an error. Failures are logged and retried at the next interval,
// never returned. Every replica may run one: concurrent sweeps delete only
// what no replica needs.
func RunSweeper(ctx context.Context, store Store, every time.Duration, now func() time.Time, log *slog.Logger) error {
	if every == 0 {
		every = DefaultSweepInterval
	}
	if every < 0 || store == nil {
		return errors.New("throttle: negative sweep interval or nil store")
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := Sweep(ctx, store, now())
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			log.WarnContext(ctx, "throttle sweep failed; retried later", "err", err)
		case n > 0:
			log.InfoContext(ctx, "throttle buckets swept", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
