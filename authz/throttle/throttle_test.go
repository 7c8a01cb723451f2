package throttle_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz/throttle"
)

func TestAllow(t *testing.T) {
	l, err := throttle.New(rate.Every(time.Minute), 2)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := range 2 {
		if ok, _, _ := l.Allow("a", now); !ok {
			t.Fatalf("event %d refused", i)
		}
	}
	ok, retry, first := l.Allow("a", now)
	if ok || !first || retry <= 0 || retry > time.Minute {
		t.Fatalf("third: ok=%v retry=%v first=%v", ok, retry, first)
	}
	if ok, _, first := l.Allow("a", now); ok || first {
		t.Fatalf("fourth: ok=%v first=%v, want refused, not first", ok, first)
	}
	if ok, _, _ := l.Allow("b", now); !ok {
		t.Fatal("another key refused")
	}
	if ok, _, _ := l.Allow("a", now.Add(time.Minute)); !ok {
		t.Fatal("refilled bucket refused")
	}
	if _, err := throttle.New(0, 1); err == nil {
		t.Error("zero rate accepted")
	}
	if _, err := throttle.New(1, 0); err == nil {
		t.Error("zero burst accepted")
	}
	inf, _ := throttle.New(rate.Inf, 1)
	for range 100 {
		if ok, _, _ := inf.Allow("a", now); !ok {
			t.Fatal("rate.Inf refused")
		}
	}
}

// Concurrent events on one key never get more than the burst through.
func TestAllowConcurrent(t *testing.T) {
	l, _ := throttle.New(rate.Every(time.Hour), 5)
	now := time.Now()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if ok, _, _ := l.Allow("k", now); ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 5 {
		t.Fatalf("allowed %d, want 5", n)
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

// TestBlocked shows that Blocked takes nothing and reports what Allow
// would refuse.
func TestBlocked(t *testing.T) {
	l, err := throttle.New(throttle.PerHour(60), 2)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 5 {
		if b, _ := l.Blocked("k", now); b {
			t.Fatal("blocked before any event")
		}
	}
	l.Allow("k", now)
	if b, _ := l.Blocked("k", now); b {
		t.Fatal("blocked with one event left")
	}
	l.Allow("k", now)
	b, d := l.Blocked("k", now)
	if !b || d <= 0 || d > time.Minute {
		t.Fatalf("Blocked = %v, %v; want blocked for up to a minute", b, d)
	}
	if b, _ := l.Blocked("k", now.Add(time.Minute)); b {
		t.Fatal("still blocked after the refill")
	}
}
