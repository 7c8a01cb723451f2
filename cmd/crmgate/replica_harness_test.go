package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// replicaHelperEnv, when set in a subprocess of the test binary, makes
// TestServeReplicaHelperProcess run `crmgate serve` as main does: SIGTERM
// and SIGINT end it gracefully.
const replicaHelperEnv = "CRMGATETEST_REPLICA_HELPER"

// TestServeReplicaHelperProcess is `crmgate serve` in a subprocess, with
// main's signal handling, for the replica tests; it does nothing in a
// normal test run. It prints serve's result and exits 0 when serve
// returned nil (a graceful stop), 1 otherwise.
func TestServeReplicaHelperProcess(t *testing.T) {
	if os.Getenv(replicaHelperEnv) != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, []string{"serve"}, os.Environ(), nil, os.Stdout, os.Stderr)
	fmt.Fprintln(os.Stderr, "serve returned:", err)
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// replica is one `crmgate serve` process of a replicaSet: a subprocess of
// the test binary (TestServeReplicaHelperProcess) with listeners of its
// own.
type replica struct {
	Name string
	Addr string // the public listener, host:port
	Ops  string // the ops listener, host:port
	logs *syncBuffer
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the process's exit, once done is closed
}

// URL returns the address of path (with its query) on the replica's public
// listener.
func (r *replica) URL(path string) string { return "http://" + r.Addr + path }

// Exited reports whether the process has exited and its exit error (nil
// for status 0).
func (r *replica) Exited() (bool, error) {
	if r.running() {
		return false, nil
	}
	return true, r.err
}

// Logs returns what the replica has written to stdout and stderr so far.
func (r *replica) Logs() string { return r.logs.String() }

// running reports whether the process has not exited yet.
func (r *replica) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// ready reports whether the replica's /readyz answers 200.
func (r *replica) ready() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + r.Ops + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Metric returns the value of the ops listener's sample whose line starts
// with series (a metric name with its labels, as /metrics prints it), and
// whether it was there.
func (r *replica) Metric(t *testing.T, series string) (float64, bool) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + r.Ops + "/metrics")
	if err != nil {
		t.Fatalf("%s: metrics: %v", r.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: metrics: %v", r.Name, err)
	}
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("%s: metric %s: %q: %v", r.Name, series, line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// Send sends sig to the process without waiting (SIGSTOP pauses it,
// SIGCONT resumes it).
func (r *replica) Send(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Errorf("%s: signal %v: %v", r.Name, sig, err)
	}
}

// Signal sends sig to the process and waits until it has exited (at most
// 15s).
func (r *replica) Signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if !r.running() {
		return
	}
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("%s: signal %v: %v", r.Name, sig, err)
	}
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("%s did not exit within 15s of %v", r.Name, sig)
	}
}

// replicaSet runs several `crmgate serve` processes with one environment
// (so one database and the same keys), each on listeners of its own. Its
// cleanup kills every process still running and, when the test failed,
// prints every replica's logs.
type replicaSet struct {
	t        *testing.T
	env      []string
	mu       sync.Mutex
	replicas []*replica
}

// startReplicas starts n replicas with env and waits until every one is
// ready. env must not set CRMGATE_LISTEN or CRMGATE_OPS_LISTEN: each
// replica gets free ports of its own.
func startReplicas(t *testing.T, n int, env []string) *replicaSet {
	t.Helper()
	for _, kv := range env {
		if strings.HasPrefix(kv, "CRMGATE_LISTEN=") || strings.HasPrefix(kv, "CRMGATE_OPS_LISTEN=") {
			t.Fatalf("startReplicas: env sets %s; each replica gets its own", kv)
		}
	}
	rs := &replicaSet{t: t, env: env}
	t.Cleanup(rs.cleanup)
	for range n {
		rs.Start()
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range rs.All() {
		rs.WaitReady(r, deadline)
	}
	return rs
}

// Start starts one more replica and returns it without waiting for it to
// be ready.
func (rs *replicaSet) Start() *replica {
	rs.t.Helper()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := &replica{Name: fmt.Sprintf("replica %c", 'A'+len(rs.replicas)), Addr: freeAddr(rs.t), Ops: freeAddr(rs.t),
		logs: &syncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(os.Args[0], "-test.run=^TestServeReplicaHelperProcess$")
	r.cmd.Env = append(append([]string(nil), rs.env...), "CRMGATE_LISTEN="+r.Addr, "CRMGATE_OPS_LISTEN="+r.Ops, replicaHelperEnv+"=1")
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		rs.t.Fatalf("start %s: %v", r.Name, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	rs.replicas = append(rs.replicas, r)
	return r
}

// All returns every replica started so far, running or not, in start order.
func (rs *replicaSet) All() []*replica {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]*replica(nil), rs.replicas...)
}

// WaitReady waits until r's /readyz answers 200; it fails the test at
// deadline or when r exits first.
func (rs *replicaSet) WaitReady(r *replica, deadline time.Time) {
	rs.t.Helper()
	for !r.ready() {
		if !r.running() {
			rs.t.Fatalf("%s exited before it was ready (%v); logs:\n%s", r.Name, r.err, r.Logs())
		}
		if time.Now().After(deadline) {
			rs.t.Fatalf("%s not ready in time; logs:\n%s", r.Name, r.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanup kills every replica still running and prints the logs of all of
// them when the test failed.
func (rs *replicaSet) cleanup() {
	for _, r := range rs.All() {
		if r.running() {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		if rs.t.Failed() {
			rs.t.Logf("----- logs of %s (%s, ops %s) -----\n%s", r.Name, r.Addr, r.Ops, r.Logs())
		}
	}
}
