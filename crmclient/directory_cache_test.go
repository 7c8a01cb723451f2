package crmclient_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
)

// TestDirectoryUpdateContact writes contact columns with one conditional
// PATCH: the current ETag succeeds, a stale one is ErrContactChanged and
// writes nothing, a missing contact is ErrContactNotFound (never created),
// and bad input sends nothing.
func TestDirectoryUpdateContact(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	ann, err := d.ContactByID(ctx, annID, nil)
	if err != nil {
		t.Fatal(err)
	}
	patches := func() int { return h.Requests("PATCH contacts()") }
	if err := d.UpdateContact(ctx, annID, map[string]any{"firstname": "Anne", "telephone1": nil}, ann.ETag); err != nil {
		t.Fatal(err)
	}
	got, _ := d.ContactByID(ctx, annID, nil)
	if got.FirstName != "Anne" || got.Name != "Anne Lee" || got.ETag == ann.ETag {
		t.Fatalf("after update: %q %q etag %q (was %q)", got.FirstName, got.Name, got.ETag, ann.ETag)
	}
	before := patches()
	err = d.UpdateContact(ctx, annID, map[string]any{"firstname": "Stale"}, ann.ETag)
	if !errors.Is(err, dataverse.ErrContactChanged) || errors.Is(err, dataverse.ErrUnavailable) {
		t.Fatalf("stale ETag: %v", err)
	}
	if now, _ := d.ContactByID(ctx, annID, nil); now.FirstName != "Anne" || patches()-before != 1 {
		t.Fatalf("a stale write changed the contact: %q", now.FirstName)
	}
	const missing = "c0000000-0000-4000-8000-0000000000ff"
	if err := d.UpdateContact(ctx, missing, map[string]any{"firstname": "X"}, ""); !errors.Is(err, dataverse.ErrContactNotFound) {
		t.Fatalf("missing contact: %v", err)
	}
	if _, err := d.ContactByID(ctx, missing, nil); !errors.Is(err, dataverse.ErrContactNotFound) {
		t.Fatalf("the update created the missing contact: %v", err)
	}
	before = patches()
	for name, tc := range map[string]struct {
		id   string
		cols map[string]any
	}{
		"secret column": {annID, map[string]any{"adx_identity_passwordhash": "x"}},
		"bad column":    {annID, map[string]any{"first name": "x"}},
		"bad value":     {annID, map[string]any{"firstname": 1.5}},
		"no columns":    {annID, nil},
		"not a GUID":    {"ann", map[string]any{"firstname": "x"}},
	} {
		if err := d.UpdateContact(ctx, tc.id, tc.cols, ""); !errors.Is(err, crmclient.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if n := patches() - before; n != 0 {
		t.Errorf("invalid updates sent %d requests", n)
	}
	h.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	if err := d.UpdateContact(ctx, annID, map[string]any{"firstname": "X"}, ""); !errors.Is(err, dataverse.ErrUnavailable) {
		t.Errorf("during an outage: %v", err)
	}
}

// TestCachedDirectorySnapshots: within the TTL snapshots come from the
// cache, concurrent callers share one request, each gets its own copy, a
// stale snapshot is never served, columns outside the cache are read
// directly, and UpdateContact drops the cached snapshot.
func TestCachedDirectorySnapshots(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cache, err := crmclient.NewContactCache(c, []string{"telephone1", "adx_organizationname"}, crmclient.WebRoleModelStandard,
		crmclient.CacheOptions{TTL: time.Minute, MaxStale: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	d := crmclient.NewCachedDirectory(crmclient.NewDirectory(c, crmclient.WebRoleModelStandard), cache)
	gets := func() int { return h.Requests("GET contacts()") }

	before := gets()
	var wg sync.WaitGroup
	results := make([]*dataverse.Contact, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = d.ContactSnapshot(ctx, annID, []string{"telephone1"})
		}()
	}
	wg.Wait()
	if n := gets() - before; n != 1 {
		t.Fatalf("20 concurrent snapshots made %d requests, want 1", n)
	}
	for _, r := range results {
		if r == nil || r.Name != "Ann Lee" || len(r.Columns) != 1 || len(r.Roles) != 1 {
			t.Fatalf("snapshot %#v", r)
		}
	}
	results[0].Columns["telephone1"] = "mutated"
	if again, _ := d.ContactSnapshot(ctx, annID, []string{"telephone1"}); again.Columns["telephone1"] == "mutated" || gets()-before != 1 {
		t.Fatalf("snapshots share state, or a cached one was asked for again: %v", again.Columns)
	}
	// A column the cache does not hold: read directly.
	if _, err := d.ContactSnapshot(ctx, annID, []string{"adx_identity_accessfailedcount"}); err != nil || gets()-before != 2 {
		t.Fatalf("uncached column: %v, %d requests", err, gets()-before)
	}
	// Past the TTL during an outage: never the stale snapshot.
	advance(2 * time.Minute)
	h.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	if got, err := d.ContactSnapshot(ctx, annID, []string{"telephone1"}); got != nil || !errors.Is(err, dataverse.ErrUnavailable) {
		t.Fatalf("stale snapshot served: %#v, %v", got, err)
	}
	h.SetFaults(dataversetest.Faults{})
	// A write through the directory drops the cached snapshot.
	if _, err := d.ContactSnapshot(ctx, annID, []string{"telephone1"}); err != nil {
		t.Fatal(err)
	}
	if err := d.UpdateContact(ctx, annID, map[string]any{"firstname": "Anne"}, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := d.ContactSnapshot(ctx, annID, []string{"telephone1"}); err != nil || got.FirstName != "Anne" {
		t.Fatalf("after UpdateContact: %#v, %v", got, err)
	}
	if got, err := d.ContactSnapshot(ctx, "c0000000-0000-4000-8000-0000000000ff", nil); got != nil || !errors.Is(err, dataverse.ErrContactNotFound) {
		t.Fatalf("missing contact: %#v, %v", got, err)
	}
}

// TestCachedDirectoryRefreshRace: a revalidation that found the
// snapshot past its TTL, and asks for a load only after another one has
// refreshed it, gets the refreshed snapshot without a request of its own.
// The cache's clock holds the late caller between the two.
func TestCachedDirectoryRefreshRace(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var entered, release chan struct{} // set: the next reading waits for release
	clock := func() time.Time {
		mu.Lock()
		e, r := entered, release
		entered, release = nil, nil
		mu.Unlock()
		if e != nil {
			close(e)
			<-r
		}
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	cache, err := crmclient.NewContactCache(c, []string{"telephone1"}, crmclient.WebRoleModelStandard,
		crmclient.CacheOptions{TTL: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	d := crmclient.NewCachedDirectory(crmclient.NewDirectory(c, crmclient.WebRoleModelStandard), cache)
	gets := func() int { return h.Requests("GET contacts()") }
	before := gets()
	if _, err := d.ContactSnapshot(ctx, annID, []string{"telephone1"}); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	now = now.Add(time.Minute) // the snapshot is due for a refresh
	entered, release = make(chan struct{}), make(chan struct{})
	held, unheld := entered, release
	mu.Unlock()
	var once sync.Once
	unblock := func() { once.Do(func() { close(unheld) }) }
	var wg sync.WaitGroup
	defer wg.Wait() // on failure too: no goroutine left waiting on the clock
	defer unblock()
	var late *dataverse.Contact
	var lateErr error
	wg.Go(func() { late, lateErr = d.ContactSnapshot(ctx, annID, []string{"telephone1"}) })
	// The late caller has read the snapshot and is checking its age
	// while another refreshes it; then it finds its snapshot past the TTL.
	<-held
	if _, err := d.ContactSnapshot(ctx, annID, []string{"telephone1"}); err != nil || gets()-before != 2 {
		t.Fatalf("refresh: %v, %d requests", err, gets()-before)
	}
	unblock()
	wg.Wait()
	if lateErr != nil || late == nil || late.Name != "Ann Lee" {
		t.Fatalf("late snapshot: %#v, %v", late, lateErr)
	}
	if n := gets() - before; n != 2 {
		t.Fatalf("a refresh and a late caller made %d requests, want 2 (one each for the first load and the refresh)", n)
	}
}
