package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const testIssuer = "https://gate.example.test"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for the verifier.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// jwksServer is a real HTTP server publishing a key set that tests can change.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			http.Error(w, "unavailable", s.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: s.keys}); err != nil {
			t.Errorf("encode JWKS: %v", err)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, keys ...jose.JSONWebKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.keys = status, keys
}

// signingKey is a P-256 key with its kid.
type signingKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newSigningKey(t *testing.T, kid string) signingKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, priv: priv}
}

// public is the key's JWKS entry.
func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// sign returns a compact ES256 JWT of claims with the key's kid.
func (k signingKey) sign(t *testing.T, claims any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// validClaims are the claims of a token signed at now and valid for five minutes.
func validClaims(now time.Time) Claims {
	return Claims{
		Issuer:            testIssuer,
		Audience:          jwt.Audience{"https://app.example.test"},
		Subject:           "u-123",
		IssuedAt:          jwt.NewNumericDate(now),
		Expiry:            jwt.NewNumericDate(now.Add(5 * time.Minute)),
		Email:             "ana@contoso.example",
		Name:              "Ana Souza",
		PreferredUsername: "ana",
		Roles:             []string{"member", "admin"},
		AuthMethod:        "password",
		Contact: &Contact{ID: "3f1c2d7e-0000-4000-8000-000000000001", LogicalName: "contact", Name: "Ana Souza",
			Columns: map[string]any{"fullname": "Ana Souza", "creditlimit": 1500.5}},
	}
}

// b64 is base64url without padding, as in JWS.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// handmade builds a compact token with an arbitrary header, payload and signature.
func handmade(t *testing.T, header map[string]any, claims any, sign func(input string) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	return input + "." + b64(sign(input))
}

func TestVerify(t *testing.T) {
	key := newSigningKey(t, "k1")
	other := newSigningKey(t, "k1") // same kid, different key: a forgery
	srv := newJWKSServer(t, key.public())
	clk := &clock{now: t0}
	v := NewVerifier(srv.URL, testIssuer, srv.Client(), clk.Now)

	with := func(change func(c *Claims)) Claims {
		c := validClaims(t0)
		change(&c)
		return c
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	valid := key.sign(t, validClaims(t0))

	tests := []struct {
		name     string
		token    string
		audience string
		want     []error // all must match with errors.Is; nil means valid
	}{
		{"valid", valid, "https://app.example.test", nil},
		{"valid without audience check", valid, "", nil},
		{"expired within leeway", key.sign(t, with(func(c *Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(-29 * time.Second)) })), "", nil},
		{"expired", key.sign(t, with(func(c *Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(-31 * time.Second)) })), "", []error{ErrInvalidClaims, jwt.ErrExpired}},
		{"issued in the future", key.sign(t, with(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(t0.Add(time.Minute)) })), "", []error{ErrInvalidClaims, jwt.ErrIssuedInTheFuture}},
		{"not yet valid", key.sign(t, with(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(t0.Add(time.Minute)) })), "", []error{ErrInvalidClaims, jwt.ErrNotValidYet}},
		{"wrong issuer", key.sign(t, with(func(c *Claims) { c.Issuer = "https://evil.example" })), "", []error{ErrInvalidClaims, jwt.ErrInvalidIssuer}},
		{"wrong audience", valid, "https://other.example.test", []error{ErrInvalidClaims, jwt.ErrInvalidAudience}},
		{"no audience but one required", key.sign(t, with(func(c *Claims) { c.Audience = nil })), "https://app.example.test", []error{ErrInvalidClaims, jwt.ErrInvalidAudience}},
		{"no exp", key.sign(t, with(func(c *Claims) { c.Expiry = nil })), "", []error{ErrInvalidClaims, ErrMissingClaim}},
		{"no iat", key.sign(t, with(func(c *Claims) { c.IssuedAt = nil })), "", []error{ErrInvalidClaims, ErrMissingClaim}},
		{"no sub", key.sign(t, with(func(c *Claims) { c.Subject = "" })), "", []error{ErrInvalidClaims, ErrMissingClaim}},
		{"signed by another key", other.sign(t, validClaims(t0)), "", []error{ErrInvalidSignature}},
		{"tampered payload", handmade(t, map[string]any{"alg": "ES256", "kid": "k1"}, with(func(c *Claims) { c.Roles = []string{"admin"} }),
			func(string) []byte { return make([]byte, 64) }), "", []error{ErrInvalidSignature}},
		{"alg none", handmade(t, map[string]any{"alg": "none", "kid": "k1"}, validClaims(t0), func(string) []byte { return nil }), "", []error{ErrMalformedToken}},
		{"HS256 with the public key as secret", handmade(t, map[string]any{"alg": "HS256", "kid": "k1"}, validClaims(t0), func(in string) []byte {
			m := hmac.New(sha256.New, pubDER)
			m.Write([]byte(in))
			return m.Sum(nil)
		}), "", []error{ErrMalformedToken}},
		{"no kid", handmade(t, map[string]any{"alg": "ES256"}, validClaims(t0), func(string) []byte { return make([]byte, 64) }), "", []error{ErrMalformedToken}},
		{"garbage", "not.a.jwt", "", []error{ErrMalformedToken}},
		{"empty", "", "", []error{ErrNoToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tt.token, tt.audience)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "u-123" || c.Contact == nil || c.Contact.Columns["creditlimit"] != 1500.5 || !c.HasRole("admin") {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if c != nil {
				t.Errorf("claims returned with an error: %+v", c)
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Verify error = %v, want errors.Is %v", err, want)
				}
			}
		})
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("key set fetched %d times, want 1 (cached)", n)
	}
}

func TestVerifyRefetchesOnUnknownKidAtMostEvery30s(t *testing.T) {
	k1, k2, k3 := newSigningKey(t, "k1"), newSigningKey(t, "k2"), newSigningKey(t, "k3")
	srv := newJWKSServer(t, k1.public())
	clk := &clock{now: t0}
	v := NewVerifier(srv.URL, testIssuer, srv.Client(), clk.Now)
	ctx := context.Background()

	step := func(name string, k signingKey, advance time.Duration, wantErr error, wantFetches int32) {
		t.Helper()
		clk.Advance(advance)
		_, err := v.Verify(ctx, k.sign(t, validClaims(clk.Now())), "")
		if wantErr == nil && err != nil || !errors.Is(err, wantErr) {
			t.Errorf("%s: Verify error = %v, want %v", name, err, wantErr)
		}
		if got := srv.fetches.Load(); got != wantFetches {
			t.Errorf("%s: %d fetches, want %d", name, got, wantFetches)
		}
	}
	step("first use fetches", k1, 0, nil, 1)
	srv.set(http.StatusOK, k1.public(), k2.public()) // the gateway rotates in k2
	step("unknown kid within 30s of the last fetch", k2, 10*time.Second, ErrUnknownKey, 1)
	step("unknown kid after 30s refetches", k2, 21*time.Second, nil, 2)
	step("made-up kid right after is not fetched", k3, time.Second, ErrUnknownKey, 2)
	step("made-up kid again is not fetched", k3, 20*time.Second, ErrUnknownKey, 2)
	step("known kids keep working without fetching", k1, 0, nil, 2)
	step("30s later one more fetch", k3, 10*time.Second, ErrUnknownKey, 3)

	// A key removed from the set stops working once the cached set is older than 10 minutes.
	srv.set(http.StatusOK, k2.public())
	step("removed key still cached", k1, 9*time.Minute, nil, 3)
	step("removed key after max age", k1, time.Minute+time.Second, ErrUnknownKey, 4)
	step("remaining key", k2, 0, nil, 4)
}

func TestVerifyKeySetProblems(t *testing.T) {
	key := newSigningKey(t, "k1")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	encUse := key.public()
	encUse.Use = "enc"
	wrongAlg := key.public()
	wrongAlg.Algorithm = string(jose.ES384)
	private := jose.JSONWebKey{Key: key.priv, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"}

	tests := []struct {
		name   string
		status int
		keys   []jose.JSONWebKey
		want   error
	}{
		{"server error", http.StatusInternalServerError, nil, ErrKeySetUnavailable},
		{"empty set", http.StatusOK, nil, ErrUnknownKey},
		{"RSA key under the kid", http.StatusOK, []jose.JSONWebKey{{Key: &rsaKey.PublicKey, KeyID: "k1", Use: "sig"}}, ErrUnknownKey},
		{"P-384 key under the kid", http.StatusOK, []jose.JSONWebKey{{Key: &p384.PublicKey, KeyID: "k1"}}, ErrUnknownKey},
		{"encryption key", http.StatusOK, []jose.JSONWebKey{encUse}, ErrUnknownKey},
		{"key for another alg", http.StatusOK, []jose.JSONWebKey{wrongAlg}, ErrUnknownKey},
		{"private key published", http.StatusOK, []jose.JSONWebKey{private}, ErrUnknownKey},
		{"key without use and alg", http.StatusOK, []jose.JSONWebKey{{Key: &key.priv.PublicKey, KeyID: "k1"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, tt.keys...)
			srv.set(tt.status, tt.keys...)
			v := NewVerifier(srv.URL, testIssuer, srv.Client(), func() time.Time { return t0 })
			_, err := v.Verify(context.Background(), key.sign(t, validClaims(t0)), "")
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Errorf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("failed fetch is not retried within 30s", func(t *testing.T) {
		srv := newJWKSServer(t)
		srv.set(http.StatusBadGateway)
		clk := &clock{now: t0}
		v := NewVerifier(srv.URL, testIssuer, srv.Client(), clk.Now)
		for range 3 {
			if _, err := v.Verify(context.Background(), key.sign(t, validClaims(t0)), ""); !errors.Is(err, ErrKeySetUnavailable) {
				t.Errorf("Verify error = %v, want ErrKeySetUnavailable", err)
			}
		}
		if n := srv.fetches.Load(); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
		srv.set(http.StatusOK, key.public())
		clk.Advance(30 * time.Second)
		if _, err := v.Verify(context.Background(), key.sign(t, validClaims(clk.Now())), ""); err != nil {
			t.Errorf("Verify after recovery: %v", err)
		}
	})
}

func TestVerifyConcurrentUnknownKidFetchesOnce(t *testing.T) {
	key := newSigningKey(t, "k1")
	srv := newJWKSServer(t, key.public())
	v := NewVerifier(srv.URL, testIssuer, srv.Client(), func() time.Time { return t0 })
	tok := key.sign(t, validClaims(t0))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok, ""); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
	wg.Wait()
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

func TestVerifierWithoutIssuerRejectsEverything(t *testing.T) {
	key := newSigningKey(t, "k1")
	srv := newJWKSServer(t, key.public())
	v := NewVerifier(srv.URL, "", srv.Client(), func() time.Time { return t0 })
	if _, err := v.Verify(context.Background(), key.sign(t, validClaims(t0)), ""); !errors.Is(err, ErrInvalidClaims) {
		t.Errorf("Verify error = %v, want ErrInvalidClaims", err)
	}
}
