package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Request bodies are read under deadlines so that a client that sends its
// body slowly (a slow-loris upload) cannot hold a connection and a handler
// forever:
//
//   - the gateway's own pages and APIs get Options.GatewayBodyTimeout for the
//     whole body, counted from when the handler starts; a body that has not
//     arrived by then is answered 408 (renderError);
//   - a proxied request's body (an upload) may go quiet for at most
//     Options.UploadIdleTimeout between reads; a steady upload, however slow,
//     keeps going.
//
// The deadlines are the connection's read deadline (http.ResponseController),
// so they run on the wall clock. The deadline is cleared as soon as the body
// ends: net/http then reads from the connection in the background to notice
// a client that goes away, and a deadline left behind would cancel the
// request's context while the gateway or the upstream is still at work.

// errBodyTimeout is the answer to a request whose body did not arrive in
// time.
var errBodyTimeout = &Error{Status: http.StatusRequestTimeout, Code: "body_timeout", Title: "Request timed out",
	Message: "The request took too long to arrive. Please try again."}

// deadlineBody is a request body read under a read deadline.
type deadlineBody struct {
	body io.ReadCloser
	rc   *http.ResponseController
	// idle, when positive, moves the deadline to now+idle before each read.
	idle time.Duration
	st   *requestState
	// left is how much of a body of known length is still to come; the
	// deadline is lifted once it reaches zero, since a reader that knows
	// the length (the proxy's transport) never asks for the end.
	left int64

	once  sync.Once
	ended atomic.Bool // the body ended or timed out: no more deadlines
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.idle > 0 && !b.ended.Load() {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	switch {
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		// The deadline stays: net/http still reads what is left of the
		// body before it answers, and must find it expired too.
		b.st.bodyTimedOut.Store(true)
		b.ended.Store(true)
	case err != nil || b.left == 0:
		b.clear()
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	if !b.st.bodyTimedOut.Load() {
		b.clear()
	}
	return b.body.Close()
}

// clear lifts the deadline once the body has ended.
func (b *deadlineBody) clear() {
	b.once.Do(func() {
		b.ended.Store(true)
		_ = b.rc.SetReadDeadline(time.Time{})
	})
}

// hasBody reports whether r has a body to read: a body-less request must
// get no deadline, because net/http reads the connection in the background
// from the start of such a request.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// withBodyDeadline gives the gateway's handlers their body deadline.
func (srv *Server) withBodyDeadline(h http.Handler) http.Handler {
	d := srv.opts.GatewayBodyTimeout
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hasBody(r) {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &deadlineBody{body: r.Body, rc: rc, st: stateOf(r.Context()), left: r.ContentLength}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// limitUploadIdle gives a proxied request's body its idle timeout.
func (srv *Server) limitUploadIdle(w http.ResponseWriter, r *http.Request) {
	if d := srv.opts.UploadIdleTimeout; d > 0 && hasBody(r) {
		r.Body = &deadlineBody{body: r.Body, rc: http.NewResponseController(w), idle: d, st: stateOf(r.Context()), left: r.ContentLength}
	}
}
