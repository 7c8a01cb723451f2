package crmclient

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// dopHintHeader is the response header in which Dataverse recommends a
// degree of parallelism for the environment: "use the integer value
// returned from the x-ms-dop-hint response header. This value provides a
// recommended degree of parallelism for the environment"
// (https://learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests).
// The recommendation may change over time, as the servers allocated to
// the environment do.
const dopHintHeader = "x-ms-dop-hint"

// maxDOPHint is the largest x-ms-dop-hint taken as a recommendation; a
// larger value (or one that is not a positive decimal integer) is ignored
// as malformed, and the limit stays where it is. A sane hint above the
// configured maximum lowers nothing: the limit is then the maximum.
const maxDOPHint = 10000

// parseDOPHint reads an x-ms-dop-hint value: a decimal integer from 1 to
// maxDOPHint, nothing else (no sign, no spaces inside, no list).
func parseDOPHint(h http.Header) (int, bool) {
	vs := h.Values(dopHintHeader)
	if len(vs) != 1 {
		return 0, false // absent, or repeated: which one would count?
	}
	s := strings.TrimSpace(vs[0])
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxDOPHint {
		return 0, false
	}
	return n, true
}

// slots bounds the requests in flight to Dataverse. Its limit starts at
// the configured maximum and follows Dataverse's x-ms-dop-hint, never
// above the maximum. Lowering the limit does not cut requests already in
// flight: new ones wait until fewer than the limit are. Waiters are served
// in arrival order. The zero value is not usable; build it with newSlots.
type slots struct {
	mu       sync.Mutex
	max      int // the configured maximum
	limit    int // current limit, 1..max
	inFlight int
	waiters  []chan struct{} // closed when granted a slot
}

func newSlots(max int) *slots { return &slots{max: max, limit: max} }

// acquire takes a slot, waiting for one while ctx lasts.
func (s *slots) acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.inFlight < s.limit && len(s.waiters) == 0 {
		s.inFlight++
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.waiters = append(s.waiters, ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, w := range s.waiters {
			if w == ch {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				return ctx.Err()
			}
		}
		// Granted while ctx ended: hand the slot on.
		s.inFlight--
		s.grantLocked()
		return ctx.Err()
	}
}

// release returns a slot taken by acquire.
func (s *slots) release() {
	s.mu.Lock()
	s.inFlight--
	s.grantLocked()
	s.mu.Unlock()
}

// setLimit makes n (clamped to 1..max) the limit and reports the new
// limit and whether it changed.
func (s *slots) setLimit(n int) (int, bool) {
	n = min(max(n, 1), s.max)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n == s.limit {
		return n, false
	}
	s.limit = n
	s.grantLocked()
	return n, true
}

// current returns the limit.
func (s *slots) current() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

func (s *slots) grantLocked() {
	for s.inFlight < s.limit && len(s.waiters) > 0 {
		close(s.waiters[0])
		s.waiters = s.waiters[1:]
		s.inFlight++
	}
}
