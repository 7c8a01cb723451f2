package accounts

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

// Locked reports whether u's account lockout is still running at now: its
// LockoutUntil is after now. A zero LockoutUntil is never locked.
func Locked(u *authz.User, now time.Time) bool { return u.LockoutUntil.After(now) }

// Unlock clears the failed sign-in count and the lockout of the account
// named by login (username or email), and every client address's count
// and lockout on it, so that its owner can sign in at once from anywhere;
// actor is recorded. It reports whether a lockout was running, the
// account's or an address's. It leaves the password, the security stamp
// and the sessions alone: an unlock ends nobody's session. When there was
// nothing to clear (no failures, no lockout) it audits nothing. A missing
// account gives authz.ErrNotFound. Unlocking an account an attacker is
// guessing at hands them a fresh set of attempts: unlock after the owner
// asks, not on a schedule.
//
// The account's own count is not enough to tell whether there is anything
// to clear: the owner signing in from one address resets it while other
// addresses stay locked out of the account.
func (s *Service) Unlock(ctx context.Context, login, actor string) (wasLocked bool, err error) {
	u, err := s.store.UserByLogin(ctx, login)
	if err != nil {
		return false, fmt.Errorf("accounts: unlock: %w", err)
	}
	now := s.now()
	addresses, locked, err := s.store.ResetSignInFailures(ctx, u.ID, now)
	if err != nil {
		return false, fmt.Errorf("accounts: unlock: %w", err)
	}
	if u.FailedCount == 0 && u.LockoutUntil.IsZero() && addresses == 0 {
		return false, nil
	}
	detail := "failed_count=" + strconv.Itoa(u.FailedCount)
	if !u.LockoutUntil.IsZero() {
		detail += " lockout_until=" + u.LockoutUntil.UTC().Format(time.RFC3339)
	}
	if addresses > 0 {
		detail += " addresses=" + strconv.Itoa(addresses) + " locked_addresses=" + strconv.Itoa(locked)
	}
	s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAccountUnlocked, Actor: actor, UserID: u.ID, Detail: detail})
	return Locked(u, now) || locked > 0, nil
}
