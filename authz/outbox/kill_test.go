package outbox_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/authztest"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
)

// helperDBEnv names the database of TestOutboxHelperProcess; set only in
// the subprocess of TestOutboxSurvivesKill.
const helperDBEnv = "CRMGATE_OUTBOX_HELPER_DB"

// helperUsers is how many users the helper creates before its worker starts.
const helperUsers = 20

// TestOutboxHelperProcess is the gateway that TestOutboxSurvivesKill
// kills; it does nothing in a normal test run. It creates and updates
// users (enqueuing their events), runs a worker against a Dataverse that is
// down (five failures, then a call that hangs), prints "blocked", keeps
// creating users, prints "late" after the first one, and waits to be killed.
func TestOutboxHelperProcess(t *testing.T) {
	path := os.Getenv(helperDBEnv)
	if path == "" {
		return
	}
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := wiring.New(db, authztest.Options(wiring.Options{Password: authztest.FastParams, ClientRate: rate.Inf}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range helperUsers {
		name := fmt.Sprintf("early%02d", i)
		if _, err := svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: name, Email: name + "@example.com", Password: authztest.GoodPassword}, "cli:test"); err != nil {
			t.Fatal(err)
		}
		if err := svc.Accounts.SetRoles(ctx, name, []string{"member"}, "cli:test"); err != nil {
			t.Fatal(err)
		}
	}
	calls := 0
	blocked := make(chan struct{})
	d := &deliverer{fn: func(ctx context.Context, e outbox.Event) error {
		calls++
		if calls <= 5 {
			return errors.New("dataverse: 503 service unavailable")
		}
		close(blocked)
		select {} // hangs like a call to a dead server, until the kill
	}}
	w, err := outbox.NewWorker(db, d, outbox.Options{BatchSize: 10, Lease: time.Hour, MinBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	go w.Run(ctx)
	<-blocked
	fmt.Println("blocked")
	for i := 0; ; i++ {
		name := fmt.Sprintf("late%05d", i)
		if _, err := svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: name, Email: name + "@example.com"}, "cli:test"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			fmt.Println("late")
		}
	}
}

// TestOutboxSurvivesKill is the kill test: a gateway process with
// pending events, failing and in-flight deliveries and users being created
// is killed with SIGKILL; a worker started afterwards on the same SQLite
// file delivers every event that was committed, each user's in order, none
// lost.
func TestOutboxSurvivesKill(t *testing.T) {
	if os.Getenv(helperDBEnv) != "" {
		t.Skip("inside the helper process")
	}
	path := filepath.Join(t.TempDir(), "crmgate.db")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOutboxHelperProcess$")
	cmd.Env = append(os.Environ(), helperDBEnv+"="+path)
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
	for _, want := range []string{"blocked", "late"} {
		if !lines.Scan() || lines.Text() != want {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper said %q, want %q; stderr:\n%s", lines.Text(), want, stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want killed by SIGKILL", err)
	}

	// Restart: later than every lease and backoff the dead process set.
	later := time.Now().Add(3 * time.Hour)
	db, err := store.Open(t.Context(), "sqlite:"+path, store.WithNow(func() time.Time { return later }))
	if err != nil {
		t.Fatalf("reopen after the kill: %v", err)
	}
	defer db.Close()
	before, err := db.OutboxEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	retried := 0
	for _, e := range before {
		if e.Attempts > 0 {
			retried++
		}
		if !e.DeliveredAt.IsZero() {
			t.Errorf("event %d delivered while Dataverse was down", e.ID)
		}
	}
	if retried != 10 {
		t.Errorf("%d events were claimed before the kill, want the first batch of 10", retried)
	}

	d := &deliverer{}
	w, err := outbox.NewWorker(db, d, outbox.Options{BatchSize: 50, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		n, err := w.Poll(t.Context())
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		if n == 0 {
			break
		}
	}

	after, err := db.OutboxEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d events before draining, %d after", len(before), len(after))
	}
	delivered := map[int64]int{} // event id -> position of its first delivery
	for i, id := range d.ids() {
		if _, ok := delivered[id]; !ok {
			delivered[id] = i
		}
	}
	for _, e := range after {
		if _, ok := delivered[e.ID]; !ok || e.DeliveredAt.IsZero() {
			t.Errorf("event %d (%s of %s) lost: %+v", e.ID, e.Type, e.UserID, e)
		}
	}
	// Every committed user has its events: creation, and for the early
	// users the role change, delivered in that order.
	users, err := db.ListUsers(t.Context(), authz.UserFilter{Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) <= helperUsers {
		t.Errorf("only %d users: the kill came before any late user", len(users))
	}
	for _, u := range users {
		es, err := db.OutboxEvents(t.Context(), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if u.Username < "late" {
			want = 2
		}
		if len(es) != want || es[0].Type != lifecycle.Created ||
			(want == 2 && (es[1].Type != lifecycle.Updated || delivered[es[1].ID] < delivered[es[0].ID])) {
			t.Errorf("user %s: events %+v", u.Username, es)
		}
	}
	if len(after) != len(users)+helperUsers {
		t.Errorf("%d events for %d users, want %d", len(after), len(users), len(users)+helperUsers)
	}
	t.Logf("%d users, %d events, %d deliveries after the restart", len(users), len(after), len(d.ids()))
}
