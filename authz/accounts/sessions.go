package accounts

import (
	"context"
	"fmt"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
)

// EventSessionsRevoked is the audit type of RevokeSessions: an
// administrator (or an API key) ended every session of a user, who stays
// able to sign in again. Detail is empty.
const EventSessionsRevoked = "user.sessions_revoked"

// RevokeSessions ends every session of the account named by who (an id,
// else a username or email, as LookupUser) on every replica: it rotates
// the account's security stamp and saves it with a lifecycle.Updated
// event, so that each session is refused at its next stamp check here and
// the session feed tells the other replicas at once. It changes nothing
// else: the password, the status and any lockout stay, and the user may
// sign in again at once (lock the account to keep them out). actor is
// recorded. A missing account gives an error wrapping authz.ErrNotFound;
// it returns the account as saved.
func (s *Service) RevokeSessions(ctx context.Context, who, actor string) (*authz.User, error) {
	u0, err := s.LookupUser(ctx, who)
	if err != nil {
		return nil, fmt.Errorf("accounts: revoke sessions: %w", err)
	}
	// modifyWith rotates the stamp; the change itself is empty, so the
	// break-glass guard never has anything to refuse.
	u, err := s.modifyWith(ctx, func() (*authz.User, error) { return s.store.UserByID(ctx, u0.ID) }, lifecycle.Updated,
		func(*authz.User) {})
	if err != nil {
		return nil, fmt.Errorf("accounts: revoke sessions: %w", err)
	}
	s.log.InfoContext(ctx, "sessions revoked", "user_id", u.ID, "actor", actor)
	s.audit.Record(ctx, audit.Event{Type: EventSessionsRevoked, Actor: actor, UserID: u.ID})
	return u, nil
}
