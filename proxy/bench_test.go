package proxy_test

// Benchmarks of the signed-in hot path: a GET with a valid session cookie
// that is decoded, matched, allowed, given identity headers and proxied.
//
// BenchmarkSignedInHotPath and BenchmarkBareReverseProxy send the same
// requests over loopback, from 64 concurrent clients, to a real upstream;
// the first through the whole gateway, the second through a bare
// httputil.ReverseProxy with the same tuned transport, so their ratio is the
// cost of the gateway. BenchmarkPipeline does the same without any network
// (in-process transport, httptest.ResponseRecorder) to isolate the
// gateway's own CPU and allocations. docs/benchmarks.md records the figures.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/pages"
)

// benchConns is the number of concurrent clients of the network
// benchmarks, as in the wrk runs of .ci/bench.
const benchConns = 64

// benchPath is the path every benchmark request asks for.
const benchPath = "/account/orders"

// benchBody is the upstream's answer: 1 KB, a small page or JSON document.
var benchBody = bytes.Repeat([]byte("0123456789abcdef"), 64)

// benchPolicy is what `crmgate serve` builds from CRMGATE_UPSTREAM_URL
// alone: one upstream, everything behind sign-in.
const benchPolicy = `upstreams:
  - name: default
    url: %q
routes:
  - name: default
    paths: ["/**"]
    access: authenticated
`

// benchUpstream is a minimal upstream that answers benchBody and counts the
// requests that arrived with a gateway identity.
type benchUpstream struct {
	total, signedIn atomic.Int64
}

func (u *benchUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.total.Add(1)
	if r.Header.Get("X-Current-User-Id") != "" {
		u.signedIn.Add(1)
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(benchBody))}
	_, _ = w.Write(benchBody)
}

// RoundTrip answers in process, as the upstream would, without a network.
func (u *benchUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	u.total.Add(1)
	if r.Header.Get("X-Current-User-Id") != "" {
		u.signedIn.Add(1)
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": {strconv.Itoa(len(benchBody))}},
		Body:          io.NopCloser(bytes.NewReader(benchBody)),
		ContentLength: int64(len(benchBody)),
		Request:       r,
	}, nil
}

// checkSignedIn fails b unless every request the upstream saw carried an identity.
func (u *benchUpstream) checkSignedIn(b *testing.B) {
	b.Helper()
	if total, signed := u.total.Load(), u.signedIn.Load(); total == 0 || signed != total {
		b.Fatalf("upstream saw %d requests, %d of them signed in", total, signed)
	}
}

// benchGateway builds a gateway with the serve defaults for upstreamURL and
// returns it with the "Cookie" header value of a signed-in session and the
// gateway's clock. The clock stands still unless advanced, so the session
// never needs a refresh or a stamp check and its token stays cached: the
// steady state of an active user between checks. mutate may adjust the
// options (nil: none).
func benchGateway(b *testing.B, publicURL, upstreamURL string, mutate func(*proxy.Options)) (*proxy.Server, string, *fakeClock) {
	b.Helper()
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	pol, err := policies.Parse("bench.yaml", fmt.Appendf(nil, benchPolicy, upstreamURL))
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	svc, err := wiring.New(db, wiring.Options{Password: testPassword, MaxFailures: 5, AccountMaxFailures: 20, LockoutDuration: time.Minute,
		ClientRate: rate.Every(time.Second), ClientBurst: 10, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "bench", Email: "bench@example.test", Password: "correct horse battery 1",
		DisplayName: "Bench User", Roles: []string{"staff"}}, "bench"); err != nil {
		b.Fatal(err)
	}
	renderer, err := pages.New(pages.Options{Branding: pages.Branding{SiteName: "Bench", AuthPrefix: "/.auth"}})
	if err != nil {
		b.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	opts := proxy.Options{
		PublicURL: publicURL, Policy: pol, Pages: renderer,
		CookieName: "crmgate_session", CookieKeys: [][]byte{randomKey()}, SigningKeys: []*ecdsa.PrivateKey{key},
		Now: clock.Now,
	}
	opts = withIdentity(opts, svc, db)
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := proxy.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	return srv, benchSignIn(b, srv, publicURL), clock
}

// benchSignIn signs in through srv's own sign-in form, as a browser would,
// and returns the Cookie header value of the session.
func benchSignIn(b *testing.B, srv http.Handler, publicURL string) string {
	b.Helper()
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", publicURL+"/.auth/signin", nil))
	m := csrfRE.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil {
		b.Fatalf("sign-in form: %d, csrf token found: %t", rec.Code, m != nil)
	}
	form := url.Values{"login": {"bench"}, "password": {"correct horse battery 1"}, "csrf_token": {html.UnescapeString(m[1])}}
	req := httptest.NewRequest("POST", publicURL+"/.auth/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		b.Fatalf("sign-in: status %d\n%s", rec.Code, rec.Body)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "crmgate_session" && c.Value != "" {
			return c.Name + "=" + c.Value
		}
	}
	b.Fatal("sign-in set no session cookie")
	return ""
}

// bareProxy is the baseline: httputil.ReverseProxy with the documented
// Rewrite (SetURL, SetXForwarded) and the given transport, nothing else.
func bareProxy(b *testing.B, upstreamURL string, transport http.RoundTripper) *httputil.ReverseProxy {
	b.Helper()
	target, err := url.Parse(upstreamURL)
	if err != nil {
		b.Fatal(err)
	}
	return &httputil.ReverseProxy{
		Transport:  transport,
		BufferPool: proxy.NewBufferPool(), // like crmgate: the strictest baseline
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
	}
}

// benchLoad sends GET target+benchPath with the cookie from benchConns
// concurrent clients over a tuned keep-alive pool for b.N requests, checks
// every answer is the upstream's 200, and reports throughput and latency
// percentiles. ns/op is wall time per request across all clients.
func benchLoad(b *testing.B, target, cookie string) {
	b.Helper()
	client := &http.Client{Transport: proxy.NewTransport(2*benchConns, 5*time.Second, 0)}
	b.Cleanup(client.CloseIdleConnections)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failure   atomic.Pointer[string]
	)
	b.SetParallelism((benchConns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	template, err := http.NewRequest("GET", target+benchPath, nil)
	if err != nil {
		b.Fatal(err)
	}
	template.Header.Set("Cookie", cookie)
	// Warm up: open the connections of every client and of the proxy's pool,
	// so the timed part measures the keep-alive steady state.
	var warm sync.WaitGroup
	for range benchConns {
		warm.Go(func() {
			for range 8 {
				if resp, err := client.Do(template.Clone(context.Background())); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	warm.Wait()
	b.RunParallel(func(pb *testing.PB) {
		req := template.Clone(context.Background())
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				msg := err.Error()
				failure.CompareAndSwap(nil, &msg)
				continue
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			local = append(local, time.Since(start))
			if resp.StatusCode != http.StatusOK || n != int64(len(benchBody)) {
				msg := fmt.Sprintf("status %d, %d bytes", resp.StatusCode, n)
				failure.CompareAndSwap(nil, &msg)
			}
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	b.StopTimer()
	if msg := failure.Load(); msg != nil {
		b.Fatalf("a request failed: %s", *msg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if len(latencies) > 0 {
		slices.Sort(latencies)
		pct := func(p float64) float64 {
			return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds())
		}
		b.ReportMetric(pct(0.50), "p50-µs")
		b.ReportMetric(pct(0.99), "p99-µs")
	}
}

// BenchmarkSignedInHotPath measures signed-in GETs through the whole
// gateway on a real listener to a real upstream over loopback.
func BenchmarkSignedInHotPath(b *testing.B) {
	up := &benchUpstream{}
	upSrv := httptest.NewServer(up)
	b.Cleanup(upSrv.Close)
	gw := httptest.NewUnstartedServer(nil)
	srv, cookie, _ := benchGateway(b, "http://"+gw.Listener.Addr().String(), upSrv.URL, nil)
	gw.Config.Handler = srv
	gw.Start()
	b.Cleanup(gw.Close)

	benchLoad(b, gw.URL, cookie)
	up.checkSignedIn(b)
}

// BenchmarkBareReverseProxy is the baseline of BenchmarkSignedInHotPath:
// the same clients, upstream and transport, with a bare ReverseProxy.
func BenchmarkBareReverseProxy(b *testing.B) {
	up := &benchUpstream{}
	upSrv := httptest.NewServer(up)
	b.Cleanup(upSrv.Close)
	bare := httptest.NewServer(bareProxy(b, upSrv.URL, proxy.NewTransport(256, 5*time.Second, 0)))
	b.Cleanup(bare.Close)

	benchLoad(b, bare.URL, "crmgate_session=not-a-session")
	if up.total.Load() == 0 {
		b.Fatal("upstream saw no request")
	}
}

// BenchmarkPipeline runs the handlers without any network: requests go
// straight to ServeHTTP with a ResponseRecorder, and the upstream answers
// in process through the transport. The difference between the crmgate and
// bare sub-benchmarks is the gateway's own cost per request.
func BenchmarkPipeline(b *testing.B) {
	const publicURL = "http://gateway.test"
	const upstreamURL = "http://upstream.test"
	run := func(b *testing.B, h http.Handler, cookie string) {
		var failure atomic.Pointer[string]
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				// A new request each time: the pipeline rewrites its header and path.
				req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "gateway.test", Path: benchPath},
					Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "gateway.test", RemoteAddr: "127.0.0.1:40000",
					Header: http.Header{"Cookie": {cookie}, "User-Agent": {"bench"}, "Accept": {"*/*"}}}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || rec.Body.Len() != len(benchBody) {
					msg := fmt.Sprintf("status %d, %d bytes", rec.Code, rec.Body.Len())
					failure.CompareAndSwap(nil, &msg)
				}
			}
		})
		b.StopTimer()
		if msg := failure.Load(); msg != nil {
			b.Fatalf("a request failed: %s", *msg)
		}
	}
	b.Run("bare", func(b *testing.B) {
		up := &benchUpstream{}
		run(b, bareProxy(b, upstreamURL, up), "crmgate_session=not-a-session")
	})
	b.Run("crmgate", func(b *testing.B) {
		up := &benchUpstream{}
		srv, cookie, _ := benchGateway(b, publicURL, upstreamURL, func(o *proxy.Options) { o.Transport = up })
		run(b, srv, cookie)
		up.checkSignedIn(b)
	})
	// A client that replays one cookie and ignores Set-Cookie (wrk, some API
	// clients): once the cookie is older than the stamp-check interval, every
	// request asks the store for the user and re-issues the cookie.
	b.Run("crmgate-stale-cookie", func(b *testing.B) {
		up := &benchUpstream{}
		srv, cookie, clock := benchGateway(b, publicURL, upstreamURL, func(o *proxy.Options) { o.Transport = up })
		clock.Advance(3 * time.Minute)
		run(b, srv, cookie)
		up.checkSignedIn(b)
	})
	b.Run("crmgate-accesslog", func(b *testing.B) {
		up := &benchUpstream{}
		srv, cookie, _ := benchGateway(b, publicURL, upstreamURL, func(o *proxy.Options) {
			o.Transport = up
			o.AccessLog = slog.New(slog.NewJSONHandler(io.Discard, nil))
		})
		run(b, srv, cookie)
		up.checkSignedIn(b)
	})
}
