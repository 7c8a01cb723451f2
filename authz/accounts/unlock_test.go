package accounts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/wiring"
)

// TestUnlock: Unlock clears a running lockout (the account's soft lock and
// every address's) and the failure counts, audits it, and lets the owner
// sign in at once, even from the address that failed, without ending sessions
// (the security stamp stays); with nothing to clear it changes and audits
// nothing; an expired lockout's leftovers are cleared and reported as not
// locked; an unknown login is ErrNotFound.
func TestUnlock(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{})
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	lock := func(t *testing.T, failures int, until time.Time) *authz.User {
		t.Helper()
		u := f.User(t, ana.ID)
		u.FailedCount, u.LockoutUntil = failures, until
		if err := f.DB.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return f.User(t, ana.ID)
	}
	unlocked := func() int {
		return authztest.CountAudit(t, f, audit.Filter{Type: audit.EventAccountUnlocked})
	}

	// Both lockouts: the owner's address failed five times (locked out of
	// this account), and the account's budget ran out (the soft lock).
	for range 5 {
		if _, err := f.SignIn(t, "ana", "wrong password", "192.0.2.1"); err == nil {
			t.Fatal("a wrong password signed in")
		}
	}
	locked := lock(t, 20, f.Clock.Now().Add(15*time.Minute))
	if !accounts.Locked(locked, f.Clock.Now()) {
		t.Fatal("Locked = false for a running lockout")
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, "192.0.2.1"); err == nil {
		t.Fatal("a locked account signed in")
	}
	was, err := f.Svc.Accounts.Unlock(ctx, "ANA@example.com", "cli")
	if err != nil || !was {
		t.Fatalf("Unlock = %v, %v; want true, nil", was, err)
	}
	got := f.User(t, ana.ID)
	if got.FailedCount != 0 || !got.LockoutUntil.IsZero() || accounts.Locked(got, f.Clock.Now()) {
		t.Errorf("after Unlock: failed %d, lockout %v", got.FailedCount, got.LockoutUntil)
	}
	if got.SecurityStamp != locked.SecurityStamp {
		t.Error("Unlock rotated the security stamp (it would end the owner's sessions)")
	}
	e := f.LastAudit(t, audit.EventAccountUnlocked)
	if e.Actor != "cli" || e.UserID != ana.ID || e.Detail == "" {
		t.Errorf("audit row %+v", e)
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, "192.0.2.1"); err != nil {
		t.Errorf("sign-in after Unlock: %v", err)
	}

	n := unlocked()
	if was, err := f.Svc.Accounts.Unlock(ctx, "ana", "cli"); err != nil || was {
		t.Errorf("Unlock of an unlocked account = %v, %v; want false, nil", was, err)
	}
	if unlocked() != n {
		t.Error("Unlock with nothing to clear was audited")
	}

	lock(t, 3, f.Clock.Now().Add(-time.Second)) // a lockout that has ended, its count left over
	if was, err := f.Svc.Accounts.Unlock(ctx, "ana", "cli"); err != nil || was {
		t.Errorf("Unlock of an ended lockout = %v, %v; want false, nil", was, err)
	}
	if got := f.User(t, ana.ID); got.FailedCount != 0 || !got.LockoutUntil.IsZero() || unlocked() != n+1 {
		t.Errorf("ended lockout not cleared: %+v, %d rows", got, unlocked())
	}

	for _, login := range []string{"nobody", "", "ana\x00", ana.ID} {
		if _, err := f.Svc.Accounts.Unlock(ctx, login, "cli"); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("Unlock(%q) = %v; want ErrNotFound", login, err)
		}
	}
}

// TestUnlockAddressOnly: an address locked out of an account stays locked
// out after the owner signs in from another address, which resets the
// account's own count; Unlock still finds and clears that address's
// lockout, audits it and reports a lockout.
func TestUnlockAddressOnly(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{MaxFailures: 3})
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	const locked, owner = "203.0.113.3", "198.51.100.3"
	for range 3 {
		if _, err := f.SignIn(t, "ana", "wrong password", locked); err == nil {
			t.Fatal("a wrong password signed in")
		}
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, owner); err != nil {
		t.Fatalf("the owner from another address: %v", err)
	}
	if u := f.User(t, ana.ID); u.FailedCount != 0 || !u.LockoutUntil.IsZero() {
		t.Fatalf("the account's count after the owner's sign-in: %d, %v", u.FailedCount, u.LockoutUntil)
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, locked); err == nil {
		t.Fatal("the locked-out address signed in")
	}
	was, err := f.Svc.Accounts.Unlock(ctx, "ana", "cli")
	if err != nil || !was {
		t.Fatalf("Unlock = %v, %v; want true, nil", was, err)
	}
	if e := f.LastAudit(t, audit.EventAccountUnlocked); e.UserID != ana.ID || e.Detail != "failed_count=0 addresses=1 locked_addresses=1" {
		t.Errorf("audit row %+v", e)
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, locked); err != nil {
		t.Errorf("the unlocked address: %v", err)
	}
}
