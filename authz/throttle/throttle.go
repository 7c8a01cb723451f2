// Package throttle limits how often one key may do something: a client
// address submitting a form, an account asking for another link. Every
// flow that accepts a form (registration, reset, invitations, resends)
// throttles with it, so that they share one rule for folding client
// addresses (ClientKey) and one token-bucket behaviour.
//
// The buckets live in the memory of one process: with several replicas
// each replica counts on its own, so the effective limit is multiplied by
// the number of replicas. Limits that must hold across replicas (sign-in
// lockouts, one-time tokens) are kept in the store instead.
package throttle

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/patrickmn/go-cache"
	"golang.org/x/time/rate"
)

// Limiter is a set of token buckets, one per key, each refilled at Rate
// per second up to Burst. Build it with New; it is safe for concurrent use.
type Limiter struct {
	rate  rate.Limit
	burst int
	ttl   time.Duration
	keys  *cache.Cache // key -> *bucket
}

type bucket struct {
	lim       *rate.Limiter
	throttled atomic.Bool // the last attempt was refused
}

// New returns a Limiter that allows burst events at once per key and r per
// second after that. r must be positive (rate.Inf allows everything) and
// burst at least 1.
func New(r rate.Limit, burst int) (*Limiter, error) {
	if r <= 0 || burst < 1 {
		return nil, errors.New("throttle: rate must be positive and burst at least 1")
	}
	l := &Limiter{rate: r, burst: burst}
	if r != rate.Inf {
		// A bucket idle for longer than a full refill equals a fresh one,
		// so it may be forgotten then. go-cache expires on the wall clock;
		// that only frees memory and cannot loosen the limit.
		refill := time.Duration(float64(burst) / float64(r) * float64(time.Second))
		l.ttl = refill + time.Minute
		l.keys = cache.New(l.ttl, l.ttl)
	}
	return l, nil
}

// PerHour returns the rate of n events per hour.
func PerHour(n int) rate.Limit { return rate.Limit(float64(n) / 3600) }

// Allow takes one event for key at now. It returns ok and the zero
// duration when allowed; otherwise how long until the next event would be
// allowed, and whether this is the first refusal of a run (so that a
// caller audits a flood once, not once per request). A refused event takes
// nothing.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration, firstRefusal bool) {
	if l.keys == nil {
		return true, 0, false
	}
	var b *bucket
	if v, found := l.keys.Get(key); found {
		b = v.(*bucket)
	} else {
		fresh := &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		if err := l.keys.Add(key, fresh, l.ttl); err == nil {
			b = fresh
		} else if v, found := l.keys.Get(key); found { // another request added it first
			b = v.(*bucket)
		} else {
			b = fresh
		}
	}
	l.keys.Set(key, b, l.ttl) // push back the expiry
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		return false, d, !b.throttled.Swap(true)
	}
	b.throttled.Store(false)
	return true, 0, false
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
