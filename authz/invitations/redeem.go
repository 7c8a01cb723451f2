package invitations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// Registration is what the person chooses when redeeming.
type Registration struct {
	Username string
	Password string
	// Email is used only when the invitation names no address; then a
	// confirmation is always sent to it.
	Email string
}

// Result is the outcome of a redemption.
type Result struct {
	// User is the new or linked account; nil while a confirmation is
	// pending.
	User *authz.User
	// PendingEmail is the address a confirmation was sent to; empty when
	// the account was made.
	PendingEmail string
	// RedirectURL is the invitation's redirect; empty for the home page.
	RedirectURL string
}

// pending is the payload of a confirmation token: everything the
// redemption needs once the address is proved, and never the code.
type pending struct {
	Source       Source `json:"source"`
	Invitation   string `json:"invitation"` // the crmgate id or the adx_invitationid
	Username     string `json:"username"`
	Email        string `json:"email"`
	PasswordHash string `json:"password_hash"`
}

// Redeem redeems the invitation of code for a new account. Bad input
// gives a *authz.ValidationError (or *password.RuleError), a refused code
// ErrInvalidCode, an invitation whose person already has an account
// ErrExistingAccount, a taken username or email authz.ErrConflict.
func (s *Service) Redeem(ctx context.Context, code string, reg Registration, client string) (*Result, error) {
	o, err := s.Lookup(ctx, code, client)
	if err != nil {
		return nil, err
	}
	if o.Existing != nil {
		return nil, ErrExistingAccount
	}
	email := o.Email
	if o.AskEmail {
		email = strings.TrimSpace(reg.Email)
	}
	u, err := s.newUser(ctx, reg.Username, email, reg.Password)
	if err != nil {
		return nil, err
	}
	// The code proves only the address it was sent to (and a Dataverse
	// code not even that, unless SkipDataverseProof): any other address is
	// confirmed by mail before the account exists.
	proved := o.Email != "" && strings.EqualFold(email, o.Email) && (o.Source == SourceCrmgate || !o.NeedsProof)
	if !proved {
		return s.sendConfirmation(ctx, o, u, client)
	}
	u.EmailConfirmed = true // the code came to this address (see the package doc)
	return s.complete(ctx, o, u, nil, client)
}

// newUser validates the chosen username, address and password and builds
// the account (not stored).
func (s *Service) newUser(ctx context.Context, username, email, pw string) (*authz.User, error) {
	now := s.now()
	u := &authz.User{Username: strings.TrimSpace(username), Email: email, Status: authz.StatusActive,
		SecurityStamp: authz.NewID(), Roles: []string{}, Binding: authz.Binding{Mode: authz.BindingNone},
		CreatedAt: now, UpdatedAt: now}
	if err := authz.ValidateUsername(u.Username); err != nil {
		return nil, err
	}
	if err := authz.ValidateEmail(u.Email); err != nil {
		return nil, err
	}
	if err := s.o.Policy.Check(pw, password.Subject{Username: u.Username, Email: u.Email}); err != nil {
		return nil, err
	}
	// A username that is someone's email, or the reverse, would make a
	// login name two accounts.
	for _, login := range []string{u.Username, u.Email} {
		switch _, err := s.o.Users.UserByLogin(ctx, login); {
		case err == nil:
			return nil, authz.ErrConflict
		case !errors.Is(err, authz.ErrNotFound):
			return nil, fmt.Errorf("invitations: redeem: %w", err)
		}
	}
	var err error
	if u.PasswordHash, err = password.Hash(pw, s.o.Password); err != nil {
		return nil, err
	}
	u.ID = authz.NewID()
	return u, nil
}

// sendConfirmation mails a link to the invited address; the account is
// made when it is followed (Confirm).
func (s *Service) sendConfirmation(ctx context.Context, o *Offer, u *authz.User, client string) (*Result, error) {
	now := s.now()
	payload, err := json.Marshal(pending{Source: o.Source, Invitation: o.ID, Username: u.Username, Email: u.Email, PasswordHash: u.PasswordHash})
	if err != nil {
		return nil, err
	}
	_, _, err = s.o.Tokens.IssueWith(ctx, tokens.PurposeInvitation, "", s.o.ConfirmTTL, payload, func(secret string) ([]outbox.Event, error) {
		msg, err := s.o.Mail.Compose(MailConfirm, u.Email, mail.Data{Name: o.Name,
			Link: s.o.Mail.Link("/invitation/confirm", map[string][]string{"token": {secret}}), Expires: s.o.ConfirmTTL,
			Extra: map[string]string{"username": u.Username}})
		if err != nil {
			return nil, err
		}
		ev, err := mail.NewEvent(MailConfirm, "", msg, now)
		if err != nil {
			return nil, err
		}
		return []outbox.Event{ev}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("invitations: confirmation: %w", err)
	}
	s.notify()
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventPending, ClientAddr: client, Detail: o.key() + " " + u.Username})
	return &Result{PendingEmail: u.Email, RedirectURL: o.RedirectURL}, nil
}

// Confirm completes a redemption whose address was proved by following
// the confirmation link secret: the invitation is checked again, then the
// account is made. A refused link gives tokens.ErrInvalidToken; an
// invitation that meanwhile ran out ErrInvalidCode. The link is spent
// once accepted.
func (s *Service) Confirm(ctx context.Context, secret, client string) (*Result, error) {
	t, err := s.o.Tokens.Consume(ctx, tokens.PurposeInvitation, secret)
	if err != nil {
		return nil, err
	}
	var p pending
	if err := json.Unmarshal(t.Payload, &p); err != nil || p.Invitation == "" || p.PasswordHash == "" {
		return nil, fmt.Errorf("invitations: confirmation %d: bad payload", t.ID)
	}
	now := s.now()
	var o *Offer
	switch p.Source {
	case SourceCrmgate:
		id, err := strconv.ParseInt(p.Invitation, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invitations: confirmation %d: bad payload", t.ID)
		}
		inv, err := s.store.InvitationByID(ctx, id)
		switch {
		case errors.Is(err, authz.ErrNotFound):
			return nil, s.refused(ctx, Key(id), RefusedUnknown, client, now)
		case err != nil:
			return nil, fmt.Errorf("invitations: confirm: %w", err)
		}
		if o, err = s.localOffer(ctx, inv, client, now); err != nil {
			return nil, err
		}
	case SourceDataverse:
		if s.o.Dataverse == nil {
			return nil, ErrNoDataverse
		}
		dv, err := s.o.Dataverse.InvitationByID(ctx, p.Invitation)
		switch {
		case errors.Is(err, dataverse.ErrInvitationNotFound):
			return nil, s.refused(ctx, DataverseKey(p.Invitation), RefusedUnknown, client, now)
		case err != nil:
			return nil, fmt.Errorf("invitations: confirm: %w", err)
		}
		if o, err = s.dataverseOffer(ctx, dv, client, now); err != nil {
			return nil, err
		}
		if !o.AskEmail && !strings.EqualFold(o.Email, p.Email) {
			// The contact's address changed since: the proof is for another one.
			return nil, s.refused(ctx, DataverseKey(dv.ID), RefusedInactive, client, now)
		}
	default:
		return nil, fmt.Errorf("invitations: confirmation %d: bad payload", t.ID)
	}
	if o.Existing != nil {
		return nil, ErrExistingAccount
	}
	u := &authz.User{ID: authz.NewID(), Username: p.Username, Email: p.Email, PasswordHash: p.PasswordHash,
		Status: authz.StatusActive, EmailConfirmed: true, SecurityStamp: authz.NewID(), Roles: []string{},
		Binding: authz.Binding{Mode: authz.BindingNone}, CreatedAt: now, UpdatedAt: now}
	return s.complete(ctx, o, u, nil, client)
}

// Link gives the invitation of code to the signed-in account u instead
// of a new one: u is bound to the invited contact (when it is unbound)
// and gets the invitation's roles. It refuses (ErrLinkRefused) an account
// bound to another contact, and an account whose address is not the
// invited one (for a Dataverse invitation, where the code proves nothing).
func (s *Service) Link(ctx context.Context, code string, u *authz.User, client string) (*Result, error) {
	o, err := s.Lookup(ctx, code, client)
	if err != nil {
		return nil, err
	}
	if o.ContactID != "" && u.Binding.Mode != authz.BindingNone && u.Binding.Mode != "" {
		if u.Binding.Mode != authz.BindingLookup || u.Binding.Ref == nil || !strings.EqualFold(u.Binding.Ref.ID, o.ContactID) {
			return nil, ErrLinkRefused
		}
	}
	if o.Existing != nil && o.Existing.ID != u.ID && o.ContactID != "" {
		if users, _ := s.o.Users.UsersBoundToContact(ctx, o.ContactID); len(users) > 0 && users[0].ID != u.ID {
			return nil, ErrContactBound
		}
	}
	// The account must be the invited address's (and, for a Dataverse
	// invitation, whose code proves nothing, a confirmed one); a group
	// invitation is for whoever holds its code.
	boundHere := o.ContactID != "" && u.Binding.Mode == authz.BindingLookup && u.Binding.Ref != nil && strings.EqualFold(u.Binding.Ref.ID, o.ContactID)
	sameAddress := o.Email != "" && strings.EqualFold(o.Email, u.Email) && (o.Source == SourceCrmgate || u.EmailConfirmed)
	if !o.Group && !boundHere && !sameAddress {
		return nil, ErrLinkRefused
	}
	linked := *u
	linked.Roles = append([]string{}, u.Roles...)
	for _, r := range o.roles {
		if !linked.HasRole(r) {
			linked.Roles = append(linked.Roles, r)
		}
	}
	if o.ContactID != "" {
		linked.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: o.ContactID, LogicalName: dataverse.ContactLogicalName}}
	}
	linked.SecurityStamp = authz.NewID()
	return s.complete(ctx, o, nil, &linked, client)
}

// complete claims a redemption of o and, in the same transaction,
// creates newUser or saves linked, with its lifecycle event and (for a
// Dataverse invitation) the write-back.
func (s *Service) complete(ctx context.Context, o *Offer, newUser, linked *authz.User, client string) (*Result, error) {
	now := s.now()
	u := newUser
	typ := lifecycle.Created
	if u == nil {
		u, typ = linked, lifecycle.Bound
	} else {
		u.Roles = append(u.Roles, o.roles...)
		if o.ContactID != "" {
			u.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: o.ContactID, LogicalName: dataverse.ContactLogicalName}}
		}
	}
	c := &Claim{UserID: u.ID, ContactID: o.ContactID, At: now}
	if o.local != nil {
		c.Invitation, c.LocalID, c.Max = Key(o.local.ID), o.local.ID, o.local.MaxRedemptions
	} else {
		c.Invitation, c.Max, c.Base = DataverseKey(o.dv.ID), o.dv.MaxRedemptions, o.dv.Redemptions
	}
	ev, err := lifecycle.NewEvent(typ, u, now)
	if err != nil {
		return nil, err
	}
	err = s.redeemWithWriteBack(ctx, c, o, newUser, linked, []outbox.Event{ev})
	switch {
	case errors.Is(err, ErrNoSlot):
		return nil, s.refused(ctx, c.Invitation, RefusedUsedUp, client, now)
	case errors.Is(err, ErrContactBound):
		s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventRefused, ClientAddr: client, Detail: c.Invitation + " contact_bound"})
		return nil, ErrContactBound
	case err != nil:
		return nil, fmt.Errorf("invitations: redeem: %w", err)
	}
	s.notify()
	typAudit := EventRedeemed
	if linked != nil {
		typAudit = EventLinked
	}
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: typAudit, Actor: u.ID, UserID: u.ID, ClientAddr: client,
		Detail: fmt.Sprintf("%s n %d", c.Invitation, c.N)})
	return &Result{User: u, RedirectURL: o.RedirectURL}, nil
}

// redeemWithWriteBack records the claim; for a Dataverse invitation the
// write-back event carries the number the store claims in the
// transaction, so Claim.WriteBack builds it from that number.
func (s *Service) redeemWithWriteBack(ctx context.Context, c *Claim, o *Offer, newUser, linked *authz.User, events []outbox.Event) error {
	if o.dv == nil {
		return s.store.RedeemInvitation(ctx, c, newUser, linked, events...)
	}
	c.WriteBack = func(n int) (outbox.Event, error) {
		return writeBackEvent(dataverse.InvitationRedemption{InvitationID: o.dv.ID, N: n, ContactID: o.ContactID,
			Group: o.dv.Group, MaxRedemptions: o.dv.MaxRedemptions, WebRoleIDs: o.dv.WebRoleIDs,
			AssignToAccountID: o.dv.AssignToAccountID}, c.At)
	}
	return s.store.RedeemInvitation(ctx, c, newUser, linked, events...)
}

// writeBackEvent is the outbox event of one Dataverse write-back.
func writeBackEvent(r dataverse.InvitationRedemption, at time.Time) (outbox.Event, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return outbox.Event{}, err
	}
	return outbox.Event{Kind: OutboxKind, Type: OutboxRedeemed, Payload: b, CreatedAt: at}, nil
}

// key names o in the audit trail.
func (o *Offer) key() string {
	if o.Source == SourceCrmgate {
		return "crmgate:" + o.ID
	}
	return DataverseKey(o.ID)
}
