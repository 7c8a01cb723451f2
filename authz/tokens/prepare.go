package tokens

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

// Prepare validates a token as Issue would and returns its secret and the
// token to store, without storing it: for a caller whose store writes the
// token in the same transaction as other rows (an account created for a
// contact together with its set-password token and mail). userID must be
// the id the account will have. The caller stores the token (its
// SecretHash, Purpose, UserID, Payload, CreatedAt and ExpiresAt) and, once
// committed, calls Issued. Bad input gives a *authz.ValidationError.
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
	if userID == "" || !authz.Printable(userID) || len(userID) > 128 {
		return "", Token{}, &authz.ValidationError{Field: "user_id", Message: "The user id must be printable text."}
	}
	now := truncate(s.now())
	raw := make([]byte, SecretBytes)
	_, _ = rand.Read(raw) // never fails (crypto/rand.Read documents it)
	return secretEncoding.EncodeToString(raw), Token{Purpose: purpose, UserID: userID, SecretHash: hashSecret(raw),
		Payload: payload, CreatedAt: now, ExpiresAt: truncate(now.Add(ttl))}, nil
}

// Issued audits a token that Prepare made and the caller stored, as Issue
// audits the tokens it stores.
func (s *Service) Issued(ctx context.Context, t Token) {
	s.audit.Record(ctx, audit.Event{Time: t.CreatedAt, Type: audit.EventTokenIssued, UserID: t.UserID,
		Detail: detail(t.Purpose, t.ID, "expires "+t.ExpiresAt.Format(time.RFC3339))})
}
