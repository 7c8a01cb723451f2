package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/proxy"
)

func TestOpsHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "crmgate_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	ready := &proxy.Readiness{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy.OpsHandler(ready, reg)}
	go srv.Serve(l)
	defer srv.Close()
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+l.Addr().String()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	// The zero Readiness is not ready; /livez answers all the same.
	if code, _ := get("GET", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before SetReady(true) = %d, want 503", code)
	}
	if code, body := get("GET", "/livez"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/livez = %d %q", code, body)
	}
	ready.SetReady(true)
	if code, body := get("GET", "/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	ready.SetReady(false)
	if code, _ := get("GET", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after SetReady(false) = %d, want 503", code)
	}
	if code, body := get("GET", "/metrics"); code != http.StatusOK || !strings.Contains(body, "crmgate_test_total 3") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, _ := get("POST", "/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d, want 405", code)
	}
	if code, _ := get("GET", "/"); code != http.StatusNotFound {
		t.Errorf("GET / = %d, want 404", code)
	}
}

// TestListenersDrain is the shutdown sequence on real listeners: when ctx
// ends, /readyz answers 503 at once while the public listener keeps
// serving for ShutdownDelay, new connections included, each answer with
// Connection: close so kept-alive clients reconnect; then the listener
// refuses connections, the in-flight request finishes, the ops listener
// answers 503 until it has, and Serve returns nil.
func TestListenersDrain(t *testing.T) {
	const delay = 400 * time.Millisecond
	const slow = 1200 * time.Millisecond
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slowStarted := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(slowStarted)
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(slow)
		}
		_, _ = io.WriteString(w, "served "+r.URL.Path)
	})
	ready := &proxy.Readiness{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- proxy.Listeners{Public: pub, Ops: ops, PublicHandler: handler, OpsHandler: proxy.OpsHandler(ready, prometheus.NewRegistry()),
			Ready: ready, ShutdownDelay: delay, ShutdownTimeout: 5 * time.Second}.Serve(ctx)
	}()

	pubURL, opsURL := "http://"+pub.Addr().String(), "http://"+ops.Addr().String()
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	readyz := func() int {
		resp, err := fresh.Get(opsURL + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for deadline := time.Now().Add(5 * time.Second); readyz() != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A kept-alive client: which connection each answer came on, and
	// whether it said Connection: close.
	keep := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	get := func(path string) (local string, closed bool, err error) {
		req, _ := http.NewRequest(http.MethodGet, pubURL+path, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() },
		}))
		resp, err := keep.Do(req)
		if err != nil {
			return "", false, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "served "+path {
			t.Errorf("GET %s: %q", path, b)
		}
		return local, resp.Close, nil
	}
	first, closed, err := get("/a")
	if err != nil || closed {
		t.Fatalf("before shutdown: %v, Connection: close %v", err, closed)
	}
	if again, _, _ := get("/b"); again != first {
		t.Fatalf("the connection was not kept alive before shutdown: %s then %s", first, again)
	}

	slowDone := make(chan error, 1)
	go func() {
		resp, err := fresh.Get(pubURL + "/slow")
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && string(b) != "served /slow" {
				err = errors.New("slow answer " + string(b))
			}
		}
		slowDone <- err
	}()
	<-slowStarted
	stopped := time.Now()
	cancel()
	// Not ready at once, still serving: on the kept-alive connection with
	// Connection: close, then on a new one.
	for deadline := time.Now().Add(time.Second); readyz() != http.StatusServiceUnavailable; {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still not 503 a second after the shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if time.Since(stopped) > delay/2 {
		t.Fatalf("/readyz answered 503 only %v after the shutdown began", time.Since(stopped))
	}
	local, closed, err := get("/c")
	if err != nil || local != first || !closed {
		t.Fatalf("during the delay, on the kept-alive connection: %v, connection %s (first %s), Connection: close %v", err, local, first, closed)
	}
	local, closed, err = get("/d")
	if err != nil || local == first || !closed {
		t.Fatalf("during the delay, on a new connection: %v, connection %s (first %s), Connection: close %v", err, local, first, closed)
	}

	// After the delay the listener refuses, the ops listener still answers
	// 503 while the slow request finishes.
	for deadline := stopped.Add(delay + time.Second); ; {
		_, err := fresh.Get(pubURL + "/e")
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the public listener still accepts %v after the shutdown began (%v)", time.Since(stopped), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if refused := time.Since(stopped); refused < delay {
		t.Fatalf("the public listener refused %v after the shutdown began, before the delay %v", refused, delay)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the slow request ended before the listener closed: %v", err)
	default:
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while the slow request drains = %d, want 503", code)
	}
	if err := <-slowDone; err != nil {
		t.Fatalf("the in-flight request did not complete: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve returned %v after a clean shutdown", err)
	}
	if _, err := fresh.Get(opsURL + "/readyz"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("the ops listener after Serve returned: %v, want connection refused", err)
	}
}

// TestListenersShutdownTimeout: a request still running when
// ShutdownTimeout ends is cut off, and Serve returns all the same.
func TestListenersShutdownTimeout(t *testing.T) {
	pub, _ := net.Listen("tcp", "127.0.0.1:0")
	ops, _ := net.Listen("tcp", "127.0.0.1:0")
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
	})
	ready := &proxy.Readiness{}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- proxy.Listeners{Public: pub, Ops: ops, PublicHandler: handler, OpsHandler: proxy.OpsHandler(ready, prometheus.NewRegistry()),
			Ready: ready, ShutdownTimeout: 300 * time.Millisecond}.Serve(ctx)
	}()
	readErr := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + pub.Addr().String() + "/hang")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		readErr <- err
	}()
	<-started
	stopped := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after the shutdown timeout")
	}
	if took := time.Since(stopped); took < 300*time.Millisecond {
		t.Errorf("Serve returned %v after the shutdown began, before the timeout", took)
	}
	if err := <-readErr; err == nil {
		t.Error("the request cut off at the timeout read a complete answer")
	}
}
