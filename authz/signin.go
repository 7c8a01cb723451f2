package authz

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/patrickmn/go-cache"
	"golang.org/x/time/rate"
)

// Sign-in errors. They are safe to show to the user as they are.
var (
	// ErrInvalidCredentials is returned for an unknown login, a wrong
	// password and a locked-out account alike, so that the answer reveals
	// neither whether an account exists nor whether it is locked.
	ErrInvalidCredentials = errors.New("authz: invalid username or password")
	// ErrAccountDisabled is returned, only after the password was verified,
	// for a disabled account.
	ErrAccountDisabled = errors.New("authz: account disabled")
	// ErrAccountPending is returned, only after the password was verified,
	// for an account waiting for approval.
	ErrAccountPending = errors.New("authz: account waiting for approval")
	// ErrThrottled matches (errors.Is) every *ThrottledError.
	ErrThrottled = errors.New("authz: too many sign-in attempts")
)

// ThrottledError is returned when a client address made too many sign-in
// attempts. errors.Is(err, ErrThrottled) reports true for it.
type ThrottledError struct {
	// RetryAfter is how long the client must wait before the next attempt is accepted.
	RetryAfter time.Duration
}

// Error implements error.
func (e *ThrottledError) Error() string {
	return fmt.Sprintf("authz: too many sign-in attempts, retry after %s", e.RetryAfter.Round(time.Second))
}

// Is reports whether target is ErrThrottled.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// Defaults for Options.
const (
	DefaultMaxFailures     = 5
	DefaultLockoutDuration = 15 * time.Minute
	DefaultClientBurst     = 10
)

// DefaultClientRate is the default sign-in rate per client address: 10 attempts a minute.
var DefaultClientRate = rate.Every(6 * time.Second)

// Options configure a Service. The zero value is usable: every zero field
// means its default.
type Options struct {
	// Password are the hashing parameters for new hashes; the zero value
	// means DefaultPasswordParams. Existing hashes made with other
	// parameters are upgraded at the next successful sign-in.
	Password PasswordParams
	// MaxFailures is the number of consecutive failed attempts that locks an
	// account; zero or less means DefaultMaxFailures.
	MaxFailures int
	// LockoutDuration is how long a locked account stays locked; zero or
	// less means DefaultLockoutDuration.
	LockoutDuration time.Duration
	// ClientRate is the sustained sign-in rate allowed per client address;
	// zero means DefaultClientRate. rate.Inf disables the throttle, which
	// leaves only the per-account lockout between an attacker and a
	// password spray: do not use it in production.
	ClientRate rate.Limit
	// ClientBurst is the number of attempts a client address may make at
	// once; zero or less means DefaultClientBurst.
	ClientBurst int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives store failures that the caller does not see; nil
	// discards them.
	Logger *slog.Logger
	// OutboxNotify, when set, is called after a change that enqueued
	// outbox events has been committed, typically OutboxWorker.Notify so
	// that a local worker delivers them at once. It must not block. Nil
	// leaves the events to the worker's next poll.
	OutboxNotify func()
	// Contacts reads Dataverse contacts for bindings and the sign-in
	// check. Nil means no binding resolves; then Binding and SignInCheck
	// must not need it (NewService refuses them).
	Contacts Contacts
	// Binding configures binding modes and the binding of new users; see
	// BindingOptions for the zero value.
	Binding BindingOptions
	// SignInCheck configures the Dataverse check of bound users at
	// sign-in; the zero value turns it off.
	SignInCheck SignInCheck
	// FieldSync maps user fields to contact columns; see FieldSync. The
	// zero value syncs nothing. It needs Contacts.
	FieldSync FieldSync
	// Snapshots, when set, answers the revalidation of signed-in sessions
	// from a short-lived cache shared by every session (see
	// ContactSnapshots); nil makes each revalidation one request through
	// Contacts. Sign-ins never use it: they always ask Dataverse.
	Snapshots ContactSnapshots
	// BreakGlassRole is the local role of break-glass administrators,
	// typically "admin": when set, SetRoles, SetStatus, SetBinding,
	// SetBindings and DeleteUser refuse (ErrLastBreakGlassAdmin) a change after which no
	// active, unbound user holds it. Empty turns the guard off, which lets
	// an operator leave no one able to sign in while Dataverse is down.
	BreakGlassRole string
}

// Service signs users in and manages accounts on top of a Store. It is safe
// for concurrent use. Build it with NewService.
type Service struct {
	store       Store
	params      PasswordParams
	maxFailures int
	lockFor     time.Duration
	now         func() time.Time
	log         *slog.Logger
	dummyHash   string
	notify      func()

	contacts       Contacts
	binding        BindingOptions
	check          SignInCheck
	sync           FieldSync
	snapshots      ContactSnapshots
	breakGlassRole string

	clientRate  rate.Limit
	clientBurst int
	clients     *cache.Cache // throttle key -> *clientLimiter
	clientTTL   time.Duration
}

type clientLimiter struct {
	lim       *rate.Limiter
	throttled atomic.Bool // the last attempt was rejected; audit only the first of a run
}

// NewService returns a Service over store. It computes one dummy password
// hash so that sign-ins of unknown users cost the same as real ones.
func NewService(store Store, opts Options) (*Service, error) {
	if store == nil {
		return nil, errors.New("authz: nil store")
	}
	s := &Service{
		store:       store,
		params:      opts.Password,
		maxFailures: opts.MaxFailures,
		lockFor:     opts.LockoutDuration,
		now:         opts.Now,
		log:         opts.Logger,
		clientRate:  opts.ClientRate,
		clientBurst: opts.ClientBurst,
		notify:      opts.OutboxNotify,

		contacts:       opts.Contacts,
		binding:        opts.Binding,
		check:          opts.SignInCheck,
		sync:           FieldSync{Columns: maps.Clone(opts.FieldSync.Columns)},
		snapshots:      opts.Snapshots,
		breakGlassRole: opts.BreakGlassRole,
	}
	if err := s.binding.validate(s.contacts != nil); err != nil {
		return nil, err
	}
	if s.check.Enabled && s.contacts == nil {
		return nil, errors.New("authz: the sign-in check needs a contact directory (Options.Contacts)")
	}
	if err := s.sync.Validate(); err != nil {
		return nil, err
	}
	if len(s.sync.Columns) > 0 && (s.contacts == nil || !s.check.Enabled) {
		// Pulls run at the sign-in check; without them the conflict rule
		// (Dataverse wins) would refuse every profile change.
		return nil, errors.New("authz: field sync needs a contact directory (Options.Contacts) and the sign-in check (Options.SignInCheck)")
	}
	if s.params == (PasswordParams{}) {
		s.params = DefaultPasswordParams
	}
	if err := s.params.Validate(); err != nil {
		return nil, err
	}
	if s.maxFailures <= 0 {
		s.maxFailures = DefaultMaxFailures
	}
	if s.lockFor <= 0 {
		s.lockFor = DefaultLockoutDuration
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.notify == nil {
		s.notify = func() {}
	}
	if s.clientRate == 0 {
		s.clientRate = DefaultClientRate
	}
	if s.clientRate < 0 {
		return nil, errors.New("authz: negative client rate")
	}
	if s.clientBurst <= 0 {
		s.clientBurst = DefaultClientBurst
	}
	if s.clientRate != rate.Inf {
		// An entry idle for longer than a full refill is equivalent to a
		// fresh one, so it may expire then. go-cache expires on the wall
		// clock; that only frees memory and cannot loosen the throttle.
		refill := time.Duration(float64(s.clientBurst) / float64(s.clientRate) * float64(time.Second))
		s.clientTTL = refill + time.Minute
		s.clients = cache.New(s.clientTTL, s.clientTTL)
	}
	dummy, err := HashPassword(rand.Text(), s.params)
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
func (s *Service) SignIn(ctx context.Context, c Credentials) (*User, error) {
	return s.signIn(ctx, c, nil)
}

// signIn is SignIn; run, when not nil, receives the contact snapshot.
func (s *Service) signIn(ctx context.Context, c Credentials, run *signInRun) (*User, error) {
	now := s.now()
	ev := AuditEvent{Time: now, Type: EventSignInFailed, ClientAddr: c.ClientAddr}
	if err := s.throttle(ctx, c.ClientAddr, now); err != nil {
		return nil, err
	}

	u, err := s.store.UserByLogin(ctx, c.Login)
	if errors.Is(err, ErrNotFound) {
		s.burn(c.Password)
		ev.Detail = ReasonUnknownUser
		s.audit(ctx, ev)
		return nil, ErrInvalidCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("authz: sign-in: %w", err)
	}
	ev.UserID, ev.Actor = u.ID, u.ID

	attempt, err := s.store.BeginSignInAttempt(ctx, u.ID, now, s.maxFailures, s.lockFor)
	if err != nil {
		return nil, fmt.Errorf("authz: sign-in: %w", err)
	}
	if !attempt.Allowed {
		s.burn(c.Password)
		ev.Detail = ReasonLockedOut
		s.audit(ctx, ev)
		return nil, ErrInvalidCredentials
	}

	ok, rehash, reason := false, false, ReasonWrongPassword
	switch {
	case u.PasswordHash == "":
		s.burn(c.Password)
		reason = ReasonNoPassword
	case len(c.Password) > MaxPasswordBytes:
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
		s.audit(ctx, ev)
		if !attempt.LockoutUntil.IsZero() {
			s.audit(ctx, AuditEvent{Time: now, Type: EventAccountLocked, Actor: u.ID, UserID: u.ID,
				ClientAddr: c.ClientAddr, Detail: attempt.LockoutUntil.UTC().Format(time.RFC3339)})
		}
		return nil, ErrInvalidCredentials
	}

	// The password is right: from here on the answer may be specific.
	if u.Status != StatusActive {
		if err := s.store.ResetSignInFailures(ctx, u.ID); err != nil {
			return nil, fmt.Errorf("authz: sign-in: %w", err)
		}
		var fail error
		switch u.Status {
		case StatusDisabled:
			ev.Detail, fail = ReasonDisabled, ErrAccountDisabled
		case StatusPending:
			ev.Detail, fail = ReasonPending, ErrAccountPending
		default:
			ev.Detail, fail = ReasonBadStatus, ErrAccountDisabled
		}
		s.audit(ctx, ev)
		return nil, fail
	}
	if err := s.gateSignIn(ctx, u, ev, run); err != nil {
		return nil, err
	}
	if err := s.store.RecordSignInSuccess(ctx, u.ID, now); err != nil {
		return nil, fmt.Errorf("authz: sign-in: %w", err)
	}
	u.FailedCount, u.LockoutUntil, u.LastSignInAt = 0, time.Time{}, now.UTC().Truncate(time.Millisecond)
	if rehash {
		s.upgradeHash(ctx, u, c.Password)
	}
	ev.Type = EventSignIn
	s.audit(ctx, ev)
	return u, nil
}

// burn spends the time of one password verification against the dummy hash.
func (s *Service) burn(pw string) {
	if len(pw) > MaxPasswordBytes {
		pw = pw[:MaxPasswordBytes]
	}
	_, _, _ = s.params.Verify(s.dummyHash, pw)
}

// upgradeHash stores a hash of pw made with the current parameters. A
// failure only delays the upgrade to a later sign-in.
func (s *Service) upgradeHash(ctx context.Context, u *User, pw string) {
	h, err := HashPassword(pw, s.params)
	if err == nil {
		err = s.store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, h)
	}
	switch {
	case err == nil:
		u.PasswordHash = h
	case errors.Is(err, ErrStale):
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
			s.audit(ctx, AuditEvent{Time: now, Type: EventSignInThrottled, ClientAddr: addr})
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
func (s *Service) UserByID(ctx context.Context, id string) (*User, error) {
	return s.store.UserByID(ctx, id)
}
