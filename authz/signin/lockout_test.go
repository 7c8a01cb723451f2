package signin_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/wiring"
)

// TestLimitsBegin walks the lockout rules one attempt at a time, clock
// steps included.
func TestLimitsBegin(t *testing.T) {
	l := signin.Limits{ClientMaxFailures: 2, AccountMaxFailures: 3, LockFor: 10 * time.Minute}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var account signin.Counter
	clients := map[string]signin.Counter{}
	steps := []struct {
		name          string
		client        string
		at            time.Time
		allowed       bool
		reason        string
		clientLocked  bool
		accountLocked bool
	}{
		{"first failure", "a", t0, true, "", false, false},
		{"a reaches its limit", "a", t0.Add(time.Second), true, "", true, false},
		{"a locked", "a", t0.Add(2 * time.Second), false, signin.ReasonLockedOut, false, false},
		{"b unaffected", "b", t0.Add(3 * time.Second), true, "", false, true}, // the account's third failure: soft lock
		{"b failed recently", "b", t0.Add(4 * time.Second), false, signin.ReasonAccountLocked, true, false},
		{"c is fresh", "c", t0.Add(5 * time.Second), true, "", false, false},
		{"c failed recently", "c", t0.Add(6 * time.Second), false, signin.ReasonAccountLocked, true, false},
		{"d is fresh", "d", t0.Add(7 * time.Second), true, "", false, false},
		{"clock back an hour: a still locked", "a", t0.Add(-time.Hour), false, signin.ReasonLockedOut, false, false},
		// The clock went back: no lockout lasts longer than LockFor from
		// the earlier time, so a is free at -1h+10m.
		{"a free after LockFor from the stepped clock", "a", t0.Add(-time.Hour + 10*time.Minute), true, "", false, false},
		{"window over for the account", "e", t0.Add(time.Hour), true, "", false, false},
		{"b's lockout over: fresh", "b", t0.Add(time.Hour), true, "", false, false},
		{"the account counts again", "f", t0.Add(time.Hour + time.Second), true, "", false, true},
	}
	for _, s := range steps {
		a := l.Begin(account, clients[s.client], s.at)
		if a.Allowed != s.allowed || a.Reason != s.reason || a.ClientLocked != s.clientLocked || a.AccountLocked != s.accountLocked {
			t.Fatalf("%s: %+v, want allowed=%v reason=%q clientLocked=%v accountLocked=%v",
				s.name, a, s.allowed, s.reason, s.clientLocked, s.accountLocked)
		}
		if !a.Client.LockoutUntil.IsZero() && a.Client.LockoutUntil.After(s.at.Add(l.LockFor)) ||
			a.Reason != signin.ReasonLockedOut && a.Account.LockoutUntil.After(s.at.Add(l.LockFor)) {
			t.Fatalf("%s: a lockout ends more than LockFor from now: %+v", s.name, a)
		}
		account, clients[s.client] = a.Account, a.Client
	}
	for _, bad := range []signin.Limits{{}, {ClientMaxFailures: 1, AccountMaxFailures: 1}, {ClientMaxFailures: 1, LockFor: time.Second},
		{AccountMaxFailures: 1, LockFor: time.Second}, {ClientMaxFailures: -1, AccountMaxFailures: 1, LockFor: time.Second}} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
}

// lockoutFixture has MaxFailures 3, AccountMaxFailures 6 and a lockout of
// ten minutes, and the user "ana".
func lockoutFixture(t *testing.T) (*authztest.Fixture, *authz.User) {
	t.Helper()
	f := authztest.NewFixture(t, wiring.Options{MaxFailures: 3, AccountMaxFailures: 6, LockoutDuration: 10 * time.Minute})
	return f, f.CreateUser(t, "ana", authz.StatusActive)
}

func addr(i int) string { return fmt.Sprintf("198.51.100.%d", i) }

func mustInvalid(t *testing.T, f *authztest.Fixture, pw, client, reason string) {
	t.Helper()
	if u, err := f.SignIn(t, "ana", pw, client); u != nil || err != signin.ErrInvalidCredentials {
		t.Fatalf("SignIn from %s = %v, %v; want exactly ErrInvalidCredentials", client, u, err)
	}
	if e := f.LastAudit(t, audit.EventSignInFailed); e.Detail != reason || e.ClientAddr != client {
		t.Fatalf("SignIn from %s audited %+v, want reason %s", client, e, reason)
	}
}

func mustSignIn(t *testing.T, f *authztest.Fixture, client string) {
	t.Helper()
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, client); err != nil {
		t.Fatalf("the owner's correct password from %s: %v", client, err)
	}
}

// TestOneAttackerAddressCannotLockTheOwnerOut: an address hammering an
// account is locked out of it, the owner signs in from elsewhere
// throughout, and the attacker's correct guess is refused.
func TestOneAttackerAddressCannotLockTheOwnerOut(t *testing.T) {
	f, u := lockoutFixture(t)
	const attacker, owner = "203.0.113.66", "192.0.2.10"
	for range 3 {
		mustInvalid(t, f, "wrong password", attacker, signin.ReasonWrongPassword)
	}
	if e := f.LastAudit(t, audit.EventAddressLocked); e.ClientAddr != attacker || e.UserID != u.ID {
		t.Fatalf("address lock audit = %+v", e)
	}
	for range 20 {
		f.Clock.Advance(10 * time.Second)
		mustInvalid(t, f, "wrong password", attacker, signin.ReasonLockedOut)
		mustInvalid(t, f, authztest.GoodPassword, attacker, signin.ReasonLockedOut)
	}
	mustSignIn(t, f, owner)
	// The lock holds on the port and on other addresses of the same IPv6 /64.
	mustInvalid(t, f, authztest.GoodPassword, attacker+":4444", signin.ReasonLockedOut)
	for range 3 {
		mustInvalid(t, f, "wrong password", "2001:db8:5:6::1", signin.ReasonWrongPassword)
	}
	mustInvalid(t, f, authztest.GoodPassword, "2001:db8:5:6:ffff::2", signin.ReasonLockedOut)
	mustSignIn(t, f, "2001:db8:5:7::1")
	// The owner's success does not free the attacker.
	mustInvalid(t, f, authztest.GoodPassword, attacker, signin.ReasonLockedOut)
	// Locked attempts do not extend the lockout.
	f.Clock.Advance(10*time.Minute - 200*time.Second)
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, attacker); err != nil {
		t.Fatalf("the attacker's address ten minutes after its lock: %v", err)
	}
}

// TestSprayFromManyAddresses: once the account's budget is spent, an
// address that failed gets no more checks, a fresh one gets one, and the
// owner's correct password from a fresh address still signs in.
func TestSprayFromManyAddresses(t *testing.T) {
	f, u := lockoutFixture(t)
	// Three addresses fail twice each: six failures, the account's budget.
	for i := range 3 {
		for range 2 {
			f.Clock.Advance(time.Second)
			mustInvalid(t, f, "wrong password", addr(i), signin.ReasonWrongPassword)
		}
	}
	e := f.LastAudit(t, audit.EventAccountLocked)
	if e.UserID != u.ID || e.Detail != f.Clock.Now().Add(10*time.Minute).UTC().Format(time.RFC3339) {
		t.Fatalf("account.locked audit = %+v", e)
	}
	// Those addresses are refused now, even with the right password.
	for i := range 3 {
		mustInvalid(t, f, authztest.GoodPassword, addr(i), signin.ReasonAccountLocked)
	}
	// Fresh addresses get exactly one check each.
	for i := 10; i < 40; i++ {
		mustInvalid(t, f, "wrong password", addr(i), signin.ReasonWrongPassword)
		mustInvalid(t, f, "wrong password", addr(i), signin.ReasonAccountLocked)
	}
	checked := countReason(t, f, u.ID, signin.ReasonWrongPassword)
	if want := 6 + 30; checked != want {
		t.Errorf("%d passwords checked, want %d (the budget, then one per fresh address)", checked, want)
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventAccountLocked}); n != 1 {
		t.Errorf("%d account.locked events, want 1", n)
	}
	// The owner, from a network that has not failed, signs in during the
	// attack; that does not lift the soft lock for the sprayers.
	mustSignIn(t, f, "192.0.2.10")
	mustInvalid(t, f, authztest.GoodPassword, addr(10), signin.ReasonAccountLocked)
	mustSignIn(t, f, "192.0.2.10")
	// The soft lock ends after the lockout duration.
	f.Clock.Advance(10 * time.Minute)
	mustSignIn(t, f, addr(0))
}

// TestOwnerDuringAnInterleavedAttack interleaves an attack from rotating
// addresses with the owner's sign-ins, typos included, over clock steps.
func TestOwnerDuringAnInterleavedAttack(t *testing.T) {
	f, u := lockoutFixture(t)
	const home, phone = "192.0.2.10", "2001:db8:aa::1"
	next := 0
	attack := func(n int) {
		for range n {
			f.Clock.Advance(700 * time.Millisecond)
			_, _ = f.SignIn(t, "ana", fmt.Sprintf("guess-%d", next), addr(next%25))
			next++
		}
	}
	for round := range 6 {
		attack(17)
		mustSignIn(t, f, home) // home never failed
		attack(5)
		mustSignIn(t, f, phone)
		f.Clock.Advance(time.Duration(round) * time.Minute)
	}
	// A typo from home during the attack: home has failed recently, so
	// while the account is soft-locked its next try waits for the end.
	attack(10)
	mustInvalid(t, f, "typo", home, signin.ReasonWrongPassword)
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, home); !errors.Is(err, signin.ErrInvalidCredentials) {
		t.Fatalf("home right after a typo while soft-locked: %v", err)
	}
	mustSignIn(t, f, phone)
	f.Clock.Advance(10 * time.Minute)
	mustSignIn(t, f, home)
	// No attacking address ever had more than MaxFailures checks per lockout window.
	es, err := f.Svc.Audit.ListAudit(t.Context(), audit.Filter{UserID: u.ID, Type: audit.EventSignInFailed, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][]time.Time{}
	for _, e := range es {
		if e.Detail == signin.ReasonWrongPassword {
			checks[e.ClientAddr] = append(checks[e.ClientAddr], e.Time)
		}
	}
	for client, ts := range checks {
		for _, start := range ts {
			n := 0
			for _, t2 := range ts {
				if !t2.Before(start) && t2.Before(start.Add(10*time.Minute)) {
					n++
				}
			}
			if n > 3 {
				t.Errorf("%s had %d password checks within ten minutes of %v", client, n, start)
			}
		}
	}
}

// TestConcurrentSprayStaysWithinBudget fires wrong guesses at one account
// from many goroutines and addresses through two replicas (two services
// over two connections to one database), on both dialects: no address gets
// more than MaxFailures checks, and beyond the account's budget only one
// check per address.
func TestConcurrentSprayStaysWithinBudget(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			url := d.URL(t)
			clock := authztest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			var replicas [2]*wiring.Services
			var db *store.DB
			for i := range replicas {
				conn, err := store.Open(t.Context(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				db = conn
				replicas[i], err = wiring.New(conn, authztest.Options(wiring.Options{MaxFailures: 3, AccountMaxFailures: 6,
					LockoutDuration: 10 * time.Minute, Now: clock.Now}))
				if err != nil {
					t.Fatal(err)
				}
			}
			svc := replicas[0]
			f := &authztest.Fixture{Svc: svc, DB: db, Clock: clock}
			u := f.CreateUser(t, "ana", authz.StatusActive)
			const clients, perClient = 5, 6
			var wg sync.WaitGroup
			for c := range clients {
				for i := range perClient {
					wg.Go(func() {
						_, err := replicas[i%2].SignIn.SignIn(context.Background(), signin.Credentials{Login: "ana", Password: "wrong password", ClientAddr: addr(c)})
						if !errors.Is(err, signin.ErrInvalidCredentials) {
							t.Errorf("SignIn: %v", err)
						}
					})
				}
			}
			wg.Wait()
			es, err := svc.Audit.ListAudit(t.Context(), audit.Filter{UserID: u.ID, Type: audit.EventSignInFailed, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			perAddr, total := map[string]int{}, 0
			for _, e := range es {
				if e.Detail == signin.ReasonWrongPassword {
					perAddr[e.ClientAddr]++
					total++
				}
			}
			for a, n := range perAddr {
				if n > 3 {
					t.Errorf("%s: %d checks, more than MaxFailures=3", a, n)
				}
			}
			if total < 6 || total > 6+clients {
				t.Errorf("%d checks in all, want between the budget 6 and 6 + one per address", total)
			}
			if len(es) != clients*perClient {
				t.Errorf("%d failures audited, want %d", len(es), clients*perClient)
			}
			if _, err := svc.SignIn.SignIn(t.Context(), signin.Credentials{Login: "ana", Password: authztest.GoodPassword, ClientAddr: "192.0.2.10"}); err != nil {
				t.Errorf("the owner from a fresh address after the spray: %v", err)
			}
		})
	}
}

func countReason(t *testing.T, f *authztest.Fixture, userID, reason string) int {
	t.Helper()
	es, err := f.Svc.Audit.ListAudit(t.Context(), audit.Filter{UserID: userID, Type: audit.EventSignInFailed, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Detail == reason {
			n++
		}
	}
	return n
}

// TestLockoutAddressForms: every spelling of a locked address is locked
// too, and hostile client strings neither escape nor break the lockout.
func TestLockoutAddressForms(t *testing.T) {
	tests := []struct {
		name   string
		lockAs string
		same   []string // spellings that share the lock
		other  []string // addresses that do not
	}{
		{"IPv4", "192.0.2.7", []string{"192.0.2.7:1234", "::ffff:192.0.2.7", "[::ffff:192.0.2.7]:80"}, []string{"192.0.2.8", "192.0.2.70"}},
		{"IPv6 /64", "2001:db8:1:2::1", []string{"2001:db8:1:2::ffff", "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::1%eth0", "2001:DB8:1:2::2"},
			[]string{"2001:db8:1:3::1", "2001:db9:1:2::1"}},
		{"empty", "", []string{""}, []string{"192.0.2.9"}},
		{"not an address", "unix:@socket", []string{"unix:@socket"}, []string{"unix:@other", "192.0.2.9"}},
		{"oversized", strings.Repeat("x", 5000), []string{strings.Repeat("x", 64) + "y"}, []string{strings.Repeat("y", 5000)}},
		{"control characters", "192.0.2.1\r\nX: y", []string{"192.0.2.1\r\nX: y"}, []string{"192.0.2.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := lockoutFixture(t)
			for range 3 {
				if _, err := f.SignIn(t, "ana", "wrong password", tt.lockAs); !errors.Is(err, signin.ErrInvalidCredentials) {
					t.Fatalf("SignIn from %q: %v", tt.lockAs, err)
				}
			}
			for _, a := range tt.same {
				if _, err := f.SignIn(t, "ana", authztest.GoodPassword, a); err != signin.ErrInvalidCredentials {
					t.Errorf("%q escapes the lock of %q: %v", a, tt.lockAs, err)
				}
				if e := f.LastAudit(t, audit.EventSignInFailed); e.Detail != signin.ReasonLockedOut {
					t.Errorf("%q: audited %q, want locked_out", a, e.Detail)
				}
			}
			for _, a := range tt.other {
				if _, err := f.SignIn(t, "ana", authztest.GoodPassword, a); err != nil {
					t.Errorf("%q is locked by %q's failures: %v", a, tt.lockAs, err)
				}
			}
		})
	}
}

// TestLockoutClockSteps: a clock stepped back keeps a lockout no longer
// than the lockout duration from the new time; a clock stepped far ahead
// ends every lockout and forgets old failures.
func TestLockoutClockSteps(t *testing.T) {
	f, _ := lockoutFixture(t)
	const a = "203.0.113.1"
	for range 3 {
		mustInvalid(t, f, "wrong password", a, signin.ReasonWrongPassword)
	}
	f.Clock.Advance(-24 * time.Hour) // NTP steps the clock back a day
	mustInvalid(t, f, authztest.GoodPassword, a, signin.ReasonLockedOut)
	f.Clock.Advance(10*time.Minute - time.Millisecond)
	mustInvalid(t, f, authztest.GoodPassword, a, signin.ReasonLockedOut)
	f.Clock.Advance(time.Millisecond)
	mustSignIn(t, f, a)

	for range 2 {
		mustInvalid(t, f, "wrong password", a, signin.ReasonWrongPassword)
	}
	f.Clock.Advance(30 * 24 * time.Hour) // and ahead a month
	// Two old failures are forgotten: three more are needed to lock again.
	for range 2 {
		mustInvalid(t, f, "wrong password", a, signin.ReasonWrongPassword)
	}
	mustSignIn(t, f, a)
}
