package proxy_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxForwardAuth is the README's nginx snippet: auth_request to
// /.auth/verify, the identity copied with auth_request_set, and 401 turned
// into a redirect to the sign-in page the gateway named.
const nginxForwardAuth = `daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    location = /_crmgate_verify {
      internal;
      proxy_pass http://%[3]s/.auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
    }
    location / {
      auth_request /_crmgate_verify;
      auth_request_set $crmgate_user $upstream_http_x_current_user;
      auth_request_set $crmgate_email $upstream_http_x_current_user_email;
      auth_request_set $crmgate_location $upstream_http_location;
      proxy_set_header X-Current-User $crmgate_user;
      proxy_set_header X-Current-User-Email $crmgate_email;
      error_page 401 = @crmgate_signin;
      proxy_pass http://%[4]s;
    }
    location @crmgate_signin {
      return 302 $crmgate_location;
    }
  }
}
`

// TestVerifyRealNginx runs a real nginx with auth_request in front of a
// real upstream, asking the gateway: signed out is redirected to sign in,
// signed in passes with the identity at the upstream (a forged one never),
// forbidden is 403.
func TestVerifyRealNginx(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			bin = "/usr/sbin/nginx"
		} else if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not installed")
		} else {
			t.Skip("nginx is not installed")
		}
	}
	h := newHarness(t, harnessConfig{mutate: trustLoopback})
	h.createUser("ann", "ann@example.test", "correct horse battery")
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	cookie := h.sessionCookie(ann)

	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "nginx.conf")
	text := fmt.Sprintf(nginxForwardAuth, dir, port, h.gw.Listener.Addr().String(), strings.TrimPrefix(h.up.srv.URL, "http://"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	// No pipes: the worker inherits them. The master is stopped with
	// SIGTERM (fast shutdown), which stops its worker too.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", base[len("http://"):], time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, signedIn bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("X-Current-User", "forged")
		req.Header.Set("X-Current-User-Email", "boss@example.test")
		if signedIn {
			req.AddCookie(cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// Signed out: nginx redirects to the gateway's sign-in page.
	resp := get("/account/x", false)
	if resp.StatusCode != 302 || !strings.HasPrefix(resp.Header.Get("Location"), h.gw.URL+"/.auth/signin") {
		t.Fatalf("signed out: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if h.up.count() != 0 {
		t.Fatal("a signed-out request reached the upstream")
	}
	// Signed out, public: passes with no identity (the forged one dropped).
	if resp := get("/public/a", false); resp.StatusCode != 200 {
		t.Fatalf("public: %d", resp.StatusCode)
	}
	if got := h.up.last(t).Header; got.Get("X-Current-User") != "" || got.Get("X-Current-User-Email") != "" {
		t.Fatalf("public: identity at the upstream: %v", got)
	}
	// Signed in: the upstream gets the gateway's identity.
	if resp := get("/account/x", true); resp.StatusCode != 200 {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	got := h.up.last(t)
	if got.Path != "/account/x" || got.Header.Get("X-Current-User-Email") != "ann@example.test" {
		t.Fatalf("signed in: upstream saw %s %v", got.Path, got.Header)
	}
	if claims := h.verifyToken(got.Header.Get("X-Current-User"), strings.ToLower(h.up.srv.URL)); claims["email"] != "ann@example.test" {
		t.Fatalf("signed in: claims %v", claims)
	}
	// Forbidden: 403 from nginx, nothing upstream.
	n := h.up.count()
	if resp := get("/admin/x", true); resp.StatusCode != 403 {
		t.Fatalf("forbidden: %d", resp.StatusCode)
	}
	if h.up.count() != n {
		t.Fatal("a forbidden request reached the upstream")
	}
}
