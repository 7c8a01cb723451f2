package proxy_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/wiring"
)

// runJobs runs the harness's bulk-job worker until the test ends.
func (h *harness) runJobs() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.svc.Jobs.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			h.t.Errorf("jobs worker: %v", err)
		}
	}()
	h.t.Cleanup(func() { cancel(); <-done })
}

var jobLocRE = regexp.MustCompile(`^/\.auth/admin/jobs/([0-9a-f]{32})$`)

// submitBulk posts a bulk action from the users table and confirms it,
// and returns the job's id.
func (h *harness) submitBulk(c *http.Client, slug string, form url.Values) string {
	h.t.Helper()
	resp, body := h.consolePost(c, "/users/bulk/"+slug, form)
	if resp.StatusCode != 200 || !strings.Contains(body, `name="confirmed" value="yes"`) {
		h.t.Fatalf("bulk %s without confirmation: %d\n%s", slug, resp.StatusCode, body)
	}
	form.Set("confirmed", "yes")
	resp, body = h.consolePost(c, "/users/bulk/"+slug, form)
	m := jobLocRE.FindStringSubmatch(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		h.t.Fatalf("bulk %s confirmed: %d to %q\n%s", slug, resp.StatusCode, resp.Header.Get("Location"), body)
	}
	return m[1]
}

// waitJob waits until job id has finished and returns it.
func (h *harness) waitJob(id string) *jobs.Job {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := h.svc.Jobs.Get(context.Background(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		if j.Status.Finished() {
			return j
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("job %s not finished in 10s: %+v", id, j)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsoleBulk: the administrator ticks users in the table and disables
// them: a confirmation names them, the job runs in the worker, its page
// shows the counts and why one failed (the last break-glass administrator
// is kept, named as such), and the store and the audit trail hold each
// item with the administrator as actor. "Every user matching the filter"
// acts on the filter's users, not the ticked ones.
func TestConsoleBulk(t *testing.T) {
	h := inviteHarness(t, harnessConfig{}, func(o *wiring.Options) { o.BreakGlassRole = "admin" })
	h.runJobs()
	const pw = "correct horse battery"
	root := h.createUser("root", "root@example.test", pw, "admin")
	var ids []string
	for _, n := range []string{"dan", "eve", "fay"} {
		ids = append(ids, h.createUser(n, n+"@example.test", pw).ID)
	}
	for _, n := range []string{"zza", "zzb", "zzc", "zzd"} {
		h.createUser(n, n+"@example.test", pw)
	}
	admin := h.browser()
	h.signIn(admin, "root", pw)
	body := h.consoleGet(admin, "/users", 200)
	for _, want := range []string{`formaction="/.auth/admin/users/bulk/disable"`, `name="user" value="` + ids[0] + `"`, `name="all" value="yes"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("users table lacks %s:\n%s", want, body)
		}
	}
	resp, body := h.consolePost(admin, "/users/bulk/disable", url.Values{"user": append(append([]string{}, ids...), root.ID)})
	if resp.StatusCode != 200 || !strings.Contains(body, "Disable 4 users?") || !strings.Contains(body, "dan, eve, fay, root") {
		t.Fatalf("confirmation: %d\n%s", resp.StatusCode, body)
	}
	if u, _ := h.svc.Accounts.UserByID(t.Context(), ids[0]); u.Status != authz.StatusActive {
		t.Fatal("the unconfirmed bulk action changed a user")
	}
	id := h.submitBulk(admin, "disable", url.Values{"user": append(append([]string{}, ids...), root.ID)})
	j := h.waitJob(id)
	if j.Status != jobs.StatusFinishedWithFailures || j.Succeeded != 3 || j.Failed != 1 || j.Actor != root.ID {
		t.Errorf("job = %+v", j)
	}
	body = h.consoleGet(admin, "/jobs/"+id, 200)
	if !strings.Contains(body, "3 of 4") || !strings.Contains(body, "last active unbound administrator") || !strings.Contains(body, ">root</a>") {
		t.Errorf("job page:\n%s", body)
	}
	for _, uid := range ids {
		if u, _ := h.svc.Accounts.UserByID(t.Context(), uid); u.Status != authz.StatusDisabled {
			t.Errorf("%s is %s after the bulk disable", u.Username, u.Status)
		}
	}
	evs, err := h.svc.Audit.ListAudit(t.Context(), audit.Filter{Actor: root.ID, Type: audit.EventStatusSet, Limit: 100})
	if err != nil || len(evs) != 3 {
		t.Errorf("%d user.status_set rows by the administrator (%v), want 3", len(evs), err)
	}
	if body = h.consoleGet(admin, "/jobs", 200); !strings.Contains(body, "Disable 4 users") || !strings.Contains(body, "finished_with_failures") {
		t.Errorf("jobs list:\n%s", body)
	}

	// Every user matching "zz", whatever is ticked.
	id = h.submitBulk(admin, "force-password", url.Values{"all": {"yes"}, "filter": {"q=zz"}, "user": {root.ID}})
	if j = h.waitJob(id); j.Total != 4 || j.Succeeded != 4 || !strings.Contains(j.Label, `matching "zz"`) {
		t.Errorf("job over the filter = %+v", j)
	}
	for _, n := range []string{"zza", "zzd"} {
		if u, _ := h.svc.Accounts.LookupUser(t.Context(), n); !u.MustChangePassword {
			t.Errorf("%s must not change the password after the bulk action", n)
		}
	}
	if u, _ := h.svc.Accounts.UserByID(t.Context(), root.ID); u.MustChangePassword {
		t.Error("the ticked root was acted on although every user matching the filter was chosen")
	}
	// Nothing ticked: back to the table with a notice.
	resp, _ = h.consolePost(admin, "/users/bulk/enable", url.Values{})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "notice=nothing-selected") {
		t.Errorf("nothing selected: %d to %q", resp.StatusCode, loc)
	}
	// A made-up id in the selection is refused.
	resp, _ = h.consolePost(admin, "/users/bulk/enable", url.Values{"user": {"../../etc"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad id: %d", resp.StatusCode)
	}
}

// TestConsoleBulkCancel: a job no worker has claimed yet is cancelled from
// its page after a confirmation; its users stay as they were.
func TestConsoleBulkCancel(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	dan := h.createUser("dan", "dan@example.test", pw)
	admin := h.browser()
	h.signIn(admin, "root", pw)
	id := h.submitBulk(admin, "delete", url.Values{"user": {dan.ID}})
	body := h.consoleGet(admin, "/jobs/"+id, 200)
	if !strings.Contains(body, "queued") || !strings.Contains(body, `data-refresh="2"`) || !strings.Contains(body, "/cancel") {
		t.Fatalf("queued job page:\n%s", body)
	}
	resp, body := h.consolePost(admin, "/jobs/"+id+"/cancel", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Cancel \u201cDelete 1 users\u201d?") {
		t.Fatalf("cancel without confirmation: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(admin, "/jobs/"+id+"/cancel", url.Values{"confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/jobs/"+id+"?notice=job-cancelled")
	h.runJobs()
	if j := h.waitJob(id); j.Status != jobs.StatusCancelled || j.Cancelled != 1 {
		t.Errorf("job = %+v", j)
	}
	if _, err := h.svc.Accounts.UserByID(t.Context(), dan.ID); err != nil {
		t.Errorf("dan after the cancelled delete: %v", err)
	}
	resp, _ = h.consolePost(admin, "/jobs/"+id+"/cancel", url.Values{"confirmed": {"yes"}})
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notice=job-finished") {
		t.Errorf("cancelling a finished job: %d to %q", resp.StatusCode, loc)
	}
}
