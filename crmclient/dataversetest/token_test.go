package dataversetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func signJWT(t *testing.T, key crypto.Signer, alg string, hdr, claims map[string]any) string {
	t.Helper()
	hdr["alg"], hdr["typ"] = alg, "JWT"
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	var err error
	switch alg {
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest[:])
	case "ES256":
		r, s, e := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest[:])
		err = e
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func selfSigned(t *testing.T, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crmgate"}, NotBefore: time.Unix(0, 0), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestTokenEndpoint(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := selfSigned(t, rsaKey)
	const certClient, fedClient = "cert-client", "fed-client"
	e := newEnv(t, func(o *Options) {
		o.Clients = append(o.Clients,
			Client{ID: certClient, Certificate: cert},
			Client{ID: fedClient, Federated: []FederatedCredential{{Issuer: "https://token.actions.githubusercontent.com", Subject: "repo:crmgate/crmgate:ref:refs/heads/main", Key: &ecKey.PublicKey}}},
		)
	})
	tokenURL := e.srv.URL + "/" + testTenant + "/oauth2/v2.0/token"
	now := e.clock.Now().Unix()
	s256 := sha256.Sum256(cert.Raw)
	s1 := sha1.Sum(cert.Raw)
	certClaims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"aud": tokenURL, "iss": certClient, "sub": certClient, "jti": "j1", "nbf": now, "iat": now, "exp": now + 600}
		if mod != nil {
			mod(c)
		}
		return c
	}
	x5tS256 := map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(s256[:])}
	fedClaims := map[string]any{"iss": "https://token.actions.githubusercontent.com", "sub": "repo:crmgate/crmgate:ref:refs/heads/main", "aud": "api://AzureADTokenExchange", "exp": now + 300}
	assertion := func(a string) url.Values {
		return url.Values{"client_assertion_type": {jwtBearerAssertion}, "client_assertion": {a}}
	}
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string
		wantCode   float64
	}{
		{"secret", e.tokenForm(url.Values{"client_secret": {testSecret}}), 200, "", 0},
		{"wrong secret", e.tokenForm(url.Values{"client_secret": {"nope"}}), 401, "invalid_client", 7000215},
		{"wrong scope", e.tokenForm(url.Values{"client_secret": {testSecret}, "scope": {"https://other.crm.dynamics.com/.default"}}), 400, "invalid_scope", 70011},
		{"unknown client", e.tokenForm(url.Values{"client_secret": {testSecret}, "client_id": {"x"}}), 400, "unauthorized_client", 700016},
		{"wrong grant", e.tokenForm(url.Values{"client_secret": {testSecret}, "grant_type": {"password"}}), 400, "unsupported_grant_type", 70003},
		{"no credential", e.tokenForm(nil), 401, "invalid_client", 7000218},
		{"cert PS256", e.tokenForm(merge(url.Values{"client_id": {certClient}}, assertion(signJWT(t, rsaKey, "PS256", copyMap(x5tS256), certClaims(nil))))), 200, "", 0},
		{"cert RS256 x5t", e.tokenForm(merge(url.Values{"client_id": {certClient}}, assertion(signJWT(t, rsaKey, "RS256", map[string]any{"x5t": base64.RawURLEncoding.EncodeToString(s1[:])}, certClaims(nil))))), 200, "", 0},
		{"cert wrong key", e.tokenForm(merge(url.Values{"client_id": {certClient}}, assertion(signJWT(t, otherKey, "PS256", copyMap(x5tS256), certClaims(nil))))), 401, "invalid_client", 700027},
		{"cert expired", e.tokenForm(merge(url.Values{"client_id": {certClient}}, assertion(signJWT(t, rsaKey, "PS256", copyMap(x5tS256), certClaims(func(c map[string]any) { c["exp"] = now - 1 }))))), 401, "invalid_client", 700027},
		{"cert wrong aud", e.tokenForm(merge(url.Values{"client_id": {certClient}}, assertion(signJWT(t, rsaKey, "PS256", copyMap(x5tS256), certClaims(func(c map[string]any) { c["aud"] = "https://login.microsoftonline.com/x/oauth2/v2.0/token" }))))), 401, "invalid_client", 700027},
		{"cert no thumbprint", e.tokenForm(merge(url.Values{"client_id": {certClient}}, assertion(signJWT(t, rsaKey, "PS256", map[string]any{}, certClaims(nil))))), 401, "invalid_client", 700027},
		{"federated", e.tokenForm(merge(url.Values{"client_id": {fedClient}}, assertion(signJWT(t, ecKey, "ES256", map[string]any{}, fedClaims)))), 200, "", 0},
		{"federated wrong subject", e.tokenForm(merge(url.Values{"client_id": {fedClient}}, assertion(signJWT(t, ecKey, "ES256", map[string]any{}, merge2(fedClaims, "sub", "repo:evil"))))), 401, "invalid_client", 700027},
		{"federated wrong audience", e.tokenForm(merge(url.Values{"client_id": {fedClient}}, assertion(signJWT(t, ecKey, "ES256", map[string]any{}, merge2(fedClaims, "aud", "api://other"))))), 401, "invalid_client", 700027},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.postToken(tc.form)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %v", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantError == "" {
				if body["token_type"] != "Bearer" || body["expires_in"] != float64(3599) || body["access_token"] == "" {
					t.Errorf("body = %v", body)
				}
				return
			}
			codes, _ := body["error_codes"].([]any)
			if body["error"] != tc.wantError || len(codes) != 1 || codes[0] != tc.wantCode {
				t.Errorf("body = %v", body)
			}
			for _, k := range []string{"error_description", "timestamp", "trace_id", "correlation_id"} {
				if _, ok := body[k]; !ok {
					t.Errorf("missing %s in %v", k, body)
				}
			}
		})
	}
}

func copyMap(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func merge2(m map[string]any, k string, v any) map[string]any {
	out := copyMap(m)
	out[k] = v
	return out
}

func merge(a, b url.Values) url.Values {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func TestBearerCheck(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TokenLifetime = time.Hour })
	challenge := "Bearer authorization_uri=" + e.srv.URL + "/" + testTenant + "/oauth2/authorize, resource_id=" + e.srv.URL
	tests := []struct {
		name    string
		token   string
		advance time.Duration
		want    int
	}{
		{"valid", e.token, 0, 200},
		{"missing", "", 0, 401},
		{"unknown", "forged", 0, 401},
		{"expired", e.token, time.Hour, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(tc.advance)
			e.token = tc.token
			resp, body := e.do("GET", "WhoAmI()", nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 401 {
				if got := resp.Header.Get("WWW-Authenticate"); got != challenge {
					t.Errorf("WWW-Authenticate = %q, want %q", got, challenge)
				}
				if !strings.Contains(string(body), codeNotAuthenticated) {
					t.Errorf("body = %s", body)
				}
			}
		})
	}
}

func TestTokenBasicAuthAndDown(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest("POST", e.srv.URL+"/"+testTenant+"/oauth2/v2.0/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {e.srv.URL + "/.default"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClient, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("basic auth: status %d", resp.StatusCode)
	}
	e.srv.SetFaults(Faults{TokenEndpointDown: true})
	resp, err = http.PostForm(e.srv.URL+"/"+testTenant+"/oauth2/v2.0/token", e.tokenForm(url.Values{"client_secret": {testSecret}}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("down: status %d", resp.StatusCode)
	}
	if n := e.srv.Requests("POST token"); n != 3 {
		t.Errorf("Requests(POST token) = %d, want 3", n)
	}
}
