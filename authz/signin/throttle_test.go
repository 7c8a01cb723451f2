package signin_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/wiring"
)

// replicas builds n identity layers, each over its own store handle on one
// SQLite file, as n gateway replicas share one database, with one clock.
// It returns them and the file's path.
func replicas(t *testing.T, n int, o wiring.Options) ([]*authztest.Fixture, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crmgate.db")
	c := authztest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	o = authztest.Options(o)
	o.Now = c.Now
	var fs []*authztest.Fixture
	for range n {
		db, err := store.Open(t.Context(), "sqlite:"+path, store.WithNow(c.Now))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		svc, err := wiring.New(db, o)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, &authztest.Fixture{Svc: svc, DB: db, Clock: c})
	}
	return fs, path
}

// TestThrottleAcrossReplicas: the per-address throttle reached through one
// replica holds on the other, and its first refusal is audited once.
func TestThrottleAcrossReplicas(t *testing.T) {
	rs, _ := replicas(t, 2, wiring.Options{ClientRate: rate.Every(time.Minute), ClientBurst: 3, MaxFailures: 100})
	a, b := rs[0], rs[1]
	a.CreateUser(t, "ana", authz.StatusActive)
	const addr = "203.0.113.20"
	for i := range 3 {
		if _, err := rs[i%2].SignIn(t, "ana", "wrong password", addr); !errors.Is(err, signin.ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	for i, r := range []*authztest.Fixture{b, a, b} {
		var te *signin.ThrottledError
		if _, err := r.SignIn(t, "ana", authztest.GoodPassword, addr); !errors.As(err, &te) || te.RetryAfter != time.Minute {
			t.Fatalf("attempt %d past the shared burst: %v, want *ThrottledError{1m}", i+4, err)
		}
	}
	if n := authztest.CountAudit(t, a, audit.Filter{Type: audit.EventSignInThrottled}); n != 1 {
		t.Errorf("%d throttled audit events across replicas, want 1", n)
	}
	a.Clock.Advance(time.Minute)
	if _, err := b.SignIn(t, "ana", authztest.GoodPassword, addr); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
	if _, err := a.SignIn(t, "ana", authztest.GoodPassword, addr); !errors.Is(err, signin.ErrThrottled) {
		t.Fatalf("the other replica gave a second event for one refill: %v", err)
	}
}

// TestThrottleStoreFailureFailsClosed: when the throttle's store fails,
// sign-in and re-authentication are refused with an error matching
// throttle.ErrUnavailable before any password is checked or counted.
func TestThrottleStoreFailureFailsClosed(t *testing.T) {
	rs, path := replicas(t, 1, wiring.Options{ClientRate: rate.Every(time.Minute), ClientBurst: 3})
	f := rs[0]
	u := f.CreateUser(t, "ana", authz.StatusActive)
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(t.Context(), `DROP TABLE throttles`); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{authztest.GoodPassword, "wrong password"} {
		got, err := f.SignIn(t, "ana", pw, "192.0.2.30")
		if got != nil || !errors.Is(err, throttle.ErrUnavailable) || errors.Is(err, signin.ErrInvalidCredentials) {
			t.Fatalf("SignIn(%q) on a failed throttle = %v, %v; want refused with throttle.ErrUnavailable", pw, got, err)
		}
	}
	if err := f.Svc.SignIn.VerifyPassword(t.Context(), u.ID, authztest.GoodPassword, "192.0.2.30"); !errors.Is(err, throttle.ErrUnavailable) {
		t.Fatalf("VerifyPassword on a failed throttle = %v", err)
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventSignInFailed}); n != 0 {
		t.Errorf("%d sign-in failures audited: a password was checked", n)
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventSignIn}); n != 0 {
		t.Errorf("%d sign-ins audited: a sign-in got through", n)
	}
	if got := f.User(t, u.ID); got.FailedCount != 0 || !got.LastSignInAt.IsZero() {
		t.Errorf("the account was touched: failed=%d last sign-in=%v", got.FailedCount, got.LastSignInAt)
	}
}
