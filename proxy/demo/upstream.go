package demo

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed upstream.html
var upstreamHTML string

var upstreamTemplate = template.Must(template.New("upstream.html").Parse(upstreamHTML))

// UpstreamOptions configures NewUpstream.
type UpstreamOptions struct {
	// JWKSURL is the gateway's key set, normally PublicURL + "/.auth/jwks.json".
	JWKSURL string
	// Issuer is the gateway's public URL, compared exactly with the iss claim. Empty makes
	// every token invalid.
	Issuer string
	// Client fetches the key set; nil means an http.Client with a 10 s timeout.
	Client *http.Client
	// Now is the clock for token validation; nil means time.Now.
	Now func() time.Time
	// AuthPrefix is the gateway's URL prefix used for the sign-in and sign-out links;
	// empty means "/.auth".
	AuthPrefix string
}

// area is one of the demo app's sections and the policy the gateway is expected to apply to it.
type area struct {
	Path, Label, Title, Policy, Explain string
}

var areas = []area{
	{"/", "Home", "crmgate demo app", "Public",
		"Anyone can open this page. When you are signed in, the gateway still adds your identity, so the app can greet you."},
	{"/account", "Account", "Your account", "Signed-in users",
		"The gateway sends anonymous visitors to its sign-in page, so this app only ever sees signed-in requests here."},
	{"/admin", "Admin", "Administration", "Role admin",
		"Only users with the admin role reach this page; others get the gateway's 403 page, and this app never sees the request."},
}

// header is one received request header.
type header struct{ Name, Value string }

// identity is the outcome of verifying X-Current-User.
type identity struct {
	State      string // "anonymous", "invalid" or "valid"
	Reason     string // why the token is invalid
	Claims     *Claims
	ClaimsJSON string
	ExpiresIn  string
}

// upstreamPage is the data of upstream.html.
type upstreamPage struct {
	Area       area
	Areas      []area
	SignInURL  string
	SignOutURL string
	ProfileURL string
	Identity   identity
	Headers    []header
	Cookies    []string
}

// upstream is the demo app's handler.
type upstream struct {
	verifier   *Verifier
	now        func() time.Time
	authPrefix string
}

// NewUpstream returns the demo upstream application used by `crmgate dev`: a public home page,
// /account and /admin, each showing the X-Current-User* headers it received, the verified JWT
// claims (or why the token is invalid), and the names of the cookies that reached it; and
// /api/whoami, the verified claims as JSON (401 with {"error": ...} otherwise). The app trusts
// nothing it did not verify; it does not enforce access itself, the gateway does.
func NewUpstream(opts UpstreamOptions) http.Handler {
	u := &upstream{
		verifier:   NewVerifier(opts.JWKSURL, opts.Issuer, opts.Client, opts.Now),
		now:        opts.Now,
		authPrefix: strings.TrimSuffix(opts.AuthPrefix, "/"),
	}
	if u.now == nil {
		u.now = time.Now
	}
	if u.authPrefix == "" {
		u.authPrefix = "/.auth"
	}
	mux := http.NewServeMux()
	for _, a := range areas {
		pattern := "GET " + a.Path
		if a.Path == "/" {
			pattern = "GET /{$}"
		}
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { u.page(w, r, a, http.StatusOK) })
	}
	mux.HandleFunc("GET /api/whoami", u.whoami)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.page(w, r, area{Path: r.URL.Path, Title: "Page not found", Policy: "None",
			Explain: "The demo app has no page here. The links above lead to its three areas."}, http.StatusNotFound)
	})
	return mux
}

// verify checks the request's X-Current-User header.
func (u *upstream) verify(r *http.Request) identity {
	claims, err := u.verifier.Verify(r.Context(), r.Header.Get("X-Current-User"), "")
	switch {
	case errors.Is(err, ErrNoToken):
		return identity{State: "anonymous"}
	case err != nil:
		return identity{State: "invalid", Reason: err.Error()}
	}
	pretty, err := json.MarshalIndent(claims, "", "  ")
	if err != nil {
		return identity{State: "invalid", Reason: "demo: claims do not encode: " + err.Error()}
	}
	id := identity{State: "valid", Claims: claims, ClaimsJSON: string(pretty)}
	if claims.Expiry != nil {
		id.ExpiresIn = claims.Expiry.Time().Sub(u.now()).Round(time.Second).String()
	}
	return id
}

func (u *upstream) page(w http.ResponseWriter, r *http.Request, a area, status int) {
	data := upstreamPage{
		Area:       a,
		Areas:      areas,
		SignInURL:  u.authPrefix + "/signin?redirect_url=" + url.QueryEscape(r.URL.RequestURI()),
		SignOutURL: u.authPrefix + "/signout",
		ProfileURL: u.authPrefix + "/profile",
		Identity:   u.verify(r),
	}
	for name, values := range r.Header {
		if name == "X-Current-User" || strings.HasPrefix(name, "X-Current-User-") {
			data.Headers = append(data.Headers, header{name, strings.Join(values, ", ")})
		}
	}
	slices.SortFunc(data.Headers, func(a, b header) int { return strings.Compare(a.Name, b.Name) })
	for _, c := range r.Cookies() {
		data.Cookies = append(data.Cookies, c.Name)
	}
	var buf bytes.Buffer
	if err := upstreamTemplate.Execute(&buf, data); err != nil {
		http.Error(w, "demo: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (u *upstream) whoami(w http.ResponseWriter, r *http.Request) {
	id := u.verify(r)
	var (
		body   any
		status = http.StatusOK
	)
	switch id.State {
	case "valid":
		body = id.Claims
	case "anonymous":
		status, body = http.StatusUnauthorized, map[string]string{"error": "not signed in"}
	default:
		status, body = http.StatusUnauthorized, map[string]string{"error": "token invalid: " + id.Reason}
	}
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "demo: encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
