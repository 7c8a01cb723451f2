// Package recovery lets users get back into their accounts and change
// their passwords: a password reset requested by username or email and
// completed from the emailed link, the "choose your password" link of an
// account created with generated credentials (a set_password token), and
// the change of a signed-in user's password, forced after sign-in when the
// account or its Dataverse contact asks for it.
//
// Every path ends in accounts.Service.SetUserPassword, which checks the
// password policy, rotates the security stamp (every session of the user
// ends at its next stamp check), clears the lockout and revokes the user's
// other reset and set-password links; the mail that tells the user their
// password changed is stored in the same transaction.
package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/mail"
)

// The audit event types of this package. Details never hold a token, a
// link or what the user typed.
const (
	// EventResetRequested: a reset was asked for; Detail is the outcome
	// (ReqIssued, ReqUnknown, ...), UserID the account when one matched.
	EventResetRequested = "password.reset_requested"
	// EventResetThrottled: the first refusal of a run of reset requests
	// from one client address (ClientAddr) or for one account (UserID).
	EventResetThrottled = "password.reset_throttled"
	// EventPasswordReset: a password was set from a reset or set-password
	// link; Detail is the token purpose.
	EventPasswordReset = "password.reset"
	// EventPasswordChanged: a signed-in user changed their password;
	// Detail is "forced" for a forced change, "change" otherwise.
	EventPasswordChanged = "password.changed"
)

// The outcomes of a reset request, the Detail of EventResetRequested.
const (
	ReqIssued    = "issued"
	ReqUnknown   = "unknown_account"
	ReqDisabled  = "disabled"
	ReqPending   = "pending"
	ReqNoEmail   = "no_email"
	ReqThrottled = "account_throttled"
)

// The link of a reset mail: ConfirmPath under the auth prefix, with the
// secret in the "token" query parameter and, for a set_password token,
// purpose=set_password.
const (
	ConfirmPath  = "/reset/confirm"
	TokenParam   = "token"
	PurposeParam = "purpose"
)

// Throttles of the request path, kept in the store and so shared by every
// replica (see package throttle): a client address may ask for
// ClientRequestsPerHour resets (ClientBurst at once) and an account
// receives at most AccountMailsPerHour reset mails (AccountBurst at once),
// whoever asks. Link checks and password posts
// from one address are limited to LinkChecksPerHour (LinkBurst at once),
// so that secrets cannot be guessed (256 bits: they cannot anyway) and
// refusals cannot flood the audit trail.
const (
	ClientRequestsPerHour = 20
	ClientBurst           = 5
	AccountMailsPerHour   = 3
	AccountBurst          = 3
	LinkChecksPerHour     = 60
	LinkBurst             = 20
)

// ThrottledError is returned when the client address made too many
// requests; RetryAfter says when it may try again.
type ThrottledError struct{ RetryAfter time.Duration }

// Error implements error.
func (e *ThrottledError) Error() string { return "recovery: too many requests from this address" }

// ErrAccountUnavailable is returned by Complete for a valid link whose
// account can no longer sign in (disabled, pending): the link is not spent.
var ErrAccountUnavailable = errors.New("recovery: the account cannot sign in")

// ErrSamePassword is returned by Change when the new password is the
// current one.
var ErrSamePassword = &authz.ValidationError{Field: "new_password", Message: "Choose a password other than your current one."}

// Store is the part of the account store recovery reads; *store.DB
// satisfies it.
type Store interface {
	// Store keeps the throttles' buckets, shared by every replica.
	throttle.Store
	// UserByID returns the user with that id, or authz.ErrNotFound.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// UserByLogin returns the user whose username or email equals login
	// after authz.NormalizeLogin, or authz.ErrNotFound.
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
}

// Tokens issues, checks and consumes the links; *tokens.Service satisfies it.
type Tokens interface {
	IssueWith(ctx context.Context, purpose tokens.Purpose, userID string, ttl time.Duration, payload json.RawMessage,
		events func(secret string) ([]outbox.Event, error)) (string, tokens.Token, error)
	Peek(ctx context.Context, purpose tokens.Purpose, secret string) (*tokens.Token, error)
	Consume(ctx context.Context, purpose tokens.Purpose, secret string) (*tokens.Token, error)
}

// Passwords sets passwords; *accounts.Service satisfies it.
type Passwords interface {
	PasswordPolicy() password.Policy
	SetUserPassword(ctx context.Context, id, pw string, c accounts.PasswordChange) (*authz.User, error)
}

// Verifier checks a signed-in user's current password, counted as a
// sign-in attempt; *signin.Service satisfies it.
type Verifier interface {
	VerifyPassword(ctx context.Context, userID, pw, clientAddr string) error
}

// Options configure a Service. Fields without a documented zero value are
// required.
type Options struct {
	Tokens    Tokens
	Passwords Passwords
	Verifier  Verifier
	// Mail composes the reset and password-changed mails, links from the
	// public URL only.
	Mail  *mail.Composer
	Audit *audit.Log
	// ResetTTL is how long a reset link works; 1 minute to 24 hours.
	ResetTTL time.Duration
	// ContactColumn is the boolean contact column that forces a password
	// change at sign-in (signin.Check.PasswordChangeColumn); after a forced
	// change Change enqueues setting it to false (ContactFlagKind events,
	// delivered by ContactFlagDeliverer). Empty: no column.
	ContactColumn string
	// Notify is called after a change enqueued outbox events; nil: none.
	Notify func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per request and failures callers do not see;
	// nil discards them.
	Logger *slog.Logger
}

// Service runs the reset, set-password and change flows. Build it with
// New; it is safe for concurrent use.
type Service struct {
	store                 Store
	o                     Options
	log                   *slog.Logger
	clients, accts, links *throttle.Limiter
	cost                  costSampler
}

// New returns the recovery service over store.
func New(store Store, o Options) (*Service, error) {
	if store == nil || o.Tokens == nil || o.Passwords == nil || o.Verifier == nil || o.Mail == nil || o.Audit == nil {
		return nil, errors.New("recovery: nil store, tokens, passwords, verifier, mail composer or audit log")
	}
	if o.ResetTTL < time.Minute || o.ResetTTL > 24*time.Hour {
		return nil, fmt.Errorf("recovery: reset TTL %s: want 1m to 24h", o.ResetTTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Notify == nil {
		o.Notify = func() {}
	}
	s := &Service{store: store, o: o, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if s.clients, err = throttle.New(store, throttle.RecoveryClient, throttle.PerHour(ClientRequestsPerHour), ClientBurst); err != nil {
		return nil, err
	}
	if s.accts, err = throttle.New(store, throttle.RecoveryAccount, throttle.PerHour(AccountMailsPerHour), AccountBurst); err != nil {
		return nil, err
	}
	if s.links, err = throttle.New(store, throttle.RecoveryLink, throttle.PerHour(LinkChecksPerHour), LinkBurst); err != nil {
		return nil, err
	}
	return s, nil
}

// PasswordPolicy is the rule every new password must pass, for the forms'
// hints.
func (s *Service) PasswordPolicy() password.Policy { return s.o.Passwords.PasswordPolicy() }

// Request asks for a reset link for login (username or email), from
// clientAddr. It answers the same (nil) whether or not an account matched,
// and takes about as long either way: an active account with an email gets
// a reset_password token (Options.ResetTTL) and its mail, stored in one
// transaction; an unknown, disabled or pending account, or one that
// already received AccountMailsPerHour mails, gets nothing, after a wait
// as long as a recent real issue took (see costSampler). Disabled and
// pending accounts get no mail, so a reset cannot bypass an administrator's
// decision. Only the client address's throttle answers differently
// (*ThrottledError), since it is about the address, not the account; an
// empty login gives a *authz.ValidationError. Every outcome is audited
// (EventResetRequested) and logged; any other error is a store failure (a
// throttle's matches throttle.ErrUnavailable: the request is refused).
func (s *Service) Request(ctx context.Context, login, clientAddr string) error {
	now := s.o.Now()
	ok, retry, first, err := s.clients.Allow(ctx, throttle.ClientKey(clientAddr), now)
	if err != nil {
		return s.throttleFailed(ctx, s.clients, clientAddr, err)
	}
	if !ok {
		if first {
			s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventResetThrottled, ClientAddr: clientAddr, Detail: "client"})
			s.log.WarnContext(ctx, "password reset requests throttled", "client", clientAddr)
		}
		return &ThrottledError{RetryAfter: retry}
	}
	login = authz.NormalizeLogin(login)
	if login == "" || len(login) > authz.MaxEmailLen || !authz.Printable(login) {
		return &authz.ValidationError{Field: "login", Message: "Enter your username or email address."}
	}
	start := time.Now()
	u, err := s.store.UserByLogin(ctx, login)
	if err != nil && !errors.Is(err, authz.ErrNotFound) {
		return fmt.Errorf("recovery: request: %w", err)
	}
	ev := audit.Event{Time: now, Type: EventResetRequested, ClientAddr: clientAddr}
	outcome := ReqIssued
	switch {
	case u == nil:
		outcome = ReqUnknown
	case u.Status == authz.StatusDisabled:
		outcome = ReqDisabled
	case u.Status != authz.StatusActive:
		outcome = ReqPending
	case u.Email == "":
		outcome = ReqNoEmail
	}
	if u != nil {
		ev.UserID = u.ID
	}
	if outcome == ReqIssued {
		ok, _, first, err := s.accts.Allow(ctx, "user:"+u.ID, now)
		if err != nil {
			return s.throttleFailed(ctx, s.accts, clientAddr, err)
		}
		if !ok {
			outcome = ReqThrottled
			if first {
				s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventResetThrottled, UserID: u.ID, ClientAddr: clientAddr, Detail: "account"})
				s.log.WarnContext(ctx, "password reset mails throttled for an account", "user_id", u.ID, "client", clientAddr)
			}
		}
	}
	if outcome == ReqIssued {
		if err := s.issue(ctx, u, now); err != nil {
			return err
		}
		s.cost.record(time.Since(start))
	} else {
		s.dummy(start)
	}
	ev.Detail = outcome
	s.o.Audit.Record(ctx, ev)
	s.log.InfoContext(ctx, "password reset requested", "outcome", outcome, "user_id", ev.UserID, "client", clientAddr)
	return nil
}

// throttleFailed logs that a throttle's store failed and returns the
// error (matching throttle.ErrUnavailable) that refuses the request: the
// flow fails closed.
func (s *Service) throttleFailed(ctx context.Context, lim *throttle.Limiter, clientAddr string, err error) error {
	s.log.ErrorContext(ctx, "password request refused: throttle unavailable", "limiter", string(lim.Name()), "client", clientAddr, "err", err)
	return fmt.Errorf("recovery: %w", err)
}

// issue issues u's reset token and its mail in one transaction.
func (s *Service) issue(ctx context.Context, u *authz.User, now time.Time) error {
	ttl := s.o.ResetTTL
	_, _, err := s.o.Tokens.IssueWith(ctx, tokens.PurposeResetPassword, u.ID, ttl, nil, func(secret string) ([]outbox.Event, error) {
		link := s.o.Mail.Link(ConfirmPath, url.Values{TokenParam: {secret}})
		m, err := s.o.Mail.Compose(string(tokens.PurposeResetPassword), u.Email, mail.Data{Name: u.Name(), Link: link, Expires: ttl})
		if err != nil {
			return nil, err
		}
		ev, err := mail.NewEvent(string(tokens.PurposeResetPassword), u.ID, m, now)
		if err != nil {
			return nil, err
		}
		return []outbox.Event{ev}, nil
	})
	if err != nil {
		return fmt.Errorf("recovery: request: %w", err)
	}
	s.o.Notify()
	return nil
}

// dummy spends, for a request that issues nothing, about what a real issue
// costs: the mail is composed (the same CPU work) and the rest of a
// recently measured issue's duration is waited out.
func (s *Service) dummy(start time.Time) {
	link := s.o.Mail.Link(ConfirmPath, url.Values{TokenParam: {"x"}})
	_, _ = s.o.Mail.Compose(string(tokens.PurposeResetPassword), "nobody@example.com", mail.Data{Link: link, Expires: s.o.ResetTTL})
	if d := s.cost.sample() - time.Since(start) - s.cost.overshoot(); d > 0 {
		t0 := time.Now()
		time.Sleep(d)
		s.cost.slept(d, time.Since(t0))
	}
}

// costSampler remembers how long the last real issues took, so that a
// request for an unknown account waits as long as one of them, drawn at
// random: the two answers then take the same time in distribution, not
// just on average. Before any real issue it answers defaultCost.
type costSampler struct {
	mu   sync.Mutex
	ring [64]time.Duration
	n    int
	// over is a moving average of how much longer time.Sleep slept than
	// asked (timer granularity, scheduling), taken off the next waits.
	over time.Duration
}

// slept records a sleep of asked that took took.
func (c *costSampler) slept(asked, took time.Duration) {
	c.mu.Lock()
	c.over += (took - asked - c.over) / 8
	c.over = max(c.over, 0)
	c.mu.Unlock()
}

func (c *costSampler) overshoot() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.over
}

// defaultCost is the wait of requests before the first real issue was
// measured: about one small transaction on a local database.
const defaultCost = 5 * time.Millisecond

func (c *costSampler) record(d time.Duration) {
	c.mu.Lock()
	c.ring[c.n%len(c.ring)] = d
	c.n++
	c.mu.Unlock()
}

func (c *costSampler) sample() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return defaultCost
	}
	return c.ring[rand.IntN(min(c.n, len(c.ring)))]
}
