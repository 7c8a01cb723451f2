package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/throttle"
)

func TestThrottlesSQLite(t *testing.T)   { runThrottleSuite(t, sqliteURL) }
func TestThrottlesPostgres(t *testing.T) { runThrottleSuite(t, postgresURL) }

// runThrottleSuite is the throttle part of the store suite, on one dialect.
func runThrottleSuite(t *testing.T, newURL opener) {
	open := dbOpener(newURL)
	t.Run("BurstRefillRetry", func(t *testing.T) { testThrottleBurstRefill(t, open(t)) })
	t.Run("FirstRefusal", func(t *testing.T) { testThrottleFirstRefusal(t, open(t)) })
	t.Run("NamesAndKeys", func(t *testing.T) { testThrottleNamesAndKeys(t, open(t)) })
	t.Run("Blocked", func(t *testing.T) { testThrottleBlocked(t, open(t)) })
	t.Run("Sweep", func(t *testing.T) { testThrottleSweep(t, open(t)) })
	t.Run("HashedKeys", func(t *testing.T) { testThrottleHashedKeys(t, open(t)) })
	t.Run("InputErrors", func(t *testing.T) { testThrottleInputErrors(t, open(t)) })
	t.Run("TwoReplicas", func(t *testing.T) { testThrottleTwoReplicas(t, newURL(t)) })
}

var throttleT0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

func newLimiter(t testing.TB, s throttle.Store, name throttle.Name, r rate.Limit, burst int) *throttle.Limiter {
	t.Helper()
	l, err := throttle.New(s, name, r, burst)
	if err != nil {
		t.Fatalf("throttle.New(%s): %v", name, err)
	}
	return l
}

// allow is Limiter.Allow that fails the test on a store error.
func allow(t *testing.T, l *throttle.Limiter, key string, now time.Time) (bool, time.Duration, bool) {
	t.Helper()
	ok, retry, first, err := l.Allow(t.Context(), key, now)
	if err != nil {
		t.Fatalf("Allow(%s, %s): %v", l.Name(), key, err)
	}
	return ok, retry, first
}

// testThrottleBurstRefill: burst events at once, then one per interval
// as the injected clock moves; a refused event takes nothing and says how
// long to wait, to the microsecond.
func testThrottleBurstRefill(t *testing.T, db *DB) {
	l := newLimiter(t, db, throttle.SignInClient, rate.Every(time.Minute), 3)
	now := throttleT0
	for i := range 3 {
		if ok, retry, _ := allow(t, l, "a", now); !ok || retry != 0 {
			t.Fatalf("event %d of the burst: ok=%v retry=%v", i+1, ok, retry)
		}
	}
	ok, retry, first := allow(t, l, "a", now)
	if ok || retry != time.Minute || !first {
		t.Fatalf("past the burst: ok=%v retry=%v first=%v, want refused for 1m, first", ok, retry, first)
	}
	// Refusals take nothing: 20 s later the wait is 40 s, not more.
	if ok, retry, _ := allow(t, l, "a", now.Add(20*time.Second)); ok || retry != 40*time.Second {
		t.Fatalf("20s later: ok=%v retry=%v, want refused for 40s", ok, retry)
	}
	if ok, retry, _ := allow(t, l, "a", now.Add(time.Minute-time.Microsecond)); ok || retry != time.Microsecond {
		t.Fatalf("a microsecond early: ok=%v retry=%v", ok, retry)
	}
	// One interval refills one event, not more.
	now = now.Add(time.Minute)
	if ok, _, _ := allow(t, l, "a", now); !ok {
		t.Fatal("refilled event refused")
	}
	if ok, retry, _ := allow(t, l, "a", now); ok || retry != time.Minute {
		t.Fatalf("second event after one interval: ok=%v retry=%v", ok, retry)
	}
	// A long idle time refills the whole burst and no more.
	now = now.Add(24 * time.Hour)
	for i := range 3 {
		if ok, _, _ := allow(t, l, "a", now); !ok {
			t.Fatalf("event %d after a day refused", i+1)
		}
	}
	if ok, _, _ := allow(t, l, "a", now); ok {
		t.Fatal("a day's idle time gave more than the burst")
	}
	// A clock an hour behind (another replica's, or stepped back) gains
	// no event, and finds the bucket at worst empty: one interval to wait,
	// not the hour.
	if ok, retry, _ := allow(t, l, "a", now.Add(-time.Hour)); ok || retry != time.Minute {
		t.Fatalf("clock an hour behind: ok=%v retry=%v, want refused for 1m", ok, retry)
	}
	if ok, _, _ := allow(t, l, "a", now.Add(-time.Hour+time.Minute)); !ok {
		t.Fatal("clock an hour behind: refused after one interval")
	}
	if ok, _, _ := allow(t, l, "a", now.Add(-time.Hour+time.Minute)); ok {
		t.Fatal("clock an hour behind: two events for one interval")
	}
	// PerHour with a burst of one: exactly one event per interval.
	h := newLimiter(t, db, throttle.RecoveryAccount, throttle.PerHour(3), 1)
	if ok, _, _ := allow(t, h, "u", throttleT0); !ok {
		t.Fatal("first hourly event refused")
	}
	if ok, retry, _ := allow(t, h, "u", throttleT0); ok || retry != 20*time.Minute {
		t.Fatalf("second hourly event: ok=%v retry=%v, want refused for 20m", ok, retry)
	}
}

// testThrottleFirstRefusal: the first refusal of a run is flagged once,
// through any Limiter of the name, and again after an allowed event.
func testThrottleFirstRefusal(t *testing.T, db *DB) {
	a := newLimiter(t, db, throttle.RegistrationClient, rate.Every(time.Minute), 1)
	b := newLimiter(t, db, throttle.RegistrationClient, rate.Every(time.Minute), 1)
	if ok, _, _ := allow(t, a, "k", throttleT0); !ok {
		t.Fatal("first event refused")
	}
	firsts := 0
	for i := range 10 {
		l := a
		if i%2 == 1 {
			l = b
		}
		ok, _, first := allow(t, l, "k", throttleT0.Add(time.Duration(i)*time.Second))
		if ok {
			t.Fatalf("refusal %d allowed", i+1)
		}
		if first {
			firsts++
			if i != 0 {
				t.Errorf("refusal %d flagged first", i+1)
			}
		}
	}
	if firsts != 1 {
		t.Fatalf("%d first refusals in one run, want 1", firsts)
	}
	later := throttleT0.Add(time.Minute)
	if ok, _, _ := allow(t, b, "k", later); !ok {
		t.Fatal("refilled event refused")
	}
	if ok, _, first := allow(t, a, "k", later); ok || !first {
		t.Fatalf("refusal of a new run: ok=%v first=%v, want the first refusal", ok, first)
	}
}

// testThrottleNamesAndKeys: one limiter's key neither spends nor sees
// another key's events, nor another limiter's of the same key.
func testThrottleNamesAndKeys(t *testing.T, db *DB) {
	names := []throttle.Name{throttle.RecoveryClient, throttle.RecoveryLink}
	for _, n := range names {
		l := newLimiter(t, db, n, rate.Every(time.Hour), 2)
		for _, key := range []string{"192.0.2.1", "192.0.2.2"} {
			for i := range 2 {
				if ok, _, _ := allow(t, l, key, throttleT0); !ok {
					t.Fatalf("%s %s: event %d refused", n, key, i+1)
				}
			}
			if ok, _, _ := allow(t, l, key, throttleT0); ok {
				t.Fatalf("%s %s: third event allowed", n, key)
			}
		}
	}
	var rows int
	if err := db.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM throttles`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 4 {
		t.Fatalf("%d rows for 2 names × 2 keys", rows)
	}
}

// testThrottleBlocked: Blocked tells what Allow would refuse and takes nothing.
func testThrottleBlocked(t *testing.T, db *DB) {
	l := newLimiter(t, db, throttle.InvitationGuesses, throttle.PerHour(60), 2)
	blocked := func(now time.Time) (bool, time.Duration) {
		t.Helper()
		b, d, err := l.Blocked(t.Context(), "k", now)
		if err != nil {
			t.Fatalf("Blocked: %v", err)
		}
		return b, d
	}
	for range 5 {
		if b, _ := blocked(throttleT0); b {
			t.Fatal("blocked before any event")
		}
	}
	allow(t, l, "k", throttleT0)
	if b, _ := blocked(throttleT0); b {
		t.Fatal("blocked with one event left")
	}
	allow(t, l, "k", throttleT0)
	if b, d := blocked(throttleT0); !b || d != time.Minute {
		t.Fatalf("Blocked = %v, %v; want blocked for a minute", b, d)
	}
	if b, _ := blocked(throttleT0.Add(time.Minute)); b {
		t.Fatal("still blocked after the refill")
	}
}

// testThrottleSweep: the sweep deletes the buckets that are past their
// TAT by the margin, and keeps the others, which still count.
func testThrottleSweep(t *testing.T, db *DB) {
	l := newLimiter(t, db, throttle.RegistrationEmail, rate.Every(time.Minute), 1)
	allow(t, l, "old", throttleT0)                     // TAT t0+1m
	allow(t, l, "new", throttleT0.Add(10*time.Minute)) // TAT t0+11m
	n, err := throttle.Sweep(t.Context(), db, throttleT0.Add(time.Minute+throttle.SweepMargin))
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want the old bucket only", n, err)
	}
	if ok, _, _ := allow(t, l, "new", throttleT0.Add(10*time.Minute)); ok {
		t.Fatal("the kept bucket lost its event")
	}
	if b, err := db.PeekThrottle(t.Context(), throttle.RegistrationEmail, throttle.HashKey("old")); err != nil || !b.TAT.IsZero() {
		t.Fatalf("swept bucket = %+v, %v", b, err)
	}
	if n, err := db.SweepThrottles(t.Context(), throttleT0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("SweepThrottles = %d, %v", n, err)
	}
}

// testThrottleHashedKeys: the table holds the key's SHA-256, not the key.
func testThrottleHashedKeys(t *testing.T, db *DB) {
	l := newLimiter(t, db, throttle.RegistrationEmail, throttle.PerHour(5), 3)
	allow(t, l, "ana@example.com", throttleT0)
	var limiter, key string
	if err := db.db.QueryRowContext(t.Context(), `SELECT limiter, key_hash FROM throttles`).Scan(&limiter, &key); err != nil {
		t.Fatal(err)
	}
	if limiter != string(throttle.RegistrationEmail) || key != throttle.HashKey("ana@example.com") || len(key) != 64 {
		t.Fatalf("row = %q, %q", limiter, key)
	}
}

func testThrottleInputErrors(t *testing.T, db *DB) {
	ctx := t.Context()
	for _, c := range []struct {
		name      throttle.Name
		key       string
		iv, toler time.Duration
	}{
		{"", throttle.HashKey("k"), time.Second, 0},
		{throttle.SignInClient, "k", time.Second, 0},
		{throttle.SignInClient, throttle.HashKey("k"), 0, 0},
		{throttle.SignInClient, throttle.HashKey("k"), time.Second, -1},
	} {
		if _, err := db.TakeThrottle(ctx, c.name, c.key, throttleT0, c.iv, c.toler); err == nil {
			t.Errorf("TakeThrottle(%q, %q, %v, %v) accepted", c.name, c.key, c.iv, c.toler)
		}
	}
}

// testThrottleTwoReplicas: two stores opened on one database, as two
// replicas are, hammering one key from many goroutines let exactly the
// burst through between them, and the first refusal is flagged once.
func testThrottleTwoReplicas(t *testing.T, dbURL string) {
	const burst, workers, each = 7, 16, 4
	var replicas [2]*throttle.Limiter
	for i := range replicas {
		db, err := Open(t.Context(), dbURL)
		if err != nil {
			t.Fatalf("Open replica %d: %v", i, err)
		}
		t.Cleanup(func() { db.Close() })
		replicas[i] = newLimiter(t, db, throttle.SignInClient, throttle.PerHour(1), burst)
	}
	var allowed, firsts atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for range each {
				ok, _, first, err := replicas[w%2].Allow(t.Context(), "198.51.100.9", throttleT0)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if ok {
					allowed.Add(1)
				}
				if first {
					firsts.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != burst {
		t.Fatalf("%d events allowed across two replicas, want exactly %d", n, burst)
	}
	if n := firsts.Load(); n != 1 {
		t.Fatalf("%d first refusals across two replicas, want 1", n)
	}
}

func BenchmarkThrottleAllowSQLite(b *testing.B)   { benchThrottleAllow(b, storetest.SQLiteURL) }
func BenchmarkThrottleAllowPostgres(b *testing.B) { benchThrottleAllow(b, storetest.PostgresURL) }

// benchThrottleAllow measures one Allow, a single upsert, on keys that
// spread over many rows as client addresses do.
func benchThrottleAllow(b *testing.B, newURL func(testing.TB) string) {
	db, err := Open(b.Context(), newURL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	l := newLimiter(b, db, throttle.SignInClient, rate.Every(time.Second), 10)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = throttle.ClientKey(fmt.Sprintf("198.51.%d.%d", i/256, i%256))
	}
	now := throttleT0
	for i := 0; b.Loop(); i++ {
		if _, _, _, err := l.Allow(b.Context(), keys[i%len(keys)], now.Add(time.Duration(i)*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
	}
}
