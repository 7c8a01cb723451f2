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
	// Each request now finds the overshoot larger than its wait and
	// sleeps nothing; the estimate must fade rather than stay for good
	// (what a sleep measures later depends on the machine's load, so
	// only the fading is asserted).
	before, lowest := s.cost.overshoot(), s.cost.overshoot()
	for range 40 {
		s.dummy(time.Now())
		lowest = min(lowest, s.cost.overshoot())
	}
	if lowest > before*2/3 {
		t.Fatalf("overshoot never fell below %v (from %v) over 40 requests: unknown accounts would keep answering at once", lowest, before)
	}
}
