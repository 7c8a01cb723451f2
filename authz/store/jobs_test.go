package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/jobs"
)

func TestJobsSQLite(t *testing.T)   { runJobsSuite(t, sqliteURL) }
func TestJobsPostgres(t *testing.T) { runJobsSuite(t, postgresURL) }

func runJobsSuite(t *testing.T, newURL opener) {
	open := dbOpener(newURL)
	t.Run("CreateListItems", func(t *testing.T) { testJobsCreateList(t, open(t)) })
	t.Run("ClaimRecordFinish", func(t *testing.T) { testJobsClaim(t, open(t)) })
	t.Run("Cancel", func(t *testing.T) { testJobsCancel(t, open(t)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { testJobsConcurrentClaims(t, newURL(t)) })
	t.Run("Purge", func(t *testing.T) { testJobsPurge(t, open(t)) })
}

var jobsT0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

func targets(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user-%05d", i+1)
	}
	return out
}

func mustCreateJob(t *testing.T, db *DB, action string, at time.Time, n int) *jobs.Job {
	t.Helper()
	j := &jobs.Job{ID: authz.NewID(), Action: action, Label: "label " + action, Params: []byte(`{"x":1}`),
		Actor: "admin-1", CreatedAt: at}
	if err := db.CreateJob(t.Context(), j, targets(n)); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	return j
}

func mustJob(t *testing.T, db *DB, id string) *jobs.Job {
	t.Helper()
	j, err := db.Job(t.Context(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

func jobIDs(js []jobs.Job) []string {
	out := []string{}
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

// testJobsCreateList: a job and its items come back as written (a job of
// MaxItems items included), newest first in pages, filtered by status, and
// items in seq order, paged and filtered.
func testJobsCreateList(t *testing.T, db *DB) {
	ctx := t.Context()
	var made []*jobs.Job
	for i := range 5 {
		// Two jobs share a millisecond: the id orders them.
		made = append(made, mustCreateJob(t, db, "users.disable", jobsT0.Add(time.Duration(i/2)*time.Second), 3))
	}
	big := time.Now()
	huge := mustCreateJob(t, db, "users.enable", jobsT0.Add(time.Hour), jobs.MaxItems)
	t.Logf("CreateJob of %d items: %v", jobs.MaxItems, time.Since(big))

	got := mustJob(t, db, made[0].ID)
	if got.Action != "users.disable" || got.Label != "label users.disable" || string(got.Params) != `{"x":1}` ||
		got.Actor != "admin-1" || got.Status != jobs.StatusQueued || got.Total != 3 || got.Pending() != 3 ||
		!got.CreatedAt.Equal(jobsT0) || !got.StartedAt.IsZero() || !got.FinishedAt.IsZero() || !got.LeaseUntil.IsZero() ||
		got.CancelRequested {
		t.Errorf("Job = %+v", got)
	}
	if _, err := db.Job(ctx, "nope"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("Job(unknown) = %v, want ErrNotFound", err)
	}
	if err := db.CreateJob(ctx, &jobs.Job{ID: made[0].ID, Action: "a"}, targets(1)); !errors.Is(err, authz.ErrConflict) {
		t.Errorf("CreateJob with a taken id = %v, want ErrConflict", err)
	}

	// Newest first: huge, then made[4] (alone in its second), then made[3]
	// and made[2] (one second, higher id first), ...
	want := []*jobs.Job{huge, made[4]}
	pair := func(a, b *jobs.Job) []*jobs.Job {
		if a.ID > b.ID {
			return []*jobs.Job{a, b}
		}
		return []*jobs.Job{b, a}
	}
	want = append(want, pair(made[2], made[3])...)
	want = append(want, pair(made[0], made[1])...)
	var wantIDs []string
	for _, j := range want {
		wantIDs = append(wantIDs, j.ID)
	}
	var paged []string
	before := ""
	for range 10 {
		page, err := db.ListJobs(ctx, jobs.Filter{Before: before, Limit: 2})
		if err != nil {
			t.Fatalf("ListJobs: %v", err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, jobIDs(page)...)
		before = page[len(page)-1].ID
	}
	if !slices.Equal(paged, wantIDs) {
		t.Errorf("paged list = %v, want %v", paged, wantIDs)
	}
	if js, err := db.ListJobs(ctx, jobs.Filter{Status: jobs.StatusSucceeded}); err != nil || len(js) != 0 {
		t.Errorf("ListJobs(succeeded) = %v, %v; want none", jobIDs(js), err)
	}
	if js, err := db.ListJobs(ctx, jobs.Filter{Active: true, Limit: 1}); err != nil || !slices.Equal(jobIDs(js), []string{huge.ID}) {
		t.Errorf("ListJobs(active, 1) = %v, %v", jobIDs(js), err)
	}

	items, err := db.JobItems(ctx, huge.ID, jobs.ItemFilter{After: 9998, Limit: 5})
	if err != nil {
		t.Fatalf("JobItems: %v", err)
	}
	if len(items) != 2 || items[0].Seq != 9999 || items[1].Seq != 10000 || items[1].Target != "user-10000" ||
		items[1].Status != jobs.ItemPending || items[1].JobID != huge.ID || !items[1].FinishedAt.IsZero() {
		t.Errorf("last items = %+v", items)
	}
	all, err := db.JobItems(ctx, huge.ID, jobs.ItemFilter{Limit: authz.MaxListLimit})
	if err != nil || len(all) != authz.MaxListLimit || all[0].Seq != 1 || all[0].Target != "user-00001" {
		t.Errorf("first page: %d items, %v", len(all), err)
	}
	if items, err := db.JobItems(ctx, huge.ID, jobs.ItemFilter{Status: jobs.ItemFailed}); err != nil || len(items) != 0 {
		t.Errorf("failed items = %v, %v; want none", items, err)
	}
	if _, err := db.JobItems(ctx, "nope", jobs.ItemFilter{}); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("JobItems(unknown) = %v, want ErrNotFound", err)
	}
}

// testJobsClaim: claims take the oldest unclaimed job of the given actions
// with a lease; recording an item counts it and renews the lease; a lease
// that ran out is claimed again with a new token, and the old token can
// then record, finish and release nothing.
func testJobsClaim(t *testing.T, db *DB) {
	ctx := t.Context()
	lease := time.Minute
	first := mustCreateJob(t, db, "a", jobsT0, 3)
	second := mustCreateJob(t, db, "a", jobsT0.Add(time.Second), 1)
	other := mustCreateJob(t, db, "b", jobsT0.Add(-time.Hour), 1)
	now := jobsT0.Add(time.Minute)

	if _, err := db.ClaimJob(ctx, []string{"a"}, "", now, lease); err == nil {
		t.Error("a claim without a token was accepted")
	}
	if j, err := db.ClaimJob(ctx, nil, "t0", now, lease); j != nil || err != nil {
		t.Errorf("claim of no actions = %v, %v", j, err)
	}
	j, err := db.ClaimJob(ctx, []string{"a", "c"}, "t1", now, lease)
	if err != nil || j == nil || j.ID != first.ID {
		t.Fatalf("first claim = %+v, %v; want job %s (job b is older but not asked for)", j, err, first.ID)
	}
	if j.Status != jobs.StatusRunning || !j.StartedAt.Equal(now) || !j.LeaseUntil.Equal(now.Add(lease)) {
		t.Errorf("claimed = %+v", j)
	}
	if j, err := db.ClaimJob(ctx, []string{"a"}, "t2", now, lease); err != nil || j == nil || j.ID != second.ID {
		t.Fatalf("second claim = %+v, %v; want job %s", j, err, second.ID)
	}
	if j, err := db.ClaimJob(ctx, []string{"a"}, "t3", now.Add(lease-time.Millisecond), lease); j != nil || err != nil {
		t.Fatalf("claim while leases last = %+v, %v", j, err)
	}

	item := func(seq int, st jobs.ItemStatus) jobs.Item {
		it := jobs.Item{JobID: first.ID, Seq: seq, Status: st, FinishedAt: now.Add(time.Second)}
		if st == jobs.ItemFailed {
			it.Code, it.Message = "not_found", "The user no longer exists."
		}
		return it
	}
	if _, err := db.RecordJobItem(ctx, "t1", item(1, jobs.ItemPending), now); err == nil {
		t.Error("recording a pending outcome was accepted")
	}
	if c, err := db.RecordJobItem(ctx, "t1", item(1, jobs.ItemOK), now.Add(2*lease)); c || err != nil {
		t.Fatalf("RecordJobItem 1 = %v, %v", c, err)
	}
	if _, err := db.RecordJobItem(ctx, "t1", item(1, jobs.ItemFailed), now.Add(2*lease)); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("recording item 1 again = %v, want ErrLeaseLost", err)
	}
	if _, err := db.RecordJobItem(ctx, "t2", item(2, jobs.ItemOK), now.Add(2*lease)); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("recording with another job's token = %v, want ErrLeaseLost", err)
	}
	if _, err := db.FinishJob(ctx, first.ID, "t1", now); err == nil {
		t.Error("FinishJob with pending items and no cancel succeeded")
	}
	got := mustJob(t, db, first.ID)
	if got.Succeeded != 1 || got.Failed != 0 || got.Pending() != 2 || !got.LeaseUntil.Equal(now.Add(2*lease)) {
		t.Errorf("after item 1: %+v (the failed attempts changed nothing, the lease was renewed)", got)
	}

	// The renewed lease holds past the first one (while the second job's
	// has ended); after it, the first job is claimed again, and its old
	// token is fenced off.
	if j, err := db.ClaimJob(ctx, []string{"a"}, "t4", now.Add(lease+time.Second), lease); err != nil || j == nil || j.ID != second.ID {
		t.Fatalf("claim within the renewed lease = %+v, %v; want the second job", j, err)
	}
	later := now.Add(2*lease + time.Millisecond)
	j, err = db.ClaimJob(ctx, []string{"a"}, "t5", later, lease)
	if err != nil || j == nil || j.ID != first.ID || !j.StartedAt.Equal(now) || j.Succeeded != 1 {
		t.Fatalf("claim after the lease = %+v, %v; want job %s, started at the first claim", j, err, first.ID)
	}
	if _, err := db.RecordJobItem(ctx, "t1", item(2, jobs.ItemOK), later.Add(lease)); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("old token records = %v, want ErrLeaseLost", err)
	}
	if _, err := db.FinishJob(ctx, first.ID, "t1", later); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("old token finishes = %v, want ErrLeaseLost", err)
	}
	if err := db.ReleaseJob(ctx, first.ID, "t1"); err != nil {
		t.Errorf("old token release = %v", err)
	}
	if mustJob(t, db, first.ID).LeaseUntil.IsZero() {
		t.Error("the old token's release ended the new lease")
	}
	if _, err := db.RecordJobItem(ctx, "t5", item(2, jobs.ItemFailed), later.Add(lease)); err != nil {
		t.Fatal(err)
	}
	// Released, the job is claimable at once.
	if err := db.ReleaseJob(ctx, first.ID, "t5"); err != nil {
		t.Fatal(err)
	}
	if got := mustJob(t, db, first.ID); got.Status != jobs.StatusRunning || !got.LeaseUntil.IsZero() {
		t.Errorf("released = %+v", got)
	}
	j, err = db.ClaimJob(ctx, []string{"a"}, "t6", later, lease)
	if err != nil || j == nil || j.ID != first.ID {
		t.Fatalf("claim after release = %+v, %v", j, err)
	}
	if _, err := db.RecordJobItem(ctx, "t6", item(3, jobs.ItemOK), later.Add(lease)); err != nil {
		t.Fatal(err)
	}
	fin, err := db.FinishJob(ctx, first.ID, "t6", later.Add(time.Second))
	if err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	if fin.Status != jobs.StatusFinishedWithFailures || fin.Succeeded != 2 || fin.Failed != 1 || fin.Cancelled != 0 ||
		!fin.FinishedAt.Equal(later.Add(time.Second)) || !fin.LeaseUntil.IsZero() {
		t.Errorf("finished = %+v", fin)
	}
	if got := mustJob(t, db, first.ID); got.Status != fin.Status || !got.FinishedAt.Equal(fin.FinishedAt) || !got.LeaseUntil.IsZero() {
		t.Errorf("stored finished job = %+v", got)
	}
	if _, err := db.FinishJob(ctx, first.ID, "t6", later); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("finishing twice = %v, want ErrLeaseLost", err)
	}
	failed, err := db.JobItems(ctx, first.ID, jobs.ItemFilter{Status: jobs.ItemFailed})
	if err != nil || len(failed) != 1 || failed[0].Seq != 2 || failed[0].Code != "not_found" ||
		failed[0].Message != "The user no longer exists." || !failed[0].FinishedAt.Equal(now.Add(time.Second)) {
		t.Errorf("failed items = %+v, %v", failed, err)
	}
	// With every lease over, the claims take b's job (the oldest), then
	// the second one (abandoned by t4); the finished job is never claimed
	// again.
	for _, want := range []string{other.ID, second.ID, ""} {
		j, err := db.ClaimJob(ctx, []string{"a", "b"}, "t7", later.Add(time.Hour), lease)
		if err != nil || (j == nil) != (want == "") || (j != nil && j.ID != want) {
			t.Errorf("claim = %+v, %v; want job %q", j, err, want)
		}
	}
}

// testJobsCancel: a queued job is cancelled at once, items included; a
// claimed one only records the request, reported to the worker's next
// record, and FinishJob then cancels what is left; a finished job refuses.
func testJobsCancel(t *testing.T, db *DB) {
	ctx := t.Context()
	now := jobsT0.Add(time.Minute)
	queued := mustCreateJob(t, db, "a", jobsT0.Add(time.Hour), 3) // newest: never claimed below
	running := mustCreateJob(t, db, "a", jobsT0, 3)

	if _, err := db.CancelJob(ctx, "nope", "admin-2", now); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("CancelJob(unknown) = %v, want ErrNotFound", err)
	}
	c, err := db.CancelJob(ctx, queued.ID, "admin-2", now)
	if err != nil {
		t.Fatalf("CancelJob(queued): %v", err)
	}
	if c.Status != jobs.StatusCancelled || c.Cancelled != 3 || !c.CancelRequested || c.CancelledBy != "admin-2" ||
		!c.FinishedAt.Equal(now) || c.Pending() != 0 {
		t.Errorf("cancelled queued job = %+v", c)
	}
	if items, _ := db.JobItems(ctx, queued.ID, jobs.ItemFilter{Status: jobs.ItemCancelled}); len(items) != 3 || !items[0].FinishedAt.Equal(now) {
		t.Errorf("cancelled items = %+v", items)
	}
	if _, err := db.CancelJob(ctx, queued.ID, "admin-3", now); !errors.Is(err, jobs.ErrFinished) {
		t.Errorf("cancelling a finished job = %v, want ErrFinished", err)
	}

	j, err := db.ClaimJob(ctx, []string{"a"}, "tok", now, time.Minute)
	if err != nil || j == nil || j.ID != running.ID {
		t.Fatalf("claim = %+v, %v", j, err)
	}
	if cr, err := db.RecordJobItem(ctx, "tok", jobs.Item{JobID: j.ID, Seq: 1, Status: jobs.ItemOK, FinishedAt: now}, now.Add(time.Minute)); cr || err != nil {
		t.Fatalf("record = %v, %v", cr, err)
	}
	c, err = db.CancelJob(ctx, running.ID, "admin-2", now)
	if err != nil || c.Status != jobs.StatusRunning || !c.CancelRequested || !c.FinishedAt.IsZero() {
		t.Fatalf("cancel of a claimed job = %+v, %v; want running with the request", c, err)
	}
	if c, err = db.CancelJob(ctx, running.ID, "admin-3", now); err != nil || c.CancelledBy != "admin-2" {
		t.Errorf("second cancel = %+v, %v; want no error, the first canceller kept", c, err)
	}
	if cr, err := db.RecordJobItem(ctx, "tok", jobs.Item{JobID: j.ID, Seq: 2, Status: jobs.ItemFailed, Code: "x", Message: "y", FinishedAt: now}, now.Add(time.Minute)); !cr || err != nil {
		t.Fatalf("record after cancel = %v, %v; want the cancel reported", cr, err)
	}
	fin, err := db.FinishJob(ctx, running.ID, "tok", now.Add(time.Second))
	if err != nil || fin.Status != jobs.StatusCancelled || fin.Succeeded != 1 || fin.Failed != 1 || fin.Cancelled != 1 {
		t.Fatalf("finish = %+v, %v", fin, err)
	}
	if items, _ := db.JobItems(ctx, running.ID, jobs.ItemFilter{}); len(items) != 3 || items[2].Status != jobs.ItemCancelled {
		t.Errorf("items = %+v", items)
	}

	// A cancel request on a job whose worker died (lease over, not
	// released) waits for the next claimer, which finishes it.
	dead := mustCreateJob(t, db, "a", jobsT0.Add(2*time.Hour), 2)
	if _, err := db.ClaimJob(ctx, []string{"a"}, "dead", now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if c, err := db.CancelJob(ctx, dead.ID, "admin-2", now.Add(time.Hour)); err != nil || c.Status != jobs.StatusRunning {
		t.Fatalf("cancel of an abandoned job = %+v, %v", c, err)
	}
	j, err = db.ClaimJob(ctx, []string{"a"}, "next", now.Add(time.Hour), time.Minute)
	if err != nil || j == nil || j.ID != dead.ID || !j.CancelRequested {
		t.Fatalf("claim = %+v, %v", j, err)
	}
	if fin, err := db.FinishJob(ctx, dead.ID, "next", now.Add(time.Hour)); err != nil || fin.Status != jobs.StatusCancelled || fin.Cancelled != 2 {
		t.Errorf("finish = %+v, %v", fin, err)
	}
	// Cancel requested after the last item: nothing left to cancel, so the
	// job finishes with the outcome of its items.
	late := mustCreateJob(t, db, "a", jobsT0.Add(3*time.Hour), 1)
	if j, err := db.ClaimJob(ctx, []string{"a"}, "late", now, time.Minute); err != nil || j.ID != late.ID {
		t.Fatal(j, err)
	}
	if _, err := db.RecordJobItem(ctx, "late", jobs.Item{JobID: late.ID, Seq: 1, Status: jobs.ItemOK, FinishedAt: now}, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CancelJob(ctx, late.ID, "admin-2", now); err != nil {
		t.Fatal(err)
	}
	if fin, err := db.FinishJob(ctx, late.ID, "late", now); err != nil || fin.Status != jobs.StatusSucceeded {
		t.Errorf("finish = %+v, %v; want succeeded", fin, err)
	}
}

// testJobsConcurrentClaims: claimers on two connections pools of one
// database, each claiming until nothing is left, take every job exactly
// once.
func testJobsConcurrentClaims(t *testing.T, dbURL string) {
	ctx := t.Context()
	var dbs []*DB
	for range 2 {
		db, err := Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	const n = 30
	for i := range n {
		mustCreateJob(t, dbs[0], "a", jobsT0.Add(time.Duration(i)*time.Millisecond), 1)
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			db := dbs[w%2]
			for {
				j, err := db.ClaimJob(ctx, []string{"a"}, fmt.Sprintf("w%d", w), jobsT0.Add(time.Hour), time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if j == nil {
					return
				}
				mu.Lock()
				claimed[j.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != n {
		t.Errorf("%d jobs claimed, want %d", len(claimed), n)
	}
	for id, c := range claimed {
		if c != 1 {
			t.Errorf("job %s claimed %d times", id, c)
		}
	}
}

// testJobsPurge: only jobs finished before the bound go, with their items.
func testJobsPurge(t *testing.T, db *DB) {
	ctx := t.Context()
	old := mustCreateJob(t, db, "a", jobsT0, 2)
	keep := mustCreateJob(t, db, "a", jobsT0.Add(time.Minute), 2)
	open := mustCreateJob(t, db, "a", jobsT0.Add(2*time.Minute), 2)
	if _, err := db.CancelJob(ctx, old.ID, "x", jobsT0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CancelJob(ctx, keep.ID, "x", jobsT0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := db.PurgeJobs(ctx, jobsT0.Add(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PurgeJobs = %d, %v; want 1", n, err)
	}
	if _, err := db.Job(ctx, old.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("purged job: %v", err)
	}
	var items int
	if err := db.db.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM job_items WHERE job_id = ?`), old.ID).Scan(&items); err != nil || items != 0 {
		t.Errorf("purged job's items: %d, %v", items, err)
	}
	for _, j := range []*jobs.Job{keep, open} {
		if _, err := db.Job(ctx, j.ID); err != nil {
			t.Errorf("job %s: %v", j.ID, err)
		}
	}
}
