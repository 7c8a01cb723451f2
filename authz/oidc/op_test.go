package oidc

// A real OpenID Provider for the tests: zitadel/oidc's op package over its
// example in-memory storage, served by httptest in the test process. The
// storage is wrapped to rotate its signing key, to put the userinfo claims
// in the ID token (as Entra ID and Google do) with a "groups" claim, and to
// answer the login step at once for the user the test chose (the browser's
// part of the code flow is driven by following the redirects).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

const (
	clientID     = "crmgate"
	clientSecret = "s3cret-of-the-client"
	otherClient  = "other-app"
	callbackURL  = "https://gate.example/.auth/oidc/test/callback"
)

type key struct {
	id  string
	alg jose.SignatureAlgorithm
	key any // private key
}

func (k *key) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *key) Key() any                                    { return k.key }
func (k *key) ID() string                                  { return k.id }

type pubKey struct{ k *key }

func (p pubKey) ID() string                         { return p.k.id }
func (p pubKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p pubKey) Use() string                        { return "sig" }
func (p pubKey) Key() any {
	switch k := p.k.key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	}
	panic("unknown key type")
}

// users of the test OP.
type users map[string]*storage.User

func (u users) GetUserByID(id string) *storage.User {
	for _, x := range u {
		if x.ID == id {
			return x
		}
	}
	return nil
}
func (u users) GetUserByUsername(name string) *storage.User { return u[name] }
func (u users) ExampleClientID() string                     { return "service" }

// opStorage is the example storage with a rotating key set.
type opStorage struct {
	*storage.Storage
	mu      sync.Mutex
	signing *key
	keys    []*key // published in the JWKS
	made    int    // keys made, for their ids
	groups  []string
}

func (s *opStorage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signing, nil
}

func (s *opStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []jose.SignatureAlgorithm{s.signing.alg}, nil
}

func (s *opStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []op.Key
	for _, k := range s.keys {
		out = append(out, pubKey{k})
	}
	return out, nil
}

// claimsClient puts the userinfo claims in the ID token.
type claimsClient struct{ op.Client }

func (claimsClient) IDTokenUserinfoClaimsAssertion() bool { return true }

func (s *opStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return claimsClient{c}, nil
}

func (s *opStorage) SetUserinfoFromRequest(ctx context.Context, ui *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groups)
	return nil
}

// rotate makes a new signing key (ES256 after RS256, to change the
// algorithm too); keepOld keeps the old one in the JWKS.
func (s *opStorage) rotate(t testing.TB, keepOld bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.made++
	k := &key{id: fmt.Sprintf("key-%d", s.made), alg: jose.ES256, key: ec}
	if keepOld {
		s.keys = append(s.keys, k)
	} else {
		s.keys = []*key{k}
	}
	s.signing = k
}

type testOP struct {
	*httptest.Server
	store    *opStorage
	user     atomic.Value // username to sign in
	deny     atomic.Bool  // the login step answers access_denied
	jwksHits atomic.Int64
}

var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newTestOP(t testing.TB) *testOP {
	t.Helper()
	o := &testOP{}
	o.user.Store("alice")
	var handler http.Handler
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(o.Close)
	k := &key{id: "key-0", alg: jose.RS256, key: rsaKey()}
	base := storage.NewStorageWithClients(users{
		"alice": {ID: "sub-alice", Username: "alice", Password: "pw", FirstName: "Alice", LastName: "Liddell",
			Email: "alice@example.com", EmailVerified: true, PreferredLanguage: language.English},
		"bob": {ID: "sub-bob", Username: "bob", Password: "pw", FirstName: "Bob", LastName: "Unverified",
			Email: "bob@example.com", EmailVerified: false, PreferredLanguage: language.English},
		"eve": {ID: "sub-eve", Username: "eve", Password: "pw", FirstName: "Eve", LastName: "Elsewhere",
			Email: "eve@elsewhere.test", EmailVerified: true, PreferredLanguage: language.English},
	}, map[string]*storage.Client{
		clientID:    storage.WebClient(clientID, clientSecret, callbackURL),
		otherClient: storage.WebClient(otherClient, clientSecret, callbackURL),
	})
	o.store = &opStorage{Storage: base, signing: k, keys: []*key{k}, groups: []string{"staff", "crm-admins"}}
	prov, err := op.NewProvider(&op.Config{
		CryptoKey:      [32]byte{1, 2, 3},
		CodeMethodS256: true,
	}, o.store, op.StaticIssuer(o.URL), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	intercept := op.NewIssuerInterceptor(prov.IssuerFromRequest)
	mux := http.NewServeMux()
	mux.Handle("/login/username", intercept.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("authRequestID")
		if o.deny.Load() {
			req, err := o.store.AuthRequestByID(r.Context(), id)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			op.AuthRequestError(w, r, req, zoidc.ErrAccessDenied().WithDescription("the user declined"), prov)
			return
		}
		if err := o.store.CheckUsernamePassword(o.user.Load().(string), "pw", id); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, op.AuthCallbackURL(prov)(r.Context(), id), http.StatusFound)
	}))
	mux.Handle("/", prov)
	handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == prov.KeysEndpoint().Relative() {
			o.jwksHits.Add(1)
		}
		mux.ServeHTTP(w, r)
	})
	return o
}

// authorize plays the browser: it follows the OP's redirects from authURL
// until the OP sends it to the callback, and returns the callback's query.
func authorize(t testing.TB, authURL string) url.Values {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := authURL
	for range 10 {
		if strings.HasPrefix(next, callbackURL) {
			u, err := url.Parse(next)
			if err != nil {
				t.Fatal(err)
			}
			return u.Query()
		}
		resp, err := c.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("GET %s: %s: %s", next, resp.Status, body)
		}
		loc, err := resp.Location()
		if err != nil {
			t.Fatal(err)
		}
		next = loc.String()
	}
	t.Fatal("too many redirects")
	return nil
}

// clock is a settable clock that starts at the real time (the OP signs
// with the real time).
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

func newProvider(t testing.TB, o *testOP, mod func(*Config)) (*Provider, *clock) {
	t.Helper()
	c := &clock{}
	cfg := Config{
		Name: "test", Issuer: o.URL, ClientID: clientID, ClientSecret: clientSecret,
		RedirectURL: callbackURL, Now: c.Now, HTTPClient: &http.Client{Timeout: 10 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v (%T), want %v", err, err, target)
	}
}
