package dataverse

import (
	"regexp"
	"strings"
	"time"
	"unicode"
)

// BreakerState is the state of the circuit breaker in front of Dataverse.
type BreakerState string

// The states of the circuit breaker.
const (
	// BreakerClosed: calls go through; failures are counted.
	BreakerClosed BreakerState = "closed"
	// BreakerHalfOpen: a few trial calls go through; their outcome closes
	// or opens the breaker again.
	BreakerHalfOpen BreakerState = "half-open"
	// BreakerOpen: every call fails at once without reaching Dataverse.
	BreakerOpen BreakerState = "open"
)

// Status is a point-in-time report of the gateway's Dataverse client, for
// the admin console: the circuit breaker, the recent failures and
// throttling answers, the concurrency limit and the snapshot caches. It is
// plain data, safe to render: it holds operation names, status codes,
// Dataverse error codes and sanitised messages (see SafeMessage), never a
// request body, a token, a record id or an email address. The zero value
// means "no Dataverse client" (Breaker empty).
type Status struct {
	// At is when the report was taken, by the client's clock.
	At time.Time
	// Breaker is the circuit breaker's state.
	Breaker BreakerState
	// BreakerSince is when the breaker entered Breaker; zero when it has
	// been closed since the client was built.
	BreakerSince time.Time
	// ConsecutiveFailures counts the failed calls since the last success
	// (in the closed state, BreakerFailures of them open the breaker).
	ConsecutiveFailures int
	// BreakerFailures is how many consecutive failures open the breaker.
	BreakerFailures int
	// RefusedByBreaker counts the calls the open (or half-open) breaker
	// refused since the client was built.
	RefusedByBreaker uint64

	// Recent holds the latest failures and throttling answers, newest
	// first, at most MaxRecent of them (older ones are dropped).
	Recent []StatusEvent
	// MaxRecent is the capacity of Recent.
	MaxRecent int
	// Window is the period Throttled and Errors count over, ending at At.
	Window time.Duration
	// Throttled counts the 429 answers received within Window.
	Throttled int
	// Errors counts the failures (other than 429) recorded within Window.
	Errors int
	// ThrottledUntil is the end of Dataverse's last Retry-After, while it
	// lasts: no request is sent before it. Zero when not throttled.
	ThrottledUntil time.Time

	// ConcurrencyLimit is how many requests may be in flight now
	// (MaxConcurrency, or Dataverse's lower x-ms-dop-hint).
	ConcurrencyLimit int
	// MaxConcurrency is the configured bound on requests in flight.
	MaxConcurrency int

	// Cache holds the statistics of the snapshot caches the report was
	// asked for, in the order given.
	Cache []CacheStats
}

// StatusEvent is one failure or throttling answer of Dataverse (or of its
// token endpoint) as the status report shows it. It never holds ids,
// email addresses, tokens or bodies: Message went through SafeMessage.
type StatusEvent struct {
	// At is when the answer (or the failure) came, by the client's clock.
	At time.Time
	// Op is the operation, such as "WhoAmI" or "GET contacts": a metric
	// label, never an id.
	Op string
	// Status is the HTTP status; 0 when there was no answer (a connection
	// error, a timeout, an interactive budget spent).
	Status int
	// Code is Dataverse's error code (a hex HRESULT) or the token
	// endpoint's OAuth error code; empty when none.
	Code string
	// RetryAfter is the Retry-After of a 429 answer; zero when the answer
	// had none (the client then backed off on its own) or for other
	// events.
	RetryAfter time.Duration
	// Message describes the failure, sanitised by SafeMessage and at most
	// MaxStatusMessage bytes.
	Message string
}

// CacheStats are the counters of one snapshot cache since it was built.
type CacheStats struct {
	// Name is the cache's name, such as "contact".
	Name string
	// Entries is how many values the cache holds, fresh or stale (expired
	// entries are counted until the janitor frees them).
	Entries int
	// Hits counts lookups served a fresh value.
	Hits uint64
	// Misses counts lookups that waited for a load, whatever its outcome.
	Misses uint64
	// Stale counts lookups served a stale value because the load failed
	// with a "try later" error.
	Stale uint64
	// Loads counts the loads from Dataverse (coalesced lookups count once).
	Loads uint64
	// LoadErrors counts the loads that failed (not found included).
	LoadErrors uint64
}

// MaxStatusMessage bounds StatusEvent.Message, in bytes.
const MaxStatusMessage = 200

// Patterns SafeMessage removes. They are compiled once and used only on
// failure paths.
var (
	safeEmail  = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+`)
	safeGUID   = regexp.MustCompile(`\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?`)
	safeBearer = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[^\s,;]+`)
	safeLong   = regexp.MustCompile(`[A-Za-z0-9_\-+/=.~]{32,}`)
	safeDigits = regexp.MustCompile(`\b\d{6,}\b`)
	safeQuoted = regexp.MustCompile(`'[^']*'|"[^"]*"`)
)

// SafeMessage returns s fit for a status page or an admin listing, at most
// n bytes (n <= 0 means MaxStatusMessage): control characters become
// spaces; email addresses become "<email>", GUIDs "<id>", the credentials
// of "Bearer …" and "Basic …" "<redacted>", runs of 32 or more
// token-like characters (JWTs, keys, long URLs) "<redacted>", numbers of 6
// or more digits (phone numbers, ids) "<number>", and quoted text other
// than a single identifier (a column or entity name) '…'. Dataverse error
// messages can quote the values of a request ("The value 'ana@…' of
// emailaddress1…"); what is left is the wording and the names, enough to
// tell errors apart. It is a safety net for text from outside, not a
// guarantee: callers still must not pass it bodies or secrets.
func SafeMessage(s string, n int) string {
	if n <= 0 {
		n = MaxStatusMessage
	}
	if len(s) > 4*n {
		s = s[:4*n] // the patterns below only shorten; bound their work
	}
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = safeBearer.ReplaceAllString(s, "$1 <redacted>")
	s = safeEmail.ReplaceAllString(s, "<email>")
	s = safeGUID.ReplaceAllString(s, "<id>")
	s = safeLong.ReplaceAllString(s, "<redacted>")
	s = safeDigits.ReplaceAllString(s, "<number>")
	s = safeQuoted.ReplaceAllStringFunc(s, func(q string) string {
		inner := q[1 : len(q)-1]
		if inner == "<email>" || inner == "<id>" || inner == "<redacted>" || inner == "<number>" || ValidIdentifier(inner) == nil {
			return q
		}
		return q[:1] + "…" + q[:1]
	})
	return truncate(strings.TrimSpace(s), n)
}
