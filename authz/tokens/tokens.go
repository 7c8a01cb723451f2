// Package tokens holds crmgate's one-time tokens: the secrets behind the
// links of email confirmation, password reset, set-password mails and
// invitations. A secret is 256 bits from crypto/rand, given to the caller
// once as URL-safe text; the store keeps only its SHA-256, looks tokens up
// by that hash, and consumes each token at most once, also when two
// replicas try at the same moment.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/outbox"
)

// Purpose says what a token is for. A token consumed for another purpose
// than the one it was issued for is refused, so that a reset link cannot
// confirm an email address or redeem an invitation.
type Purpose string

// The purposes crmgate issues tokens for.
const (
	// PurposeConfirmEmail confirms the email address of a new account.
	PurposeConfirmEmail Purpose = "confirm_email"
	// PurposeResetPassword lets a user who forgot the password set a new one.
	PurposeResetPassword Purpose = "reset_password"
	// PurposeSetPassword lets a user whose account an administrator
	// created (for example by generating credentials) set a first password.
	PurposeSetPassword Purpose = "set_password"
	// PurposeInvitation redeems a crmgate invitation; its user id may be
	// empty when the invitation is for an address without an account.
	PurposeInvitation Purpose = "invitation"
)

// Limits of a token.
const (
	// SecretBytes is the size of a secret: 256 bits.
	SecretBytes = 32
	// SecretLen is the length of a secret's text, unpadded base64url.
	SecretLen = (SecretBytes*8 + 5) / 6
	// MaxPayload is the largest payload, in bytes of JSON.
	MaxPayload = 4096
	// MaxPurposeLen is the longest purpose name, in bytes.
	MaxPurposeLen = 64
	// MaxTTL is the longest lifetime a token may be issued with.
	MaxTTL = 366 * 24 * time.Hour
)

// The reasons of an audit.EventTokenRefused event and of the log line of
// a refusal. Callers and users only ever see ErrInvalidToken.
const (
	RefusedMalformed    = "malformed"
	RefusedUnknown      = "unknown"
	RefusedWrongPurpose = "wrong_purpose"
	RefusedUsed         = "used"
	RefusedRevoked      = "revoked"
	RefusedExpired      = "expired"
)

// ErrInvalidToken is returned by Consume for every secret it refuses:
// malformed, unknown, of another purpose, used, revoked or expired alike,
// so that the answer is no oracle for which it was. The audit trail and the
// log say which.
var ErrInvalidToken = errors.New("tokens: invalid or expired token")

// secretEncoding reads and writes secrets. Strict refuses non-canonical
// spellings (stray low bits in the last character), so each secret has
// exactly one accepted text.
var secretEncoding = base64.RawURLEncoding.Strict()

// Token is a one-time token as stored. It never holds the secret itself.
type Token struct {
	// ID identifies the token; it is assigned by the store, grows with
	// every token, and is safe to show and log.
	ID int64 `json:"id"`
	// Purpose is what the token is for.
	Purpose Purpose `json:"purpose"`
	// UserID is the account the token is for; empty for an invitation to
	// an address without an account.
	UserID string `json:"user_id,omitempty"`
	// SecretHash is the hex SHA-256 of the secret's bytes. It is never
	// serialised to JSON; treat it as sensitive all the same.
	SecretHash string `json:"-"`
	// Payload is the caller's small JSON document (at most MaxPayload
	// bytes), for example the address being confirmed; nil means none.
	Payload json.RawMessage `json:"payload,omitempty"`
	// CreatedAt is when the token was issued.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the token stops working; never zero.
	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt is when the token was consumed; zero while unused.
	UsedAt time.Time `json:"used_at,omitzero"`
	// RevokedAt is when the token was revoked (by RevokeForUser or by a
	// newer token of the same user and purpose); zero when it was not.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Outstanding reports whether the token can still be consumed at now:
// neither used nor revoked, and not expired.
func (t *Token) Outstanding(now time.Time) bool {
	return t.UsedAt.IsZero() && t.RevokedAt.IsZero() && now.Before(t.ExpiresAt)
}

// Store is the part of the account store tokens use; *store.DB implements
// it on SQLite and PostgreSQL.
type Store interface {
	// IssueToken inserts t (whose Purpose, SecretHash, CreatedAt and
	// ExpiresAt the caller sets) and sets t.ID. When keep is positive and
	// t.UserID is not empty, it also revokes, at t.CreatedAt, the
	// outstanding tokens of that user and purpose other than the keep
	// newest (t included). events are enqueued in the outbox. All of it
	// happens in one transaction, and concurrent issues for one user and
	// purpose are serialised, so that at most keep stay outstanding. An
	// unknown non-empty UserID gives authz.ErrNotFound; a SecretHash in use
	// gives authz.ErrConflict.
	IssueToken(ctx context.Context, t *Token, keep int, events ...outbox.Event) error
	// ConsumeToken marks the token whose secret hashes to hash used at at,
	// in one conditional statement, if it has that purpose and is
	// outstanding at at, and returns it. Of concurrent calls for one token
	// exactly one succeeds. Any other case gives authz.ErrNotFound.
	ConsumeToken(ctx context.Context, purpose Purpose, hash string, at time.Time) (*Token, error)
	// TokenByHash returns the token whose secret hashes to hash, in any
	// state, or authz.ErrNotFound. It only serves to explain a refusal.
	TokenByHash(ctx context.Context, hash string) (*Token, error)
	// RevokeTokens revokes at at every outstanding token of userID with
	// purpose, or of any purpose when purpose is empty, and returns how
	// many it revoked.
	RevokeTokens(ctx context.Context, userID string, purpose Purpose, at time.Time) (int64, error)
	// SweepTokens deletes the tokens that expired, were used or were
	// revoked before before, and returns how many.
	SweepTokens(ctx context.Context, before time.Time) (int64, error)
}

// Options configure a Service.
type Options struct {
	// Audit receives the issued, consumed, refused and revoked events.
	// Required.
	Audit *audit.Log
	// MaxOutstanding is how many unused tokens of one purpose a user may
	// hold: issuing one more revokes the oldest, so that resending a link
	// cannot pile them up, and only the newest links work. Zero means no
	// cap, which lets every link ever sent stay valid until it expires.
	MaxOutstanding int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per refusal (with its reason, never the
	// secret) and failures callers do not see; nil discards them.
	Logger *slog.Logger
}

// Service issues, consumes and revokes one-time tokens. Build it with New;
// it is safe for concurrent use.
type Service struct {
	store Store
	audit *audit.Log
	keep  int
	now   func() time.Time
	log   *slog.Logger
}

// New returns the token service over store.
func New(store Store, o Options) (*Service, error) {
	if store == nil || o.Audit == nil {
		return nil, errors.New("tokens: nil store or audit log")
	}
	if o.MaxOutstanding < 0 {
		return nil, errors.New("tokens: negative MaxOutstanding")
	}
	s := &Service{store: store, audit: o.Audit, keep: o.MaxOutstanding, now: o.Now, log: o.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Issue creates a token for purpose and userID (empty for an invitation
// to an address) that expires ttl from now and carries payload (nil for
// none). It returns the secret, URL-safe text that is given out this once
// and cannot be recovered later (only its hash is stored), and the stored
// token. The caller chooses ttl per purpose (for example 24 hours to
// confirm an email, 1 hour to reset a password). Bad input gives a
// *authz.ValidationError.
func (s *Service) Issue(ctx context.Context, purpose Purpose, userID string, ttl time.Duration, payload json.RawMessage) (string, Token, error) {
	return s.IssueWith(ctx, purpose, userID, ttl, payload, nil)
}

// IssueWith is Issue that also enqueues, in the same transaction, the
// outbox events that events builds from the secret (typically the mail
// that carries the link), so that a token is never issued without its
// mail nor a mail sent for a token that was rolled back. events nil
// enqueues nothing. The events hold whatever events puts there: a link in
// a mail event is a live secret until the event is delivered and purged.
func (s *Service) IssueWith(ctx context.Context, purpose Purpose, userID string, ttl time.Duration, payload json.RawMessage,
	events func(secret string) ([]outbox.Event, error)) (string, Token, error) {
	// A hash collision of 256 random bits does not happen; the retry only
	// makes a broken random source fail loudly rather than reuse a secret.
	for range 3 {
		secret, t, err := s.Prepare(purpose, userID, ttl, payload)
		if err != nil {
			return "", Token{}, err
		}
		var evs []outbox.Event
		if events != nil {
			if evs, err = events(secret); err != nil {
				return "", Token{}, fmt.Errorf("tokens: issue %s: %w", purpose, err)
			}
		}
		err = s.store.IssueToken(ctx, &t, s.Keep(userID), evs...)
		if errors.Is(err, authz.ErrConflict) {
			continue
		}
		if err != nil {
			return "", Token{}, fmt.Errorf("tokens: issue %s: %w", purpose, err)
		}
		s.Issued(ctx, t)
		return secret, t, nil
	}
	return "", Token{}, fmt.Errorf("tokens: issue %s: %w", purpose, authz.ErrConflict)
}

// Prepare makes a token as Issue would, without storing it: for a caller
// whose own store method inserts it in the same transaction as other
// changes (registration creates the account, its token and its mail at
// once). It returns the secret and the token to insert, validated like
// Issue's; the caller passes Keep(userID) to the store, calls Issued once
// it is stored, and must treat the secret as Issue's.
func (s *Service) Prepare(purpose Purpose, userID string, ttl time.Duration, payload json.RawMessage) (string, Token, error) {
	if err := ValidatePurpose(purpose); err != nil {
		return "", Token{}, err
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", Token{}, &authz.ValidationError{Field: "ttl", Message: fmt.Sprintf("The lifetime must be positive and at most %v.", MaxTTL)}
	}
	if len(payload) > MaxPayload || (len(payload) > 0 && !json.Valid(payload)) {
		return "", Token{}, &authz.ValidationError{Field: "payload", Message: fmt.Sprintf("The payload must be JSON of at most %d bytes.", MaxPayload)}
	}
	if len(payload) == 0 {
		payload = nil
	}
	if !authz.Printable(userID) || len(userID) > 128 {
		return "", Token{}, &authz.ValidationError{Field: "user_id", Message: "The user id must be printable text."}
	}
	now := truncate(s.now())
	raw := make([]byte, SecretBytes)
	_, _ = rand.Read(raw) // never fails (crypto/rand.Read documents it)
	return secretEncoding.EncodeToString(raw), Token{Purpose: purpose, UserID: userID, SecretHash: hashSecret(raw), Payload: payload,
		CreatedAt: now, ExpiresAt: truncate(now.Add(ttl))}, nil
}

// Keep is the keep argument of Store.IssueToken for a token of userID:
// Options.MaxOutstanding, or 0 (no revocation) for a token without a user.
func (s *Service) Keep(userID string) int {
	if userID == "" {
		return 0
	}
	return s.keep
}

// Issued audits audit.EventTokenIssued for t, a token stored by the
// caller after Prepare (Issue and IssueWith audit their own).
func (s *Service) Issued(ctx context.Context, t Token) {
	s.audit.Record(ctx, audit.Event{Time: t.CreatedAt, Type: audit.EventTokenIssued, UserID: t.UserID,
		Detail: detail(t.Purpose, t.ID, "expires "+t.ExpiresAt.Format(time.RFC3339))})
}

// Consume spends the token behind secret for purpose and returns it: once.
// Of any number of concurrent calls with one secret, on any number of
// replicas, exactly one succeeds. Every refusal is ErrInvalidToken, whatever
// the reason, which is logged and audited as audit.EventTokenRefused (never
// the secret); any other error is a store failure. A refused secret spends
// nothing: a token presented for the wrong purpose stays usable for its
// own. Callers on the request path must throttle refusals per client
// address (issue 10, item 12), since each is audited and logged.
func (s *Service) Consume(ctx context.Context, purpose Purpose, secret string) (*Token, error) {
	now := s.now()
	raw, ok := parseSecret(secret)
	if !ok || ValidatePurpose(purpose) != nil {
		s.refused(ctx, purpose, nil, RefusedMalformed, now)
		return nil, ErrInvalidToken
	}
	hash := hashSecret(raw)
	t, err := s.store.ConsumeToken(ctx, purpose, hash, now)
	if err == nil && t.Purpose == purpose && subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(hash)) == 1 {
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventTokenConsumed, UserID: t.UserID, Detail: detail(purpose, t.ID, "")})
		return t, nil
	}
	if err != nil && !errors.Is(err, authz.ErrNotFound) {
		return nil, fmt.Errorf("tokens: consume %s: %w", purpose, err)
	}
	if err == nil {
		// The store returned a row that does not match what was asked:
		// a broken store, never a reason to let the token through.
		s.log.ErrorContext(ctx, "token store returned a token that does not match the request", "token_id", t.ID)
		return nil, ErrInvalidToken
	}
	// Explain the refusal for the audit trail; the caller learns nothing.
	t, err = s.store.TokenByHash(ctx, hash)
	reason := RefusedUnknown
	switch {
	case errors.Is(err, authz.ErrNotFound):
		t = nil
	case err != nil:
		s.log.WarnContext(ctx, "token refusal not explained", "purpose", string(purpose), "err", err)
		t = nil
	case subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(hash)) != 1:
		t = nil
	case t.Purpose != purpose:
		reason = RefusedWrongPurpose
	case !t.UsedAt.IsZero():
		reason = RefusedUsed
	case !t.RevokedAt.IsZero():
		reason = RefusedRevoked
	default:
		reason = RefusedExpired
	}
	s.refused(ctx, purpose, t, reason, now)
	return nil, ErrInvalidToken
}

// refused logs and audits a refusal; t is the token when one was found.
func (s *Service) refused(ctx context.Context, purpose Purpose, t *Token, reason string, now time.Time) {
	var id int64
	userID := ""
	if t != nil {
		id, userID = t.ID, t.UserID
	}
	s.log.WarnContext(ctx, "token refused", "purpose", printablePurpose(purpose), "token_id", id, "user_id", userID, "reason", reason)
	s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventTokenRefused, UserID: userID,
		Detail: detail(printablePurpose(purpose), id, reason)})
}

// RevokeForUser kills every outstanding token of userID with purpose, or
// of every purpose when purpose is empty (a password change kills the
// reset and set-password links; a deleted address kills its confirmation
// links). It returns how many it revoked and audits
// audit.EventTokenRevoked when there were any.
func (s *Service) RevokeForUser(ctx context.Context, userID string, purpose Purpose) (int64, error) {
	if userID == "" {
		return 0, &authz.ValidationError{Field: "user_id", Message: "A user id is required."}
	}
	if purpose != "" {
		if err := ValidatePurpose(purpose); err != nil {
			return 0, err
		}
	}
	now := s.now()
	n, err := s.store.RevokeTokens(ctx, userID, purpose, now)
	if err != nil {
		return 0, fmt.Errorf("tokens: revoke: %w", err)
	}
	if n > 0 {
		what := string(purpose)
		if what == "" {
			what = "all"
		}
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventTokenRevoked, UserID: userID, Detail: what + " " + strconv.FormatInt(n, 10)})
	}
	return n, nil
}

// Sweep deletes the tokens that expired, were used or were revoked more
// than retain ago, and returns how many. Keeping them for a while (retain)
// lets the audit trail tell a reused link from an unknown one; a sweep
// never deletes an outstanding token. Run it periodically from one place.
func (s *Service) Sweep(ctx context.Context, retain time.Duration) (int64, error) {
	if retain < 0 {
		return 0, errors.New("tokens: negative retention")
	}
	n, err := s.store.SweepTokens(ctx, s.now().Add(-retain))
	if err != nil {
		return 0, fmt.Errorf("tokens: sweep: %w", err)
	}
	return n, nil
}

// ValidatePurpose checks that p is a purpose name: 1 to MaxPurposeLen
// characters of lower-case ASCII letters, digits and "_".
func ValidatePurpose(p Purpose) error {
	if p == "" || len(p) > MaxPurposeLen {
		return &authz.ValidationError{Field: "purpose", Message: "The token purpose must be 1 to 64 characters a-z, 0-9 and _."}
	}
	for _, c := range []byte(p) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return &authz.ValidationError{Field: "purpose", Message: "The token purpose must be 1 to 64 characters a-z, 0-9 and _."}
		}
	}
	return nil
}

// printablePurpose is p when it is a valid purpose name and "invalid"
// otherwise, so that a caller's bad value never reaches a log line.
func printablePurpose(p Purpose) Purpose {
	if ValidatePurpose(p) != nil {
		return "invalid"
	}
	return p
}

// detail formats the Detail of a token audit event: the purpose, the token
// id when known, and extra.
func detail(p Purpose, id int64, extra string) string {
	d := string(p)
	if id != 0 {
		d += " " + strconv.FormatInt(id, 10)
	}
	if extra != "" {
		d += " " + extra
	}
	return d
}

// parseSecret decodes a presented secret: exactly SecretLen characters of
// canonical unpadded base64url standing for SecretBytes bytes.
func parseSecret(secret string) ([]byte, bool) {
	if len(secret) != SecretLen {
		return nil, false
	}
	raw, err := secretEncoding.DecodeString(secret)
	if err != nil || len(raw) != SecretBytes {
		return nil, false
	}
	return raw, true
}

// hashSecret returns the hex SHA-256 of a secret. A fast, unsalted hash is
// enough: the secret is 256 bits from crypto/rand, so there is nothing to
// guess from a dictionary and a brute-force search is hopeless however
// cheap each try (the reasoning of apikeys, for the same kind of secret).
func hashSecret(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// truncate converts t to UTC at the millisecond precision the store keeps.
func truncate(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }
