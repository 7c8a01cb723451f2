package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"testing"
	"time"
)

func TestWebhookDeliveriesSQLite(t *testing.T)   { testWebhookDeliveries(t, sqliteURL(t)) }
func TestWebhookDeliveriesPostgres(t *testing.T) { testWebhookDeliveries(t, postgresURL(t)) }

func hookKey(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// testWebhookDeliveries: a delivery is accepted once within keep (also
// when two replicas race), its contact is in the session feed, a deletion
// sticks, and both kinds of row are swept after keep.
func testWebhookDeliveries(t *testing.T, dbURL string) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	a, err := Open(ctx, dbURL, WithNow(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := Open(ctx, dbURL, WithNow(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	const contact = "5A1B0000-0000-0000-0000-000000000001"
	if _, err := a.AcceptWebhook(ctx, "short", contact, false, time.Minute); err == nil {
		t.Error("a short key hash was accepted")
	}
	since := clock()
	var wg sync.WaitGroup
	dups := make([]bool, 8)
	for i := range dups {
		wg.Go(func() {
			db := a
			if i%2 == 1 {
				db = b
			}
			d, err := db.AcceptWebhook(ctx, hookKey("one"), contact, false, 5*time.Minute)
			if err != nil {
				t.Error(err)
			}
			dups[i] = d
		})
	}
	wg.Wait()
	accepted := 0
	for _, d := range dups {
		if !d {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("%d of %d concurrent deliveries of one key accepted, want 1", accepted, len(dups))
	}
	ch, err := b.SessionChangesSince(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Contacts) != 1 || ch.Contacts[0].ContactID != "5a1b0000-0000-0000-0000-000000000001" || ch.Contacts[0].Deleted || !ch.Contacts[0].At.Equal(since) {
		t.Fatalf("contacts = %+v", ch.Contacts)
	}
	advance(time.Second)
	if d, err := a.AcceptWebhook(ctx, hookKey("two"), contact, true, 5*time.Minute); err != nil || d {
		t.Fatalf("deletion: duplicate %v, %v", d, err)
	}
	advance(time.Second)
	if d, err := a.AcceptWebhook(ctx, hookKey("three"), contact, false, 5*time.Minute); err != nil || d {
		t.Fatalf("after deletion: duplicate %v, %v", d, err)
	}
	if ch, err = a.SessionChangesSince(ctx, since); err != nil || len(ch.Contacts) != 1 || !ch.Contacts[0].Deleted || !ch.Contacts[0].At.Equal(clock()) {
		t.Fatalf("after a deletion and an update: %+v %v", ch.Contacts, err)
	}
	// Two changes in one millisecond are told apart.
	if d, err := a.AcceptWebhook(ctx, hookKey("four"), contact, false, 5*time.Minute); err != nil || d {
		t.Fatalf("same millisecond: duplicate %v, %v", d, err)
	}
	if ch, err = a.SessionChangesSince(ctx, since); err != nil || len(ch.Contacts) != 1 || !ch.Contacts[0].At.Equal(clock().Add(time.Millisecond)) {
		t.Fatalf("a second change in the same millisecond: %+v %v", ch.Contacts, err)
	}
	// After keep, key one is forgotten (accepted again) and the old
	// contact change swept before it is written anew.
	advance(6 * time.Minute)
	if d, err := b.AcceptWebhook(ctx, hookKey("one"), "other", false, 5*time.Minute); err != nil || d {
		t.Fatalf("after keep: duplicate %v, %v", d, err)
	}
	if ch, err = a.SessionChangesSince(ctx, since); err != nil || len(ch.Contacts) != 1 || ch.Contacts[0].ContactID != "other" {
		t.Fatalf("after the sweep: %+v %v", ch.Contacts, err)
	}
}
