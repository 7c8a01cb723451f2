package recovery_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// kinds returns the kind/type of each outbox event of userID.
func kinds(t *testing.T, f *authztest.Fixture, userID string) []string {
	t.Helper()
	var out []string
	for _, e := range f.Events(t, userID) {
		out = append(out, e.Kind+"/"+e.Type)
	}
	return out
}

func TestRequestOutcomes(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	ctx := context.Background()
	active := f.CreateUser(t, "ann", authz.StatusActive)
	disabled := f.CreateUser(t, "dis", authz.StatusDisabled)
	pending := f.CreateUser(t, "pen", authz.StatusPending)
	r := f.Svc.Recovery
	for i, tc := range []struct {
		login, userID, outcome string
		mail                   bool
	}{
		{"ann@example.com", active.ID, recovery.ReqIssued, true},
		{"dis", disabled.ID, recovery.ReqDisabled, false},
		{"PEN", pending.ID, recovery.ReqPending, false},
		{"nobody", "", recovery.ReqUnknown, false},
	} {
		addr := "192.0.2." + string(rune('1'+i))
		if err := r.Request(ctx, tc.login, addr); err != nil {
			t.Fatalf("%s: %v", tc.login, err)
		}
		ev := f.LastAudit(t, recovery.EventResetRequested)
		if ev.Detail != tc.outcome || ev.UserID != tc.userID || ev.ClientAddr != addr {
			t.Errorf("%s: audit %+v", tc.login, ev)
		}
		if tc.userID != "" {
			got := slices.Contains(kinds(t, f, tc.userID), mail.Kind+"/reset_password")
			if got != tc.mail {
				t.Errorf("%s: reset mail %v, want %v (%v)", tc.login, got, tc.mail, kinds(t, f, tc.userID))
			}
		}
	}
	// The mail's link is built from the public URL and holds a secret that
	// the token store knows as an outstanding reset_password token.
	var link string
	for _, e := range f.Events(t, active.ID) {
		if e.Kind == mail.Kind && e.Type == "reset_password" {
			link = string(e.Payload)
		}
	}
	i := strings.Index(link, "https://portal.example.com/.auth/reset/confirm?token=")
	if i < 0 {
		t.Fatalf("no link in %s", link)
	}
	secret := link[i+len("https://portal.example.com/.auth/reset/confirm?token=") : i+len("https://portal.example.com/.auth/reset/confirm?token=")+tokens.SecretLen]
	if _, err := f.Svc.Tokens.Peek(ctx, tokens.PurposeResetPassword, secret); err != nil {
		t.Fatalf("the mailed secret: %v", err)
	}
	var verr *authz.ValidationError
	if err := r.Request(ctx, "   ", "192.0.2.9"); !errors.As(err, &verr) {
		t.Fatalf("empty login: %v", err)
	}
}

func TestRequestThrottles(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	ctx := context.Background()
	u := f.CreateUser(t, "bob", authz.StatusActive)
	r := f.Svc.Recovery
	// Per account: the same answer, but no more mail than AccountBurst.
	for i := range recovery.AccountBurst + 2 {
		if err := r.Request(ctx, "bob", "198.51.100."+string(rune('1'+i))); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, k := range kinds(t, f, u.ID) {
		if k == mail.Kind+"/reset_password" {
			n++
		}
	}
	if n != recovery.AccountBurst {
		t.Fatalf("%d reset mails, want %d", n, recovery.AccountBurst)
	}
	if ev := f.LastAudit(t, recovery.EventResetRequested); ev.Detail != recovery.ReqThrottled {
		t.Fatalf("last outcome %q", ev.Detail)
	}
	// Per address: refused, told apart, audited once.
	for range recovery.ClientBurst {
		if err := r.Request(ctx, "someone", "203.0.113.7"); err != nil {
			t.Fatal(err)
		}
	}
	var throttled *recovery.ThrottledError
	for range 3 {
		if err := r.Request(ctx, "someone", "203.0.113.7:5555"); !errors.As(err, &throttled) || throttled.RetryAfter <= 0 {
			t.Fatalf("over the address's burst: %v", err)
		}
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: recovery.EventResetThrottled}); n != 2 { // the account's, the address's
		t.Fatalf("%d throttle audit events, want 2", n)
	}
}

func TestCompleteRules(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	ctx := context.Background()
	u := f.CreateUser(t, "cy", authz.StatusActive)
	r := f.Svc.Recovery
	secret, _, err := f.Svc.Tokens.Issue(ctx, tokens.PurposeResetPassword, u.ID, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A refused password spends nothing.
	var verr *authz.ValidationError
	if _, err := r.Complete(ctx, tokens.PurposeResetPassword, secret, "cy", "192.0.2.1"); !errors.As(err, &verr) {
		t.Fatalf("weak password: %v", err)
	}
	// A disabled account keeps its link but cannot use it.
	if err := f.Svc.Accounts.SetStatus(ctx, "cy", authz.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Complete(ctx, tokens.PurposeResetPassword, secret, "a fine new password 1", "192.0.2.1"); !errors.Is(err, recovery.ErrAccountUnavailable) {
		t.Fatalf("disabled account: %v", err)
	}
	if err := f.Svc.Accounts.SetStatus(ctx, "cy", authz.StatusActive, "test"); err != nil {
		t.Fatal(err)
	}
	// A locked-out account is unlocked by the reset.
	for range 6 {
		_, _ = f.SignIn(t, "cy", "wrong password", "192.0.2.50")
	}
	if _, err := f.SignIn(t, "cy", authztest.GoodPassword, "192.0.2.50"); err == nil {
		t.Fatal("not locked out")
	}
	stampBefore := f.User(t, u.ID).SecurityStamp
	got, err := r.Complete(ctx, tokens.PurposeResetPassword, secret, "a fine new password 1", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if got.SecurityStamp == stampBefore || got.FailedCount != 0 || !got.LockoutUntil.IsZero() {
		t.Fatalf("after the reset: stamp kept %v, failures %d, lockout %v", got.SecurityStamp == stampBefore, got.FailedCount, got.LockoutUntil)
	}
	if _, err := f.SignIn(t, "cy", "a fine new password 1", "192.0.2.50"); err != nil {
		t.Fatalf("sign-in after the reset from the locked address: %v", err)
	}
	if _, err := r.Complete(ctx, tokens.PurposeResetPassword, secret, "another password 2", "192.0.2.1"); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("second use: %v", err)
	}
	if ev := f.LastAudit(t, audit.EventTokenRefused); !strings.Contains(ev.Detail, tokens.RefusedUsed) {
		t.Fatalf("the reuse is audited as %q", ev.Detail)
	}
	if !slices.Contains(kinds(t, f, u.ID), mail.Kind+"/password_changed") {
		t.Fatalf("no password_changed mail: %v", kinds(t, f, u.ID))
	}
}

func TestChangeCountsAgainstLockout(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	ctx := context.Background()
	u := f.CreateUser(t, "dee", authz.StatusActive)
	r := f.Svc.Recovery
	req := recovery.ChangeRequest{UserID: u.ID, Current: "wrong", New: "a fine new password 1", ClientAddr: "192.0.2.7"}
	for range 5 {
		if _, err := r.Change(ctx, req); !errors.Is(err, signin.ErrInvalidCredentials) {
			t.Fatalf("wrong current: %v", err)
		}
	}
	req.Current = authztest.GoodPassword
	if _, err := r.Change(ctx, req); !errors.Is(err, signin.ErrInvalidCredentials) {
		t.Fatalf("right current while locked out: %v", err)
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventSignInFailed, UserID: u.ID}); n != 6 {
		t.Fatalf("%d sign-in failures audited, want 6", n)
	}
	f.Clock.Advance(16 * time.Minute)
	req.New = req.Current
	if _, err := r.Change(ctx, req); !errors.Is(err, recovery.ErrSamePassword) {
		t.Fatalf("same password: %v", err)
	}
	req.New = "a fine new password 1"
	if _, err := r.Change(ctx, req); err != nil {
		t.Fatal(err)
	}
}

func TestForcedChangeClearsContactColumn(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{SignInCheck: signin.Check{PasswordChangeColumn: "new_mustchangepassword"}})
	ctx := context.Background()
	u := f.CreateUser(t, "eli", authz.StatusActive)
	const contact = "c0000000-0000-4000-8000-0000000000e1"
	if _, err := f.Svc.Recovery.Change(ctx, recovery.ChangeRequest{UserID: u.ID, Current: authztest.GoodPassword,
		New: "a fine new password 1", Forced: true, ContactID: contact, ClientAddr: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	var flag *outbox.Event
	for _, e := range f.Events(t, u.ID) {
		if e.Kind == recovery.ContactFlagKind {
			flag = &e
		}
	}
	if flag == nil {
		t.Fatalf("no contact flag event: %v", kinds(t, f, u.ID))
	}
	dir := &authztest.Directory{Update: func(_ context.Context, id string, cols map[string]any, etag string) error {
		if id != contact || etag != "" || len(cols) != 1 || cols["new_mustchangepassword"] != false {
			t.Errorf("update %s %v %q", id, cols, etag)
		}
		return nil
	}}
	d := recovery.ContactFlagDeliverer{Contacts: dir}
	if err := d.Deliver(ctx, *flag); err != nil {
		t.Fatal(err)
	}
	if dir.Requests() != 1 {
		t.Fatalf("%d requests", dir.Requests())
	}
	// A contact that is gone, or a bad event, is not retried.
	gone := recovery.ContactFlagDeliverer{Contacts: &authztest.Directory{Update: func(context.Context, string, map[string]any, string) error {
		return dataverse.ErrContactNotFound
	}}}
	if err := gone.Deliver(ctx, *flag); !outbox.IsPermanent(err) {
		t.Fatalf("missing contact: %v", err)
	}
	bad := *flag
	bad.Payload = []byte(`{"contact_id":"x","column":"new_mustchangepassword"}`)
	if err := d.Deliver(ctx, bad); !outbox.IsPermanent(err) {
		t.Fatalf("bad payload: %v", err)
	}
	// Unavailable Dataverse: retried.
	down := recovery.ContactFlagDeliverer{Contacts: &authztest.Directory{Update: func(context.Context, string, map[string]any, string) error {
		return dataverse.ErrUnavailable
	}}}
	if err := down.Deliver(ctx, *flag); err == nil || outbox.IsPermanent(err) {
		t.Fatalf("unavailable: %v", err)
	}
	// A change that was not forced clears nothing.
	v := f.CreateUser(t, "fay", authz.StatusActive)
	if _, err := f.Svc.Recovery.Change(ctx, recovery.ChangeRequest{UserID: v.ID, Current: authztest.GoodPassword,
		New: "a fine new password 1", ContactID: contact, ClientAddr: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Events(t, v.ID) {
		if e.Kind == recovery.ContactFlagKind {
			t.Fatal("an unforced change cleared the contact column")
		}
	}
}

// A reset through a link of a user bound by lookup also clears the contact
// column that forces a change, in the same transaction: otherwise the next
// sign-in would force another change.
func TestResetClearsContactColumn(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{SignInCheck: signin.Check{PasswordChangeColumn: "new_mustchangepassword"}})
	ctx := context.Background()
	const contact = "c0000000-0000-4000-8000-0000000000e2"
	u := f.CreateUser(t, "gil", authz.StatusActive)
	u.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: contact, LogicalName: dataverse.ContactLogicalName}}
	if err := f.DB.UpdateUserAndEnqueue(ctx, u); err != nil {
		t.Fatal(err)
	}
	unbound := f.CreateUser(t, "hal", authz.StatusActive)
	for _, who := range []*authz.User{u, unbound} {
		secret, _, err := f.Svc.Tokens.Issue(ctx, tokens.PurposeResetPassword, who.ID, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Svc.Recovery.Complete(ctx, tokens.PurposeResetPassword, secret, "a fine new password 1", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	var flags int
	for _, e := range f.Events(t, u.ID) {
		if e.Kind == recovery.ContactFlagKind {
			flags++
			if !strings.Contains(string(e.Payload), contact) {
				t.Errorf("flag event for another contact: %s", e.Payload)
			}
		}
	}
	if flags != 1 {
		t.Fatalf("%d contact flag events for the bound user: %v", flags, kinds(t, f, u.ID))
	}
	for _, e := range f.Events(t, unbound.ID) {
		if e.Kind == recovery.ContactFlagKind {
			t.Fatal("the reset of an unbound user cleared a contact column")
		}
	}
}
