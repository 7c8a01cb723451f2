package signin_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
)

func TestSignInSucceeds(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	for _, login := range []string{"ana", "ANA", "Ana@Example.com"} {
		got, err := f.SignIn(t, login, authztest.GoodPassword, "192.0.2.7")
		if err != nil {
			t.Fatalf("SignIn(%s): %v", login, err)
		}
		if got.ID != u.ID || !got.LastSignInAt.Equal(f.Clock.Now()) {
			t.Errorf("SignIn(%s) = %+v", login, got)
		}
	}
	e := f.LastAudit(t, audit.EventSignIn)
	if e.UserID != u.ID || e.ClientAddr != "192.0.2.7" || !e.Time.Equal(f.Clock.Now()) {
		t.Errorf("sign-in audit event = %+v", e)
	}
	if stored := f.User(t, u.ID); !stored.LastSignInAt.Equal(f.Clock.Now()) {
		t.Errorf("LastSignInAt stored = %v", stored.LastSignInAt)
	}
}

func TestSignInErrorsAreIdentical(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{MaxFailures: 2})
	f.CreateUser(t, "ana", authz.StatusActive)
	locked := f.CreateUser(t, "bob", authz.StatusActive)
	// The address the attempts below come from is locked out of bob.
	for range 2 {
		f.SignIn(t, "bob", "wrong password", "198.51.100.1")
	}
	if e := f.LastAudit(t, audit.EventAddressLocked); e.UserID != locked.ID || e.ClientAddr != "198.51.100.1" {
		t.Fatalf("bob is not locked for 198.51.100.1: %+v", e)
	}
	tests := []struct{ name, login, pw, reason string }{
		{"unknown user", "nobody", authztest.GoodPassword, signin.ReasonUnknownUser},
		{"wrong password", "ana", "wrong password", signin.ReasonWrongPassword},
		{"locked out with the right password", "bob", authztest.GoodPassword, signin.ReasonLockedOut},
		{"empty login", "", authztest.GoodPassword, signin.ReasonUnknownUser},
		{"oversized password", "ana", strings.Repeat("p", password.MaxBytes+1), signin.ReasonWrongPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.SignIn(t, tt.login, tt.pw, "198.51.100.1")
			if u != nil || err != signin.ErrInvalidCredentials {
				t.Fatalf("SignIn = %v, %v; want exactly ErrInvalidCredentials", u, err)
			}
			e := f.LastAudit(t, audit.EventSignInFailed)
			if e.Detail != tt.reason || e.ClientAddr != "198.51.100.1" {
				t.Errorf("audit event = %+v, want reason %s", e, tt.reason)
			}
		})
	}
}

func TestLockoutAndUnlock(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{MaxFailures: 3, LockoutDuration: 10 * time.Minute})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	const attacker = "203.0.113.66"
	for i := range 3 {
		f.Clock.Advance(time.Second)
		if _, err := f.SignIn(t, "ana", "wrong password", attacker); !errors.Is(err, signin.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	lockedAt := f.Clock.Now()
	e := f.LastAudit(t, audit.EventAddressLocked)
	if e.UserID != u.ID || e.ClientAddr != attacker || e.Detail != lockedAt.Add(10*time.Minute).UTC().Format(time.RFC3339) {
		t.Errorf("signin.address_locked audit = %+v", e)
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventAccountLocked}); n != 0 {
		t.Errorf("%d account.locked events after one address's failures", n)
	}

	f.Clock.Advance(10*time.Minute - time.Millisecond)
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, attacker); err != signin.ErrInvalidCredentials {
		t.Fatalf("right password from the locked address: %v, want ErrInvalidCredentials", err)
	}
	if e := f.LastAudit(t, audit.EventSignInFailed); e.Detail != signin.ReasonLockedOut {
		t.Errorf("locked attempt audited as %q", e.Detail)
	}

	f.Clock.Advance(time.Millisecond)
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, attacker); err != nil {
		t.Fatalf("right password after the lockout: %v", err)
	}
	if got := f.User(t, u.ID); got.FailedCount != 0 || !got.LockoutUntil.IsZero() {
		t.Errorf("after success: failed=%d lockout=%v", got.FailedCount, got.LockoutUntil)
	}
}

func TestLastAllowedAttemptMaySucceed(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{MaxFailures: 3})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	for range 2 {
		f.SignIn(t, "ana", "wrong password", "")
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, ""); err != nil {
		t.Fatalf("third attempt with the right password: %v", err)
	}
	if got := f.User(t, u.ID); got.FailedCount != 0 || !got.LockoutUntil.IsZero() {
		t.Errorf("failed=%d lockout=%v", got.FailedCount, got.LockoutUntil)
	}
}

func TestConcurrentGuessesStopAtLimit(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{MaxFailures: 4})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			_, _ = f.Svc.SignIn.SignIn(context.Background(), signin.Credentials{Login: "ana", Password: "wrong password"})
		})
	}
	wg.Wait()
	checked := authztest.CountAudit(t, f, audit.Filter{UserID: u.ID, Type: audit.EventSignInFailed, Limit: 100}) -
		countLocked(t, f, u.ID)
	if checked != 4 {
		t.Errorf("%d passwords were checked, want exactly MaxFailures=4", checked)
	}
}

func countLocked(t *testing.T, f *authztest.Fixture, id string) int {
	es, err := f.Svc.Audit.ListAudit(t.Context(), audit.Filter{UserID: id, Type: audit.EventSignInFailed, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Detail == signin.ReasonLockedOut {
			n++
		}
	}
	return n
}

func TestStatusOnlyAfterPassword(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{ExplainRefusals: true})
	f.CreateUser(t, "dis", authz.StatusDisabled)
	f.CreateUser(t, "pen", authz.StatusPending)
	tests := []struct {
		name, login, pw string
		want            error
		reason          string
	}{
		{"disabled wrong password", "dis", "wrong password", signin.ErrInvalidCredentials, signin.ReasonWrongPassword},
		{"disabled right password", "dis", authztest.GoodPassword, signin.ErrAccountDisabled, signin.ReasonDisabled},
		{"pending wrong password", "pen", "wrong password", signin.ErrInvalidCredentials, signin.ReasonWrongPassword},
		{"pending right password", "pen", authztest.GoodPassword, signin.ErrAccountPending, signin.ReasonPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.SignIn(t, tt.login, tt.pw, "")
			if u != nil || err != tt.want {
				t.Fatalf("SignIn = %v, %v; want %v", u, err, tt.want)
			}
			if e := f.LastAudit(t, audit.EventSignInFailed); e.Detail != tt.reason {
				t.Errorf("audited reason %q, want %q", e.Detail, tt.reason)
			}
		})
	}
	// The right password resets the failure count even though sign-in is refused.
	dis, _ := f.DB.UserByLogin(t.Context(), "dis")
	if dis.FailedCount != 0 {
		t.Errorf("disabled user's failed count = %d after the right password", dis.FailedCount)
	}
}

func TestThrottlePerClientAddress(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{ClientRate: rate.Every(time.Minute), ClientBurst: 3, MaxFailures: 100})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	const a = "203.0.113.9"
	for i := range 3 {
		if _, err := f.SignIn(t, "ana", "wrong password", a); !errors.Is(err, signin.ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	failures := f.User(t, u.ID).FailedCount
	for range 2 {
		_, err := f.SignIn(t, "ana", authztest.GoodPassword, a)
		var te *signin.ThrottledError
		if !errors.As(err, &te) || !errors.Is(err, signin.ErrThrottled) || te.RetryAfter != time.Minute {
			t.Fatalf("over the rate: %v, want *ThrottledError{RetryAfter: 1m}", err)
		}
	}
	if got := f.User(t, u.ID).FailedCount; got != failures {
		t.Errorf("throttled attempts reached the account: failed count %d -> %d", failures, got)
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventSignInThrottled}); n != 1 {
		t.Errorf("%d throttled audit events for one run, want 1", n)
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, "203.0.113.10"); err != nil {
		t.Errorf("another address is throttled too: %v", err)
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, a+":51000"); !errors.Is(err, signin.ErrThrottled) {
		t.Errorf("the same address with a port escapes the throttle: %v", err)
	}

	f.Clock.Advance(time.Minute)
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, a); err != nil {
		t.Errorf("after a minute: %v", err)
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, a); !errors.Is(err, signin.ErrThrottled) {
		t.Errorf("second attempt after one token refilled: %v", err)
	}

	// IPv6 clients are throttled per /64.
	for i := range 3 {
		f.SignIn(t, "ana", authztest.GoodPassword, "2001:db8:1:2::"+string(rune('a'+i)))
	}
	if _, err := f.SignIn(t, "ana", authztest.GoodPassword, "2001:db8:1:2:ffff::1"); !errors.Is(err, signin.ErrThrottled) {
		t.Errorf("another address in the same /64 is not throttled: %v", err)
	}
}

func TestRehashOnSignIn(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	stronger := password.Params{Memory: 128, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	svc, err := wiring.New(f.DB, authztest.Options(wiring.Options{Password: stronger, ClientRate: rate.Inf, Now: f.Clock.Now}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.SignIn.SignIn(t.Context(), signin.Credentials{Login: "ana", Password: authztest.GoodPassword})
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	stored := f.User(t, u.ID)
	if p, err := password.ParseHash(stored.PasswordHash); err != nil || p != stronger {
		t.Errorf("stored hash params = %+v, %v; want %+v", p, err, stronger)
	}
	if got.PasswordHash != stored.PasswordHash || stored.SecurityStamp != u.SecurityStamp {
		t.Error("rehash changed the stamp or returned a stale hash")
	}
	if _, err := svc.SignIn.SignIn(t.Context(), signin.Credentials{Login: "ana", Password: authztest.GoodPassword}); err != nil {
		t.Errorf("SignIn with the upgraded hash: %v", err)
	}
}

func TestManagementRotatesStamp(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{MaxFailures: 2})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	if e := f.LastAudit(t, audit.EventUserCreated); e.UserID != u.ID || e.Actor != "cli:test" {
		t.Errorf("user.created audit = %+v", e)
	}
	ctx := t.Context()
	tests := []struct {
		name   string
		event  string
		change func() error
		check  func(*authz.User) bool
	}{
		{"password", audit.EventPasswordSet,
			func() error { return f.Svc.Accounts.SetPassword(ctx, "ANA", "a new password", "admin-1") },
			func(u *authz.User) bool {
				ok, _, _ := authztest.FastParams.Verify(u.PasswordHash, "a new password")
				return ok && u.FailedCount == 0 && u.LockoutUntil.IsZero()
			}},
		{"roles", audit.EventRolesSet,
			func() error {
				return f.Svc.Accounts.SetRoles(ctx, "ana@example.com", []string{"admin", "member", "admin"}, "admin-1")
			},
			func(u *authz.User) bool { return strings.Join(u.Roles, ",") == "admin,member" }},
		{"status", audit.EventStatusSet,
			func() error { return f.Svc.Accounts.SetStatus(ctx, "ana", authz.StatusDisabled, "admin-1") },
			func(u *authz.User) bool { return u.Status == authz.StatusDisabled }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Lock the account first so the password case shows the lockout cleared.
			for range 2 {
				f.SignIn(t, "ana", "wrong password", "")
			}
			before := f.User(t, u.ID)
			if err := tt.change(); err != nil {
				t.Fatalf("change: %v", err)
			}
			after := f.User(t, u.ID)
			if after.SecurityStamp == before.SecurityStamp || after.SecurityStamp == "" {
				t.Error("security stamp not rotated")
			}
			if !tt.check(after) {
				t.Errorf("change not applied: %+v", after)
			}
			if e := f.LastAudit(t, tt.event); e.UserID != u.ID || e.Actor != "admin-1" {
				t.Errorf("%s audit = %+v", tt.event, e)
			}
		})
	}
	for name, err := range map[string]error{
		"password": f.Svc.Accounts.SetPassword(ctx, "nobody", "a new password", "admin-1"),
		"roles":    f.Svc.Accounts.SetRoles(ctx, "nobody", nil, "admin-1"),
		"status":   f.Svc.Accounts.SetStatus(ctx, "nobody", authz.StatusActive, "admin-1"),
	} {
		if !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("Set %s of an unknown user: %v, want ErrNotFound", name, err)
		}
	}
}

func TestCreateUserValidation(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	f.CreateUser(t, "ana", authz.StatusActive)
	ok := accounts.NewUser{Username: "bob", Email: "bob@example.com", Password: authztest.GoodPassword}
	tests := []struct {
		name  string
		edit  func(*accounts.NewUser)
		field string // "" means ErrConflict is expected
	}{
		{"empty username", func(n *accounts.NewUser) { n.Username = " " }, "username"},
		{"long username", func(n *accounts.NewUser) { n.Username = strings.Repeat("b", 65) }, "username"},
		{"space in username", func(n *accounts.NewUser) { n.Username = "bo b" }, "username"},
		{"non-ASCII username", func(n *accounts.NewUser) { n.Username = "böb" }, "username"},
		{"bad email", func(n *accounts.NewUser) { n.Email = "bob" }, "email"},
		{"email with name", func(n *accounts.NewUser) { n.Email = "Bob <bob@example.com>" }, "email"},
		{"long email", func(n *accounts.NewUser) { n.Email = strings.Repeat("b", 250) + "@x.io" }, "email"},
		{"short password", func(n *accounts.NewUser) { n.Password = "short" }, "password"},
		{"bad role", func(n *accounts.NewUser) { n.Roles = []string{"a,b"} }, "roles"},
		{"empty role", func(n *accounts.NewUser) { n.Roles = []string{""} }, "roles"},
		{"bad status", func(n *accounts.NewUser) { n.Status = "gone" }, "status"},
		{"long name", func(n *accounts.NewUser) { n.FirstName = strings.Repeat("é", 201) }, "first_name"},
		{"taken username", func(n *accounts.NewUser) { n.Username = "ANA" }, ""},
		{"taken email", func(n *accounts.NewUser) { n.Email = "Ana@example.com" }, ""},
		{"username is another's email", func(n *accounts.NewUser) { n.Username = "ana@example.com" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := ok
			tt.edit(&n)
			_, err := f.Svc.Accounts.CreateUser(t.Context(), n, "cli:test")
			var ve *authz.ValidationError
			switch {
			case tt.field == "" && !errors.Is(err, authz.ErrConflict):
				t.Errorf("CreateUser error = %v, want ErrConflict", err)
			case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
				t.Errorf("CreateUser error = %#v, want a *ValidationError for %s", err, tt.field)
			}
		})
	}
	u, err := f.Svc.Accounts.CreateUser(t.Context(), ok, "cli:test")
	if err != nil {
		t.Fatalf("valid CreateUser: %v", err)
	}
	if u.Status != authz.StatusActive || u.SecurityStamp == "" || u.Binding.Mode != authz.BindingNone {
		t.Errorf("defaults not applied: %+v", u)
	}
	noPw, err := f.Svc.Accounts.CreateUser(t.Context(), accounts.NewUser{Username: "carl", Email: "carl@example.com"}, "cli:test")
	if err != nil {
		t.Fatalf("CreateUser without a password: %v", err)
	}
	if _, err := f.SignIn(t, "carl", "", ""); err != signin.ErrInvalidCredentials {
		t.Errorf("sign-in of a user without a password: %v", err)
	}
	if e := f.LastAudit(t, audit.EventSignInFailed); e.UserID != noPw.ID || e.Detail != signin.ReasonNoPassword {
		t.Errorf("audit = %+v", e)
	}
}

func TestAuditNeverHoldsPasswords(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	f.CreateUser(t, "ana", authz.StatusActive)
	f.SignIn(t, "ana", authztest.GoodPassword, "")
	f.SignIn(t, "ana", "secret-guess-123", "")
	f.SignIn(t, "nobody", "secret-guess-456", "")
	if err := f.Svc.Accounts.SetPassword(t.Context(), "ana", "secret-new-789", "admin"); err != nil {
		t.Fatal(err)
	}
	if err := f.Svc.Audit.Audit(t.Context(), audit.Event{Type: audit.EventSignOut, UserID: "x"}); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	es, err := f.Svc.Audit.ListAudit(t.Context(), audit.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 6 {
		t.Errorf("%d audit events, want 6 (created, 3 sign-ins, password set, sign-out)", len(es))
	}
	for _, e := range es {
		s := e.Type + e.Actor + e.UserID + e.ClientAddr + e.Detail
		if strings.Contains(s, "secret") || strings.Contains(s, authztest.GoodPassword) {
			t.Errorf("audit event holds a password: %+v", e)
		}
	}
	if err := f.Svc.Audit.Audit(t.Context(), audit.Event{}); err == nil {
		t.Error("Audit accepted an event without a type")
	}
}

func TestNewServiceDefaults(t *testing.T) {
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := wiring.New(nil, wiring.Options{}); err == nil {
		t.Error("NewService(nil) succeeded")
	}
	if _, err := wiring.New(db, authztest.Options(wiring.Options{Password: password.Params{Memory: 1}})); err == nil {
		t.Error("NewService accepted unusable password params")
	}
	if _, err := wiring.New(db, authztest.Options(wiring.Options{ClientRate: -1})); err == nil {
		t.Error("NewService accepted a negative rate")
	}
	// The configuration sets the defaults, once: the service refuses to
	// guess them and names every missing value.
	err = func() error { _, err := wiring.New(db, wiring.Options{Password: authztest.FastParams}); return err }()
	for _, want := range []string{"MaxFailures", "AccountMaxFailures", "LockoutDuration", "ClientRate", "ClientBurst"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewService without %s: %v", want, err)
		}
	}
	// A rate of 10 a minute with a burst of 10 (the configuration's
	// defaults) allows a burst of 10, then throttles.
	const burst = 10
	svc, err := wiring.New(db, wiring.Options{Password: authztest.FastParams, MaxFailures: 5, AccountMaxFailures: 20, LockoutDuration: time.Minute,
		ClientRate: rate.Every(6 * time.Second), ClientBurst: burst})
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	for i := range burst + 1 {
		_, err := svc.SignIn.SignIn(t.Context(), signin.Credentials{Login: "nobody", Password: "x", ClientAddr: "192.0.2.1"})
		if wantThrottled := i == burst; errors.Is(err, signin.ErrThrottled) != wantThrottled {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
}
