package crmclient_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// TestContactCacheCoalescesAgainstEmulator: 100 concurrent lookups of one
// contact make one HTTP request to the emulator (counted by the emulator);
// within the TTL the next lookup makes none; Invalidate makes the next one
// ask again; while the emulator fails, the stale snapshot is served.
func TestContactCacheCoalescesAgainstEmulator(t *testing.T) {
	c, h, _ := newOps(t, nil, nil)
	now := opsNow
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cc, err := crmclient.NewContactCache(c, []string{"adx_organizationname"}, crmclient.WebRoleModelStandard,
		crmclient.CacheOptions{TTL: time.Minute, MaxStale: 10 * time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ann := id(annID)
	before := apiRequests(h)

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ct, _, err := cc.Get(ctx, ann)
			if err == nil && ct.Username != "ann" {
				t.Errorf("username %q", ct.Username)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := apiRequests(h) - before; n != 1 {
		t.Fatalf("100 concurrent lookups made %d requests, want 1", n)
	}
	if _, _, err := cc.Get(ctx, ann); err != nil || apiRequests(h)-before != 1 {
		t.Fatalf("within the TTL: %v, %d requests", err, apiRequests(h)-before)
	}
	cc.Invalidate(ann)
	if _, _, err := cc.Get(ctx, ann); err != nil || apiRequests(h)-before != 2 {
		t.Fatalf("after Invalidate: %v, %d requests", err, apiRequests(h)-before)
	}

	// Dataverse down after the TTL: the snapshot is served, marked stale.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	h.SetFaults(dataversetest.Faults{Status: 503, Count: 100})
	ct, stale, err := cc.Get(ctx, ann)
	if err != nil || !stale || ct.Username != "ann" {
		t.Fatalf("during an outage: %v stale=%v", err, stale)
	}
	// Beyond MaxStale it is an error, not a snapshot.
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if _, _, err := cc.Get(ctx, ann); err == nil {
		t.Fatal("snapshot served beyond MaxStale")
	}
	h.SetFaults(dataversetest.Faults{})
	if _, _, err := cc.Get(ctx, crmclient.GUID{}); err == nil {
		t.Fatal("zero GUID accepted")
	}
}
