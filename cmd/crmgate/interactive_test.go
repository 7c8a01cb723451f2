package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// TestInteractiveBudgetThroughTheGateway builds the whole gateway against
// the emulator over HTTP with CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=1s and
// the sign-in check on. While Dataverse takes 10 s to answer, a sign-in
// gets the "try again" page within the budget, and a proxied request whose
// session is due for revalidation is served from the grace period within
// it; while Dataverse throttles with a 20 s Retry-After (which the 30 s
// background retry budget would wait out) a sign-in fails at once. The
// emulator's x-ms-dop-hint, learnt by a sign-in, lowers the concurrency
// limit the background client (the outbox's) shares.
//
// The upper bounds on elapsed time are real time, far from what a missing
// budget would take (10 s, 20 s); the revalidation interval runs on the
// gateway's injected clock.
func TestInteractiveBudgetThroughTheGateway(t *testing.T) {
	const secret = "emulator-secret"
	dv := dataversetest.NewServer(dataversetest.Options{TenantID: demoTenant,
		Clients: []dataversetest.Client{{ID: demoClientID, Secret: secret}}, DOPHint: 3})
	t.Cleanup(dv.Close)
	if err := dv.LoadSeed(strings.NewReader(bindingSeed)); err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "contact "+r.Header.Get("X-Current-User-Contact-Id"))
	}))
	defer upstream.Close()
	env := baseEnv(t, t.TempDir(),
		"CRMGATE_DATAVERSE_URL="+dv.URL, "CRMGATE_DATAVERSE_AUTHORITY_HOST="+dv.URL,
		"CRMGATE_DATAVERSE_TENANT_ID="+demoTenant, "CRMGATE_DATAVERSE_CLIENT_ID="+demoClientID,
		"CRMGATE_DATAVERSE_CLIENT_SECRET="+secret, "CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=1s",
		"CRMGATE_UPSTREAM_URL="+upstream.URL,
		"CRMGATE_BINDING_DEFAULT_MODE=username", "CRMGATE_SIGNIN_DATAVERSE_CHECK=true")
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	ctx := context.Background()
	g, err := buildGateway(ctx, cfg, io.Discard, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	const password = "correct horse battery staple"
	if _, err := g.auth.Accounts.CreateUser(ctx, accounts.NewUser{Username: "alice", Email: "alice@example.test", Password: password}, "test"); err != nil {
		t.Fatal(err)
	}

	base := cfg.PublicURL
	serve := func(req *http.Request, cookies []*http.Cookie) *httptest.ResponseRecorder {
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		g.handler.ServeHTTP(rec, req)
		return rec
	}
	csrf := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	signIn := func() (*httptest.ResponseRecorder, time.Duration) {
		t.Helper()
		rec := serve(httptest.NewRequest("GET", base+"/.auth/signin?redirect_url=/private", nil), nil)
		m := csrf.FindStringSubmatch(rec.Body.String())
		if rec.Code != http.StatusOK || m == nil {
			t.Fatalf("sign-in page: %d\n%s", rec.Code, rec.Body)
		}
		form := url.Values{"login": {"alice"}, "password": {password}, "csrf_token": {m[1]}, "redirect_url": {"/private"}}
		req := httptest.NewRequest("POST", base+"/.auth/signin", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		start := time.Now()
		rec = serve(req, rec.Result().Cookies())
		return rec, time.Since(start)
	}
	tryAgain := func(what string, rec *httptest.ResponseRecorder, took time.Duration) {
		t.Helper()
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Please try again") {
			t.Fatalf("%s: %d, want the 503 try-again page\n%s", what, rec.Code, rec.Body)
		}
		if took > 5*time.Second {
			t.Fatalf("%s took %v, want about the 1s budget", what, took)
		}
	}

	rec, _ := signIn()
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-in while Dataverse is well: %d\n%s", rec.Code, rec.Body)
	}
	session := rec.Result().Cookies()
	if n := g.dataverse.client.ConcurrencyLimit(); n != 3 {
		t.Fatalf("background client's concurrency limit = %d after a sign-in saw x-ms-dop-hint 3, want 3", n)
	}

	dv.SetFaults(dataversetest.Faults{Latency: 10 * time.Second})
	rec, took := signIn()
	tryAgain("sign-in while Dataverse is slow", rec, took)

	// The session is due for revalidation; Dataverse cannot answer in
	// the budget, so the grace period serves the request.
	advance(cfg.Session.ContactRevalidateInterval + time.Minute)
	start := time.Now()
	rec = serve(httptest.NewRequest("GET", base+"/private", nil), session)
	if took := time.Since(start); rec.Code != http.StatusOK || rec.Body.String() != "contact c0000000-0000-4000-8000-00000000a11c" || took > 5*time.Second {
		t.Fatalf("proxied request due for revalidation while Dataverse is slow: %d %q after %v, want alice's contact within the budget", rec.Code, rec.Body, took)
	}

	before := dv.Requests("GET contacts")
	dv.SetFaults(dataversetest.Faults{Status: http.StatusTooManyRequests, RetryAfter: 20 * time.Second, Count: 1})
	rec, took = signIn()
	tryAgain("sign-in while Dataverse throttles with a 20s Retry-After", rec, took)
	// The shared Retry-After wait keeps the next sign-in from Dataverse.
	rec, took = signIn()
	tryAgain("sign-in during the Retry-After", rec, took)
	if n := dv.Requests("GET contacts") - before; n != 1 {
		t.Fatalf("%d contacts requests during the Retry-After, want the one refused", n)
	}
}
