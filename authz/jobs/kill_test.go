package jobs_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/store/storetest"
)

// Environment of TestJobsHelperProcess, set only in the subprocess of
// TestJobSurvivesKill: the database URL and the file where the helper's
// action writes each target before acting on it.
const (
	helperDBEnv    = "CRMGATE_JOBS_HELPER_DB"
	helperCallsEnv = "CRMGATE_JOBS_HELPER_CALLS"
)

// helperLease is the lease of the helper's worker: long, so that the
// test sees it hold after the kill.
const helperLease = time.Minute

// TestJobsHelperProcess is the replica that TestJobSurvivesKill kills; it
// does nothing in a normal test run. Its worker runs the queued job; the
// action writes each target to the calls file (synced), and hangs on u4
// after printing "blocked", until the kill.
func TestJobsHelperProcess(t *testing.T) {
	dbURL := os.Getenv(helperDBEnv)
	if dbURL == "" {
		return
	}
	f, err := os.OpenFile(os.Getenv(helperCallsEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	rec := &recorder{fn: func(_ context.Context, target string, _ int) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := f.WriteString(target + "\n"); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if target == "u4" {
			fmt.Println("blocked")
			select {} // in flight until the kill
		}
		return nil
	}}
	s := service(t, openDB(t, dbURL), rec, nil, helperLease, nil)
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestJobSurvivesKill: a replica running a job is killed with SIGKILL in
// the middle of an item; its lease holds the job until it ends, then a new
// Service (on the same SQLite file or PostgreSQL database) takes the job
// over and finishes it: the items recorded done are not run again, the
// item in flight at the kill runs once more, the rest once.
func TestJobSurvivesKill(t *testing.T) {
	if os.Getenv(helperDBEnv) != "" {
		t.Skip("inside the helper process")
	}
	eachDialect(t, func(t *testing.T, newURL storetest.Opener) {
		dbURL := newURL(t)
		calls := filepath.Join(t.TempDir(), "calls")
		rec := &recorder{}
		var mu sync.Mutex
		offset := time.Duration(0)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
		s := service(t, openDB(t, dbURL), rec, clock, time.Minute, nil)
		j, err := s.Submit(t.Context(), action, "", userIDs(8), params, admin)
		if err != nil {
			t.Fatal(err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestJobsHelperProcess$")
		cmd.Env = append(os.Environ(), helperDBEnv+"="+dbURL, helperCallsEnv+"="+calls)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		if !lines.Scan() || lines.Text() != "blocked" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper said %q, want blocked; stderr:\n%s", lines.Text(), stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var exit *exec.ExitError
		if err := cmd.Wait(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("helper ended with %v, want killed by SIGKILL", err)
		}

		got := mustGet(t, s, j.ID)
		if got.Status != jobs.StatusRunning || got.Succeeded != 3 || got.LeaseUntil.IsZero() {
			t.Fatalf("after the kill: %+v; want running with 3 done and the dead worker's lease", got)
		}
		if ran, err := s.Poll(t.Context()); ran || err != nil {
			t.Fatalf("Poll within the dead worker's lease = %v, %v; want nothing", ran, err)
		}
		mu.Lock()
		offset = helperLease + time.Second
		mu.Unlock()
		if ran, err := s.Poll(t.Context()); !ran || err != nil {
			t.Fatalf("Poll after the lease = %v, %v", ran, err)
		}
		if got := mustGet(t, s, j.ID); got.Status != jobs.StatusSucceeded || got.Succeeded != 8 || got.Failed != 0 {
			t.Errorf("finished: %+v", got)
		}

		b, err := os.ReadFile(calls)
		if err != nil {
			t.Fatal(err)
		}
		dead := strings.Fields(string(b))
		if strings.Join(dead, " ") != "u1 u2 u3 u4" {
			t.Errorf("the killed replica ran %v, want u1 to u4", dead)
		}
		if got, want := strings.Join(rec.order, " "), "u4 u5 u6 u7 u8"; got != want {
			t.Errorf("the new service ran %q, want %q (the item in flight again, then the rest; none done before)", got, want)
		}
	})
}
