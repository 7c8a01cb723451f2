package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckConfigReportsEverythingOnce: a variable that does not parse does
// not stop check-config; the other settings' problems and the policy
// file's are reported with it, each once, and serve refuses the same.
func TestCheckConfigReportsEverythingOnce(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("upstreams:\n  - name: app\n    url: http://127.0.0.1:3000\nroutes:\n  - name: r\n    paths: [\"/**\"]\n    access: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := baseEnv(t, dir, "CRMGATE_POLICY_FILE="+pol,
		"CRMGATE_SESSION_IDLE_TIMEOUT=soon", "CRMGATE_LOG_FORMAT=xml", "CRMGATE_SIGNIN_MAX_FAILURES=many")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard); err == nil {
		t.Fatalf("check-config accepted it:\n%s", out.String())
	}
	for _, want := range []string{"CRMGATE_SESSION_IDLE_TIMEOUT", "CRMGATE_LOG_FORMAT", "CRMGATE_SIGNIN_MAX_FAILURES", "sometimes"} {
		if n := strings.Count(out.String(), want); n != 1 {
			t.Errorf("%q reported %d times, want once:\n%s", want, n, out.String())
		}
	}
	if err := run(context.Background(), []string{"serve"}, env, nil, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "CRMGATE_LOG_FORMAT") || !strings.Contains(err.Error(), "CRMGATE_SESSION_IDLE_TIMEOUT") {
		t.Errorf("serve: %v, want both problems", err)
	}
}

// TestUpstreamLoopRefused: an upstream that is the gateway's own listener,
// ops listener or public address is refused by check-config and serve,
// whether it comes from the policy file or CRMGATE_UPSTREAM_URL, and also
// when other settings are wrong too.
func TestUpstreamLoopRefused(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("upstreams:\n  - name: self\n    url: http://localhost:8080/\n  - name: ops\n    url: http://127.0.0.1:9090\n    path_prefix: /ops\nroutes:\n  - name: r\n    paths: [\"/**\"]\n    access: authenticated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  []string
		want []string
	}{
		{"policy upstreams", []string{"CRMGATE_POLICY_FILE=" + pol, "CRMGATE_UPSTREAM_URL="}, []string{`upstream "self"`, "CRMGATE_LISTEN", `upstream "ops"`, "CRMGATE_OPS_LISTEN"}},
		{"upstream URL", []string{"CRMGATE_UPSTREAM_URL=http://[::1]:8080"}, []string{"CRMGATE_LISTEN"}},
		{"public URL", []string{"CRMGATE_PUBLIC_URL=https://gw.example.com", "CRMGATE_UPSTREAM_URL=https://gw.example.com/"}, []string{"CRMGATE_PUBLIC_URL"}},
		{"with other problems", []string{"CRMGATE_UPSTREAM_URL=http://127.0.0.1:8080", "CRMGATE_LOG_FORMAT=xml"}, []string{"CRMGATE_LISTEN", "CRMGATE_LOG_FORMAT"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv(t, t.TempDir(), append([]string{"CRMGATE_LISTEN=:8080", "CRMGATE_OPS_LISTEN=:9090"}, tt.env...)...)
			var out bytes.Buffer
			if err := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard); err == nil {
				t.Fatalf("check-config accepted it:\n%s", out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("check-config output lacks %q:\n%s", w, out.String())
				}
			}
			// serve stops at the settings' problems before it compiles the
			// policy: it names the last of them, check-config all.
			if err := run(context.Background(), []string{"serve"}, env, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want[len(tt.want)-1]) {
				t.Errorf("serve: %v, want %q", err, tt.want[len(tt.want)-1])
			}
		})
	}
	// The default listeners with an upstream elsewhere pass.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config"}, baseEnv(t, dir, "CRMGATE_UPSTREAM_URL=http://127.0.0.1:3000"), nil, &out, io.Discard); err != nil {
		t.Errorf("an upstream on another port: %v\n%s", err, out.String())
	}
}

// TestServeLogsConfiguration: serve logs one line with the effective
// configuration (what differs from the defaults, secrets only as set) and
// creates its SQLite file readable by its owner only.
func TestServeLogsConfiguration(t *testing.T) {
	dir := t.TempDir()
	pub, ops := freeAddr(t), freeAddr(t)
	env := baseEnv(t, dir, "CRMGATE_LISTEN="+pub, "CRMGATE_OPS_LISTEN="+ops, "CRMGATE_SHUTDOWN_DELAY=0s")
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env, nil, io.Discard, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, err := http.Get("http://" + ops + "/readyz"); err == nil && r.StatusCode == 200 {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "configuration" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d configuration lines, want 1:\n%s", len(lines), logs.String())
	}
	settings, _ := lines[0]["settings"].(map[string]any)
	if lines[0]["database"] != "sqlite" || lines[0]["dataverse"] != false || settings["CRMGATE_LISTEN"] != pub ||
		settings["CRMGATE_COOKIE_KEYS"] != "(secret)" || settings["CRMGATE_PASSWORD_ARGON2_ITERATIONS"] != "1" {
		t.Errorf("configuration line: %v", lines[0])
	}
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); (k == "CRMGATE_COOKIE_KEYS" || k == "CRMGATE_SIGNING_KEYS") && strings.Contains(logs.String(), v[:20]) {
			t.Errorf("the logs show %s", k)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "db")); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", st.Mode().Perm())
	}
}
