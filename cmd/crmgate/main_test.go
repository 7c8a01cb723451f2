package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/config"
)

// baseEnv is a valid configuration with its data under dir.
func baseEnv(t *testing.T, dir string, extra ...string) []string {
	t.Helper()
	ck, _ := config.GenerateCookieKey()
	sk, _ := config.GenerateSigningKey()
	return append([]string{
		"CRMGATE_PUBLIC_URL=http://127.0.0.1:1",
		"CRMGATE_UPSTREAM_URL=http://127.0.0.1:2",
		"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(dir, "db"),
		"CRMGATE_COOKIE_KEYS=" + ck,
		"CRMGATE_SIGNING_KEYS=" + sk,
		"CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192",
		"CRMGATE_PASSWORD_ARGON2_ITERATIONS=1",
	}, extra...)
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config"}, baseEnv(t, dir), nil, &out, io.Discard); err != nil {
		t.Fatalf("valid config: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "configuration is valid") {
		t.Fatalf("output: %s", out.String())
	}

	bad := filepath.Join(dir, "policy.yaml")
	os.WriteFile(bad, []byte("upstreams:\n  - name: app\n    url: http://127.0.0.1:3000\nroutes:\n  - name: home\n    paths: [\"/\"]\n    access: sometimes\n"), 0o600)
	out.Reset()
	err := run(context.Background(), []string{"check-config"},
		baseEnv(t, dir, "CRMGATE_POLICY_FILE="+bad, "CRMGATE_LISTEN=nope", "CRMGATE_SESSION_IDLE_TIMEOUT=0s", "CRMGATE_TYPO=1"), nil, &out, io.Discard)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"policy.yaml:7", "CRMGATE_LISTEN", "CRMGATE_SESSION_IDLE_TIMEOUT", "warning: CRMGATE_TYPO"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestServeRefusesBadPolicyNamingTheLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "policy.yaml")
	os.WriteFile(bad, []byte("upstreams:\n  - name: app\n    url: http://127.0.0.1:3000\nroutes:\n  - name: home\n    paths: [\"/\"]\n    access: authenticated\n    condition: 'user.nope == 1'\n"), 0o600)
	err := run(context.Background(), []string{"serve"}, baseEnv(t, dir, "CRMGATE_POLICY_FILE="+bad), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "policy.yaml:8") {
		t.Fatalf("serve with a bad policy: %v", err)
	}
	err = run(context.Background(), []string{"serve"}, []string{"CRMGATE_PUBLIC_URL=x"}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CRMGATE_COOKIE_KEYS") || !strings.Contains(err.Error(), "CRMGATE_PUBLIC_URL") {
		t.Fatalf("serve with a bad config: %v", err)
	}
}

func TestUnknownCommand(t *testing.T) {
	var ue usageError
	if err := run(context.Background(), []string{"frobnicate"}, nil, nil, io.Discard, io.Discard); !errors.As(err, &ue) {
		t.Fatalf("unknown command: %v", err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, nil, nil, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "crmgate ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
}

func TestGenKeysOutputIsValidConfig(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"gen-keys"}, nil, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	first, rest, _ := strings.Cut(out.String(), "\n")
	cookie := strings.TrimPrefix(first, "CRMGATE_COOKIE_KEYS=")
	pemStart := strings.Index(rest, "-----BEGIN")
	if _, err := (config.CookieConfig{Keys: cookie}).DecodeKeys(); err != nil || pemStart < 0 {
		t.Fatalf("cookie key: %v", err)
	}
	if _, err := (config.SigningConfig{Keys: rest[pemStart:]}).PrivateKeys(); err != nil {
		t.Fatalf("signing key: %v", err)
	}
}

func TestUsersCommands(t *testing.T) {
	dir := t.TempDir()
	// Only the database settings are needed: recovery works with a broken rest.
	env := []string{"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(dir, "db"), "CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192"}
	users := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users"}, args...), env, strings.NewReader(stdin), &out, io.Discard)
		return out.String(), err
	}
	out, err := users("s3cret-password!\n", "create", "--username", "root", "--email", "root@example.test", "--roles", "admin", "--password-stdin")
	if err != nil || !strings.Contains(out, "created user root") || strings.Contains(out, "s3cret") {
		t.Fatalf("create: %v %q", err, out)
	}
	out, err = users("", "create", "--username", "alice", "--email", "alice@example.test")
	if err != nil || !regexp.MustCompile(`password: \S{16,}`).MatchString(out) {
		t.Fatalf("create with a generated password: %v %q", err, out)
	}
	if _, err := users("", "create", "--username", "ROOT", "--email", "other@example.test"); err == nil {
		t.Fatal("duplicate username in another case accepted")
	}
	if _, err := users("", "create", "--username", "bad name", "--email", "x@example.test"); err == nil {
		t.Fatal("invalid username accepted")
	}
	if _, err := users("", "set-roles", "--login", "alice", "--roles", "admin,editor"); err != nil {
		t.Fatal(err)
	}
	if _, err := users("", "disable", "--login", "alice@EXAMPLE.test"); err != nil {
		t.Fatal(err)
	}
	out, err = users("", "list")
	if err != nil || !regexp.MustCompile(`alice\s+alice@example.test\s+disabled\s+admin,editor`).MatchString(out) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if _, err := users("", "enable", "--login", "alice"); err != nil {
		t.Fatal(err)
	}
	// root and alice are the break-glass admins: one may go, not both.
	if _, err := users("", "disable", "--login", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := users("", "set-roles", "--login", "alice", "--roles", "editor"); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
		t.Fatalf("demoting the last break-glass admin from the CLI: %v", err)
	}
	if _, err := users("", "enable", "--login", "root"); err != nil {
		t.Fatal(err)
	}
	out, err = users("", "set-password", "--login", "alice")
	if err != nil || !strings.Contains(out, "password: ") {
		t.Fatalf("set-password: %v %q", err, out)
	}
	if _, err := users("", "set-password", "--login", "nobody"); err == nil {
		t.Fatal("set-password of an unknown user succeeded")
	}
	var ue usageError
	if _, err := users("", "set-roles"); !errors.As(err, &ue) {
		t.Fatalf("missing --login: %v", err)
	}
	if _, err := users("", "explode"); !errors.As(err, &ue) {
		t.Fatalf("unknown users command: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeEndToEnd runs the real serve command on real listeners, signs in,
// reaches the upstream, stops gracefully, and checks that the logs hold no
// password, cookie or key.
func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Current-User-Email"))
	})}
	ul, _ := net.Listen("tcp", "127.0.0.1:0")
	go upstream.Serve(ul)
	defer upstream.Close()

	pub, ops := freeAddr(t), freeAddr(t)
	env := baseEnv(t, dir, "CRMGATE_LISTEN="+pub, "CRMGATE_OPS_LISTEN="+ops, "CRMGATE_SHUTDOWN_DELAY=0s")
	for i, kv := range env {
		switch {
		case strings.HasPrefix(kv, "CRMGATE_PUBLIC_URL="):
			env[i] = "CRMGATE_PUBLIC_URL=http://" + pub
		case strings.HasPrefix(kv, "CRMGATE_UPSTREAM_URL="):
			env[i] = "CRMGATE_UPSTREAM_URL=http://" + ul.Addr().String()
		}
	}
	const password = "correct horse battery staple"
	if err := run(context.Background(), []string{"users", "create", "--username", "alice", "--email", "alice@example.test", "--password-stdin"},
		env, strings.NewReader(password+"\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}

	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env, nil, io.Discard, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, err := http.Get("http://" + ops + "/readyz"); err == nil && r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	status, body, csrfToken := httpSignIn(t, c, "http://"+pub, "/private", "alice", password)
	if body != "hello alice@example.test" {
		t.Fatalf("after sign-in: %d %q", status, body)
	}
	cookies := jar.Cookies(&url.URL{Scheme: "http", Host: pub})

	// The user.created event written by `users create` is drained by the
	// outbox worker (marked done: no Dataverse delivery is configured).
	deadline = time.Now().Add(10 * time.Second)
	for {
		r, err := http.Get("http://" + ops + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if strings.Contains(string(m), "crmgate_outbox_pending_events 0") && strings.Contains(string(m), `crmgate_outbox_skipped_total{type="user.created"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox not drained:\n%s", m)
		}
		time.Sleep(20 * time.Millisecond)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve returned %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"request"`) || !strings.Contains(out, `"msg":"signed in"`) {
		t.Fatalf("expected JSON access and sign-in logs:\n%s", out)
	}
	secrets := []string{password, "csrf_token", csrfToken}
	for _, ck := range cookies {
		secrets = append(secrets, ck.Value)
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "CRMGATE_COOKIE_KEYS=") || strings.HasPrefix(kv, "CRMGATE_SIGNING_KEYS=") {
			v := strings.SplitN(kv, "=", 2)[1]
			secrets = append(secrets, v[len(v)/2-8:len(v)/2+8])
		}
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("logs contain a secret %.12q…", s)
		}
	}
}

// httpSignIn signs login in as a browser would with c (which keeps the
// cookies): it asks for base+start, must be sent to the sign-in page, and
// posts the form with its CSRF token, to come back to start. It returns
// the status and body of where the sign-in lands, and the form's token.
func httpSignIn(t *testing.T, c *http.Client, base, start, login, password string) (status int, body, csrfToken string) {
	t.Helper()
	resp, err := c.Get(base + start)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(string(page))
	if resp.Request.URL.Path != "/.auth/signin" || m == nil {
		t.Fatalf("not sent to sign in: %s %d", resp.Request.URL, resp.StatusCode)
	}
	form := url.Values{"login": {login}, "password": {password}, "csrf_token": {m[1]}, "redirect_url": {start}}
	req, _ := http.NewRequest(http.MethodPost, base+"/.auth/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	landed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(landed), m[1]
}
