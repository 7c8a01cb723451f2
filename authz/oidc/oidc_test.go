package oidc

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// TestMain silences the test OP, which logs through slog's default logger.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// signIn runs Start, the OP's authorize step and Finish.
func signIn(t testing.TB, p *Provider) (*Identity, Flow, error) {
	t.Helper()
	authURL, flow := p.Start("/after")
	q := authorize(t, authURL)
	id, err := p.Finish(context.Background(), flow, q)
	return id, flow, err
}

// TestCodeFlow is the full code flow with PKCE and discovery against the
// OP, and what the Identity carries.
func TestCodeFlow(t *testing.T) {
	o := newTestOP(t)
	var logs bytes.Buffer
	p, _ := newProvider(t, o, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	authURL, flow := p.Start("/crm/page?x=1")
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	sum := sha256.Sum256([]byte(flow.Verifier))
	for k, want := range map[string]string{
		"client_id": clientID, "redirect_uri": callbackURL, "response_type": "code",
		"scope": "openid email profile", "state": flow.State, "nonce": flow.Nonce,
		"code_challenge_method": "S256", "code_challenge": base64.RawURLEncoding.EncodeToString(sum[:]),
	} {
		if got := q.Get(k); got != want {
			t.Errorf("auth URL %s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(authURL, o.URL+"/authorize?") {
		t.Errorf("auth URL %s is not the discovered endpoint", authURL)
	}
	for _, s := range []string{flow.State, flow.Nonce} {
		if b, err := base64.RawURLEncoding.DecodeString(s); err != nil || len(b) != 32 {
			t.Errorf("state/nonce %q is not 32 random bytes in base64url", s)
		}
	}
	if flow.Provider != "test" || flow.RedirectURL != "/crm/page?x=1" || flow.IssuedAt.IsZero() {
		t.Errorf("flow = %+v", flow)
	}
	// The Flow survives its JSON form (the caller's cookie).
	b, err := json.Marshal(flow)
	if err != nil {
		t.Fatal(err)
	}
	var back Flow
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}

	cb := authorize(t, authURL)
	if cb.Get("code") == "" || cb.Get("state") != flow.State {
		t.Fatalf("callback query %v", cb)
	}
	id, err := p.Finish(context.Background(), back, cb)
	if err != nil {
		t.Fatal(err)
	}
	if id.Issuer != o.URL || id.Subject != "sub-alice" || id.Email != "alice@example.com" || !id.EmailVerified ||
		id.GivenName != "Alice" || id.FamilyName != "Liddell" || id.Name != "Alice Liddell" {
		t.Errorf("identity = %+v", id)
	}
	if string(id.Groups) != `["staff","crm-admins"]` || id.Roles != nil {
		t.Errorf("groups %s roles %s", id.Groups, id.Roles)
	}
	if id.Claims["sub"] != "sub-alice" || id.IDToken == "" || strings.Count(id.IDToken, ".") != 2 {
		t.Errorf("claims %v token %q", id.Claims, id.IDToken)
	}
	if time.Until(id.Expiry) < 50*time.Minute {
		t.Errorf("expiry %v", id.Expiry)
	}
	if strings.Contains(logs.String(), id.IDToken) || strings.Contains(logs.String(), clientSecret) ||
		strings.Contains(logs.String(), cb.Get("code")) {
		t.Error("a token, the code or the secret was logged")
	}

	// The code is single use: the OP refuses it a second time.
	if _, err := p.Finish(context.Background(), back, cb); !errors.Is(err, ErrExchange) {
		t.Fatalf("replayed code: err = %v, want ErrExchange", err)
	}
	if strings.Contains(logs.String(), cb.Get("code")) {
		t.Error("the code was logged")
	}
}

// TestPKCERequired: a callback finished with another code verifier is
// refused by the OP at the token endpoint.
func TestPKCERequired(t *testing.T) {
	o := newTestOP(t)
	p, _ := newProvider(t, o, nil)
	authURL, flow := p.Start("/")
	q := authorize(t, authURL)
	_, other := p.Start("/")
	flow.Verifier = other.Verifier
	_, err := p.Finish(context.Background(), flow, q)
	wantErr(t, err, ErrExchange)
}

// TestNonce: an ID token is bound to its flow's nonce.
func TestNonce(t *testing.T) {
	o := newTestOP(t)
	var logs bytes.Buffer
	p, _ := newProvider(t, o, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })

	// Mismatch: the callback of a flow, finished with a flow of the same
	// state but another nonce.
	authURL, flow := p.Start("/")
	q := authorize(t, authURL)
	_, other := p.Start("/")
	flow.Nonce = other.Nonce
	_, err := p.Finish(context.Background(), flow, q)
	wantErr(t, err, ErrNonce)

	// Replay: a good ID token offered again for another sign-in.
	id, _, err := signIn(t, p)
	if err != nil {
		t.Fatal(err)
	}
	_, fresh := p.Start("/")
	_, err = p.verify(context.Background(), id.IDToken, fresh.Nonce)
	wantErr(t, err, ErrNonce)
	_, err = p.verify(context.Background(), id.IDToken, "")
	wantErr(t, err, ErrNonce)
	if n := strings.Count(logs.String(), `"msg":"oidc nonce mismatch","provider":"test","nonce_present":true`); n != 3 {
		t.Errorf("%d nonce log lines in\n%s", n, logs.String())
	}
}

// TestState: a callback whose state is missing or differs, and a flow of
// provider A finished at provider B (state mix-up), are refused.
func TestState(t *testing.T) {
	opA, opB := newTestOP(t), newTestOP(t)
	a, _ := newProvider(t, opA, func(c *Config) { c.Name = "a" })
	b, _ := newProvider(t, opB, func(c *Config) { c.Name = "b" })

	authURL, flow := a.Start("/")
	q := authorize(t, authURL)
	for _, bad := range []string{"", flow.State[:len(flow.State)-1], flow.State + "x"} {
		qq := url.Values{"code": {q.Get("code")}, "state": {bad}}
		_, err := a.Finish(context.Background(), flow, qq)
		wantErr(t, err, ErrState)
	}
	// A's flow and callback finished at B.
	_, err := b.Finish(context.Background(), flow, q)
	wantErr(t, err, ErrState)
	// B's flow with A's callback (an attacker's code injected at B).
	_, flowB := b.Start("/")
	flowB.State = flow.State
	_, err = b.Finish(context.Background(), flowB, q)
	wantErr(t, err, ErrExchange)
	// The callback names another issuer (RFC 9207), or names it twice.
	for _, iss := range [][]string{{opB.URL}, {opA.URL, opA.URL}, {""}} {
		qq := url.Values{"code": q["code"], "state": q["state"], "iss": iss}
		_, err = a.Finish(context.Background(), flow, qq)
		wantErr(t, err, ErrState)
	}
	// A's callback still works at A after all that (with its own iss).
	q.Set("iss", opA.URL)
	if _, err := a.Finish(context.Background(), flow, q); err != nil {
		t.Fatal(err)
	}
	// The zero flow.
	_, err = a.Finish(context.Background(), Flow{}, url.Values{})
	wantErr(t, err, ErrState)
	_, err = a.Finish(context.Background(), Flow{Provider: "a"}, url.Values{})
	wantErr(t, err, ErrExpiredFlow)
	_, err = a.Finish(context.Background(), Flow{Provider: "a", IssuedAt: time.Now()}, url.Values{"state": {""}})
	wantErr(t, err, ErrState)
}

// TestFlowAge: a flow older than MaxFlowAge is refused before any request
// to the OP; one just under it finishes.
func TestFlowAge(t *testing.T) {
	o := newTestOP(t)
	p, clk := newProvider(t, o, func(c *Config) { c.MaxFlowAge = 5 * time.Minute })
	authURL, flow := p.Start("/")
	q := authorize(t, authURL)
	clk.Advance(5*time.Minute + time.Second)
	_, err := p.Finish(context.Background(), flow, q)
	wantErr(t, err, ErrExpiredFlow)
	clk.Advance(-2 * time.Second)
	if _, err := p.Finish(context.Background(), flow, q); err != nil {
		t.Fatalf("flow within its age: %v", err)
	}
	// A flow from the future (beyond the skew) is refused too.
	flow.IssuedAt = clk.Now().Add(2 * time.Minute)
	_, err = p.Finish(context.Background(), flow, q)
	wantErr(t, err, ErrExpiredFlow)
}

// TestAudience: an ID token issued to another client of the same OP.
func TestAudience(t *testing.T) {
	o := newTestOP(t)
	p, _ := newProvider(t, o, nil)
	other, _ := newProvider(t, o, func(c *Config) { c.ClientID = otherClient })
	id, flow, err := signIn(t, other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.verify(context.Background(), id.IDToken, flow.Nonce)
	wantVerify(t, err, "expected audience")
}

// TestIssuer: an ID token of another OP (the same client id registered
// there), and a discovery document naming another issuer.
func TestIssuer(t *testing.T) {
	o, o2 := newTestOP(t), newTestOP(t)
	p, _ := newProvider(t, o, nil)
	p2, _ := newProvider(t, o2, nil)
	id, flow, err := signIn(t, p2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.verify(context.Background(), id.IDToken, flow.Nonce)
	wantVerify(t, err, "issued by a different provider")

	// Discovery of o2 under o's issuer name: refused at New.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(o2.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	}))
	defer front.Close()
	_, err = New(context.Background(), Config{Name: "x", Issuer: front.URL, ClientID: clientID, RedirectURL: callbackURL})
	var mismatch *gooidc.IssuerMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("err = %v, want an issuer mismatch", err)
	}
}

// TestExpiry: the ID token's exp (1h at this OP) with the clock skew
// allowance, and an iat in the future.
func TestExpiry(t *testing.T) {
	o := newTestOP(t)
	p, clk := newProvider(t, o, func(c *Config) { c.MaxFlowAge = 3 * time.Hour; c.ClockSkew = time.Minute })

	// Within the skew after exp: accepted.
	authURL, flow := p.Start("/")
	q := authorize(t, authURL)
	clk.Advance(time.Hour + 30*time.Second)
	if _, err := p.Finish(context.Background(), flow, q); err != nil {
		t.Fatalf("30s past exp with 1m skew: %v", err)
	}

	// Beyond it: refused.
	authURL, flow = p.Start("/")
	clk.Advance(-(time.Hour + 30*time.Second))
	q = authorize(t, authURL)
	clk.Advance(time.Hour + 90*time.Second)
	_, err := p.Finish(context.Background(), flow, q)
	var exp *gooidc.TokenExpiredError
	if !errors.As(err, &exp) || !errors.Is(err, ErrVerify) {
		t.Fatalf("err = %v, want an expired token", err)
	}
	if err.Error() != ErrVerify.Error() {
		t.Errorf("user-facing text %q carries details", err.Error())
	}

	// Not yet valid: our clock 2 minutes behind the OP's (skew 1m).
	clk.Advance(-(time.Hour + 90*time.Second) - 2*time.Minute)
	_, _, err = signIn(t, p)
	wantVerify(t, err, "issued in the future")
	// 30 seconds behind: within the skew.
	clk.Advance(90 * time.Second)
	if _, _, err := signIn(t, p); err != nil {
		t.Fatalf("30s behind: %v", err)
	}
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestAlgorithms: an unsigned token (alg none) and one signed with HS256
// (keyed by the client secret, which a client could forge) are refused
// even though every claim is right.
func TestAlgorithms(t *testing.T) {
	o := newTestOP(t)
	p, _ := newProvider(t, o, nil)
	id, flow, err := signIn(t, p)
	if err != nil {
		t.Fatal(err)
	}
	// The real token's claims with another header.
	payload := strings.Split(id.IDToken, ".")[1]
	var hdr map[string]any
	h, _ := base64.RawURLEncoding.DecodeString(strings.Split(id.IDToken, ".")[0])
	if err := json.Unmarshal(h, &hdr); err != nil {
		t.Fatal(err)
	}

	for _, alg := range []string{"none", "None", "NONE"} {
		raw := b64(map[string]any{"alg": alg, "typ": "JWT"}) + "." + payload + "."
		_, err = p.verify(context.Background(), raw, flow.Nonce)
		wantVerify(t, err, "")
	}
	hs := b64(map[string]any{"alg": "HS256", "typ": "JWT", "kid": hdr["kid"]}) + "." + payload
	mac := hmac.New(sha256.New, []byte(clientSecret))
	mac.Write([]byte(hs))
	_, err = p.verify(context.Background(), hs+"."+base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), flow.Nonce)
	wantVerify(t, err, "")
	// The real token's header and payload with a broken signature.
	parts := strings.Split(id.IDToken, ".")
	sig := []byte(parts[2])
	sig[5] ^= 1
	_, err = p.verify(context.Background(), parts[0]+"."+parts[1]+"."+string(sig), flow.Nonce)
	wantVerify(t, err, "")
	// And the untouched token verifies: the refusals are the algorithm's.
	if _, err := p.verify(context.Background(), id.IDToken, flow.Nonce); err != nil {
		t.Fatal(err)
	}
}

// TestKeyRotation: the OP moves to a new key (and algorithm); the next
// sign-in verifies after go-oidc refetches the JWKS, and a token of the
// retired key is refused once the JWKS no longer has it.
func TestKeyRotation(t *testing.T) {
	o := newTestOP(t)
	p, _ := newProvider(t, o, nil)
	old, oldFlow, err := signIn(t, p)
	if err != nil {
		t.Fatal(err)
	}
	hits := o.jwksHits.Load()
	if hits != 1 {
		t.Fatalf("JWKS fetched %d times for the first sign-in", hits)
	}
	if _, _, err := signIn(t, p); err != nil {
		t.Fatal(err)
	}
	if o.jwksHits.Load() != hits {
		t.Fatal("the JWKS was fetched again without a rotation")
	}

	o.store.rotate(t, false)
	id, _, err := signIn(t, p)
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if o.jwksHits.Load() != hits+1 {
		t.Fatalf("JWKS fetched %d times, want %d", o.jwksHits.Load(), hits+1)
	}
	h, _ := base64.RawURLEncoding.DecodeString(strings.Split(id.IDToken, ".")[0])
	if !strings.Contains(string(h), `"ES256"`) {
		t.Fatalf("header %s: the rotation did not change the key", h)
	}
	// go-oidc replaces its cached keys just after it releases the
	// verification that asked for them (jwks.go, keysFromRemote), so the
	// retired key may still verify for a moment: refused soon after.
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err = p.verify(context.Background(), old.IDToken, oldFlow.Nonce)
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	wantVerify(t, err, "failed to verify id token signature")

	// A rotation that keeps the previous key published. The same window
	// in go-oidc: a verification that needs a fetch joins the fetch still
	// marked in flight (until that goroutine takes the lock), and gets its
	// older key set; seen under -race once in about 50 runs without this
	// pause.
	time.Sleep(50 * time.Millisecond)
	o.store.rotate(t, true)
	if _, _, err := signIn(t, p); err != nil {
		t.Fatalf("after a second rotation: %v", errors.Unwrap(err))
	}
}

// TestEmailDomains: with an allow-list, the email must be verified and of
// a listed domain; without one, anyone passes.
func TestEmailDomains(t *testing.T) {
	o := newTestOP(t)
	p, _ := newProvider(t, o, func(c *Config) { c.AllowedEmailDomains = []string{"Example.COM"} })
	open, _ := newProvider(t, o, nil)

	o.user.Store("alice")
	if _, _, err := signIn(t, p); err != nil {
		t.Fatalf("verified, allowed domain: %v", err)
	}
	o.user.Store("bob")
	_, _, err := signIn(t, p)
	wantErr(t, err, ErrUnverifiedEmail)
	id, _, err := signIn(t, open)
	if err != nil || id.EmailVerified || id.Email != "bob@example.com" {
		t.Fatalf("no allow-list: %+v %v", id, err)
	}
	o.user.Store("eve")
	_, _, err = signIn(t, p)
	wantErr(t, err, ErrDomain)

	for _, bad := range []string{"", "a@b.c", "a b", "x/y"} {
		if _, err := New(context.Background(), Config{Name: "x", Issuer: o.URL, ClientID: "c", RedirectURL: callbackURL,
			AllowedEmailDomains: []string{bad}}); err == nil {
			t.Errorf("domain %q accepted", bad)
		}
	}
}

// TestProviderError: the OP answers access_denied at the callback.
func TestProviderError(t *testing.T) {
	o := newTestOP(t)
	p, _ := newProvider(t, o, nil)
	o.deny.Store(true)
	_, _, err := signIn(t, p)
	var pe *ProviderError
	if !errors.As(err, &pe) || pe.Code != "access_denied" || pe.Description != "the user declined" {
		t.Fatalf("err = %#v", err)
	}
	if err.Error() != "oidc: sign-in was declined at the identity provider" {
		t.Errorf("text %q", err.Error())
	}
	// An error answer with a wrong state is a state error first.
	_, flow := p.Start("/")
	_, err = p.Finish(context.Background(), flow, url.Values{"error": {"access_denied"}, "state": {"forged"}})
	wantErr(t, err, ErrState)
}

// TestProviderDown: discovery against an OP that does not answer, or
// answers an error, fails New with the issuer named; bad configuration is
// refused before any request.
func TestProviderDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := New(ctx, Config{Name: "down", Issuer: deadURL, ClientID: "c", RedirectURL: callbackURL})
	if err == nil || !strings.Contains(err.Error(), "discovery at "+deadURL+" failed") {
		t.Fatalf("err = %v", err)
	}
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	defer broken.Close()
	_, err = New(ctx, Config{Name: "down", Issuer: broken.URL, ClientID: "c", RedirectURL: callbackURL})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v", err)
	}

	// The OP goes down after discovery: the exchange fails cleanly.
	o := newTestOP(t)
	p, _ := newProvider(t, o, nil)
	authURL, flow := p.Start("/")
	q := authorize(t, authURL)
	o.Close()
	_, err = p.Finish(context.Background(), flow, q)
	wantErr(t, err, ErrExchange)

	for name, cfg := range map[string]Config{
		"name":     {Name: "Bad Name", Issuer: "https://op.example", ClientID: "c", RedirectURL: callbackURL},
		"issuer":   {Name: "x", Issuer: "op.example", ClientID: "c", RedirectURL: callbackURL},
		"redirect": {Name: "x", Issuer: "https://op.example", ClientID: "c", RedirectURL: "/cb"},
		"client":   {Name: "x", Issuer: "https://op.example", RedirectURL: callbackURL},
		"skew":     {Name: "x", Issuer: "https://op.example", ClientID: "c", RedirectURL: callbackURL, ClockSkew: -1},
	} {
		if _, err := New(ctx, cfg); err == nil {
			t.Errorf("%s: bad config accepted", name)
		}
	}
}

// TestAccessTokenHash: an access token swapped in the token response (a
// man in the middle between crmgate and the token endpoint) no longer
// matches the ID token's at_hash.
func TestAccessTokenHash(t *testing.T) {
	o := newTestOP(t)
	swap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest(r.Method, o.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.HasSuffix(r.URL.Path, "/token") {
			var m map[string]any
			if json.Unmarshal(body, &m) == nil {
				if _, ok := m["access_token"]; ok {
					m["access_token"] = "swapped"
					body, _ = json.Marshal(m)
				}
			}
		}
		for k, v := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	defer swap.Close()
	p, _ := newProvider(t, o, nil)
	// Route the token endpoint through the swapper.
	p.oauth.Endpoint.TokenURL = strings.Replace(p.oauth.Endpoint.TokenURL, o.URL, swap.URL, 1)
	_, _, err := signIn(t, p)
	wantVerify(t, err, "access token hash does not match")
}

func wantVerify(t testing.TB, err error, detail string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) || !strings.Contains(ve.Err.Error(), detail) {
		t.Fatalf("err = %v, want a VerifyError with %q", err, detail)
	}
}

// sign makes an ID token signed with the OP's current key, for claims the
// OP would not issue.
func sign(t testing.TB, o *testOP, claims map[string]any) string {
	t.Helper()
	k, _ := o.store.SigningKey(context.Background())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.SignatureAlgorithm(), Key: k.Key()},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestCraftedClaims: tokens signed with the OP's own key whose claims are
// wrong in ways go-oidc does not check.
func TestCraftedClaims(t *testing.T) {
	o := newTestOP(t)
	p, _ := newProvider(t, o, nil)
	now := time.Now().Unix()
	base := func() map[string]any {
		return map[string]any{"iss": o.URL, "sub": "sub-x", "aud": []string{clientID, otherClient},
			"exp": now + 600, "iat": now, "nonce": "n1", "azp": clientID, "email_verified": "true"}
	}
	id, err := p.verify(context.Background(), sign(t, o, base()), "n1")
	if err != nil || !id.EmailVerified || id.Subject != "sub-x" {
		t.Fatalf("good crafted token: %+v %v", id, err)
	}
	c := base()
	c["azp"] = otherClient
	_, err = p.verify(context.Background(), sign(t, o, c), "n1")
	wantVerify(t, err, "issued to client")
	c = base()
	c["sub"] = ""
	_, err = p.verify(context.Background(), sign(t, o, c), "n1")
	wantVerify(t, err, "no subject")
	c = base()
	c["nbf"] = now + 3600
	_, err = p.verify(context.Background(), sign(t, o, c), "n1")
	wantVerify(t, err, "nbf")
	c = base()
	delete(c, "nonce")
	_, err = p.verify(context.Background(), sign(t, o, c), "n1")
	wantErr(t, err, ErrNonce)
	c = base()
	c["email_verified"] = "yes"
	if id, err := p.verify(context.Background(), sign(t, o, c), "n1"); err != nil || id.EmailVerified {
		t.Fatalf("email_verified \"yes\": %+v %v", id, err)
	}
}
