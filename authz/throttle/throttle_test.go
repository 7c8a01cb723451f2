package throttle_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/throttle"
)

// The semantics of the buckets on both dialects, and two replicas on one
// database, are tested with the store (authz/store/throttles_test.go);
// these tests cover the Limiter's own rules over a real SQLite store.

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// openStore opens a store in a new SQLite file and returns it with the
// file's path.
func openStore(t *testing.T) (*store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crmgate.db")
	db, err := store.Open(t.Context(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// dropThrottles makes the store fail every throttle call, as a broken
// database would, by dropping its table behind its back.
func dropThrottles(t *testing.T, path string) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(t.Context(), `DROP TABLE throttles`); err != nil {
		t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	db, _ := openStore(t)
	for _, c := range []struct {
		what  string
		store throttle.Store
		name  throttle.Name
		r     rate.Limit
		burst int
		want  string
	}{
		{"nil store", nil, throttle.SignInClient, 1, 1, "nil store"},
		{"unknown name", db, "signin.other", 1, 1, "unknown limiter name"},
		{"empty name", db, "", 1, 1, "unknown limiter name"},
		{"zero rate", db, throttle.SignInClient, 0, 1, "rate must be positive"},
		{"negative rate", db, throttle.SignInClient, -1, 1, "rate must be positive"},
		{"zero burst", db, throttle.SignInClient, 1, 0, "burst at least 1"},
		{"faster than a microsecond", db, throttle.SignInClient, 2e6, 1, "out of range"},
		{"refill over a year", db, throttle.SignInClient, throttle.PerHour(1), 9000, "out of range"},
	} {
		if _, err := throttle.New(c.store, c.name, c.r, c.burst); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v, want an error with %q", c.what, err, c.want)
		}
	}
	for _, n := range throttle.Names() {
		l, err := throttle.New(db, n, throttle.PerHour(20), 5)
		if err != nil || l.Name() != n {
			t.Errorf("New(%s) = %v, %v", n, l, err)
		}
	}
	seen := map[throttle.Name]bool{}
	for _, n := range throttle.Names() {
		if seen[n] {
			t.Errorf("limiter name %s listed twice", n)
		}
		seen[n] = true
	}
}

// TestStoreFailure: a store that cannot answer refuses every event, with
// an error matching ErrUnavailable, and Blocked says blocked.
func TestStoreFailure(t *testing.T) {
	db, path := openStore(t)
	l, err := throttle.New(db, throttle.RecoveryClient, throttle.PerHour(20), 5)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, _, err := l.Allow(t.Context(), "192.0.2.1", t0); !ok || err != nil {
		t.Fatalf("before the failure: ok=%v err=%v", ok, err)
	}
	dropThrottles(t, path)
	ok, _, first, err := l.Allow(t.Context(), "192.0.2.1", t0)
	if ok || first || !errors.Is(err, throttle.ErrUnavailable) || !strings.Contains(err.Error(), string(throttle.RecoveryClient)) {
		t.Fatalf("Allow on a failed store: ok=%v first=%v err=%v; want refused with ErrUnavailable naming the limiter", ok, first, err)
	}
	if blocked, _, err := l.Blocked(t.Context(), "192.0.2.1", t0); !blocked || !errors.Is(err, throttle.ErrUnavailable) {
		t.Fatalf("Blocked on a failed store: %v, %v", blocked, err)
	}
	// A cancelled request is refused the same way.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ok, _, _, err := l.Allow(ctx, "192.0.2.2", t0); ok || !errors.Is(err, throttle.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with a cancelled context: ok=%v err=%v", ok, err)
	}
}

// TestInf: rate.Inf allows everything and never asks the store (here one
// that would fail).
func TestInf(t *testing.T) {
	db, path := openStore(t)
	inf, err := throttle.New(db, throttle.SignInClient, rate.Inf, 1)
	if err != nil {
		t.Fatal(err)
	}
	dropThrottles(t, path)
	for range 100 {
		if ok, _, _, err := inf.Allow(t.Context(), "a", t0); !ok || err != nil {
			t.Fatalf("rate.Inf: ok=%v err=%v", ok, err)
		}
	}
	if b, _, err := inf.Blocked(t.Context(), "a", t0); b || err != nil {
		t.Fatalf("rate.Inf Blocked: %v, %v", b, err)
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                  "192.0.2.1",
		"192.0.2.1:5555":             "192.0.2.1",
		"::ffff:192.0.2.1":           "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":       "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"fe80::1%eth0":               "fe80::/64",
		"":                           "",
		"not-an-address-but-very-long-" + string(make([]byte, 80)): ("not-an-address-but-very-long-" + string(make([]byte, 80)))[:64],
	} {
		if got := throttle.ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHashKey(t *testing.T) {
	// SHA-256("abc"), FIPS 180-2 appendix B.1.
	if got := throttle.HashKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashKey(abc) = %s", got)
	}
	if len(throttle.HashKey(strings.Repeat("x", 10000))) != 64 {
		t.Fatal("a long key's hash is not 64 characters")
	}
}

// TestRunSweeper: the sweeper sweeps at once, on its clock, and stops
// with its context; a negative interval is refused.
func TestRunSweeper(t *testing.T) {
	db, _ := openStore(t)
	l, err := throttle.New(db, throttle.RegistrationEmail, rate.Every(time.Minute), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := l.Allow(t.Context(), "gone", t0); err != nil { // TAT t0+1m
		t.Fatal(err)
	}
	if _, _, _, err := l.Allow(t.Context(), "kept", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- throttle.RunSweeper(ctx, db, time.Hour, func() time.Time { return t0.Add(30 * time.Minute) }, nil)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := db.PeekThrottle(t.Context(), throttle.RegistrationEmail, throttle.HashKey("gone")); err == nil && b.TAT.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not sweep at once")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunSweeper = %v, want context.Canceled", err)
	}
	if b, err := db.PeekThrottle(t.Context(), throttle.RegistrationEmail, throttle.HashKey("kept")); err != nil || b.TAT.IsZero() {
		t.Fatalf("the live bucket was swept: %+v, %v", b, err)
	}
	if err := throttle.RunSweeper(t.Context(), db, -time.Second, nil, nil); err == nil {
		t.Fatal("negative interval accepted")
	}
}
