package signin

import (
	"context"
	"fmt"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/password"
)

// ReasonReauth marks, in the Detail of an audit.EventSignInFailed event, a
// wrong current password given to change the password (VerifyPassword).
const ReasonReauth = "reauth_wrong_password"

// VerifyPassword checks that pw is the current password of the signed-in
// user userID, for a form that asks for it again (the password change). It
// is counted exactly as a sign-in attempt is: the client address's
// throttle (*ThrottledError), the lockout of the address on the account
// and of the account (ErrInvalidCredentials without checking the
// password), and a wrong password counts as a failure towards both
// lockouts and is audited; a right one clears the address's failures. So
// a stolen session cannot be used to guess the password faster than the
// sign-in form allows. A missing account gives authz.ErrNotFound; any other
// error is a store failure.
func (s *Service) VerifyPassword(ctx context.Context, userID, pw, clientAddr string) error {
	now := s.now()
	if err := s.throttle(ctx, clientAddr, now); err != nil {
		return err
	}
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return fmt.Errorf("signin: verify password: %w", err)
	}
	ev := audit.Event{Time: now, Type: audit.EventSignInFailed, Actor: u.ID, UserID: u.ID, ClientAddr: clientAddr}
	client := throttleKey(clientAddr)
	attempt, err := s.store.BeginSignInAttempt(ctx, u.ID, client, now, s.limits)
	if err != nil {
		return fmt.Errorf("signin: verify password: %w", err)
	}
	if !attempt.Allowed {
		s.burn(pw)
		ev.Detail = attempt.Reason
		s.audit.Record(ctx, ev)
		return ErrInvalidCredentials
	}
	ok := false
	switch {
	case u.PasswordHash == "":
		s.burn(pw)
	case len(pw) > password.MaxBytes:
		s.burn("")
	default:
		ok, _, err = s.params.Verify(u.PasswordHash, pw)
		if err != nil {
			s.log.ErrorContext(ctx, "stored password hash unusable", "user_id", u.ID, "err", err)
			ok = false
		}
	}
	if !ok {
		ev.Detail = ReasonReauth
		s.audit.Record(ctx, ev)
		s.auditLockouts(ctx, u.ID, clientAddr, now, attempt)
		return ErrInvalidCredentials
	}
	if err := s.store.ClearSignInFailures(ctx, u.ID, client, now); err != nil {
		return fmt.Errorf("signin: verify password: %w", err)
	}
	return nil
}
