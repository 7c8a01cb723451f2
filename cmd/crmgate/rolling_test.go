//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/store/storetest"
)

// TestRollingRestart is the rolling restart of the operations issue: two
// `crmgate serve` processes on one PostgreSQL database with the same keys,
// in front of one upstream, behind a load balancer that routes by
// readiness as a Kubernetes Service does. While concurrent clients send
// signed-in and anonymous GETs and POSTs, and slow requests are in flight
// on the replica that restarts, each replica in turn gets SIGTERM, drains,
// exits with status 0 and is started again. No request fails, none reaches
// the upstream twice, /readyz turns 503 before the public listener stops
// accepting, the listener keeps serving for CRMGATE_SHUTDOWN_DELAY after
// SIGTERM, and the slow requests complete after it closed.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gateway processes")
	}
	began := time.Now()
	dbURL := storetest.PostgresURL(t)

	up := &rollingUpstream{seen: map[string]int{}}
	ul := rollingServe(t, up)
	lbl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lbURL := "http://" + lbl.Addr().String()

	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("routes:\n"+
		"  - name: public\n    paths: [\"/pub/**\"]\n    access: public\n"+
		"  - name: app\n    paths: [\"/app/**\"]\n    access: authenticated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := rollingSetEnv(baseEnv(t, dir), "CRMGATE_PUBLIC_URL="+lbURL, "CRMGATE_UPSTREAM_URL=http://"+ul.Addr().String(),
		"CRMGATE_DATABASE_URL="+dbURL, "CRMGATE_POLICY_FILE="+policy, "CRMGATE_LOG_ACCESS=false",
		"CRMGATE_SHUTDOWN_DELAY="+rollingDelay.String(), "CRMGATE_SHUTDOWN_TIMEOUT=20s")
	if err := run(context.Background(), []string{"users", "create", "--username", "alice", "--email", rollingEmail, "--password-stdin"},
		env, strings.NewReader(rollingPassword+"\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}

	replicas := []*rollingReplica{newRollingReplica(t, "replica-1", env), newRollingReplica(t, "replica-2", env)}
	lb := newRollingLB(replicas...)
	lbSrv := &http.Server{Handler: lb}
	go lbSrv.Serve(lbl)
	t.Cleanup(func() { lbSrv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() { defer close(pollDone); lb.poll(ctx) }()
	defer func() { cancel(); <-pollDone }()
	deadline := time.Now().Add(45 * time.Second)
	for _, r := range replicas {
		r.start(t)
	}
	for _, r := range replicas {
		r.waitReady(t, deadline)
	}
	rollingWaitUntil(t, deadline, "the load balancer routes to both replicas", func() bool {
		return lb.backends[0].ready.Load() && lb.backends[1].ready.Load()
	})

	// Sign in through the load balancer: the form and the POST may reach
	// different replicas, which share the keys and the database.
	cookies := rollingSignIn(t, lbURL)
	lbU, _ := url.Parse(lbURL)
	load := &rollingLoad{lbURL: lbURL, byPeer: map[string]int64{}}
	// A client of the load balancer, or with viaService one of a
	// Kubernetes Service's virtual IP (readiness decides only where new
	// connections go).
	newClient := func(signedIn, viaService bool) *http.Client {
		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		if viaService {
			tr.DialContext = lb.serviceDial
		}
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		if signedIn {
			jar, _ := cookiejar.New(nil)
			jar.SetCookies(lbU, cookies)
			c.Jar = jar
		}
		return c
	}
	workers := []struct {
		method, path         string
		signedIn, viaService bool
	}{
		{http.MethodGet, "/app/page", true, false}, {http.MethodPost, "/app/echo", true, false}, {http.MethodGet, "/app/deep/er?q=1", true, false},
		{http.MethodGet, "/pub/page", false, false}, {http.MethodPost, "/pub/echo", false, false}, {http.MethodGet, "/pub/other", false, false},
		{http.MethodPost, "/app/echo", true, true}, {http.MethodGet, "/pub/page", false, true}, {http.MethodPost, "/pub/echo", false, true},
	}
	stop := make(chan struct{})
	var lwg sync.WaitGroup
	for i, w := range workers {
		c := newClient(w.signedIn, w.viaService)
		lwg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(4 * time.Millisecond):
				}
				load.do(c, w.method, w.path, "w"+strconv.Itoa(i), "")
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); lwg.Wait() })
	defer stopLoad()
	rollingWaitUntil(t, deadline, "load on both replicas", func() bool {
		return lb.backends[0].routed.Load() > 100 && lb.backends[1].routed.Load() > 100
	})

	type phase struct {
		name           string
		routed         [2]int64
		drain          *rollingDrain
		slow           [2]rollingSlowResult
		startup, total time.Duration
	}
	var phases []phase
	for i, r := range replicas {
		b := lb.backends[i]
		routedBefore := [2]int64{lb.backends[0].routed.Load(), lb.backends[1].routed.Load()}
		signed, anon := newClient(true, false), newClient(false, false)
		var slow [2]rollingSlowResult
		var swg sync.WaitGroup
		for j, s := range []struct {
			c    *http.Client
			path string
		}{{signed, "/app/slow"}, {anon, "/pub/slow"}} {
			swg.Go(func() {
				slow[j].start = time.Now()
				slow[j].ok = load.do(s.c, http.MethodGet, s.path+"?ms="+strconv.Itoa(int(rollingSlow/time.Millisecond)), "slow", r.name)
				slow[j].end = time.Now()
			})
		}
		rollingWaitUntil(t, deadline, "the slow requests are in flight", func() bool { return up.inFlight.Load() == 2 })

		watch := rollingWatchDrain(r, lbU.Host)
		sigterm := time.Now()
		r.signal(t, syscall.SIGTERM)
		exitErr := r.wait(t, 30*time.Second)
		exited := time.Now()
		d := watch()
		d.sigterm, d.exited = sigterm, exited
		swg.Wait()
		if exitErr != nil {
			t.Errorf("%s exited with %v after SIGTERM, want status 0; logs:\n%s", r.name, exitErr, r.Logs())
		}
		if !strings.Contains(r.Logs(), `"msg":"stopped"`) {
			t.Errorf("%s did not log a clean stop; logs:\n%s", r.name, r.Logs())
		}
		lbOff, lbSaw := lb.readyChange(r.name, false, sigterm)
		switch {
		case !d.saw503:
			t.Errorf("%s: /readyz never answered 503 during the drain", r.name)
		case d.not200.Sub(sigterm) > time.Second:
			t.Errorf("%s: /readyz still 200 %v after SIGTERM", r.name, d.not200.Sub(sigterm))
		case d.firstRefused.IsZero():
			t.Errorf("%s: the public listener never refused a connection before the exit", r.name)
		case !d.not200.Before(d.firstRefused):
			t.Errorf("%s: /readyz failed at +%v, not before the listener closed at +%v", r.name, d.not200.Sub(sigterm), d.firstRefused.Sub(sigterm))
		case d.firstRefused.Sub(sigterm) < rollingDelay-50*time.Millisecond:
			t.Errorf("%s: the public listener closed %v after SIGTERM, before the shutdown delay %v", r.name, d.firstRefused.Sub(sigterm), rollingDelay)
		case !d.lastServed.After(d.not200):
			t.Errorf("%s: the public listener did not serve while /readyz failed", r.name)
		case !lbSaw || !lbOff.Before(d.firstRefused):
			t.Errorf("%s: the load balancer saw it not ready at %v (seen %v), not before the listener closed at +%v", r.name, lbOff.Sub(sigterm), lbSaw, d.firstRefused.Sub(sigterm))
		}
		for j, s := range slow {
			if !s.ok {
				t.Errorf("%s: slow request %d failed", r.name, j)
			} else if !s.end.After(d.firstRefused) || s.end.After(exited) {
				t.Errorf("%s: slow request %d ended at +%v, want after the listener closed (+%v) and before the exit (+%v)",
					r.name, j, s.end.Sub(sigterm), d.firstRefused.Sub(sigterm), exited.Sub(sigterm))
			}
		}

		restarted := time.Now()
		r.start(t)
		r.waitReady(t, deadline)
		startup := time.Since(restarted)
		rollingWaitUntil(t, deadline, r.name+" back in the load balancer", func() bool { return b.ready.Load() })
		back := b.routed.Load()
		rollingWaitUntil(t, deadline, r.name+" serving load again", func() bool { return b.routed.Load()-back > 200 })
		phases = append(phases, phase{name: r.name, drain: d, slow: slow, startup: startup, total: time.Since(sigterm),
			routed: [2]int64{lb.backends[0].routed.Load() - routedBefore[0], lb.backends[1].routed.Load() - routedBefore[1]}})
	}
	stopLoad()

	if n := load.bad.Load(); n > 0 {
		t.Errorf("%d of %d requests failed: %v", n, n+load.ok.Load(), load.failures)
	}
	if n, f := lb.noBackend.Load(), lb.failed.Load(); n > 0 || f > 0 {
		t.Errorf("the load balancer found no ready replica %d times and failed %d requests: %v", n, f, lb.errs)
	}
	if n := load.retried.Load(); n > 0 {
		t.Errorf("the clients' transports retried %d requests on a new connection (a kept-alive one was closed under them)", n)
	}
	if n := lb.retried.Load(); n > 0 {
		t.Errorf("the load balancer's transport retried %d requests on a new connection (a kept-alive one was closed under it)", n)
	}
	up.mu.Lock()
	var twice []string
	for id, n := range up.seen {
		if n != 1 {
			twice = append(twice, fmt.Sprintf("%s×%d", id, n))
		}
	}
	seen := len(up.seen)
	up.mu.Unlock()
	if len(twice) > 0 {
		t.Errorf("requests that reached the upstream more than once: %v", twice)
	}
	if int64(seen) != load.ok.Load() {
		t.Errorf("the upstream saw %d load requests, the clients got %d answers", seen, load.ok.Load())
	}
	t.Logf("%d requests, all answered by the upstream once; through the load balancer replica-1 %d, replica-2 %d (%d connections got, %d of them kept-alive reuses, %d retries); "+
		"through the service address replica-1 %d, replica-2 %d (%d retries)",
		load.ok.Load(), lb.backends[0].routed.Load(), lb.backends[1].routed.Load(), lb.conns.Load(), lb.reused.Load(), lb.retried.Load(),
		load.byPeer[replicas[0].pub], load.byPeer[replicas[1].pub], load.retried.Load())
	for _, p := range phases {
		d := p.drain
		t.Logf("%s restart: /readyz not 200 at +%v, load balancer off at +%v, listener closed at +%v (last served +%v), exit at +%v; "+
			"slow requests ended +%v, +%v; start-up %v; back in service after %v; meanwhile replica-1 %d, replica-2 %d requests",
			p.name, d.not200.Sub(d.sigterm).Round(time.Millisecond), rollingSince(lb, p.name, d.sigterm), d.firstRefused.Sub(d.sigterm).Round(time.Millisecond),
			d.lastServed.Sub(d.sigterm).Round(time.Millisecond), d.exited.Sub(d.sigterm).Round(time.Millisecond),
			p.slow[0].end.Sub(d.sigterm).Round(time.Millisecond), p.slow[1].end.Sub(d.sigterm).Round(time.Millisecond),
			p.startup.Round(time.Millisecond), p.total.Round(time.Millisecond), p.routed[0], p.routed[1])
	}
	t.Logf("test took %v", time.Since(began).Round(time.Millisecond))

	// Both replicas stop cleanly at the end too.
	for _, r := range replicas {
		r.signal(t, syscall.SIGTERM)
	}
	for _, r := range replicas {
		if err := r.wait(t, 30*time.Second); err != nil {
			t.Errorf("%s exited with %v, want status 0", r.name, err)
		}
		// Nothing failed inside either: no error (a worker that did not
		// stop cleanly, a store failure), no drain cut short.
		if logs := r.Logs(); strings.Contains(logs, `"level":"ERROR"`) || strings.Contains(logs, "did not drain") ||
			strings.Count(logs, `"msg":"stopped"`) != 2 {
			t.Errorf("%s: an error, a cut-off drain or not two clean stops in its logs:\n%s", r.name, logs)
		}
	}
}

func rollingSince(lb *rollingLB, name string, since time.Time) string {
	at, ok := lb.readyChange(name, false, since)
	if !ok {
		return "never"
	}
	return at.Sub(since).Round(time.Millisecond).String()
}

type rollingSlowResult struct {
	start, end time.Time
	ok         bool
}

// rollingWaitUntil polls cond every 10 ms until it holds, failing t at deadline.
func rollingWaitUntil(t *testing.T, deadline time.Time, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rollingSignIn signs alice in through the load balancer and returns the
// session cookies.
func rollingSignIn(t *testing.T, lbURL string) []*http.Cookie {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if status, body, _ := httpSignIn(t, c, lbURL, "/app/start", "alice", rollingPassword); body != "get "+rollingEmail+" " {
		t.Fatalf("after sign-in: %d %q, want %q", status, body, "get "+rollingEmail+" ")
	}
	u, _ := url.Parse(lbURL)
	return jar.Cookies(u)
}

// rollingLB is the load balancer in front of the replicas, as a Kubernetes
// Service with readiness behaves: it polls every replica's /readyz (every
// rollingPollEvery, as the kubelet's probe and the endpoints controller
// do, with a new connection each time) and routes each request round robin
// to a replica whose last answer was 200. It never retries a request that
// failed. Its transport keeps connections alive, as a real proxy's does.
type rollingLB struct {
	backends []*rollingBackend
	proxy    *httputil.ReverseProxy
	next     atomic.Uint64

	noBackend atomic.Int64 // requests that found no ready replica (503)
	failed    atomic.Int64 // requests the transport could not complete (502)
	conns     atomic.Int64 // connections the transport got, one a request when nothing retries
	reused    atomic.Int64 // of those, kept-alive connections reused
	retried   atomic.Int64 // requests that needed a second connection (the transport's own retry)

	mu     sync.Mutex
	errs   []string
	events []rollingReadyEvent // readiness changes seen by the poller
}

// rollingBackend is one replica as the load balancer sees it.
type rollingBackend struct {
	r      *rollingReplica
	ready  atomic.Bool
	routed atomic.Int64 // requests sent to it
}

type rollingReadyEvent struct {
	at      time.Time
	backend string
	ready   bool
}

// rollingPollEvery is the load balancer's readiness period.
const rollingPollEvery = 150 * time.Millisecond

// rollingPinHeader pins a request to the named replica (the test's slow
// requests must be in flight on the replica that restarts); the load
// balancer removes it before forwarding, and still refuses a pinned
// request to a replica that is not ready.
const rollingPinHeader = "X-Rolling-Pin"

type rollingTargetKey struct{}

func newRollingLB(replicas ...*rollingReplica) *rollingLB {
	lb := &rollingLB{}
	for _, r := range replicas {
		lb.backends = append(lb.backends, &rollingBackend{r: r})
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	lb.proxy = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			b := pr.In.Context().Value(rollingTargetKey{}).(*rollingBackend)
			pr.SetURL(&url.URL{Scheme: "http", Host: b.r.pub})
			pr.Out.Host = pr.In.Host // the public host the gateway expects
			pr.Out.Header.Del(rollingPinHeader)
			var got atomic.Int64
			pr.Out = pr.Out.WithContext(httptrace.WithClientTrace(pr.Out.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) {
					lb.conns.Add(1)
					if info.Reused {
						lb.reused.Add(1)
					}
					if got.Add(1) == 2 {
						lb.retried.Add(1)
					}
				},
			}))
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			b := r.Context().Value(rollingTargetKey{}).(*rollingBackend)
			lb.failed.Add(1)
			lb.note(fmt.Sprintf("%s %s via %s: %v", r.Method, r.URL.Path, b.r.name, err))
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return lb
}

func (lb *rollingLB) note(s string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if len(lb.errs) < 20 {
		lb.errs = append(lb.errs, s)
	}
}

// poll runs the readiness poller until ctx ends.
func (lb *rollingLB) poll(ctx context.Context) {
	tick := time.NewTicker(rollingPollEvery)
	defer tick.Stop()
	for {
		for _, b := range lb.backends {
			ready := b.r.ready()
			if b.ready.Swap(ready) != ready {
				lb.mu.Lock()
				lb.events = append(lb.events, rollingReadyEvent{at: time.Now(), backend: b.r.name, ready: ready})
				lb.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pick returns the ready replica named pin, or with pin empty the next
// ready one round robin; nil when there is none.
func (lb *rollingLB) pick(pin string) *rollingBackend {
	if pin != "" {
		for _, c := range lb.backends {
			if c.r.name == pin && c.ready.Load() {
				return c
			}
		}
		return nil
	}
	n := uint64(len(lb.backends))
	start := lb.next.Add(1)
	for i := range n {
		if c := lb.backends[(start+i)%n]; c.ready.Load() {
			return c
		}
	}
	return nil
}

// serviceDial connects to a ready replica chosen when the connection is
// made, as a Kubernetes Service's virtual IP does (kube-proxy picks an
// endpoint per connection): a kept-alive connection stays on its replica
// whatever readiness says later.
func (lb *rollingLB) serviceDial(ctx context.Context, _, _ string) (net.Conn, error) {
	b := lb.pick("")
	if b == nil {
		return nil, errors.New("the service has no ready endpoint")
	}
	return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", b.r.pub)
}

func (lb *rollingLB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := lb.pick(r.Header.Get(rollingPinHeader))
	if b == nil {
		lb.noBackend.Add(1)
		lb.note(fmt.Sprintf("%s %s: no ready replica", r.Method, r.URL.Path))
		http.Error(w, "no ready replica", http.StatusServiceUnavailable)
		return
	}
	b.routed.Add(1)
	lb.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rollingTargetKey{}, b)))
}

// readyChange returns when the poller first saw backend's readiness become
// ready at or after since.
func (lb *rollingLB) readyChange(backend string, ready bool, since time.Time) (time.Time, bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, e := range lb.events {
		if e.backend == backend && e.ready == ready && !e.at.Before(since) {
			return e.at, true
		}
	}
	return time.Time{}, false
}

// rollingUpstream is the site behind the gateways. Every load request
// carries a unique X-Load-Id, which it records, so that a request that
// reached it twice (retried) shows.
type rollingUpstream struct {
	mu       sync.Mutex
	seen     map[string]int
	inFlight atomic.Int64 // slow requests being answered
}

func (u *rollingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Load-Id")
	if id != "" {
		u.mu.Lock()
		u.seen[id]++
		u.mu.Unlock()
	}
	who := r.Header.Get("X-Current-User-Email")
	if who == "" {
		who = "-"
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/slow"):
		// A long answer streamed in 100 ms steps, as a report or a download.
		u.inFlight.Add(1)
		defer u.inFlight.Add(-1)
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		fmt.Fprintf(w, "slow %s %s ", who, id)
		for range ms / 100 {
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
			fmt.Fprint(w, ".")
		}
		fmt.Fprint(w, " done")
	case r.Method == http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "post %s %s %s", who, id, body)
	default:
		fmt.Fprintf(w, "get %s %s", who, id)
	}
}

// rollingLoad is the traffic through the load balancer; do sends one
// request and checks its answer: status 200 and the body the upstream
// writes for exactly that request.
type rollingLoad struct {
	lbURL   string
	seq     atomic.Int64
	ok      atomic.Int64
	bad     atomic.Int64
	retried atomic.Int64 // requests the client's transport sent twice

	mu       sync.Mutex
	failures []string
	byPeer   map[string]int64 // answers by the address they came from
}

func (l *rollingLoad) fail(s string) {
	l.bad.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, s)
	}
}

// do sends one request, pinned to a replica unless pin is empty, and
// reports whether its answer was the expected one.
func (l *rollingLoad) do(c *http.Client, method, path, who, pin string) bool {
	id := fmt.Sprintf("%s-%d", who, l.seq.Add(1))
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("payload-" + id)
	}
	req, err := http.NewRequest(method, l.lbURL+path, body)
	if err != nil {
		l.fail(err.Error())
		return false
	}
	req.Header.Set("X-Load-Id", id)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if pin != "" {
		req.Header.Set(rollingPinHeader, pin)
	}
	var conns int
	var peer string
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			conns++
			peer = i.Conn.RemoteAddr().String()
		},
	}))
	start := time.Now()
	resp, err := c.Do(req)
	if conns > 1 {
		l.retried.Add(1)
	}
	if err != nil {
		l.fail(fmt.Sprintf("%s %s after %v: %v", method, path, time.Since(start), err))
		return false
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	email := "-"
	if strings.HasPrefix(path, "/app/") {
		email = rollingEmail
	}
	slow := strings.Contains(path, "/slow")
	var want string
	switch {
	case slow:
		want = "slow " + email + " " + id + " "
	case method == http.MethodPost:
		want = "post " + email + " " + id + " payload-" + id
	default:
		want = "get " + email + " " + id
	}
	if err != nil || resp.StatusCode != http.StatusOK ||
		(slow && (!strings.HasPrefix(string(got), want) || !strings.HasSuffix(string(got), " done"))) || (!slow && string(got) != want) {
		l.fail(fmt.Sprintf("%s %s: %d %q (read error %v), want 200 %q", method, path, resp.StatusCode, got, err, want))
		return false
	}
	l.ok.Add(1)
	l.mu.Lock()
	l.byPeer[peer]++
	l.mu.Unlock()
	return true
}

const (
	rollingEmail    = "alice@example.test"
	rollingPassword = "correct horse battery staple"
	rollingDelay    = 2 * time.Second // CRMGATE_SHUTDOWN_DELAY
	rollingSlow     = 4 * time.Second // a slow request's duration at the upstream
)

// rollingDrain is what the test saw of one replica's shutdown from outside:
// its ops listener and its public listener, probed directly.
type rollingDrain struct {
	sigterm, exited time.Time
	not200          time.Time // /readyz first answered other than 200
	saw503          bool      // /readyz answered 503 at least once
	lastServed      time.Time // the public listener last answered a request
	firstRefused    time.Time // the public listener first refused a connection
}

// rollingWatchDrain probes r while it shuts down: /readyz every 10 ms, and a
// request to the public listener on a new connection every 20 ms. The
// returned func stops the probes and returns what they saw.
func rollingWatchDrain(r *rollingReplica, host string) func() *rollingDrain {
	d := &rollingDrain{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			resp, err := c.Get("http://" + r.ops + "/readyz")
			now := time.Now()
			mu.Lock()
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					d.saw503 = true
				}
			}
			if (err != nil || resp.StatusCode != http.StatusOK) && d.not200.IsZero() {
				d.not200 = now
			}
			mu.Unlock()
		}
	})
	wg.Go(func() {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.pub+"/pub/probe", nil)
			req.Host = host
			resp, err := c.Do(req)
			now := time.Now()
			mu.Lock()
			if err == nil {
				resp.Body.Close()
				d.lastServed = now
			} else if errors.Is(err, syscall.ECONNREFUSED) && d.firstRefused.IsZero() {
				d.firstRefused = now
			}
			mu.Unlock()
		}
	})
	return func() *rollingDrain {
		close(done)
		wg.Wait()
		return d
	}
}

// rollingServeEnv, when "1" in a subprocess of the test binary, makes
// TestRollingServeProcess run crmgate's main with `serve`: the real signal
// handling and exit status, as a container runs it.
const rollingServeEnv = "CRMGATETEST_ROLLING_SERVE"

// TestRollingServeProcess is `crmgate serve` as its own process, for the
// rolling restart and migration race tests; it does nothing in a normal
// test run. main exits 1 on an error; when it returns (a clean shutdown
// after SIGTERM) the process exits 0.
func TestRollingServeProcess(t *testing.T) {
	if os.Getenv(rollingServeEnv) != "1" {
		return
	}
	os.Args = []string{"crmgate", "serve"}
	main()
	os.Exit(0)
}

// rollingReplica is one gateway process, restartable on the same addresses
// (as a pod restarted in place, or a VM's service).
type rollingReplica struct {
	name     string
	pub, ops string // listen addresses
	env      []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	logs    *syncBuffer
	allLogs []*syncBuffer
	done    chan struct{} // closed when the current process has exited
	waitErr error         // the current process's exit, once done is closed
}

// rollingSetEnv returns env with each NAME=value of kvs replacing the
// setting of the same name, or appended.
func rollingSetEnv(env []string, kvs ...string) []string {
	env = slices.Clone(env)
	for _, kv := range kvs {
		name, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
		if i >= 0 {
			env[i] = kv
		} else {
			env = append(env, kv)
		}
	}
	return env
}

// newRollingReplica returns a replica listening on new free addresses with
// env (whose CRMGATE_LISTEN and CRMGATE_OPS_LISTEN it sets); it is not
// started. t's cleanup kills it if still running.
func newRollingReplica(t *testing.T, name string, env []string) *rollingReplica {
	r := &rollingReplica{name: name, pub: freeAddr(t), ops: freeAddr(t)}
	r.env = rollingSetEnv(env, "CRMGATE_LISTEN="+r.pub, "CRMGATE_OPS_LISTEN="+r.ops)
	t.Cleanup(r.kill)
	return r
}

// start starts the process; the replica must not be running.
func (r *rollingReplica) start(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		select {
		case <-r.done:
		default:
			t.Fatalf("%s: start while running", r.name)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRollingServeProcess$")
	cmd.Env = append(slices.Clone(r.env), rollingServeEnv+"=1")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	// A test binary that dies (a -test.timeout panic) takes the gateway along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	done := make(chan struct{})
	r.cmd, r.logs, r.done = cmd, logs, done
	r.allLogs = append(r.allLogs, logs)
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.waitErr = err
		r.mu.Unlock()
		close(done)
	}()
}

// ready reports whether the replica's /readyz answers 200 now.
func (r *rollingReplica) ready() bool {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + r.ops + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until /readyz answers 200, failing t if the process
// exits first or the deadline passes.
func (r *rollingReplica) waitReady(t *testing.T, deadline time.Time) {
	t.Helper()
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	for !r.ready() {
		select {
		case <-done:
			t.Fatalf("%s exited before it was ready (%v); logs:\n%s", r.name, r.exitErr(), r.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready in time; logs:\n%s", r.name, r.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the running process.
func (r *rollingReplica) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: signal %v: %v", r.name, sig, err)
	}
}

// wait waits for the current process to exit, at most timeout, and
// returns its exit error (nil for status 0).
func (r *rollingReplica) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	select {
	case <-done:
		return r.exitErr()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v; logs:\n%s", r.name, timeout, r.Logs())
		return nil
	}
}

func (r *rollingReplica) exitErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitErr
}

// kill ends a process still running (cleanup).
func (r *rollingReplica) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Kill()
		<-done
	}
}

// Logs returns the logs of every process this replica ran, oldest first.
func (r *rollingReplica) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for i, l := range r.allLogs {
		fmt.Fprintf(&b, "--- %s, process %d ---\n%s", r.name, i+1, l.String())
	}
	return b.String()
}

// TestRollingReadyzStoreOutage shows what /readyz means when the database
// cannot be reached (docs/operations.md, "What /readyz means"): it stays
// 200, as /livez does, because a shared database's outage would otherwise
// take every replica out of the load balancer at once. Meanwhile public
// routes are served, a signed-in request is served until its session's
// stamp check is due and then gets 503 (the session kept), and once the
// database is back the same session is served again, without a restart.
func TestRollingReadyzStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway")
	}
	relay := newRollingRelay(t, "127.0.0.1:5432")
	pgURL, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pgURL.Host = relay.addr()

	up := &rollingUpstream{seen: map[string]int{}}
	ul := rollingServe(t, up)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("routes:\n"+
		"  - name: public\n    paths: [\"/pub/**\"]\n    access: public\n"+
		"  - name: app\n    paths: [\"/app/**\"]\n    access: authenticated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, ops := freeAddr(t), freeAddr(t)
	const stampCheck = 3 * time.Second
	env := rollingSetEnv(baseEnv(t, dir), "CRMGATE_PUBLIC_URL=http://"+pub, "CRMGATE_UPSTREAM_URL=http://"+ul.Addr().String(),
		"CRMGATE_DATABASE_URL="+pgURL.String(), "CRMGATE_POLICY_FILE="+policy, "CRMGATE_LISTEN="+pub, "CRMGATE_OPS_LISTEN="+ops,
		"CRMGATE_SHUTDOWN_DELAY=0s", "CRMGATE_SESSION_STAMP_CHECK_INTERVAL="+stampCheck.String())
	if err := run(context.Background(), []string{"users", "create", "--username", "alice", "--email", rollingEmail, "--password-stdin"},
		env, strings.NewReader(rollingPassword+"\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- run(ctx, []string{"serve"}, env, nil, io.Discard, logs) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve returned %v", err)
		}
	}()
	r := &rollingReplica{name: "gateway", pub: pub, ops: ops}
	for deadline := time.Now().Add(20 * time.Second); !r.ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready; logs:\n%s", logs)
		}
	}
	base := "http://" + pub
	cookies := rollingSignIn(t, base)
	signedIn := time.Now()
	jar, _ := cookiejar.New(nil)
	bu, _ := url.Parse(base)
	jar.SetCookies(bu, cookies)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	anon := &http.Client{Timeout: 10 * time.Second}
	getWith := func(c *http.Client, rawURL string) (int, string) {
		t.Helper()
		resp, err := c.Get(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	get := func(rawURL string) (int, string) { t.Helper(); return getWith(c, rawURL) }

	relay.cut()
	if code, body := getWith(anon, base+"/pub/page"); code != http.StatusOK || body != "get - " {
		t.Errorf("public route with the database down: %d %q", code, body)
	}
	if code, body := get(base + "/app/page"); code != http.StatusOK || body != "get "+rollingEmail+" " {
		t.Errorf("signed-in request before its stamp check, database down: %d %q", code, body)
	}
	if time.Since(signedIn) >= stampCheck-time.Second {
		t.Fatalf("too slow: the stamp check may have been due already (%v after sign-in)", time.Since(signedIn))
	}
	for _, path := range []string{"/readyz", "/livez"} {
		if code, _ := get("http://" + ops + path); code != http.StatusOK {
			t.Errorf("%s with the database down = %d, want 200", path, code)
		}
	}
	time.Sleep(time.Until(signedIn.Add(stampCheck + time.Second)))
	if code, _ := get(base + "/app/page"); code != http.StatusServiceUnavailable {
		t.Errorf("signed-in request whose stamp check is due, database down: %d, want 503", code)
	}
	if code, _ := get("http://" + ops + "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the database down = %d, want 200", code)
	}

	relay.restore()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := get(base + "/app/page")
		if code == http.StatusOK && body == "get "+rollingEmail+" " {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session is not served again after the database came back: %d %q; logs:\n%s", code, body, logs)
		}
	}
}

// rollingRelay forwards TCP connections to a target (the database) until
// cut, which ends every forwarded connection and closes new ones at once,
// until restore.
type rollingRelay struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newRollingRelay(t *testing.T, target string) *rollingRelay {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rollingRelay{l: l, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { l.Close(); r.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.forward(c)
		}
	}()
	return r
}

func (r *rollingRelay) addr() string { return r.l.Addr().String() }

func (r *rollingRelay) forward(c net.Conn) {
	r.mu.Lock()
	down := r.down
	r.mu.Unlock()
	if down {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", r.target)
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	r.conns[c], r.conns[s] = true, true
	r.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

func (r *rollingRelay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = true
	for c := range r.conns {
		c.Close()
		delete(r.conns, c)
	}
}

func (r *rollingRelay) restore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = false
}

// TestRollingOperationsDoc holds docs/operations.md to the code: every
// metric it names is defined in the source, every setting is in the
// README's configuration reference, every crmgate command exists, and
// every test it cites as evidence exists.
func TestRollingOperationsDoc(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var source, tests strings.Builder
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if strings.HasSuffix(path, "_test.go") {
			tests.Write(b)
		} else {
			source.Write(b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range slices.Compact(slices.Sorted(slices.Values(regexp.MustCompile(`crmgate_[a-z_]+`).FindAllString(string(doc), -1)))) {
		if !strings.Contains(source.String(), `"`+m+`"`) {
			t.Errorf("docs/operations.md names the metric %s, which no source file defines", m)
		}
	}
	for _, s := range regexp.MustCompile("`(CRMGATE_[A-Z0-9_]+)").FindAllStringSubmatch(string(doc), -1) {
		if !strings.Contains(string(readme), "| `"+s[1]+"` |") {
			t.Errorf("docs/operations.md names the setting %s, which the README's configuration reference lacks", s[1])
		}
	}
	for _, c := range regexp.MustCompile("`crmgate ([a-z-]+)").FindAllStringSubmatch(string(doc), -1) {
		if _, ok := commandUsage[c[1]]; !ok {
			t.Errorf("docs/operations.md names the command crmgate %s, which does not exist", c[1])
		}
	}
	for _, c := range regexp.MustCompile("`crmgate users ([a-z-]+)").FindAllStringSubmatch(string(doc), -1) {
		if !strings.Contains(usersUsage, c[1]) {
			t.Errorf("docs/operations.md names crmgate users %s, which the users usage lacks", c[1])
		}
	}
	for _, name := range regexp.MustCompile("`(Test[A-Za-z]+)`").FindAllStringSubmatch(string(doc), -1) {
		if !strings.Contains(tests.String(), "func "+name[1]+"(t *testing.T)") {
			t.Errorf("docs/operations.md cites the test %s, which does not exist", name[1])
		}
	}
}

// rollingServe serves h on a new loopback listener until the test ends.
func rollingServe(t *testing.T, h http.Handler) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l
}
