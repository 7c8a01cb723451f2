// Package onboarding lets administrators bring people in: they approve or
// reject the registrations that wait for approval (status pending), one at
// a time or in bulk, and they generate credentials for Dataverse contacts
// in bulk (the portal products' "Generate Credentials"): an account bound
// to each contact that has none, and a mail with a link to choose a
// password. Every change is stored with its lifecycle event and its mail
// in one transaction, and audited with the actor.
package onboarding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// Store is the part of the account store onboarding uses; *store.DB
// implements it on SQLite and PostgreSQL. Methods return authz.ErrNotFound,
// authz.ErrConflict and authz.ErrStale as documented, wrapped or not.
type Store interface {
	// LinkStore issues set-password links (SendSetPasswordLink).
	LinkStore
	// UserByID returns the user with that id, or authz.ErrNotFound.
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// UserByLogin returns the user whose username or email equals login
	// after authz.NormalizeLogin, or authz.ErrNotFound.
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	// UsersBoundToContact returns the users whose lookup binding names
	// contact id (a few at most).
	UsersBoundToContact(ctx context.Context, id string) ([]*authz.User, error)
	// UpdateUserAndEnqueue saves u provided the stored row still has
	// u.UpdatedAt, and enqueues events, in one transaction; a changed row
	// gives authz.ErrStale, a missing one authz.ErrNotFound.
	UpdateUserAndEnqueue(ctx context.Context, u *authz.User, events ...outbox.Event) error
	// DeleteUserIfUnchanged deletes user id provided its row still has
	// updatedAt, and enqueues events, in one transaction; a changed row
	// gives authz.ErrStale, a missing one authz.ErrNotFound.
	DeleteUserIfUnchanged(ctx context.Context, id string, updatedAt time.Time, events ...outbox.Event) error
	// CreateContactUser inserts u (whose ID is set and whose binding is a
	// lookup), the token t for it (t.ID is set) and events, in one
	// transaction, provided no user is bound to u's contact; otherwise it
	// gives an error wrapping ErrContactBound and stores nothing.
	// Concurrent calls for one contact, on any replica, create at most one
	// account. A taken username or email gives authz.ErrConflict.
	CreateContactUser(ctx context.Context, u *authz.User, t *tokens.Token, events ...outbox.Event) error
}

// Contacts is what onboarding reads from Dataverse; crmclient.Directory
// and crmclient.CachedDirectory satisfy it. Each call is one Web API
// request through the client's budget, concurrency limit, Retry-After
// handling and breaker. Errors wrap dataverse.ErrUnavailable when
// Dataverse cannot answer.
type Contacts interface {
	// ContactByID returns contact id (a lower-case GUID) with columns,
	// active or not; a missing contact gives dataverse.ErrContactNotFound.
	ContactByID(ctx context.Context, id string, columns []string) (*dataverse.Contact, error)
	// FindContacts returns the contacts that match q, at most q.Limit,
	// ordered by id.
	FindContacts(ctx context.Context, q dataverse.ContactQuery) ([]*dataverse.Contact, error)
}

// Tokens issues the set-password tokens; *tokens.Service satisfies it.
type Tokens interface {
	// Prepare returns a token's secret and the token to store with the
	// account, without storing it.
	Prepare(purpose tokens.Purpose, userID string, ttl time.Duration, payload json.RawMessage) (string, tokens.Token, error)
	// Issued audits a stored token that Prepare made.
	Issued(ctx context.Context, t tokens.Token)
}

// ErrContactBound is wrapped by Store.CreateContactUser when a user is
// bound to the contact already (made by another run at the same moment).
var ErrContactBound = errors.New("onboarding: a user is bound to the contact already")

// ErrNotPending is returned (wrapped) for an approval or rejection of a
// user who is not waiting for approval: active, disabled, or decided by
// another administrator a moment earlier.
var ErrNotPending = errors.New("onboarding: the user is not waiting for approval")

// DefaultSetPasswordTTL is how long a set-password link works when
// Options.SetPasswordTTL is zero.
const DefaultSetPasswordTTL = 7 * 24 * time.Hour

// Options configure a Service. Fields without a documented zero value are
// required.
type Options struct {
	// Audit receives every decision and every generated account.
	Audit *audit.Log
	// Mail composes the approval, rejection and set-password mails; every
	// link comes from its public URL.
	Mail *mail.Composer
	// Tokens issues the set-password tokens.
	Tokens Tokens
	// Contacts reads Dataverse contacts for InviteContacts; nil means no
	// Dataverse, and InviteContacts fails with ErrNoDirectory.
	Contacts Contacts
	// SetPasswordTTL is how long a set-password link works; zero means
	// DefaultSetPasswordTTL. At most tokens.MaxTTL.
	SetPasswordTTL time.Duration
	// UsernameColumn, when set, is the contact column whose value becomes
	// the new account's username (for example adx_identity_username);
	// a contact whose column is empty gets its email address. Empty means
	// the username is always the email address.
	UsernameColumn string
	// BindingUsernameColumn is the contact column username bindings compare
	// with usernames (binding.Options.UsernameColumn); empty means
	// binding.DefaultUsernameColumn. A contact whose column names a user
	// bound in username mode has an account already.
	BindingUsernameColumn string
	// Notify, when set, is called after a change that enqueued outbox
	// events was committed, typically outbox.Worker.Notify; it must not
	// block.
	Notify func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures the caller does not see; nil discards them.
	Logger *slog.Logger
}

// ErrNoDirectory means InviteContacts was called without Dataverse.
var ErrNoDirectory = errors.New("onboarding: no Dataverse is configured")

// Service approves and rejects registrations and generates credentials.
// Build it with New; it is safe for concurrent use.
type Service struct {
	store    Store
	contacts Contacts
	tokens   Tokens
	mail     *mail.Composer
	audit    *audit.Log
	ttl      time.Duration
	column   string
	bindCol  string
	notify   func()
	now      func() time.Time
	log      *slog.Logger
}

// New returns the onboarding service over store.
func New(store Store, o Options) (*Service, error) {
	var errs []error
	if store == nil || o.Audit == nil || o.Mail == nil || o.Tokens == nil {
		errs = append(errs, errors.New("onboarding: nil store, audit log, mail composer or tokens"))
	}
	if o.SetPasswordTTL < 0 || o.SetPasswordTTL > tokens.MaxTTL {
		errs = append(errs, fmt.Errorf("onboarding: set-password link lifetime %v: want at most %v", o.SetPasswordTTL, tokens.MaxTTL))
	}
	if o.BindingUsernameColumn != "" {
		if err := dataverse.ValidContactColumn(o.BindingUsernameColumn); err != nil {
			errs = append(errs, fmt.Errorf("onboarding: binding username column: %w", err))
		}
	}
	if o.UsernameColumn != "" {
		if err := dataverse.ValidContactColumn(o.UsernameColumn); err != nil {
			errs = append(errs, fmt.Errorf("onboarding: username column: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Service{store: store, contacts: o.Contacts, tokens: o.Tokens, mail: o.Mail, audit: o.Audit,
		ttl: o.SetPasswordTTL, column: o.UsernameColumn, bindCol: o.BindingUsernameColumn, notify: o.Notify, now: o.Now, log: o.Logger}
	if s.bindCol == "" {
		s.bindCol = binding.DefaultUsernameColumn
	}
	if s.ttl == 0 {
		s.ttl = DefaultSetPasswordTTL
	}
	if s.notify == nil {
		s.notify = func() {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// SetPasswordTTL is how long the set-password links this service mails work.
func (s *Service) SetPasswordTTL() time.Duration { return s.ttl }

// lookup returns the account whose id is who, else the one whose username
// or email is who, else an error wrapping authz.ErrNotFound.
func (s *Service) lookup(ctx context.Context, who string) (*authz.User, error) {
	if who == "" || len(who) > authz.MaxEmailLen || !authz.Printable(who) {
		return nil, authz.ErrNotFound
	}
	u, err := s.store.UserByID(ctx, who)
	if errors.Is(err, authz.ErrNotFound) {
		u, err = s.store.UserByLogin(ctx, who)
	}
	return u, err
}
