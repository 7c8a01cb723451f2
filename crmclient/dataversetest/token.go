package dataversetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

const (
	jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	federatedAudience  = "api://AzureADTokenExchange"
)

type tokenInfo struct {
	clientID string
	userID   string
	resource string
	expires  time.Time
}

// tokenError is an Entra ID token endpoint error, shaped as in
// https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow,
// which documents only invalid_scope (AADSTS70011, 400). The other error
// names follow RFC 6749 §5.2; their AADSTS numbers and the 401 for
// invalid_client are Entra's behaviour as widely observed, not documented.
type tokenError struct {
	status int
	name   string
	aadsts int
	desc   string
}

func (e *tokenError) Error() string {
	return fmt.Sprintf("dataversetest: token: %s: AADSTS%d: %s", e.name, e.aadsts, e.desc)
}

func (h *Handler) writeTokenError(w http.ResponseWriter, e *tokenError) {
	trace, corr := h.newID(), h.newID()
	body := orderedObject{
		{"error", e.name},
		{"error_description", fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			e.aadsts, e.desc, trace, corr, h.now().UTC().Format("2006-01-02 15:04:05Z"))},
		{"error_codes", []int{e.aadsts}},
		{"timestamp", h.now().UTC().Format("2006-01-02 15:04:05Z")},
		{"trace_id", trace},
		{"correlation_id", corr},
	}
	b, _ := marshalValue(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// serveToken implements POST /{tenant}/oauth2/v2.0/token for the client
// credentials grant: secret, certificate or federated assertion
// (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	down := h.faults.TokenEndpointDown
	h.mu.Unlock()
	if down {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("dataversetest: token endpoint down (fault injected)\n"))
		return
	}
	tok, err := h.issueToken(r)
	if err != nil {
		var te *tokenError
		if !errors.As(err, &te) {
			te = &tokenError{status: http.StatusInternalServerError, name: "server_error", aadsts: 50000, desc: err.Error()}
		}
		h.writeTokenError(w, te)
		return
	}
	secs := int(h.opts.TokenLifetime / time.Second)
	body := orderedObject{
		{"token_type", "Bearer"},
		{"expires_in", secs},
		// ext_expires_in: seen live by third parties, not documented; clients
		// must not need it.
		{"ext_expires_in", secs},
		{"access_token", tok},
	}
	b, _ := marshalValue(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (h *Handler) issueToken(r *http.Request) (string, error) {
	if r.Method != http.MethodPost {
		return "", &tokenError{http.StatusBadRequest, "invalid_request", 900561, "The endpoint only accepts POST requests."}
	}
	tenant := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/oauth2/v2.0/token")
	if h.opts.TenantID != "" && tenant != h.opts.TenantID {
		return "", &tokenError{http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found.", tenant)}
	}
	if err := r.ParseForm(); err != nil {
		return "", &tokenError{http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."}
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		if gt == "" {
			return "", &tokenError{http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."}
		}
		return "", &tokenError{http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt)}
	}
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	// HTTP Basic auth (RFC 6749 §2.3.1) is accepted instead of client_secret
	// (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
	basicID, basicSecret, basic := r.BasicAuth()
	if basic {
		clientID, secret = basicID, basicSecret
	}
	if clientID == "" {
		return "", &tokenError{http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."}
	}
	resource := h.baseURL(r)
	if scope := f.Get("scope"); scope != resource+"/.default" {
		return "", &tokenError{http.StatusBadRequest, "invalid_scope", 70011, fmt.Sprintf("The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", scope)}
	}
	c, ok := h.clients[clientID]
	if !ok {
		return "", &tokenError{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant)}
	}
	switch {
	case secret != "":
		if c.Secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
			return "", &tokenError{http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID)}
		}
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != jwtBearerAssertion {
			return "", &tokenError{http.StatusBadRequest, "invalid_request", 700024, "Client assertion type is not valid."}
		}
		tokenURL := h.authorityURL(r) + "/" + tenant + "/oauth2/v2.0/token"
		if err := h.checkAssertion(c, f.Get("client_assertion"), tokenURL); err != nil {
			return "", &tokenError{http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation. " + err.Error()}
		}
	default:
		return "", &tokenError{http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	h.mu.Lock()
	h.tokens[tok] = tokenInfo{clientID: c.ID, userID: c.UserID, resource: resource, expires: h.now().Add(h.opts.TokenLifetime)}
	h.mu.Unlock()
	return tok, nil
}

// authorityURL is the scheme and host the token request reached: the
// emulator is its own authority host.
func (h *Handler) authorityURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

type jwtHeader struct {
	Alg       string `json:"alg"`
	X5t       string `json:"x5t"`
	X5tS256   string `json:"x5t#S256"`
	KeyID     string `json:"kid"`
	TokenType string `json:"typ"`
}

type jwtClaims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"`
	Exp *float64        `json:"exp"`
	Nbf *float64        `json:"nbf"`
	Jti string          `json:"jti"`
}

func (c jwtClaims) audiences() []string {
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(c.Aud, &many)
	return many
}

// checkAssertion verifies a client_assertion: a certificate-signed JWT
// (iss = sub = client_id, aud = token endpoint, exp, nbf, x5t#S256 or x5t
// naming the certificate: https://learn.microsoft.com/entra/identity-platform/certificate-credentials)
// or a federated JWT (issuer, subject and audience of a registered federated
// credential: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
func (h *Handler) checkAssertion(c *Client, assertion, tokenURL string) error {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return errors.New("the assertion is not a compact JWS")
	}
	var hdr jwtHeader
	var claims jwtClaims
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return err
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("the signature is not base64url")
	}
	signed := []byte(parts[0] + "." + parts[1])
	now := h.now()
	if claims.Exp == nil || !now.Before(time.Unix(int64(*claims.Exp), 0)) {
		return errors.New("the assertion has expired")
	}
	if claims.Nbf != nil && now.Before(time.Unix(int64(*claims.Nbf), 0)) {
		return errors.New("the assertion is not yet valid")
	}
	if claims.Iss == c.ID && c.Certificate != nil {
		if claims.Sub != c.ID {
			return errors.New("sub must equal the client id")
		}
		if !contains(claims.audiences(), tokenURL) {
			return fmt.Errorf("aud must be %s", tokenURL)
		}
		if claims.Jti == "" {
			return errors.New("jti is required")
		}
		raw := c.Certificate.Raw
		s256 := sha256.Sum256(raw)
		s1 := sha1.Sum(raw)
		switch {
		case hdr.X5tS256 != "":
			if hdr.X5tS256 != base64.RawURLEncoding.EncodeToString(s256[:]) {
				return errors.New("x5t#S256 does not name the registered certificate")
			}
		case hdr.X5t != "":
			if hdr.X5t != base64.RawURLEncoding.EncodeToString(s1[:]) {
				return errors.New("x5t does not name the registered certificate")
			}
		default:
			return errors.New("the header must carry x5t#S256 or x5t")
		}
		if hdr.Alg != "PS256" && hdr.Alg != "RS256" {
			return fmt.Errorf("alg %q is not accepted", hdr.Alg)
		}
		return verifyJWS(hdr.Alg, c.Certificate.PublicKey, signed, sig)
	}
	for _, fc := range c.Federated {
		if fc.Issuer != claims.Iss || fc.Subject != claims.Sub {
			continue
		}
		aud := fc.Audience
		if aud == "" {
			aud = federatedAudience
		}
		if !contains(claims.audiences(), aud) {
			return fmt.Errorf("aud must be %s", aud)
		}
		if fc.Key == nil {
			return errors.New("no key configured for the federated credential")
		}
		return verifyJWS(hdr.Alg, fc.Key, signed, sig)
	}
	return errors.New("no credential matches the assertion's issuer and subject")
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("a JWT segment is not base64url")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("a JWT segment is not JSON")
	}
	return nil
}

func verifyJWS(alg string, key crypto.PublicKey, signed, sig []byte) error {
	digest := sha256.Sum256(signed)
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256":
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil {
				return nil
			}
		case "PS256":
			if rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil {
				return nil
			}
		default:
			return fmt.Errorf("alg %q is not accepted for an RSA key", alg)
		}
	case *ecdsa.PublicKey:
		if alg != "ES256" || len(sig) != 64 {
			return fmt.Errorf("alg %q is not accepted for an EC key", alg)
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if ecdsa.Verify(k, digest[:], r, s) {
			return nil
		}
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
	return errors.New("the signature does not verify")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// authenticate checks the bearer token of an API request; a missing or bad
// one gets 401 RequestIsNotAuthenticated
// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes).
func (h *Handler) authenticate(r *http.Request) (tokenInfo, error) {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	var info tokenInfo
	if ok && strings.EqualFold(scheme, "Bearer") {
		h.mu.Lock()
		info, ok = h.tokens[strings.TrimSpace(tok)]
		h.mu.Unlock()
	}
	if !ok || !h.now().Before(info.expires) || info.resource != h.baseURL(r) {
		tenant := h.opts.TenantID
		if tenant == "" {
			tenant = "common"
		}
		e := errf(http.StatusUnauthorized, codeNotAuthenticated, "Request is not authenticated.")
		// The challenge's format is observed by third-party clients, not
		// documented.
		e.header = http.Header{"Www-Authenticate": {fmt.Sprintf("Bearer authorization_uri=%s/%s/oauth2/authorize, resource_id=%s", h.authorityURL(r), tenant, h.baseURL(r))}}
		return tokenInfo{}, e
	}
	return info, nil
}
