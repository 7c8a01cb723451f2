package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
)

var outboxT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func event(typ string) outbox.Event {
	return outbox.Event{Kind: lifecycle.Kind, Type: typ, Payload: json.RawMessage(`{"n":1}`), CreatedAt: outboxT0}
}

func outboxIDs(es []outbox.Event) []int64 {
	out := []int64{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func allEvents(t *testing.T, db *DB, userID string) []outbox.Event {
	t.Helper()
	es, err := db.OutboxEvents(t.Context(), userID)
	if err != nil {
		t.Fatalf("OutboxEvents: %v", err)
	}
	return es
}

// testOutboxEnqueue shows that user changes and their events are stored
// together, and that the events carry the user id and their payload.
func testOutboxEnqueue(t *testing.T, db *DB) {
	ctx := t.Context()
	u := newUser("ana")
	if err := db.CreateUserAndEnqueue(ctx, u, event(lifecycle.Created)); err != nil {
		t.Fatalf("CreateUserAndEnqueue: %v", err)
	}
	u.Roles = []string{"admin"}
	if err := db.UpdateUserAndEnqueue(ctx, u, event(lifecycle.Updated), event(lifecycle.Bound)); err != nil {
		t.Fatalf("UpdateUserAndEnqueue: %v", err)
	}
	if got, _ := db.UserByID(ctx, u.ID); !reflect.DeepEqual(got.Roles, []string{"admin"}) {
		t.Errorf("roles after update = %v", got.Roles)
	}
	if err := db.DeleteUser(ctx, u.ID, event(lifecycle.Deleted)); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, err := db.UserByID(ctx, u.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("user after DeleteUser: %v, want ErrNotFound", err)
	}
	if err := db.DeleteUser(ctx, u.ID, event(lifecycle.Deleted)); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("DeleteUser of a missing user: %v, want ErrNotFound", err)
	}
	es := allEvents(t, db, u.ID)
	var types []string
	for i, e := range es {
		types = append(types, e.Type)
		if e.UserID != u.ID || e.Kind != lifecycle.Kind || string(e.Payload) != `{"n":1}` ||
			!e.CreatedAt.Equal(outboxT0) || !e.NextAttemptAt.Equal(outboxT0) || e.Attempts != 0 ||
			!e.LockedUntil.IsZero() || !e.DeliveredAt.IsZero() || (i > 0 && e.ID <= es[i-1].ID) {
			t.Errorf("event %d = %+v", i, e)
		}
	}
	want := []string{lifecycle.Created, lifecycle.Updated, lifecycle.Bound, lifecycle.Deleted}
	if !slices.Equal(types, want) {
		t.Errorf("event types = %v, want %v (the failed delete enqueued nothing)", types, want)
	}
	if err := db.Enqueue(ctx, outbox.Event{Kind: "email", Type: "invite"}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if es := allEvents(t, db, ""); len(es) != 5 || string(es[4].Payload) != "{}" || es[4].CreatedAt.IsZero() {
		t.Errorf("after Enqueue: %+v", es)
	}
}

// testOutboxRollback shows that an event the database refuses (the
// table's CHECK on an empty type) rolls back the user change it came with.
func testOutboxRollback(t *testing.T, db *DB) {
	ctx := t.Context()
	bad := outbox.Event{Kind: lifecycle.Kind, Type: ""}
	mustCreate(t, db, newUser("bob"))
	existing, err := db.UserByLogin(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		run   func() error
		check func(t *testing.T)
	}{
		{"create", func() error {
			return db.CreateUserAndEnqueue(ctx, newUser("ana"), event(lifecycle.Created), bad)
		}, func(t *testing.T) {
			if _, err := db.UserByLogin(ctx, "ana"); !errors.Is(err, authz.ErrNotFound) {
				t.Errorf("user after a failed create: %v, want ErrNotFound", err)
			}
		}},
		{"update", func() error {
			c := *existing
			c.DisplayName = "changed"
			err := db.UpdateUserAndEnqueue(ctx, &c, event(lifecycle.Updated), bad)
			if !c.UpdatedAt.Equal(existing.UpdatedAt) {
				t.Errorf("UpdatedAt moved to %v though the update was rolled back", c.UpdatedAt)
			}
			return err
		}, func(t *testing.T) {
			if got, _ := db.UserByID(ctx, existing.ID); !reflect.DeepEqual(got, existing) {
				t.Errorf("user after a failed update:\n got %+v\nwant %+v", got, existing)
			}
		}},
		{"delete", func() error {
			return db.DeleteUser(ctx, existing.ID, event(lifecycle.Deleted), bad)
		}, func(t *testing.T) {
			if _, err := db.UserByID(ctx, existing.ID); err != nil {
				t.Errorf("user after a failed delete: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err == nil {
				t.Fatal("a refused event did not fail the change")
			}
			tt.check(t)
			if es := allEvents(t, db, ""); len(es) != 0 {
				t.Errorf("events after the rollback: %+v", es)
			}
		})
	}
}

// testOutboxClaim walks one user's queue through claim, lease, retry with
// backoff, lease expiry and reclaim, and completion.
func testOutboxClaim(t *testing.T, db *DB) {
	ctx := t.Context()
	const lease = time.Minute
	at := func(d time.Duration) time.Time { return outboxT0.Add(d) }
	ana, bob := newUser("ana"), newUser("bob")
	if err := db.CreateUserAndEnqueue(ctx, ana, event(lifecycle.Created), event(lifecycle.Updated)); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateUserAndEnqueue(ctx, bob, event(lifecycle.Created)); err != nil {
		t.Fatal(err)
	}
	es := allEvents(t, db, "")
	a1, a2, b1 := es[0].ID, es[1].ID, es[2].ID

	claim := func(t *testing.T, now time.Duration, want ...int64) []outbox.Event {
		t.Helper()
		got, err := db.ClaimOutbox(ctx, at(now), lease, 10)
		if err != nil {
			t.Fatalf("ClaimOutbox at +%v: %v", now, err)
		}
		if !slices.Equal(outboxIDs(got), append([]int64{}, want...)) {
			t.Fatalf("ClaimOutbox at +%v = %v, want %v", now, outboxIDs(got), want)
		}
		for _, e := range got {
			if !e.LockedUntil.Equal(at(now + lease)) {
				t.Errorf("event %d LockedUntil = %v, want %v", e.ID, e.LockedUntil, at(now+lease))
			}
		}
		return got
	}

	if _, err := db.ClaimOutbox(ctx, at(0), 0, 10); err == nil {
		t.Error("ClaimOutbox with a zero lease did not fail")
	}
	claim(t, -time.Second) // nothing is due before it was created
	first := claim(t, 0, a1, b1)
	if first[0].Attempts != 1 || first[0].Type != lifecycle.Created || first[0].UserID != ana.ID {
		t.Errorf("claimed %+v", first[0])
	}
	claim(t, 30*time.Second) // leased; a2 waits behind a1
	if err := db.CompleteOutbox(ctx, first[1], at(30*time.Second)); err != nil {
		t.Fatalf("CompleteOutbox: %v", err)
	}
	if err := db.CompleteOutbox(ctx, first[1], at(31*time.Second)); err != nil {
		t.Errorf("CompleteOutbox twice: %v", err)
	}
	if err := db.RetryOutbox(ctx, first[0], at(2*time.Minute), "boom"); err != nil {
		t.Fatalf("RetryOutbox: %v", err)
	}
	if err := db.RetryOutbox(ctx, first[0], at(2*time.Minute), "again"); !errors.Is(err, outbox.ErrLeaseLost) {
		t.Errorf("RetryOutbox after the lease ended: %v, want ErrLeaseLost", err)
	}
	claim(t, 90*time.Second) // a1 is backing off, a2 still waits
	second := claim(t, 2*time.Minute, a1)
	if second[0].Attempts != 2 || second[0].LastError != "boom" {
		t.Errorf("reclaimed after backoff: %+v", second[0])
	}
	// The worker holding the second claim dies: the lease runs out and the
	// event is claimed again (at least once).
	claim(t, 3*time.Minute) // the lease ends at +3m: not yet
	third := claim(t, 3*time.Minute+time.Millisecond, a1)
	if third[0].Attempts != 3 {
		t.Errorf("attempts after expiry = %d, want 3", third[0].Attempts)
	}
	if err := db.RetryOutbox(ctx, second[0], at(10*time.Minute), "late"); !errors.Is(err, outbox.ErrLeaseLost) {
		t.Errorf("RetryOutbox by the expired claim: %v, want ErrLeaseLost", err)
	}
	st, err := db.OutboxStats(ctx)
	if err != nil || st.Pending != 2 || !st.OldestCreatedAt.Equal(outboxT0) {
		t.Errorf("OutboxStats = %+v, %v; want 2 pending since %v", st, err, outboxT0)
	}
	if err := db.CompleteOutbox(ctx, third[0], at(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	last := claim(t, 4*time.Minute, a2)
	if err := db.CompleteOutbox(ctx, last[0], at(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	claim(t, time.Hour)
	if st, err := db.OutboxStats(ctx); err != nil || st.Pending != 0 || !st.OldestCreatedAt.IsZero() {
		t.Errorf("OutboxStats when all delivered = %+v, %v", st, err)
	}
	for _, e := range allEvents(t, db, "") {
		if e.DeliveredAt.IsZero() || !e.LockedUntil.IsZero() || e.LastError != "" {
			t.Errorf("delivered event %+v", e)
		}
	}
	// Purge keeps what was delivered at or after the bound.
	if n, err := db.PurgeOutbox(ctx, at(4*time.Minute)); err != nil || n != 1 {
		t.Errorf("PurgeOutbox = %d, %v; want 1 (b1)", n, err)
	}
	if got := outboxIDs(allEvents(t, db, "")); !slices.Equal(got, []int64{a1, a2}) {
		t.Errorf("after purge: %v, want %v", got, []int64{a1, a2})
	}
}

// testOutboxClaimLimit: a claim leases at most its limit, whatever plan
// the database picks for the claim (PostgreSQL may run an IN subquery
// with LIMIT once per outer row, and so lease every due event).
func testOutboxClaimLimit(t *testing.T, db *DB) {
	ctx := t.Context()
	for i := range 10 {
		if err := db.CreateUserAndEnqueue(ctx, newUser(fmt.Sprintf("l%02d", i)), event(lifecycle.Created)); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{1, 2, 3, 4} {
		got, err := db.ClaimOutbox(ctx, outboxT0, time.Hour, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != limit {
			t.Errorf("a claim with limit %d leased %d events", limit, len(got))
		}
	}
}

// testOutboxConcurrentClaims runs several claimers at once against one
// database: every event is claimed by exactly one of them.
func testOutboxConcurrentClaims(t *testing.T, db *DB) {
	ctx := t.Context()
	const users, claimers = 60, 4
	for i := range users {
		if err := db.CreateUserAndEnqueue(ctx, newUser(fmt.Sprintf("u%02d", i)), event(lifecycle.Created)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu    sync.Mutex
		seen  = map[int64]int{}
		wg    sync.WaitGroup
		errCh = make(chan error, claimers)
	)
	for range claimers {
		wg.Go(func() {
			for {
				got, err := db.ClaimOutbox(context.Background(), outboxT0, time.Hour, 3)
				if err != nil {
					errCh <- err
					return
				}
				if len(got) == 0 {
					return
				}
				if len(got) > 3 {
					// One claimer leasing more than it asked for would
					// hold the others' share under one lease.
					errCh <- fmt.Errorf("a claim with limit 3 leased %d events", len(got))
					return
				}
				mu.Lock()
				for _, e := range got {
					seen[e.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatalf("ClaimOutbox: %v", err)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d claimed %d times", id, n)
		}
	}
	if len(seen) != users {
		t.Errorf("%d events claimed, want %d", len(seen), users)
	}
}

// testOutboxFail shows that a permanently failed event is done with (never
// claimed again, no longer pending, no longer holding back its user's later
// events), keeps its error and failure time, that only the current claim
// may fail it, and that it is purged like a delivered one.
func testOutboxFail(t *testing.T, db *DB) {
	ctx := t.Context()
	u := newUser("fay")
	if err := db.CreateUserAndEnqueue(ctx, u, event(lifecycle.Created), event(lifecycle.Updated)); err != nil {
		t.Fatalf("CreateUserAndEnqueue: %v", err)
	}
	now := outboxT0.Add(time.Second)
	got, err := db.ClaimOutbox(ctx, now, time.Minute, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim = %v, %v; want the first event", outboxIDs(got), err)
	}
	first := got[0]
	// A stale claim (an earlier lease end) may not fail it.
	stale := first
	stale.LockedUntil = first.LockedUntil.Add(-time.Second)
	if err := db.FailOutbox(ctx, stale, now, "x"); !errors.Is(err, outbox.ErrLeaseLost) {
		t.Fatalf("FailOutbox with a stale claim = %v, want ErrLeaseLost", err)
	}
	at := now.Add(time.Second)
	if err := db.FailOutbox(ctx, first, at, "550 5.1.1 no such user"); err != nil {
		t.Fatalf("FailOutbox: %v", err)
	}
	if err := db.FailOutbox(ctx, first, at, "again"); !errors.Is(err, outbox.ErrLeaseLost) {
		t.Fatalf("second FailOutbox = %v, want ErrLeaseLost", err)
	}
	if err := db.RetryOutbox(ctx, first, at, "again"); !errors.Is(err, outbox.ErrLeaseLost) {
		t.Fatalf("RetryOutbox after FailOutbox = %v, want ErrLeaseLost", err)
	}
	es := allEvents(t, db, u.ID)
	if f := es[0]; !f.FailedAt.Equal(at) || !f.DeliveredAt.Equal(at) || f.LastError != "550 5.1.1 no such user" || !f.LockedUntil.IsZero() {
		t.Fatalf("failed event = %+v", f)
	}
	if !es[1].FailedAt.IsZero() {
		t.Fatalf("pending event has FailedAt %v", es[1].FailedAt)
	}
	if st, err := db.OutboxStats(ctx); err != nil || st.Pending != 1 {
		t.Fatalf("stats = %+v, %v; want 1 pending", st, err)
	}
	// The failed event is never claimed again; the next one of the user is.
	got, err = db.ClaimOutbox(ctx, at.Add(time.Hour), time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != es[1].ID {
		t.Fatalf("claim after failure = %v, %v; want [%d]", outboxIDs(got), err, es[1].ID)
	}
	if err := db.CompleteOutbox(ctx, got[0], at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := db.PurgeOutbox(ctx, at.Add(2*time.Hour)); err != nil || n != 2 {
		t.Fatalf("purge = %d, %v; want 2 (failed and delivered)", n, err)
	}
}
