package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

// itemBatch is how many pending items the worker reads at once.
const itemBatch = 100

// recordTimeout bounds the writes that record an outcome after the
// worker's context ended.
const recordTimeout = 10 * time.Second

// Run works jobs until ctx ends, then returns ctx.Err(): it claims the
// oldest runnable job, runs it to its end (or its cancel), and looks for
// the next one at once; when there is none it waits for PollInterval or a
// Submit of this service. Store failures are logged and retried, never
// returned. When ctx ends mid-job the item in flight is recorded if its
// action finished (left pending if the action returned an error, as
// interrupted) and the lease is released, so another worker goes on at
// once.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTimer(s.poll)
	defer t.Stop()
	for {
		ran, err := s.Poll(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.log.ErrorContext(ctx, "jobs poll failed", "err", err)
		}
		if err == nil && ran {
			continue
		}
		t.Reset(s.poll)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-t.C:
		}
	}
}

// Poll claims one runnable job and works it until it finishes, is
// cancelled, loses its lease or ctx ends; it reports whether it claimed
// one. Run calls it in a loop; tests call it directly with an injected
// clock. Do not call it while Run runs on the same Service (use a second
// Service instead).
func (s *Service) Poll(ctx context.Context) (bool, error) {
	s.housekeep(ctx)
	if len(s.names) == 0 {
		return false, nil
	}
	token := authz.NewID()
	j, err := s.store.ClaimJob(ctx, s.names, token, s.now(), s.lease)
	if err != nil {
		return false, fmt.Errorf("jobs: claim: %w", err)
	}
	if j == nil {
		return false, nil
	}
	s.log.InfoContext(ctx, "job claimed", "job", j.ID, "action", j.Action, "pending", j.Pending(), "lease_until", j.LeaseUntil)
	return true, s.work(ctx, j, token)
}

// work runs the pending items of the claimed job j in seq order and
// finishes it; on any other way out it releases the lease.
func (s *Service) work(ctx context.Context, j *Job, token string) (err error) {
	finished := false
	defer func() {
		if finished {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		if rerr := s.store.ReleaseJob(rctx, j.ID, token); rerr != nil {
			s.log.WarnContext(ctx, "job lease not released; another worker takes the job when it ends",
				"job", j.ID, "lease_until", j.LeaseUntil, "err", rerr)
		}
	}()
	a := s.actions[j.Action]
	until := j.LeaseUntil
	cancelled := j.CancelRequested
	after := 0
	for !cancelled {
		items, err := s.store.JobItems(ctx, j.ID, ItemFilter{After: after, Status: ItemPending, Limit: itemBatch})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("jobs: job %s: read items: %w", j.ID, err)
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			if ctx.Err() != nil {
				return nil
			}
			after = it.Seq
			left := until.Sub(s.now())
			if left <= 0 {
				return fmt.Errorf("jobs: job %s: %w (the lease ended at %s)", j.ID, ErrLeaseLost, until.Format(time.RFC3339Nano))
			}
			ictx, icancel := context.WithTimeout(ctx, left)
			runErr := run(ictx, a, it.Target, j)
			timedOut := ictx.Err() != nil && ctx.Err() == nil
			icancel()
			if runErr != nil && ctx.Err() != nil {
				return nil // interrupted by the worker's end: the item stays pending
			}
			it.FinishedAt = s.now()
			it.Status = ItemOK
			if runErr != nil {
				it.Status = ItemFailed
				var expected bool
				it.Code, it.Message, expected = Outcome(runErr)
				if timedOut {
					it.Code, it.Message, expected = CodeTimeout,
						fmt.Sprintf("The action took longer than %s and was stopped.", s.lease), false
				}
				if expected {
					s.log.InfoContext(ctx, "job item failed", "job", j.ID, "action", j.Action, "seq", it.Seq,
						"target", it.Target, "code", it.Code, "err", runErr)
				} else {
					s.log.ErrorContext(ctx, "job item failed", "job", j.ID, "action", j.Action, "seq", it.Seq,
						"target", it.Target, "code", it.Code, "err", runErr)
				}
			}
			next := s.now().Add(s.lease)
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
			cancelled, err = s.store.RecordJobItem(rctx, token, it, next)
			rcancel()
			if err != nil {
				// Not recorded: the item runs again under the next lease.
				return fmt.Errorf("jobs: job %s: record item %d: %w", j.ID, it.Seq, err)
			}
			until = next
			detail := fmt.Sprintf("job=%s action=%s seq=%d outcome=%s", j.ID, j.Action, it.Seq, it.Status)
			if it.Code != "" {
				detail += " code=" + it.Code
			}
			// Audited even when ctx ended meanwhile: the item is done.
			s.audit.Record(context.WithoutCancel(ctx), audit.Event{Time: it.FinishedAt, Type: EventItem, Actor: j.Actor,
				UserID: it.Target, Detail: detail})
			if cancelled {
				break
			}
		}
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer rcancel()
	fj, err := s.store.FinishJob(rctx, j.ID, token, s.now())
	if err != nil {
		return fmt.Errorf("jobs: job %s: finish: %w", j.ID, err)
	}
	finished = true
	s.log.InfoContext(ctx, "job finished", "job", fj.ID, "action", fj.Action, "status", fj.Status,
		"succeeded", fj.Succeeded, "failed", fj.Failed, "cancelled", fj.Cancelled)
	s.finished(rctx, fj)
	return nil
}

// run calls the action, turning a panic into an error.
func run(ctx context.Context, a Action, target string, j *Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("jobs: action %s panicked: %v", j.Action, p)
		}
	}()
	return a.Run(ctx, target, j.Params, j.Actor)
}

// housekeep purges the jobs finished more than Retention ago, at most
// hourly.
func (s *Service) housekeep(ctx context.Context) {
	now := s.now()
	if s.keep < 0 || now.Sub(s.lastPurge) < time.Hour {
		return
	}
	s.lastPurge = now
	if n, err := s.store.PurgeJobs(ctx, now.Add(-s.keep)); err != nil && !errors.Is(err, context.Canceled) {
		s.log.WarnContext(ctx, "jobs purge failed", "err", err)
	} else if n > 0 {
		s.log.InfoContext(ctx, "old jobs purged", "jobs", n)
	}
}
