// Package signin signs users in: the password check with per-client
// throttling, a lockout per account and client address that an attacker
// cannot turn against the owner (see Limits), and answers that reveal
// nothing about the account (see Options.ExplainRefusals); the Dataverse
// sign-in check of bound users; the revalidation of a session's contact
// snapshot; and the revocation of sessions at sign-out.
package signin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/dataverse"
)

// Sign-in errors. They are safe to show to the user as they are.
var (
	// ErrInvalidCredentials is returned for an unknown login, a wrong
	// password and a locked-out account alike, so that the answer reveals
	// neither whether an account exists nor whether it is locked.
	ErrInvalidCredentials = errors.New("signin: invalid username or password")
	// ErrAccountDisabled is returned, only after the password was verified,
	// for a disabled account.
	ErrAccountDisabled = errors.New("signin: account disabled")
	// ErrAccountPending is returned, only after the password was verified,
	// for an account waiting for approval.
	ErrAccountPending = errors.New("signin: account waiting for approval")
	// ErrThrottled matches (errors.Is) every *ThrottledError.
	ErrThrottled = errors.New("signin: too many sign-in attempts")
	// ErrAccountHeld matches (errors.Is) every *HeldError.
	ErrAccountHeld = errors.New("signin: account not ready")
)

// HeldError is returned, only after the password was verified, for an
// account that Options.Holds holds back (a registration that still owes
// its email confirmation, or waits for its contact). It is returned
// whatever Options.ExplainRefusals says: the owner must learn what to do
// next, and the account cannot be used by anyone until the mailbox owner
// acted. errors.Is(err, ErrAccountHeld) reports true for it.
type HeldError struct {
	// Reason is the Holds reason, e.g. registration.HoldUnconfirmed.
	Reason string
}

// Error implements error.
func (e *HeldError) Error() string { return "signin: account not ready: " + e.Reason }

// Is reports whether target is ErrAccountHeld.
func (e *HeldError) Is(target error) bool { return target == ErrAccountHeld }

// Holds tells whether an account whose password was right must still wait
// before it signs in; *registration.Service satisfies it.
type Holds interface {
	// SignInHold returns a reason to hold u back, or "" to let it sign in.
	SignInHold(ctx context.Context, u *authz.User) (string, error)
}

// ThrottledError is returned when a client address made too many sign-in
// attempts. errors.Is(err, ErrThrottled) reports true for it.
type ThrottledError struct {
	// RetryAfter is how long the client must wait before the next attempt is accepted.
	RetryAfter time.Duration
}

// Error implements error.
func (e *ThrottledError) Error() string {
	return fmt.Sprintf("signin: too many sign-in attempts, retry after %s", e.RetryAfter.Round(time.Second))
}

// Is reports whether target is ErrThrottled.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// Reasons recorded in the Detail of audit.EventSignInFailed besides the
// binding.Reason* constants of the Dataverse check.
const (
	ReasonUnknownUser   = "unknown_user"
	ReasonWrongPassword = "wrong_password"
	ReasonLockedOut     = "locked_out"     // the client address is locked out of the account
	ReasonAccountLocked = "account_locked" // the account is soft-locked and the address failed on it recently
	ReasonNoPassword    = "no_password"
	ReasonDisabled      = "disabled"
	ReasonPending       = "pending"
	ReasonBadStatus     = "bad_status"
)

// Store is the part of the account store sign-in uses. Methods return
// authz.ErrNotFound as documented and any other error for a failure of the
// database itself.
type Store interface {
	// Store keeps the client throttle's buckets, shared by every replica.
	throttle.Store
	// UserByID returns the user with that id, or authz.ErrNotFound.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// UserByLogin returns the user whose username or email equals login
	// after authz.NormalizeLogin, or authz.ErrNotFound. When one user's
	// username equals another user's email, the username match wins.
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	// BeginSignInAttempt counts a password attempt from client (the client
	// address folded as the throttle folds it) against the user before the password is checked: in one
	// transaction that serialises the attempts on the account, it reads
	// the account's counter and client's counter on it, applies
	// limits.Begin and stores both new counters, so that concurrent
	// attempts can never check more passwords than the limits allow, on
	// any replica. It returns authz.ErrNotFound for a missing user.
	BeginSignInAttempt(ctx context.Context, id, client string, now time.Time, limits Limits) (Attempt, error)
	// RecordSignInSuccess clears client's counter on the account (other
	// addresses' counters stay), sets the account's counter to
	// Counter.AfterSuccess(at), and sets LastSignInAt to at.
	RecordSignInSuccess(ctx context.Context, id, client string, at time.Time) error
	// ClearSignInFailures is RecordSignInSuccess without recording a
	// sign-in (the password was right, the account may not sign in).
	ClearSignInFailures(ctx context.Context, id, client string, now time.Time) error
	// ReplacePasswordHash sets the user's password hash to newHash only if
	// it still is oldHash, without touching UpdatedAt or the security stamp
	// (used to upgrade hash parameters). When the hash changed meanwhile it
	// returns authz.ErrStale.
	ReplacePasswordHash(ctx context.Context, id, oldHash, newHash string) error
	// RevokeSession records that a session ended before its cookie expires
	// (sign-out); expiresAt is when the cookie would expire anyway.
	RevokeSession(ctx context.Context, sessionID, userID string, expiresAt time.Time) error
	// SessionRevoked reports whether RevokeSession was called for sessionID.
	SessionRevoked(ctx context.Context, sessionID string) (bool, error)
}

// Attempt is the outcome of one attempt under Limits.Begin.
type Attempt struct {
	// Allowed reports whether the password may be checked.
	Allowed bool
	// Reason is why it may not: ReasonLockedOut (the client address is
	// locked out of the account) or ReasonAccountLocked (the account is
	// soft-locked and the address failed on it recently); empty when
	// Allowed.
	Reason string
	// Client is the client address's counter on the account, this
	// attempt included.
	Client Counter
	// Account is the account's counter across addresses, this attempt
	// included unless it was refused for the address's lockout.
	Account Counter
	// ClientLocked reports that this attempt reached
	// Limits.ClientMaxFailures and locked the address out of the account
	// until Client.LockoutUntil (unless its password is right).
	ClientLocked bool
	// AccountLocked reports that this attempt reached
	// Limits.AccountMaxFailures and soft-locked the account until
	// Account.LockoutUntil (unless its password is right).
	AccountLocked bool
}

// Resolver resolves bindings for the sign-in check; *binding.Resolver
// satisfies it.
type Resolver interface {
	// Resolve returns u's contact with columns (and its web roles when
	// roles): nil for an unbound user, a *binding.Error for a binding that
	// does not resolve, an error wrapping dataverse.ErrUnavailable when
	// Dataverse cannot answer.
	Resolve(ctx context.Context, u *authz.User, columns []string, roles bool) (*dataverse.Contact, error)
	// Conditions returns what contact id must satisfy to still be u's
	// contact; nil when that cannot be told without a fresh resolve.
	Conditions(u *authz.User, contactID string) ([]dataverse.Condition, error)
}

// Puller copies the synced columns of a bound contact into the account;
// *profile.Service satisfies it.
type Puller interface {
	// Pull copies the synced columns of c into u's account where they
	// differ, and into u once stored. It logs failures and never fails.
	Pull(ctx context.Context, u *authz.User, c *dataverse.Contact)
	// Columns returns the contact columns a pull reads.
	Columns() []string
}

// Snapshots serves recently read contacts, for the revalidation of
// signed-in sessions: within its time to live a snapshot is answered
// without a request, and concurrent lookups of one contact share one
// request. crmclient.CachedDirectory satisfies it. Implementations must
// return an error wrapping dataverse.ErrUnavailable rather than a snapshot
// older than their time to live, since the session's grace period is
// counted from the last confirmed snapshot.
type Snapshots interface {
	// ContactSnapshot returns contact id (lower-case GUID), active or not,
	// with at least columns in Contact.Columns and its active web roles. A
	// missing contact gives dataverse.ErrContactNotFound.
	ContactSnapshot(ctx context.Context, id string, columns []string) (*dataverse.Contact, error)
}

// Options configure a Service. Every field without a documented zero value
// is required: the configuration (package config) sets the defaults.
type Options struct {
	// Password are the hashing parameters for new hashes; they must pass
	// password.Params.Validate. Existing hashes made with other parameters
	// are upgraded at the next successful sign-in.
	Password password.Params
	// MaxFailures is the number of failed attempts from one client
	// address (an IPv6 /64) that locks that address out of the account,
	// at least 1 (Limits.ClientMaxFailures). Other addresses may still
	// sign in to it.
	MaxFailures int
	// AccountMaxFailures is the number of failed attempts from all
	// addresses within LockoutDuration that soft-locks the account, at
	// least 1 (Limits.AccountMaxFailures): while it lasts only addresses
	// without a recent failure on the account have their password
	// checked.
	AccountMaxFailures int
	// LockoutDuration is how long both lockouts last and how long a
	// failure is remembered; positive.
	LockoutDuration time.Duration
	// ExplainRefusals, when true, tells a user whose password was right
	// why they may not sign in: the account is disabled or waiting for
	// approval (ErrAccountDisabled, ErrAccountPending) or Dataverse
	// refused it (*RefusedError). DANGEROUS: the answer then differs from
	// a wrong password's, so it confirms a guessed password and leaks the
	// account's state. False (the default) answers those cases with
	// ErrInvalidCredentials, like a wrong password; the audit log and the
	// structured log still record the real reason.
	ExplainRefusals bool
	// ClientRate is the sustained sign-in rate allowed per client address,
	// counted in the store across every replica (throttle.SignInClient);
	// positive. rate.Inf disables the throttle, which leaves only the
	// lockouts between an attacker and a password spray: do not use it in
	// production.
	ClientRate rate.Limit
	// ClientBurst is the number of attempts a client address may make at
	// once, at least 1.
	ClientBurst int
	// Check configures the Dataverse check of bound users at sign-in; the
	// zero value turns it off. It needs Resolver.
	Check Check
	// Resolver resolves bindings; nil means no Dataverse (then Check must
	// be off).
	Resolver Resolver
	// Puller pulls synced fields at every check; nil pulls nothing.
	Puller Puller
	// Snapshots, when set, answers the revalidation of signed-in sessions
	// from a short-lived cache shared by every session; nil makes each
	// revalidation a fresh resolve. Sign-ins never use it: they always ask
	// Dataverse.
	Snapshots Snapshots
	// Holds holds back accounts that are not ready (registrations); nil
	// holds none.
	Holds Holds
	// Audit receives every outcome.
	Audit *audit.Log
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives store failures that the caller does not see; nil
	// discards them.
	Logger *slog.Logger
}

// Service signs users in on top of a Store. It is safe for concurrent use.
// Build it with New.
type Service struct {
	store     Store
	params    password.Params
	limits    Limits
	explain   bool
	now       func() time.Time
	log       *slog.Logger
	audit     *audit.Log
	dummyHash string

	resolver  Resolver
	puller    Puller
	check     Check
	snapshots Snapshots
	holds     Holds

	clients *throttle.Limiter // per client address, in the store
}

// New returns a Service over store. It computes one dummy password hash so
// that sign-ins of unknown users cost the same as real ones.
func New(store Store, opts Options) (*Service, error) {
	var errs []error
	if store == nil || opts.Audit == nil {
		errs = append(errs, errors.New("signin: nil store or audit log"))
	}
	if err := opts.Password.Validate(); err != nil {
		errs = append(errs, err)
	}
	limits := Limits{ClientMaxFailures: opts.MaxFailures, AccountMaxFailures: opts.AccountMaxFailures, LockFor: opts.LockoutDuration}
	if err := limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if opts.ClientRate <= 0 {
		errs = append(errs, errors.New("signin: ClientRate must be positive"))
	}
	if opts.ClientBurst < 1 {
		errs = append(errs, errors.New("signin: ClientBurst must be at least 1"))
	}
	if opts.Check.Enabled && opts.Resolver == nil {
		errs = append(errs, errors.New("signin: the sign-in check needs a contact directory (a binding resolver)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Service{
		store:     store,
		params:    opts.Password,
		limits:    limits,
		explain:   opts.ExplainRefusals,
		now:       opts.Now,
		log:       opts.Logger,
		audit:     opts.Audit,
		resolver:  opts.Resolver,
		puller:    opts.Puller,
		check:     opts.Check,
		snapshots: opts.Snapshots,
		holds:     opts.Holds,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if s.clients, err = throttle.New(store, throttle.SignInClient, opts.ClientRate, opts.ClientBurst); err != nil {
		return nil, err
	}
	dummy, err := password.Hash(rand.Text(), s.params)
	if err != nil {
		return nil, err
	}
	s.dummyHash = dummy
	return s, nil
}

// Credentials are what a user types into the sign-in form, plus where the
// request came from.
type Credentials struct {
	// Login is the username or email.
	Login string
	// Password is the plain password; it is never stored or logged.
	Password string
	// ClientAddr is the client's IP address (a host:port is accepted); it
	// keys the throttle and the per-address lockout, IPv6 addresses by
	// their /64. Empty addresses share one throttle and one lockout.
	ClientAddr string
}

// SignIn checks credentials and returns the signed-in user. The checks, in
// order: the client address's rate (*ThrottledError, before any password
// work); the lockout of the address on the account and of the account
// (see Limits); the password; the account's status; then, for a bound
// user, the Dataverse sign-in check when enabled (see CheckSignIn;
// SignInWithContact also returns the contact). Unknown logins, wrong
// passwords and lockouts give ErrInvalidCredentials after the same
// argon2id work (the stored hash or the dummy one). So do a disabled or
// pending account and a Dataverse refusal, whose password was right,
// unless Options.ExplainRefusals (then ErrAccountDisabled,
// ErrAccountPending, *RefusedError). Dataverse being unavailable gives an
// error wrapping dataverse.ErrUnavailable, after the password was right. A
// successful sign-in upgrades a hash made with old parameters. Every
// outcome is audited with its real reason. Any other error is a store
// failure; the throttle's matches throttle.ErrUnavailable and comes before
// any password work (the attempt is refused, never let through).
func (s *Service) SignIn(ctx context.Context, c Credentials) (*authz.User, error) {
	return s.signIn(ctx, c, nil)
}

// signIn is SignIn; run, when not nil, receives the contact snapshot.
func (s *Service) signIn(ctx context.Context, c Credentials, run *signInRun) (*authz.User, error) {
	now := s.now()
	ev := audit.Event{Time: now, Type: audit.EventSignInFailed, ClientAddr: c.ClientAddr}
	if err := s.throttle(ctx, c.ClientAddr, now); err != nil {
		return nil, err
	}

	u, err := s.store.UserByLogin(ctx, c.Login)
	if errors.Is(err, authz.ErrNotFound) {
		s.burn(c.Password)
		ev.Detail = ReasonUnknownUser
		s.audit.Record(ctx, ev)
		return nil, ErrInvalidCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("signin: %w", err)
	}
	ev.UserID, ev.Actor = u.ID, u.ID

	client := throttleKey(c.ClientAddr)
	attempt, err := s.store.BeginSignInAttempt(ctx, u.ID, client, now, s.limits)
	if err != nil {
		return nil, fmt.Errorf("signin: %w", err)
	}
	if !attempt.Allowed {
		s.burn(c.Password)
		ev.Detail = attempt.Reason
		s.audit.Record(ctx, ev)
		return nil, ErrInvalidCredentials
	}

	ok, rehash, reason := false, false, ReasonWrongPassword
	switch {
	case u.PasswordHash == "":
		s.burn(c.Password)
		reason = ReasonNoPassword
	case len(c.Password) > password.MaxBytes:
		s.burn("")
	default:
		ok, rehash, err = s.params.Verify(u.PasswordHash, c.Password)
		if err != nil {
			s.log.ErrorContext(ctx, "stored password hash unusable", "user_id", u.ID, "err", err)
			reason = "bad_hash"
		}
	}
	if !ok {
		ev.Detail = reason
		s.audit.Record(ctx, ev)
		s.auditLockouts(ctx, u.ID, c.ClientAddr, now, attempt)
		return nil, ErrInvalidCredentials
	}

	// The password is right. A registration that is not finished says so
	// (see HeldError).
	if s.holds != nil {
		reason, err := s.holds.SignInHold(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("signin: %w", err)
		}
		if reason != "" {
			ev.Detail = reason
			s.audit.Record(ctx, ev)
			if err := s.store.ClearSignInFailures(ctx, u.ID, client, now); err != nil {
				return nil, fmt.Errorf("signin: %w", err)
			}
			return nil, &HeldError{Reason: reason}
		}
	}
	// The answer stays that of a wrong one unless the operator asked for
	// explanations; the audit log has the reason.
	if u.Status != authz.StatusActive {
		var fail error
		switch u.Status {
		case authz.StatusDisabled:
			ev.Detail, fail = ReasonDisabled, ErrAccountDisabled
		case authz.StatusPending:
			ev.Detail, fail = ReasonPending, ErrAccountPending
		default:
			ev.Detail, fail = ReasonBadStatus, ErrAccountDisabled
		}
		s.audit.Record(ctx, ev)
		if !s.explain {
			// Counted like a wrong password, so that nothing, not even
			// the lockout state, tells the two apart.
			s.auditLockouts(ctx, u.ID, c.ClientAddr, now, attempt)
			return nil, ErrInvalidCredentials
		}
		if err := s.store.ClearSignInFailures(ctx, u.ID, client, now); err != nil {
			return nil, fmt.Errorf("signin: %w", err)
		}
		return nil, fail
	}
	if err := s.gateSignIn(ctx, u, client, ev, run); err != nil {
		if errors.Is(err, ErrRefused) && !s.explain {
			s.auditLockouts(ctx, u.ID, c.ClientAddr, now, attempt)
			return nil, ErrInvalidCredentials
		}
		return nil, err
	}
	if err := s.store.RecordSignInSuccess(ctx, u.ID, client, now); err != nil {
		return nil, fmt.Errorf("signin: %w", err)
	}
	u.FailedCount, u.LockoutUntil, u.LastSignInAt = 0, time.Time{}, now.UTC().Truncate(time.Millisecond)
	if rehash {
		s.upgradeHash(ctx, u, c.Password)
	}
	ev.Type = audit.EventSignIn
	s.audit.Record(ctx, ev)
	return u, nil
}

// auditLockouts audits the lockouts a failed attempt started: of its
// client address on the account, and of the account across addresses.
func (s *Service) auditLockouts(ctx context.Context, userID, clientAddr string, now time.Time, a Attempt) {
	if a.ClientLocked {
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAddressLocked, Actor: userID, UserID: userID,
			ClientAddr: clientAddr, Detail: a.Client.LockoutUntil.UTC().Format(time.RFC3339)})
	}
	if a.AccountLocked {
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAccountLocked, Actor: userID, UserID: userID,
			ClientAddr: clientAddr, Detail: a.Account.LockoutUntil.UTC().Format(time.RFC3339)})
	}
}

// burn spends the time of one password verification against the dummy hash.
func (s *Service) burn(pw string) {
	if len(pw) > password.MaxBytes {
		pw = pw[:password.MaxBytes]
	}
	_, _, _ = s.params.Verify(s.dummyHash, pw)
}

// upgradeHash stores a hash of pw made with the current parameters. A
// failure only delays the upgrade to a later sign-in.
func (s *Service) upgradeHash(ctx context.Context, u *authz.User, pw string) {
	h, err := password.Hash(pw, s.params)
	if err == nil {
		err = s.store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, h)
	}
	switch {
	case err == nil:
		u.PasswordHash = h
	case errors.Is(err, authz.ErrStale):
		// The password changed meanwhile; the new hash is current anyway.
	default:
		s.log.WarnContext(ctx, "password hash upgrade failed", "user_id", u.ID, "err", err)
	}
}

// throttle takes one event from the client address's limiter, or returns
// a *ThrottledError without taking any; the first refusal of a run (on any
// replica) is audited. When the limiter's store fails it refuses the
// attempt with an error matching throttle.ErrUnavailable, before any
// password work (fail closed), and logs it.
func (s *Service) throttle(ctx context.Context, addr string, now time.Time) error {
	ok, retry, first, err := s.clients.Allow(ctx, throttleKey(addr), now)
	if err != nil {
		s.log.ErrorContext(ctx, "sign-in attempt refused: throttle unavailable", "client", addr, "err", err)
		return fmt.Errorf("signin: %w", err)
	}
	if ok {
		return nil
	}
	if first {
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventSignInThrottled, ClientAddr: addr})
	}
	return &ThrottledError{RetryAfter: retry}
}

// throttleKey folds a client address as every limit does (throttle.ClientKey).
func throttleKey(addr string) string { return throttle.ClientKey(addr) }

// UserByID returns the user with that id (ErrNotFound if none), for
// example to compare a session's security stamp.
func (s *Service) UserByID(ctx context.Context, id string) (*authz.User, error) {
	return s.store.UserByID(ctx, id)
}
