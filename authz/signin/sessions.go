package signin

import (
	"context"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
)

// EndSession revokes a session at sign-out, so that a copy of its cookie
// stops working, and audits the sign-out. expiresAt is the latest time the
// session could have lived; the revocation is kept until then.
func (s *Service) EndSession(ctx context.Context, sessionID, userID, clientAddr string, expiresAt time.Time) error {
	if err := s.store.RevokeSession(ctx, sessionID, userID, expiresAt); err != nil {
		return err
	}
	s.audit.Record(ctx, audit.Event{Type: audit.EventSignOut, Actor: userID, UserID: userID, ClientAddr: clientAddr})
	return nil
}

// SessionRevoked reports whether the session was ended by EndSession.
func (s *Service) SessionRevoked(ctx context.Context, sessionID string) (bool, error) {
	return s.store.SessionRevoked(ctx, sessionID)
}
