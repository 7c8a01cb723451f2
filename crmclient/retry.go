package crmclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
)

// maxResponseBody bounds a response body read into memory; a page of
// 5,000 rows fits well within it.
const maxResponseBody = 64 << 20

// Backoff between retries of transient failures: base·2^attempt capped at
// maxBackoff, then jittered down by up to half.
const (
	backoffBase = 500 * time.Millisecond
	maxBackoff  = 8 * time.Second
)

// request is one Web API call, kept as data so each attempt builds a fresh
// *http.Request.
type request struct {
	op     string // metric label: the operation, never an id
	method string
	path   string // relative to the API root, already escaped: "contacts(<id>)"
	query  string // encoded query string without "?"
	header http.Header
	body   []byte
	// idempotent marks a call as safe to repeat after a transient failure
	// even though its method is not (for example a POST of a function-like
	// action). See retryable.
	idempotent bool
}

// retryable reports whether r may be sent again after a failure that may
// have happened after Dataverse executed it (5xx, 408, a broken
// connection, a timeout). GET, HEAD, PUT and DELETE are idempotent by HTTP;
// a DELETE retried after a lost success answers 404. PATCH is an upsert
// that can create a record and runs plug-ins again, so it is retried only
// with If-Match, which makes it a pure update (a retry after a lost success
// then answers 412 for an ETag, or repeats the same update for "*"). POST
// is never retried unless the caller marked it idempotent. A 429 is
// retried for every method: Dataverse did not execute the request.
func (r *request) retryable() bool {
	switch r.method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return true
	case http.MethodPatch:
		return r.header.Get("If-Match") != "" || r.idempotent
	}
	return r.idempotent
}

// response is a successful (status < 400) answer, body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the JSON body into v.
func (r *response) decode(v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("crmclient: decode answer: %w", err)
	}
	return nil
}

// callerGone wraps the error of a call whose caller's context ended; the
// breaker does not count it, since it says nothing about Dataverse.
type callerGone struct{ err error }

func (e callerGone) Error() string { return e.err.Error() }
func (e callerGone) Unwrap() error { return e.err }

// isBreakerSuccess tells the breaker which outcomes show a healthy
// Dataverse: success and business answers (400, 403, 404, 412, ...), and
// throttling (429): a throttled Dataverse is up and has said when to come
// back, and the shared Retry-After wait already keeps every caller away
// until then, so opening the breaker would only hide IsThrottled behind
// ErrOpenState and keep callers out longer than Dataverse asked. 408 and
// 5xx answers that survived the retries, connection errors, timeouts and
// token failures are failures.
func isBreakerSuccess(err error) bool {
	if err == nil || IsThrottled(err) {
		return true
	}
	if errors.Is(err, ErrUnavailable) {
		return false
	}
	var ae *APIError
	return errors.As(err, &ae) && !transientStatus(ae.Status) && ae.Status != http.StatusTooManyRequests
}

// transientStatus reports the statuses worth retrying with backoff: 408
// and the 5xx that mean "not now" (the sample policy of
// https://learn.microsoft.com/power-apps/developer/data-platform/api-limits
// retries 5xx/408). 501 means never, so it is not one of them.
func transientStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// budgetSpent is the error of an interactive call whose budget ran out
// while its caller was still waiting. It wraps ErrUnavailable, so the
// caller shows its "try again" answer, and the breaker does not count it:
// an answer too slow for a person may still be healthy for background
// work, which keeps its own timeout.
type budgetSpent struct {
	op     string
	budget time.Duration
}

func (e *budgetSpent) Error() string {
	return fmt.Sprintf("crmclient: %s: dataverse did not answer within the interactive budget of %s", e.op, e.budget)
}

func (e *budgetSpent) Unwrap() error { return ErrUnavailable }

// do runs r through the circuit breaker, the retry loop and the
// concurrency limit. It returns the answer for a status below 400; an
// *APIError for a business error; an error wrapping ErrUnavailable (and
// the last *APIError, if any) when Dataverse is down or throttling beyond
// the retry budget (or, for the interactive view, beyond what is left of
// its budget), the interactive budget ran out, or the breaker is open; the
// caller's context error when ctx ends.
func (c *Client) do(ctx context.Context, r *request) (*response, error) {
	if r.header == nil {
		r.header = http.Header{}
	}
	// deadline bounds the waits by the injected clock, so that a
	// Retry-After that does not fit fails at once; callCtx bounds the
	// whole call, attempts included, in real time.
	callCtx, deadline := ctx, c.now().Add(c.retryBudget)
	if c.budget > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, c.budget)
		defer cancel()
		if d := c.now().Add(c.budget); d.Before(deadline) {
			deadline = d
		}
	}
	resp, err := c.breaker.Execute(func() (*response, error) {
		resp, err := c.withRetries(callCtx, r, deadline)
		if err != nil && c.budget > 0 && callCtx.Err() != nil && ctx.Err() == nil {
			c.metrics.budgetSpent.WithLabelValues(r.op).Inc()
			spent := &budgetSpent{op: r.op, budget: c.budget}
			c.recordFailure(r.op, spent)
			c.logger.Warn("crmclient: dataverse did not answer within the interactive budget", "operation", r.op, "budget", c.budget)
			return nil, spent
		}
		if !isBreakerSuccess(err) {
			c.lastFailure.Store(&err)
		}
		return resp, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		c.metrics.requests.WithLabelValues(r.op, "breaker_open").Inc()
		c.status.refusedByBreaker()
		// Name the failure that opened the breaker, so a configuration
		// error (a wrong secret) is not hidden behind "circuit open".
		if last := c.lastFailure.Load(); last != nil {
			return nil, fmt.Errorf("%w: %w (last failure: %v)", ErrUnavailable, err, *last)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return resp, err
}

// withRetries sends r until it gets a final answer, the retries are used
// up, the next wait would end after deadline, or ctx ends.
func (c *Client) withRetries(ctx context.Context, r *request, deadline time.Time) (*response, error) {
	reauthenticated := false
	for retries := 0; ; {
		if err := c.waitNotBefore(ctx, deadline); err != nil {
			return nil, err
		}
		resp, tok, err := c.attempt(ctx, r)
		if ctx.Err() != nil {
			return nil, callerGone{ctx.Err()}
		}
		var delay time.Duration
		var failure error // what to return if no retry is allowed
		switch {
		case err != nil:
			var te *TokenError
			if errors.As(err, &te) && te.Status < 500 {
				c.recordFailure(r.op, err)
				return nil, err // a configuration problem: retrying cannot help
			}
			c.recordFailure(r.op, err)
			failure = fmt.Errorf("%w: %w", ErrUnavailable, err)
			if !r.retryable() {
				return nil, failure
			}
			delay = c.backoff(retries)
		case resp.status == http.StatusUnauthorized && !reauthenticated:
			// The token may have been revoked or expired early: get a
			// new one and try once more. The request was not executed.
			c.tokens.invalidate(tok)
			reauthenticated = true
			continue
		case resp.status == http.StatusTooManyRequests:
			c.metrics.throttled.WithLabelValues(r.op).Inc()
			wait, ok := retryAfter(resp.header)
			apiErr := parseAPIError(resp.status, resp.body)
			if ok {
				c.recordThrottled(r.op, wait, apiErr)
			} else {
				c.recordThrottled(r.op, 0, apiErr)
				wait = c.backoff(retries)
			}
			until := c.now().Add(wait)
			c.setNotBefore(until)
			failure = fmt.Errorf("%w: %w", ErrUnavailable, apiErr)
			c.logger.Warn("crmclient: dataverse throttled the client", "operation", r.op, "retry_after", wait)
			if retries >= c.maxRetries || until.After(deadline) {
				return nil, failure
			}
			retries++
			c.metrics.retries.WithLabelValues(r.op).Inc()
			continue // waitNotBefore waits for Retry-After
		case resp.status >= 400:
			apiErr := parseAPIError(resp.status, resp.body)
			if !transientStatus(resp.status) {
				if resp.status == http.StatusUnauthorized {
					c.recordFailure(r.op, apiErr) // refused even with a new token
				}
				return nil, apiErr
			}
			c.recordFailure(r.op, apiErr)
			failure = fmt.Errorf("%w: %w", ErrUnavailable, apiErr)
			if !r.retryable() {
				return nil, failure
			}
			delay = c.backoff(retries)
		default:
			return resp, nil
		}
		if retries >= c.maxRetries || c.now().Add(delay).After(deadline) {
			return nil, failure
		}
		retries++
		c.metrics.retries.WithLabelValues(r.op).Inc()
		c.logger.Debug("crmclient: retrying dataverse request", "operation", r.op, "retry", retries, "delay", delay, "error", failure)
		if err := c.sleep(ctx, delay); err != nil {
			return nil, callerGone{err}
		}
	}
}

// waitNotBefore waits until Dataverse's last Retry-After has passed. When
// that is beyond deadline it fails at once with a throttled error rather
// than sending a request that would be refused.
func (c *Client) waitNotBefore(ctx context.Context, deadline time.Time) error {
	c.mu.Lock()
	nb := c.notBefore
	c.mu.Unlock()
	now := c.now()
	if !now.Before(nb) {
		return nil
	}
	if nb.After(deadline) {
		return fmt.Errorf("%w: %w", ErrUnavailable, &APIError{
			Status:  http.StatusTooManyRequests,
			Message: fmt.Sprintf("dataverse asked to wait until %s, beyond what is left of this call's budget", nb.UTC().Format(time.RFC3339)),
		})
	}
	if err := c.sleep(ctx, nb.Sub(now)); err != nil {
		return callerGone{err}
	}
	return nil
}

// setNotBefore makes every caller wait until t; it never moves the time
// back.
func (c *Client) setNotBefore(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.notBefore) {
		c.notBefore = t
	}
}

// backoff returns the jittered wait before retry number retries+1.
func (c *Client) backoff(retries int) time.Duration {
	d := maxBackoff
	if retries < 5 {
		d = min(backoffBase<<retries, maxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads Retry-After as whole seconds, the only form Dataverse
// documents (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits).
func retryAfter(h http.Header) (time.Duration, bool) {
	s := strings.TrimSpace(h.Get("Retry-After"))
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// attempt sends r once: it gets a token, takes a concurrency slot, and
// reads the whole body within the per-attempt timeout. It returns the
// token used so a 401 can invalidate it.
func (c *Client) attempt(ctx context.Context, r *request) (*response, string, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return nil, "", err
	}
	if err := c.slots.acquire(ctx); err != nil {
		return nil, tok, err
	}
	defer c.slots.release()
	c.metrics.inFlight.Inc()
	defer c.metrics.inFlight.Dec()

	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	target := c.base + r.path
	if r.query != "" {
		target += "?" + r.query
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, target, body)
	if err != nil {
		return nil, tok, fmt.Errorf("crmclient: build request: %w", err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	// The documented request headers, set last so a caller cannot change
	// them (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors).
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-MaxVersion", "4.0")
	req.Header.Set("OData-Version", "4.0")
	req.Header.Set("Authorization", "Bearer "+tok)
	if r.body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if r.method == http.MethodGet && req.Header.Get("If-None-Match") == "" {
		req.Header.Set("If-None-Match", "null") // recommended by the docs against cached expansions
	}

	start := c.now()
	resp, err := c.httpClient.Do(req)
	if err != nil {
		c.observe(r.op, "error", start)
		return nil, tok, fmt.Errorf("crmclient: %s %s: %w", r.method, r.op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err == nil && len(data) > maxResponseBody {
		err = fmt.Errorf("answer larger than %d bytes", maxResponseBody)
	}
	if err != nil {
		c.observe(r.op, "error", start)
		return nil, tok, fmt.Errorf("crmclient: %s %s: read answer: %w", r.method, r.op, err)
	}
	c.observe(r.op, strconv.Itoa(resp.StatusCode), start)
	c.followDOPHint(resp.Header)
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, tok, nil
}

// followDOPHint moves the concurrency limit to the x-ms-dop-hint of an
// answer, if it carries a well-formed one (see parseDOPHint), capped at
// Config.MaxConcurrency.
func (c *Client) followDOPHint(h http.Header) {
	n, ok := parseDOPHint(h)
	if !ok {
		if len(h.Values(dopHintHeader)) > 0 {
			c.logger.Debug("crmclient: ignored a malformed x-ms-dop-hint", "value", truncate(strings.Join(h.Values(dopHintHeader), ","), 32))
		}
		return
	}
	if limit, changed := c.slots.setLimit(n); changed {
		c.metrics.concurrencyLimit.Set(float64(limit))
		c.logger.Info("crmclient: dataverse recommended a degree of parallelism (x-ms-dop-hint); concurrency limit changed",
			"hint", n, "limit", limit, "max", c.slots.max)
	}
}

func (c *Client) observe(op, code string, start time.Time) {
	c.metrics.requests.WithLabelValues(op, code).Inc()
	c.metrics.duration.WithLabelValues(op).Observe(c.now().Sub(start).Seconds())
}

// readableFile checks that path can be opened for reading.
func readableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
