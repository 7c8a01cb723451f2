package dataversetest

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Limits are the service protection limits
// (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits), counted per
// user (the application user of the token) over a sliding window. Zero
// fields take the real defaults. The execution-time limit is not emulated.
type Limits struct {
	// Requests is the number of requests allowed per Window; 0 means 6000.
	Requests int
	// Window is the sliding window; 0 means 300 seconds.
	Window time.Duration
	// Concurrent is the number of requests a user may have in flight; 0
	// means 52.
	Concurrent int
}

type limiter struct {
	mu       sync.Mutex
	limits   Limits
	history  map[string][]time.Time
	inflight map[string]int
}

func newLimiter(l Limits) *limiter {
	if l.Requests <= 0 {
		l.Requests = 6000
	}
	if l.Window <= 0 {
		l.Window = 300 * time.Second
	}
	if l.Concurrent <= 0 {
		l.Concurrent = 52
	}
	return &limiter{limits: l, history: map[string][]time.Time{}, inflight: map[string]int{}}
}

// acquire admits one request of user at now or returns the 429. On success
// the caller must call release. remaining is the number of requests left in
// the window (x-ms-ratelimit-burst-remaining-xrm-requests).
func (l *limiter) acquire(user string, now time.Time) (remaining int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight[user] >= l.limits.Concurrent {
		// Exceeding concurrency fails immediately
		// (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits); the
		// Retry-After value for it is not documented, so 1 second is used.
		return 0, tooMany(codeConcurrentRequestLimit, 1,
			fmt.Sprintf("Number of concurrent requests exceeded the limit of %d.", l.limits.Concurrent))
	}
	h := l.history[user]
	cut := 0
	for cut < len(h) && !h[cut].After(now.Add(-l.limits.Window)) {
		cut++
	}
	h = h[cut:]
	if len(h) >= l.limits.Requests {
		l.history[user] = h
		wait := h[0].Add(l.limits.Window).Sub(now)
		secs := int((wait + time.Second - 1) / time.Second)
		return 0, tooMany(codeRequestsLimit, max(secs, 1),
			fmt.Sprintf("Number of requests exceeded the limit of %d over time window of %d seconds.", l.limits.Requests, int(l.limits.Window/time.Second)))
	}
	l.history[user] = append(h, now)
	l.inflight[user]++
	return l.limits.Requests - len(h) - 1, nil
}

func (l *limiter) release(user string) {
	l.mu.Lock()
	l.inflight[user]--
	l.mu.Unlock()
}

// tooMany is the 429 of https://learn.microsoft.com/power-apps/developer/data-platform/api-limits,
// which says only that the Web API reports the hex code; the body is
// inferred (unconfirmed).
func tooMany(code string, retryAfter int, msg string) *apiError {
	e := errf(http.StatusTooManyRequests, code, "%s", msg)
	e.header = http.Header{"Retry-After": {strconv.Itoa(retryAfter)}}
	return e
}
