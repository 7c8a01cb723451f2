package crmclient

import (
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/crmgate/crmgate/dataverse"
)

// Bounds of the status report (see Client.Status).
const (
	// StatusRecent is how many recent failures and 429 answers the
	// client keeps for its status report; older ones are dropped.
	StatusRecent = 64
	// StatusWindow is the period the report's Throttled and Errors
	// counts cover, counted in whole minutes.
	StatusWindow = 5 * time.Minute
)

// statusBuckets is the number of one-minute buckets behind StatusWindow.
const statusBuckets = int(StatusWindow / time.Minute)

// CacheReporter is a cache whose statistics the status report can show;
// *SnapshotCache and *ContactCache satisfy it.
type CacheReporter interface {
	CacheStats() dataverse.CacheStats
}

// statusLog keeps what Client.Status reports beyond the breaker's own
// counts: a ring of recent failures and 429 answers, per-minute counts of
// both, and when the breaker last changed state. It is written only on
// failure paths and on breaker changes, so a successful call never touches
// it; every method is safe for concurrent use.
type statusLog struct {
	mu      sync.Mutex
	ring    [StatusRecent]dataverse.StatusEvent
	next    int // index of the next write
	n       int // events held, up to StatusRecent
	buckets [statusBuckets]statusBucket
	since   time.Time // when the breaker entered its current state
	refused uint64
}

// statusBucket counts the events of one minute (unix minute number).
type statusBucket struct {
	minute    int64
	throttled int
	errors    int
}

// record adds ev at now(), read under the lock so that the ring is in
// time order. Its Message must already be sanitised.
func (s *statusLog) record(now func() time.Time, ev dataverse.StatusEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev.At = now()
	minute := ev.At.Unix() / 60
	s.ring[s.next] = ev
	s.next = (s.next + 1) % StatusRecent
	s.n = min(s.n+1, StatusRecent)
	b := &s.buckets[int(((minute%int64(statusBuckets))+int64(statusBuckets))%int64(statusBuckets))]
	if b.minute != minute {
		*b = statusBucket{minute: minute}
	}
	if ev.Status == http.StatusTooManyRequests {
		b.throttled++
	} else {
		b.errors++
	}
}

func (s *statusLog) breakerChanged(at time.Time) {
	s.mu.Lock()
	s.since = at
	s.mu.Unlock()
}

func (s *statusLog) refusedByBreaker() {
	s.mu.Lock()
	s.refused++
	s.mu.Unlock()
}

// fill copies the log into st as of st.At.
func (s *statusLog) fill(st *dataverse.Status) {
	now := st.At.Unix() / 60
	s.mu.Lock()
	defer s.mu.Unlock()
	st.BreakerSince = s.since
	st.RefusedByBreaker = s.refused
	st.Recent = make([]dataverse.StatusEvent, 0, s.n)
	for i := 1; i <= s.n; i++ {
		st.Recent = append(st.Recent, s.ring[(s.next-i+StatusRecent)%StatusRecent])
	}
	for _, b := range s.buckets {
		// The bucket of the current minute and the statusBuckets-1 before it.
		if b.minute <= now && b.minute > now-int64(statusBuckets) {
			st.Throttled += b.throttled
			st.Errors += b.errors
		}
	}
}

// recordFailure records the failure err of one attempt of op: no answer
// (a connection error, a timeout), a token endpoint refusal, or an error
// answer. Only what is safe to show is kept: the status, the error code
// and a sanitised message, never a URL (whose query may hold an email
// address), a body or a token.
func (c *Client) recordFailure(op string, err error) {
	ev := dataverse.StatusEvent{Op: op}
	var te *TokenError
	var ae *APIError
	var ue *url.Error
	var spent *budgetSpent
	switch {
	case errors.As(err, &te):
		ev.Status, ev.Code = te.Status, te.Code
		ev.Message = "token endpoint: " + dataverse.SafeMessage(te.Description, dataverse.MaxStatusMessage-len("token endpoint: "))
	case errors.As(err, &ae):
		ev.Status, ev.Code = ae.Status, ae.Code
		ev.Message = dataverse.SafeMessage(ae.Message, 0)
	case errors.As(err, &spent):
		ev.Message = dataverse.SafeMessage(spent.Error(), 0)
	case errors.As(err, &ue):
		// url.Error names the request URL; keep only what went wrong.
		ev.Message = dataverse.SafeMessage(ue.Err.Error(), 0)
	default:
		ev.Message = dataverse.SafeMessage(err.Error(), 0)
	}
	c.status.record(c.now, ev)
}

// recordThrottled records a 429 answer of op; retryAfter is its
// Retry-After, zero when it had none.
func (c *Client) recordThrottled(op string, retryAfter time.Duration, apiErr *APIError) {
	c.status.record(c.now, dataverse.StatusEvent{Op: op, Status: http.StatusTooManyRequests,
		Code: apiErr.Code, RetryAfter: retryAfter, Message: dataverse.SafeMessage(apiErr.Message, 0)})
}

// Status reports the client's state for the admin console: the circuit
// breaker, the latest StatusRecent failures and 429 answers (newest
// first), the counts of both over StatusWindow, Dataverse's current
// Retry-After, the concurrency limit, and the statistics of caches, in the
// order given. Every view of one Client (see Interactive) reports the
// same. It takes a few locks for a few microseconds and sends nothing to
// Dataverse; it is safe to call at any rate, concurrently with calls.
//
// Asking for the state lets an open breaker whose BreakerOpenTimeout has
// passed turn half-open, as the next call would.
func (c *Client) Status(caches ...CacheReporter) dataverse.Status {
	st := dataverse.Status{
		At:               c.now(),
		Breaker:          breakerState(c.breaker.State()),
		BreakerFailures:  c.breakerFailures,
		MaxRecent:        StatusRecent,
		Window:           StatusWindow,
		ConcurrencyLimit: c.slots.current(),
		MaxConcurrency:   c.slots.max,
	}
	st.ConsecutiveFailures = int(c.breaker.Counts().ConsecutiveFailures)
	c.status.fill(&st)
	c.mu.Lock()
	if nb := c.notBefore; nb.After(st.At) {
		st.ThrottledUntil = nb
	}
	c.mu.Unlock()
	for _, cr := range caches {
		if cr != nil {
			st.Cache = append(st.Cache, cr.CacheStats())
		}
	}
	return st
}

func breakerState(s gobreaker.State) dataverse.BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return dataverse.BreakerOpen
	case gobreaker.StateHalfOpen:
		return dataverse.BreakerHalfOpen
	}
	return dataverse.BreakerClosed
}
