package recovery

import (
	"testing"
	"time"

	"github.com/crmgate/crmgate/mail"
)

// TestDummyOvershootFades: a burst of load that made sleeps overshoot by
// far more than a real issue takes must not cancel the waits of unknown
// accounts for good: requests that did not sleep let the estimate fade,
// and the wait comes back once the machine is quiet again.
func TestDummyOvershootFades(t *testing.T) {
	composer, err := mail.NewComposer(mail.ComposerOptions{PublicURL: "https://example.test", AuthPrefix: "/.auth", Site: mail.Site{Name: "Test"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{o: Options{Mail: composer, ResetTTL: time.Hour}}
	for range 64 {
		s.cost.record(2 * time.Millisecond) // a real issue takes 2ms
	}
	for range 32 {
		s.cost.slept(time.Millisecond, 11*time.Millisecond) // under load, every sleep overshot by 10ms
	}
	if s.cost.overshoot() < 9*time.Millisecond {
		t.Fatalf("overshoot after the burst = %v", s.cost.overshoot())
	}
	// Quiet again: each request finds the overshoot larger than its
	// wait, sleeps nothing, and the estimate fades.
	for range 40 {
		s.dummy(time.Now())
	}
	if over := s.cost.overshoot(); over > time.Millisecond {
		t.Fatalf("overshoot still %v after 40 requests that did not sleep: unknown accounts would answer at once", over)
	}
	start := time.Now()
	s.dummy(start)
	if d := time.Since(start); d < time.Millisecond {
		t.Fatalf("an unknown account answered in %v, a real issue takes 2ms", d)
	}
}
