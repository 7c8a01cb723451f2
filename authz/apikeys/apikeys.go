// Package apikeys holds the credentials of the REST API's machine clients
// (a Power Automate flow, a script): scoped, expiring, revocable keys whose
// secret is shown once and stored only as a hash.
package apikeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/permissions"
)

// Scopes returns every scope an API key may carry, in canonical order: the
// permissions of package permissions, the same names that roles grant in
// the policy file. There is no admin scope, so a key can never manage
// other keys; a key holding users:write can manage accounts, so grant it
// as sparingly as the admin role.
func Scopes() []string { return permissions.All() }

// The reasons of an audit.EventAPIKeyRefused event.
const (
	RefusedWrongSecret = "wrong_secret"
	RefusedRevoked     = "revoked"
	RefusedExpired     = "expired"
)

// The shape of an API key: APIKeyPrefix, apiKeyIDLen characters of the id,
// "_", and the secret in unpadded base64url. The secret's alphabet includes
// "_", so keys are parsed by position, never split on "_".
const (
	// APIKeyPrefix starts every API key, so that a key found in a log or a
	// repository is recognisable (and scannable) as a crmgate secret.
	APIKeyPrefix = "cgk_"
	// MaxAPIKeyNameLen is the longest key name, in characters.
	MaxAPIKeyNameLen = 100
	// APIKeyTouchInterval is how stale LastUsedAt may get: a key in use is
	// written back at most once per interval rather than on every request.
	APIKeyTouchInterval = time.Minute

	apiKeyIDLen     = 12
	apiKeySecretLen = 32
	apiKeyLen       = len(APIKeyPrefix) + apiKeyIDLen + 1 + (apiKeySecretLen*8+5)/6
)

// ErrInvalidAPIKey is returned by AuthenticateAPIKey for every key it
// refuses: malformed, unknown, wrong secret, revoked or expired alike, so
// that the answer is no oracle for which part was wrong.
var ErrInvalidAPIKey = errors.New("apikeys: invalid API key")

// apiKeyIDEncoding writes key ids: lower-case base32, no padding.
var apiKeyIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// apiKeySecretEncoding reads and writes secrets. Strict refuses the
// non-canonical spellings of a secret (stray low bits in the last
// character), so each secret has exactly one accepted text.
var apiKeySecretEncoding = base64.RawURLEncoding.Strict()

// Key is a credential of a machine client of the REST API (for example a
// Power Automate flow). It never holds the secret itself, only its hash.
type Key struct {
	// ID identifies the key; it is the public middle part of the key text
	// and is safe to show and log.
	ID string `json:"id"`
	// Name says what the key is for; 1 to MaxAPIKeyNameLen printable characters.
	Name string `json:"name"`
	// SecretHash is the hex SHA-256 of the secret's bytes. It is never
	// serialised to JSON; treat it as sensitive all the same.
	SecretHash string `json:"-"`
	// Scopes are what the key allows, a subset of Scopes in canonical
	// order; a key with no scopes allows nothing. A key stored with a
	// scope name of an earlier version (users:bind, users:password,
	// users:invite) is read with the permission that replaces it; a name
	// no version knows is dropped and allows nothing.
	Scopes []string `json:"scopes"`
	// CreatedBy is the actor who created the key.
	CreatedBy string `json:"created_by"`
	// CreatedAt is when the key was created.
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the key last authenticated a request, at most
	// APIKeyTouchInterval stale; zero means never.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// RevokedAt is when the key was revoked; zero means it is not.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Store is the part of the account store API keys use.
type Store interface {
	// CreateAPIKey inserts k, whose ID and SecretHash the caller sets. A
	// zero CreatedAt is set by the store's clock; the stored times are
	// written back into k, truncated to milliseconds. An ID already in use
	// gives authz.ErrConflict.
	CreateAPIKey(ctx context.Context, k *Key) error
	// APIKeyByID returns the API key with that id, revoked or not, or
	// authz.ErrNotFound.
	APIKeyByID(ctx context.Context, id string) (*Key, error)
	// ListAPIKeys returns every API key, revoked and expired ones included,
	// oldest first.
	ListAPIKeys(ctx context.Context) ([]Key, error)
	// RevokeAPIKey sets the key's RevokedAt to at and reports true, unless
	// it is revoked already: then it changes nothing and reports false. A
	// missing key gives authz.ErrNotFound.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) (bool, error)
	// TouchAPIKey sets the key's LastUsedAt to at, but only when it is unset
	// or at least minInterval before at, so that replicas serving the same
	// key write it about once per minInterval. A missing key, or one used
	// more recently, is left alone without error.
	TouchAPIKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) error
}

// Service creates, lists, revokes and checks API keys. Build it with New;
// it is safe for concurrent use.
type Service struct {
	store Store
	audit *audit.Log
	now   func() time.Time
	log   *slog.Logger

	mu          sync.Mutex
	lastRefused map[string]time.Time // key id -> when its last refusal was audited; known ids only
}

// New returns the API key service over store, auditing to log. now nil
// means time.Now; logger nil discards failures the caller does not see.
func New(store Store, log *audit.Log, now func() time.Time, logger *slog.Logger) (*Service, error) {
	if store == nil || log == nil {
		return nil, errors.New("apikeys: nil store or audit log")
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, audit: log, now: now, log: logger, lastRefused: map[string]time.Time{}}, nil
}

// HasScope reports whether the key allows the permission scope. The key's
// scopes are read through permissions.Normalize, so an earlier version's
// name (users:bind) allows its replacement (bindings:write).
func (k *Key) HasScope(scope string) bool {
	ps, _ := permissions.Normalize(k.Scopes)
	return permissions.Valid(scope) && slices.Contains(ps, scope)
}

// normalize rewrites the scopes of a key read from the store as
// permissions (see Key.Scopes), logging a name that no version knows.
func (s *Service) normalize(ctx context.Context, k *Key) {
	ps, unknown := permissions.Normalize(k.Scopes)
	if len(unknown) > 0 {
		s.log.WarnContext(ctx, "API key carries unknown scopes; they allow nothing", "api_key_id", k.ID, "scopes", unknown)
	}
	k.Scopes = ps
}

// Usable reports whether the key is neither revoked nor expired at now.
func (k *Key) Usable(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// CreateAPIKey creates a key named name that allows scopes and, unless
// expiresAt is zero, stops working at expiresAt; actor is recorded. It
// returns the full key text, which is shown this once and cannot be
// recovered later (only its hash is stored), and the stored key. Bad input
// gives a *ValidationError.
func (s *Service) CreateAPIKey(ctx context.Context, name string, scopes []string, expiresAt time.Time, actor string) (string, Key, error) {
	now := apiKeyTime(s.now())
	name = strings.TrimSpace(name)
	if err := ValidateAPIKeyName(name); err != nil {
		return "", Key{}, err
	}
	scopes, err := ValidateAPIKeyScopes(scopes)
	if err != nil {
		return "", Key{}, err
	}
	expiresAt = apiKeyTime(expiresAt)
	if !expiresAt.IsZero() && !expiresAt.After(now) {
		return "", Key{}, &authz.ValidationError{Field: "expires_at", Message: "The expiry time must be in the future."}
	}
	// An id collision (60 random bits) is all but impossible; a retry
	// makes it harmless rather than an error.
	for range 3 {
		secret := make([]byte, apiKeySecretLen)
		_, _ = rand.Read(secret) // never fails (crypto/rand.Read documents it)
		k := Key{
			ID:         newAPIKeyID(),
			Name:       name,
			SecretHash: hashAPIKeySecret(secret),
			Scopes:     scopes,
			CreatedBy:  actor,
			CreatedAt:  now,
			ExpiresAt:  expiresAt,
		}
		err := s.store.CreateAPIKey(ctx, &k)
		if errors.Is(err, authz.ErrConflict) {
			continue
		}
		if err != nil {
			return "", Key{}, fmt.Errorf("apikeys: create API key: %w", err)
		}
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAPIKeyCreated, Actor: actor, Detail: k.ID + " " + strings.Join(k.Scopes, ",")})
		return APIKeyPrefix + k.ID + "_" + apiKeySecretEncoding.EncodeToString(secret), k, nil
	}
	return "", Key{}, fmt.Errorf("apikeys: create API key: %w", authz.ErrConflict)
}

// ListAPIKeys returns every API key, revoked and expired ones included,
// oldest first. The keys carry their SecretHash; do not show it.
func (s *Service) ListAPIKeys(ctx context.Context) ([]Key, error) {
	ks, err := s.store.ListAPIKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("apikeys: list API keys: %w", err)
	}
	for i := range ks {
		s.normalize(ctx, &ks[i])
	}
	return ks, nil
}

// RevokeAPIKey revokes the key with that id at once and for good; actor is
// recorded. Revoking a revoked key changes nothing and is not an error. An
// unknown id gives ErrNotFound.
func (s *Service) RevokeAPIKey(ctx context.Context, id, actor string) error {
	now := s.now()
	changed, err := s.store.RevokeAPIKey(ctx, id, now)
	if err != nil {
		return fmt.Errorf("apikeys: revoke API key: %w", err)
	}
	if changed {
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAPIKeyRevoked, Actor: actor, Detail: id})
	}
	return nil
}

// AuthenticateAPIKey checks a key as presented by a client (for example the
// token of an "Authorization: Bearer" header) and returns the stored key.
// Every refusal is ErrInvalidAPIKey; any other error is a store failure.
// The secret's hash is compared in constant time. A successful check
// records LastUsedAt and audits audit.EventAPIKeyUsed, both at most once
// per APIKeyTouchInterval; a failure to record them is logged, not
// returned. Every refusal is logged (with the key id when the key text has
// one, never the secret); the refusal of a known key (wrong secret,
// revoked, expired) is also audited as audit.EventAPIKeyRefused, at most
// once per key per APIKeyTouchInterval, so that a client retrying a dead
// key cannot flood the audit table.
func (s *Service) AuthenticateAPIKey(ctx context.Context, presented string) (*Key, error) {
	id, secret, ok := parseAPIKey(presented)
	if !ok {
		s.log.WarnContext(ctx, "API key refused", "reason", "malformed")
		return nil, ErrInvalidAPIKey
	}
	k, err := s.store.APIKeyByID(ctx, id)
	if errors.Is(err, authz.ErrNotFound) {
		// Do the same hashing as for a known id. The id itself is not
		// secret; this only keeps the work uniform.
		apiKeySecretMatches(secret, strings.Repeat("0", sha256.Size*2))
		s.log.WarnContext(ctx, "API key refused", "api_key_id", id, "reason", "unknown")
		return nil, ErrInvalidAPIKey
	}
	if err != nil {
		return nil, fmt.Errorf("apikeys: authenticate API key: %w", err)
	}
	s.normalize(ctx, k)
	now := s.now()
	reason := ""
	switch {
	case !apiKeySecretMatches(secret, k.SecretHash):
		reason = RefusedWrongSecret
	case !k.RevokedAt.IsZero():
		reason = RefusedRevoked
	case !k.Usable(now):
		reason = RefusedExpired
	}
	if reason != "" {
		s.refused(ctx, k.ID, reason, now)
		return nil, ErrInvalidAPIKey
	}
	if k.LastUsedAt.IsZero() || now.Sub(k.LastUsedAt) >= APIKeyTouchInterval {
		if err := s.store.TouchAPIKey(ctx, k.ID, now, APIKeyTouchInterval); err != nil {
			s.log.WarnContext(ctx, "API key last use not recorded", "api_key_id", k.ID, "err", err)
		} else {
			k.LastUsedAt = apiKeyTime(now)
			s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAPIKeyUsed, Actor: "apikey:" + k.ID, Detail: k.ID})
		}
	}
	return k, nil
}

// refused logs the refusal of the known key id and audits it unless one of
// its refusals was audited less than APIKeyTouchInterval before now.
func (s *Service) refused(ctx context.Context, id, reason string, now time.Time) {
	s.log.WarnContext(ctx, "API key refused", "api_key_id", id, "reason", reason)
	s.mu.Lock()
	last, seen := s.lastRefused[id]
	record := !seen || now.Sub(last) >= APIKeyTouchInterval || now.Before(last)
	if record {
		s.lastRefused[id] = now
	}
	s.mu.Unlock()
	if record {
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAPIKeyRefused, Actor: "apikey:" + id, Detail: id + " " + reason})
	}
}

// ValidateAPIKeyName checks a key name: 1 to MaxAPIKeyNameLen printable
// characters (letters of any script, digits, punctuation, symbols, ASCII
// spaces) of valid UTF-8.
func ValidateAPIKeyName(name string) error {
	bad := &authz.ValidationError{Field: "name",
		Message: fmt.Sprintf("The name must be 1 to %d printable characters.", MaxAPIKeyNameLen)}
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxAPIKeyNameLen {
		return bad
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return bad
		}
	}
	return nil
}

// ValidateAPIKeyScopes checks that scopes is a non-empty list of Scopes
// and returns it without duplicates, in canonical order. An earlier
// version's name (users:bind) is accepted and replaced by its permission
// (bindings:write), so that scripts written for it keep working.
func ValidateAPIKeyScopes(scopes []string) ([]string, error) {
	bad := &authz.ValidationError{Field: "scopes",
		Message: "Give one or more of the scopes " + strings.Join(Scopes(), ", ") + "."}
	ps, unknown := permissions.Normalize(scopes)
	if len(ps) == 0 || len(unknown) > 0 {
		return nil, bad
	}
	return ps, nil
}

// parseAPIKey splits a presented key into its id and the decoded secret.
// It reads by position, since the secret may itself contain "_".
func parseAPIKey(presented string) (id string, secret []byte, ok bool) {
	if len(presented) != apiKeyLen || !strings.HasPrefix(presented, APIKeyPrefix) {
		return "", nil, false
	}
	rest := presented[len(APIKeyPrefix):]
	id, sep, enc := rest[:apiKeyIDLen], rest[apiKeyIDLen], rest[apiKeyIDLen+1:]
	if sep != '_' {
		return "", nil, false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", nil, false
		}
	}
	secret, err := apiKeySecretEncoding.DecodeString(enc)
	if err != nil || len(secret) != apiKeySecretLen {
		return "", nil, false
	}
	return id, secret, true
}

// hashAPIKeySecret returns the hex SHA-256 of a secret. A fast, unsalted
// hash is enough here, unlike for passwords: the secret is 256 bits from
// crypto/rand, so there is no dictionary to try and a brute-force search is
// hopeless however cheap each guess is. argon2id's cost exists to slow the
// guessing of low-entropy human passwords and would only add latency (and a
// denial-of-service lever) to every API request.
func hashAPIKeySecret(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:])
}

// apiKeySecretMatches reports whether secret hashes to storedHash,
// comparing in constant time so that the time taken reveals nothing about
// how much of the hash matched.
func apiKeySecretMatches(secret []byte, storedHash string) bool {
	return subtle.ConstantTimeCompare([]byte(hashAPIKeySecret(secret)), []byte(storedHash)) == 1
}

// newAPIKeyID returns apiKeyIDLen random lower-case base32 characters (60 bits).
func newAPIKeyID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read documents it)
	return apiKeyIDEncoding.EncodeToString(b)[:apiKeyIDLen]
}

// apiKeyTime truncates t to the millisecond precision the store keeps and
// converts it to UTC; the zero time stays zero.
func apiKeyTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}
