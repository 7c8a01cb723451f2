// Package signin signs users in: the password check with per-client
// throttling, per-account lockout and constant-time answers; the Dataverse
// sign-in check of bound users; the revalidation of a session's contact
// snapshot; and the revocation of sessions at sign-out.
package signin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/patrickmn/go-cache"
	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/password"
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
)

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
	ReasonLockedOut     = "locked_out"
	ReasonNoPassword    = "no_password"
	ReasonDisabled      = "disabled"
	ReasonPending       = "pending"
	ReasonBadStatus     = "bad_status"
)

// Store is the part of the account store sign-in uses. Methods return
// authz.ErrNotFound as documented and any other error for a failure of the
// database itself.
type Store interface {
	// UserByID returns the user with that id, or authz.ErrNotFound.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// UserByLogin returns the user whose username or email equals login
	// after authz.NormalizeLogin, or authz.ErrNotFound. When one user's
	// username equals another user's email, the username match wins.
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	// BeginSignInAttempt counts a password attempt against the user before
	// the password is checked, in one atomic statement, so that concurrent
	// attempts can never verify more than maxFailures passwords per lockout
	// window. See Attempt for the rules.
	BeginSignInAttempt(ctx context.Context, id string, now time.Time, maxFailures int, lockFor time.Duration) (Attempt, error)
	// RecordSignInSuccess clears the failure count and lockout and sets
	// LastSignInAt to at.
	RecordSignInSuccess(ctx context.Context, id string, at time.Time) error
	// ResetSignInFailures clears the failure count and lockout without
	// recording a sign-in (the password was right, the account may not sign in).
	ResetSignInFailures(ctx context.Context, id string) error
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

// Attempt is the outcome of Store.BeginSignInAttempt.
//
// The rules: while LockoutUntil is in the future the attempt is counted but
// not Allowed and the lockout is not extended. Once a lockout has passed, the
// count starts again at 1. When the new count reaches maxFailures the lockout
// is set to now+lockFor; that attempt is still Allowed (a correct password
// clears it), every further one is not.
type Attempt struct {
	// Allowed reports whether the password may be checked.
	Allowed bool
	// FailedCount is the count including this attempt.
	FailedCount int
	// LockoutUntil is the end of the lockout; zero when not locked.
	LockoutUntil time.Time
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
	// MaxFailures is the number of consecutive failed attempts that locks
	// an account, at least 1.
	MaxFailures int
	// LockoutDuration is how long a locked account stays locked; positive.
	LockoutDuration time.Duration
	// ClientRate is the sustained sign-in rate allowed per client address;
	// positive. rate.Inf disables the throttle, which leaves only the
	// per-account lockout between an attacker and a password spray: do not
	// use it in production.
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
	store       Store
	params      password.Params
	maxFailures int
	lockFor     time.Duration
	now         func() time.Time
	log         *slog.Logger
	audit       *audit.Log
	dummyHash   string

	resolver  Resolver
	puller    Puller
	check     Check
	snapshots Snapshots

	clientRate  rate.Limit
	clientBurst int
	clients     *cache.Cache // throttle key -> *clientLimiter
	clientTTL   time.Duration
}

type clientLimiter struct {
	lim       *rate.Limiter
	throttled atomic.Bool // the last attempt was rejected; audit only the first of a run
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
	if opts.MaxFailures < 1 {
		errs = append(errs, errors.New("signin: MaxFailures must be at least 1"))
	}
	if opts.LockoutDuration <= 0 {
		errs = append(errs, errors.New("signin: LockoutDuration must be positive"))
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
		store:       store,
		params:      opts.Password,
		maxFailures: opts.MaxFailures,
		lockFor:     opts.LockoutDuration,
		now:         opts.Now,
		log:         opts.Logger,
		audit:       opts.Audit,
		clientRate:  opts.ClientRate,
		clientBurst: opts.ClientBurst,
		resolver:    opts.Resolver,
		puller:      opts.Puller,
		check:       opts.Check,
		snapshots:   opts.Snapshots,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clientRate != rate.Inf {
		// An entry idle for longer than a full refill is equivalent to a
		// fresh one, so it may expire then. go-cache expires on the wall
		// clock; that only frees memory and cannot loosen the throttle.
		refill := time.Duration(float64(s.clientBurst) / float64(s.clientRate) * float64(time.Second))
		s.clientTTL = refill + time.Minute
		s.clients = cache.New(s.clientTTL, s.clientTTL)
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
	// keys the throttle. Empty addresses share one throttle.
	ClientAddr string
}

// SignIn checks credentials and returns the signed-in user. The checks, in
// order: the client address's rate (*ThrottledError, before any password
// work); the account's lockout; the password; the account's status
// (ErrAccountDisabled, ErrAccountPending). Unknown logins, wrong passwords
// and locked accounts all give ErrInvalidCredentials after the same
// argon2id work. Then, for a bound user, the Dataverse sign-in check when
// enabled (see CheckSignIn; SignInWithContact also returns the contact). A
// successful sign-in upgrades a hash made with old parameters. Every
// outcome is audited. Any other error is a store failure.
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

	attempt, err := s.store.BeginSignInAttempt(ctx, u.ID, now, s.maxFailures, s.lockFor)
	if err != nil {
		return nil, fmt.Errorf("signin: %w", err)
	}
	if !attempt.Allowed {
		s.burn(c.Password)
		ev.Detail = ReasonLockedOut
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
		if !attempt.LockoutUntil.IsZero() {
			s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventAccountLocked, Actor: u.ID, UserID: u.ID,
				ClientAddr: c.ClientAddr, Detail: attempt.LockoutUntil.UTC().Format(time.RFC3339)})
		}
		return nil, ErrInvalidCredentials
	}

	// The password is right: from here on the answer may be specific.
	if u.Status != authz.StatusActive {
		if err := s.store.ResetSignInFailures(ctx, u.ID); err != nil {
			return nil, fmt.Errorf("signin: %w", err)
		}
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
		return nil, fail
	}
	if err := s.gateSignIn(ctx, u, ev, run); err != nil {
		return nil, err
	}
	if err := s.store.RecordSignInSuccess(ctx, u.ID, now); err != nil {
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

// throttle takes one token from the client address's limiter, or returns a
// *ThrottledError without taking any.
func (s *Service) throttle(ctx context.Context, addr string, now time.Time) error {
	if s.clients == nil {
		return nil
	}
	key := throttleKey(addr)
	var cl *clientLimiter
	if v, ok := s.clients.Get(key); ok {
		cl = v.(*clientLimiter)
	} else {
		fresh := &clientLimiter{lim: rate.NewLimiter(s.clientRate, s.clientBurst)}
		if err := s.clients.Add(key, fresh, s.clientTTL); err == nil {
			cl = fresh
		} else if v, ok := s.clients.Get(key); ok { // another request added it first
			cl = v.(*clientLimiter)
		} else {
			cl = fresh
		}
	}
	s.clients.Set(key, cl, s.clientTTL) // push back the expiry

	r := cl.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		if !cl.throttled.Swap(true) {
			s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventSignInThrottled, ClientAddr: addr})
		}
		return &ThrottledError{RetryAfter: d}
	}
	cl.throttled.Store(false)
	return nil
}

// throttleKey folds a client address: the port is dropped and IPv6
// addresses are reduced to their /64, since one client usually holds a
// whole /64.
func throttleKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return addr
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// UserByID returns the user with that id (ErrNotFound if none), for
// example to compare a session's security stamp.
func (s *Service) UserByID(ctx context.Context, id string) (*authz.User, error) {
	return s.store.UserByID(ctx, id)
}
