package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// serveHelperEnv, when set in a subprocess of the test binary, makes
// TestServeHelperProcess run `crmgate serve` with the process environment.
const serveHelperEnv = "CRMGATETEST_SERVE_HELPER"

// TestServeHelperProcess is `crmgate serve` in a subprocess, for tests that
// kill the gateway; it does nothing in a normal test run.
func TestServeHelperProcess(t *testing.T) {
	if os.Getenv(serveHelperEnv) != "1" {
		return
	}
	err := run(context.Background(), []string{"serve"}, os.Environ(), nil, os.Stdout, os.Stderr)
	fmt.Fprintln(os.Stderr, "serve returned:", err)
	os.Exit(1) // serve only returns on an error here: it is killed
}

// TestOutboxSurvivesKill is the outbox scenario of the lifecycle issue:
// the gateway is killed with SIGKILL while lifecycle events are pending
// and Dataverse is down; after a restart with Dataverse back, every event
// arrives, counted by the emulator (duplicates are allowed: delivery is at
// least once).
func TestOutboxSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	const (
		tenant   = "emulator.local"
		clientID = "00000000-0000-4000-8000-00000000c0de"
		secret   = "kill-test-secret"
		action   = "alex_WPUserCreated"
		users    = 6
	)
	em := dataversetest.NewServer(dataversetest.Options{TenantID: tenant,
		Clients: []dataversetest.Client{{ID: clientID, Secret: secret}},
		Actions: map[string]dataversetest.Action{action: {}}})
	defer em.Close()
	em.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable}) // Dataverse is down

	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("routes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\n"+
		"dataverse:\n  lifecycle_actions:\n    created: {name: "+action+", params: {UserId: id, Email: email}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ops := freeAddr(t)
	env := baseEnv(t, dir,
		"CRMGATE_POLICY_FILE="+policy, "CRMGATE_LISTEN="+freeAddr(t), "CRMGATE_OPS_LISTEN="+ops, "CRMGATE_SHUTDOWN_DELAY=0s",
		"CRMGATE_DATAVERSE_URL="+em.URL, "CRMGATE_DATAVERSE_AUTHORITY_HOST="+em.URL, "CRMGATE_DATAVERSE_TENANT_ID="+tenant,
		"CRMGATE_DATAVERSE_CLIENT_ID="+clientID, "CRMGATE_DATAVERSE_CLIENT_SECRET="+secret, "CRMGATE_DATAVERSE_TIMEOUT=2s",
		// Fast enough for a test: a crash costs at most a 3s lease, a failure at most 1s.
		"CRMGATE_OUTBOX_POLL_INTERVAL=100ms", "CRMGATE_OUTBOX_MAX_BACKOFF=1s", "CRMGATE_OUTBOX_LEASE=3s")
	deadline := time.Now().Add(50 * time.Second)
	waitFor := func(what string, cond func() bool, logs fmt.Stringer) {
		t.Helper()
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s; gateway logs:\n%s", what, logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The first gateway, a real process.
	logs := &syncBuffer{}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(env, serveHelperEnv+"=1")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	waitFor("the gateway is ready", func() bool {
		r, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}, logs)

	// Users created on the same database by another process (the CLI):
	// their created events wait in the outbox.
	for i := range users {
		name := fmt.Sprintf("user%d", i)
		if err := run(context.Background(), []string{"users", "create", "--username", name, "--email", name + "@example.test"},
			env, strings.NewReader(""), io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	var list bytes.Buffer
	if err := run(context.Background(), []string{"users", "list", "--json"}, env, nil, &list, io.Discard); err != nil {
		t.Fatal(err)
	}
	var listed []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(list.Bytes(), &listed); err != nil || len(listed) != users {
		t.Fatalf("users list --json: %v %s", err, list.String())
	}

	// The gateway tries to deliver, Dataverse answers 503 until the
	// client's circuit breaker opens (so one event is still untried), and
	// the gateway is killed without any chance to clean up.
	waitFor("the breaker opened", func() bool { return em.Requests("POST "+action) >= crmclient.DefaultBreakerFailures }, logs)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	if n := len(em.ActionCalls(action)); n != 0 {
		t.Fatalf("%d calls reached the action while Dataverse was down", n)
	}
	attempts := em.Requests("POST " + action)

	// Dataverse recovers; a new gateway (in this process) delivers everything.
	em.SetFaults(dataversetest.Faults{})
	logs2 := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env, nil, io.Discard, logs2) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second serve returned %v", err)
		}
	}()
	arrived := func() map[string]int {
		got := map[string]int{}
		for _, call := range em.ActionCalls(action) {
			if id, ok := call["UserId"].(string); ok {
				got[id]++
			}
		}
		return got
	}
	waitFor("every created event arrived", func() bool {
		got := arrived()
		for _, u := range listed {
			if got[u.ID] == 0 {
				return false
			}
		}
		return true
	}, logs2)
	got := arrived()
	if len(got) != users {
		t.Errorf("calls for %d users, want %d: %v", len(got), users, got)
	}
	t.Logf("%d failed attempts before the kill; after the restart %d calls for %d events", attempts, len(em.ActionCalls(action)), users)
}
