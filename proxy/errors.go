package proxy

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/proxy/pages"
)

// Error is an HTTP error with a user-safe message. Handlers return it (or any
// error, which becomes a 500) and renderError shows it in one place, as a
// page or as JSON, always with the request ID. Err is internal detail for
// the log and is never shown.
type Error struct {
	Status     int
	Code       string // machine-readable, e.g. "forbidden"
	Title      string // short user-safe title
	Message    string // user-safe explanation
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code
}

func (e *Error) Unwrap() error { return e.Err }

// Errors the pipeline returns.
func errBadRequest(err error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Title: "Bad request",
		Message: "The address of this request is not valid.", Err: err}
}

func errForbidden(msg string) *Error {
	if msg == "" {
		msg = "You do not have access to this page."
	}
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Title: "Access denied", Message: msg}
}

func errUnauthenticated() *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Title: "Sign-in required",
		Message: "Please sign in to continue."}
}

// wantsJSON reports whether the client is an API client rather than a
// browser: it asks for JSON or says it is an XHR.
func wantsJSON(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

type jsonError struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// renderError writes err as a page or JSON with the request ID, and logs the
// internal detail. It is the only place errors reach the client.
func (srv *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	if stateOf(r.Context()).bodyTimedOut.Load() {
		// Whatever the handler or the proxy made of it, a body that did
		// not arrive in time is the client's delay (bodies.go).
		err = &Error{Status: errBodyTimeout.Status, Code: errBodyTimeout.Code, Title: errBodyTimeout.Title,
			Message: errBodyTimeout.Message, Err: err}
	}
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, throttle.ErrUnavailable):
		e = errThrottleUnavailable(err)
	default:
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Title: "Something went wrong",
			Message: "The gateway could not complete this request. Please try again.", Err: err}
	}
	rid := requestID(r.Context())
	level := slog.LevelInfo
	if e.Status >= 500 {
		level = slog.LevelError
	}
	attrs := []any{"request_id", rid, "status", e.Status, "code", e.Code}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err.Error())
	}
	srv.log.Log(r.Context(), level, "request failed", attrs...)

	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Cookie realm="`+srv.opts.SiteName+`"`)
	}
	if wantsJSON(r) {
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(e.Status)
		_ = json.NewEncoder(w).Encode(jsonError{Error: e.Code, Message: e.Message, RequestID: rid})
		return
	}
	data := pages.ErrorData{Status: e.Status, Title: e.Title, Message: e.Message, RequestID: rid, HomeURL: "/"}
	if e.Status == http.StatusUnauthorized {
		data.SignInURL = srv.signInURL(r.URL.RequestURI())
	}
	if rerr := srv.pages.Render(w, e.Status, pages.PageError, data); rerr != nil {
		srv.log.Error("render error page", "request_id", rid, "err", rerr)
	}
}

// errThrottleUnavailable is the answer to a form whose throttle could not
// be asked (its store failed): the form is refused, not let through
// unthrottled (fail closed), with 503 and a retry after 30 seconds.
func errThrottleUnavailable(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "throttle_unavailable", Title: "Temporarily unavailable",
		Message:    "This form cannot be accepted just now, and nothing was changed. Please try again in a minute.",
		RetryAfter: 30 * time.Second, Err: err}
}

// msgDataverseUnavailable is the plain message of errDataverseUnavailable.
const msgDataverseUnavailable = "Dataverse cannot be reached just now. Please try again shortly."

// errDataverseUnavailable is the one 503 answer of a gateway API whose
// Dataverse call failed with dataverse.ErrUnavailable (breaker open,
// timeout, 5xx): retry after 30 seconds, with message saying what was not
// done.
func errDataverseUnavailable(err error, message string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "dataverse_unavailable", Title: "Temporarily unavailable",
		Message: message, RetryAfter: 30 * time.Second, Err: err}
}
