package dataversetest

import (
	"net/http"
	"strconv"
	"time"
)

// Faults are failures injected into Web API requests (and, for
// TokenEndpointDown, into the token endpoint) so that client tests can
// exercise retries, timeouts and the breaker. The zero value injects nothing.
type Faults struct {
	// Latency delays every affected request before it is handled (real
	// time; the delay ends early when the client goes away).
	Latency time.Duration
	// Status, when non-zero, answers affected requests with this status and
	// a Dataverse error body (e.g. 503) instead of handling them.
	Status int
	// RetryAfter, when positive and Status is set, is sent as the
	// Retry-After header of the injected answers, in whole seconds
	// rounded up: what Dataverse sends with a 429 of its service
	// protection limits (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits).
	RetryAfter time.Duration
	// Count limits Status, DropConnection and MalformedJSON to the next
	// Count API requests; 0 means every request until SetFaults is called
	// again. Latency is not counted.
	Count int
	// DropConnection closes the connection without a response.
	DropConnection bool
	// MalformedJSON answers 200 with a truncated JSON body.
	MalformedJSON bool
	// TokenEndpointDown answers every token request with 503.
	TokenEndpointDown bool
}

// SetFaults replaces the injected faults.
func (h *Handler) SetFaults(f Faults) {
	h.mu.Lock()
	h.faults = f
	h.mu.Unlock()
}

// applyFaults injects the configured faults; it reports whether the request
// was answered (or dropped) here.
func (h *Handler) applyFaults(w http.ResponseWriter, r *http.Request) bool {
	h.mu.Lock()
	f := h.faults
	active := f.Status != 0 || f.DropConnection || f.MalformedJSON
	if active && f.Count > 0 {
		h.faults.Count--
		if h.faults.Count == 0 {
			h.faults.Status, h.faults.DropConnection, h.faults.MalformedJSON = 0, false, false
		}
	}
	h.mu.Unlock()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.DropConnection:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	case f.Status != 0:
		e := errf(f.Status, "", "%s", http.StatusText(f.Status))
		if f.RetryAfter > 0 {
			e.header = http.Header{"Retry-After": {strconv.FormatInt(int64((f.RetryAfter+time.Second-1)/time.Second), 10)}}
		}
		writeError(w, e)
		return true
	case f.MalformedJSON:
		w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
		w.Header().Set("OData-Version", "4.0")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"@odata.context":"`))
		return true
	}
	return false
}
