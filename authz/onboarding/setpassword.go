package onboarding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/mail"
)

// EventSetPasswordLinkSent is the audit type of SendSetPasswordLink: a
// set-password link was mailed to an existing account. Detail is the
// token id (never the secret).
const EventSetPasswordLinkSent = "credentials.link_sent"

// ErrAccountDisabled is returned (wrapped) by SendSetPasswordLink for a
// disabled account: the link would not let it in, and mailing it would
// suggest otherwise. Re-enable the account first.
var ErrAccountDisabled = errors.New("onboarding: the account is disabled")

// ErrAccountPending is returned (wrapped) by SendSetPasswordLink for an
// account waiting for approval: approve it first.
var ErrAccountPending = errors.New("onboarding: the account is waiting for approval")

// LinkStore is what SendSetPasswordLink needs of the Store (which embeds
// it); *store.DB implements it on SQLite and PostgreSQL.
type LinkStore interface {
	// Store keeps the per-account mail throttle's buckets.
	throttle.Store
	// IssueToken inserts t and enqueues events in one transaction; with
	// keep 1 it also revokes every other outstanding token of t's user
	// and purpose (see tokens.Store.IssueToken).
	IssueToken(ctx context.Context, t *tokens.Token, keep int, events ...outbox.Event) error
}

// ThrottledError is returned by SendSetPasswordLink when the account
// received as many password-link mails as the per-account limit allows;
// RetryAfter says when the next one may be sent.
type ThrottledError struct{ RetryAfter time.Duration }

// Error implements error.
func (e *ThrottledError) Error() string {
	return fmt.Sprintf("onboarding: too many password mails for this account; try again in %v", e.RetryAfter.Round(time.Second))
}

// LinkSent is the outcome of SendSetPasswordLink.
type LinkSent struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	// Email is where the link was mailed.
	Email string `json:"email"`
	// ExpiresAt is when the link stops working.
	ExpiresAt time.Time `json:"expires_at"`
	// TokenID is the id of the link's token (in the audit trail), not its
	// secret.
	TokenID int64 `json:"token_id"`
}

// SendSetPasswordLink mails the existing account named by who (an id,
// else a username or email) a link to choose a password: the mail and the
// lifetime (Options.SetPasswordTTL) of the links InviteContacts mails, a
// tokens.PurposeSetPassword token whose payload names the address it was
// sent to. The token and its mail are stored in one transaction, which
// also revokes every earlier set-password link of the account, so that
// only the newest works. Using the link sets the password, confirms the
// address and ends the account's sessions; the current password keeps
// working until then.
//
// The mails count against the per-account limit of password reset mails
// (throttle.RecoveryAccount, recovery.AccountMailsPerHour at most,
// recovery.AccountBurst at once), shared with the reset requests of the
// account's owner, so that neither a looping CRM flow nor anyone else can
// flood an inbox: past it the answer is a *ThrottledError and nothing is
// sent. A store failure of the throttle gives an error matching
// throttle.ErrUnavailable (nothing sent: it fails closed).
//
// A missing account gives an error wrapping authz.ErrNotFound, a disabled
// one ErrAccountDisabled, a pending one ErrAccountPending, an account
// without an email a *authz.ValidationError. actor is recorded in the
// audit trail (EventSetPasswordLinkSent and tokens' token.issued).
func (s *Service) SendSetPasswordLink(ctx context.Context, who, actor string) (*LinkSent, error) {
	ls := s.store
	u, err := s.lookup(ctx, who)
	if err != nil {
		return nil, fmt.Errorf("onboarding: send set-password link: %w", err)
	}
	switch {
	case u.Status == authz.StatusDisabled:
		return nil, fmt.Errorf("onboarding: send set-password link to %s: %w", u.ID, ErrAccountDisabled)
	case u.Status != authz.StatusActive:
		return nil, fmt.Errorf("onboarding: send set-password link to %s: %w", u.ID, ErrAccountPending)
	case u.Email == "":
		return nil, &authz.ValidationError{Field: "email", Message: "This account has no email address to send a link to."}
	}
	now := s.now()
	// The limiter of recovery's reset mails per account, with its rate:
	// one name, one bucket per account ("user:<id>", as recovery keys it).
	lim, err := throttle.New(ls, throttle.RecoveryAccount, throttle.PerHour(recovery.AccountMailsPerHour), recovery.AccountBurst)
	if err != nil {
		return nil, err
	}
	allowed, retry, first, err := lim.Allow(ctx, "user:"+u.ID, now)
	if err != nil {
		s.log.ErrorContext(ctx, "set-password link refused: throttle unavailable", "user_id", u.ID, "actor", actor, "err", err)
		return nil, fmt.Errorf("onboarding: send set-password link: %w", err)
	}
	if !allowed {
		if first {
			s.log.WarnContext(ctx, "set-password link mails throttled for an account", "user_id", u.ID, "actor", actor)
		}
		return nil, &ThrottledError{RetryAfter: retry}
	}
	payload, err := json.Marshal(map[string]string{"email": u.Email})
	if err != nil {
		return nil, err
	}
	secret, t, err := s.tokens.Prepare(tokens.PurposeSetPassword, u.ID, s.ttl, payload)
	if err != nil {
		return nil, err
	}
	link := s.mail.Link(SetPasswordPath, url.Values{"token": {secret}, "purpose": {string(tokens.PurposeSetPassword)}})
	m, err := s.mail.Compose(MailSetPassword, u.Email, mail.Data{Name: u.Name(), Link: link, Expires: s.ttl,
		Extra: map[string]string{"username": u.Username}})
	if err != nil {
		return nil, err
	}
	me, err := mail.NewEvent(MailSetPassword, u.ID, m, now)
	if err != nil {
		return nil, err
	}
	// keep 1: the new token alone stays outstanding for this purpose.
	if err := ls.IssueToken(ctx, &t, 1, me); err != nil {
		return nil, fmt.Errorf("onboarding: send set-password link: %w", err)
	}
	s.notify()
	s.tokens.Issued(ctx, t)
	s.log.InfoContext(ctx, "set-password link sent", "user_id", u.ID, "actor", actor, "token_id", t.ID)
	s.audit.Record(ctx, audit.Event{Time: now, Type: EventSetPasswordLinkSent, Actor: actor, UserID: u.ID, Detail: fmt.Sprintf("token %d", t.ID)})
	return &LinkSent{UserID: u.ID, Username: u.Username, Email: u.Email, ExpiresAt: t.ExpiresAt, TokenID: t.ID}, nil
}
