package tokens

import (
	"context"
	"errors"
	"time"
)

// Defaults of the periodic sweep.
const (
	// DefaultSweepInterval is how often RunSweeper sweeps when every is zero.
	DefaultSweepInterval = time.Hour
	// DefaultRetention is how long RunSweeper keeps dead tokens when
	// retain is zero: a week, so that the audit trail tells a reused link
	// from an unknown one for that long.
	DefaultRetention = 7 * 24 * time.Hour
)

// RunSweeper calls Sweep(retain) at once and then every interval until
// ctx ends, and returns ctx.Err(). The retention is measured on the
// Service's clock (Options.Now); the interval is real time. Zero values
// mean DefaultSweepInterval and DefaultRetention; a negative one is an
// error. Failures are logged and retried at the next interval, never
// returned. Every replica may run one: a sweep only deletes what no
// replica can use any more, so concurrent sweeps do no harm.
func (s *Service) RunSweeper(ctx context.Context, every, retain time.Duration) error {
	if every == 0 {
		every = DefaultSweepInterval
	}
	if retain == 0 {
		retain = DefaultRetention
	}
	if every < 0 || retain < 0 {
		return errors.New("tokens: negative sweep interval or retention")
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.Sweep(ctx, retain)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			s.log.WarnContext(ctx, "one-time token sweep failed; retried later", "err", err)
		case n > 0:
			s.log.InfoContext(ctx, "one-time tokens swept", "deleted", n, "retention", retain)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
