package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// TestBreakerOpenAtTheGateway drives an outage through the real client's
// circuit breaker: Dataverse failing opens it; then new sign-ins of bound
// users fail closed without a request reaching Dataverse, an existing
// session rides on its snapshot within the grace period, the unbound
// break-glass admin signs in, and once Dataverse is back the half-open
// breaker lets sign-ins through again.
func TestBreakerOpenAtTheGateway(t *testing.T) {
	emu, _ := newContactEmulator(t)
	reg := prometheus.NewRegistry()
	client, err := crmclient.New(crmclient.Config{URL: emu.URL, AuthorityHost: emu.URL, TenantID: dvTenant, ClientID: dvClient,
		ClientSecret: dvSecret, MaxRetries: -1, BreakerFailures: 3, BreakerOpenTimeout: 200 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	h := contactHarness(t, client)
	h.createUser("ann", "ann@example.test", "correct horse battery")
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	if err := h.svc.Accounts.SetBinding(t.Context(), "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")

	emu.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	for i := range 3 {
		if resp, _ := h.postSignIn(h.browser(), "ann", "correct horse battery", nil); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("sign-in %d during the outage: %d, want 503", i, resp.StatusCode)
		}
	}
	if st := breakerState(t, reg); st != 2 {
		t.Fatalf("breaker state %v after 3 failures, want 2 (open)", st)
	}
	before := emu.Requests("")
	resp, body := h.postSignIn(h.browser(), "ann", "correct horse battery", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "try again") {
		t.Errorf("sign-in with the breaker open: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The existing session, due for revalidation, keeps its snapshot.
	h.clock.Advance(6 * time.Minute)
	if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != http.StatusOK || h.up.last(t).Header.Get("X-Current-User-Contact-Id") != annID {
		t.Errorf("existing session within the grace period: %d", resp.StatusCode)
	}
	// The break-glass admin needs no Dataverse.
	h.signIn(h.browser(), "root", "correct horse battery")
	if n := emu.Requests("") - before; n != 0 {
		t.Errorf("%d requests reached Dataverse while the breaker was open, want 0", n)
	}

	// Dataverse recovers; after the open timeout a trial call closes the breaker.
	emu.SetFaults(dataversetest.Faults{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := h.postSignIn(h.browser(), "ann", "correct horse battery", nil)
		if resp.StatusCode == http.StatusSeeOther {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign-in still refused (%d) 10s after Dataverse recovered", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := breakerState(t, reg); st != 0 {
		t.Errorf("breaker state %v after recovery, want 0 (closed)", st)
	}
}

// breakerState reads crmgate_dataverse_breaker_state from reg.
func breakerState(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "crmgate_dataverse_breaker_state" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no crmgate_dataverse_breaker_state metric")
	return 0
}
