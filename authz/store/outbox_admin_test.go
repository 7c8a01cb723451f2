package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
)

func TestOutboxAdminSQLite(t *testing.T)   { runOutboxAdmin(t, dbOpener(sqliteURL)) }
func TestOutboxAdminPostgres(t *testing.T) { runOutboxAdmin(t, dbOpener(postgresURL)) }

func runOutboxAdmin(t *testing.T, open func(*testing.T) *DB) {
	t.Run("Lifecycle", func(t *testing.T) { testOutboxAdmin(t, open(t)) })
	t.Run("ConcurrentRetry", func(t *testing.T) { testOutboxAdminConcurrent(t, open(t)) })
	t.Run("Bulk", func(t *testing.T) { testOutboxAdminBulk(t, open(t)) })
}

// adminRig is an outbox with a worker and its admin on one store; the
// deliverer fails permanently the events whose type is in fail.
type adminRig struct {
	db     *DB
	admin  *outbox.Admin
	worker *outbox.Worker
	audit  *audit.Log

	mu        sync.Mutex
	now       time.Time
	fail      map[string]bool
	delivered []int64
	notified  int
}

func newAdminRig(t *testing.T, db *DB) *adminRig {
	t.Helper()
	r := &adminRig{db: db, now: outboxT0.Add(time.Minute), fail: map[string]bool{}}
	r.audit = audit.New(db, r.clock, nil)
	var err error
	r.worker, err = outbox.NewWorker(db, r, outbox.Options{Now: r.clock, MinBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r.admin, err = outbox.NewAdmin(db, r.audit, outbox.AdminOptions{Now: r.clock, Notify: func() {
		r.mu.Lock()
		r.notified++
		r.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *adminRig) clock() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.now }

func (r *adminRig) Deliver(_ context.Context, e outbox.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail[e.Type] {
		return outbox.Permanent(fmt.Errorf("smtp: 550 5.1.1 <ana.secret@example.com>: mailbox unknown (event %d)", e.ID))
	}
	r.delivered = append(r.delivered, e.ID)
	return nil
}

func (r *adminRig) poll(t *testing.T) {
	t.Helper()
	for {
		n, err := r.worker.Poll(t.Context())
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		if n == 0 {
			return
		}
	}
}

// mailEvent is a mail event as package mail writes it: its payload holds
// the recipient and a link with a secret token.
func mailEvent(typ, userID string) outbox.Event {
	p, _ := json.Marshal(map[string]string{"to": "Ana Secret <ana.secret@Example.COM>", "subject": "Reset",
		"text": "https://gw.example/reset?token=TOPSECRETTOKEN"})
	return outbox.Event{Kind: "mail", Type: typ, UserID: userID, Payload: p, CreatedAt: outboxT0}
}

func wantNotFailed(t *testing.T, err error, id int64, state outbox.State) {
	t.Helper()
	var nf *outbox.NotFailedError
	if !errors.As(err, &nf) || nf.ID != id || nf.State != state || !errors.Is(err, outbox.ErrNotFailed) {
		t.Fatalf("error = %v, want NotFailedError{%d, %s}", err, id, state)
	}
	if got := errors.Is(err, authz.ErrNotFound); got != (state == outbox.StateUnknown) {
		t.Fatalf("errors.Is(%v, ErrNotFound) = %v", err, got)
	}
}

func testOutboxAdmin(t *testing.T, db *DB) {
	ctx := t.Context()
	r := newAdminRig(t, db)
	if bs, err := r.admin.Backlog(ctx); err != nil || len(bs) != 0 {
		t.Fatalf("empty backlog = %+v, %v", bs, err)
	}
	r.fail["password_reset"] = true
	if err := db.Enqueue(ctx,
		mailEvent("password_reset", "u1"), // 1: fails
		mailEvent("welcome", "u2"),        // 2: delivered
		mailEvent("password_reset", "u3"), // 3: fails
		event(lifecycle.Created),          // 4: stays pending (not polled)
	); err != nil {
		t.Fatal(err)
	}
	// Deliver the mails only: the lifecycle event is due later.
	if err := db.Enqueue(ctx, outbox.Event{Kind: lifecycle.Kind, Type: lifecycle.Updated, UserID: "u9", Payload: json.RawMessage(`{}`),
		CreatedAt: outboxT0, NextAttemptAt: outboxT0.Add(time.Hour)}); err != nil { // 5
		t.Fatal(err)
	}
	r.poll(t)
	if len(r.delivered) != 2 { // 2 and 4
		t.Fatalf("delivered = %v", r.delivered)
	}

	bs, err := r.admin.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []outbox.KindBacklog{
		{Kind: lifecycle.Kind, Pending: 1, OldestPending: outboxT0, OldestPendingAge: time.Minute},
		{Kind: "mail", Failed: 2},
	}
	if fmt.Sprint(bs) != fmt.Sprint(want) {
		t.Fatalf("backlog = %+v\nwant %+v", bs, want)
	}

	items, err := r.admin.Failed(ctx, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].ID != 1 || items[1].ID != 3 {
		t.Fatalf("failed = %+v", items)
	}
	it := items[0]
	if it.Kind != "mail" || it.Type != "password_reset" || it.UserID != "u1" || it.Attempts != 1 ||
		!it.FailedAt.Equal(r.clock()) || !it.CreatedAt.Equal(outboxT0) ||
		it.Summary.RecipientDomain != "example.com" || it.Summary.Bytes == 0 {
		t.Fatalf("failed item = %+v", it)
	}
	if !strings.Contains(it.LastError, "550 5.1.1 <<email>>") {
		t.Errorf("last error = %q, want the SMTP answer with the address redacted", it.LastError)
	}
	if s := fmt.Sprintf("%+v", items); strings.Contains(s, "ana.secret") || strings.Contains(s, "TOPSECRET") {
		t.Fatalf("failed items show payload data: %s", s)
	}
	if page, err := r.admin.Failed(ctx, "mail", 1, 1); err != nil || len(page) != 1 || page[0].ID != 3 {
		t.Fatalf("second page = %+v, %v", page, err)
	}
	if none, err := r.admin.Failed(ctx, lifecycle.Kind, 0, 10); err != nil || len(none) != 0 {
		t.Fatalf("failed lifecycle = %+v, %v", none, err)
	}
	for _, bad := range []struct {
		kind  string
		after int64
		limit int
		field string
	}{{"", -1, 0, "after"}, {"", 0, -1, "limit"}, {"", 0, authz.MaxListLimit + 1, "limit"}, {"bad\nkind", 0, 0, "kind"}} {
		var ve *authz.ValidationError
		if _, err := r.admin.Failed(ctx, bad.kind, bad.after, bad.limit); !errors.As(err, &ve) || ve.Field != bad.field {
			t.Errorf("Failed(%q, %d, %d) = %v, want a validation error of %s", bad.kind, bad.after, bad.limit, err, bad.field)
		}
	}

	// Wrong states.
	_, err = r.admin.Retry(ctx, 4, "admin1")
	wantNotFailed(t, err, 4, outbox.StateDelivered)
	_, err = r.admin.Drop(ctx, 5, "admin1")
	wantNotFailed(t, err, 5, outbox.StatePending)
	_, err = r.admin.Retry(ctx, 99, "admin1")
	wantNotFailed(t, err, 99, outbox.StateUnknown)
	var ve *authz.ValidationError
	if _, err := r.admin.Drop(ctx, 0, "admin1"); !errors.As(err, &ve) {
		t.Fatalf("Drop(0) = %v", err)
	}

	// Retry: pending again, and the worker delivers it.
	r.mu.Lock()
	r.now = r.now.Add(time.Minute)
	r.fail["password_reset"] = false
	r.mu.Unlock()
	got, err := r.admin.Retry(ctx, 1, "admin1")
	if err != nil || got.ID != 1 || got.Type != "password_reset" {
		t.Fatalf("Retry(1) = %+v, %v", got, err)
	}
	if r.notified != 1 {
		t.Fatalf("worker notified %d times", r.notified)
	}
	_, err = r.admin.Retry(ctx, 1, "admin1")
	wantNotFailed(t, err, 1, outbox.StatePending)
	if bs, _ := r.admin.Backlog(ctx); fmt.Sprint(bs[1]) != fmt.Sprint(outbox.KindBacklog{Kind: "mail", Pending: 1, Retrying: 1,
		OldestPending: outboxT0, OldestPendingAge: 2 * time.Minute, Failed: 1}) {
		t.Fatalf("mail backlog after retry = %+v", bs[1])
	}
	r.poll(t)
	es := allEvents(t, db, "u1")
	if len(es) != 1 || es[0].DeliveredAt.IsZero() || !es[0].FailedAt.IsZero() || es[0].Attempts != 1 || es[0].LastError != "" {
		t.Fatalf("retried event = %+v, want delivered at its first new attempt", es)
	}

	// Drop: gone.
	if got, err := r.admin.Drop(ctx, 3, "admin2"); err != nil || got.ID != 3 {
		t.Fatalf("Drop(3) = %+v, %v", got, err)
	}
	if es := allEvents(t, db, "u3"); len(es) != 0 {
		t.Fatalf("dropped event still there: %+v", es)
	}
	_, err = r.admin.Drop(ctx, 3, "admin2")
	wantNotFailed(t, err, 3, outbox.StateUnknown)
	if bs, _ := r.admin.Backlog(ctx); len(bs) != 1 || bs[0].Kind != lifecycle.Kind {
		t.Fatalf("backlog after drop = %+v", bs)
	}

	// One audit row per change, none for the refusals.
	evs, err := r.audit.ListAudit(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, e := range evs {
		rows = append(rows, e.Type+"|"+e.Actor+"|"+e.UserID+"|"+e.Detail)
	}
	wantRows := []string{
		"outbox.dropped|admin2|u3|event 3 kind mail type password_reset",
		"outbox.retried|admin1|u1|event 1 kind mail type password_reset",
	}
	if fmt.Sprint(rows) != fmt.Sprint(wantRows) {
		t.Fatalf("audit rows = %q\nwant %q", rows, wantRows)
	}
}

// testOutboxAdminConcurrent: operators retrying and dropping one failed
// event at once: exactly one of them succeeds, the others get a
// NotFailedError.
func testOutboxAdminConcurrent(t *testing.T, db *DB) {
	ctx := t.Context()
	r := newAdminRig(t, db)
	r.fail["x"] = true
	for range 5 {
		if err := db.Enqueue(ctx, mailEvent("x", "")); err != nil {
			t.Fatal(err)
		}
		r.poll(t)
	}
	items, err := r.admin.Failed(ctx, "mail", 0, 0)
	if err != nil || len(items) != 5 {
		t.Fatalf("failed = %+v, %v", items, err)
	}
	for _, it := range items {
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for g := range 6 {
			wg.Go(func() {
				var err error
				if g%2 == 0 {
					_, err = r.admin.Retry(ctx, it.ID, "op")
				} else {
					_, err = r.admin.Drop(ctx, it.ID, "op")
				}
				if err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				} else if !errors.Is(err, outbox.ErrNotFailed) {
					t.Errorf("event %d: %v", it.ID, err)
				}
			})
		}
		wg.Wait()
		if ok != 1 {
			t.Fatalf("event %d: %d operators succeeded, want 1", it.ID, ok)
		}
	}
}

func testOutboxAdminBulk(t *testing.T, db *DB) {
	ctx := t.Context()
	r := newAdminRig(t, db)
	r.fail["x"] = true
	for i := range 4 {
		if err := db.Enqueue(ctx, mailEvent("x", fmt.Sprint("u", i))); err != nil {
			t.Fatal(err)
		}
	}
	r.poll(t)
	var ve *authz.ValidationError
	if _, err := r.admin.RetryAll(ctx, "", "op"); !errors.As(err, &ve) {
		t.Fatalf("RetryAll without kind = %v", err)
	}
	if n, err := r.admin.RetryAll(ctx, lifecycle.Kind, "op"); err != nil || n != 0 {
		t.Fatalf("RetryAll(lifecycle) = %d, %v", n, err)
	}
	if n, err := r.admin.RetryAll(ctx, "mail", "op"); err != nil || n != 4 {
		t.Fatalf("RetryAll(mail) = %d, %v", n, err)
	}
	r.poll(t) // they fail again
	if n, err := r.admin.DropAll(ctx, "mail", "op"); err != nil || n != 4 {
		t.Fatalf("DropAll(mail) = %d, %v", n, err)
	}
	if es := allEvents(t, db, ""); len(es) != 0 {
		t.Fatalf("events left: %+v", es)
	}
	evs, _ := r.audit.ListAudit(ctx, audit.Filter{Actor: "op"})
	var rows []string
	for _, e := range evs {
		rows = append(rows, e.Type+"|"+e.Detail)
	}
	want := []string{"outbox.dropped_all|kind mail count 4", "outbox.retried_all|kind mail count 4", "outbox.retried_all|kind dataverse.lifecycle count 0"}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("audit rows = %q\nwant %q", rows, want)
	}
}
