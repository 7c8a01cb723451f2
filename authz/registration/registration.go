// Package registration lets visitors create their own account at
// /.auth/register: in open mode at once, in approval mode as a pending
// account an administrator approves, in invitation mode only through an
// invitation (redeemed elsewhere). The address is confirmed with an emailed
// one-time link before the account may sign in (by default); on
// confirmation the account is bound by the binding rules, or a new Dataverse
// contact is created for it through the outbox (ContactDeliverer), so that
// a Dataverse outage delays the account and loses nothing.
//
// The username of a self-registered account is its email address: a
// visitor never learns from the form whether another account holds a
// username (there is no separate one), and every refusal that would tell
// an existing address from a new one answers as for a new one.
package registration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// Mode is CRMGATE_REGISTRATION_MODE.
type Mode string

// The registration modes.
const (
	// ModeOff turns registration off: the page does not exist.
	ModeOff Mode = "off"
	// ModeOpen creates active accounts.
	ModeOpen Mode = "open"
	// ModeApproval creates pending accounts that an administrator approves.
	ModeApproval Mode = "approval"
	// ModeInvitation creates accounts only by redeeming an invitation; the
	// registration page only explains that and forwards a code.
	ModeInvitation Mode = "invitation"
)

// Valid reports whether m is one of the modes.
func (m Mode) Valid() bool {
	return m == ModeOff || m == ModeOpen || m == ModeApproval || m == ModeInvitation
}

// State is where a registration is.
type State string

// The registration states.
const (
	// StateConfirming owes the email confirmation: no sign-in.
	StateConfirming State = "confirming"
	// StateSettingUp is confirmed and waits for its Dataverse contact: no
	// sign-in until ContactDeliverer bound the account.
	StateSettingUp State = "setting_up"
	// StateDone is finished: the account signs in as any other (a pending
	// one once approved).
	StateDone State = "done"
)

// Registration is what the store keeps of a self-registration until it is
// done, and after.
type Registration struct {
	// UserID is the account.
	UserID string
	// State is where it is.
	State State
	// Fields are the allow-listed contact columns typed in the form, by
	// logical name; written to the contact when one is created.
	Fields map[string]string
	// ContactID is the lower-case GUID of the contact to create, chosen at
	// registration so that a retried creation finds it instead of making a
	// second one; empty when no contact is created.
	ContactID string
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt, UpdatedAt time.Time
}

// Store is the part of the account store registration uses; *store.DB
// implements it on SQLite and PostgreSQL.
type Store interface {
	// Store keeps the throttles' buckets, shared by every replica.
	throttle.Store
	// UserByID and UserByLogin are as in the other features' stores.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	// CreateRegistration creates u and its registration r and, when t is
	// not nil, inserts t for u (revoking the older outstanding tokens of
	// its purpose beyond keep, as tokens.Store.IssueToken), and enqueues
	// events: all in one transaction. A taken username or email gives
	// authz.ErrConflict.
	CreateRegistration(ctx context.Context, u *authz.User, r *Registration, t *tokens.Token, keep int, events ...outbox.Event) error
	// RegistrationByUser returns the registration of an account, or
	// authz.ErrNotFound for an account that did not register itself.
	RegistrationByUser(ctx context.Context, userID string) (*Registration, error)
	// AdvanceRegistration stores u (as UpdateUser, bumping UpdatedAt) and
	// moves its registration from from to to, and enqueues events, in one
	// transaction, only while the registration is still in from: otherwise
	// (a concurrent confirmation or delivery won) it changes nothing and
	// returns authz.ErrStale.
	AdvanceRegistration(ctx context.Context, u *authz.User, from, to State, events ...outbox.Event) error
	// Enqueue adds events to the outbox.
	Enqueue(ctx context.Context, events ...outbox.Event) error
}

// Binder binds a confirmed account by the binding rules;
// *binding.Resolver satisfies it.
type Binder interface {
	// InitialBinding returns the binding a new account u gets (the default
	// mode or the email auto-map). It never fails.
	InitialBinding(ctx context.Context, u *authz.User) authz.Binding
}

// Field is an allow-listed contact column of the form.
type Field struct {
	// Column is the contact column's logical name (dataverse.ValidContactColumn).
	Column string
	// Label is what the form shows.
	Label string
}

// The default throttles, per hour and burst.
const (
	DefaultClientRate  = 20
	DefaultClientBurst = 5
	DefaultEmailRate   = 5
	DefaultEmailBurst  = 3
)

// MaxFieldLen is the longest value of an extra field, in characters.
const MaxFieldLen = 200

// Options configure a Service. Fields without a documented zero value are
// required; package config supplies the defaults.
type Options struct {
	// Mode is the registration mode; ModeOff builds a service that refuses
	// every registration.
	Mode Mode
	// ConfirmEmail requires the emailed confirmation before sign-in.
	ConfirmEmail bool
	// ConfirmTTL is how long a confirmation link works.
	ConfirmTTL time.Duration
	// CreateContact creates a Dataverse contact for every confirmed
	// account (through the outbox and ContactDeliverer) instead of binding
	// it by the binding rules.
	CreateContact bool
	// Fields are the extra contact columns of the form; nil asks none.
	Fields []Field
	// Policy is the password rule (accounts.Service.PasswordPolicy).
	Policy password.Policy
	// Password are the hashing parameters of new hashes.
	Password password.Params
	// ClientRate and ClientBurst limit registrations, resends and
	// confirmations per client address; EmailRate and EmailBurst
	// registrations and resends per address typed in. Zero means the
	// defaults: DefaultClientRate, DefaultClientBurst, DefaultEmailRate,
	// DefaultEmailBurst.
	ClientRate, EmailRate   int // per hour
	ClientBurst, EmailBurst int
	// Tokens issues and consumes the confirmation links. Required.
	Tokens *tokens.Service
	// Mail composes the mails. Required unless Mode is ModeOff.
	Mail *mail.Composer
	// Binder binds confirmed accounts; nil leaves them unbound.
	Binder Binder
	// Audit receives the registered, confirmed and resend events. Required.
	Audit *audit.Log
	// Notify is called after events were enqueued; nil waits for the poll.
	Notify func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures callers do not see; nil discards them.
	Logger *slog.Logger
}

// Audit event types of registration.
const (
	EventRegistered        = "user.registered"         // a new account registered; Detail is the mode
	EventRegisterDuplicate = "user.register_duplicate" // someone registered with an address that has an account (UserID); the owner is mailed
	EventRegisterThrottled = "user.register_throttled" // the first refusal of a throttled client address or email address
	EventEmailConfirmed    = "user.email_confirmed"    // a registration's address was confirmed; Detail is the next state
	EventConfirmResent     = "user.confirm_resent"     // a new confirmation link was sent (older ones revoked)
	EventContactCreated    = "user.contact_created"    // the registration's contact was created and the account bound to it; Detail is the contact id
)

// Hold reasons, the signin.HeldError reasons of a registration that may
// not sign in yet.
const (
	HoldUnconfirmed = "email_unconfirmed"
	HoldSettingUp   = "setting_up"
)

// Mail names of the registration flow (mail/templates).
const (
	MailConfirm  = "confirm_email"
	MailPending  = "registration_pending"
	MailExisting = "registration_exists"
)

// Errors of the service.
var (
	// ErrOff is returned while registration is off or by invitation only.
	ErrOff = errors.New("registration: not open")
	// ErrThrottled matches every *ThrottledError.
	ErrThrottled = errors.New("registration: too many attempts")
)

// ThrottledError is returned when a client address or an email address
// made too many attempts.
type ThrottledError struct{ RetryAfter time.Duration }

// Error implements error.
func (e *ThrottledError) Error() string {
	return fmt.Sprintf("registration: too many attempts, retry after %s", e.RetryAfter.Round(time.Second))
}

// Is reports whether target is ErrThrottled.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// Next says what the person is told after a step.
type Next string

// The outcomes of Register and Confirm.
const (
	// NextCheckMail: a confirmation link was mailed (or, for an address
	// that has an account, its owner was told); the same for both.
	NextCheckMail Next = "check_mail"
	// NextSignIn: the account may sign in now.
	NextSignIn Next = "sign_in"
	// NextPending: the account waits for an administrator's approval.
	NextPending Next = "pending"
	// NextSettingUp: the account waits for its Dataverse contact.
	NextSettingUp Next = "setting_up"
)

// Outcome is the result of Register or Confirm.
type Outcome struct {
	Next Next
	// Email is the address concerned, as typed (to show "we sent a link to ...").
	Email string
	// RedirectURL is the return address given at registration, unvalidated:
	// the caller validates it before use.
	RedirectURL string
}

// Input is the registration form.
type Input struct {
	Email, Password, FirstName, LastName string
	// Fields are the extra columns' values by column name; unknown names
	// are refused.
	Fields map[string]string
	// RedirectURL is carried to the confirmation (the caller validated it).
	RedirectURL string
	// ClientAddr keys the throttle.
	ClientAddr string
}

// Service registers and confirms accounts. Build it with New; it is safe
// for concurrent use.
type Service struct {
	o                 Options
	store             Store
	now               func() time.Time
	log               *slog.Logger
	clients, emails   *throttle.Limiter
	confirms          *throttle.Limiter
	dummyHash         string
	fieldSet          map[string]bool
	requireLastName   bool
	backgroundTimeout time.Duration
}

// New returns the registration service over store, or every problem of o.
func New(store Store, o Options) (*Service, error) {
	for _, d := range []struct {
		v   *int
		def int
	}{{&o.ClientRate, DefaultClientRate}, {&o.ClientBurst, DefaultClientBurst}, {&o.EmailRate, DefaultEmailRate}, {&o.EmailBurst, DefaultEmailBurst}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	var errs []error
	if store == nil || o.Tokens == nil || o.Audit == nil {
		errs = append(errs, errors.New("registration: nil store, token service or audit log"))
	}
	if !o.Mode.Valid() {
		errs = append(errs, fmt.Errorf("registration: unknown mode %q", o.Mode))
	}
	if o.Mode != ModeOff && o.Mode != ModeInvitation && o.Mail == nil {
		errs = append(errs, errors.New("registration: needs a mail composer"))
	}
	if o.ConfirmEmail && (o.ConfirmTTL <= 0 || o.ConfirmTTL > tokens.MaxTTL) {
		errs = append(errs, errors.New("registration: confirmation lifetime out of range"))
	}
	if o.ClientRate < 1 || o.EmailRate < 1 || o.ClientBurst < 1 || o.EmailBurst < 1 {
		errs = append(errs, errors.New("registration: rates and bursts must be at least 1"))
	}
	if err := o.Password.Validate(); err != nil {
		errs = append(errs, err)
	}
	fieldSet := map[string]bool{}
	for _, f := range o.Fields {
		if err := ValidField(f.Column); err != nil {
			errs = append(errs, err)
		}
		if fieldSet[f.Column] {
			errs = append(errs, fmt.Errorf("registration: field %s listed twice", f.Column))
		}
		fieldSet[f.Column] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Service{o: o, store: store, now: o.Now, log: o.Logger, fieldSet: fieldSet,
		requireLastName: o.CreateContact, backgroundTimeout: 30 * time.Second}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if s.clients, err = throttle.New(store, throttle.RegistrationClient, throttle.PerHour(o.ClientRate), o.ClientBurst); err != nil {
		return nil, err
	}
	if s.emails, err = throttle.New(store, throttle.RegistrationEmail, throttle.PerHour(o.EmailRate), o.EmailBurst); err != nil {
		return nil, err
	}
	// Confirmation links are 256-bit secrets: the throttle only keeps a
	// flood of refusals (each audited) in bounds.
	if s.confirms, err = throttle.New(store, throttle.RegistrationConfirm, throttle.PerHour(max(o.ClientRate, 60)), max(o.ClientBurst, 10)); err != nil {
		return nil, err
	}
	dummy, err := password.Hash(rand.Text(), o.Password)
	if err != nil {
		return nil, err
	}
	s.dummyHash = dummy
	return s, nil
}

// ValidField checks an extra field's column: a contact column that is not
// secret (dataverse.ValidContactColumn) and not one the form always has
// (firstname, lastname, emailaddress1) nor the key.
func ValidField(column string) error {
	if err := dataverse.ValidContactColumn(column); err != nil {
		return fmt.Errorf("registration: field %q: %w", column, err)
	}
	switch column {
	case "firstname", "lastname", "emailaddress1", "contactid", "fullname", "statecode", "statuscode":
		return fmt.Errorf("registration: field %q is always set by the gateway or by Dataverse", column)
	}
	return nil
}

// Mode returns the configured mode.
func (s *Service) Mode() Mode { return s.o.Mode }

// Fields returns the extra fields of the form.
func (s *Service) Fields() []Field { return s.o.Fields }

// LastNameRequired reports whether the form requires a last name (a
// Dataverse contact requires one when it is created).
func (s *Service) LastNameRequired() bool { return s.requireLastName }

// PasswordPolicy is the password rule the form states.
func (s *Service) PasswordPolicy() password.Policy { return s.o.Policy }

// allow takes one event of key from lim, the per-client or the per-email
// throttle; a refusal is audited once per run across replicas. When the
// throttle's store fails it refuses too, with an error matching
// throttle.ErrUnavailable (fail closed), and logs it.
func (s *Service) allow(ctx context.Context, lim *throttle.Limiter, key, client string, now time.Time) error {
	ok, retry, first, err := lim.Allow(ctx, key, now)
	if err != nil {
		s.log.ErrorContext(ctx, "registration refused: throttle unavailable", "limiter", string(lim.Name()), "client", client, "err", err)
		return fmt.Errorf("registration: %w", err)
	}
	if ok {
		return nil
	}
	if first {
		s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventRegisterThrottled, ClientAddr: client})
		s.log.WarnContext(ctx, "registration throttled", "client", client)
	}
	return &ThrottledError{RetryAfter: retry}
}

// validate checks in and returns the cleaned fields.
func (s *Service) validate(in *Input) error {
	in.Email = strings.TrimSpace(in.Email)
	in.FirstName, in.LastName = strings.TrimSpace(in.FirstName), strings.TrimSpace(in.LastName)
	var errs []error
	if err := authz.ValidateEmail(in.Email); err != nil {
		errs = append(errs, err)
	} else if err := authz.ValidateUsername(in.Email); err != nil {
		// The email is the username: it must also be a valid one.
		errs = append(errs, &authz.ValidationError{Field: "email", Message: "This email address cannot be used as a username: use letters, digits and . _ - @ only."})
	}
	for _, f := range []struct{ name, v string }{{"first_name", in.FirstName}, {"last_name", in.LastName}} {
		if err := authz.ValidateName(f.v); err != nil {
			errs = append(errs, &authz.ValidationError{Field: f.name, Message: "Names must be plain text of at most 200 characters."})
		}
	}
	if s.requireLastName && in.LastName == "" {
		errs = append(errs, &authz.ValidationError{Field: "last_name", Message: "Please enter your last name."})
	}
	clean := map[string]string{}
	for k, v := range in.Fields {
		if !s.fieldSet[k] {
			errs = append(errs, &authz.ValidationError{Field: k, Message: "This field is not part of the form."})
			continue
		}
		v = strings.TrimSpace(v)
		if !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxFieldLen || !authz.Printable(v) {
			errs = append(errs, &authz.ValidationError{Field: k, Message: fmt.Sprintf("Please use plain text of at most %d characters.", MaxFieldLen)})
			continue
		}
		if v != "" {
			clean[k] = v
		}
	}
	in.Fields = clean
	if err := s.o.Policy.Check(in.Password, password.Subject{Username: in.Email, Email: in.Email}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Register validates the form and creates the account. Bad input gives an
// error joining *authz.ValidationError (and *password.RuleError) values;
// too many attempts a *ThrottledError, and a throttle that cannot be asked
// an error matching throttle.ErrUnavailable (refused, nothing stored);
// registration off ErrOff. An address that already has an account gets the
// same Outcome, after the same password hashing and one store write, as a
// new one, and its owner is mailed that someone tried to register with it
// (throttled per address).
func (s *Service) Register(ctx context.Context, in Input) (Outcome, error) {
	if s.o.Mode != ModeOpen && s.o.Mode != ModeApproval {
		return Outcome{}, ErrOff
	}
	now := s.now()
	if err := s.allow(ctx, s.clients, throttle.ClientKey(in.ClientAddr), in.ClientAddr, now); err != nil {
		return Outcome{}, err
	}
	if err := s.validate(&in); err != nil {
		return Outcome{}, err
	}
	if err := s.allow(ctx, s.emails, authz.NormalizeLogin(in.Email), in.ClientAddr, now); err != nil {
		return Outcome{}, err
	}
	out := Outcome{Email: in.Email, RedirectURL: in.RedirectURL, Next: s.firstNext()}
	existing, err := s.store.UserByLogin(ctx, in.Email)
	switch {
	case err == nil:
		return out, s.duplicate(ctx, existing, in, now)
	case !errors.Is(err, authz.ErrNotFound):
		return Outcome{}, fmt.Errorf("registration: %w", err)
	}
	hash, err := password.Hash(in.Password, s.o.Password)
	if err != nil {
		return Outcome{}, err
	}
	u := &authz.User{ID: authz.NewID(), Username: in.Email, Email: in.Email, FirstName: in.FirstName, LastName: in.LastName,
		PasswordHash: hash, Status: authz.StatusActive, EmailConfirmed: !s.o.ConfirmEmail, SecurityStamp: authz.NewID(),
		Binding: authz.Binding{Mode: authz.BindingNone}, CreatedAt: now, UpdatedAt: now}
	if s.o.Mode == ModeApproval {
		u.Status = authz.StatusPending
	}
	reg := &Registration{UserID: u.ID, State: StateConfirming, Fields: in.Fields}
	if s.o.CreateContact {
		reg.ContactID = newGUID()
	}
	var events []outbox.Event
	for _, typ := range []string{lifecycle.Created, lifecycle.Registered} {
		ev, err := lifecycle.NewEvent(typ, u, now)
		if err != nil {
			return Outcome{}, err
		}
		events = append(events, ev)
	}
	var tok *tokens.Token
	if s.o.ConfirmEmail {
		payload, _ := json.Marshal(tokenPayload{Email: u.Email, RedirectURL: in.RedirectURL})
		secret, t, err := s.o.Tokens.Prepare(tokens.PurposeConfirmEmail, u.ID, s.o.ConfirmTTL, payload)
		if err != nil {
			return Outcome{}, err
		}
		ev, err := s.confirmMail(u, secret, now)
		if err != nil {
			return Outcome{}, err
		}
		tok, events = &t, append(events, ev)
	} else {
		evs, err := s.confirmed(ctx, u, reg, now)
		if err != nil {
			return Outcome{}, err
		}
		events = append(events, evs...)
	}
	keep := s.o.Tokens.Keep(u.ID)
	if err := s.store.CreateRegistration(ctx, u, reg, tok, keep, events...); err != nil {
		if errors.Is(err, authz.ErrConflict) {
			// A concurrent registration of the same address won: tell
			// this one what the duplicate would have been told.
			return out, nil
		}
		return Outcome{}, fmt.Errorf("registration: %w", err)
	}
	s.notify()
	if tok != nil {
		s.o.Tokens.Issued(ctx, *tok)
	}
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventRegistered, Actor: u.ID, UserID: u.ID, ClientAddr: in.ClientAddr, Detail: string(s.o.Mode)})
	s.log.InfoContext(ctx, "user registered", "user_id", u.ID, "mode", string(s.o.Mode), "client", in.ClientAddr)
	if !s.o.ConfirmEmail {
		out.Next = s.nextAfterConfirm(u, reg)
	}
	return out, nil
}

// firstNext is what a registration is told at once.
func (s *Service) firstNext() Next {
	switch {
	case s.o.ConfirmEmail:
		return NextCheckMail
	case s.o.CreateContact:
		return NextSettingUp
	case s.o.Mode == ModeApproval:
		return NextPending
	}
	return NextSignIn
}

// nextAfterConfirm is what a confirmed registration is told.
func (s *Service) nextAfterConfirm(u *authz.User, reg *Registration) Next {
	switch {
	case reg.State == StateSettingUp:
		return NextSettingUp
	case u.Status == authz.StatusPending:
		return NextPending
	}
	return NextSignIn
}

// duplicate answers a registration with an address that has an account:
// it spends the hashing time of a real registration and mails the owner.
func (s *Service) duplicate(ctx context.Context, existing *authz.User, in Input, now time.Time) error {
	_, _ = password.Hash(in.Password, s.o.Password) // the same work as a new account
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventRegisterDuplicate, UserID: existing.ID, ClientAddr: in.ClientAddr})
	s.log.InfoContext(ctx, "registration with the address of an existing account; its owner is told", "user_id", existing.ID, "client", in.ClientAddr)
	m, err := s.o.Mail.Compose(MailExisting, existing.Email, mail.Data{Name: existing.Name(),
		Link: s.o.Mail.Link("/signin", nil)})
	if err == nil {
		var ev outbox.Event
		if ev, err = mail.NewEvent(MailExisting, existing.ID, m, now); err == nil {
			err = s.store.Enqueue(ctx, ev)
		}
	}
	if err != nil {
		// The visitor is told what a new registration is told; the owner's
		// notice is lost, which the log says.
		s.log.ErrorContext(ctx, "registration: notice to an existing account not queued", "user_id", existing.ID, "err", err)
		return nil
	}
	s.notify()
	return nil
}

// tokenPayload is the payload of a confirmation token.
type tokenPayload struct {
	Email       string `json:"email"`
	RedirectURL string `json:"redirect_url,omitempty"`
}

// confirmMail is the confirm_email mail with the link of secret.
func (s *Service) confirmMail(u *authz.User, secret string, now time.Time) (outbox.Event, error) {
	// The link holds only the secret; it comes from the public URL, never
	// from the request's Host or forwarded headers.
	m, err := s.o.Mail.Compose(MailConfirm, u.Email, mail.Data{Name: u.Name(),
		Link: s.o.Mail.Link("/confirm", url.Values{"token": {secret}}), Expires: s.o.ConfirmTTL})
	if err != nil {
		return outbox.Event{}, err
	}
	return mail.NewEvent(MailConfirm, u.ID, m, now)
}

// confirmed changes u and reg for a confirmed address and returns the
// events that go with it: the contact creation, or the binding by the
// rules; the approval notice.
func (s *Service) confirmed(ctx context.Context, u *authz.User, reg *Registration, now time.Time) ([]outbox.Event, error) {
	u.EmailConfirmed = true
	var events []outbox.Event
	if s.o.CreateContact {
		reg.State = StateSettingUp
		ev, err := contactEvent(u.ID, reg.ContactID, now)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	} else {
		reg.State = StateDone
		if s.o.Binder != nil {
			// Only now: an unconfirmed address must never bind an account
			// to the contact of whoever owns that address.
			u.Binding = s.o.Binder.InitialBinding(ctx, u)
		}
		if u.Binding.Mode != "" && u.Binding.Mode != authz.BindingNone {
			ev, err := lifecycle.NewEvent(lifecycle.Bound, u, now)
			if err != nil {
				return nil, err
			}
			events = append(events, ev)
		}
	}
	if u.Status == authz.StatusPending && s.o.Mail != nil {
		m, err := s.o.Mail.Compose(MailPending, u.Email, mail.Data{Name: u.Name()})
		if err != nil {
			return nil, err
		}
		ev, err := mail.NewEvent(MailPending, u.ID, m, now)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, nil
}

// Confirm spends the confirmation link's secret and finishes the
// confirmation: binding, or the contact creation, and the approval notice.
// Every bad secret (malformed, unknown, used, revoked, expired, of another
// purpose, for an address since changed) gives tokens.ErrInvalidToken;
// too many attempts from clientAddr a *ThrottledError. Of concurrent
// confirmations of one link exactly one succeeds.
func (s *Service) Confirm(ctx context.Context, secret, clientAddr string) (Outcome, error) {
	now := s.now()
	if err := s.allow(ctx, s.confirms, throttle.ClientKey(clientAddr), clientAddr, now); err != nil {
		return Outcome{}, err
	}
	t, err := s.o.Tokens.Consume(ctx, tokens.PurposeConfirmEmail, secret)
	if err != nil {
		return Outcome{}, err
	}
	var p tokenPayload
	_ = json.Unmarshal(t.Payload, &p)
	u, err := s.store.UserByID(ctx, t.UserID)
	if errors.Is(err, authz.ErrNotFound) {
		return Outcome{}, tokens.ErrInvalidToken
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("registration: confirm: %w", err)
	}
	if authz.NormalizeLogin(u.Email) != authz.NormalizeLogin(p.Email) {
		s.log.WarnContext(ctx, "confirmation link for an address the account no longer has", "user_id", u.ID)
		return Outcome{}, tokens.ErrInvalidToken
	}
	reg, err := s.store.RegistrationByUser(ctx, u.ID)
	if err != nil && !errors.Is(err, authz.ErrNotFound) {
		return Outcome{}, fmt.Errorf("registration: confirm: %w", err)
	}
	out := Outcome{Email: u.Email, RedirectURL: p.RedirectURL}
	// The token is spent: a concurrent change of the account (a sign-in
	// attempt, an administrator) must not lose the confirmation, so a
	// stale write is read again and retried.
	for attempt := 0; ; attempt++ {
		if reg == nil || reg.State != StateConfirming {
			// Confirmed already (by another, newer link): nothing owed.
			if reg == nil {
				reg = &Registration{State: StateDone}
			}
			out.Next = s.nextAfterConfirm(u, reg)
			return out, nil
		}
		events, err := s.confirmed(ctx, u, reg, now)
		if err != nil {
			return Outcome{}, err
		}
		err = s.store.AdvanceRegistration(ctx, u, StateConfirming, reg.State, events...)
		if err == nil {
			break
		}
		if !errors.Is(err, authz.ErrStale) || attempt == 4 {
			return Outcome{}, fmt.Errorf("registration: confirm: %w", err)
		}
		if u, err = s.store.UserByID(ctx, u.ID); err != nil {
			return Outcome{}, fmt.Errorf("registration: confirm: %w", err)
		}
		if reg, err = s.store.RegistrationByUser(ctx, u.ID); err != nil {
			return Outcome{}, fmt.Errorf("registration: confirm: %w", err)
		}
	}
	s.notify()
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventEmailConfirmed, Actor: u.ID, UserID: u.ID, ClientAddr: clientAddr, Detail: string(reg.State)})
	s.log.InfoContext(ctx, "email confirmed", "user_id", u.ID, "next", string(reg.State))
	out.Next = s.nextAfterConfirm(u, reg)
	return out, nil
}

// Resend mails a new confirmation link to email when an account that
// still owes its confirmation has it, revoking the older links beyond
// tokens.Options.MaxOutstanding. The answer is the same whether or not
// such an account exists: the lookup and the mail run after Resend
// returned, so that its timing tells nothing either. Too many attempts
// from clientAddr or for email give a *ThrottledError.
func (s *Service) Resend(ctx context.Context, email, clientAddr string) error {
	if s.o.Mail == nil {
		return ErrOff
	}
	now := s.now()
	if err := s.allow(ctx, s.clients, throttle.ClientKey(clientAddr), clientAddr, now); err != nil {
		return err
	}
	email = strings.TrimSpace(email)
	if err := authz.ValidateEmail(email); err != nil {
		return err
	}
	if err := s.allow(ctx, s.emails, authz.NormalizeLogin(email), clientAddr, now); err != nil {
		return err
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.backgroundTimeout)
	go func() {
		defer cancel()
		// Start only once the answer is on its way: work that begins
		// while the response is written competes with it for the CPU and
		// the database, and would make the answer for an account that
		// owes its confirmation measurably slower than for an unknown
		// address (TestResendTiming).
		time.Sleep(resendDelay + mrand.N(resendDelay))
		s.resend(bg, email, clientAddr)
	}()
	return nil
}

// resendDelay is the least wait between the answer to a resend and its
// work; a random share of as much again is added.
const resendDelay = 50 * time.Millisecond

// resend is the work of Resend; its failures are logged.
func (s *Service) resend(ctx context.Context, email, clientAddr string) {
	u, err := s.store.UserByLogin(ctx, email)
	if err != nil {
		if !errors.Is(err, authz.ErrNotFound) {
			s.log.ErrorContext(ctx, "registration: resend: lookup failed", "err", err)
		}
		return
	}
	if authz.NormalizeLogin(u.Email) != authz.NormalizeLogin(email) {
		return // a username that looks like an address: not this account's address
	}
	reg, err := s.store.RegistrationByUser(ctx, u.ID)
	if err != nil || reg.State != StateConfirming {
		if err != nil && !errors.Is(err, authz.ErrNotFound) {
			s.log.ErrorContext(ctx, "registration: resend: lookup failed", "user_id", u.ID, "err", err)
		}
		return
	}
	now := s.now()
	payload, _ := json.Marshal(tokenPayload{Email: u.Email})
	if _, _, err := s.o.Tokens.IssueWith(ctx, tokens.PurposeConfirmEmail, u.ID, s.o.ConfirmTTL, payload,
		func(secret string) ([]outbox.Event, error) {
			ev, err := s.confirmMail(u, secret, now)
			return []outbox.Event{ev}, err
		}); err != nil {
		s.log.ErrorContext(ctx, "registration: resend failed", "user_id", u.ID, "err", err)
		return
	}
	s.notify()
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventConfirmResent, UserID: u.ID, ClientAddr: clientAddr})
	s.log.InfoContext(ctx, "confirmation link resent", "user_id", u.ID, "client", clientAddr)
}

// SignInHold tells the sign-in whether u may not sign in yet because its
// registration is not finished: HoldUnconfirmed while it owes the email
// confirmation, HoldSettingUp while its contact is being created, "" for
// every other account (those an operator created have no registration and
// are never held, whatever their email_confirmed says).
func (s *Service) SignInHold(ctx context.Context, u *authz.User) (string, error) {
	reg, err := s.store.RegistrationByUser(ctx, u.ID)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("registration: %w", err)
	case reg.State == StateConfirming:
		return HoldUnconfirmed, nil
	case reg.State == StateSettingUp:
		return HoldSettingUp, nil
	}
	return "", nil
}

func (s *Service) notify() {
	if s.o.Notify != nil {
		s.o.Notify()
	}
}

// newGUID returns a random (version 4) GUID in lower case.
func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read documents it)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
