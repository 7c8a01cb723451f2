package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// LinkPurpose returns the token purpose a confirm link names: the reset
// link has none (reset_password), the "choose your password" link
// purpose=set_password. Any other value gives false.
func LinkPurpose(param string) (tokens.Purpose, bool) {
	switch param {
	case "", string(tokens.PurposeResetPassword):
		return tokens.PurposeResetPassword, true
	case string(tokens.PurposeSetPassword):
		return tokens.PurposeSetPassword, true
	}
	return "", false
}

// allowLink takes one link check of clientAddr, or returns a
// *ThrottledError, or an error matching throttle.ErrUnavailable when the
// throttle cannot tell.
func (s *Service) allowLink(ctx context.Context, clientAddr string) error {
	now := s.o.Now()
	ok, retry, first, err := s.links.Allow(ctx, throttle.ClientKey(clientAddr), now)
	if err != nil {
		return s.throttleFailed(ctx, s.links, clientAddr, err)
	}
	if !ok {
		if first {
			s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventResetThrottled, ClientAddr: clientAddr, Detail: "link"})
			s.log.WarnContext(ctx, "password link checks throttled", "client", clientAddr)
		}
		return &ThrottledError{RetryAfter: retry}
	}
	return nil
}

// Check tells whether the link secret of purpose (reset_password or
// set_password) can still set a password, without spending it, so that
// the form is only shown for a working link and a mail scanner that fetches
// the link spends nothing. It returns the account the link is for. A bad,
// used, revoked, expired or foreign link gives tokens.ErrInvalidToken; too
// many checks from clientAddr a *ThrottledError.
func (s *Service) Check(ctx context.Context, purpose tokens.Purpose, secret, clientAddr string) (*authz.User, error) {
	if err := s.allowLink(ctx, clientAddr); err != nil {
		return nil, err
	}
	u, err := s.peek(ctx, purpose, secret)
	if errors.Is(err, tokens.ErrInvalidToken) {
		// Not audited: nothing was attempted (a scanner, an old mail);
		// a post of the form is.
		s.log.InfoContext(ctx, "password link shown as not working", "purpose", string(purpose), "client", clientAddr)
	}
	return u, err
}

func (s *Service) peek(ctx context.Context, purpose tokens.Purpose, secret string) (*authz.User, error) {
	if purpose != tokens.PurposeResetPassword && purpose != tokens.PurposeSetPassword {
		return nil, tokens.ErrInvalidToken
	}
	t, err := s.o.Tokens.Peek(ctx, purpose, secret)
	if err != nil {
		return nil, err
	}
	if t.UserID == "" {
		return nil, tokens.ErrInvalidToken
	}
	u, err := s.store.UserByID(ctx, t.UserID)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		return nil, tokens.ErrInvalidToken
	case err != nil:
		return nil, fmt.Errorf("recovery: check link: %w", err)
	}
	return u, nil
}

// Complete sets pw as the password of the account the link secret of
// purpose is for, and spends the link: of concurrent calls with one secret
// exactly one succeeds (tokens.Service.Consume), on any replica. The
// password is checked against the policy before the link is spent, so a
// refused password (*password.RuleError) leaves the link working. The
// account must be active (ErrAccountUnavailable otherwise, the link kept).
// On success the lockout is cleared, the must-change flag too, the
// security stamp rotated (every existing session ends), the user's other
// reset and set-password links revoked and the password_changed mail
// stored with the change; a set_password link also confirms the email
// address. Link refusals give tokens.ErrInvalidToken, too many attempts
// from clientAddr a *ThrottledError. It returns the account as saved.
func (s *Service) Complete(ctx context.Context, purpose tokens.Purpose, secret, pw, clientAddr string) (*authz.User, error) {
	if err := s.allowLink(ctx, clientAddr); err != nil {
		return nil, err
	}
	u, err := s.peek(ctx, purpose, secret)
	if errors.Is(err, tokens.ErrInvalidToken) && (purpose == tokens.PurposeResetPassword || purpose == tokens.PurposeSetPassword) {
		// Consume refuses it too, and audits why (used, expired, another
		// purpose, ...); a link peek refused for its account is spent.
		if _, cerr := s.o.Tokens.Consume(ctx, purpose, secret); cerr != nil && !errors.Is(cerr, tokens.ErrInvalidToken) {
			return nil, cerr
		}
		return nil, tokens.ErrInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if u.Status != authz.StatusActive {
		s.log.InfoContext(ctx, "password link refused: the account cannot sign in", "user_id", u.ID, "status", string(u.Status))
		return nil, ErrAccountUnavailable
	}
	if err := s.o.Passwords.PasswordPolicy().Check(pw, password.Subject{Username: u.Username, Email: u.Email}); err != nil {
		return nil, err
	}
	t, err := s.o.Tokens.Consume(ctx, purpose, secret)
	if err != nil {
		return nil, err
	}
	if t.UserID != u.ID {
		return nil, tokens.ErrInvalidToken
	}
	how := "reset"
	if purpose == tokens.PurposeSetPassword {
		how = "set_password"
	}
	events := s.changedMail
	if ref := u.Binding.Ref; s.o.ContactColumn != "" && u.Binding.Mode == authz.BindingLookup && ref != nil && ref.ID != "" {
		// A new password from a link satisfies a change the contact
		// column asks for as well: clear it, or the next sign-in would
		// force another change. (For username and custom bindings the
		// contact is only known after a Dataverse lookup; their column
		// is cleared by the forced change at the next sign-in.)
		flag, err := NewContactFlagEvent(u.ID, ref.ID, s.o.ContactColumn, s.o.Now())
		if err != nil {
			return nil, err
		}
		events = func(u *authz.User) ([]outbox.Event, error) {
			evs, err := s.changedMail(u)
			return append(evs, flag), err
		}
	}
	saved, err := s.o.Passwords.SetUserPassword(ctx, u.ID, pw, accounts.PasswordChange{Actor: u.ID, How: how,
		ConfirmEmail: purpose == tokens.PurposeSetPassword, Events: events})
	if err != nil {
		// The link is spent; the user asks for another. Say so in the log.
		s.log.ErrorContext(ctx, "password link spent but the password was not set", "user_id", u.ID, "purpose", string(purpose), "err", err)
		return nil, err
	}
	s.o.Audit.Record(ctx, audit.Event{Type: EventPasswordReset, Actor: u.ID, UserID: u.ID, ClientAddr: clientAddr, Detail: string(purpose)})
	s.log.InfoContext(ctx, "password set from a link", "user_id", u.ID, "purpose", string(purpose), "client", clientAddr)
	return saved, nil
}

// changedMail is the password_changed mail of u, when u has an address.
func (s *Service) changedMail(u *authz.User) ([]outbox.Event, error) {
	if u.Email == "" {
		return nil, nil
	}
	m, err := s.o.Mail.Compose("password_changed", u.Email, mail.Data{Name: u.Name(), Link: s.o.Mail.Link(ResetPath, nil)})
	if err != nil {
		return nil, err
	}
	ev, err := mail.NewEvent("password_changed", u.ID, m, s.o.Now())
	if err != nil {
		return nil, err
	}
	return []outbox.Event{ev}, nil
}

// ResetPath is the reset request page under the auth prefix; the
// password_changed mail links to it ("if this was not you").
const ResetPath = "/reset"

// ChangeRequest is the input of Change.
type ChangeRequest struct {
	// UserID is the signed-in user.
	UserID string
	// Current is the current password; ignored when SkipCurrent.
	Current string
	// SkipCurrent skips the current password: the session just came from
	// a reset or set-password link (the user proved control of the mail
	// box moments ago). Never set it for anything else.
	SkipCurrent bool
	// New is the new password.
	New string
	// Forced says the change was forced (the must-change flag or the
	// contact column); it is audited.
	Forced bool
	// ContactID, for a forced change of a bound user, is the contact whose
	// Options.ContactColumn is set to false afterwards (through the
	// outbox, in the same transaction); empty clears nothing.
	ContactID string
	// ClientAddr is the client's address: the throttle and the lockout.
	ClientAddr string
}

// Change changes a signed-in user's password. Unless r.SkipCurrent, the
// current password is checked first and counted as a sign-in attempt
// (signin.Service.VerifyPassword: a wrong one gives
// signin.ErrInvalidCredentials and counts towards the lockout, a throttled
// address a *signin.ThrottledError). The new one must pass the policy
// (*password.RuleError) and differ from the current one (ErrSamePassword).
// Then as Complete: the must-change flag cleared, the stamp rotated (the
// caller re-issues the current session with the returned stamp; every
// other session ends), the links revoked, the password_changed mail and,
// for a forced change of a bound user, the clearing of the contact column
// stored with the change. It returns the account as saved.
func (s *Service) Change(ctx context.Context, r ChangeRequest) (*authz.User, error) {
	if !r.SkipCurrent {
		if err := s.o.Verifier.VerifyPassword(ctx, r.UserID, r.Current, r.ClientAddr); err != nil {
			return nil, err
		}
		if r.Current == r.New {
			return nil, ErrSamePassword
		}
	}
	events := s.changedMail
	if r.Forced && r.ContactID != "" && s.o.ContactColumn != "" {
		flag, err := NewContactFlagEvent(r.UserID, r.ContactID, s.o.ContactColumn, s.o.Now())
		if err != nil {
			return nil, err
		}
		events = func(u *authz.User) ([]outbox.Event, error) {
			evs, err := s.changedMail(u)
			return append(evs, flag), err
		}
	}
	how := "change"
	if r.Forced {
		how = "forced"
	}
	saved, err := s.o.Passwords.SetUserPassword(ctx, r.UserID, r.New, accounts.PasswordChange{Actor: r.UserID, How: how, Events: events})
	if err != nil {
		return nil, err
	}
	s.o.Audit.Record(ctx, audit.Event{Type: EventPasswordChanged, Actor: r.UserID, UserID: r.UserID, ClientAddr: r.ClientAddr, Detail: how})
	s.log.InfoContext(ctx, "password changed", "user_id", r.UserID, "how", how, "client", r.ClientAddr)
	return saved, nil
}

// ContactFlagKind is the outbox Kind of the events that set a contact's
// password-change column to false after the user changed the password;
// ContactFlagDeliverer delivers them.
const ContactFlagKind = "dataverse.contact_flag"

// contactFlagType is the Type of ContactFlagKind events.
const contactFlagType = "password_change.cleared"

// contactFlag is the payload of a ContactFlagKind event.
type contactFlag struct {
	ContactID string `json:"contact_id"`
	Column    string `json:"column"`
}

// NewContactFlagEvent returns the outbox event that sets column of contact
// contactID to false, for userID.
func NewContactFlagEvent(userID, contactID, column string, at time.Time) (outbox.Event, error) {
	if err := dataverse.ValidContactColumn(column); err != nil {
		return outbox.Event{}, err
	}
	if _, err := dataverse.ParseGUID(contactID); err != nil {
		return outbox.Event{}, fmt.Errorf("recovery: contact id: %w", err)
	}
	p, err := json.Marshal(contactFlag{ContactID: contactID, Column: column})
	if err != nil {
		return outbox.Event{}, err
	}
	return outbox.Event{Kind: ContactFlagKind, Type: contactFlagType, UserID: userID, Payload: p, CreatedAt: at}, nil
}

// ContactWriter writes contact columns; crmclient.Directory satisfies it
// (profile.Contacts' UpdateContact).
type ContactWriter interface {
	UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error
}

// ContactFlagDeliverer delivers ContactFlagKind events: one PATCH of the
// contact, retried by the outbox until Dataverse takes it; a contact that
// no longer exists is a permanent failure (nothing to clear).
type ContactFlagDeliverer struct{ Contacts ContactWriter }

// Deliver implements outbox.Deliverer.
func (d ContactFlagDeliverer) Deliver(ctx context.Context, e outbox.Event) error {
	if e.Kind != ContactFlagKind {
		return outbox.Permanent(fmt.Errorf("recovery: contact flag deliverer: event %d has kind %q", e.ID, e.Kind))
	}
	var f contactFlag
	if err := json.Unmarshal(e.Payload, &f); err != nil || dataverse.ValidContactColumn(f.Column) != nil {
		return outbox.Permanent(fmt.Errorf("recovery: contact flag event %d: bad payload", e.ID))
	}
	if _, err := dataverse.ParseGUID(f.ContactID); err != nil {
		return outbox.Permanent(fmt.Errorf("recovery: contact flag event %d: bad payload", e.ID))
	}
	err := d.Contacts.UpdateContact(ctx, f.ContactID, map[string]any{f.Column: false}, "")
	if errors.Is(err, dataverse.ErrContactNotFound) {
		return outbox.Permanent(err)
	}
	return err
}
