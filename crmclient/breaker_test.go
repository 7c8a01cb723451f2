package crmclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// TestThrottlingDoesNotOpenBreaker: a Dataverse that keeps answering 429 is
// up and has said when to come back; callers see IsThrottled, never a
// breaker-open error, and nothing is sent before Retry-After.
func TestThrottlingDoesNotOpenBreaker(t *testing.T) {
	c, h, _ := newOps(t, func(o *dataversetest.Options) {
		o.Limits = dataversetest.Limits{Requests: 1, Window: time.Hour}
	}, nil)
	ctx := context.Background()
	if _, err := c.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_, err := c.WhoAmI(ctx)
		if !crmclient.IsThrottled(err) || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := h.Requests("GET WhoAmI()"); n > 2 {
		t.Fatalf("%d WhoAmI requests reached the emulator; after the first 429 callers must wait", n)
	}
}

// TestOpenBreakerNamesLastFailure: a wrong client secret opens the breaker
// after BreakerFailures attempts; the fail-fast error still says why.
func TestOpenBreakerNamesLastFailure(t *testing.T) {
	srv := dataversetest.NewServer(dataversetest.Options{TenantID: opsTenant,
		Clients: []dataversetest.Client{{ID: opsClient, Secret: opsSecret}}})
	defer srv.Close()
	c, err := crmclient.New(crmclient.Config{URL: srv.URL, AuthorityHost: srv.URL, TenantID: opsTenant, ClientID: opsClient,
		ClientSecret: "wrong", MaxRetries: -1, BreakerFailures: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		c.WhoAmI(ctx)
	}
	_, err = c.WhoAmI(ctx)
	if !errors.Is(err, crmclient.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("breaker-open error: %v", err)
	}
}
