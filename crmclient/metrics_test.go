package crmclient_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// TestMetricsAgainstEmulator drives the client through a success, a retried
// 503, a 429 and cached contact lookups, then checks every metric family the
// issue names: requests by operation and status, latency, retries, 429s,
// breaker state, in-flight requests, cache hits and misses. No label holds
// an id.
func TestMetricsAgainstEmulator(t *testing.T) {
	srv := dataversetest.NewServer(dataversetest.Options{TenantID: opsTenant,
		Clients: []dataversetest.Client{{ID: opsClient, Secret: opsSecret}}})
	defer srv.Close()
	if err := srv.LoadSeed(strings.NewReader(opsSeed)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := crmclient.New(crmclient.Config{URL: srv.URL, AuthorityHost: srv.URL, TenantID: opsTenant, ClientID: opsClient,
		ClientSecret: opsSecret, Registerer: reg, Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	srv.SetFaults(dataversetest.Faults{Status: 503, Count: 1})
	if _, err := c.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	srv.SetFaults(dataversetest.Faults{Status: 429, Count: 1})
	c.WhoAmI(ctx)
	cc, err := crmclient.NewContactCache(c, nil, crmclient.WebRoleModelStandard, crmclient.CacheOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := cc.Get(ctx, id(annID)); err != nil {
			t.Fatal(err)
		}
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), annID) {
					t.Errorf("%s has an id in label %s", f.GetName(), l.GetName())
				}
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	has := func(prefix string, min float64) {
		t.Helper()
		for k, v := range got {
			if strings.HasPrefix(k, prefix) && v >= min {
				return
			}
		}
		t.Errorf("no series %s… >= %v in %v", prefix, min, got)
	}
	has("crmgate_dataverse_requests_total,code=200,operation=WhoAmI", 2)
	has("crmgate_dataverse_requests_total,code=503,operation=WhoAmI", 1)
	has("crmgate_dataverse_request_duration_seconds,operation=WhoAmI", 3)
	has("crmgate_dataverse_retries_total", 1)
	has("crmgate_dataverse_throttled_total", 1)
	has("crmgate_dataverse_breaker_state", 0)
	has("crmgate_dataverse_in_flight_requests", 0)
	has("crmgate_dataverse_cache_requests_total,cache=contact,result=hit", 2)
	has("crmgate_dataverse_cache_requests_total,cache=contact,result=miss", 1)
}
