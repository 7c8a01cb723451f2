package onboarding_test

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/tokens"
)

// TestSendSetPasswordLink: an active account gets the set-password mail
// of generated credentials (same template, the configured 72-hour
// lifetime) with a working link, stored in the outbox with its token and
// audited with the actor; a second link revokes the first. Disabled and pending accounts, unknown users
// and an account past the per-account mail limit (shared with password
// resets) get nothing.
func TestSendSetPasswordLink(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		ctx := t.Context()
		e := newEnv(t, open, nil)
		u := e.pending(t, "ana")
		if _, err := e.svc.Onboarding.Approve(ctx, u.ID, "test"); err != nil {
			t.Fatal(err)
		}
		secret := func(m string) string {
			t.Helper()
			lu, err := url.Parse(linkRE.FindString(m))
			if err != nil || lu.Query().Get("purpose") != string(tokens.PurposeSetPassword) {
				t.Fatalf("no set-password link in %q: %v", m, err)
			}
			return lu.Query().Get("token")
		}

		sent, err := e.svc.Onboarding.SendSetPasswordLink(ctx, "ANA@example.com", "apikey:k1")
		if err != nil {
			t.Fatalf("SendSetPasswordLink: %v", err)
		}
		if sent.UserID != u.ID || sent.Email != "ana@example.com" || !sent.ExpiresAt.Equal(e.clock.Now().Add(72*time.Hour).Truncate(time.Millisecond)) {
			t.Errorf("result %+v", sent)
		}
		ms := e.mails(t, u.ID)[onboarding.MailSetPassword]
		if len(ms) != 1 || ms[0].To != "ana@example.com" || !strings.Contains(ms[0].Text, "3 days") {
			t.Fatalf("set-password mails %+v", ms)
		}
		first := secret(ms[0].Text)
		if a := lastAudit(t, e, onboarding.EventSetPasswordLinkSent); a.Actor != "apikey:k1" || a.UserID != u.ID || strings.Contains(a.Detail, first) {
			t.Errorf("audit %+v", a)
		}

		// A second link: the first stops working, the second works.
		if _, err := e.svc.Onboarding.SendSetPasswordLink(ctx, u.ID, "apikey:k1"); err != nil {
			t.Fatal(err)
		}
		ms = e.mails(t, u.ID)[onboarding.MailSetPassword]
		if len(ms) != 2 {
			t.Fatalf("%d set-password mails, want 2", len(ms))
		}
		second := secret(ms[1].Text)
		if _, err := e.svc.Tokens.Peek(ctx, tokens.PurposeSetPassword, first); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("the first link after a second was sent: %v, want ErrInvalidToken", err)
		}
		tok, err := e.svc.Tokens.Peek(ctx, tokens.PurposeSetPassword, second)
		if err != nil || tok.UserID != u.ID || !strings.Contains(string(tok.Payload), "ana@example.com") {
			t.Fatalf("the second link: %+v, %v", tok, err)
		}

		// The third mail within the hour is the last the shared
		// per-account budget allows: a reset request of the owner now
		// sends nothing, and a fourth link is refused.
		if _, err := e.svc.Onboarding.SendSetPasswordLink(ctx, "ana", "apikey:k1"); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Recovery.Request(ctx, "ana", "192.0.2.9"); err != nil {
			t.Fatal(err)
		}
		if a := lastAudit(t, e, recovery.EventResetRequested); a.Detail != recovery.ReqThrottled {
			t.Errorf("reset request after %d link mails: %q, want %q", recovery.AccountBurst, a.Detail, recovery.ReqThrottled)
		}
		_, err = e.svc.Onboarding.SendSetPasswordLink(ctx, "ana", "apikey:k1")
		var thr *onboarding.ThrottledError
		if !errors.As(err, &thr) || thr.RetryAfter <= 0 || thr.RetryAfter > time.Hour {
			t.Fatalf("link past the limit: %v, want a *ThrottledError", err)
		}
		if n := len(e.mails(t, u.ID)[onboarding.MailSetPassword]); n != recovery.AccountBurst {
			t.Errorf("%d mails after a throttled link, want %d", n, recovery.AccountBurst)
		}
		e.clock.Advance(time.Hour / recovery.AccountMailsPerHour)
		if _, err := e.svc.Onboarding.SendSetPasswordLink(ctx, "ana", "apikey:k1"); err != nil {
			t.Errorf("a link after the budget refilled: %v", err)
		}

		// Refusals send and audit nothing.
		links := len(e.mails(t, u.ID)[onboarding.MailSetPassword])
		audited := len(listAudit(t, e, onboarding.EventSetPasswordLinkSent))
		if err := e.svc.Accounts.SetStatus(ctx, "ana", authz.StatusDisabled, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Onboarding.SendSetPasswordLink(ctx, "ana", "x"); !errors.Is(err, onboarding.ErrAccountDisabled) {
			t.Errorf("disabled: %v, want ErrAccountDisabled", err)
		}
		p := e.pending(t, "pat")
		if _, err := e.svc.Onboarding.SendSetPasswordLink(ctx, p.ID, "x"); !errors.Is(err, onboarding.ErrAccountPending) {
			t.Errorf("pending: %v, want ErrAccountPending", err)
		}
		for _, who := range []string{"nobody", "", strings.Repeat("a", 400)} {
			if _, err := e.svc.Onboarding.SendSetPasswordLink(ctx, who, "x"); !errors.Is(err, authz.ErrNotFound) {
				t.Errorf("%.10q: %v, want ErrNotFound", who, err)
			}
		}
		if n := len(e.mails(t, u.ID)[onboarding.MailSetPassword]); n != links {
			t.Errorf("a refused link was mailed: %d mails, want %d", n, links)
		}
		if len(e.mails(t, p.ID)[onboarding.MailSetPassword]) != 0 {
			t.Error("a pending account was mailed a link")
		}
		if n := len(listAudit(t, e, onboarding.EventSetPasswordLinkSent)); n != audited {
			t.Errorf("refusals were audited: %d rows, want %d", n, audited)
		}
	})
}

func listAudit(t testing.TB, e *env, typ string) []audit.Event {
	t.Helper()
	es, err := e.svc.Audit.ListAudit(t.Context(), audit.Filter{Type: typ, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestConcurrentSetPasswordLinks: links sent at one moment for one
// account, as a flow firing twice or several replicas would, pass the
// per-account limit exactly recovery.AccountBurst times (the rest are
// *ThrottledError), mail that many links, and leave exactly one of them
// working.
func TestConcurrentSetPasswordLinks(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		ctx := t.Context()
		e := newEnv(t, open, nil)
		u := e.pending(t, "ana")
		if _, err := e.svc.Onboarding.Approve(ctx, u.ID, "test"); err != nil {
			t.Fatal(err)
		}
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _, errs[i] = e.svc.Onboarding.SendSetPasswordLink(ctx, u.ID, "apikey:k1") })
		}
		wg.Wait()
		sent := 0
		for _, err := range errs {
			var thr *onboarding.ThrottledError
			switch {
			case err == nil:
				sent++
			case !errors.As(err, &thr):
				t.Errorf("SendSetPasswordLink: %v", err)
			}
		}
		if sent != recovery.AccountBurst {
			t.Errorf("%d links sent at once, want the burst %d", sent, recovery.AccountBurst)
		}
		ms := e.mails(t, u.ID)[onboarding.MailSetPassword]
		if len(ms) != sent {
			t.Fatalf("%d mails for %d links", len(ms), sent)
		}
		working := 0
		for _, m := range ms {
			lu, err := url.Parse(linkRE.FindString(m.Text))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.Tokens.Peek(ctx, tokens.PurposeSetPassword, lu.Query().Get("token")); err == nil {
				working++
			} else if !errors.Is(err, tokens.ErrInvalidToken) {
				t.Fatal(err)
			}
		}
		if working != 1 {
			t.Errorf("%d of %d links work, want 1", working, len(ms))
		}
	})
}
