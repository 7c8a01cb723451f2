package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/tokens"
)

// TokenRevoker revokes a user's outstanding one-time tokens of a purpose;
// *tokens.Service satisfies it.
type TokenRevoker interface {
	RevokeForUser(ctx context.Context, userID string, purpose tokens.Purpose) (int64, error)
}

// PasswordChange says how SetUserPassword changes a password besides the
// hash. The zero value is an administrator's plain change: the must-change
// flag cleared, nothing else.
type PasswordChange struct {
	// Actor is recorded in the audit trail (a user id, "cli", "apikey:<id>").
	Actor string
	// MustChange leaves the account with the must-change flag set, so the
	// user must choose another password right after the next sign-in (an
	// administrator handing out a temporary password). False clears it.
	MustChange bool
	// ConfirmEmail also marks the email address confirmed: the user proved
	// they read mail sent to it (a set-password link).
	ConfirmEmail bool
	// Events, when set, builds outbox events stored in the same
	// transaction as the change, from the account as it will be saved
	// (typically the password_changed mail). An error aborts the change.
	Events func(u *authz.User) ([]outbox.Event, error)
	// How is the audit Detail: "reset", "change", "set_password", ...; empty
	// means "set".
	How string
}

// SetUserPassword checks pw against the password policy (Options.Policy,
// with the account's username and email) and makes it the password of the
// account with that id, as c says: it clears any lockout (of the account
// and of every address on it), sets or clears
// the must-change flag, rotates the security stamp (which ends every
// session of the user at its next stamp check), and saves it together with
// a lifecycle event and c.Events in one transaction. Then it revokes the
// user's outstanding reset_password and set_password tokens, so that no
// link mailed before the change works after it; a revocation that fails is
// logged and does not undo the change. It returns the account as saved. A
// refused password gives a *password.RuleError, which wraps a
// *authz.ValidationError; a missing account ErrNotFound.
func (s *Service) SetUserPassword(ctx context.Context, id, pw string, c PasswordChange) (*authz.User, error) {
	u0, err := s.store.UserByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("accounts: set password: %w", err)
	}
	if err := s.policy.Check(pw, password.Subject{Username: u0.Username, Email: u0.Email}); err != nil {
		return nil, err
	}
	h, err := password.Hash(pw, s.params)
	if err != nil {
		return nil, err
	}
	var saved *authz.User
	for range modifyAttempts {
		u, err := s.store.UserByID(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("accounts: set password: %w", err)
		}
		if u.Username != u0.Username || u.Email != u0.Email {
			// The policy was checked against the old names (it refuses a
			// password that contains them): check again.
			if err := s.policy.Check(pw, password.Subject{Username: u.Username, Email: u.Email}); err != nil {
				return nil, err
			}
			u0 = u
		}
		u.PasswordHash = h
		u.FailedCount, u.LockoutUntil = 0, time.Time{}
		u.MustChangePassword = c.MustChange
		if c.ConfirmEmail {
			u.EmailConfirmed = true
		}
		u.SecurityStamp = authz.NewID()
		ev, err := lifecycle.NewEvent(lifecycle.Updated, u, s.now())
		if err != nil {
			return nil, err
		}
		events := []outbox.Event{ev}
		if c.Events != nil {
			more, err := c.Events(u)
			if err != nil {
				return nil, fmt.Errorf("accounts: set password: %w", err)
			}
			events = append(events, more...)
		}
		err = s.store.UpdateUserAndEnqueue(ctx, u, events...)
		if errors.Is(err, authz.ErrStale) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("accounts: set password: %w", err)
		}
		saved = u
		break
	}
	if saved == nil {
		return nil, fmt.Errorf("accounts: set password: %w", authz.ErrStale)
	}
	s.notify()
	// The failures were against the old password: every address's lockout
	// on the account goes too, so that a user locked out by someone else's
	// guessing signs in after a reset.
	if _, _, err := s.store.ResetSignInFailures(ctx, saved.ID, s.now()); err != nil {
		s.log.ErrorContext(ctx, "password changed but the sign-in lockouts could not be cleared", "user_id", saved.ID, "err", err)
	}
	how := c.How
	if how == "" {
		how = "set"
	}
	s.audit.Record(ctx, audit.Event{Type: audit.EventPasswordSet, Actor: c.Actor, UserID: saved.ID, Detail: how})
	s.revokeLinks(ctx, saved.ID)
	return saved, nil
}

// revokeLinks revokes the reset and set-password links of userID after its
// password changed.
func (s *Service) revokeLinks(ctx context.Context, userID string) {
	if s.tokens == nil {
		return
	}
	for _, p := range []tokens.Purpose{tokens.PurposeResetPassword, tokens.PurposeSetPassword} {
		if _, err := s.tokens.RevokeForUser(ctx, userID, p); err != nil {
			s.log.ErrorContext(ctx, "password changed but its outstanding links could not be revoked", "user_id", userID, "purpose", string(p), "err", err)
		}
	}
}

// ForcePasswordChange sets the must-change flag of the account named by
// who (an id, else a username or email, as LookupUser) and rotates its
// security stamp, so that its sessions end and the next sign-in leads
// straight to the password change. A missing account gives ErrNotFound.
func (s *Service) ForcePasswordChange(ctx context.Context, who, actor string) (*authz.User, error) {
	u0, err := s.LookupUser(ctx, who)
	if err != nil {
		return nil, fmt.Errorf("accounts: force password change: %w", err)
	}
	u, err := s.modifyWith(ctx, func() (*authz.User, error) { return s.store.UserByID(ctx, u0.ID) }, lifecycle.Updated,
		func(u *authz.User) { u.MustChangePassword = true })
	if err != nil {
		return nil, fmt.Errorf("accounts: force password change: %w", err)
	}
	s.audit.Record(ctx, audit.Event{Type: audit.EventPasswordSet, Actor: actor, UserID: u.ID, Detail: "must_change"})
	return u, nil
}
