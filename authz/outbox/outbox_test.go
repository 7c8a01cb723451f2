package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/authztest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
)

// deliverer is a Deliverer made of a function; it records every call.
type deliverer struct {
	mu    sync.Mutex
	calls []outbox.Event
	fn    func(ctx context.Context, e outbox.Event) error
}

func (d *deliverer) Deliver(ctx context.Context, e outbox.Event) error {
	d.mu.Lock()
	d.calls = append(d.calls, e)
	d.mu.Unlock()
	if d.fn == nil {
		return nil
	}
	return d.fn(ctx, e)
}

func (d *deliverer) ids() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int64
	for _, e := range d.calls {
		out = append(out, e.ID)
	}
	return out
}

// TestLifecycleEventsEnqueued shows that each account change enqueues its
// lifecycle event with a snapshot of the account at that moment, and wakes
// the worker.
func TestLifecycleEventsEnqueued(t *testing.T) {
	notified := 0
	f := authztest.NewFixture(t, wiring.Options{OutboxNotify: func() { notified++ }, Contacts: authztest.Known(authztest.ContactID)})
	ctx := t.Context()
	u := f.CreateUser(t, "ana", authz.StatusActive)
	steps := []struct {
		name string
		run  func() error
		typ  string
	}{
		{"password", func() error { return f.Svc.Accounts.SetPassword(ctx, "ana", authztest.GoodPassword+"!", "cli:test") }, lifecycle.Updated},
		{"roles", func() error { return f.Svc.Accounts.SetRoles(ctx, "ana", []string{"member", "vip"}, "cli:test") }, lifecycle.Updated},
		{"status", func() error { return f.Svc.Accounts.SetStatus(ctx, "ana", authz.StatusDisabled, "cli:test") }, lifecycle.Updated},
		{"bind", func() error {
			return f.Svc.Accounts.SetBinding(ctx, "ana", authz.Binding{Mode: authz.BindingLookup,
				Ref: &dataverse.EntityReference{ID: "0F8FAD5B-D9CB-469F-A165-70867728950E", LogicalName: "contact"}}, "cli:test")
		}, lifecycle.Bound},
		{"unbind", func() error { return f.Svc.Accounts.SetBinding(ctx, "ana", authz.Binding{}, "cli:test") }, lifecycle.Unbound},
		{"delete", func() error { return f.Svc.Accounts.DeleteUser(ctx, "ana@example.com", "cli:test") }, lifecycle.Deleted},
	}
	for _, s := range steps {
		f.Clock.Advance(time.Second)
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	es := f.Events(t, u.ID)
	if len(es) != len(steps)+1 || notified != len(steps)+1 {
		t.Fatalf("%d events, %d notifications; want %d each", len(es), notified, len(steps)+1)
	}
	if es[0].Type != lifecycle.Created {
		t.Errorf("first event %s, want %s", es[0].Type, lifecycle.Created)
	}
	for i, s := range steps {
		if es[i+1].Type != s.typ {
			t.Errorf("event after %s: %s, want %s", s.name, es[i+1].Type, s.typ)
		}
	}
	for _, e := range es {
		if e.Kind != lifecycle.Kind || e.UserID != u.ID {
			t.Errorf("event %+v", e)
		}
	}
	// Every payload is the account as it was then.
	created, roles, bound, deleted := authztest.Snapshot(t, es[0]), authztest.Snapshot(t, es[2]), authztest.Snapshot(t, es[4]), authztest.Snapshot(t, es[6])
	if created.ID != u.ID || created.Username != "ana" || created.Email != "ana@example.com" ||
		!slices.Equal(created.Roles, []string{"member"}) || created.Status != authz.StatusActive ||
		created.Binding.Mode != authz.BindingNone || !created.OccurredAt.Equal(u.CreatedAt) {
		t.Errorf("created snapshot = %+v", created)
	}
	if !slices.Equal(roles.Roles, []string{"member", "vip"}) || roles.Status != authz.StatusActive {
		t.Errorf("roles snapshot = %+v", roles)
	}
	if bound.Binding.Ref == nil || bound.Binding.Ref.ID != authztest.ContactID || bound.Status != authz.StatusDisabled {
		t.Errorf("bound snapshot = %+v (the id is stored in lower case)", bound)
	}
	if deleted.Binding.Mode != authz.BindingNone || deleted.Username != "ana" {
		t.Errorf("deleted snapshot = %+v", deleted)
	}
	if _, err := f.Svc.Accounts.UserByID(ctx, u.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("user after DeleteUser: %v", err)
	}
	if err := f.Svc.Accounts.DeleteUser(ctx, "ana", "cli:test"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("DeleteUser twice: %v, want ErrNotFound", err)
	}
	if e := f.LastAudit(t, audit.EventUserDeleted); e.UserID != u.ID || e.Actor != "cli:test" {
		t.Errorf("delete audit = %+v", e)
	}
	if e := f.LastAudit(t, audit.EventBindingSet); e.Detail != string(authz.BindingNone) {
		t.Errorf("binding audit = %+v", e)
	}
}

func TestSetBindingValidation(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{Contacts: authztest.Known(authztest.ContactID)})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	ref := func(id, logical string) *dataverse.EntityReference {
		return &dataverse.EntityReference{ID: id, LogicalName: logical}
	}
	tests := []struct {
		name string
		b    authz.Binding
		ok   bool
	}{
		{"lookup", authz.Binding{Mode: authz.BindingLookup, Ref: ref(authztest.ContactID, "contact")}, true},
		{"username", authz.Binding{Mode: authz.BindingUsername}, true},
		{"custom", authz.Binding{Mode: authz.BindingCustom}, true},
		{"none", authz.Binding{Mode: authz.BindingNone}, true},
		{"zero", authz.Binding{}, true},
		{"unknown mode", authz.Binding{Mode: "magic"}, false},
		{"lookup without ref", authz.Binding{Mode: authz.BindingLookup}, false},
		{"lookup of an account", authz.Binding{Mode: authz.BindingLookup, Ref: ref(authztest.ContactID, "account")}, false},
		{"lookup with a bad id", authz.Binding{Mode: authz.BindingLookup, Ref: ref("0f8fad5b", "contact")}, false},
		{"lookup with braces", authz.Binding{Mode: authz.BindingLookup, Ref: ref("{"+authztest.ContactID+"}", "contact")}, false},
		{"lookup with the nil GUID", authz.Binding{Mode: authz.BindingLookup, Ref: ref("00000000-0000-0000-0000-000000000000", "contact")}, false},
		{"ref without lookup", authz.Binding{Mode: authz.BindingUsername, Ref: ref(authztest.ContactID, "contact")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.Events(t, u.ID))
			err := f.Svc.Accounts.SetBinding(t.Context(), "ana", tt.b, "cli:test")
			if tt.ok {
				if err != nil {
					t.Fatalf("SetBinding: %v", err)
				}
				if got := f.User(t, u.ID).Binding.Mode; got != tt.b.Mode && !(tt.b.Mode == "" && got == authz.BindingNone) {
					t.Errorf("stored mode %q", got)
				}
				return
			}
			var ve *authz.ValidationError
			if !errors.As(err, &ve) || ve.Field != "binding" {
				t.Errorf("SetBinding error = %v, want a binding ValidationError", err)
			}
			if after := len(f.Events(t, u.ID)); after != before {
				t.Errorf("a refused binding enqueued %d events", after-before)
			}
		})
	}
}

// TestWorkerDeliversInOrder shows that every event is delivered once, each
// user's events in the order they happened, and counted.
func TestWorkerDeliversInOrder(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	ctx := t.Context()
	for _, n := range []string{"ana", "bob", "carl"} {
		f.CreateUser(t, n, authz.StatusActive)
	}
	for _, n := range []string{"carl", "ana"} {
		if err := f.Svc.Accounts.SetRoles(ctx, n, []string{"vip"}, "cli:test"); err != nil {
			t.Fatal(err)
		}
		if err := f.Svc.Accounts.SetStatus(ctx, n, authz.StatusDisabled, "cli:test"); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	d := &deliverer{}
	w := authztest.Worker(t, f, d, reg)
	authztest.Drain(t, w)

	all := f.Events(t, "")
	if got := d.ids(); len(got) != len(all) || len(all) != 7 {
		t.Fatalf("delivered %v, want each of the %d events once", got, len(all))
	}
	pos := map[int64]int{}
	for i, id := range d.ids() {
		pos[id] = i
	}
	for i, e := range all {
		if e.DeliveredAt.IsZero() {
			t.Errorf("event %d not marked delivered", e.ID)
		}
		for _, later := range all[i+1:] {
			if later.UserID == e.UserID && pos[later.ID] < pos[e.ID] {
				t.Errorf("event %d (%s) delivered before the earlier %d (%s) of the same user", later.ID, later.Type, e.ID, e.Type)
			}
		}
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_delivered_total", lifecycle.Updated); got != 4 {
		t.Errorf("delivered user.updated = %v, want 4", got)
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_pending_events", ""); got != 0 {
		t.Errorf("pending gauge = %v, want 0", got)
	}
}

// TestWorkerRetriesWithBackoff shows that a failing event is retried with
// growing delays, never dropped, and holds back its user's later events
// but not other users'.
func TestWorkerRetriesWithBackoff(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	ctx := t.Context()
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	if err := f.Svc.Accounts.SetRoles(ctx, "ana", []string{"vip"}, "cli:test"); err != nil {
		t.Fatal(err)
	}
	failing := true
	d := &deliverer{fn: func(_ context.Context, e outbox.Event) error {
		if failing && e.UserID == ana.ID {
			return errors.New("dataverse: 503 service unavailable")
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	w := authztest.Worker(t, f, d, reg)
	bob := f.CreateUser(t, "bob", authz.StatusActive)

	// Attempt k fails and is rescheduled within [min·2^(k-1)/2, min·2^(k-1)], capped at a minute.
	var delays []time.Duration
	for attempt := 1; attempt <= 8; attempt++ {
		authztest.Drain(t, w)
		es := f.Events(t, ana.ID)
		first := es[0]
		if first.Attempts != attempt || first.LastError != "dataverse: 503 service unavailable" || !first.DeliveredAt.IsZero() {
			t.Fatalf("after attempt %d: %+v", attempt, first)
		}
		delay := first.NextAttemptAt.Sub(f.Clock.Now())
		upper := min(time.Second<<(attempt-1), time.Minute)
		if delay < upper/2 || delay > upper {
			t.Errorf("attempt %d: retry in %v, want within [%v, %v]", attempt, delay, upper/2, upper)
		}
		delays = append(delays, delay)
		if !es[1].DeliveredAt.IsZero() || es[1].Attempts != 0 {
			t.Errorf("ana's second event was tried while the first fails: %+v", es[1])
		}
		// Nothing is claimed before the delay is over.
		f.Clock.Advance(delay - time.Millisecond)
		if n, err := w.Poll(ctx); err != nil || n != 0 {
			t.Fatalf("Poll before the backoff ended: %d, %v", n, err)
		}
		f.Clock.Advance(time.Millisecond)
	}
	if bobs := f.Events(t, bob.ID); bobs[0].DeliveredAt.IsZero() {
		t.Errorf("bob's event waited for ana's: %+v", bobs[0])
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_failed_attempts_total", lifecycle.Created); got != 8 {
		t.Errorf("failed attempts = %v, want 8", got)
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_pending_events", ""); got != 2 {
		t.Errorf("pending gauge = %v, want 2", got)
	}
	// The gauges are as of the last poll, a millisecond ago.
	if got, want := authztest.Metric(t, reg, "crmgate_outbox_oldest_pending_age_seconds", ""), f.Clock.Now().Add(-time.Millisecond).Sub(ana.CreatedAt).Seconds(); got != want {
		t.Errorf("oldest pending age = %vs, want %vs", got, want)
	}
	failing = false
	authztest.Drain(t, w)
	for _, e := range f.Events(t, ana.ID) {
		if e.DeliveredAt.IsZero() {
			t.Errorf("event %d not delivered after recovery: %+v", e.ID, e)
		}
	}
	t.Logf("delays: %v", delays)
}

// TestWorkerNotify shows that Run delivers an event enqueued while it
// waits, at once, through Notify, although its poll interval is an hour.
func TestWorkerNotify(t *testing.T) {
	got := make(chan outbox.Event, 10)
	d := &deliverer{fn: func(_ context.Context, e outbox.Event) error { got <- e; return nil }}
	f := authztest.NewFixture(t, wiring.Options{})
	w, err := outbox.NewWorker(f.DB, d, outbox.Options{PollInterval: time.Hour, Now: f.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := wiring.New(f.DB, authztest.Options(wiring.Options{Password: authztest.FastParams, Now: f.Clock.Now, OutboxNotify: w.Notify}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for _, name := range []string{"ana", "bob"} {
		u, err := svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: name, Email: name + "@example.com"}, "cli:test")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-got:
			if e.UserID != u.ID || e.Type != lifecycle.Created {
				t.Errorf("delivered %+v, want %s's creation", e, name)
			}
		case <-t.Context().Done():
			t.Fatalf("%s's event not delivered", name)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

// TestWorkerDrainsOneUsersQueue: several events of one user, enqueued at
// once, go out one after the other without waiting a PollInterval each
// (only the oldest pending event of a user is claimed per poll).
func TestWorkerDrainsOneUsersQueue(t *testing.T) {
	got := make(chan outbox.Event, 10)
	d := &deliverer{fn: func(_ context.Context, e outbox.Event) error { got <- e; return nil }}
	f := authztest.NewFixture(t, wiring.Options{})
	w, err := outbox.NewWorker(f.DB, d, outbox.Options{PollInterval: time.Hour, Now: f.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	u := f.CreateUser(t, "ana", authz.StatusActive)
	var evs []outbox.Event
	for i := range 3 {
		evs = append(evs, outbox.Event{Kind: "test", Type: fmt.Sprintf("step%d", i), UserID: u.ID, Payload: []byte(`{}`)})
	}
	if err := f.DB.UpdateUserAndEnqueue(t.Context(), u, evs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var types []string
	timeout := time.After(10 * time.Second)
	for len(types) < 4 { // the account's creation, then the three steps
		select {
		case e := <-got:
			types = append(types, e.Type)
		case <-timeout:
			t.Fatalf("delivered %v within 10s; the rest waits for the next poll", types)
		}
	}
	if want := []string{lifecycle.Created, "step0", "step1", "step2"}; !slices.Equal(types, want) {
		t.Errorf("delivered %v, want %v", types, want)
	}
	cancel()
	<-done
}

func TestNewOutboxWorkerErrors(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	if _, err := outbox.NewWorker(nil, &deliverer{}, outbox.Options{}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := outbox.NewWorker(f.DB, nil, outbox.Options{}); err == nil {
		t.Error("nil deliverer accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := outbox.NewWorker(f.DB, &deliverer{}, outbox.Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.NewWorker(f.DB, &deliverer{}, outbox.Options{Registerer: reg}); err == nil {
		t.Error("registering the metrics twice did not fail")
	}
}

// TestWorkerPermanentFailure shows that an event whose deliverer answers a
// Permanent error is tried once, recorded failed with its error, counted,
// and no longer holds back its user's later events.
func TestWorkerPermanentFailure(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	ctx := t.Context()
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	if err := f.Svc.Accounts.SetRoles(ctx, "ana", []string{"vip"}, "cli:test"); err != nil {
		t.Fatal(err)
	}
	d := &deliverer{fn: func(_ context.Context, e outbox.Event) error {
		if e.Type == lifecycle.Created {
			return fmt.Errorf("send: %w", outbox.Permanent(errors.New("550 mailbox unavailable")))
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	w := authztest.Worker(t, f, d, reg)
	for range 3 {
		authztest.Drain(t, w)
		f.Clock.Advance(time.Hour)
	}
	es := f.Events(t, ana.ID)
	if first := es[0]; first.Attempts != 1 || first.FailedAt.IsZero() || first.DeliveredAt.IsZero() ||
		first.LastError != "send: 550 mailbox unavailable" {
		t.Fatalf("permanently failed event = %+v", first)
	}
	if second := es[1]; second.DeliveredAt.IsZero() || !second.FailedAt.IsZero() {
		t.Fatalf("the user's next event = %+v, want delivered", second)
	}
	if n := len(d.calls); n != 2 {
		t.Errorf("deliveries = %d, want 2 (one each)", n)
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_permanent_failures_total", lifecycle.Created); got != 1 {
		t.Errorf("permanent failures = %v, want 1", got)
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_failed_attempts_total", lifecycle.Created); got > 0 {
		t.Errorf("failed attempts = %v, want none", got)
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_pending_events", ""); got != 0 {
		t.Errorf("pending = %v, want 0", got)
	}
}

// TestByKind shows that ByKind hands each event to the deliverer of its
// kind and refuses (so retries) a kind it has no deliverer for.
func TestByKind(t *testing.T) {
	a, b := &deliverer{}, &deliverer{fn: func(context.Context, outbox.Event) error { return outbox.ErrNothingToDeliver }}
	bk := outbox.ByKind{"a": a, "b": b}
	ctx := t.Context()
	if err := bk.Deliver(ctx, outbox.Event{ID: 1, Kind: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := bk.Deliver(ctx, outbox.Event{ID: 2, Kind: "b"}); !errors.Is(err, outbox.ErrNothingToDeliver) {
		t.Fatalf("b: %v", err)
	}
	for _, k := range []string{"", "c", "A"} {
		if err := bk.Deliver(ctx, outbox.Event{ID: 3, Kind: k}); err == nil || outbox.IsPermanent(err) {
			t.Errorf("kind %q: %v, want a retryable error", k, err)
		}
	}
	if err := (outbox.ByKind(nil)).Deliver(ctx, outbox.Event{Kind: "a"}); err == nil {
		t.Error("nil ByKind delivered")
	}
	if !slices.Equal(a.ids(), []int64{1}) || !slices.Equal(b.ids(), []int64{2}) {
		t.Errorf("calls a=%v b=%v", a.ids(), b.ids())
	}
	if outbox.IsPermanent(errors.New("x")) || !outbox.IsPermanent(fmt.Errorf("w: %w", outbox.Permanent(errors.New("x")))) {
		t.Error("IsPermanent")
	}
}
