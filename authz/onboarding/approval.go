package onboarding

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/mail"
)

// MaxDecisions is the most users one ApproveMany or RejectMany call takes.
const MaxDecisions = 500

// MaxReasonLen is the longest rejection reason, in characters.
const MaxReasonLen = 500

// The mail templates of the decisions (mail/templates), also the mail
// event types.
const (
	MailApproved = "registration_approved"
	MailRejected = "registration_rejected"
)

// decideAttempts bounds the rereads when the user changes meanwhile.
const decideAttempts = 5

// Decision is the outcome of one user of ApproveMany or RejectMany.
type Decision struct {
	// User is the id, username or email as given.
	User string `json:"user"`
	// ID is the id of the account User named; empty when none did.
	ID string `json:"id,omitempty"`
	// Err is nil when the decision was applied; otherwise an error
	// wrapping authz.ErrNotFound, ErrNotPending, authz.ErrStale (the user
	// kept changing), the context's error or a store failure.
	Err error `json:"-"`
}

// Approve makes the pending account named by who (an id, username or
// email) active, rotates its security stamp, and stores the lifecycle
// Approved event and the registration_approved mail (with a sign-in link)
// in the same transaction; actor is audited. A user who is not pending
// gives ErrNotPending; of an approval and a rejection of one user at the
// same moment exactly one applies, and the other gets ErrNotPending or
// authz.ErrNotFound.
func (s *Service) Approve(ctx context.Context, who, actor string) (*authz.User, error) {
	var u *authz.User
	var err error
	for range decideAttempts {
		if u, err = s.pending(ctx, who); err != nil {
			return nil, fmt.Errorf("onboarding: approve: %w", err)
		}
		now := s.now()
		u.Status = authz.StatusActive
		u.SecurityStamp = authz.NewID()
		var evs []outbox.Event
		if evs, err = s.decisionEvents(u, lifecycle.Approved, MailApproved, mail.Data{Name: u.Name(), Link: s.mail.Link("/signin", nil)}); err != nil {
			return nil, fmt.Errorf("onboarding: approve: %w", err)
		}
		err = s.store.UpdateUserAndEnqueue(ctx, u, evs...)
		if errors.Is(err, authz.ErrStale) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("onboarding: approve: %w", err)
		}
		s.notify()
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventUserApproved, Actor: actor, UserID: u.ID, Detail: u.Username})
		return u, nil
	}
	return nil, fmt.Errorf("onboarding: approve: %w", err)
}

// Reject deletes the pending account named by who and stores the
// lifecycle Rejected event (the account as it was) and the
// registration_rejected mail, which carries reason when it is not empty,
// in the same transaction; actor is audited, the reason's text is not.
//
// The account is deleted rather than disabled, so that the person may
// register again (a mistake, a corrected name) and registration never
// answers "this address is taken" for a rejected address, which would tell
// anyone that the address was once registered. What remains is the audit
// trail, under the deleted account's id.
//
// reason is at most MaxReasonLen characters of printable text (line breaks
// allowed); otherwise a *authz.ValidationError. A user who is not pending
// gives ErrNotPending; see Approve for concurrent decisions.
func (s *Service) Reject(ctx context.Context, who, reason, actor string) (*authz.User, error) {
	reason, err := ValidateReason(reason)
	if err != nil {
		return nil, err
	}
	var u *authz.User
	for range decideAttempts {
		if u, err = s.pending(ctx, who); err != nil {
			return nil, fmt.Errorf("onboarding: reject: %w", err)
		}
		now := s.now()
		d := mail.Data{Name: u.Name()}
		if reason != "" {
			d.Extra = map[string]string{"reason": reason}
		}
		var evs []outbox.Event
		if evs, err = s.decisionEvents(u, lifecycle.Rejected, MailRejected, d); err != nil {
			return nil, fmt.Errorf("onboarding: reject: %w", err)
		}
		err = s.store.DeleteUserIfUnchanged(ctx, u.ID, u.UpdatedAt, evs...)
		if errors.Is(err, authz.ErrStale) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("onboarding: reject: %w", err)
		}
		s.notify()
		detail := "no reason"
		if reason != "" {
			detail = "reason given"
		}
		s.audit.Record(ctx, audit.Event{Time: now, Type: audit.EventUserRejected, Actor: actor, UserID: u.ID, Detail: u.Username + " " + detail})
		return u, nil
	}
	return nil, fmt.Errorf("onboarding: reject: %w", err)
}

// ApproveMany approves each user in order, as Approve does, and returns
// one Decision per user at the same index: a failure stops nothing. More
// than MaxDecisions users, or none, give a *authz.ValidationError and
// change nothing. Once ctx is done the remaining users fail with its error.
func (s *Service) ApproveMany(ctx context.Context, who []string, actor string) ([]Decision, error) {
	return s.decideMany(ctx, who, func(w string) (*authz.User, error) { return s.Approve(ctx, w, actor) })
}

// RejectMany rejects each user in order with the same reason, as Reject
// does, with the rules of ApproveMany. A bad reason gives a
// *authz.ValidationError and changes nothing.
func (s *Service) RejectMany(ctx context.Context, who []string, reason, actor string) ([]Decision, error) {
	reason, err := ValidateReason(reason)
	if err != nil {
		return nil, err
	}
	return s.decideMany(ctx, who, func(w string) (*authz.User, error) { return s.Reject(ctx, w, reason, actor) })
}

func (s *Service) decideMany(ctx context.Context, who []string, decide func(string) (*authz.User, error)) ([]Decision, error) {
	if len(who) == 0 || len(who) > MaxDecisions {
		return nil, &authz.ValidationError{Field: "users", Message: fmt.Sprintf("Name 1 to %d users; split longer lists.", MaxDecisions)}
	}
	out := make([]Decision, len(who))
	for i, w := range who {
		out[i].User = w
		if err := ctx.Err(); err != nil {
			out[i].Err = fmt.Errorf("onboarding: %w", err)
			continue
		}
		u, err := decide(w)
		out[i].Err = err
		if u != nil {
			out[i].ID = u.ID
		} else if found, lerr := s.lookup(ctx, w); lerr == nil {
			out[i].ID = found.ID
		}
	}
	return out, nil
}

// pending reads the account who names and checks that it waits for approval.
func (s *Service) pending(ctx context.Context, who string) (*authz.User, error) {
	u, err := s.lookup(ctx, who)
	if err != nil {
		return nil, err
	}
	if u.Status != authz.StatusPending {
		return nil, fmt.Errorf("%w (status %s)", ErrNotPending, u.Status)
	}
	return u, nil
}

// decisionEvents are the lifecycle event and the mail of a decision on u.
func (s *Service) decisionEvents(u *authz.User, typ, mailName string, d mail.Data) ([]outbox.Event, error) {
	now := s.now()
	le, err := lifecycle.NewEvent(typ, u, now)
	if err != nil {
		return nil, err
	}
	m, err := s.mail.Compose(mailName, u.Email, d)
	if err != nil {
		return nil, err
	}
	me, err := mail.NewEvent(mailName, u.ID, m, now)
	if err != nil {
		return nil, err
	}
	return []outbox.Event{le, me}, nil
}

// ValidateReason trims a rejection reason and checks it: at most
// MaxReasonLen characters of valid, printable text, line breaks allowed.
func ValidateReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	bad := !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxReasonLen
	for _, line := range strings.Split(strings.ReplaceAll(reason, "\r\n", "\n"), "\n") {
		if !authz.Printable(line) {
			bad = true
		}
	}
	if bad {
		return "", &authz.ValidationError{Field: "reason", Message: fmt.Sprintf("The reason must be printable text of at most %d characters.", MaxReasonLen)}
	}
	return reason, nil
}
