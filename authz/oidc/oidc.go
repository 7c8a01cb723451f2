package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// DefaultMaxFlowAge is how long a started sign-in may take when
// Config.MaxFlowAge is zero.
const DefaultMaxFlowAge = 10 * time.Minute

// DefaultClockSkew is the clock difference with the OP tolerated when
// Config.ClockSkew is zero.
const DefaultClockSkew = time.Minute

// SigningAlgs are the ID token algorithms a Provider accepts: asymmetric
// only. "none" and the HMAC algorithms (whose key would be the client
// secret) are never accepted.
var SigningAlgs = []string{
	gooidc.RS256, gooidc.RS384, gooidc.RS512,
	gooidc.ES256, gooidc.ES384, gooidc.ES512,
	gooidc.PS256, gooidc.PS384, gooidc.PS512,
	gooidc.EdDSA,
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Config describes one OP. Name, Issuer, ClientID and RedirectURL are
// required.
type Config struct {
	// Name identifies the provider in URLs and in Flow.Provider: lowercase
	// letters, digits, '-' and '_', at most 63, starting with a letter or
	// digit.
	Name string
	// Issuer is the OP's issuer URL exactly as its discovery document and
	// its tokens state it (https, or http only for tests on loopback).
	Issuer string
	// ClientID and ClientSecret are crmgate's registration at the OP. An
	// empty secret means a public client (PKCE only). The secret is sent to
	// the token endpoint only and never logged.
	ClientID     string
	ClientSecret string
	// RedirectURL is crmgate's callback URL registered at the OP
	// (/.auth/oidc/{Name}/callback on the public host).
	RedirectURL string
	// Scopes are requested beside "openid", which is always requested
	// (first). Nil requests "openid email profile".
	Scopes []string
	// AllowedEmailDomains, when not empty, admits only identities whose
	// email is verified by the OP and whose domain (after '@', compared
	// case-insensitively, exact match, no subdomains) is listed. Empty
	// admits any identity, with or without email.
	AllowedEmailDomains []string
	// MaxFlowAge bounds the time between Start and Finish; zero means
	// DefaultMaxFlowAge.
	MaxFlowAge time.Duration
	// ClockSkew is the tolerated clock difference with the OP for exp and
	// iat; zero means DefaultClockSkew, negative is refused.
	ClockSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient carries discovery, JWKS and token requests; nil means
	// http.DefaultClient (no timeout: give one with a Timeout).
	HTTPClient *http.Client
	// Logger receives the details of refused sign-ins; nil discards.
	Logger *slog.Logger
}

// Flow is what Start hands to the caller to keep until the callback (in an
// encrypted, HttpOnly cookie bound to this browser). Every field is
// secret-bearing except Provider and IssuedAt: never put a Flow in a URL or
// a log. The zero Flow is refused by Finish.
type Flow struct {
	// State is the OAuth 2.0 state sent to the OP and expected back.
	State string `json:"state"`
	// Nonce is expected in the ID token.
	Nonce string `json:"nonce"`
	// Verifier is the PKCE code verifier (RFC 7636), sent with the code.
	Verifier string `json:"verifier"`
	// RedirectURL is where crmgate sends the person after sign-in (the
	// start request's redirect_url); Start does not validate it: the caller
	// validates it when storing and again when using it.
	RedirectURL string `json:"redirect_url,omitempty"`
	// Provider is the Name of the Provider that started the flow.
	Provider string `json:"provider"`
	// IssuedAt is when Start ran (the Provider's clock).
	IssuedAt time.Time `json:"issued_at"`
}

// Identity is a verified sign-in. Issuer and Subject identify the person
// (store them together: the email alone is not an identity).
type Identity struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	GivenName     string
	FamilyName    string
	// Groups and Roles are the raw "groups" and "roles" claims, as the OP
	// sent them (nil when absent); mapping them to local roles is the
	// caller's.
	Groups json.RawMessage
	Roles  json.RawMessage
	// IDToken is the raw ID token, for end_session's id_token_hint. It is a
	// credential: keep it server-side or encrypted, never log it.
	IDToken string
	// Claims are all the ID token's claims.
	Claims map[string]any
	// Expiry is the ID token's exp.
	Expiry time.Time
}

// Provider is one configured OP. It is safe for concurrent use.
type Provider struct {
	name     string
	issuer   string
	oauth    oauth2.Config
	verifier *gooidc.IDTokenVerifier
	provider *gooidc.Provider
	domains  []string
	maxAge   time.Duration
	skew     time.Duration
	now      func() time.Time
	client   *http.Client
	log      *slog.Logger
}

// New validates cfg and runs discovery at cfg.Issuer (the discovery
// document's issuer must equal it). ctx bounds discovery only; the JWKS is
// fetched later, when the first token is verified, with cfg.HTTPClient.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if !nameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("oidc: provider name %q: use 1 to 63 lowercase letters, digits, '-' or '_'", cfg.Name)
	}
	if err := checkURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("oidc: provider %s: issuer: %w", cfg.Name, err)
	}
	if err := checkURL(cfg.RedirectURL); err != nil {
		return nil, fmt.Errorf("oidc: provider %s: redirect URL: %w", cfg.Name, err)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("oidc: provider %s: the client id is empty", cfg.Name)
	}
	if cfg.ClockSkew < 0 || cfg.MaxFlowAge < 0 {
		return nil, fmt.Errorf("oidc: provider %s: negative clock skew or flow age", cfg.Name)
	}
	p := &Provider{
		name: cfg.Name, issuer: cfg.Issuer,
		maxAge: cfg.MaxFlowAge, skew: cfg.ClockSkew,
		now: cfg.Now, client: cfg.HTTPClient, log: cfg.Logger,
	}
	if p.maxAge == 0 {
		p.maxAge = DefaultMaxFlowAge
	}
	if p.skew == 0 {
		p.skew = DefaultClockSkew
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.client == nil {
		p.client = http.DefaultClient
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("provider", cfg.Name)
	for _, d := range cfg.AllowedEmailDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" || strings.ContainsAny(d, "@ /") {
			return nil, fmt.Errorf("oidc: provider %s: allowed email domain %q is not a domain", cfg.Name, d)
		}
		p.domains = append(p.domains, d)
	}

	// go-oidc keeps the client (not ctx) for the later JWKS fetches, which
	// run under a background context.
	dctx := gooidc.ClientContext(ctx, p.client)
	prov, err := gooidc.NewProvider(dctx, cfg.Issuer)
	if err != nil {
		p.log.Warn("oidc discovery failed", "issuer", cfg.Issuer, "error", err)
		return nil, fmt.Errorf("oidc: provider %s: discovery at %s failed: %w", cfg.Name, cfg.Issuer, err)
	}
	p.provider = prov
	p.verifier = prov.Verifier(&gooidc.Config{
		ClientID:             cfg.ClientID,
		SupportedSigningAlgs: SigningAlgs,
		Now:                  func() time.Time { return p.now().Add(-p.skew) },
	})
	scopes := []string{gooidc.ScopeOpenID}
	if cfg.Scopes == nil {
		scopes = append(scopes, "email", "profile")
	}
	for _, s := range cfg.Scopes {
		if s != gooidc.ScopeOpenID && s != "" && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	p.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     prov.Endpoint(),
		RedirectURL:  cfg.RedirectURL,
		Scopes:       scopes,
	}
	return p, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// Name returns the provider's Name.
func (p *Provider) Name() string { return p.name }

// Issuer returns the provider's issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// EndSessionURL returns the OP's end_session_endpoint from discovery, or
// "" when it offers none.
func (p *Provider) EndSessionURL() string {
	var c struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.provider.Claims(&c); err != nil {
		return ""
	}
	return c.EndSession
}

func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Start begins a sign-in: it returns the OP's authorization URL to send the
// browser to, and the Flow to keep until the callback. redirectURL is
// carried in the Flow as is (see Flow.RedirectURL).
func (p *Provider) Start(redirectURL string) (authURL string, flow Flow) {
	flow = Flow{
		State:       random(),
		Nonce:       random(),
		Verifier:    oauth2.GenerateVerifier(),
		RedirectURL: redirectURL,
		Provider:    p.name,
		IssuedAt:    p.now().UTC(),
	}
	authURL = p.oauth.AuthCodeURL(flow.State,
		gooidc.Nonce(flow.Nonce), oauth2.S256ChallengeOption(flow.Verifier))
	return authURL, flow
}

// Finish completes the sign-in at the callback: query is the callback's
// query string, flow the one Start returned. It returns the verified
// Identity, or one of the package's errors (see doc.go for the checks).
func (p *Provider) Finish(ctx context.Context, flow Flow, query url.Values) (*Identity, error) {
	now := p.now()
	if flow.Provider != p.name {
		p.log.Warn("oidc flow of another provider", "flow_provider", flow.Provider)
		return nil, ErrState
	}
	if flow.IssuedAt.IsZero() || now.Sub(flow.IssuedAt) > p.maxAge || flow.IssuedAt.Sub(now) > p.skew {
		p.log.Info("oidc flow expired", "issued_at", flow.IssuedAt, "max_age", p.maxAge)
		return nil, ErrExpiredFlow
	}
	state := query.Get("state")
	if flow.State == "" || subtle.ConstantTimeCompare([]byte(state), []byte(flow.State)) != 1 {
		p.log.Warn("oidc state mismatch", "state_present", state != "")
		return nil, ErrState
	}
	// RFC 9207: an OP that names itself in the callback must be this one
	// (a mix-up between providers caught before the code is sent anywhere).
	if iss, ok := query["iss"]; ok && (len(iss) != 1 || iss[0] != p.issuer) {
		p.log.Warn("oidc callback from another issuer", "iss", iss)
		return nil, ErrState
	}
	if code := query.Get("error"); code != "" {
		e := &ProviderError{Code: code, Description: query.Get("error_description")}
		p.log.Info("oidc provider returned an error", "code", e.Code, "description", e.Description)
		return nil, e
	}
	code := query.Get("code")
	if code == "" {
		p.log.Warn("oidc callback without code")
		return nil, ErrExchange
	}
	tok, err := p.oauth.Exchange(gooidc.ClientContext(ctx, p.client), code, oauth2.VerifierOption(flow.Verifier))
	if err != nil {
		p.log.Warn("oidc code exchange failed", "error", err)
		return nil, fmt.Errorf("%w: %w", ErrExchange, redact(err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		p.log.Warn("oidc token response without id_token")
		return nil, verifyErr("the token response has no id_token")
	}
	id, err := p.verify(ctx, raw, flow.Nonce)
	if err != nil {
		return nil, err
	}
	if tok.AccessToken != "" && id.token.AccessTokenHash != "" {
		if err := id.token.VerifyAccessToken(tok.AccessToken); err != nil {
			p.log.Warn("oidc at_hash mismatch", "error", err)
			return nil, &VerifyError{Err: err}
		}
	}
	if err := p.checkDomain(&id.Identity); err != nil {
		return nil, err
	}
	p.log.Info("oidc sign-in verified", "issuer", id.Issuer, "subject", id.Subject)
	return &id.Identity, nil
}

// redact keeps the RFC 6749 error code of a token endpoint refusal and
// drops the rest (the response body may echo request fields).
func redact(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" || re.Response == nil {
			return fmt.Errorf("token endpoint: %q", re.ErrorCode)
		}
		return fmt.Errorf("token endpoint: HTTP %d", re.Response.StatusCode)
	}
	return err
}

type verified struct {
	Identity
	token *gooidc.IDToken
}

// verify checks a raw ID token (see doc.go) and its nonce.
func (p *Provider) verify(ctx context.Context, raw, nonce string) (*verified, error) {
	t, err := p.verifier.Verify(gooidc.ClientContext(ctx, p.client), raw)
	if err != nil {
		p.log.Warn("oidc id token refused", "error", err)
		return nil, &VerifyError{Err: err}
	}
	if !t.IssuedAt.IsZero() && t.IssuedAt.After(p.now().Add(p.skew)) {
		p.log.Warn("oidc id token issued in the future", "iat", t.IssuedAt)
		return nil, verifyErr("the id token is issued in the future (iat %s)", t.IssuedAt.UTC().Format(time.RFC3339))
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(t.Nonce), []byte(nonce)) != 1 {
		p.log.Warn("oidc nonce mismatch", "nonce_present", t.Nonce != "")
		return nil, ErrNonce
	}
	if t.Subject == "" {
		return nil, verifyErr("the id token has no subject")
	}
	var c struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
		Name          string          `json:"name"`
		GivenName     string          `json:"given_name"`
		FamilyName    string          `json:"family_name"`
		AZP           string          `json:"azp"`
		Groups        json.RawMessage `json:"groups"`
		Roles         json.RawMessage `json:"roles"`
	}
	var all map[string]any
	if err := t.Claims(&c); err != nil {
		return nil, verifyErr("id token claims: %w", err)
	}
	if err := t.Claims(&all); err != nil {
		return nil, verifyErr("id token claims: %w", err)
	}
	if c.AZP != "" && c.AZP != p.oauth.ClientID {
		p.log.Warn("oidc azp is another client", "azp", c.AZP)
		return nil, verifyErr("the id token was issued to client %q", c.AZP)
	}
	return &verified{token: t, Identity: Identity{
		Issuer: t.Issuer, Subject: t.Subject,
		Email: c.Email, EmailVerified: isTrue(c.EmailVerified),
		Name: c.Name, GivenName: c.GivenName, FamilyName: c.FamilyName,
		Groups: c.Groups, Roles: c.Roles,
		IDToken: raw, Claims: all, Expiry: t.Expiry,
	}}, nil
}

// isTrue reads email_verified as a boolean, or as the string "true" some
// OPs (older Cognito, some Azure B2C policies) send.
func isTrue(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s == "true" || s == `"true"`
}

func (p *Provider) checkDomain(id *Identity) error {
	if len(p.domains) == 0 {
		return nil
	}
	if id.Email == "" || !id.EmailVerified {
		p.log.Warn("oidc email not verified under a domain allow-list", "subject", id.Subject, "email", id.Email)
		return ErrUnverifiedEmail
	}
	at := strings.LastIndexByte(id.Email, '@')
	if at < 0 || !slices.Contains(p.domains, strings.ToLower(id.Email[at+1:])) {
		p.log.Warn("oidc email domain not allowed", "subject", id.Subject, "email", id.Email)
		return ErrDomain
	}
	return nil
}
