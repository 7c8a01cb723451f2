package authz_test

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
	"github.com/crmgate/crmgate/authz/store"
)

// fastParams keep argon2id cheap under -race; production uses DefaultPasswordParams.
var fastParams = authz.PasswordParams{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

const goodPassword = "correct horse battery"

// clock is an injected clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	svc   *authz.Service
	db    *store.DB
	clock *clock
}

// newFixture builds a Service over a real SQLite store in a temporary directory.
func newFixture(t *testing.T, opts authz.Options) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "crmgate.db"), store.WithNow(c.Now))
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if opts.Password == (authz.PasswordParams{}) {
		opts.Password = fastParams
	}
	if opts.ClientRate == 0 {
		opts.ClientRate = rate.Inf
	}
	opts.Now = c.Now
	svc, err := authz.NewService(db, opts)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return &fixture{svc: svc, db: db, clock: c}
}

func (f *fixture) createUser(t *testing.T, name string, st authz.Status) *authz.User {
	t.Helper()
	u, err := f.svc.CreateUser(t.Context(), authz.NewUser{
		Username: name, Email: name + "@example.com", Password: goodPassword, Roles: []string{"member"}, Status: st,
	}, "cli:test")
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

func (f *fixture) signIn(t *testing.T, login, pw, addr string) (*authz.User, error) {
	t.Helper()
	return f.svc.SignIn(t.Context(), authz.Credentials{Login: login, Password: pw, ClientAddr: addr})
}

func (f *fixture) user(t *testing.T, id string) *authz.User {
	t.Helper()
	u, err := f.svc.UserByID(t.Context(), id)
	if err != nil {
		t.Fatalf("UserByID: %v", err)
	}
	return u
}

// lastAudit returns the newest audit event of type typ.
func (f *fixture) lastAudit(t *testing.T, typ string) authz.AuditEvent {
	t.Helper()
	es, err := f.svc.ListAudit(t.Context(), authz.AuditFilter{Type: typ, Limit: 1})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(es) == 0 {
		t.Fatalf("no %s audit event", typ)
	}
	return es[0]
}

func countAudit(t *testing.T, f *fixture, filter authz.AuditFilter) int {
	t.Helper()
	es, err := f.svc.ListAudit(t.Context(), filter)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return len(es)
}

func TestSignInSucceeds(t *testing.T) {
	f := newFixture(t, authz.Options{})
	u := f.createUser(t, "ana", authz.StatusActive)
	for _, login := range []string{"ana", "ANA", "Ana@Example.com"} {
		got, err := f.signIn(t, login, goodPassword, "192.0.2.7")
		if err != nil {
			t.Fatalf("SignIn(%s): %v", login, err)
		}
		if got.ID != u.ID || !got.LastSignInAt.Equal(f.clock.Now()) {
			t.Errorf("SignIn(%s) = %+v", login, got)
		}
	}
	e := f.lastAudit(t, authz.EventSignIn)
	if e.UserID != u.ID || e.ClientAddr != "192.0.2.7" || !e.Time.Equal(f.clock.Now()) {
		t.Errorf("sign-in audit event = %+v", e)
	}
	if stored := f.user(t, u.ID); !stored.LastSignInAt.Equal(f.clock.Now()) {
		t.Errorf("LastSignInAt stored = %v", stored.LastSignInAt)
	}
}

func TestSignInErrorsAreIdentical(t *testing.T) {
	f := newFixture(t, authz.Options{MaxFailures: 2})
	f.createUser(t, "ana", authz.StatusActive)
	locked := f.createUser(t, "bob", authz.StatusActive)
	for range 2 {
		f.signIn(t, "bob", "wrong password", "")
	}
	if f.user(t, locked.ID).LockoutUntil.IsZero() {
		t.Fatal("bob is not locked")
	}
	tests := []struct{ name, login, pw, reason string }{
		{"unknown user", "nobody", goodPassword, authz.ReasonUnknownUser},
		{"wrong password", "ana", "wrong password", authz.ReasonWrongPassword},
		{"locked out with the right password", "bob", goodPassword, authz.ReasonLockedOut},
		{"empty login", "", goodPassword, authz.ReasonUnknownUser},
		{"oversized password", "ana", strings.Repeat("p", authz.MaxPasswordBytes+1), authz.ReasonWrongPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.signIn(t, tt.login, tt.pw, "198.51.100.1")
			if u != nil || err != authz.ErrInvalidCredentials {
				t.Fatalf("SignIn = %v, %v; want exactly ErrInvalidCredentials", u, err)
			}
			e := f.lastAudit(t, authz.EventSignInFailed)
			if e.Detail != tt.reason || e.ClientAddr != "198.51.100.1" {
				t.Errorf("audit event = %+v, want reason %s", e, tt.reason)
			}
		})
	}
}

func TestLockoutAndUnlock(t *testing.T) {
	f := newFixture(t, authz.Options{MaxFailures: 3, LockoutDuration: 10 * time.Minute})
	u := f.createUser(t, "ana", authz.StatusActive)
	for i := range 3 {
		f.clock.Advance(time.Second)
		if _, err := f.signIn(t, "ana", "wrong password", ""); !errors.Is(err, authz.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	lockedAt := f.clock.Now()
	if got := f.user(t, u.ID); got.FailedCount != 3 || !got.LockoutUntil.Equal(lockedAt.Add(10*time.Minute)) {
		t.Fatalf("after 3 failures: failed=%d lockout=%v", got.FailedCount, got.LockoutUntil)
	}
	if e := f.lastAudit(t, authz.EventAccountLocked); e.UserID != u.ID {
		t.Errorf("account.locked audit = %+v", e)
	}

	f.clock.Advance(10*time.Minute - time.Millisecond)
	if _, err := f.signIn(t, "ana", goodPassword, ""); err != authz.ErrInvalidCredentials {
		t.Fatalf("right password while locked: %v, want ErrInvalidCredentials", err)
	}
	if e := f.lastAudit(t, authz.EventSignInFailed); e.Detail != authz.ReasonLockedOut {
		t.Errorf("locked attempt audited as %q", e.Detail)
	}

	f.clock.Advance(time.Millisecond)
	if _, err := f.signIn(t, "ana", goodPassword, ""); err != nil {
		t.Fatalf("right password after the lockout: %v", err)
	}
	if got := f.user(t, u.ID); got.FailedCount != 0 || !got.LockoutUntil.IsZero() {
		t.Errorf("after success: failed=%d lockout=%v", got.FailedCount, got.LockoutUntil)
	}
}

func TestLastAllowedAttemptMaySucceed(t *testing.T) {
	f := newFixture(t, authz.Options{MaxFailures: 3})
	u := f.createUser(t, "ana", authz.StatusActive)
	for range 2 {
		f.signIn(t, "ana", "wrong password", "")
	}
	if _, err := f.signIn(t, "ana", goodPassword, ""); err != nil {
		t.Fatalf("third attempt with the right password: %v", err)
	}
	if got := f.user(t, u.ID); got.FailedCount != 0 || !got.LockoutUntil.IsZero() {
		t.Errorf("failed=%d lockout=%v", got.FailedCount, got.LockoutUntil)
	}
}

func TestConcurrentGuessesStopAtLimit(t *testing.T) {
	f := newFixture(t, authz.Options{MaxFailures: 4})
	u := f.createUser(t, "ana", authz.StatusActive)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			_, _ = f.svc.SignIn(context.Background(), authz.Credentials{Login: "ana", Password: "wrong password"})
		})
	}
	wg.Wait()
	checked := countAudit(t, f, authz.AuditFilter{UserID: u.ID, Type: authz.EventSignInFailed, Limit: 100}) -
		countLocked(t, f, u.ID)
	if checked != 4 {
		t.Errorf("%d passwords were checked, want exactly MaxFailures=4", checked)
	}
}

func countLocked(t *testing.T, f *fixture, id string) int {
	es, err := f.svc.ListAudit(t.Context(), authz.AuditFilter{UserID: id, Type: authz.EventSignInFailed, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Detail == authz.ReasonLockedOut {
			n++
		}
	}
	return n
}

func TestStatusOnlyAfterPassword(t *testing.T) {
	f := newFixture(t, authz.Options{})
	f.createUser(t, "dis", authz.StatusDisabled)
	f.createUser(t, "pen", authz.StatusPending)
	tests := []struct {
		name, login, pw string
		want            error
		reason          string
	}{
		{"disabled wrong password", "dis", "wrong password", authz.ErrInvalidCredentials, authz.ReasonWrongPassword},
		{"disabled right password", "dis", goodPassword, authz.ErrAccountDisabled, authz.ReasonDisabled},
		{"pending wrong password", "pen", "wrong password", authz.ErrInvalidCredentials, authz.ReasonWrongPassword},
		{"pending right password", "pen", goodPassword, authz.ErrAccountPending, authz.ReasonPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.signIn(t, tt.login, tt.pw, "")
			if u != nil || err != tt.want {
				t.Fatalf("SignIn = %v, %v; want %v", u, err, tt.want)
			}
			if e := f.lastAudit(t, authz.EventSignInFailed); e.Detail != tt.reason {
				t.Errorf("audited reason %q, want %q", e.Detail, tt.reason)
			}
		})
	}
	// The right password resets the failure count even though sign-in is refused.
	dis, _ := f.db.UserByLogin(t.Context(), "dis")
	if dis.FailedCount != 0 {
		t.Errorf("disabled user's failed count = %d after the right password", dis.FailedCount)
	}
}

func TestThrottlePerClientAddress(t *testing.T) {
	f := newFixture(t, authz.Options{ClientRate: rate.Every(time.Minute), ClientBurst: 3, MaxFailures: 100})
	u := f.createUser(t, "ana", authz.StatusActive)
	const a = "203.0.113.9"
	for i := range 3 {
		if _, err := f.signIn(t, "ana", "wrong password", a); !errors.Is(err, authz.ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	failures := f.user(t, u.ID).FailedCount
	for range 2 {
		_, err := f.signIn(t, "ana", goodPassword, a)
		var te *authz.ThrottledError
		if !errors.As(err, &te) || !errors.Is(err, authz.ErrThrottled) || te.RetryAfter != time.Minute {
			t.Fatalf("over the rate: %v, want *ThrottledError{RetryAfter: 1m}", err)
		}
	}
	if got := f.user(t, u.ID).FailedCount; got != failures {
		t.Errorf("throttled attempts reached the account: failed count %d -> %d", failures, got)
	}
	if n := countAudit(t, f, authz.AuditFilter{Type: authz.EventSignInThrottled}); n != 1 {
		t.Errorf("%d throttled audit events for one run, want 1", n)
	}
	if _, err := f.signIn(t, "ana", goodPassword, "203.0.113.10"); err != nil {
		t.Errorf("another address is throttled too: %v", err)
	}
	if _, err := f.signIn(t, "ana", goodPassword, a+":51000"); !errors.Is(err, authz.ErrThrottled) {
		t.Errorf("the same address with a port escapes the throttle: %v", err)
	}

	f.clock.Advance(time.Minute)
	if _, err := f.signIn(t, "ana", goodPassword, a); err != nil {
		t.Errorf("after a minute: %v", err)
	}
	if _, err := f.signIn(t, "ana", goodPassword, a); !errors.Is(err, authz.ErrThrottled) {
		t.Errorf("second attempt after one token refilled: %v", err)
	}

	// IPv6 clients are throttled per /64.
	for i := range 3 {
		f.signIn(t, "ana", goodPassword, "2001:db8:1:2::"+string(rune('a'+i)))
	}
	if _, err := f.signIn(t, "ana", goodPassword, "2001:db8:1:2:ffff::1"); !errors.Is(err, authz.ErrThrottled) {
		t.Errorf("another address in the same /64 is not throttled: %v", err)
	}
}

func TestRehashOnSignIn(t *testing.T) {
	f := newFixture(t, authz.Options{})
	u := f.createUser(t, "ana", authz.StatusActive)
	stronger := authz.PasswordParams{Memory: 128, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	svc, err := authz.NewService(f.db, authz.Options{Password: stronger, ClientRate: rate.Inf, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.SignIn(t.Context(), authz.Credentials{Login: "ana", Password: goodPassword})
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	stored := f.user(t, u.ID)
	if p, err := authz.ParsePasswordHash(stored.PasswordHash); err != nil || p != stronger {
		t.Errorf("stored hash params = %+v, %v; want %+v", p, err, stronger)
	}
	if got.PasswordHash != stored.PasswordHash || stored.SecurityStamp != u.SecurityStamp {
		t.Error("rehash changed the stamp or returned a stale hash")
	}
	if _, err := svc.SignIn(t.Context(), authz.Credentials{Login: "ana", Password: goodPassword}); err != nil {
		t.Errorf("SignIn with the upgraded hash: %v", err)
	}
}

func TestManagementRotatesStamp(t *testing.T) {
	f := newFixture(t, authz.Options{MaxFailures: 2})
	u := f.createUser(t, "ana", authz.StatusActive)
	if e := f.lastAudit(t, authz.EventUserCreated); e.UserID != u.ID || e.Actor != "cli:test" {
		t.Errorf("user.created audit = %+v", e)
	}
	ctx := t.Context()
	tests := []struct {
		name   string
		event  string
		change func() error
		check  func(*authz.User) bool
	}{
		{"password", authz.EventPasswordSet,
			func() error { return f.svc.SetPassword(ctx, "ANA", "a new password", "admin-1") },
			func(u *authz.User) bool {
				ok, _, _ := fastParams.Verify(u.PasswordHash, "a new password")
				return ok && u.FailedCount == 0 && u.LockoutUntil.IsZero()
			}},
		{"roles", authz.EventRolesSet,
			func() error {
				return f.svc.SetRoles(ctx, "ana@example.com", []string{"admin", "member", "admin"}, "admin-1")
			},
			func(u *authz.User) bool { return strings.Join(u.Roles, ",") == "admin,member" }},
		{"status", authz.EventStatusSet,
			func() error { return f.svc.SetStatus(ctx, "ana", authz.StatusDisabled, "admin-1") },
			func(u *authz.User) bool { return u.Status == authz.StatusDisabled }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Lock the account first so the password case shows the lockout cleared.
			for range 2 {
				f.signIn(t, "ana", "wrong password", "")
			}
			before := f.user(t, u.ID)
			if err := tt.change(); err != nil {
				t.Fatalf("change: %v", err)
			}
			after := f.user(t, u.ID)
			if after.SecurityStamp == before.SecurityStamp || after.SecurityStamp == "" {
				t.Error("security stamp not rotated")
			}
			if !tt.check(after) {
				t.Errorf("change not applied: %+v", after)
			}
			if e := f.lastAudit(t, tt.event); e.UserID != u.ID || e.Actor != "admin-1" {
				t.Errorf("%s audit = %+v", tt.event, e)
			}
		})
	}
	for name, err := range map[string]error{
		"password": f.svc.SetPassword(ctx, "nobody", "a new password", "admin-1"),
		"roles":    f.svc.SetRoles(ctx, "nobody", nil, "admin-1"),
		"status":   f.svc.SetStatus(ctx, "nobody", authz.StatusActive, "admin-1"),
	} {
		if !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("Set %s of an unknown user: %v, want ErrNotFound", name, err)
		}
	}
}

func TestCreateUserValidation(t *testing.T) {
	f := newFixture(t, authz.Options{})
	f.createUser(t, "ana", authz.StatusActive)
	ok := authz.NewUser{Username: "bob", Email: "bob@example.com", Password: goodPassword}
	tests := []struct {
		name  string
		edit  func(*authz.NewUser)
		field string // "" means ErrConflict is expected
	}{
		{"empty username", func(n *authz.NewUser) { n.Username = " " }, "username"},
		{"long username", func(n *authz.NewUser) { n.Username = strings.Repeat("b", 65) }, "username"},
		{"space in username", func(n *authz.NewUser) { n.Username = "bo b" }, "username"},
		{"non-ASCII username", func(n *authz.NewUser) { n.Username = "böb" }, "username"},
		{"bad email", func(n *authz.NewUser) { n.Email = "bob" }, "email"},
		{"email with name", func(n *authz.NewUser) { n.Email = "Bob <bob@example.com>" }, "email"},
		{"long email", func(n *authz.NewUser) { n.Email = strings.Repeat("b", 250) + "@x.io" }, "email"},
		{"short password", func(n *authz.NewUser) { n.Password = "short" }, "password"},
		{"bad role", func(n *authz.NewUser) { n.Roles = []string{"a,b"} }, "roles"},
		{"empty role", func(n *authz.NewUser) { n.Roles = []string{""} }, "roles"},
		{"bad status", func(n *authz.NewUser) { n.Status = "gone" }, "status"},
		{"long name", func(n *authz.NewUser) { n.FirstName = strings.Repeat("é", 201) }, "first_name"},
		{"taken username", func(n *authz.NewUser) { n.Username = "ANA" }, ""},
		{"taken email", func(n *authz.NewUser) { n.Email = "Ana@example.com" }, ""},
		{"username is another's email", func(n *authz.NewUser) { n.Username = "ana@example.com" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := ok
			tt.edit(&n)
			_, err := f.svc.CreateUser(t.Context(), n, "cli:test")
			var ve *authz.ValidationError
			switch {
			case tt.field == "" && !errors.Is(err, authz.ErrConflict):
				t.Errorf("CreateUser error = %v, want ErrConflict", err)
			case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
				t.Errorf("CreateUser error = %#v, want a *ValidationError for %s", err, tt.field)
			}
		})
	}
	u, err := f.svc.CreateUser(t.Context(), ok, "cli:test")
	if err != nil {
		t.Fatalf("valid CreateUser: %v", err)
	}
	if u.Status != authz.StatusActive || u.SecurityStamp == "" || u.Binding.Mode != authz.BindingNone {
		t.Errorf("defaults not applied: %+v", u)
	}
	noPw, err := f.svc.CreateUser(t.Context(), authz.NewUser{Username: "carl", Email: "carl@example.com"}, "cli:test")
	if err != nil {
		t.Fatalf("CreateUser without a password: %v", err)
	}
	if _, err := f.signIn(t, "carl", "", ""); err != authz.ErrInvalidCredentials {
		t.Errorf("sign-in of a user without a password: %v", err)
	}
	if e := f.lastAudit(t, authz.EventSignInFailed); e.UserID != noPw.ID || e.Detail != authz.ReasonNoPassword {
		t.Errorf("audit = %+v", e)
	}
}

func TestAuditNeverHoldsPasswords(t *testing.T) {
	f := newFixture(t, authz.Options{})
	f.createUser(t, "ana", authz.StatusActive)
	f.signIn(t, "ana", goodPassword, "")
	f.signIn(t, "ana", "secret-guess-123", "")
	f.signIn(t, "nobody", "secret-guess-456", "")
	if err := f.svc.SetPassword(t.Context(), "ana", "secret-new-789", "admin"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Audit(t.Context(), authz.AuditEvent{Type: authz.EventSignOut, UserID: "x"}); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	es, err := f.svc.ListAudit(t.Context(), authz.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 6 {
		t.Errorf("%d audit events, want 6 (created, 3 sign-ins, password set, sign-out)", len(es))
	}
	for _, e := range es {
		s := e.Type + e.Actor + e.UserID + e.ClientAddr + e.Detail
		if strings.Contains(s, "secret") || strings.Contains(s, goodPassword) {
			t.Errorf("audit event holds a password: %+v", e)
		}
	}
	if err := f.svc.Audit(t.Context(), authz.AuditEvent{}); err == nil {
		t.Error("Audit accepted an event without a type")
	}
}

func TestNewServiceDefaults(t *testing.T) {
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := authz.NewService(nil, authz.Options{}); err == nil {
		t.Error("NewService(nil) succeeded")
	}
	if _, err := authz.NewService(db, authz.Options{Password: authz.PasswordParams{Memory: 1}}); err == nil {
		t.Error("NewService accepted unusable password params")
	}
	if _, err := authz.NewService(db, authz.Options{ClientRate: -1}); err == nil {
		t.Error("NewService accepted a negative rate")
	}
	svc, err := authz.NewService(db, authz.Options{})
	if err != nil {
		t.Fatalf("NewService with defaults: %v", err)
	}
	// The default rate allows a burst of DefaultClientBurst, then throttles.
	for i := range authz.DefaultClientBurst + 1 {
		_, err := svc.SignIn(t.Context(), authz.Credentials{Login: "nobody", Password: "x", ClientAddr: "192.0.2.1"})
		if wantThrottled := i == authz.DefaultClientBurst; errors.Is(err, authz.ErrThrottled) != wantThrottled {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
}
