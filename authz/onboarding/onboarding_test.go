package onboarding_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// env is the identity layer over one dialect's real store.
type env struct {
	svc   *wiring.Services
	db    *store.DB
	clock *authztest.Clock
}

func newEnv(t testing.TB, open storetest.Opener, dir wiring.Contacts) *env {
	t.Helper()
	c := authztest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	db, err := store.Open(t.Context(), open(t), store.WithNow(c.Now))
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	o := authztest.Options(wiring.Options{Contacts: dir, SetPasswordTTL: 72 * time.Hour})
	o.Now = c.Now
	svc, err := wiring.New(db, o)
	if err != nil {
		t.Fatalf("wiring.New: %v", err)
	}
	return &env{svc: svc, db: db, clock: c}
}

// eachDialect runs fn on SQLite and PostgreSQL.
func eachDialect(t *testing.T, fn func(t *testing.T, open storetest.Opener)) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) { fn(t, d.URL) })
	}
}

func (e *env) pending(t testing.TB, name string) *authz.User {
	t.Helper()
	u, err := e.svc.Accounts.CreateUser(t.Context(), accounts.NewUser{Username: name, Email: name + "@example.com",
		Password: authztest.GoodPassword, DisplayName: "Name " + name, Status: authz.StatusPending}, "test")
	if err != nil {
		t.Fatalf("CreateUser %s: %v", name, err)
	}
	return u
}

func (e *env) events(t testing.TB, userID string) []outbox.Event {
	t.Helper()
	es, err := e.db.OutboxEvents(t.Context(), userID)
	if err != nil {
		t.Fatalf("OutboxEvents: %v", err)
	}
	return es
}

// mails returns the mail events of userID, decoded.
func (e *env) mails(t testing.TB, userID string) map[string][]mail.Message {
	t.Helper()
	out := map[string][]mail.Message{}
	for _, ev := range e.events(t, userID) {
		if ev.Kind != mail.Kind {
			continue
		}
		var m mail.Message
		if err := json.Unmarshal(ev.Payload, &m); err != nil {
			t.Fatalf("mail payload: %v", err)
		}
		out[ev.Type] = append(out[ev.Type], m)
	}
	return out
}

func (e *env) types(t testing.TB, userID, kind string) []string {
	var out []string
	for _, ev := range e.events(t, userID) {
		if ev.Kind == kind {
			out = append(out, ev.Type)
		}
	}
	return out
}

func TestApproveAndReject(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		e := newEnv(t, open, nil)
		ctx := t.Context()
		ana := e.pending(t, "ana")
		got, err := e.svc.Onboarding.Approve(ctx, "ana@example.com", "admin-1")
		if err != nil {
			t.Fatalf("Approve: %v", err)
		}
		if got.Status != authz.StatusActive || got.SecurityStamp == ana.SecurityStamp {
			t.Errorf("approved: status %s, stamp rotated %v", got.Status, got.SecurityStamp != ana.SecurityStamp)
		}
		stored, _ := e.svc.Accounts.UserByID(ctx, ana.ID)
		if stored.Status != authz.StatusActive {
			t.Errorf("stored status %s", stored.Status)
		}
		if lt := e.types(t, ana.ID, lifecycle.Kind); strings.Join(lt, ",") != "user.created,user.approved" {
			t.Errorf("lifecycle events %v", lt)
		}
		m := e.mails(t, ana.ID)[onboarding.MailApproved]
		if len(m) != 1 || m[0].To != "ana@example.com" || !strings.Contains(m[0].Text, "https://portal.example.com/.auth/signin") ||
			!strings.Contains(m[0].Text, "Name ana") {
			t.Fatalf("approval mail %+v", m)
		}
		if a := lastAudit(t, e, audit.EventUserApproved); a.Actor != "admin-1" || a.UserID != ana.ID {
			t.Errorf("audit %+v", a)
		}
		if _, err := e.svc.Onboarding.Approve(ctx, ana.ID, "admin-1"); !errors.Is(err, onboarding.ErrNotPending) {
			t.Errorf("second approval: %v, want ErrNotPending", err)
		}
		if _, err := e.svc.Onboarding.Reject(ctx, ana.ID, "", "admin-1"); !errors.Is(err, onboarding.ErrNotPending) {
			t.Errorf("rejecting an active user: %v, want ErrNotPending", err)
		}

		bo := e.pending(t, "bo")
		if _, err := e.svc.Onboarding.Reject(ctx, "bo", strings.Repeat("x", onboarding.MaxReasonLen+1), "admin-1"); err == nil {
			t.Error("a reason that is too long was accepted")
		}
		if _, err := e.svc.Onboarding.Reject(ctx, "bo", "bad\x00reason", "admin-1"); err == nil {
			t.Error("a reason with a control character was accepted")
		}
		if _, err := e.svc.Onboarding.Reject(ctx, "bo", "  Please register with your work address.\n", "admin-2"); err != nil {
			t.Fatalf("Reject: %v", err)
		}
		if _, err := e.svc.Accounts.UserByID(ctx, bo.ID); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("rejected account still there: %v", err)
		}
		rm := e.mails(t, bo.ID)[onboarding.MailRejected]
		if len(rm) != 1 || rm[0].To != "bo@example.com" || !strings.Contains(rm[0].Text, "Please register with your work address.") {
			t.Fatalf("rejection mail %+v", rm)
		}
		var rejected outbox.Event
		for _, ev := range e.events(t, bo.ID) {
			if ev.Type == lifecycle.Rejected {
				rejected = ev
			}
		}
		if snap := authztest.Snapshot(t, rejected); snap.Username != "bo" || snap.Status != authz.StatusPending {
			t.Errorf("rejected snapshot %+v", snap)
		}
		a := lastAudit(t, e, audit.EventUserRejected)
		if a.Actor != "admin-2" || a.UserID != bo.ID || strings.Contains(a.Detail, "work address") {
			t.Errorf("rejection audit %+v (must not hold the reason's text)", a)
		}
		// The rejected person may register again with the same names.
		if _, err := e.svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "bo", Email: "bo@example.com", Status: authz.StatusPending}, "test"); err != nil {
			t.Errorf("re-registration after a rejection: %v", err)
		}
		if _, err := e.svc.Onboarding.Approve(ctx, "nobody", "admin-1"); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("unknown user: %v", err)
		}
	})
}

func lastAudit(t testing.TB, e *env, typ string) audit.Event {
	t.Helper()
	es, err := e.svc.Audit.ListAudit(t.Context(), audit.Filter{Type: typ, Limit: 1})
	if err != nil || len(es) == 0 {
		t.Fatalf("no %s audit event (%v)", typ, err)
	}
	return es[0]
}

func TestDecideMany(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		e := newEnv(t, open, nil)
		ctx := t.Context()
		p1, p2 := e.pending(t, "p1"), e.pending(t, "p2")
		act := e.pending(t, "act")
		if _, err := e.svc.Onboarding.Approve(ctx, act.ID, "a"); err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.Onboarding.ApproveMany(ctx, []string{p1.ID, "act", "ghost", "p2@example.com", p1.ID}, "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			id  string
			err error
		}{{p1.ID, nil}, {act.ID, onboarding.ErrNotPending}, {"", authz.ErrNotFound}, {p2.ID, nil}, {p1.ID, onboarding.ErrNotPending}}
		for i, w := range want {
			if res[i].ID != w.id || (w.err == nil) != (res[i].Err == nil) || (w.err != nil && !errors.Is(res[i].Err, w.err)) {
				t.Errorf("item %d: %+v (err %v), want id %q err %v", i, res[i], res[i].Err, w.id, w.err)
			}
		}
		if _, err := e.svc.Onboarding.RejectMany(ctx, nil, "", "a"); err == nil {
			t.Error("an empty list was accepted")
		}
		if _, err := e.svc.Onboarding.RejectMany(ctx, make([]string, onboarding.MaxDecisions+1), "", "a"); err == nil {
			t.Error("too long a list was accepted")
		}
		p3, p4 := e.pending(t, "p3"), e.pending(t, "p4")
		res, err = e.svc.Onboarding.RejectMany(ctx, []string{"p3", "p4", "p1"}, "duplicate", "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil || res[1].Err != nil || !errors.Is(res[2].Err, onboarding.ErrNotPending) || res[0].ID != p3.ID || res[1].ID != p4.ID {
			t.Errorf("reject many: %+v", res)
		}
	})
}

// TestConcurrentApproveReject: an approval and a rejection of one pending
// user at the same moment; exactly one applies, and exactly one decision
// mail is queued.
func TestConcurrentApproveReject(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		e := newEnv(t, open, nil)
		ctx := t.Context()
		for i := range 3 {
			u := e.pending(t, fmt.Sprintf("race%d", i))
			var wg sync.WaitGroup
			var approveErr, rejectErr error
			start := make(chan struct{})
			wg.Add(2)
			go func() { defer wg.Done(); <-start; _, approveErr = e.svc.Onboarding.Approve(ctx, u.ID, "a1") }()
			go func() { defer wg.Done(); <-start; _, rejectErr = e.svc.Onboarding.Reject(ctx, u.ID, "no", "a2") }()
			close(start)
			wg.Wait()
			if (approveErr == nil) == (rejectErr == nil) {
				t.Fatalf("approve %v, reject %v: want exactly one to apply", approveErr, rejectErr)
			}
			loser := cmpOr(approveErr, rejectErr)
			if !errors.Is(loser, onboarding.ErrNotPending) && !errors.Is(loser, authz.ErrNotFound) {
				t.Errorf("the loser's error %v, want ErrNotPending or ErrNotFound", loser)
			}
			stored, err := e.svc.Accounts.UserByID(ctx, u.ID)
			mails := e.mails(t, u.ID)
			switch {
			case approveErr == nil:
				if err != nil || stored.Status != authz.StatusActive || len(mails[onboarding.MailApproved]) != 1 || len(mails[onboarding.MailRejected]) != 0 {
					t.Errorf("approval won but user %+v (%v), mails %v", stored, err, mails)
				}
			default:
				if !errors.Is(err, authz.ErrNotFound) || len(mails[onboarding.MailRejected]) != 1 || len(mails[onboarding.MailApproved]) != 0 {
					t.Errorf("rejection won but user %v (%v), mails %v", stored, err, mails)
				}
			}
		}
	})
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Contacts of the invite tests.
const (
	cOK       = "a0000000-0000-4000-8000-000000000001"
	cOK2      = "a0000000-0000-4000-8000-000000000002"
	cNoEmail  = "a0000000-0000-4000-8000-000000000003"
	cInactive = "a0000000-0000-4000-8000-000000000004"
	cBound    = "a0000000-0000-4000-8000-000000000005"
	cTaken    = "a0000000-0000-4000-8000-000000000006"
	cMissing  = "a0000000-0000-4000-8000-000000000007"
	cPlus     = "a0000000-0000-4000-8000-000000000008"
)

func contacts() []*dataverse.Contact {
	mk := func(id, email string, active bool) *dataverse.Contact {
		c := authztest.Contact(id, email, "", active)
		c.FirstName, c.LastName = "First"+id[len(id)-1:], "Last"
		c.Columns["parentcustomerid"] = "contoso"
		return c
	}
	return []*dataverse.Contact{
		mk(cOK, "one@example.com", true), mk(cOK2, "Two@Example.com", true), mk(cNoEmail, "", true),
		mk(cInactive, "off@example.com", false), mk(cBound, "bound@example.com", true),
		mk(cTaken, "taken@example.com", true), mk(cPlus, "a+b@example.com", true),
	}
}

var linkRE = regexp.MustCompile(`https://portal\.example\.com/\.auth/reset/confirm\?[^\s"<]+`)

func TestInviteContacts(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		dir := authztest.Rows(nil, contacts()...)
		e := newEnv(t, open, dir)
		ctx := t.Context()
		// cBound already has an account; cTaken's address is someone else's.
		b, err := e.svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "bound", Email: "other@example.com"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Accounts.SetBinding(ctx, "bound", authztest.Lookup(cBound), "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "taken", Email: "taken@example.com"}, "test"); err != nil {
			t.Fatal(err)
		}
		ids := []string{cOK, strings.ToUpper(cOK2), cNoEmail, cInactive, cBound, cTaken, cMissing, "not-a-guid", cOK, cPlus}

		dry, err := e.svc.Onboarding.InviteContacts(ctx, onboarding.InviteRequest{ContactIDs: ids, DryRun: true}, "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		if dry[0].Outcome != onboarding.WouldCreate || dry[0].Username != "one@example.com" {
			t.Errorf("dry run: %+v", dry[0])
		}
		if us, _ := e.svc.Accounts.ListUsers(ctx, authz.UserFilter{}); len(us) != 2 {
			t.Errorf("a dry run created accounts: %d users", len(us))
		}

		res, err := e.svc.Onboarding.InviteContacts(ctx, onboarding.InviteRequest{ContactIDs: ids}, "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			outcome onboarding.Outcome
			reason  string
		}{
			{onboarding.Created, ""}, {onboarding.Created, ""}, {onboarding.Failed, onboarding.ReasonNoEmail},
			{onboarding.Failed, onboarding.ReasonContactInactive}, {onboarding.Skipped, onboarding.ReasonAlreadyHasAccount},
			{onboarding.Failed, onboarding.ReasonEmailTaken}, {onboarding.Failed, onboarding.ReasonContactNotFound},
			{onboarding.Failed, onboarding.ReasonInvalidID}, {onboarding.Skipped, onboarding.ReasonDuplicate},
			{onboarding.Failed, onboarding.ReasonInvalidUsername},
		}
		for i, w := range want {
			if res[i].Outcome != w.outcome || res[i].Reason != w.reason || (w.reason != "" && res[i].Message == "") {
				t.Errorf("item %d (%s): %+v, want %s %s", i, ids[i], res[i], w.outcome, w.reason)
			}
		}
		if res[4].UserID != b.ID {
			t.Errorf("the bound contact's result names %q, want %q", res[4].UserID, b.ID)
		}
		// The account: bound, active, no password, address not confirmed yet.
		u, err := e.svc.Accounts.UserByID(ctx, res[1].UserID)
		if err != nil {
			t.Fatal(err)
		}
		if u.Username != "Two@Example.com" || u.Email != "Two@Example.com" || u.PasswordHash != "" || u.EmailConfirmed ||
			u.Status != authz.StatusActive || u.Binding.Mode != authz.BindingLookup || u.Binding.Ref.ID != cOK2 ||
			u.FirstName != "First2" || u.LastName != "Last" {
			t.Errorf("account %+v", u)
		}
		if _, err := e.svc.SignIn.SignIn(ctx, signinCreds("Two@Example.com")); err == nil {
			t.Error("an account without a password signed in")
		}
		if lt := e.types(t, u.ID, lifecycle.Kind); strings.Join(lt, ",") != lifecycle.Created {
			t.Errorf("lifecycle %v", lt)
		}
		// The mail carries a working set-password link, which works once.
		ms := e.mails(t, u.ID)[onboarding.MailSetPassword]
		if len(ms) != 1 || ms[0].To != "Two@Example.com" || !strings.Contains(ms[0].Text, "3 days") {
			t.Fatalf("set-password mails %+v", ms)
		}
		link := linkRE.FindString(ms[0].Text)
		lu, err := url.Parse(link)
		if err != nil || lu.Query().Get("purpose") != "set_password" {
			t.Fatalf("link %q: %v", link, err)
		}
		tok, err := e.svc.Tokens.Consume(ctx, tokens.PurposeSetPassword, lu.Query().Get("token"))
		if err != nil || tok.UserID != u.ID || !strings.Contains(string(tok.Payload), "Two@Example.com") ||
			!tok.ExpiresAt.Equal(e.clock.Now().Add(72*time.Hour)) {
			t.Fatalf("Consume: %+v, %v", tok, err)
		}
		if _, err := e.svc.Tokens.Consume(ctx, tokens.PurposeSetPassword, lu.Query().Get("token")); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("second use: %v", err)
		}
		if a := lastAudit(t, e, audit.EventCredentialsCreated); a.Actor != "admin-1" {
			t.Errorf("audit %+v", a)
		}
		skipped, _ := e.svc.Audit.ListAudit(ctx, audit.Filter{Type: audit.EventCredentialsSkipped, Limit: 100})
		if len(skipped) != 7 { // every skipped or failed item but the duplicate
			t.Errorf("%d skipped audit rows, want 7", len(skipped))
		}

		// A rerun creates nothing and sends nothing.
		before, requests := countMails(t, e), dir.Requests()
		again, err := e.svc.Onboarding.InviteContacts(ctx, onboarding.InviteRequest{ContactIDs: []string{cOK, cOK2}}, "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range again {
			if r.Outcome != onboarding.Skipped || r.Reason != onboarding.ReasonAlreadyHasAccount || r.UserID != res[i].UserID {
				t.Errorf("rerun item %d: %+v", i, r)
			}
		}
		if after := countMails(t, e); after != before {
			t.Errorf("a rerun queued %d mails", after-before)
		}
		if n := dir.Requests() - requests; n != 0 {
			t.Errorf("a rerun over bound contacts asked Dataverse %d times", n)
		}
	})
}

func signinCreds(login string) signin.Credentials {
	return signin.Credentials{Login: login, Password: authztest.GoodPassword, ClientAddr: "192.0.2.1"}
}

func countMails(t testing.TB, e *env) int {
	t.Helper()
	us, err := e.svc.Accounts.ListUsers(t.Context(), authz.UserFilter{Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range us {
		for _, ms := range e.mails(t, u.ID) {
			n += len(ms)
		}
	}
	return n
}

func TestInviteContactsFilter(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		cs := contacts()
		// A loose match (Dataverse's wildcards) is checked again and dropped.
		loose := func(c *dataverse.Contact, q dataverse.ContactQuery) bool {
			return c.ID == cNoEmail || dataverse.MatchesAll(c, q.Conditions)
		}
		cs[2].Columns["parentcustomerid"] = "other"
		dir := authztest.Rows(loose, cs...)
		e := newEnv(t, open, dir)
		ctx := t.Context()
		res, err := e.svc.Onboarding.InviteContacts(ctx, onboarding.InviteRequest{Filter: "parentcustomerid eq 'contoso'"}, "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]onboarding.Outcome{}
		for _, r := range res {
			got[r.ContactID] = r.Outcome
		}
		if len(res) != 6 || got[cOK] != onboarding.Created || got[cInactive] != onboarding.Failed || got[cNoEmail] != "" {
			t.Errorf("filter results %+v", res)
		}
		_, qs, _ := dir.Recorded()
		if len(qs) != 1 || qs[0].Limit != onboarding.MaxInvite+1 {
			t.Errorf("queries %+v, want one of limit %d", qs, onboarding.MaxInvite+1)
		}
		for _, bad := range []onboarding.InviteRequest{
			{Filter: "emailaddress1 eq {email}"},
			{Filter: "emailaddress1 eq"},
			{Filter: "a eq 1", ContactIDs: []string{cOK}},
			{},
			{ContactIDs: make([]string, onboarding.MaxInvite+1)},
		} {
			var verr *authz.ValidationError
			if _, err := e.svc.Onboarding.InviteContacts(ctx, bad, "a"); !errors.As(err, &verr) {
				t.Errorf("%+v: %v, want a ValidationError", bad, err)
			}
		}
	})
	t.Run("too many", func(t *testing.T) {
		var cs []*dataverse.Contact
		for i := range onboarding.MaxInvite + 1 {
			cs = append(cs, authztest.Contact(fmt.Sprintf("b0000000-0000-4000-8000-%012d", i), fmt.Sprintf("u%d@example.com", i), "", true))
		}
		e := newEnv(t, storetest.SQLiteURL, authztest.Rows(nil, cs...))
		var verr *authz.ValidationError
		if _, err := e.svc.Onboarding.InviteContacts(t.Context(), onboarding.InviteRequest{Filter: "new_tier eq 'gold'"}, "a"); !errors.As(err, &verr) ||
			!strings.Contains(verr.Message, "More than 500") {
			t.Fatalf("%d matches: %v", len(cs), err)
		}
		if us, _ := e.svc.Accounts.ListUsers(t.Context(), authz.UserFilter{}); len(us) != 0 {
			t.Errorf("%d accounts created", len(us))
		}
	})
}

func TestInviteContactsDataverseDown(t *testing.T) {
	e := newEnv(t, storetest.SQLiteURL, authztest.Down())
	res, err := e.svc.Onboarding.InviteContacts(t.Context(), onboarding.InviteRequest{ContactIDs: []string{cOK}}, "a")
	if err != nil || res[0].Outcome != onboarding.Failed || res[0].Reason != onboarding.ReasonDataverseUnavailable {
		t.Errorf("ids: %+v, %v", res, err)
	}
	if _, err := e.svc.Onboarding.InviteContacts(t.Context(), onboarding.InviteRequest{Filter: "new_tier eq 'gold'"}, "a"); !errors.Is(err, dataverse.ErrUnavailable) {
		t.Errorf("filter: %v", err)
	}
	noDV := newEnv(t, storetest.SQLiteURL, nil)
	if _, err := noDV.svc.Onboarding.InviteContacts(t.Context(), onboarding.InviteRequest{ContactIDs: []string{cOK}}, "a"); !errors.Is(err, onboarding.ErrNoDirectory) {
		t.Errorf("no Dataverse: %v", err)
	}
}

// TestConcurrentInvites: two bulk runs at once over overlapping contacts
// create each account once and queue one mail per account.
func TestConcurrentInvites(t *testing.T) {
	eachDialect(t, func(t *testing.T, open storetest.Opener) {
		e := newEnv(t, open, authztest.Rows(nil, contacts()...))
		ctx := t.Context()
		runs := [][]string{{cOK, cOK2, cTaken}, {cTaken, cOK2, cOK}, {cOK2}}
		results := make([][]onboarding.InviteResult, len(runs))
		errs := make([]error, len(runs))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, ids := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = e.svc.Onboarding.InviteContacts(ctx, onboarding.InviteRequest{ContactIDs: ids}, fmt.Sprint("run", i))
			}()
		}
		close(start)
		wg.Wait()
		created := map[string]int{}
		for i, rs := range results {
			if errs[i] != nil {
				t.Fatalf("run %d: %v", i, errs[i])
			}
			for _, r := range rs {
				switch r.Outcome {
				case onboarding.Created:
					created[r.ContactID]++
				case onboarding.Skipped:
					if r.Reason != onboarding.ReasonAlreadyHasAccount {
						t.Errorf("skipped for %s", r.Reason)
					}
				default:
					t.Errorf("run %d: %+v", i, r)
				}
			}
		}
		for _, id := range []string{cOK, cOK2, cTaken} {
			if created[id] != 1 {
				t.Errorf("contact %s created %d times", id, created[id])
			}
			bound, err := e.db.UsersBoundToContact(ctx, id)
			if err != nil || len(bound) != 1 {
				t.Fatalf("contact %s: %d accounts (%v)", id, len(bound), err)
			}
			if ms := e.mails(t, bound[0].ID)[onboarding.MailSetPassword]; len(ms) != 1 {
				t.Errorf("contact %s: %d mails", id, len(ms))
			}
		}
	})
}
