package invitations

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// Kind and types of the outbox events this package writes.
const (
	// OutboxKind is the outbox kind of a Dataverse write-back.
	OutboxKind = "invitation"
	// OutboxRedeemed writes a redemption back (payload
	// dataverse.InvitationRedemption).
	OutboxRedeemed = "redeemed"
	// MailInvitation and MailConfirm are the mail templates (and mail
	// event types) of an invitation and of the address confirmation.
	MailInvitation = "invitation"
	MailConfirm    = "invitation_confirm"
)

// Dataverse is what the feature needs from Dataverse for Power Pages
// invitations; crmclient.Directory satisfies it.
type Dataverse interface {
	// InvitationByCode returns the active invitation with exactly this
	// code, or an error wrapping dataverse.ErrInvitationNotFound (or
	// dataverse.ErrUnavailable).
	InvitationByCode(ctx context.Context, code string) (*dataverse.Invitation, error)
	// InvitationByID returns invitation id, or an error wrapping
	// dataverse.ErrInvitationNotFound.
	InvitationByID(ctx context.Context, id string) (*dataverse.Invitation, error)
	// ContactByID returns contact id with its typed fields (email, name,
	// state); a missing one wraps dataverse.ErrContactNotFound.
	ContactByID(ctx context.Context, id string, columns []string) (*dataverse.Contact, error)
}

// Users is the part of the account store the feature reads.
type Users interface {
	UserByID(ctx context.Context, id string) (*authz.User, error)
	UserByLogin(ctx context.Context, login string) (*authz.User, error)
	UsersBoundToContact(ctx context.Context, id string) ([]*authz.User, error)
}

// Options configure a Service.
type Options struct {
	// Users reads accounts. Required.
	Users Users
	// Audit records every creation, resend, revocation, redemption and
	// refusal. Required.
	Audit *audit.Log
	// Mail composes the invitation and confirmation mails. Required.
	Mail *mail.Composer
	// Tokens issues the confirmation links of redemptions that must prove
	// an address. Required.
	Tokens *tokens.Service
	// Dataverse serves Power Pages invitations; nil means only crmgate
	// invitations are accepted.
	Dataverse Dataverse
	// Password and Policy hash and check the chosen password.
	Password password.Params
	Policy   password.Policy
	// SkipDataverseProof lets a Dataverse invitation's redeemer create the
	// account at once, without confirming the invited contact's address.
	// Dangerous: whoever learns the code (a forwarded mail, a code read
	// aloud) is bound to the invited contact. The zero value (false)
	// requires the confirmation.
	SkipDataverseProof bool
	// ConfirmTTL is how long the confirmation link lives; zero means 24 hours.
	ConfirmTTL time.Duration
	// Notify is called after outbox events were enqueued; nil leaves them
	// to the next poll.
	Notify func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per refusal (never the code); nil discards.
	Logger *slog.Logger
}

// Service creates, sends, revokes and redeems invitations. Build it with
// New; it is safe for concurrent use.
type Service struct {
	store Store
	o     Options
	now   func() time.Time
	log   *slog.Logger
}

// New returns the invitation service over store.
func New(store Store, o Options) (*Service, error) {
	if store == nil || o.Users == nil || o.Audit == nil || o.Mail == nil || o.Tokens == nil {
		return nil, errors.New("invitations: store, users, audit log, mail composer and tokens are required")
	}
	if o.ConfirmTTL < 0 || o.ConfirmTTL > tokens.MaxTTL {
		return nil, errors.New("invitations: bad ConfirmTTL")
	}
	if o.ConfirmTTL == 0 {
		o.ConfirmTTL = 24 * time.Hour
	}
	s := &Service{store: store, o: o, now: o.Now, log: o.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// NewInvitation is the input of Create.
type NewInvitation struct {
	// Email is the invited address; empty takes the contact's
	// emailaddress1 (then ContactID is required).
	Email string `json:"email,omitempty"`
	// ContactID is the contact to bind the new account to; empty for none.
	ContactID string `json:"contact_id,omitempty"`
	// Kind is Single (the default when empty) or Group.
	Kind Kind `json:"kind,omitempty"`
	// MaxRedemptions of a group invitation, 1 to MaxRedemptionsLimit;
	// 0 means 1. A single invitation has 1.
	MaxRedemptions int `json:"max_redemptions,omitempty"`
	// TTL is how long it is valid; zero means DefaultTTL, at most MaxTTL.
	TTL time.Duration `json:"-"`
	// Roles are local roles for the new account.
	Roles []string `json:"roles,omitempty"`
	// RedirectURL is a local path ("/welcome") to go to after redeeming.
	RedirectURL string `json:"redirect_url,omitempty"`
}

// MaxTTLHours is MaxTTL in whole hours: the most a form or the REST API
// may ask for.
const MaxTTLHours = int(MaxTTL / time.Hour)

// TTLHours returns the validity of an invitation given in whole hours, as
// the REST API (expires_in_hours) and the console take it: 0 means
// DefaultTTL, 1 to MaxTTLHours are that many hours, anything else gives a
// *authz.ValidationError on the field expires_in.
func TTLHours(h int) (time.Duration, error) {
	if h < 0 || h > MaxTTLHours {
		return 0, &authz.ValidationError{Field: "expires_in", Message: fmt.Sprintf("The validity must be 1 to %d hours (%d days).", MaxTTLHours, MaxTTLHours/24)}
	}
	return time.Duration(h) * time.Hour, nil
}

// ValidRedirect reports whether p is a path on this site that is safe to
// redirect to: it starts with one "/", and holds no backslash, no control
// character and no scheme-relative "//" start. The HTTP edge checks it
// again with its own redirect rule before redirecting.
func ValidRedirect(p string) bool {
	if p == "" || len(p) > 2000 || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\") {
		return false
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == ""
}

// Create validates ni, stores the invitation and enqueues its mail in
// one transaction. The code is in the mail only.
func (s *Service) Create(ctx context.Context, ni NewInvitation, actor string) (*Invitation, error) {
	now := s.now()
	inv := &Invitation{Email: strings.TrimSpace(ni.Email), Kind: ni.Kind, MaxRedemptions: ni.MaxRedemptions,
		RedirectURL: ni.RedirectURL, CreatedBy: actor, CreatedAt: now}
	if inv.Kind == "" {
		inv.Kind = Single
	}
	switch inv.Kind {
	case Single:
		if inv.MaxRedemptions > 1 {
			return nil, &authz.ValidationError{Field: "max_redemptions", Message: "A single invitation is redeemed once; use kind group for more."}
		}
		inv.MaxRedemptions = 1
	case Group:
		if inv.MaxRedemptions == 0 {
			inv.MaxRedemptions = 1
		}
		if inv.MaxRedemptions < 1 || inv.MaxRedemptions > MaxRedemptionsLimit {
			return nil, &authz.ValidationError{Field: "max_redemptions", Message: fmt.Sprintf("The maximum must be 1 to %d.", MaxRedemptionsLimit)}
		}
	default:
		return nil, &authz.ValidationError{Field: "kind", Message: "The kind must be single or group."}
	}
	ttl := ni.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Minute || ttl > MaxTTL {
		return nil, &authz.ValidationError{Field: "expires_in", Message: fmt.Sprintf("The validity must be between a minute and %v.", MaxTTL)}
	}
	inv.ExpiresAt = now.Add(ttl)
	if inv.RedirectURL != "" && !ValidRedirect(inv.RedirectURL) {
		return nil, &authz.ValidationError{Field: "redirect_url", Message: "The redirect must be a path on this site, such as /welcome."}
	}
	roles, err := authz.ValidateRoles(ni.Roles)
	if err != nil {
		return nil, err
	}
	inv.Roles = roles
	name := ""
	if ni.ContactID != "" {
		if inv.Kind == Group {
			return nil, &authz.ValidationError{Field: "contact_id", Message: "A group invitation cannot name a contact: one contact is bound to one account."}
		}
		id, err := dataverse.ParseID(ni.ContactID)
		if err != nil {
			return nil, &authz.ValidationError{Field: "contact_id", Message: "The contact id must be a GUID."}
		}
		inv.ContactID = id
		if s.o.Dataverse == nil {
			return nil, &authz.ValidationError{Field: "contact_id", Message: "No Dataverse is configured, so an invitation cannot name a contact."}
		}
		ct, err := s.o.Dataverse.ContactByID(ctx, id, nil)
		switch {
		case errors.Is(err, dataverse.ErrContactNotFound):
			return nil, &authz.ValidationError{Field: "contact_id", Message: "No such contact."}
		case err != nil:
			return nil, fmt.Errorf("invitations: create: contact: %w", err)
		}
		if !ct.Active {
			return nil, &authz.ValidationError{Field: "contact_id", Message: "The contact is inactive."}
		}
		if users, err := s.o.Users.UsersBoundToContact(ctx, id); err != nil {
			return nil, fmt.Errorf("invitations: create: %w", err)
		} else if len(users) > 0 && inv.Kind == Single {
			return nil, &authz.ValidationError{Field: "contact_id", Message: "The contact already has an account (" + users[0].Username + "); there is nothing to invite it to."}
		}
		if inv.Email == "" {
			inv.Email = ct.Email
		}
		name = ct.Name
	}
	if inv.Email == "" {
		return nil, &authz.ValidationError{Field: "email", Message: "An email address is required (the contact has none)."}
	}
	if err := authz.ValidateEmail(inv.Email); err != nil {
		return nil, err
	}
	code, hash, err := newCode()
	if err != nil {
		return nil, err
	}
	inv.CodeHash, inv.SentAt = hash, now
	ev, err := s.invitationMail(inv, name, code, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateInvitation(ctx, inv, ev); err != nil {
		return nil, fmt.Errorf("invitations: create: %w", err)
	}
	s.notify()
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventCreated, Actor: actor,
		Detail: fmt.Sprintf("crmgate:%d %s max %d", inv.ID, inv.Kind, inv.MaxRedemptions)})
	return inv, nil
}

// invitationMail is the mail that carries code, linked from the public URL.
func (s *Service) invitationMail(inv *Invitation, name, code string, now time.Time) (outbox.Event, error) {
	msg, err := s.o.Mail.Compose(MailInvitation, inv.Email, mail.Data{Name: name,
		Link: s.o.Mail.Link("/invitation", url.Values{"code": {code}}), Expires: inv.ExpiresAt.Sub(now).Round(time.Hour)})
	if err != nil {
		return outbox.Event{}, fmt.Errorf("invitations: compose mail: %w", err)
	}
	return mail.NewEvent(MailInvitation, "", msg, now)
}

// List returns up to limit invitations with an id above after.
func (s *Service) List(ctx context.Context, after int64, limit int) ([]*Invitation, error) {
	return s.store.ListInvitations(ctx, after, limit)
}

// Get returns invitation id or authz.ErrNotFound.
func (s *Service) Get(ctx context.Context, id int64) (*Invitation, error) {
	return s.store.InvitationByID(ctx, id)
}

// Resend mails the outstanding invitation id again with a new code: the
// old code stops working. One revoked, expired or used up gives
// authz.ErrNotFound.
func (s *Service) Resend(ctx context.Context, id int64, actor string) (*Invitation, error) {
	now := s.now()
	inv, err := s.store.InvitationByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if !inv.Outstanding(now) {
		return nil, fmt.Errorf("invitations: resend: %w", authz.ErrNotFound)
	}
	code, hash, err := newCode()
	if err != nil {
		return nil, err
	}
	ev, err := s.invitationMail(inv, "", code, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.ReplaceInvitationCode(ctx, id, hash, now, ev); err != nil {
		return nil, fmt.Errorf("invitations: resend: %w", err)
	}
	s.notify()
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventResent, Actor: actor, Detail: fmt.Sprintf("crmgate:%d", id)})
	return s.store.InvitationByID(ctx, id)
}

// Revoke revokes invitation id: its code stops working at once.
func (s *Service) Revoke(ctx context.Context, id int64, actor string) error {
	now := s.now()
	if err := s.store.RevokeInvitation(ctx, id, now); err != nil {
		return fmt.Errorf("invitations: revoke: %w", err)
	}
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventRevoked, Actor: actor, Detail: fmt.Sprintf("crmgate:%d", id)})
	return nil
}

func (s *Service) notify() {
	if s.o.Notify != nil {
		s.o.Notify()
	}
}

// Source says where an invitation lives.
type Source string

// The sources of invitations.
const (
	SourceCrmgate   Source = "crmgate"
	SourceDataverse Source = "dataverse"
)

// Offer is a valid invitation as the redemption page shows it.
type Offer struct {
	Source Source
	// ID is the crmgate id or the adx_invitationid.
	ID string
	// Name is the Dataverse invitation's name, or the invited contact's.
	Name string
	// Email is the invited address; empty when the invitation names none
	// (the redeemer gives one, and confirms it).
	Email string
	// ContactID is the contact the account will be bound to; empty for none.
	ContactID string
	// Group reports a group invitation.
	Group bool
	// ExpiresAt is zero when it never expires.
	ExpiresAt time.Time
	// RedirectURL is where to go after redeeming; empty for the home page.
	RedirectURL string
	// Existing is the account the invited contact or address already has;
	// nil when there is none. Its owner should sign in and link.
	Existing *authz.User
	// NeedsProof reports that redeeming mails a confirmation to Email
	// before the account is made.
	NeedsProof bool
	// AskEmail reports that the redeemer gives the account's address: the
	// invitation names none, or it is a group invitation (each member has
	// their own). An address other than Email is confirmed by mail first.
	AskEmail bool

	local *Invitation
	dv    *dataverse.Invitation
	roles []string
}

// Lookup checks code against crmgate's invitations and then Dataverse's.
// Every refusal is ErrInvalidCode (audited with its reason and client);
// Dataverse being unavailable wraps dataverse.ErrUnavailable.
func (s *Service) Lookup(ctx context.Context, code, client string) (*Offer, error) {
	now := s.now()
	if code == "" || len(code) > MaxCodeLen || !printable(code) {
		return nil, s.refused(ctx, "", RefusedMalformed, client, now)
	}
	if hash, ok := parseCode(code); ok {
		inv, err := s.store.InvitationByHash(ctx, hash)
		switch {
		case errors.Is(err, authz.ErrNotFound):
			// A crmgate-shaped code may still be a Dataverse one.
		case err != nil:
			return nil, fmt.Errorf("invitations: lookup: %w", err)
		default:
			// The row was found by its hash; compare it again in constant
			// time, so that no later change of the lookup makes a timing
			// oracle of it.
			if subtle.ConstantTimeCompare([]byte(inv.CodeHash), []byte(hash)) != 1 {
				return nil, s.refused(ctx, "", RefusedUnknown, client, now)
			}
			return s.localOffer(ctx, inv, client, now)
		}
	}
	if s.o.Dataverse == nil {
		return nil, s.refused(ctx, "", RefusedUnknown, client, now)
	}
	dv, err := s.o.Dataverse.InvitationByCode(ctx, code)
	switch {
	case errors.Is(err, dataverse.ErrInvitationNotFound):
		return nil, s.refused(ctx, "", RefusedUnknown, client, now)
	case err != nil:
		return nil, fmt.Errorf("invitations: lookup: %w", err)
	}
	return s.dataverseOffer(ctx, dv, client, now)
}

func (s *Service) localOffer(ctx context.Context, inv *Invitation, client string, now time.Time) (*Offer, error) {
	key := Key(inv.ID)
	switch {
	case !inv.RevokedAt.IsZero():
		return nil, s.refused(ctx, key, RefusedRevoked, client, now)
	case !now.Before(inv.ExpiresAt):
		return nil, s.refused(ctx, key, RefusedExpired, client, now)
	case inv.Redemptions >= inv.MaxRedemptions:
		return nil, s.refused(ctx, key, RefusedUsedUp, client, now)
	}
	o := &Offer{Source: SourceCrmgate, ID: strconv.FormatInt(inv.ID, 10), Email: inv.Email, ContactID: inv.ContactID,
		Group: inv.Kind == Group, ExpiresAt: inv.ExpiresAt, RedirectURL: inv.RedirectURL, local: inv, roles: inv.Roles}
	o.AskEmail = o.Group
	return o, s.existing(ctx, o)
}

func (s *Service) dataverseOffer(ctx context.Context, dv *dataverse.Invitation, client string, now time.Time) (*Offer, error) {
	key := DataverseKey(dv.ID)
	switch {
	case !dv.Active:
		return nil, s.refused(ctx, key, RefusedInactive, client, now)
	case !dv.Expiry.IsZero() && now.After(dv.Expiry):
		return nil, s.refused(ctx, key, RefusedExpired, client, now)
	case !dv.Redeemable(now) || dv.Redeemed:
		return nil, s.refused(ctx, key, RefusedUsedUp, client, now)
	}
	o := &Offer{Source: SourceDataverse, ID: dv.ID, Name: dv.Name, ContactID: dv.InviteContactID, Group: dv.Group,
		ExpiresAt: dv.Expiry, dv: dv}
	if dv.InviteContactID != "" {
		ct, err := s.o.Dataverse.ContactByID(ctx, dv.InviteContactID, nil)
		switch {
		case errors.Is(err, dataverse.ErrContactNotFound):
			return nil, s.refused(ctx, key, RefusedInactive, client, now)
		case err != nil:
			return nil, fmt.Errorf("invitations: lookup: invited contact: %w", err)
		}
		if !ct.Active {
			return nil, s.refused(ctx, key, RefusedInactive, client, now)
		}
		o.Email, o.Name = ct.Email, ct.Name
	}
	// Nothing proves who holds a Dataverse code; an address the
	// invitation does not give (the redeemer types one) is never proved.
	o.NeedsProof = !s.o.SkipDataverseProof || o.Email == ""
	o.AskEmail = o.Email == "" || o.Group
	return o, s.existing(ctx, o)
}

// existing sets o.Existing to the account the invited contact or address
// already has.
func (s *Service) existing(ctx context.Context, o *Offer) error {
	if o.ContactID != "" {
		users, err := s.o.Users.UsersBoundToContact(ctx, o.ContactID)
		if err != nil {
			return fmt.Errorf("invitations: lookup: %w", err)
		}
		if len(users) > 0 {
			o.Existing = users[0]
			return nil
		}
	}
	// A group invitation's address is where the code was sent, not each
	// member's: members give their own.
	if o.Email != "" && !o.Group {
		u, err := s.o.Users.UserByLogin(ctx, o.Email)
		switch {
		case err == nil:
			o.Existing = u
		case !errors.Is(err, authz.ErrNotFound):
			return fmt.Errorf("invitations: lookup: %w", err)
		}
	}
	return nil
}

// refused audits and logs a refused code and returns ErrInvalidCode.
func (s *Service) refused(ctx context.Context, key, reason, client string, now time.Time) error {
	detail := reason
	if key != "" {
		detail = key + " " + reason
	}
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventRefused, ClientAddr: client, Detail: detail})
	s.log.Info("invitation refused", "invitation", key, "reason", reason, "client", client)
	return ErrInvalidCode
}

func printable(s string) bool {
	for _, c := range s {
		if c <= 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// RecordThrottled audits the first refusal of a client address that
// tried too many codes.
func (s *Service) RecordThrottled(ctx context.Context, client string) {
	s.o.Audit.Record(ctx, audit.Event{Time: s.now(), Type: EventThrottled, ClientAddr: client, Detail: "code guessing"})
}

// Redemptions returns who redeemed the invitations keys names (Key,
// DataverseKey; at most MaxRedemptionKeys), by key, oldest first, at most
// perKey of each.
func (s *Service) Redemptions(ctx context.Context, keys []string, perKey int) (map[string][]Redemption, error) {
	return s.store.InvitationRedemptions(ctx, keys, perKey)
}
