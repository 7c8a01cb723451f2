package tokens

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/crmgate/crmgate/authz"
)

// Peek returns the token behind secret when it has purpose and is
// outstanding, without spending it: a page that only shows a form for a
// link (the new-password form of a reset link) checks the link this way,
// so that a mail scanner fetching the link ahead of the user spends
// nothing. Every refusal is ErrInvalidToken, like Consume's, but it is
// neither logged nor audited (nothing happened to the token); callers on
// the request path must throttle refusals per client address all the same.
// Any other error is a store failure. Peek decides nothing: only Consume
// makes a token do its work.
func (s *Service) Peek(ctx context.Context, purpose Purpose, secret string) (*Token, error) {
	raw, ok := parseSecret(secret)
	if !ok || ValidatePurpose(purpose) != nil {
		return nil, ErrInvalidToken
	}
	hash := hashSecret(raw)
	t, err := s.store.TokenByHash(ctx, hash)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		return nil, ErrInvalidToken
	case err != nil:
		return nil, fmt.Errorf("tokens: peek %s: %w", purpose, err)
	}
	if subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(hash)) != 1 || t.Purpose != purpose || !t.Outstanding(s.now()) {
		return nil, ErrInvalidToken
	}
	return t, nil
}
