package accounts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/wiring"
)

// TestRevokeSessions: RevokeSessions rotates the security stamp (which
// ends every session at its next check), stores a lifecycle.Updated event
// carrying the new stamp's account with it, audits the actor, and changes
// nothing else: the status, the password and a running lockout stay, and
// the user signs in again at once. It finds the user by id, username or
// email; an unknown one is ErrNotFound and audits nothing; the last
// break-glass administrator's sessions can be revoked too (nothing is
// taken away from the account).
func TestRevokeSessions(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{BreakGlassRole: "admin"})
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	before := f.User(t, ana.ID)
	events := len(f.Events(t, ana.ID))

	for i, who := range []string{ana.ID, "ana", "ANA@example.com"} {
		prev := f.User(t, ana.ID)
		u, err := f.Svc.Accounts.RevokeSessions(ctx, who, "apikey:k1")
		if err != nil {
			t.Fatalf("RevokeSessions(%q): %v", who, err)
		}
		got := f.User(t, ana.ID)
		if got.SecurityStamp == prev.SecurityStamp || u.SecurityStamp != got.SecurityStamp {
			t.Errorf("RevokeSessions(%q): stamp %q -> %q (returned %q); want a new stored stamp", who, prev.SecurityStamp, got.SecurityStamp, u.SecurityStamp)
		}
		if got.Status != before.Status || got.PasswordHash != before.PasswordHash || got.MustChangePassword != before.MustChangePassword {
			t.Errorf("RevokeSessions changed more than the stamp: %+v", got)
		}
		e := f.LastAudit(t, accounts.EventSessionsRevoked)
		if e.Actor != "apikey:k1" || e.UserID != ana.ID {
			t.Errorf("audit row %+v", e)
		}
		if n := authztest.CountAudit(t, f, audit.Filter{Type: accounts.EventSessionsRevoked}); n != i+1 {
			t.Errorf("%d %s rows after %d calls", n, accounts.EventSessionsRevoked, i+1)
		}
		evs := f.Events(t, ana.ID)
		if len(evs) != events+i+1 {
			t.Fatalf("%d outbox events after %d revocations, want %d", len(evs), i+1, events+i+1)
		}
		last := evs[len(evs)-1]
		if last.Type != lifecycle.Updated {
			t.Errorf("outbox event %q, want %q", last.Type, lifecycle.Updated)
		}
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, "192.0.2.1"); err != nil {
		t.Errorf("sign-in after RevokeSessions: %v", err)
	}

	// A running lockout stays: revoking sessions is not an unlock.
	u := f.User(t, ana.ID)
	u.FailedCount, u.LockoutUntil = 20, f.Clock.Now().Add(15*time.Minute)
	if err := f.DB.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.Accounts.RevokeSessions(ctx, "ana", "cli"); err != nil {
		t.Fatal(err)
	}
	if got := f.User(t, ana.ID); !accounts.Locked(got, f.Clock.Now()) || got.FailedCount != 20 {
		t.Errorf("RevokeSessions touched the lockout: failed %d, until %v", got.FailedCount, got.LockoutUntil)
	}

	n := authztest.CountAudit(t, f, audit.Filter{Type: accounts.EventSessionsRevoked})
	if _, err := f.Svc.Accounts.RevokeSessions(ctx, "nobody", "cli"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("RevokeSessions(nobody) = %v, want ErrNotFound", err)
	}
	if authztest.CountAudit(t, f, audit.Filter{Type: accounts.EventSessionsRevoked}) != n {
		t.Error("a refused revocation was audited")
	}

	// The only break-glass administrator: nothing is taken away, so it is
	// allowed (SetStatus disabled would be refused).
	root, err := f.Svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "root", Email: "root@example.com",
		Password: authztest.GoodPassword, Roles: []string{"admin"}}, "cli")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Svc.Accounts.RevokeSessions(ctx, "root", "cli"); err != nil {
		t.Errorf("RevokeSessions of the break-glass admin: %v", err)
	}
	if err := f.Svc.Accounts.SetStatus(ctx, "root", authz.StatusDisabled, "cli"); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
		t.Errorf("SetStatus(root, disabled) = %v, want ErrLastBreakGlassAdmin", err)
	}
	if f.User(t, root.ID).Status != authz.StatusActive {
		t.Error("the break-glass admin was disabled")
	}
}
