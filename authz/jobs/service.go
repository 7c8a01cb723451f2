package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

// The audit event types of jobs. Detail names the job and action, then
// the outcome, as space-separated key=value pairs.
const (
	EventSubmitted = "job.submitted" // Actor submitted; Detail: job, action, items
	EventItem      = "job.item"      // Actor is the job's; UserID the target; Detail: job, action, seq, outcome and the failure code
	EventCancelled = "job.cancelled" // Actor asked for the cancel; Detail: job, action
	EventFinished  = "job.finished"  // Actor is the job's; Detail: job, action, status and counts
)

// Auditor receives the audit events; *audit.Log satisfies it.
type Auditor interface {
	Record(ctx context.Context, e audit.Event)
}

// Defaults for Options.
const (
	DefaultLease        = 2 * time.Minute
	DefaultPollInterval = 5 * time.Second
	DefaultRetention    = 90 * 24 * time.Hour
)

// Options configure a Service.
type Options struct {
	// Store holds jobs and items; required.
	Store Store
	// Audit receives job.* events; required.
	Audit Auditor
	// Actions are the bulk actions by name (at most MaxActionNameLen
	// letters, digits, '.', '_' or '-', e.g. "users.disable"). Submit
	// refuses other names, and this service's worker claims only jobs of
	// these actions. An empty map makes a service that lists and cancels
	// but runs nothing.
	Actions map[string]Action
	// Lease is how long a claimed job belongs to this worker without news
	// from it (see the package doc); each recorded item renews it. It
	// bounds the delay a crashed worker adds, and the time one item may
	// take. Zero or less means DefaultLease.
	Lease time.Duration
	// PollInterval is how often the worker looks for jobs when no Submit of
	// this service woke it (jobs submitted through another replica wait
	// for it). Zero or less means DefaultPollInterval.
	PollInterval time.Duration
	// Retention is how long finished jobs are kept before the worker
	// purges them (their audit rows stay); zero means DefaultRetention, a
	// negative value keeps them forever.
	Retention time.Duration
	// Now is the clock; nil means time.Now. Leases are compared across
	// replicas, so their clocks must roughly agree.
	Now func() time.Time
	// Logger receives worker problems and the internal errors behind
	// CodeInternal failures; nil discards them.
	Logger *slog.Logger
}

// Service submits, lists and cancels jobs, and runs them (Run). It is safe
// for concurrent use; build it with New.
type Service struct {
	store     Store
	audit     Auditor
	actions   map[string]Action
	names     []string
	lease     time.Duration
	poll      time.Duration
	keep      time.Duration
	now       func() time.Time
	log       *slog.Logger
	wake      chan struct{}
	lastPurge time.Time
}

// New returns a Service. It fails for a missing Store or Audit, or an
// action with a bad name or nil.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Audit == nil {
		return nil, errors.New("jobs: the service needs a store and an audit trail")
	}
	s := &Service{store: opts.Store, audit: opts.Audit, actions: maps.Clone(opts.Actions),
		lease: opts.Lease, poll: opts.PollInterval, keep: opts.Retention, now: opts.Now, log: opts.Logger,
		wake: make(chan struct{}, 1)}
	for name, a := range s.actions {
		if !validActionName(name) {
			return nil, fmt.Errorf("jobs: action name %q: use 1 to %d letters, digits, '.', '_' or '-'", name, MaxActionNameLen)
		}
		if a == nil {
			return nil, fmt.Errorf("jobs: action %q is nil", name)
		}
		if f, ok := a.(Funcs); ok && f.Do == nil {
			return nil, fmt.Errorf("jobs: action %q has no Do function", name)
		}
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	if s.lease <= 0 {
		s.lease = DefaultLease
	}
	if s.poll <= 0 {
		s.poll = DefaultPollInterval
	}
	if s.keep == 0 {
		s.keep = DefaultRetention
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func validActionName(name string) bool {
	if name == "" || len(name) > MaxActionNameLen {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Actions returns the names of the registered actions, sorted.
func (s *Service) Actions() []string { return slices.Clone(s.names) }

// Submit validates and stores a job of action over targets (user ids;
// repeated ids are kept once, in their first place) with params (nil or
// null means "{}") as actor, audits it (job.submitted) and wakes this service's worker.
// Every refusal is a *authz.ValidationError: an unknown action, no targets
// or more than MaxItems, a target that is empty, longer than
// audit.MaxFilterLen or not printable, a label over MaxLabelLen characters
// or not printable, params over MaxParamsBytes or not a JSON object or
// refused by the action's Validate, an empty actor.
func (s *Service) Submit(ctx context.Context, action, label string, targets []string, params json.RawMessage, actor string) (*Job, error) {
	a := s.actions[action]
	if a == nil {
		return nil, &authz.ValidationError{Field: "action", Message: fmt.Sprintf("There is no bulk action %q.", action)}
	}
	if actor == "" || len(actor) > audit.MaxFilterLen || !authz.Printable(actor) {
		return nil, &authz.ValidationError{Field: "actor", Message: fmt.Sprintf("The actor must be 1 to %d printable characters.", audit.MaxFilterLen)}
	}
	if utf8.RuneCountInString(label) > MaxLabelLen || !authz.Printable(label) {
		return nil, &authz.ValidationError{Field: "label", Message: fmt.Sprintf("The label must be at most %d printable characters.", MaxLabelLen)}
	}
	if len(params) == 0 || strings.TrimSpace(string(params)) == "null" {
		params = json.RawMessage("{}")
	}
	if len(params) > MaxParamsBytes {
		return nil, &authz.ValidationError{Field: "params", Message: fmt.Sprintf("The parameters must be at most %d bytes of JSON.", MaxParamsBytes)}
	}
	if t := strings.TrimSpace(string(params)); !json.Valid(params) || !strings.HasPrefix(t, "{") {
		return nil, &authz.ValidationError{Field: "params", Message: "The parameters must be a JSON object."}
	}
	if err := a.Validate(params); err != nil {
		var ve *authz.ValidationError
		if errors.As(err, &ve) {
			return nil, err
		}
		return nil, &authz.ValidationError{Field: "params", Message: "The parameters were refused: " + err.Error()}
	}
	ts, err := checkTargets(targets)
	if err != nil {
		return nil, err
	}
	j := &Job{ID: authz.NewID(), Action: action, Label: label, Params: params, Actor: actor,
		Status: StatusQueued, Total: len(ts), CreatedAt: s.now()}
	if err := s.store.CreateJob(ctx, j, ts); err != nil {
		return nil, fmt.Errorf("jobs: submit: %w", err)
	}
	s.audit.Record(ctx, audit.Event{Time: j.CreatedAt, Type: EventSubmitted, Actor: actor,
		Detail: fmt.Sprintf("job=%s action=%s items=%d", j.ID, j.Action, j.Total)})
	s.Notify()
	return j, nil
}

// checkTargets returns targets without repeats, or the refusal.
func checkTargets(targets []string) ([]string, error) {
	if len(targets) == 0 {
		return nil, &authz.ValidationError{Field: "targets", Message: "Select at least one user."}
	}
	seen := make(map[string]bool, min(len(targets), MaxItems+1))
	out := make([]string, 0, min(len(targets), MaxItems))
	for _, t := range targets {
		if t == "" || len(t) > audit.MaxFilterLen || !authz.Printable(t) {
			return nil, &authz.ValidationError{Field: "targets",
				Message: fmt.Sprintf("Each user id must be 1 to %d printable characters.", audit.MaxFilterLen)}
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
		if len(out) > MaxItems {
			return nil, &authz.ValidationError{Field: "targets",
				Message: fmt.Sprintf("A bulk action takes at most %d users; narrow the selection.", MaxItems)}
		}
	}
	return out, nil
}

// Get returns the job with its current progress, or authz.ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (*Job, error) {
	return s.store.Job(ctx, id)
}

// List returns jobs newest first, filtered by f. A bad filter gives a
// *authz.ValidationError.
func (s *Service) List(ctx context.Context, f Filter) ([]Job, error) {
	switch {
	case f.Status != "" && !f.Status.Valid():
		return nil, &authz.ValidationError{Field: "status", Message: "Unknown job status."}
	case len(f.Before) > audit.MaxFilterLen || !authz.Printable(f.Before):
		return nil, &authz.ValidationError{Field: "before", Message: "The before cursor must be a job id."}
	case f.Limit < 0 || f.Limit > authz.MaxListLimit:
		return nil, &authz.ValidationError{Field: "limit", Message: fmt.Sprintf("The limit must be from 1 to %d.", authz.MaxListLimit)}
	}
	return s.store.ListJobs(ctx, f)
}

// Items returns the items of job id in seq order, filtered by f (for
// example only the failed ones, with their reasons); authz.ErrNotFound
// for an unknown job, a *authz.ValidationError for a bad filter.
func (s *Service) Items(ctx context.Context, id string, f ItemFilter) ([]Item, error) {
	switch {
	case f.Status != "" && !f.Status.Valid():
		return nil, &authz.ValidationError{Field: "status", Message: "Unknown item status."}
	case f.After < 0:
		return nil, &authz.ValidationError{Field: "after", Message: "The after cursor must be an item number."}
	case f.Limit < 0 || f.Limit > authz.MaxListLimit:
		return nil, &authz.ValidationError{Field: "limit", Message: fmt.Sprintf("The limit must be from 1 to %d.", authz.MaxListLimit)}
	}
	return s.store.JobItems(ctx, id, f)
}

// Cancel asks for job id to stop, as actor, and audits it (job.cancelled).
// A queued job is cancelled at once (and job.finished audited); a running
// one stops before its next item, on whichever replica runs it, and its
// items not run yet become cancelled. Asking again is not an error.
// Cancelling a finished job gives ErrFinished (wrapped), an unknown one
// authz.ErrNotFound.
func (s *Service) Cancel(ctx context.Context, id, actor string) (*Job, error) {
	j, err := s.store.CancelJob(ctx, id, actor, s.now())
	if err != nil {
		return nil, err
	}
	s.audit.Record(ctx, audit.Event{Type: EventCancelled, Actor: actor, Detail: fmt.Sprintf("job=%s action=%s", j.ID, j.Action)})
	if j.Status.Finished() {
		s.finished(ctx, j)
	}
	return j, nil
}

// finished audits and logs the end of j.
func (s *Service) finished(ctx context.Context, j *Job) {
	detail := fmt.Sprintf("job=%s action=%s status=%s succeeded=%d failed=%d cancelled=%d",
		j.ID, j.Action, j.Status, j.Succeeded, j.Failed, j.Cancelled)
	s.audit.Record(ctx, audit.Event{Time: j.FinishedAt, Type: EventFinished, Actor: j.Actor, Detail: detail})
}

// Notify wakes this service's worker to look for jobs now. It never
// blocks. Submit calls it.
func (s *Service) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
