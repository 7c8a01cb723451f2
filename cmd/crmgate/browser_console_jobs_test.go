package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
)

// jobsTestUsers is how many users the interrupted bulk job acts on: enough
// that it is still running when the gateway restarts.
const jobsTestUsers = 1500

// TestBrowserConsoleBulkJobRestart: an administrator, in Chromium, ticks
// "every user matching the filter" and forces a password change on 1500
// users. While the job runs, the gateway process is stopped (SIGTERM, as a
// rolling restart does) and, the second time, killed (SIGKILL, a crash);
// a new process on the same database finishes the job (at once after the
// graceful stop, after CRMGATE_JOBS_LEASE after the crash). The job page in
// the browser follows it to the end; every user is acted on, and none
// twice but the item in flight at the crash (the audit trail counts).
func TestBrowserConsoleBulkJobRestart(t *testing.T) {
	browser := requireBrowser(t)
	dir := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(dir, "db") // baseEnv's database
	const pw = "correct horse battery staple"
	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := wiring.New(db, authztest.Options(wiring.Options{BreakGlassRole: "admin"}))
	if err != nil {
		t.Fatal(err)
	}
	root, err := svc.Accounts.CreateUser(t.Context(), accounts.NewUser{Username: "root", Email: "root@example.test", Password: pw,
		Roles: []string{"admin"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range jobsTestUsers {
		n := fmt.Sprintf("bulk%04d", i)
		if _, err := svc.Accounts.CreateUser(t.Context(), accounts.NewUser{Username: n, Email: n + "@example.test"}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d users created in %s", jobsTestUsers, time.Since(start).Round(time.Millisecond))
	env := baseEnv(t, dir, "CRMGATE_SHUTDOWN_DELAY=0s", "CRMGATE_JOBS_LEASE=5s",
		"CRMGATE_JOBS_POLL_INTERVAL=200ms")
	rs := startReplicas(t, 1, env)
	gw := rs.All()[0]

	ctx := newBrowserFor(t, browser, 3*time.Minute) // the job runs between its steps
	// Without JavaScript the job page does not reload itself (console.js),
	// so no reload races the test's own navigations while the gateway
	// restarts; the test reloads it.
	disableScripts(t, ctx)
	open(t, ctx, "the console", gw.URL("/.auth/admin/users?q=bulk"))
	navigation(t, ctx, "sign in", chromedp.SendKeys(chromedp.ID("login"), "root"), chromedp.SendKeys(chromedp.ID("password"), pw+kb.Enter))
	if text := consoleText(t, ctx); !strings.Contains(text, fmt.Sprintf("of %d", jobsTestUsers)) {
		t.Fatalf("users table filtered by bulk:\n%s", text)
	}
	do(t, ctx, "every user matching", chromedp.Click(chromedp.ID("bulk-all")))
	navigation(t, ctx, "force a password change", chromedp.Click(chromedp.CSS(`button[formaction$="/users/bulk/force-password"]`)))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != fmt.Sprintf("Force a password change for %d users?", jobsTestUsers) {
		t.Fatalf("confirmation h1 %q", h1)
	}
	screenshot(t, ctx, "console-bulk-confirm")
	navigation(t, ctx, "confirm", chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")))
	m := regexp.MustCompile(`^/\.auth/admin/jobs/([0-9a-f]{32})$`).FindStringSubmatch(location(t, ctx).Path)
	if m == nil {
		t.Fatalf("after confirming at %s, want the job's page", location(t, ctx))
	}
	jobID := m[1]
	progress := func() *jobs.Job {
		t.Helper()
		j, err := svc.Jobs.Get(context.Background(), jobID)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	// waitDone waits until the job has done more than n items (or
	// finished) and returns it.
	waitDone := func(n int, within time.Duration) *jobs.Job {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			j := progress()
			if j.Succeeded+j.Failed > n || j.Status.Finished() {
				return j
			}
			if time.Now().After(deadline) {
				t.Fatalf("job at %d of %d after %s, want more than %d", j.Succeeded+j.Failed, j.Total, within, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	screenshot(t, ctx, "console-job-running")

	// A graceful restart mid-job.
	j := waitDone(jobsTestUsers/10, 30*time.Second)
	gw.Signal(t, syscall.SIGTERM)
	atStop := progress()
	if atStop.Status.Finished() {
		t.Fatalf("the job finished before the restart (%d users are too few for this machine): %+v", jobsTestUsers, atStop)
	}
	t.Logf("stopped at %d of %d (the job was at %d when the stop was sent)", atStop.Succeeded, atStop.Total, j.Succeeded)
	restarted := time.Now()
	gw = rs.Start()
	rs.WaitReady(gw, time.Now().Add(30*time.Second))
	j = waitDone(atStop.Succeeded, 10*time.Second)
	t.Logf("after the graceful restart the job went on within %s", time.Since(restarted).Round(time.Millisecond))

	// A crash mid-job: the new process takes it over once the lease ends.
	j = waitDone(j.Succeeded+jobsTestUsers/10, 30*time.Second)
	if j.Status.Finished() {
		t.Fatalf("the job finished before the crash: %+v", j)
	}
	gw.Signal(t, syscall.SIGKILL)
	atKill := progress()
	crashed := time.Now()
	gw = rs.Start()
	rs.WaitReady(gw, time.Now().Add(30*time.Second))
	waitDone(atKill.Succeeded, 20*time.Second)
	t.Logf("killed at %d of %d; the new process went on after %s (lease 5s)", atKill.Succeeded, atKill.Total, time.Since(crashed).Round(time.Millisecond))

	// The browser's job page, reloaded, follows the job to the end on the
	// new process (the session cookie is valid there: same keys).
	deadline := time.Now().Add(60 * time.Second)
	for {
		open(t, ctx, "the job page on the new process", gw.URL("/.auth/admin/jobs/"+jobID))
		if strings.Contains(consoleText(t, ctx), "succeeded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job page never showed the end; the job is %+v", progress())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if text := consoleText(t, ctx); !strings.Contains(text, fmt.Sprintf("%d of %d", jobsTestUsers, jobsTestUsers)) {
		t.Errorf("job page at the end:\n%s", text)
	}
	screenshot(t, ctx, "console-job-done")
	if j = progress(); j.Status != jobs.StatusSucceeded || j.Succeeded != jobsTestUsers {
		t.Errorf("job = %+v", j)
	}
	// Every user is acted on, once each but for at most the item in flight
	// at the crash (the graceful stop finishes its item first).
	users, err := db.ListUsers(t.Context(), authz.UserFilter{Query: "bulk", Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	more, err := db.ListUsers(t.Context(), authz.UserFilter{Query: "bulk", Limit: authz.MaxListLimit, Offset: authz.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	users = append(users, more...)
	for _, u := range users {
		if !u.MustChangePassword {
			t.Errorf("%s was not acted on", u.Username)
		}
	}
	n := 0
	for before := int64(0); ; {
		evs, err := db.ListAudit(t.Context(), audit.Filter{Type: audit.EventPasswordSet, Actor: root.ID, Before: before, Limit: authz.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		n += len(evs)
		if len(evs) < authz.MaxListLimit {
			break
		}
		before = evs[len(evs)-1].ID
	}
	if len(users) != jobsTestUsers || n < jobsTestUsers || n > jobsTestUsers+1 {
		t.Errorf("%d users, %d forced-change audit rows, want %d and %d or one more", len(users), n, jobsTestUsers, jobsTestUsers)
	}
}
