package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/crmgate/crmgate/policies"
)

// HeaderCurrentUser is the signed identity header; every header whose name
// folds to it or to HeaderCurrentUser+"-*" belongs to the gateway.
const HeaderCurrentUser = "X-Current-User"

// isIdentityHeader reports whether name folds (case-insensitively, with '_'
// read as '-') to X-Current-User or X-Current-User-*. Upstream stacks such as
// CGI, PHP and some Java servers map '_' and '-' to the same variable, so
// every spelling must be removed.
func isIdentityHeader(name string) bool {
	const want = "x-current-user"
	if len(name) < len(want) {
		return false
	}
	for i := 0; i < len(want); i++ {
		c := name[i]
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return len(name) == len(want) || name[len(want)] == '-' || name[len(want)] == '_'
}

// stripIdentityHeaders removes every client-sent copy of the identity
// headers, in any spelling, from h.
func stripIdentityHeaders(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
}

// claims is the payload of X-Current-User (the header contract in
// README.md, Identity headers for upstream apps).
type claims struct {
	Issuer            string        `json:"iss"`
	Audience          string        `json:"aud"`
	Subject           string        `json:"sub"`
	IssuedAt          int64         `json:"iat"`
	Expiry            int64         `json:"exp"`
	ID                string        `json:"jti"` // unique per token (RFC 7519 section 4.1.7), for replay caches
	Email             string        `json:"email,omitempty"`
	EmailVerified     bool          `json:"email_verified"` // as in OpenID Connect Core 1.0 section 5.1
	Name              string        `json:"name,omitempty"`
	PreferredUsername string        `json:"preferred_username"`
	Roles             []string      `json:"roles"`
	AuthMethod        string        `json:"auth_method"`
	Contact           *contactClaim `json:"contact,omitempty"`
}

// contactClaim is the "contact" claim: only the route's allow-listed columns.
type contactClaim struct {
	ID          string         `json:"id"`
	LogicalName string         `json:"logicalname"`
	Name        string         `json:"name,omitempty"`
	Columns     map[string]any `json:"columns"`
}

// signer issues X-Current-User tokens and publishes the JWKS. Tokens are
// cached per session, audience, route and session revision (Session.Rev), and reused until shortly
// before they expire, so the hot path signs rarely.
type signer struct {
	issuer string
	ttl    time.Duration
	now    func() time.Time
	jose   jose.Signer
	jwks   []byte
	// newID returns a token's jti: 128 random bits (crypto/rand), never
	// repeated. Tests replace it for deterministic golden files.
	newID func() string

	mu    sync.Mutex
	cache map[tokenKey]cachedToken
	sweep time.Time
}

type tokenKey struct {
	sid, aud, route string // the route: each has its own contact column allow-list
	rev             uint64 // the session's revision: every change of what the headers carry gives a new one
}

type cachedToken struct {
	id     *identityHeaders
	expiry time.Time
}

// newSigner builds a signer from private keys, newest first: the first signs,
// all are published.
func newSigner(issuer string, keys []*ecdsa.PrivateKey, ttl time.Duration, now func() time.Time) (*signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("proxy: no signing keys")
	}
	var set jose.JSONWebKeySet
	var first jose.JSONWebKey
	for i, k := range keys {
		pub := jose.JSONWebKey{Key: &k.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("proxy: signing key %d: %w", i+1, err)
		}
		pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
		set.Keys = append(set.Keys, pub)
		if i == 0 {
			first = jose.JSONWebKey{Key: k, KeyID: pub.KeyID, Algorithm: string(jose.ES256)}
		}
	}
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: first}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("proxy: signer: %w", err)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return &signer{issuer: issuer, ttl: ttl, now: now, jose: js, jwks: jwks, newID: rand.Text, cache: map[tokenKey]cachedToken{}}, nil
}

// reuseMargin is how long before expiry a cached token is replaced, so an
// upstream never receives a token about to expire in transit.
func (s *signer) reuseMargin() time.Duration { return min(time.Minute, s.ttl/5) }

// identity returns the identity headers for the session, audience and
// route, with a signed X-Current-User reused until shortly before it
// expires. Contact columns are limited to the route's allow-list (data
// minimisation). The header values are built once per token and shared
// read-only between requests.
func (s *signer) identity(sess *Session, aud string, route *policies.Route) (*identityHeaders, error) {
	now := s.now()
	routeName := ""
	var allowed []policies.ContactHeader
	if route != nil {
		routeName, allowed = route.Name, route.ContactHeaders
	}
	key := tokenKey{sess.ID, aud, routeName, sess.Rev}
	s.mu.Lock()
	if t, ok := s.cache[key]; ok && now.Before(t.expiry.Add(-s.reuseMargin())) {
		s.mu.Unlock()
		return t.id, nil
	}
	s.mu.Unlock()

	exp := now.Add(s.ttl)
	c := claims{
		Issuer: s.issuer, Audience: aud, Subject: sess.UserID,
		IssuedAt: now.Unix(), Expiry: exp.Unix(), ID: s.newID(),
		Email: sess.Email, EmailVerified: sess.EmailOK, Name: sess.Name, PreferredUsername: sess.Username,
		Roles: sess.roles(), AuthMethod: sess.AuthMethod,
	}
	if c.Roles == nil {
		c.Roles = []string{}
	}
	if ct := sess.Contact; ct != nil {
		cols := make(map[string]any, len(allowed))
		for _, h := range allowed {
			if v, ok := ct.Columns[h.Column]; ok {
				cols[h.Column] = v
			}
		}
		c.Contact = &contactClaim{ID: ct.ID, LogicalName: ct.LogicalName, Name: ct.Name, Columns: cols}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("proxy: claims: %w", err)
	}
	jws, err := s.jose.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("proxy: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("proxy: serialize: %w", err)
	}
	id := newIdentityHeaders(tok, sess, c.Roles, allowed)

	s.mu.Lock()
	s.cache[key] = cachedToken{id, exp}
	if now.Sub(s.sweep) > s.ttl { // drop expired entries at most once per TTL
		for k, v := range s.cache {
			if !now.Before(v.expiry) {
				delete(s.cache, k)
			}
		}
		s.sweep = now
	}
	s.mu.Unlock()
	return id, nil
}

// identityHeaders are the header values set on a proxied request for a
// signed-in user. They are shared between requests: never modify them. Each
// slice has capacity 1, so an append elsewhere copies instead of writing here.
type identityHeaders struct {
	token, id, email, name, roles []string // nil email or name: header absent
	contact                       map[string][]string
}

func one(v string) []string { return []string{v}[:1:1] }

func newIdentityHeaders(token string, sess *Session, roles []string, allowed []policies.ContactHeader) *identityHeaders {
	id := &identityHeaders{token: one(token), id: one(headerValue(sess.UserID)),
		roles: one(headerValue(joinRoles(roles)))}
	if ct := sess.Contact; ct != nil {
		id.contact = map[string][]string{policies.ContactHeaderPrefix + "Id": one(headerValue(ct.ID))}
		for _, h := range allowed {
			if v, ok := columnHeaderValue(ct.Columns[h.Column]); ok {
				id.contact[h.Header] = one(headerValue(v))
			}
		}
	}
	if sess.Email != "" {
		id.email = one(headerValue(sess.Email))
	}
	if sess.Name != "" {
		id.name = one(headerValue(sess.Name))
	}
	return id
}

// apply sets the identity headers on h, which must already be stripped.
func (id *identityHeaders) apply(h http.Header) {
	h[HeaderCurrentUser] = id.token
	h["X-Current-User-Id"] = id.id
	if id.email != nil {
		h["X-Current-User-Email"] = id.email
	}
	if id.name != nil {
		h["X-Current-User-Name"] = id.name
	}
	h["X-Current-User-Roles"] = id.roles
	for k, v := range id.contact {
		h[k] = v
	}
}

// columnHeaderValue formats a contact column for a plain header: strings as
// they are, numbers in their shortest form, booleans as true/false, other
// JSON values as JSON. A null or missing column sends no header.
func columnHeaderValue(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		return x.String(), true
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		return string(b), true
	}
}

// headerValue removes control characters, which would make the upstream
// request invalid (and are a header-injection vector on lax servers).
func headerValue(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}
