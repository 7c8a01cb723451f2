package invitations

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// NewInvitations lists the Power Pages invitations created since a time;
// crmclient.Directory satisfies it.
type NewInvitations interface {
	// NewInvitations returns up to limit active invitations created at or
	// after since, in createdon order, with their codes.
	NewInvitations(ctx context.Context, since time.Time, limit int) ([]*dataverse.Invitation, error)
}

// mailPage is how many new invitations one query asks for.
const mailPage = 200

// startMarker is the id under which the first run records where mailing
// starts: the nil GUID, which names no record.
const startMarker = "00000000-0000-0000-0000-000000000000"

// MailDataverseInvitations emails the Dataverse invitations created since
// the last run, each exactly once: the store claims an invitation's id
// and enqueues its mail in one transaction, so that replicas running this
// together send one mail. The first run ever records its time and mails
// only invitations created after it (not the whole history). Only an
// active, redeemable invitation whose invited contact is active and has
// an address (emailaddress1, the one Power Pages uses) is mailed; the
// others are claimed and skipped. It returns how many it mailed.
func (s *Service) MailDataverseInvitations(ctx context.Context, src NewInvitations) (int, error) {
	if s.o.Dataverse == nil || src == nil {
		return 0, ErrNoDataverse
	}
	now := s.now()
	since, err := s.store.LatestDataverseInvitationMail(ctx)
	if err != nil {
		return 0, err
	}
	if since.IsZero() {
		if _, err := s.store.ClaimDataverseInvitationMail(ctx, startMarker, now, now); err != nil {
			return 0, err
		}
		return 0, nil
	}
	sent := 0
	for {
		page, err := src.NewInvitations(ctx, since, mailPage)
		if err != nil {
			return sent, fmt.Errorf("invitations: new Dataverse invitations: %w", err)
		}
		fresh, from := 0, since
		for _, inv := range page {
			if inv.CreatedOn.After(since) {
				since = inv.CreatedOn
			}
			ok, err := s.mailOne(ctx, inv, now)
			if err != nil {
				return sent, err
			}
			if ok {
				fresh++
			}
		}
		sent += fresh
		// A full page may have more behind it. One that did not move the
		// time forward and mailed nothing would come back the same (more
		// than a page of invitations created in one millisecond, all
		// claimed): stop rather than loop.
		if len(page) < mailPage || (fresh == 0 && !since.After(from)) {
			return sent, nil
		}
	}
}

// mailOne claims and mails one invitation; it reports whether this call
// enqueued its mail.
func (s *Service) mailOne(ctx context.Context, inv *dataverse.Invitation, now time.Time) (bool, error) {
	email, name := "", ""
	if inv.InviteContactID != "" && inv.Code != "" && inv.Redeemable(now) {
		ct, err := s.o.Dataverse.ContactByID(ctx, inv.InviteContactID, nil)
		switch {
		case errors.Is(err, dataverse.ErrContactNotFound):
		case err != nil:
			return false, fmt.Errorf("invitations: invited contact: %w", err)
		case ct.Active:
			email, name = ct.Email, ct.Name
		}
	}
	if email == "" {
		// Nothing to send; claimed so that the next run skips it.
		_, err := s.store.ClaimDataverseInvitationMail(ctx, inv.ID, inv.CreatedOn, now)
		return false, err
	}
	data := mail.Data{Name: name, Link: s.o.Mail.Link("/invitation", url.Values{"code": {inv.Code}})}
	if !inv.Expiry.IsZero() {
		data.Expires = inv.Expiry.Sub(now).Round(time.Hour)
	}
	msg, err := s.o.Mail.Compose(MailInvitation, email, data)
	if err != nil {
		// A contact address the mail rules refuse: skipped for good.
		s.log.Warn("Dataverse invitation not mailed: bad address", "invitation", inv.ID, "err", err)
		_, err := s.store.ClaimDataverseInvitationMail(ctx, inv.ID, inv.CreatedOn, now)
		return false, err
	}
	ev, err := mail.NewEvent(MailInvitation, "", msg, now)
	if err != nil {
		return false, err
	}
	ok, err := s.store.ClaimDataverseInvitationMail(ctx, inv.ID, inv.CreatedOn, now, ev)
	if err != nil || !ok {
		return false, err
	}
	s.notify()
	s.o.Audit.Record(ctx, audit.Event{Time: now, Type: EventMailed, Actor: "system", Detail: "dataverse:" + inv.ID})
	return true, nil
}

// RunDataverseMailer calls MailDataverseInvitations every interval until
// ctx ends, logging failures (a Dataverse outage delays mail, the next
// run catches up).
func (s *Service) RunDataverseMailer(ctx context.Context, src NewInvitations, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("invitations: mailer interval must be positive")
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.MailDataverseInvitations(ctx, src); err != nil {
			s.log.Warn("mailing Dataverse invitations failed; next run retries", "err", err)
		} else if n > 0 {
			s.log.Info("Dataverse invitations mailed", "count", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
