package signin

import (
	"errors"
	"time"
)

// The lockout is designed so that knowing a username is not enough to keep
// its owner out, while guessing its password stays slow from one address
// and from many.
//
// Failures are counted twice, atomically in the store before any password
// is checked: per (account, client address), and per account across
// addresses.
//
//   - An address that fails Limits.ClientMaxFailures times on an account is
//     locked out of that account alone for Limits.LockFor: its next
//     attempts there are refused without a password check (the dummy hash
//     is verified instead, so the answer takes as long). Other addresses,
//     the owner's among them, are not affected. Together with the
//     per-address throttle across accounts (Options.ClientRate), this
//     slows the failing address down.
//   - An account that collects Limits.AccountMaxFailures failures from all
//     addresses within Limits.LockFor is soft-locked for Limits.LockFor:
//     while it lasts, an address that failed on the account within the
//     window gets no further password check, but an address with no
//     recent failure on it still gets one, so the owner's correct password
//     from their own network passes during an attack. A spray from many
//     addresses therefore gets at most one guess per fresh address while
//     the soft lock lasts, instead of ClientMaxFailures each.
//
// This follows Authelia's regulation, which can ban by user and by IP
// (https://www.authelia.com/configuration/security/regulation/), and the
// OWASP Authentication Cheat Sheet's warning that a lockout keyed on the
// account alone lets an attacker deny service to its owner
// (https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html#account-lockout).
// What it cannot do: an owner whose own address failed on the account in
// the last LockFor (a typo, say) waits for the soft lock to end, or signs
// in from another network; and an attacker with very many addresses gets
// one guess from each, bounded by the rate each address may make.

// Counter is one failure count of the lockout: an account's across
// addresses, or one address's on one account. The zero value is no
// failures.
type Counter struct {
	// Failures is the number of failed attempts in the current window.
	Failures int
	// LastFailure is when the last one was counted; zero when none.
	LastFailure time.Time
	// LockoutUntil is the end of the lockout; zero when not locked.
	LockoutUntil time.Time
}

// Limits are the lockout's thresholds; every field is required.
type Limits struct {
	// ClientMaxFailures is the number of failures from one client address
	// that locks that address out of the account, at least 1.
	ClientMaxFailures int
	// AccountMaxFailures is the number of failures from all addresses
	// that soft-locks the account, at least 1.
	AccountMaxFailures int
	// LockFor is how long a lockout lasts and how long a failure is
	// remembered; positive.
	LockFor time.Duration
}

// Validate reports a limit that is out of range.
func (l Limits) Validate() error {
	var errs []error
	if l.ClientMaxFailures < 1 {
		errs = append(errs, errors.New("signin: MaxFailures must be at least 1"))
	}
	if l.AccountMaxFailures < 1 {
		errs = append(errs, errors.New("signin: AccountMaxFailures must be at least 1"))
	}
	if l.LockFor <= 0 {
		errs = append(errs, errors.New("signin: LockoutDuration must be positive"))
	}
	return errors.Join(errs...)
}

// count returns c with one more failure at now and whether the attempt may
// check a password. While a lockout lasts the failure is counted but the
// lockout is not extended. Once a lockout has passed, or the last failure
// is LockFor old, the count starts again at 1. The failure that reaches
// max sets the lockout to now+lockFor; that attempt may still check its
// password (a correct one clears the count), every further one may not. A
// clock that went back never makes a lockout last longer than lockFor from
// now.
func (c Counter) count(now time.Time, max int, lockFor time.Duration) (Counter, bool) {
	if limit := now.Add(lockFor); c.LockoutUntil.After(limit) {
		c.LockoutUntil = limit
	}
	if c.LastFailure.After(now) {
		c.LastFailure = now
	}
	if now.Before(c.LockoutUntil) {
		c.Failures++
		c.LastFailure = now
		return c, false
	}
	if !c.LockoutUntil.IsZero() || !now.Before(c.LastFailure.Add(lockFor)) {
		c = Counter{}
	}
	c.Failures++
	c.LastFailure = now
	if c.Failures >= max {
		c.LockoutUntil = now.Add(lockFor)
	}
	return c, true
}

// AfterSuccess returns what an account's counter becomes when a password
// was right at now: no failures, unless a soft lock is in effect, which
// stays until it ends, since the owner signing in from their own address
// says nothing about the addresses still guessing.
func (c Counter) AfterSuccess(now time.Time) Counter {
	if now.Before(c.LockoutUntil) {
		return c
	}
	return Counter{}
}

// Begin applies one attempt at now to an account's counter and the
// client address's counter on that account, as Store.BeginSignInAttempt
// does atomically, and returns the outcome with both new counters. An
// attempt refused for its address's lockout leaves the account's counter
// as it was (Attempt.Account is then the unchanged counter).
func (l Limits) Begin(account, client Counter, now time.Time) Attempt {
	var a Attempt
	var clientOK bool
	a.Client, clientOK = client.count(now, l.ClientMaxFailures, l.LockFor)
	a.ClientLocked = clientOK && !a.Client.LockoutUntil.IsZero()
	if !clientOK {
		a.Account, a.Reason = account, ReasonLockedOut
		return a
	}
	var accountOK bool
	a.Account, accountOK = account.count(now, l.AccountMaxFailures, l.LockFor)
	a.AccountLocked = accountOK && !a.Account.LockoutUntil.IsZero()
	// An address with no recent failure on the account passes a soft lock.
	fresh := a.Client.Failures == 1
	if !accountOK && !fresh {
		a.Reason = ReasonAccountLocked
		return a
	}
	a.Allowed = true
	return a
}
