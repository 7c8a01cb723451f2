package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy/pages"
)

// fakeAuth is the identity layer made of func fields, for unit tests of
// the pipeline: sign-in, sessions and the user directory.
type fakeAuth struct {
	userByID func(ctx context.Context, id string) (*authz.User, error)
}

var (
	_ PasswordSignIn = (*fakeAuth)(nil)
	_ SessionStore   = (*fakeAuth)(nil)
	_ UserDirectory  = (*fakeAuth)(nil)
)

func (f *fakeAuth) SignInWithContact(context.Context, signin.Credentials, []string) (*authz.User, *dataverse.Contact, error) {
	return nil, nil, signin.ErrInvalidCredentials
}
func (f *fakeAuth) UserByID(ctx context.Context, id string) (*authz.User, error) {
	return f.userByID(ctx, id)
}
func (f *fakeAuth) ListUsers(context.Context, authz.UserFilter) ([]*authz.User, error) {
	return nil, nil
}
func (f *fakeAuth) LookupUser(ctx context.Context, who string) (*authz.User, error) {
	return f.userByID(ctx, who)
}
func (f *fakeAuth) EndSession(context.Context, string, string, string, time.Time) error { return nil }
func (f *fakeAuth) SessionRevoked(context.Context, string) (bool, error)                { return false, nil }

// testTimings sets the values the configuration supplies in production
// (its defaults) where opts leaves them zero.
func testTimings(o Options) Options {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.AuthPrefix == "" {
		o.AuthPrefix = "/.auth"
	}
	if o.SiteName == "" {
		o.SiteName = "crmgate"
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 256
	}
	set(&o.TokenTTL, 5*time.Minute)
	set(&o.IdleTimeout, time.Hour)
	set(&o.AbsoluteTimeout, 12*time.Hour)
	set(&o.RememberTimeout, 30*24*time.Hour)
	set(&o.StampCheckInterval, 2*time.Minute)
	set(&o.ContactRevalidateInterval, 5*time.Minute)
	set(&o.ContactGrace, 15*time.Minute)
	set(&o.DialTimeout, 5*time.Second)
	return o
}

// testServer builds a Server over policyYAML (with %[1]s … placeholders for
// the upstream URLs) and returns it with a valid session cookie for user u1.
func testServer(t *testing.T, policyYAML string, upstreamURLs ...any) (*Server, *http.Cookie) {
	t.Helper()
	pol, err := policies.Parse("t.yaml", fmt.Appendf(nil, policyYAML, upstreamURLs...))
	if err != nil {
		t.Fatal(err)
	}
	rend, err := pages.New(pages.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Unix(1_800_000_000, 0)
	opts := Options{
		PublicURL: "https://gw.example.com", Policy: pol, Pages: rend, CookieName: "s",
		CookieKeys: [][]byte{make([]byte, 32)}, SigningKeys: []*ecdsa.PrivateKey{key},
		Now: func() time.Time { return now },
	}
	auth := &fakeAuth{userByID: func(context.Context, string) (*authz.User, error) {
		return &authz.User{ID: "u1", Username: "u", Status: authz.StatusActive, SecurityStamp: "st"}, nil
	}}
	opts.SignIn, opts.Sessions, opts.Users = auth, auth, auth
	srv, err := New(testTimings(opts))
	if err != nil {
		t.Fatal(err)
	}
	v, err := srv.codec.encode(&Session{ID: "sid", UserID: "u1", Stamp: "st", AuthMethod: "password",
		AuthTime: now.Unix(), LastSeen: now.Unix(), CheckedAt: now.Unix(), Username: "u"})
	if err != nil {
		t.Fatal(err)
	}
	return srv, &http.Cookie{Name: "s", Value: v}
}

type failingSigner struct{}

func (failingSigner) Sign([]byte) (*jose.JSONWebSignature, error) {
	return nil, errors.New("hsm unavailable")
}
func (failingSigner) Options() jose.SignerOptions { return jose.SignerOptions{} }

func TestSigningFailureIsNeverProxied(t *testing.T) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	srv, cookie := testServer(t, "upstreams:\n  - name: a\n    url: %s\nroutes:\n  - name: all\n    paths: [\"/**\"]\n    access: public\n", up.URL)
	srv.signer.jose = failingSigner{}

	// Signed in: the identity cannot be signed, so the request stops here.
	req := httptest.NewRequest("GET", "https://gw.example.com/page", nil)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || hits.Load() != 0 {
		t.Fatalf("status %d, upstream hits %d", rec.Code, hits.Load())
	}
	if strings.Contains(rec.Body.String(), "hsm unavailable") {
		t.Fatal("internal error text shown to the user")
	}
	// Anonymous on a public route needs no signature and is proxied.
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "https://gw.example.com/page", nil))
	if rec.Code != 200 || hits.Load() != 1 {
		t.Fatalf("anonymous: status %d, hits %d", rec.Code, hits.Load())
	}
}

func TestStoreFailureDuringStampCheckFailsClosed(t *testing.T) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	srv, cookie := testServer(t, "upstreams:\n  - name: a\n    url: %s\nroutes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\n", up.URL)
	srv.users = &fakeAuth{userByID: func(context.Context, string) (*authz.User, error) { return nil, errors.New("database is locked") }}
	now := time.Unix(1_800_000_000, 0).Add(3 * time.Minute) // past the stamp-check interval
	srv.now = func() time.Time { return now }
	req := httptest.NewRequest("GET", "https://gw.example.com/page", nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || hits.Load() != 0 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d hits %d", rec.Code, hits.Load())
	}
}

func TestUpstreamChosenByHostAndPrefix(t *testing.T) {
	names := []string{}
	mk := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name+" "+r.URL.Path+" aud-header="+fmt.Sprint(r.Header.Get("X-Current-User") != ""))
		}))
	}
	main, api, shop := mk("main"), mk("api"), mk("shop")
	defer main.Close()
	defer api.Close()
	defer shop.Close()
	_ = names
	srv, cookie := testServer(t, `upstreams:
  - name: main
    url: %s
  - name: api
    url: %s/v2
    path_prefix: /api
  - name: shop
    url: %s
    hosts: [shop.example.com]
routes:
  - name: all
    paths: ["/**"]
    access: public
`, main.URL, api.URL, shop.URL)
	tests := []struct{ host, path, want string }{
		{"gw.example.com", "/", "main /"},
		{"gw.example.com", "/apix", "main /apix"},
		{"gw.example.com", "/api/users", "api /v2/api/users"},
		{"shop.example.com", "/cart", "shop /cart"},
		{"SHOP.example.com.", "/cart", "shop /cart"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "https://"+tt.host+tt.path, nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if got := rec.Body.String(); !strings.HasPrefix(got, tt.want+" ") {
			t.Errorf("%s%s → %q, want %q", tt.host, tt.path, got, tt.want)
		}
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		lines []string
		want  string
	}{
		{[]string{"s=abc"}, "abc"},
		{[]string{"a=1; s=abc; b=2"}, "abc"},
		{[]string{"a=1;s=abc"}, "abc"},
		{[]string{"sx=no; s=yes"}, "yes"},
		{[]string{"xs=no"}, ""},
		{[]string{`s="quoted"`}, "quoted"},
		{[]string{"s=first; s=second"}, "first"},
		{[]string{"a=1", "s=other-line"}, "other-line"},
		{[]string{"s"}, ""},
		{[]string{" s=spaced \t"}, "spaced"},
		{[]string{";;; ; s=x"}, "x"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := cookieValue(http.Header{"Cookie": tt.lines}, "s"); got != tt.want {
			t.Errorf("cookieValue(%q) = %q, want %q", tt.lines, got, tt.want)
		}
	}
}

// TestReplayedCookieChecksStoreOncePerInterval: a client that ignores
// Set-Cookie and keeps sending one stale cookie (a script, an API client)
// costs one store lookup per stamp-check interval, not one per request.
func TestReplayedCookieChecksStoreOncePerInterval(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	srv, cookie := testServer(t, "upstreams:\n  - name: a\n    url: %s\nroutes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\n", up.URL)
	var lookups atomic.Int32
	srv.users = &fakeAuth{userByID: func(context.Context, string) (*authz.User, error) {
		lookups.Add(1)
		return &authz.User{ID: "u1", Username: "u", Status: authz.StatusActive, SecurityStamp: "st"}, nil
	}}
	now := time.Unix(1_800_000_000, 0).Add(3 * time.Minute) // the cookie's check is 3 minutes old
	srv.now = func() time.Time { return now }
	srv.signer.now = srv.now
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "https://gw.example.com/x", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	first := get()
	if first.Code != 200 || lookups.Load() != 1 || first.Header().Get("Set-Cookie") == "" {
		t.Fatalf("first: %d, lookups %d, Set-Cookie %q", first.Code, lookups.Load(), first.Header().Get("Set-Cookie"))
	}
	for i := 0; i < 20; i++ {
		if rec := get(); rec.Code != 200 || rec.Header().Get("Set-Cookie") != "" {
			t.Fatalf("replay %d: %d, Set-Cookie %q", i, rec.Code, rec.Header().Get("Set-Cookie"))
		}
	}
	if lookups.Load() != 1 {
		t.Fatalf("store asked %d times for 21 requests within one interval", lookups.Load())
	}
	now = now.Add(2*time.Minute + time.Second)
	get()
	if lookups.Load() != 2 {
		t.Fatalf("after the interval: %d lookups, want 2", lookups.Load())
	}
}

func TestCookiesAreSecureBehindHTTPS(t *testing.T) {
	srv, _ := testServer(t, "upstreams:\n  - name: a\n    url: %s\nroutes:\n  - name: all\n    paths: [\"/**\"]\n    access: public\n", "http://127.0.0.1:1")
	c := srv.sessionCookie("v", &Session{AuthTime: time.Now().Unix()})
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Domain != "" || c.Path != "/" {
		t.Fatalf("session cookie: %+v", c)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "https://gw.example.com/.auth/signin", nil))
	for _, sc := range rec.Result().Cookies() {
		if !sc.Secure || !sc.HttpOnly {
			t.Errorf("cookie %s lacks Secure or HttpOnly", sc.Name)
		}
	}
	if len(rec.Result().Cookies()) == 0 {
		t.Fatal("sign-in page set no CSRF cookie")
	}
}
