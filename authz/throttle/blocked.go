package throttle

import "time"

// Blocked reports, without taking an event, whether key's next event at
// now would be refused, and for how long. A caller that counts only
// failures (wrong invitation codes) asks Blocked before it tries, and
// Allow after each failure.
func (l *Limiter) Blocked(key string, now time.Time) (blocked bool, retryAfter time.Duration) {
	if l.keys == nil {
		return false, 0
	}
	v, found := l.keys.Get(key)
	if !found {
		return false, 0
	}
	b := v.(*bucket)
	if b.lim.TokensAt(now) >= 1 {
		return false, 0
	}
	r := b.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return true, d
}
