package crmclient

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/sync/singleflight"
)

// Sources, cited below by key:
//   - [CC]: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
//     (shared secret, certificate and federated credential requests; answers)
//   - [CERT]: https://learn.microsoft.com/entra/identity-platform/certificate-credentials
//     (the client assertion's header and claims)
//
// Why not github.com/Azure/azure-sdk-for-go/sdk/azidentity: v1.15.0 (MSAL
// Go v1.10.1) was tried against the emulator's token endpoint.
//   - It refuses an http authority ("cannot use an authority host without
//     https"), which the emulator, `crmgate dev` and a loopback
//     CRMGATE_DATAVERSE_AUTHORITY_HOST use.
//   - Over TLS it asks login.microsoftonline.com/common/discovery/instance
//     about any other host (unless DisableInstanceDiscovery), needs
//     {authority}/{tenant}/v2.0/.well-known/openid-configuration (404 here)
//     and sends scope "{env}/.default openid offline_access profile"
//     (AADSTS70011 here).
//   - ClientCertificateCredential sends x5t#S256 in padded standard base64,
//     not the base64url of [CERT], and no iat: "AADSTS700027: Client
//     assertion failed signature validation. x5t#S256 does not name the
//     registered certificate".
//   - MSAL's cache runs on the wall clock, keeps a token until 5 minutes
//     before expiry and cannot be invalidated (after a 401 the next GetToken
//     returns the same token, no request), so TokenRefreshBefore, the new
//     token after a 401 and the stale token while Entra fails would need
//     this file's cache on top and a new credential per acquisition.
//   - azcore retries the token endpoint itself (4 POSTs, about 9 s, for one
//     GetToken against a 503), under the client's own retries.
// It would replace only fetch below.

// clientAssertionType is the client_assertion_type of certificate and
// federated credentials ([CERT], [CC]).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is the exp - nbf of the client assertion this package
// signs; [CERT] asks for 5 to 10 minutes after nbf.
const assertionLifetime = 10 * time.Minute

// maxTokenBody bounds what is read from the token endpoint.
const maxTokenBody = 1 << 20

// TokenError is an error answer of the Microsoft Entra ID token endpoint
// ([CC]), such as invalid_client for a wrong secret. It almost
// always means a configuration problem, so retrying does not help.
type TokenError struct {
	// Status is the HTTP status of the answer.
	Status int
	// Code is the OAuth "error" field, such as "invalid_client"; empty
	// when the body was not the documented JSON.
	Code string
	// Description is "error_description", which starts with the AADSTS
	// code (for example "AADSTS7000215: Invalid client secret provided.")
	// and carries trace ids; it is for logs, not for end users.
	Description string
}

// Error returns the status, code and description.
func (e *TokenError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("crmclient: token endpoint status %d: %s", e.Status, e.Description)
	}
	return fmt.Sprintf("crmclient: token endpoint status %d: %s: %s", e.Status, e.Code, e.Description)
}

// credential adds the client authentication fields to a token request.
type credential interface {
	apply(form url.Values, now time.Time) error
}

// secretCredential is a client secret ([CC]).
type secretCredential struct{ secret string }

func (c secretCredential) apply(form url.Values, _ time.Time) error {
	form.Set("client_secret", c.secret)
	return nil
}

// certificateCredential signs a client assertion JWT with the private key
// of a registered certificate ([CERT]).
type certificateCredential struct {
	key      *rsa.PrivateKey
	x5tS256  string // base64url SHA-256 of the certificate's DER
	clientID string
	audience string // the token endpoint URL
}

func (c certificateCredential) apply(form url.Values, now time.Time) error {
	// PS256 and a base64url x5t#S256 are the documented form [CERT]; the
	// RS256 + x5t (SHA-1) form of older samples is not used.
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("x5t#S256", c.x5tS256)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.PS256, Key: c.key}, opts)
	if err != nil {
		return fmt.Errorf("crmclient: client assertion signer: %w", err)
	}
	jti, err := newGUID()
	if err != nil {
		return err
	}
	claims := jwt.Claims{
		Issuer:    c.clientID,
		Subject:   c.clientID,
		Audience:  jwt.Audience{c.audience},
		ID:        jti.String(),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	assertion, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return fmt.Errorf("crmclient: sign client assertion: %w", err)
	}
	form.Set("client_assertion_type", clientAssertionType)
	form.Set("client_assertion", assertion)
	return nil
}

// federatedCredential sends a token issued by another identity provider,
// read from a file that the platform rotates (for example a Kubernetes
// projected service account token), as the client assertion ([CC], "third
// case"). The file is read on every acquisition.
type federatedCredential struct{ path string }

func (c federatedCredential) apply(form url.Values, _ time.Time) error {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return fmt.Errorf("crmclient: read federated token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("crmclient: federated token file %s is empty", c.path)
	}
	form.Set("client_assertion_type", clientAssertionType)
	form.Set("client_assertion", tok)
	return nil
}

// loadCertificateCredential reads a PEM file holding the certificate (the
// first CERTIFICATE block) and its unencrypted RSA private key (PKCS #8 or
// PKCS #1), and checks that they belong together.
func loadCertificateCredential(path, clientID, audience string) (certificateCredential, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return certificateCredential{}, fmt.Errorf("crmclient: certificate file: %w", err)
	}
	var cert *x509.Certificate
	var key *rsa.PrivateKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			if cert == nil {
				if cert, err = x509.ParseCertificate(block.Bytes); err != nil {
					return certificateCredential{}, fmt.Errorf("crmclient: certificate file %s: %w", path, err)
				}
			}
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return certificateCredential{}, fmt.Errorf("crmclient: certificate file %s: private key: %w", path, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return certificateCredential{}, fmt.Errorf("crmclient: certificate file %s: private key is %T, want RSA (PS256)", path, k)
			}
			key = rk
		case "RSA PRIVATE KEY":
			if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
				return certificateCredential{}, fmt.Errorf("crmclient: certificate file %s: private key: %w", path, err)
			}
		case "ENCRYPTED PRIVATE KEY":
			return certificateCredential{}, fmt.Errorf("crmclient: certificate file %s: encrypted private keys are not supported", path)
		}
	}
	if cert == nil || key == nil {
		return certificateCredential{}, fmt.Errorf("crmclient: certificate file %s: want a CERTIFICATE and an RSA private key in PEM", path)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return certificateCredential{}, fmt.Errorf("crmclient: certificate file %s: the private key does not match the certificate", path)
	}
	sum := sha256.Sum256(cert.Raw)
	return certificateCredential{
		key:      key,
		x5tS256:  base64.RawURLEncoding.EncodeToString(sum[:]),
		clientID: clientID,
		audience: audience,
	}, nil
}

// tokenSource acquires and caches access tokens by the client credentials
// grant. Concurrent callers that find no usable token share one request.
type tokenSource struct {
	endpoint      string
	clientID      string
	scope         string
	cred          credential
	httpClient    *http.Client
	now           func() time.Time
	refreshBefore time.Duration
	timeout       time.Duration
	logger        *slog.Logger

	mu        sync.Mutex
	token     string
	expires   time.Time
	refreshAt time.Time

	flight singleflight.Group
}

// cached returns the cached token if it is not due for refresh.
func (s *tokenSource) cached() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.refreshAt) {
		return s.token, true
	}
	return "", false
}

// Token returns a valid access token, acquiring one when the cached token
// is missing or due for refresh. A caller whose ctx ends stops waiting; the
// shared acquisition goes on for the others.
func (s *tokenSource) Token(ctx context.Context) (string, error) {
	if tok, ok := s.cached(); ok {
		return tok, nil
	}
	fctx := context.WithoutCancel(ctx)
	ch := s.flight.DoChan("token", func() (any, error) {
		if tok, ok := s.cached(); ok { // another flight just finished
			return tok, nil
		}
		return s.refresh(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// invalidate drops tok from the cache, so the next call acquires a new
// token; it is used when Dataverse answers 401 to it.
func (s *tokenSource) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok {
		s.token = ""
	}
}

// refresh acquires a token. When that fails and the cached token has not
// expired yet, the cached token is still returned.
func (s *tokenSource) refresh(ctx context.Context) (string, error) {
	tok, lifetime, err := s.fetch(ctx)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.token != "" && now.Before(s.expires) {
			s.logger.Warn("crmclient: token refresh failed; using the cached token until it expires",
				"error", err, "expires", s.expires)
			return s.token, nil
		}
		return "", err
	}
	early := min(s.refreshBefore, lifetime/2)
	s.token = tok
	s.expires = now.Add(lifetime)
	s.refreshAt = s.expires.Add(-early)
	return tok, nil
}

// fetch makes one token request.
func (s *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	form := url.Values{
		"grant_type": {"client_credentials"},
		"client_id":  {s.clientID},
		"scope":      {s.scope},
	}
	if err := s.cred.apply(form, s.now()); err != nil {
		return "", 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("crmclient: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.httpClient.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("crmclient: token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return "", 0, fmt.Errorf("crmclient: token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, parseTokenError(resp.StatusCode, body)
	}
	var doc struct {
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		AccessToken string          `json:"access_token"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", 0, fmt.Errorf("crmclient: token response: %w", err)
	}
	if doc.AccessToken == "" {
		return "", 0, errors.New("crmclient: token response without access_token")
	}
	if doc.TokenType != "" && !strings.EqualFold(doc.TokenType, "Bearer") {
		return "", 0, fmt.Errorf("crmclient: token response: token_type %q, want Bearer", truncate(doc.TokenType, 32))
	}
	// expires_in is a number in v2.0 answers; the v1.0 endpoint sends a
	// string, which is accepted too.
	secs, err := strconv.ParseInt(strings.Trim(string(doc.ExpiresIn), `"`), 10, 64)
	if err != nil || secs <= 0 {
		return "", 0, fmt.Errorf("crmclient: token response: bad expires_in %s", truncate(string(doc.ExpiresIn), 32))
	}
	return doc.AccessToken, time.Duration(secs) * time.Second, nil
}

func parseTokenError(status int, body []byte) *TokenError {
	e := &TokenError{Status: status}
	var doc struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &doc) == nil {
		e.Code = truncate(doc.Error, 64)
		e.Description = truncate(doc.Description, maxErrorMessage)
	}
	if e.Description == "" {
		e.Description = http.StatusText(status) + " (no error_description)"
	}
	return e
}

// newGUID returns a random (version 4) GUID.
func newGUID() (GUID, error) {
	var g GUID
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("crmclient: random: %w", err)
	}
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}
