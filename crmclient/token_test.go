package crmclient

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testTenant   = "contoso.onmicrosoft.com"
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "s3cr&t+=/ value"
)

// fakeClock is an injected clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tokenEndpoint is a small Entra ID token endpoint: it serves POST
// /{tenant}/oauth2/v2.0/token, checks the form with check (when set), and
// answers the success or error JSON documented at
// https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow.
type tokenEndpoint struct {
	mu        sync.Mutex
	requests  atomic.Int64
	forms     []url.Values
	check     func(r *http.Request, form url.Values) (status int, errCode, desc string)
	expiresIn int
	gate      chan struct{} // when set, each request waits for it to close
}

func (e *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := e.requests.Add(1)
	if e.gate != nil {
		<-e.gate
	}
	if r.Method != http.MethodPost || r.URL.Path != "/"+testTenant+"/oauth2/v2.0/token" {
		http.Error(w, "wrong endpoint "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		http.Error(w, "content type "+ct, http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.forms = append(e.forms, r.PostForm)
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != testClientID {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_request","error_description":"AADSTS900144: bad grant or client","error_codes":[900144]}`)
		return
	}
	if e.check != nil {
		if status, code, desc := e.check(r, r.PostForm); status != 0 {
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"error": code, "error_description": desc, "error_codes": []int{1}, "trace_id": "t", "correlation_id": "c"})
			return
		}
	}
	exp := e.expiresIn
	if exp == 0 {
		exp = 3599
	}
	json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": exp, "ext_expires_in": exp, "access_token": fmt.Sprintf("token-%d", n)})
}

func (e *tokenEndpoint) lastForm() url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.forms) == 0 {
		return nil
	}
	return e.forms[len(e.forms)-1]
}

func newTokenSource(t *testing.T, srv *httptest.Server, cred credential, clock *fakeClock) *tokenSource {
	t.Helper()
	return &tokenSource{
		endpoint:      srv.URL + "/" + testTenant + "/oauth2/v2.0/token",
		clientID:      testClientID,
		scope:         "https://org.crm.dynamics.com/.default",
		cred:          cred,
		httpClient:    srv.Client(),
		now:           clock.Now,
		refreshBefore: 5 * time.Minute,
		timeout:       10 * time.Second,
		logger:        slog.New(slog.DiscardHandler),
	}
}

func TestTokenCachingAndRefresh(t *testing.T) {
	ep := &tokenEndpoint{expiresIn: 3600}
	srv := httptest.NewServer(ep)
	defer srv.Close()
	clock := newFakeClock()
	ts := newTokenSource(t, srv, secretCredential{testSecret}, clock)
	ctx := context.Background()

	steps := []struct {
		advance time.Duration
		want    string
	}{
		{0, "token-1"},
		{0, "token-1"},                // cached
		{54 * time.Minute, "token-1"}, // 6 minutes left: still cached
		{59 * time.Second, "token-1"}, // 5m01s left
		{time.Second, "token-2"},      // 5 minutes left: refreshed early
		{30 * time.Minute, "token-2"},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		got, err := ts.Token(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != st.want {
			t.Fatalf("step %d: token %q, want %q", i, got, st.want)
		}
	}
	if n := ep.requests.Load(); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}
	ts.invalidate("token-2")
	if got, _ := ts.Token(ctx); got != "token-3" {
		t.Fatalf("after invalidate: %q", got)
	}
}

func TestTokenShortLifetimeRefreshesAtHalfLife(t *testing.T) {
	ep := &tokenEndpoint{expiresIn: 120} // shorter than the 5-minute margin
	srv := httptest.NewServer(ep)
	defer srv.Close()
	clock := newFakeClock()
	ts := newTokenSource(t, srv, secretCredential{testSecret}, clock)
	for _, st := range []struct {
		advance time.Duration
		want    string
	}{{0, "token-1"}, {59 * time.Second, "token-1"}, {time.Second, "token-2"}} {
		clock.Advance(st.advance)
		if got, err := ts.Token(context.Background()); err != nil || got != st.want {
			t.Fatalf("got %q, %v; want %q", got, err, st.want)
		}
	}
}

func TestTokenConcurrentCallersShareOneRequest(t *testing.T) {
	ep := &tokenEndpoint{gate: make(chan struct{})}
	srv := httptest.NewServer(ep)
	defer srv.Close()
	ts := newTokenSource(t, srv, secretCredential{testSecret}, newFakeClock())

	const callers = 50
	var started, done sync.WaitGroup
	results := make(chan string, callers)
	for range callers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			tok, err := ts.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			results <- tok
		}()
	}
	started.Wait()
	// Hold the one request until it has arrived; every caller is then
	// either waiting on it or about to find the cache filled.
	for ep.requests.Load() == 0 {
		runtime.Gosched()
	}
	close(ep.gate)
	done.Wait()
	close(results)
	for tok := range results {
		if tok != "token-1" {
			t.Fatalf("caller got %q", tok)
		}
	}
	if n := ep.requests.Load(); n != 1 {
		t.Fatalf("%d token requests for %d callers, want 1", n, callers)
	}
}

func TestTokenCallerContextEnds(t *testing.T) {
	ep := &tokenEndpoint{gate: make(chan struct{})}
	srv := httptest.NewServer(ep)
	defer srv.Close()
	defer close(ep.gate)
	ts := newTokenSource(t, srv, secretCredential{testSecret}, newFakeClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestTokenSecretForm(t *testing.T) {
	ep := &tokenEndpoint{}
	srv := httptest.NewServer(ep)
	defer srv.Close()
	ts := newTokenSource(t, srv, secretCredential{testSecret}, newFakeClock())
	if _, err := ts.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := ep.lastForm()
	want := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {testClientID},
		"scope":         {"https://org.crm.dynamics.com/.default"},
		"client_secret": {testSecret},
	}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Fatalf("form = %v, want %v", f, want)
	}
}

// writeCertificate writes a self-signed certificate and its RSA key as PEM
// (key first, as az and openssl often do) and returns the path, the key and
// the certificate's DER.
func writeCertificate(t *testing.T, keyType string) (string, *rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "crmgate test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var keyBlock *pem.Block
	if keyType == "PRIVATE KEY" {
		b, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		keyBlock = &pem.Block{Type: keyType, Bytes: b}
	} else {
		keyBlock = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
	}
	data := append(pem.EncodeToMemory(keyBlock), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	path := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key, der
}

func TestTokenCertificateAssertion(t *testing.T) {
	for _, keyType := range []string{"PRIVATE KEY", "RSA PRIVATE KEY"} {
		t.Run(keyType, func(t *testing.T) {
			path, key, der := writeCertificate(t, keyType)
			sum := sha256.Sum256(der)
			wantThumb := base64.RawURLEncoding.EncodeToString(sum[:])
			clock := newFakeClock()
			var endpoint string
			ep := &tokenEndpoint{check: func(r *http.Request, f url.Values) (int, string, string) {
				if f.Get("client_secret") != "" {
					return 400, "invalid_request", "secret sent with an assertion"
				}
				if f.Get("client_assertion_type") != clientAssertionType {
					return 400, "invalid_request", "assertion type " + f.Get("client_assertion_type")
				}
				tok, err := jwt.ParseSigned(f.Get("client_assertion"), []jose.SignatureAlgorithm{jose.PS256})
				if err != nil {
					return 400, "invalid_client", "AADSTS50027: " + err.Error()
				}
				h := tok.Headers[0]
				if h.ExtraHeaders["typ"] != "JWT" || h.ExtraHeaders["x5t#S256"] != wantThumb {
					return 400, "invalid_client", fmt.Sprintf("AADSTS700027: headers %v", h.ExtraHeaders)
				}
				var c jwt.Claims
				if err := tok.Claims(&key.PublicKey, &c); err != nil {
					return 401, "invalid_client", "AADSTS700027: signature: " + err.Error()
				}
				err = c.ValidateWithLeeway(jwt.Expected{
					Issuer: testClientID, Subject: testClientID,
					AnyAudience: jwt.Audience{endpoint}, Time: clock.Now(),
				}, 0)
				if err != nil {
					return 401, "invalid_client", "AADSTS700024: " + err.Error()
				}
				if _, err := ParseGUID(c.ID); err != nil {
					return 400, "invalid_client", "jti not a GUID"
				}
				if c.Expiry.Time().Sub(c.NotBefore.Time()) != 10*time.Minute || !c.IssuedAt.Time().Equal(clock.Now()) {
					return 400, "invalid_client", "lifetime"
				}
				return 0, "", ""
			}}
			srv := httptest.NewServer(ep)
			defer srv.Close()
			endpoint = srv.URL + "/" + testTenant + "/oauth2/v2.0/token"
			cred, err := loadCertificateCredential(path, testClientID, endpoint)
			if err != nil {
				t.Fatal(err)
			}
			ts := newTokenSource(t, srv, cred, clock)
			if _, err := ts.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLoadCertificateCredentialErrors(t *testing.T) {
	good, _, _ := writeCertificate(t, "PRIVATE KEY")
	goodData, _ := os.ReadFile(good)
	other, _, _ := writeCertificate(t, "RSA PRIVATE KEY")
	otherData, _ := os.ReadFile(other)
	// The key of one file with the certificate of another.
	keyOnly := func(b []byte) []byte { blk, _ := pem.Decode(b); return pem.EncodeToMemory(blk) }
	certOnly := func(b []byte) []byte { _, rest := pem.Decode(b); return rest }
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "want a CERTIFICATE"},
		{"key only", string(keyOnly(goodData)), "want a CERTIFICATE"},
		{"cert only", string(certOnly(goodData)), "want a CERTIFICATE"},
		{"mismatch", string(keyOnly(goodData)) + string(certOnly(otherData)), "does not match"},
		{"encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			os.WriteFile(p, []byte(tt.content), 0o600)
			_, err := loadCertificateCredential(p, testClientID, "x")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := loadCertificateCredential(filepath.Join(dir, "missing"), testClientID, "x"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestTokenFederatedReadsFileEachTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	os.WriteFile(path, []byte("federated-1\n"), 0o600)
	ep := &tokenEndpoint{expiresIn: 600}
	srv := httptest.NewServer(ep)
	defer srv.Close()
	clock := newFakeClock()
	ts := newTokenSource(t, srv, federatedCredential{path}, clock)
	for i, want := range []string{"federated-1", "federated-2"} {
		if i == 1 {
			os.WriteFile(path, []byte("federated-2"), 0o600) // rotated by the platform
			clock.Advance(10 * time.Minute)
		}
		if _, err := ts.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
		f := ep.lastForm()
		if f.Get("client_assertion") != want || f.Get("client_assertion_type") != clientAssertionType || f.Has("client_secret") {
			t.Fatalf("form = %v", f)
		}
	}
	os.WriteFile(path, []byte(" \n"), 0o600)
	clock.Advance(time.Hour)
	if _, err := ts.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{"invalid_client", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`)
		}, func(t *testing.T, err error) {
			var te *TokenError
			if !errors.As(err, &te) || te.Status != 401 || te.Code != "invalid_client" || !strings.HasPrefix(te.Description, "AADSTS7000215") {
				t.Fatalf("err = %#v", err)
			}
		}},
		{"non-json error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html>", http.StatusBadGateway)
		}, func(t *testing.T, err error) {
			var te *TokenError
			if !errors.As(err, &te) || te.Status != 502 || te.Code != "" || te.Description == "" {
				t.Fatalf("err = %#v", err)
			}
		}},
		{"no access token", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599}`)
		}, func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "access_token") {
				t.Fatalf("err = %v", err)
			}
		}},
		{"bad expires_in", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":"soon","access_token":"x"}`)
		}, func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "expires_in") {
				t.Fatalf("err = %v", err)
			}
		}},
		{"string expires_in accepted", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":"3599","access_token":"x"}`)
		}, func(t *testing.T, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			ts := newTokenSource(t, srv, secretCredential{testSecret}, newFakeClock())
			_, err := ts.Token(context.Background())
			tt.check(t, err)
		})
	}
}

func TestTokenRefreshFailureKeepsValidToken(t *testing.T) {
	var fail atomic.Bool
	ep := &tokenEndpoint{expiresIn: 3600, check: func(*http.Request, url.Values) (int, string, string) {
		if fail.Load() {
			return 500, "temporarily_unavailable", "AADSTS90033"
		}
		return 0, "", ""
	}}
	srv := httptest.NewServer(ep)
	defer srv.Close()
	clock := newFakeClock()
	ts := newTokenSource(t, srv, secretCredential{testSecret}, clock)
	if _, err := ts.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	clock.Advance(57 * time.Minute) // in the refresh window, not expired
	if got, err := ts.Token(context.Background()); err != nil || got != "token-1" {
		t.Fatalf("got %q, %v; want the cached token", got, err)
	}
	clock.Advance(3 * time.Minute) // expired
	var te *TokenError
	if _, err := ts.Token(context.Background()); !errors.As(err, &te) || te.Status != 500 {
		t.Fatalf("err = %v", err)
	}
}
