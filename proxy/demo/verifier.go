// Package demo holds the demo upstream application that `crmgate dev` puts behind the gateway,
// and a Verifier for the X-Current-User JWT that upstream Go applications can copy or import.
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// leeway is the clock skew tolerated on exp, nbf and iat.
	leeway = 30 * time.Second
	// refetchInterval is the minimum time between two fetches of the key set, so that tokens
	// with made-up key ids cannot make the verifier hammer the JWKS endpoint.
	refetchInterval = 30 * time.Second
	// keySetMaxAge is how long a fetched key set is trusted before it is fetched again, so a
	// key removed from the JWKS stops verifying tokens.
	keySetMaxAge = 10 * time.Minute
	// maxJWKSBytes bounds the JWKS response read into memory.
	maxJWKSBytes = 1 << 20
)

var (
	// ErrNoToken is returned by Verify for an empty token.
	ErrNoToken = errors.New("demo: no token")
	// ErrMalformedToken is returned for a token that is not a JWS compact serialization signed
	// with ES256 (this includes alg "none" and HS256), or that has no kid.
	ErrMalformedToken = errors.New("demo: malformed token")
	// ErrUnknownKey is returned when the token's kid is not in the key set, even after a refetch
	// (or when a refetch was skipped because the last one was less than 30 s ago).
	ErrUnknownKey = errors.New("demo: unknown signing key")
	// ErrKeySetUnavailable is returned when the key set could not be fetched or parsed.
	ErrKeySetUnavailable = errors.New("demo: key set unavailable")
	// ErrInvalidSignature is returned when the signature does not verify with the key.
	ErrInvalidSignature = errors.New("demo: invalid signature")
	// ErrInvalidClaims is returned when a registered claim fails validation; it wraps the
	// go-jose cause (jwt.ErrExpired, jwt.ErrInvalidIssuer, jwt.ErrInvalidAudience, ...) or
	// ErrMissingClaim.
	ErrInvalidClaims = errors.New("demo: invalid claims")
	// ErrMissingClaim is wrapped by ErrInvalidClaims when iss, sub, iat or exp is absent.
	ErrMissingClaim = errors.New("demo: missing claim")
)

// Claims are the claims of the X-Current-User JWT (the header contract in
// README.md, Identity headers for upstream apps).
type Claims struct {
	// Issuer is the gateway's public URL.
	Issuer string `json:"iss"`
	// Audience is the route's audience, by default the upstream origin.
	Audience jwt.Audience `json:"aud,omitempty"`
	// Subject is the gateway user id.
	Subject string `json:"sub"`
	// IssuedAt is when the gateway signed the token.
	IssuedAt *jwt.NumericDate `json:"iat,omitempty"`
	// Expiry is at most five minutes after IssuedAt.
	Expiry *jwt.NumericDate `json:"exp,omitempty"`
	// NotBefore is not set by the gateway; when present it is validated.
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	// Email is the user's email address.
	Email string `json:"email,omitempty"`
	// Name is the user's display name.
	Name string `json:"name,omitempty"`
	// PreferredUsername is the user's username.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// Roles are the user's roles (local roles and web roles).
	Roles []string `json:"roles,omitempty"`
	// AuthMethod is how the user signed in (e.g. "password" or an OIDC provider).
	AuthMethod string `json:"auth_method,omitempty"`
	// Contact is the bound Dataverse contact; nil when the user is not bound.
	Contact *Contact `json:"contact,omitempty"`
}

// Contact is the bound Dataverse contact in Claims.
type Contact struct {
	// ID is the contact id (a GUID).
	ID string `json:"id"`
	// LogicalName is the table's logical name, normally "contact".
	LogicalName string `json:"logicalname"`
	// Name is the contact's primary name.
	Name string `json:"name,omitempty"`
	// Columns holds the route's allow-listed columns; JSON numbers decode as float64.
	Columns map[string]any `json:"columns,omitempty"`
}

// HasRole reports whether the claims carry role.
func (c *Claims) HasRole(role string) bool {
	return slices.Contains(c.Roles, role)
}

// Verifier verifies X-Current-User tokens against the gateway's JWKS. It fetches the key set on
// first use, refetches it when a token names an unknown kid (at most once per 30 s) and when it
// is older than 10 minutes. It accepts only ES256 with a P-256 key. It is safe for concurrent use.
type Verifier struct {
	jwksURL string
	issuer  string
	client  *http.Client
	now     func() time.Time

	fetchMu sync.Mutex // serialises fetches; held while a fetch is in flight

	mu          sync.Mutex // guards the fields below
	keys        map[string]*ecdsa.PublicKey
	fetchedAt   time.Time // when keys was last fetched successfully
	lastAttempt time.Time // when a fetch was last attempted, successful or not
}

// NewVerifier returns a Verifier for tokens issued by issuer whose keys are at jwksURL.
// issuer must not be empty: it is compared exactly with the iss claim. A nil client means an
// http.Client with a 10 s timeout; a nil now means time.Now.
func NewVerifier(jwksURL, issuer string, client *http.Client, now func() time.Time) *Verifier {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{jwksURL: jwksURL, issuer: issuer, client: client, now: now}
}

// Verify checks token's ES256 signature against the gateway's key set and its claims: iss equal
// to the verifier's issuer, exp and iat present and valid with 30 s leeway, nbf if present, and
// aud containing audience unless audience is "". It returns the claims only when all checks pass.
func (v *Verifier) Verify(ctx context.Context, token, audience string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if v.issuer == "" {
		return nil, fmt.Errorf("%w: the verifier has no issuer", ErrInvalidClaims)
	}
	// Listing only ES256 rejects "none", HS256 (key confusion) and every other alg at parse time.
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedToken, err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, fmt.Errorf("%w: no kid in header", ErrMalformedToken)
	}
	key, err := v.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return nil, err
	}
	var c Claims
	if err := tok.Claims(key, &c); err != nil {
		// Claims fails either on the signature or, after it verified, on the JSON payload.
		if errors.Is(err, jose.ErrCryptoFailure) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformedToken, err)
	}
	for name, missing := range map[string]bool{"iss": c.Issuer == "", "sub": c.Subject == "", "iat": c.IssuedAt == nil, "exp": c.Expiry == nil} {
		if missing {
			return nil, fmt.Errorf("%w: %w: %s", ErrInvalidClaims, ErrMissingClaim, name)
		}
	}
	expected := jwt.Expected{Issuer: v.issuer, Time: v.now()}
	if audience != "" {
		expected.AnyAudience = jwt.Audience{audience}
	}
	registered := jwt.Claims{Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience,
		Expiry: c.Expiry, NotBefore: c.NotBefore, IssuedAt: c.IssuedAt}
	if err := registered.ValidateWithLeeway(expected, leeway); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidClaims, err)
	}
	return &c, nil
}

// key returns the public key for kid, fetching the key set when needed.
func (v *Verifier) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	if k, ok := v.cached(kid); ok {
		return k, nil
	}
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	// Another request may have fetched while this one waited.
	if k, ok := v.cached(kid); ok {
		return k, nil
	}
	now := v.now()
	v.mu.Lock()
	last := v.lastAttempt
	fresh := v.keys != nil && now.Sub(v.fetchedAt) < keySetMaxAge
	v.mu.Unlock()
	if !last.IsZero() && now.Sub(last) < refetchInterval {
		if !fresh {
			return nil, fmt.Errorf("%w: last fetch failed less than %s ago", ErrKeySetUnavailable, refetchInterval)
		}
		return nil, fmt.Errorf("%w: kid %q (key set fetched less than %s ago)", ErrUnknownKey, kid, refetchInterval)
	}
	v.mu.Lock()
	v.lastAttempt = now
	v.mu.Unlock()

	keys, err := v.fetch(ctx)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.keys, v.fetchedAt = keys, now
	v.mu.Unlock()
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
}

// cached returns the key for kid from a key set that is not older than keySetMaxAge.
func (v *Verifier) cached(kid string) (*ecdsa.PublicKey, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys == nil || v.now().Sub(v.fetchedAt) >= keySetMaxAge {
		return nil, false
	}
	k, ok := v.keys[kid]
	return k, ok
}

// fetch downloads the key set and keeps the public P-256 signing keys usable with ES256.
func (v *Verifier) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.jwksURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySetUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySetUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: status %d", ErrKeySetUnavailable, v.jwksURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySetUnavailable, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("%w: key set larger than %d bytes", ErrKeySetUnavailable, maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySetUnavailable, err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() || k.KeyID == "" ||
			(k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != string(jose.ES256)) {
			continue
		}
		keys[k.KeyID] = pub
	}
	return keys, nil
}
