package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/crmgate/crmgate/policies"
)

// The forward-auth endpoint, <prefix>/verify: an ingress in front of the
// upstream asks the gateway, for every request it receives, whether the
// request may pass and with which identity headers; the gateway proxies
// nothing. Three forms of the original request are read, first match wins:
//
//  1. X-Original-URL (an absolute URL) and X-Original-Method, as nginx
//     auth_request configurations and ingress-nginx send them;
//  2. X-Forwarded-Method, X-Forwarded-Proto, X-Forwarded-Host and
//     X-Forwarded-Uri, as Traefik ForwardAuth sends them;
//  3. the original path appended to <prefix>/verify, with the request's
//     own method and Host (and X-Forwarded-Proto), as Envoy ext_authz
//     http_service with path_prefix sends it.
//
// Every form is believed only from a trusted proxy (Options.TrustedProxies):
// from any other peer, and whenever the original request cannot be read or
// canonicalised, the answer is 400. The answers: 200 with the identity
// headers as response headers; 401 with Location of the sign-in page;
// 403 when the route denies, no route matches, or (with Location of the
// change page) the password must be changed first.
//
// Traefik and Envoy send the gateway's answer to the browser as it is
// (nginx's auth_request turns a 401 into its error_page redirect), so in
// their forms a signed-out browser navigation (GET or HEAD asking for
// HTML) gets 302 Found to the sign-in page instead of 401; fetches and
// API calls keep the 401 with Location. This is the split Authelia makes
// between its AuthRequest and its ForwardAuth/ExtAuthz endpoints
// (https://www.authelia.com/reference/guides/proxy-authorization/).

// verifyOverrides are the override headers the verify endpoint reads. Step
// 1 of the pipeline removes them from every request; a trusted peer's
// values for a request to the verify path are kept aside first.
type verifyOverrides struct {
	url, method []string
}

// captureVerify keeps a trusted peer's X-Original-URL and X-Original-Method
// of a request whose path starts with the verify path, before step 1 strips
// them. Any other request costs one bool test (untrusted) or one prefix
// comparison (trusted).
func (srv *Server) captureVerify(st *requestState, r *http.Request) {
	if st.trustedPeer && strings.HasPrefix(r.URL.Path, srv.verifyPath) {
		st.verify = &verifyOverrides{url: r.Header["X-Original-Url"], method: r.Header["X-Original-Method"]}
	}
}

// isVerifyPath reports whether the canonical path is the verify endpoint
// or, for Envoy, under it.
func (srv *Server) isVerifyPath(path string) bool {
	return path == srv.verifyPath || strings.HasPrefix(path, srv.verifyPath+"/")
}

// original is the request an ingress asks about, canonicalised.
type original struct {
	method, scheme, host, path, query string
	form                              verifyForm
}

// verifyForm is which ingress form carried the original request.
type verifyForm uint8

const (
	formNginx   verifyForm = iota // X-Original-URL: nginx, ingress-nginx
	formTraefik                   // X-Forwarded-Uri: Traefik ForwardAuth
	formEnvoy                     // the path after the verify path: Envoy ext_authz
)

// redirects reports whether the ingress of this form passes the gateway's
// answer to the browser unchanged, so that a redirect must be the answer
// itself rather than a 401 the ingress turns into one.
func (f verifyForm) redirects() bool { return f != formNginx }

// uri is the path and query as the browser asked for them.
func (o original) uri() string {
	if o.query == "" {
		return o.path
	}
	return o.path + "?" + o.query
}

var errVerifyUntrusted = errors.New("verify: the peer is not a trusted proxy")

// single returns the one value of a header, and false when it has several
// (an ambiguous original request is refused).
func single(v []string) (string, bool) {
	switch len(v) {
	case 0:
		return "", true
	case 1:
		return v[0], true
	}
	return "", false
}

// readOriginal reads the original request of a verify request (see the
// forms above) and canonicalises its host and path as the pipeline does
// for proxied requests.
func (srv *Server) readOriginal(r *http.Request, canonPath string, st *requestState) (original, error) {
	var o original
	if !st.trustedPeer || st.verify == nil {
		return o, errVerifyUntrusted
	}
	var rawURI string
	fwdURI, ok1 := single(r.Header["X-Forwarded-Uri"])
	origURL, ok2 := single(st.verify.url)
	origMethod, ok3 := single(st.verify.method)
	fwdMethod, ok4 := single(r.Header["X-Forwarded-Method"])
	fwdHost, ok5 := single(r.Header["X-Forwarded-Host"])
	fwdProto, ok6 := single(r.Header["X-Forwarded-Proto"])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return o, errors.New("verify: a forwarding header is repeated")
	}
	switch {
	case origURL != "": // nginx, ingress-nginx
		u, err := url.Parse(origURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.User != nil {
			return o, fmt.Errorf("verify: X-Original-URL %q is not an absolute http(s) URL", origURL)
		}
		o.scheme, o.host, o.method = u.Scheme, u.Host, origMethod
		rawURI = u.RequestURI()
		if u.Fragment != "" || strings.Contains(origURL, "#") {
			return o, errors.New("verify: X-Original-URL has a fragment")
		}
		if u.Path == "" && u.RawPath == "" {
			rawURI = "/" + strings.TrimPrefix(rawURI, "/")
		}
	case fwdURI != "": // Traefik
		o.scheme, o.host, o.method, rawURI = fwdProto, fwdHost, fwdMethod, fwdURI
		o.form = formTraefik
	case canonPath != srv.verifyPath: // Envoy: the original path follows the verify path
		o.scheme, o.host, o.method = fwdProto, r.Host, r.Method
		o.form = formEnvoy
		if fwdHost != "" {
			o.host = fwdHost
		}
		raw := r.URL.RawQuery
		rawURI = strings.TrimPrefix(r.URL.EscapedPath(), srv.verifyPath)
		if raw != "" {
			rawURI += "?" + raw
		}
	default:
		return o, errors.New("verify: no original request (X-Original-URL, X-Forwarded-Uri or a path after the verify path)")
	}
	if o.scheme == "" {
		o.scheme = srv.publicURL.Scheme
	}
	o.scheme = strings.ToLower(o.scheme)
	if o.scheme != "http" && o.scheme != "https" {
		return o, fmt.Errorf("verify: original scheme %q", o.scheme)
	}
	if o.method == "" || strings.ContainsAny(o.method, " \t\r\n") {
		return o, errors.New("verify: no original method")
	}
	if o.host == "" {
		return o, errors.New("verify: no original host")
	}
	if !strings.HasPrefix(rawURI, "/") {
		return o, fmt.Errorf("verify: original URI %q is not an absolute path", rawURI)
	}
	u, err := url.ParseRequestURI(rawURI)
	if err != nil {
		return o, fmt.Errorf("verify: original URI: %w", err)
	}
	if o.path, err = policies.CanonicalPath(u.EscapedPath()); err != nil {
		return o, err
	}
	if o.host, err = policies.CanonicalHost(o.host); err != nil {
		return o, err
	}
	o.query = u.RawQuery
	return o, nil
}

// verify answers a forward-auth request (see above). It runs the session
// steps (5 to 8) and the route decision (9) of the pipeline on the
// original request.
func (srv *Server) verify(w http.ResponseWriter, r *http.Request, path string) {
	w.Header().Set("Cache-Control", "no-store")
	st := stateOf(r.Context())
	vm := srv.metrics.route("verify")
	o, err := srv.readOriginal(r, path, st)
	if err != nil {
		vm.deny.Inc()
		srv.renderError(w, r, errBadRequest(err))
		return
	}
	if refusedMethod(o.method) {
		vm.deny.Inc()
		srv.renderError(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Title: "Method not allowed",
			Message: "This gateway never allows " + o.method + " requests.", Err: fmt.Errorf("verify: refused method %q", o.method)})
		return
	}
	if o.host != srv.publicHost && !srv.policy.ServesHost(o.host) {
		vm.deny.Inc()
		srv.renderError(w, r, errMisdirected(o.host))
		return
	}
	if o.path == srv.prefix || strings.HasPrefix(o.path, srv.prefix+"/") {
		// The gateway's own pages are served by the gateway: the ingress
		// must route them to it, not ask about them.
		vm.deny.Inc()
		srv.renderError(w, r, errForbidden("The gateway's own pages are not decided by "+srv.verifyPath+"."))
		return
	}

	// 4. The cross-origin check on the original method and headers (the
	// ingress forwards the browser's Origin and Sec-Fetch-Site).
	crossOrigin := false
	orig := &http.Request{Method: o.method, Header: r.Header, Host: o.host, URL: &url.URL{Path: o.path}}
	if err := srv.cop.Check(orig); err != nil {
		if route := srv.policy.Route(o.host, o.method, o.path); route == nil || !route.AllowCrossOrigin {
			vm.deny.Inc()
			srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "cross_origin", Title: "Request refused",
				Message: "This request came from another site and was refused.", Err: err})
			return
		}
		crossOrigin = true
	}

	// 5 to 8. The session: read, stamp, contact, saved (a Set-Cookie the
	// ingress may pass to the browser).
	ls := srv.readSession(w, r)
	if err := srv.checkSessionStamp(w, r, &ls); err != nil {
		srv.renderError(w, r, err)
		return
	}
	if err := srv.revalidateSessionContact(w, r, &ls); err != nil {
		srv.renderError(w, r, err)
		return
	}
	if err := srv.saveSession(w, r, &ls); err != nil {
		srv.renderError(w, r, err)
		return
	}
	sess := ls.sess
	if crossOrigin {
		sess = nil
	}

	// 8a. The forced password change: 403, and the change page as Location.
	if sess != nil && sess.MustChange {
		srv.metrics.sessions.WithLabelValues("password_change_forced").Inc()
		vm.deny.Inc()
		target := srv.publicOrigin() + srv.prefix + "/password"
		if back, ok := srv.verifyBack(o); ok {
			target += "?redirect_url=" + url.QueryEscape(back)
		}
		w.Header().Set("Location", target)
		srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "password_change_required", Title: "Password change required",
			Message: msgPasswordMustChange + " Go to " + srv.prefix + "/password."})
		return
	}

	// 9. The route decides; unmatched requests are denied (403: the
	// ingress serves the upstream, which may well have the page).
	route := srv.policy.Route(o.host, o.method, o.path)
	if route == nil {
		srv.metrics.route("unmatched").deny.Inc()
		vm.deny.Inc()
		srv.renderError(w, r, errForbidden("No rule allows this address."))
		return
	}
	rm := srv.metrics.route(route.Name)
	decision, cerr := route.Check(sess.subject(), policies.RequestInfo{Method: o.method, Host: o.host, Path: o.path})
	if cerr != nil {
		srv.log.Warn("policy condition failed", "request_id", st.rid, "route", route.Name, "err", cerr)
	}
	switch decision {
	case policies.Allow:
		rm.allow.Inc()
		vm.allow.Inc()
	case policies.Unauthenticated:
		rm.unauthenticated.Inc()
		vm.unauthenticated.Inc()
		target := srv.publicOrigin() + srv.prefix + "/signin"
		if back, ok := srv.verifyBack(o); ok {
			target += "?redirect_url=" + url.QueryEscape(back)
		}
		w.Header().Set("Location", target)
		if o.form.redirects() && isNavigation(o.method, r.Header) {
			http.Redirect(w, r, target, http.StatusFound)
			return
		}
		srv.renderError(w, r, errUnauthenticated())
		return
	default:
		rm.deny.Inc()
		vm.deny.Inc()
		srv.renderError(w, r, errForbidden(""))
		return
	}

	// 11. The identity, as response headers the ingress copies onto the
	// upstream request; never allow what could not be signed.
	if sess != nil {
		id, err := srv.signer.identity(sess, route.AudienceFor(srv.policy.Upstream(o.host, o.path)), route)
		if err != nil {
			srv.renderError(w, r, fmt.Errorf("sign identity: %w", err))
			return
		}
		id.apply(w.Header())
	}
	w.WriteHeader(http.StatusOK)
}

// isNavigation reports whether the original request is a browser loading
// a page: GET or HEAD, and Sec-Fetch-Mode navigate or, from browsers that
// do not send it, an Accept that names text/html. A fetch, an XHR or an
// API client gets a status it can act on instead of a redirect it would
// follow blindly.
func isNavigation(method string, h http.Header) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	if mode := h.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	for _, v := range h.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return true
			}
		}
	}
	return false
}

// publicOrigin is the gateway's scheme://host, where its pages live.
func (srv *Server) publicOrigin() string {
	return srv.publicURL.Scheme + "://" + srv.publicURL.Host
}

// verifyBack is where sign-in returns to: the original URL, relative when
// it is on the gateway's own host, and only when the redirect validator
// accepts it (a same-site path or an allow-listed origin).
func (srv *Server) verifyBack(o original) (string, bool) {
	back := o.uri()
	if o.host != srv.publicHost || o.scheme != srv.publicURL.Scheme {
		back = o.scheme + "://" + o.host + back
	} else if back == "/" {
		return "", false
	}
	if _, ok := srv.redirects.validate(back); !ok {
		return "", false
	}
	return back, true
}
