package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crmgate/crmgate/policies"
)

// NewTransport returns the transport crmgate uses for upstreams: keep-alive
// pools sized for a gateway (Go's default of 2 idle connections per host
// costs about a third of the throughput under load), HTTP/2 where the
// upstream offers it over TLS, and bounded connect and header timeouts.
// A zero responseHeaderTimeout means none (long polls, slow reports).
func NewTransport(maxIdlePerHost int, dialTimeout, responseHeaderTimeout time.Duration) *http.Transport {
	if maxIdlePerHost <= 0 {
		maxIdlePerHost = 256
	}
	if dialTimeout <= 0 {
		dialTimeout = 5 * time.Second
	}
	return &http.Transport{
		Proxy:                 nil, // an upstream is never reached through HTTP_PROXY
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxIdlePerHost * 4,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
	}
}

// upstream is one configured upstream with its reverse proxy.
type upstream struct {
	cfg   *policies.Upstream
	proxy *httputil.ReverseProxy
}

func (srv *Server) newUpstream(cfg *policies.Upstream, transport http.RoundTripper) *upstream {
	u := &upstream{cfg: cfg}
	forwardedProto := []string{srv.publicURL.Scheme}[:1:1] // shared, never modified
	isGatewayCookie := srv.isGatewayCookie                 // one closure, not one per request
	u.proxy = &httputil.ReverseProxy{
		Transport:  transport,
		BufferPool: copyBuffers,
		// Rewrite runs after hop-by-hop headers (including those a client
		// names in Connection) were removed, so nothing set here can be
		// deleted by the client.
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := stateOf(pr.In.Context())
			stripIdentityHeaders(pr.Out.Header)
			pr.Out.URL.RawPath = "" // the canonical path in URL.Path is what is proxied
			pr.SetURL(cfg.URL)
			if st.trustedPeer {
				if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
					pr.Out.Header["X-Forwarded-For"] = xff
				}
			}
			pr.SetXForwarded()
			if pr.In.TLS == nil {
				proto := forwardedProto
				if p := pr.In.Header.Get("X-Forwarded-Proto"); st.trustedPeer && (p == "http" || p == "https") {
					proto = []string{p}
				}
				pr.Out.Header["X-Forwarded-Proto"] = proto
			}
			removeCookiesFunc(pr.Out.Header, isGatewayCookie)
			pr.Out.Header["X-Request-Id"] = st.ridHeader
			if st.identity != nil {
				st.identity.apply(pr.Out.Header)
			}
		},
		// An upstream must not set the gateway's cookies: it could replace
		// a user's session or CSRF binding (fixation) or break a chunked
		// session. Such Set-Cookie lines are dropped and logged.
		ModifyResponse: func(resp *http.Response) error {
			if n := dropSetCookies(resp.Header, isGatewayCookie); n > 0 {
				srv.log.Warn("dropped Set-Cookie headers an upstream sent for the gateway's own cookies",
					"request_id", requestID(resp.Request.Context()), "upstream", cfg.Name, "count", n)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil && !stateOf(r.Context()).bodyTimedOut.Load() {
				// The client went away; nobody is left to read an error page.
				w.WriteHeader(499)
				return
			}
			srv.renderError(w, r, &Error{Status: http.StatusBadGateway, Code: "upstream_unavailable", Title: "Site unavailable",
				Message: "The site behind this gateway is not responding. Please try again in a moment.", Err: err})
		},
	}
	return u
}

// isGatewayCookie reports whether a cookie called name belongs to the
// gateway and must not reach the upstream: the session cookie, every name
// of its companions' namespace (<name>_<digits>, whether the gateway set it
// or a client sent a look-alike) and the CSRF binding cookie.
func (srv *Server) isGatewayCookie(name string) bool {
	return name == srv.cookieName || name == srv.csrfName || isCompanionLike(srv.cookieName, name)
}

// removeCookies drops the named cookies from the Cookie header, leaving
// every other cookie byte for byte as the client sent it.
func removeCookies(h http.Header, names []string) {
	removeCookiesFunc(h, func(name string) bool { return slices.Contains(names, name) })
}

// removeCookiesFunc drops the cookies whose name drop reports from the
// Cookie header, leaving every other cookie byte for byte as the client
// sent it.
func removeCookiesFunc(h http.Header, drop func(name string) bool) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		var parts []string
		for part := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if !drop(name) && strings.TrimSpace(part) != "" {
				parts = append(parts, strings.TrimSpace(part))
			}
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}

// dropSetCookies removes the Set-Cookie lines whose cookie name drop
// reports and returns how many it removed.
func dropSetCookies(h http.Header, drop func(name string) bool) int {
	lines := h["Set-Cookie"]
	if len(lines) == 0 {
		return 0
	}
	kept := lines[:0:0]
	for _, line := range lines {
		nv, _, _ := strings.Cut(line, ";")
		name, _, _ := strings.Cut(nv, "=")
		if !drop(strings.TrimSpace(name)) {
			kept = append(kept, line)
		}
	}
	if n := len(lines) - len(kept); n > 0 {
		if len(kept) == 0 {
			delete(h, "Set-Cookie")
		} else {
			h["Set-Cookie"] = kept
		}
		return n
	}
	return 0
}

// copyBuffers lends ReverseProxy its 32 KiB copy buffers; without a pool it
// allocates (and zeroes) one per request, which dominated the profile.
var copyBuffers = NewBufferPool()

// NewBufferPool returns a pool of 32 KiB copy buffers for
// httputil.ReverseProxy.BufferPool. crmgate's upstreams use one; the
// benchmark's bare proxy uses one too, so the comparison is like for like.
func NewBufferPool() httputil.BufferPool { return &bufferPool{} }

// bufferPool pools fixed-size arrays: converting the slice back to an array
// pointer in Put costs no allocation, unlike pooling *[]byte.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
	}
}
