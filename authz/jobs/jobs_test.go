package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
)

const (
	action = "users.test"
	admin  = "admin-1"
)

var t0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

// eachDialect runs fn as a subtest on SQLite and on PostgreSQL.
func eachDialect(t *testing.T, fn func(t *testing.T, newURL storetest.Opener)) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) { fn(t, d.URL) })
	}
}

// openDB opens a store on dbURL, closed when the test ends. Each call is
// a replica of its own (its own connection pool).
func openDB(t *testing.T, dbURL string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// syncBuffer is a bytes.Buffer safe for the loggers of several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// recorder is the test action: it counts the calls per target and runs fn.
type recorder struct {
	mu    sync.Mutex
	calls map[string]int
	order []string
	fn    func(ctx context.Context, target string, n int) error // n: the call's number for target, from 1
}

func (r *recorder) Run(ctx context.Context, target string, params json.RawMessage, actor string) error {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[target]++
	n := r.calls[target]
	r.order = append(r.order, target)
	fn := r.fn
	r.mu.Unlock()
	if actor != admin {
		return fmt.Errorf("actor %q, want %q", actor, admin)
	}
	if fn == nil {
		return nil
	}
	return fn(ctx, target, n)
}

// Validate wants {"mode": "a"} or {"mode": "b"}.
func (r *recorder) Validate(params json.RawMessage) error {
	var p struct {
		Mode string `json:"mode"`
	}
	if err := json.Unmarshal(params, &p); err != nil || (p.Mode != "a" && p.Mode != "b") {
		return &authz.ValidationError{Field: "mode", Message: `The mode must be "a" or "b".`}
	}
	return nil
}

func (r *recorder) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.calls {
		out[k] = v
	}
	return out
}

var params = json.RawMessage(`{"mode":"a"}`)

// service builds a Service over db with the test action, the clock now
// (nil: time.Now), a short poll and the given lease.
func service(t *testing.T, db *store.DB, act jobs.Action, now func() time.Time, lease time.Duration, logs *syncBuffer) *jobs.Service {
	t.Helper()
	var w interface{ Write([]byte) (int, error) } = &syncBuffer{}
	if logs != nil {
		w = logs
	}
	logger := slog.New(slog.NewTextHandler(w, nil))
	s, err := jobs.New(jobs.Options{Store: db, Audit: audit.New(db, now, logger), Actions: map[string]jobs.Action{action: act},
		Lease: lease, PollInterval: 5 * time.Millisecond, Now: now, Logger: logger})
	if err != nil {
		t.Fatalf("jobs.New: %v", err)
	}
	return s
}

func userIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%d", i+1)
	}
	return out
}

func auditOf(t *testing.T, db *store.DB, typ string) []audit.Event {
	t.Helper()
	es, err := db.ListAudit(t.Context(), audit.Filter{Type: typ, Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	slices.Reverse(es) // oldest first
	return es
}

func mustGet(t *testing.T, s *jobs.Service, id string) *jobs.Job {
	t.Helper()
	j, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return j
}

// TestSubmitRunProgress: a job runs its items in order, its progress is
// stored item by item, each failure keeps a code and a message safe to
// show (an unexpected error's text only in the log, with the job id), and
// each item is audited.
func TestSubmitRunProgress(t *testing.T) {
	eachDialect(t, func(t *testing.T, newURL storetest.Opener) {
		db := openDB(t, newURL(t))
		clock := authztest.NewClock(t0)
		logs := &syncBuffer{}
		rec := &recorder{}
		s := service(t, db, rec, clock.Now, time.Minute, logs)
		var j *jobs.Job
		rec.fn = func(ctx context.Context, target string, _ int) error {
			clock.Advance(time.Second)
			switch target {
			case "u2":
				got, err := s.Get(ctx, j.ID)
				if err != nil || got.Status != jobs.StatusRunning || got.Succeeded != 1 || got.Pending() != 5 {
					t.Errorf("progress while u2 runs = %+v, %v; want running, 1 done, 5 pending", got, err)
				}
			case "u3":
				return jobs.Fail("not_bound", "The user is not bound to a contact.", errors.New("binding mode none"))
			case "u4":
				return &authz.ValidationError{Field: "email", Message: "The email address is not valid."}
			case "u5":
				return fmt.Errorf("accounts: set status: %w", authz.ErrNotFound)
			case "u6":
				return errors.New("dataverse answered 500 with internal-detail-42")
			}
			return nil
		}
		var err error
		j, err = s.Submit(t.Context(), action, "Test six users", []string{"u1", "u2", "u3", "u1", "u4", "u5", "u6"}, params, admin)
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		if j.Status != jobs.StatusQueued || j.Total != 6 || j.Label != "Test six users" || j.Actor != admin ||
			string(j.Params) != `{"mode":"a"}` || len(j.ID) != 32 {
			t.Errorf("submitted = %+v (the repeated u1 counted once)", j)
		}
		if ran, err := s.Poll(t.Context()); !ran || err != nil {
			t.Fatalf("Poll = %v, %v", ran, err)
		}
		if ran, err := s.Poll(t.Context()); ran || err != nil {
			t.Fatalf("second Poll = %v, %v; want nothing to do", ran, err)
		}
		got := mustGet(t, s, j.ID)
		if got.Status != jobs.StatusFinishedWithFailures || got.Succeeded != 2 || got.Failed != 4 || got.Cancelled != 0 ||
			!got.StartedAt.Equal(t0) || !got.FinishedAt.Equal(t0.Add(6*time.Second)) || !got.LeaseUntil.IsZero() {
			t.Errorf("finished job = %+v", got)
		}
		if want := userIDs(6); !slices.Equal(rec.order, want) {
			t.Errorf("calls = %v, want %v once each, in order", rec.order, want)
		}
		failed, err := s.Items(t.Context(), j.ID, jobs.ItemFilter{Status: jobs.ItemFailed})
		if err != nil {
			t.Fatalf("Items: %v", err)
		}
		type outcome struct{ target, code, message string }
		var outs []outcome
		for _, it := range failed {
			outs = append(outs, outcome{it.Target, it.Code, it.Message})
			if it.FinishedAt.IsZero() || it.JobID != j.ID {
				t.Errorf("item %+v", it)
			}
		}
		want := []outcome{
			{"u3", "not_bound", "The user is not bound to a contact."},
			{"u4", jobs.CodeInvalid, "The email address is not valid."},
			{"u5", jobs.CodeNotFound, "The user no longer exists."},
			{"u6", jobs.CodeInternal, "The action failed unexpectedly; the server log has the details."},
		}
		if !slices.Equal(outs, want) {
			t.Errorf("failed items = %+v\nwant %+v", outs, want)
		}
		if page, err := s.Items(t.Context(), j.ID, jobs.ItemFilter{After: 1, Limit: 2}); err != nil || len(page) != 2 ||
			page[0].Target != "u2" || page[0].Status != jobs.ItemOK || page[1].Target != "u3" {
			t.Errorf("items after 1 = %+v, %v", page, err)
		}
		// The unexpected error is in the log with the job id, at ERROR.
		var line string
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "internal-detail-42") {
				line = l
			}
		}
		if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "job="+j.ID) || !strings.Contains(line, "target=u6") {
			t.Errorf("log line of u6's failure = %q", line)
		}

		sub := auditOf(t, db, jobs.EventSubmitted)
		if len(sub) != 1 || sub[0].Actor != admin || sub[0].Detail != fmt.Sprintf("job=%s action=%s items=6", j.ID, action) {
			t.Errorf("job.submitted = %+v", sub)
		}
		items := auditOf(t, db, jobs.EventItem)
		var users []string
		for _, e := range items {
			users = append(users, e.UserID)
			if e.Actor != admin || !strings.HasPrefix(e.Detail, "job="+j.ID+" action="+action+" seq=") {
				t.Errorf("job.item = %+v", e)
			}
		}
		if !slices.Equal(users, userIDs(6)) {
			t.Errorf("job.item users = %v", users)
		}
		if len(items) == 6 && (items[2].Detail != fmt.Sprintf("job=%s action=%s seq=3 outcome=failed code=not_bound", j.ID, action) ||
			items[0].Detail != fmt.Sprintf("job=%s action=%s seq=1 outcome=ok", j.ID, action)) {
			t.Errorf("job.item details: %q, %q", items[0].Detail, items[2].Detail)
		}
		for _, e := range items {
			if strings.Contains(e.Detail, "internal-detail") {
				t.Errorf("an error's text reached the audit trail: %+v", e)
			}
		}
		fin := auditOf(t, db, jobs.EventFinished)
		if len(fin) != 1 || fin[0].Actor != admin ||
			fin[0].Detail != fmt.Sprintf("job=%s action=%s status=finished_with_failures succeeded=2 failed=4 cancelled=0", j.ID, action) {
			t.Errorf("job.finished = %+v", fin)
		}
		list, err := s.List(t.Context(), jobs.Filter{})
		if err != nil || len(list) != 1 || list[0].ID != j.ID || list[0].Failed != 4 {
			t.Errorf("List = %+v, %v", list, err)
		}
	})
}

// TestSubmitRefusals: every bad submission is a *authz.ValidationError
// naming its field, and stores nothing; exactly MaxItems users are taken.
func TestSubmitRefusals(t *testing.T) {
	db := openDB(t, storetest.SQLiteURL(t))
	s := service(t, db, &recorder{}, nil, time.Minute, nil)
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("user-%d", i)
		}
		return out
	}
	cases := []struct {
		name, action, label string
		targets             []string
		params              json.RawMessage
		actor, field        string
	}{
		{"unknown action", "users.nope", "", []string{"u1"}, params, admin, "action"},
		{"bad params", action, "", []string{"u1"}, json.RawMessage(`{"mode":"c"}`), admin, "mode"},
		{"no params", action, "", []string{"u1"}, nil, admin, "mode"},
		{"params not JSON", action, "", []string{"u1"}, json.RawMessage(`{"mode":`), admin, "params"},
		{"params not an object", action, "", []string{"u1"}, json.RawMessage(`["a"]`), admin, "params"},
		{"params too large", action, "", []string{"u1"},
			json.RawMessage(`{"mode":"a","pad":"` + strings.Repeat("x", jobs.MaxParamsBytes) + `"}`), admin, "params"},
		{"no targets", action, "", nil, params, admin, "targets"},
		{"empty target", action, "", []string{"u1", ""}, params, admin, "targets"},
		{"control character", action, "", []string{"u1\n"}, params, admin, "targets"},
		{"long target", action, "", []string{strings.Repeat("u", audit.MaxFilterLen+1)}, params, admin, "targets"},
		{"too many", action, "", many(jobs.MaxItems + 1), params, admin, "targets"},
		{"long label", action, strings.Repeat("é", jobs.MaxLabelLen+1), []string{"u1"}, params, admin, "label"},
		{"label control", action, "a\tb", []string{"u1"}, params, admin, "label"},
		{"no actor", action, "", []string{"u1"}, params, "", "actor"},
	}
	for _, c := range cases {
		_, err := s.Submit(t.Context(), c.action, c.label, c.targets, c.params, c.actor)
		var ve *authz.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%s: %v, want a validation error of %s", c.name, err, c.field)
		}
	}
	if list, err := s.List(t.Context(), jobs.Filter{}); err != nil || len(list) != 0 {
		t.Fatalf("stored after refusals: %+v, %v", list, err)
	}
	// MaxItems users, one of them twice, are taken.
	j, err := s.Submit(t.Context(), action, strings.Repeat("é", jobs.MaxLabelLen), append(many(jobs.MaxItems), "user-7"), params, admin)
	if err != nil || j.Total != jobs.MaxItems {
		t.Fatalf("Submit of MaxItems = %+v, %v", j, err)
	}
	items, err := s.Items(t.Context(), j.ID, jobs.ItemFilter{After: jobs.MaxItems - 1})
	if err != nil || len(items) != 1 || items[0].Target != fmt.Sprintf("user-%d", jobs.MaxItems-1) {
		t.Errorf("last item = %+v, %v", items, err)
	}
	for _, f := range []jobs.Filter{{Status: "bogus"}, {Limit: -1}, {Limit: authz.MaxListLimit + 1}} {
		if _, err := s.List(t.Context(), f); err == nil {
			t.Errorf("List(%+v) accepted", f)
		}
	}
	for _, f := range []jobs.ItemFilter{{Status: "bogus"}, {After: -1}, {Limit: authz.MaxListLimit + 1}} {
		if _, err := s.Items(t.Context(), j.ID, f); err == nil {
			t.Errorf("Items(%+v) accepted", f)
		}
	}
	if _, err := s.Items(t.Context(), "nope", jobs.ItemFilter{}); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("Items(unknown) = %v", err)
	}
	if _, err := s.Get(t.Context(), "nope"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("Get(unknown) = %v", err)
	}
}

// TestNew refuses what it cannot run with.
func TestNew(t *testing.T) {
	db := openDB(t, storetest.SQLiteURL(t))
	log := audit.New(db, nil, nil)
	for name, o := range map[string]jobs.Options{
		"no store":     {Audit: log},
		"no audit":     {Store: db},
		"bad name":     {Store: db, Audit: log, Actions: map[string]jobs.Action{"users disable": &recorder{}}},
		"nil action":   {Store: db, Audit: log, Actions: map[string]jobs.Action{"a": nil}},
		"nil Do":       {Store: db, Audit: log, Actions: map[string]jobs.Action{"a": jobs.Funcs{}}},
		"long name":    {Store: db, Audit: log, Actions: map[string]jobs.Action{strings.Repeat("a", jobs.MaxActionNameLen+1): &recorder{}}},
		"empty name":   {Store: db, Audit: log, Actions: map[string]jobs.Action{"": &recorder{}}},
		"unicode name": {Store: db, Audit: log, Actions: map[string]jobs.Action{"usérs": &recorder{}}},
	} {
		if _, err := jobs.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, err := jobs.New(jobs.Options{Store: db, Audit: log, Actions: map[string]jobs.Action{
		"users.b": jobs.Funcs{Do: func(context.Context, string, json.RawMessage, string) error { return nil }}, "users.a": &recorder{}}})
	if err != nil || !slices.Equal(s.Actions(), []string{"users.a", "users.b"}) {
		t.Fatalf("New = %v, %v", s, err)
	}
	// Funcs without Check takes no parameters.
	if _, err := s.Submit(t.Context(), "users.b", "", []string{"u1"}, json.RawMessage(`{"x":1}`), admin); err == nil {
		t.Error("params accepted by an action without any")
	}
	if _, err := s.Submit(t.Context(), "users.b", "", []string{"u1"}, nil, admin); err != nil {
		t.Errorf("no params: %v", err)
	}
}

// TestCancel: a queued job is cancelled at once; a running one, cancelled
// through another replica, stops before its next item; a finished one
// refuses.
func TestCancel(t *testing.T) {
	eachDialect(t, func(t *testing.T, newURL storetest.Opener) {
		dbURL := newURL(t)
		db := openDB(t, dbURL)
		rec := &recorder{}
		s := service(t, db, rec, nil, time.Minute, nil)
		other := service(t, openDB(t, dbURL), &recorder{}, nil, time.Minute, nil)
		ctx := t.Context()

		q, err := s.Submit(ctx, action, "", userIDs(3), params, admin)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Cancel(ctx, q.ID, "admin-2")
		if err != nil || c.Status != jobs.StatusCancelled || c.Cancelled != 3 || c.CancelledBy != "admin-2" || c.FinishedAt.IsZero() {
			t.Fatalf("Cancel(queued) = %+v, %v", c, err)
		}
		if _, err := s.Cancel(ctx, q.ID, "admin-2"); !errors.Is(err, jobs.ErrFinished) {
			t.Errorf("Cancel(finished) = %v, want ErrFinished", err)
		}
		if _, err := s.Cancel(ctx, "nope", "admin-2"); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("Cancel(unknown) = %v, want ErrNotFound", err)
		}
		if ran, err := s.Poll(ctx); ran || err != nil {
			t.Errorf("Poll after cancel = %v, %v; want nothing to run", ran, err)
		}

		r, err := s.Submit(ctx, action, "", userIDs(5), params, admin)
		if err != nil {
			t.Fatal(err)
		}
		rec.fn = func(ctx context.Context, target string, _ int) error {
			if target == "u2" {
				if c, err := other.Cancel(ctx, r.ID, "admin-3"); err != nil || c.Status != jobs.StatusRunning || !c.CancelRequested {
					t.Errorf("Cancel(running) = %+v, %v", c, err)
				}
			}
			return nil
		}
		if ran, err := s.Poll(ctx); !ran || err != nil {
			t.Fatalf("Poll = %v, %v", ran, err)
		}
		got := mustGet(t, other, r.ID)
		if got.Status != jobs.StatusCancelled || got.Succeeded != 2 || got.Cancelled != 3 || got.CancelledBy != "admin-3" {
			t.Errorf("cancelled running job = %+v", got)
		}
		if !slices.Equal(rec.order, []string{"u1", "u2"}) {
			t.Errorf("calls = %v, want u1 and u2 only", rec.order)
		}
		if items, _ := s.Items(ctx, r.ID, jobs.ItemFilter{Status: jobs.ItemCancelled}); len(items) != 3 || items[0].Target != "u3" {
			t.Errorf("cancelled items = %+v", items)
		}
		var cancels []string
		for _, e := range auditOf(t, db, jobs.EventCancelled) {
			cancels = append(cancels, e.Actor+" "+e.Detail)
		}
		want := []string{"admin-2 job=" + q.ID + " action=" + action, "admin-3 job=" + r.ID + " action=" + action}
		if !slices.Equal(cancels, want) {
			t.Errorf("job.cancelled = %q, want %q", cancels, want)
		}
		var fins []string
		for _, e := range auditOf(t, db, jobs.EventFinished) {
			fins = append(fins, e.Detail)
		}
		if len(fins) != 2 || !strings.Contains(fins[0], "status=cancelled succeeded=0 failed=0 cancelled=3") ||
			!strings.Contains(fins[1], "status=cancelled succeeded=2 failed=0 cancelled=3") {
			t.Errorf("job.finished = %q", fins)
		}
	})
}

// TestWorkerStopsAndAnotherFinishes: a worker whose context ends mid-job
// (a shutdown) records the item whose action finished, or leaves it
// pending when the action was interrupted, and releases the job; a new
// Service on a new connection (the restarted process) finishes it at once,
// without running a recorded item again.
func TestWorkerStopsAndAnotherFinishes(t *testing.T) {
	eachDialect(t, func(t *testing.T, newURL storetest.Opener) {
		for _, interrupted := range []bool{false, true} {
			t.Run(fmt.Sprintf("interrupted=%v", interrupted), func(t *testing.T) {
				dbURL := newURL(t)
				clock := authztest.NewClock(t0)
				rec := &recorder{}
				first := service(t, openDB(t, dbURL), rec, clock.Now, time.Minute, nil)
				ctx, stop := context.WithCancel(t.Context())
				rec.fn = func(ictx context.Context, target string, n int) error {
					if target == "u3" && n == 1 {
						stop()
						if interrupted {
							<-ictx.Done()
							return ictx.Err()
						}
					}
					return nil
				}
				j, err := first.Submit(ctx, action, "", userIDs(5), params, admin)
				if err != nil {
					t.Fatal(err)
				}
				if err := first.Run(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v, want context.Canceled", err)
				}
				done := 3
				if interrupted {
					done = 2
				}
				got := mustGet(t, first, j.ID)
				if got.Status != jobs.StatusRunning || got.Succeeded != done || !got.LeaseUntil.IsZero() {
					t.Errorf("after the stop: %+v; want running, %d done, released", got, done)
				}
				second := service(t, openDB(t, dbURL), rec, clock.Now, time.Minute, nil)
				if ran, err := second.Poll(t.Context()); !ran || err != nil {
					t.Fatalf("Poll of the new service = %v, %v", ran, err)
				}
				if got := mustGet(t, second, j.ID); got.Status != jobs.StatusSucceeded || got.Succeeded != 5 {
					t.Errorf("finished = %+v", got)
				}
				want := map[string]int{"u1": 1, "u2": 1, "u3": 1, "u4": 1, "u5": 1}
				if interrupted {
					want["u3"] = 2 // interrupted, not recorded: run again
				}
				if got := rec.counts(); !mapsEqual(got, want) {
					t.Errorf("calls = %v, want %v", got, want)
				}
			})
		}
	})
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestDeadWorkerLeaseTakenOver: a worker that never comes back (stuck in
// an item, never releasing its lease) keeps its job until the lease has
// passed; then another replica takes the job over and finishes it, running
// again only the item in flight; the stuck worker, when it wakes, can
// record nothing.
func TestDeadWorkerLeaseTakenOver(t *testing.T) {
	eachDialect(t, func(t *testing.T, newURL storetest.Opener) {
		dbURL := newURL(t)
		db := openDB(t, dbURL)
		clock := authztest.NewClock(t0)
		rec := &recorder{}
		stuck, wake := make(chan struct{}), make(chan struct{})
		rec.fn = func(_ context.Context, target string, n int) error {
			if target == "u3" && n == 1 {
				close(stuck)
				<-wake // ignores its context: as good as dead
			}
			return nil
		}
		const lease = time.Minute
		dead := service(t, db, rec, clock.Now, lease, nil)
		j, err := dead.Submit(t.Context(), action, "", userIDs(5), params, admin)
		if err != nil {
			t.Fatal(err)
		}
		deadDone := make(chan error, 1)
		go func() {
			_, err := dead.Poll(t.Context())
			deadDone <- err
		}()
		<-stuck
		next := service(t, openDB(t, dbURL), rec, clock.Now, lease, nil)
		clock.Advance(lease - time.Millisecond)
		if ran, err := next.Poll(t.Context()); ran || err != nil {
			t.Fatalf("Poll within the lease = %v, %v; want nothing", ran, err)
		}
		clock.Advance(2 * time.Millisecond)
		if ran, err := next.Poll(t.Context()); !ran || err != nil {
			t.Fatalf("Poll after the lease = %v, %v", ran, err)
		}
		if got := mustGet(t, next, j.ID); got.Status != jobs.StatusSucceeded || got.Succeeded != 5 {
			t.Errorf("finished by the next worker: %+v", got)
		}
		close(wake)
		if err := <-deadDone; !errors.Is(err, jobs.ErrLeaseLost) {
			t.Errorf("the stuck worker's Poll = %v, want ErrLeaseLost", err)
		}
		if got := mustGet(t, next, j.ID); got.Succeeded != 5 || got.Failed != 0 || got.Status != jobs.StatusSucceeded {
			t.Errorf("after the stuck worker woke: %+v", got)
		}
		want := map[string]int{"u1": 1, "u2": 1, "u3": 2, "u4": 1, "u5": 1}
		if got := rec.counts(); !mapsEqual(got, want) {
			t.Errorf("calls = %v, want %v (only the item in flight twice)", got, want)
		}
		if n := len(auditOf(t, db, jobs.EventItem)); n != 5 {
			t.Errorf("%d job.item rows, want 5", n)
		}
	})
}

// TestConcurrentWorkers: two Services on two connection pools of one
// database (two replicas) run their Run loops over jobs submitted through
// both; no job ever runs on both at once, and every item runs exactly once.
func TestConcurrentWorkers(t *testing.T) {
	eachDialect(t, func(t *testing.T, newURL storetest.Opener) {
		dbURL := newURL(t)
		const nJobs, nItems = 6, 12
		var mu sync.Mutex
		inflight := map[string]int{} // per job
		var overlaps []string
		act := &recorder{}
		act.fn = func(_ context.Context, target string, _ int) error {
			job, _, _ := strings.Cut(target, "-")
			mu.Lock()
			inflight[job]++
			if inflight[job] > 1 {
				overlaps = append(overlaps, target)
			}
			mu.Unlock()
			time.Sleep(100 * time.Microsecond)
			mu.Lock()
			inflight[job]--
			mu.Unlock()
			return nil
		}
		a := service(t, openDB(t, dbURL), act, nil, 5*time.Second, nil)
		b := service(t, openDB(t, dbURL), act, nil, 5*time.Second, nil)
		ctx, stop := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for _, s := range []*jobs.Service{a, b} {
			wg.Go(func() {
				if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v", err)
				}
			})
		}
		var ids []string
		for i := range nJobs {
			s := []*jobs.Service{a, b}[i%2]
			var ts []string
			for k := range nItems {
				ts = append(ts, fmt.Sprintf("j%d-u%d", i, k))
			}
			j, err := s.Submit(ctx, action, "", ts, params, admin)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, j.ID)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			active, err := a.List(t.Context(), jobs.Filter{Active: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(active) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d jobs still active after 30s", len(active))
			}
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(overlaps) > 0 {
			t.Errorf("items run while another worker ran the same job: %v", overlaps)
		}
		counts := act.counts()
		if len(counts) != nJobs*nItems {
			t.Errorf("%d targets called, want %d", len(counts), nJobs*nItems)
		}
		for target, n := range counts {
			if n != 1 {
				t.Errorf("%s called %d times", target, n)
			}
		}
		for _, id := range ids {
			if j := mustGet(t, a, id); j.Status != jobs.StatusSucceeded || j.Succeeded != nItems {
				t.Errorf("job %+v", j)
			}
		}
	})
}
