package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/proxy"
)

// bodyHarness is a gateway with short body timeouts in front of an
// upstream that reads the whole body, reports how much arrived and, for
// /public/slow, thinks for a while before it answers.
func bodyHarness(t *testing.T, gatewayBody, uploadIdle time.Duration) (*harness, *uploadLog) {
	t.Helper()
	ul := &uploadLog{}
	h := newHarness(t, harnessConfig{
		mutate: func(o *proxy.Options) { o.GatewayBodyTimeout, o.UploadIdleTimeout = gatewayBody, uploadIdle },
		upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			ul.add(n, err)
			if r.URL.Path == "/public/slow" {
				time.Sleep(2 * uploadIdle)
			}
			fmt.Fprintf(w, "got %d bytes", n)
		}),
	})
	return h, ul
}

type uploadLog struct {
	mu   sync.Mutex
	n    []int64
	errs []error
}

func (u *uploadLog) add(n int64, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n, u.errs = append(u.n, n), append(u.errs, err)
}

// last is the size and read error of the last body the upstream read.
func (u *uploadLog) last() (int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.n) == 0 {
		return 0, nil
	}
	return u.n[len(u.n)-1], u.errs[len(u.errs)-1]
}

// rawRequest writes head to a new connection to h, then the body parts with
// pause between them, and reads one response.
func rawRequest(t *testing.T, h *harness, head string, pause time.Duration, parts ...string) (*http.Response, string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a hung test fails instead of hanging
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		if i > 0 {
			time.Sleep(pause)
		}
		if _, err := io.WriteString(c, p); err != nil {
			break // the gateway may close a connection it timed out
		}
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), c
}

// TestSlowBodiesTimeOut: a body that stalls is answered 408 on the
// gateway's own forms and APIs and on proxied uploads; a slow but steady
// upload, a complete body followed by a slow upstream, and the next request
// on the same connection are not affected.
func TestSlowBodiesTimeOut(t *testing.T) {
	const gatewayBody, uploadIdle = time.Second, 800 * time.Millisecond
	h, ul := bodyHarness(t, gatewayBody, uploadIdle)
	host := strings.TrimPrefix(h.gw.URL, "http://")
	form := func(path string, length int) string {
		return "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", length)
	}

	t.Run("gateway form stalls", func(t *testing.T) {
		for _, path := range []string{"/.auth/signin", "/.auth/signout", "/.auth/profile"} {
			resp, body, _ := rawRequest(t, h, form(path, 200), 0, "login=ana&pass")
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "too long") {
				t.Errorf("POST %s with a stalled body: %d %q", path, resp.StatusCode, body)
			}
		}
	})
	t.Run("REST API body stalls", func(t *testing.T) {
		key, _, err := h.svc.APIKeys.CreateAPIKey(context.Background(), "slow", []string{permissions.BindingsWrite}, time.Time{}, "test")
		if err != nil {
			t.Fatal(err)
		}
		head := "POST /.auth/api/users/bindings HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + key +
			"\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
		resp, body, _ := rawRequest(t, h, head, 0, `{"bindings":[`)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, `"body_timeout"`) {
			t.Errorf("stalled REST API body: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("gateway form chunked and stalls", func(t *testing.T) {
		head := "POST " + "/.auth" + "/signin HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
		resp, _, _ := rawRequest(t, h, head, 0, "5\r\nlogin\r\n")
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("chunked stalled sign-in: %d", resp.StatusCode)
		}
	})
	t.Run("gateway form slow but in time", func(t *testing.T) {
		b := "login=nobody&password=wrong+password"
		resp, body, _ := rawRequest(t, h, form("/.auth"+"/signin", len(b)), gatewayBody/8, b[:10], b[10:20], b[20:])
		if resp.StatusCode == http.StatusRequestTimeout {
			t.Errorf("a sign-in body that arrived in time: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("upload stalls", func(t *testing.T) {
		resp, _, _ := rawRequest(t, h, form("/public/upload", 1000), 0, strings.Repeat("x", 100))
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled upload: %d", resp.StatusCode)
		}
		// The upstream never gets the whole body: depending on how far
		// the transport got, it sees a cut-off body or no request.
		if n, err := ul.last(); n >= 1000 {
			t.Errorf("the upstream read %d bytes, err %v; want a cut-off body", n, err)
		}
	})
	t.Run("upload slow but steady", func(t *testing.T) {
		parts := make([]string, 10)
		for i := range parts {
			parts[i] = strings.Repeat("y", 100)
		}
		// 10 parts, a fifth of the idle timeout apart: twice the
		// idle timeout in all.
		resp, body, c := rawRequest(t, h, form("/public/upload", 1000), uploadIdle/5, parts...)
		if resp.StatusCode != http.StatusOK || body != "got 1000 bytes" {
			t.Fatalf("steady upload: %d %q", resp.StatusCode, body)
		}
		// The same connection, after waiting longer than the idle
		// timeout: no deadline is left behind.
		time.Sleep(2 * uploadIdle)
		if _, err := io.WriteString(c, "GET /public/x HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp2, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp2.StatusCode != http.StatusOK {
			t.Fatalf("next request on the connection: %v %v", resp2, err)
		}
		resp2.Body.Close()
	})
	t.Run("complete body, slow upstream", func(t *testing.T) {
		// The upstream answers 2 idle timeouts after the body ended: the
		// cleared deadline must not cancel the request meanwhile.
		resp, body, _ := rawRequest(t, h, form("/public/slow", 5), 0, "hello")
		if resp.StatusCode != http.StatusOK || body != "got 5 bytes" {
			t.Errorf("slow upstream after a complete body: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("no body", func(t *testing.T) {
		// A GET whose upstream is slow has no body deadline at all.
		resp, body, _ := rawRequest(t, h, "GET /public/slow HTTP/1.1\r\nHost: "+host+"\r\n\r\n", 0)
		if resp.StatusCode != http.StatusOK || body != "got 0 bytes" {
			t.Errorf("slow GET: %d %q", resp.StatusCode, body)
		}
	})
}

// TestBodyTimeoutsOff: with both timeouts zero a stalled body is waited for
// (the client's own timeout ends it here), as documented.
func TestBodyTimeoutsOff(t *testing.T) {
	h, _ := bodyHarness(t, 0, 0)
	host := strings.TrimPrefix(h.gw.URL, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /public/upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 10\r\n\r\nabc", host)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the gateway answered a body it was still waiting for")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "defghij")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the body arrived: %v %v", resp, err)
	}
}
