package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

// deliverer is a Deliverer made of a function; it records every call.
type deliverer struct {
	mu    sync.Mutex
	calls []authz.OutboxEvent
	fn    func(ctx context.Context, e authz.OutboxEvent) error
}

func (d *deliverer) Deliver(ctx context.Context, e authz.OutboxEvent) error {
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

func (f *fixture) events(t *testing.T, userID string) []authz.OutboxEvent {
	t.Helper()
	es, err := f.db.OutboxEvents(t.Context(), userID)
	if err != nil {
		t.Fatalf("OutboxEvents: %v", err)
	}
	return es
}

func snapshot(t *testing.T, e authz.OutboxEvent) authz.LifecycleUser {
	t.Helper()
	var u authz.LifecycleUser
	if err := json.Unmarshal(e.Payload, &u); err != nil {
		t.Fatalf("event %d payload %s: %v", e.ID, e.Payload, err)
	}
	return u
}

const contactID = "0f8fad5b-d9cb-469f-a165-70867728950e"

// TestLifecycleEventsEnqueued shows that each account change enqueues its
// lifecycle event with a snapshot of the account at that moment, and wakes
// the worker.
func TestLifecycleEventsEnqueued(t *testing.T) {
	notified := 0
	f := newFixture(t, authz.Options{OutboxNotify: func() { notified++ }})
	ctx := t.Context()
	u := f.createUser(t, "ana", authz.StatusActive)
	steps := []struct {
		name string
		run  func() error
		typ  string
	}{
		{"password", func() error { return f.svc.SetPassword(ctx, "ana", goodPassword+"!", "cli:test") }, authz.LifecycleUpdated},
		{"roles", func() error { return f.svc.SetRoles(ctx, "ana", []string{"member", "vip"}, "cli:test") }, authz.LifecycleUpdated},
		{"status", func() error { return f.svc.SetStatus(ctx, "ana", authz.StatusDisabled, "cli:test") }, authz.LifecycleUpdated},
		{"bind", func() error {
			return f.svc.SetBinding(ctx, "ana", authz.Binding{Mode: authz.BindingLookup,
				Ref: &dataverse.EntityReference{ID: "0F8FAD5B-D9CB-469F-A165-70867728950E", LogicalName: "contact"}}, "cli:test")
		}, authz.LifecycleBound},
		{"unbind", func() error { return f.svc.SetBinding(ctx, "ana", authz.Binding{}, "cli:test") }, authz.LifecycleUnbound},
		{"delete", func() error { return f.svc.DeleteUser(ctx, "ana@example.com", "cli:test") }, authz.LifecycleDeleted},
	}
	for _, s := range steps {
		f.clock.Advance(time.Second)
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	es := f.events(t, u.ID)
	if len(es) != len(steps)+1 || notified != len(steps)+1 {
		t.Fatalf("%d events, %d notifications; want %d each", len(es), notified, len(steps)+1)
	}
	if es[0].Type != authz.LifecycleCreated {
		t.Errorf("first event %s, want %s", es[0].Type, authz.LifecycleCreated)
	}
	for i, s := range steps {
		if es[i+1].Type != s.typ {
			t.Errorf("event after %s: %s, want %s", s.name, es[i+1].Type, s.typ)
		}
	}
	for _, e := range es {
		if e.Kind != authz.OutboxKindLifecycle || e.UserID != u.ID {
			t.Errorf("event %+v", e)
		}
	}
	// Every payload is the account as it was then.
	created, roles, bound, deleted := snapshot(t, es[0]), snapshot(t, es[2]), snapshot(t, es[4]), snapshot(t, es[6])
	if created.ID != u.ID || created.Username != "ana" || created.Email != "ana@example.com" ||
		!slices.Equal(created.Roles, []string{"member"}) || created.Status != authz.StatusActive ||
		created.Binding.Mode != authz.BindingNone || !created.OccurredAt.Equal(u.CreatedAt) {
		t.Errorf("created snapshot = %+v", created)
	}
	if !slices.Equal(roles.Roles, []string{"member", "vip"}) || roles.Status != authz.StatusActive {
		t.Errorf("roles snapshot = %+v", roles)
	}
	if bound.Binding.Ref == nil || bound.Binding.Ref.ID != contactID || bound.Status != authz.StatusDisabled {
		t.Errorf("bound snapshot = %+v (the id is stored in lower case)", bound)
	}
	if deleted.Binding.Mode != authz.BindingNone || deleted.Username != "ana" {
		t.Errorf("deleted snapshot = %+v", deleted)
	}
	if _, err := f.svc.UserByID(ctx, u.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("user after DeleteUser: %v", err)
	}
	if err := f.svc.DeleteUser(ctx, "ana", "cli:test"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("DeleteUser twice: %v, want ErrNotFound", err)
	}
	if e := f.lastAudit(t, authz.EventUserDeleted); e.UserID != u.ID || e.Actor != "cli:test" {
		t.Errorf("delete audit = %+v", e)
	}
	if e := f.lastAudit(t, authz.EventBindingSet); e.Detail != string(authz.BindingNone) {
		t.Errorf("binding audit = %+v", e)
	}
}

func TestSetBindingValidation(t *testing.T) {
	f := newFixture(t, authz.Options{})
	u := f.createUser(t, "ana", authz.StatusActive)
	ref := func(id, logical string) *dataverse.EntityReference {
		return &dataverse.EntityReference{ID: id, LogicalName: logical}
	}
	tests := []struct {
		name string
		b    authz.Binding
		ok   bool
	}{
		{"lookup", authz.Binding{Mode: authz.BindingLookup, Ref: ref(contactID, "contact")}, true},
		{"username", authz.Binding{Mode: authz.BindingUsername}, true},
		{"custom", authz.Binding{Mode: authz.BindingCustom}, true},
		{"none", authz.Binding{Mode: authz.BindingNone}, true},
		{"zero", authz.Binding{}, true},
		{"unknown mode", authz.Binding{Mode: "magic"}, false},
		{"lookup without ref", authz.Binding{Mode: authz.BindingLookup}, false},
		{"lookup of an account", authz.Binding{Mode: authz.BindingLookup, Ref: ref(contactID, "account")}, false},
		{"lookup with a bad id", authz.Binding{Mode: authz.BindingLookup, Ref: ref("0f8fad5b", "contact")}, false},
		{"lookup with braces", authz.Binding{Mode: authz.BindingLookup, Ref: ref("{"+contactID+"}", "contact")}, false},
		{"lookup with the nil GUID", authz.Binding{Mode: authz.BindingLookup, Ref: ref("00000000-0000-0000-0000-000000000000", "contact")}, false},
		{"ref without lookup", authz.Binding{Mode: authz.BindingUsername, Ref: ref(contactID, "contact")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.events(t, u.ID))
			err := f.svc.SetBinding(t.Context(), "ana", tt.b, "cli:test")
			if tt.ok {
				if err != nil {
					t.Fatalf("SetBinding: %v", err)
				}
				if got := f.user(t, u.ID).Binding.Mode; got != tt.b.Mode && !(tt.b.Mode == "" && got == authz.BindingNone) {
					t.Errorf("stored mode %q", got)
				}
				return
			}
			var ve *authz.ValidationError
			if !errors.As(err, &ve) || ve.Field != "binding" {
				t.Errorf("SetBinding error = %v, want a binding ValidationError", err)
			}
			if after := len(f.events(t, u.ID)); after != before {
				t.Errorf("a refused binding enqueued %d events", after-before)
			}
		})
	}
}

// metric returns the value of the series name (with label type=typ when
// typ is not empty) in reg, or -1 when there is none.
func metric(t *testing.T, reg *prometheus.Registry, name, typ string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if typ != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != typ) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func newWorker(t *testing.T, f *fixture, d authz.Deliverer, reg prometheus.Registerer) *authz.OutboxWorker {
	t.Helper()
	w, err := authz.NewOutboxWorker(f.db, d, authz.OutboxOptions{
		BatchSize: 10, Lease: time.Minute, MinBackoff: time.Second, MaxBackoff: time.Minute,
		Now: f.clock.Now, Registerer: reg,
	})
	if err != nil {
		t.Fatalf("NewOutboxWorker: %v", err)
	}
	return w
}

// drain polls until the outbox has nothing due now.
func drain(t *testing.T, w *authz.OutboxWorker) {
	t.Helper()
	for range 100 {
		n, err := w.Poll(t.Context())
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("outbox not drained after 100 polls")
}

// TestWorkerDeliversInOrder shows that every event is delivered once, each
// user's events in the order they happened, and counted.
func TestWorkerDeliversInOrder(t *testing.T) {
	f := newFixture(t, authz.Options{})
	ctx := t.Context()
	for _, n := range []string{"ana", "bob", "carl"} {
		f.createUser(t, n, authz.StatusActive)
	}
	for _, n := range []string{"carl", "ana"} {
		if err := f.svc.SetRoles(ctx, n, []string{"vip"}, "cli:test"); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.SetStatus(ctx, n, authz.StatusDisabled, "cli:test"); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	d := &deliverer{}
	w := newWorker(t, f, d, reg)
	drain(t, w)

	all := f.events(t, "")
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
	if got := metric(t, reg, "crmgate_outbox_delivered_total", authz.LifecycleUpdated); got != 4 {
		t.Errorf("delivered user.updated = %v, want 4", got)
	}
	if got := metric(t, reg, "crmgate_outbox_pending_events", ""); got != 0 {
		t.Errorf("pending gauge = %v, want 0", got)
	}
}

// TestWorkerRetriesWithBackoff shows that a failing event is retried with
// growing delays, never dropped, and holds back its user's later events
// but not other users'.
func TestWorkerRetriesWithBackoff(t *testing.T) {
	f := newFixture(t, authz.Options{})
	ctx := t.Context()
	ana := f.createUser(t, "ana", authz.StatusActive)
	if err := f.svc.SetRoles(ctx, "ana", []string{"vip"}, "cli:test"); err != nil {
		t.Fatal(err)
	}
	failing := true
	d := &deliverer{fn: func(_ context.Context, e authz.OutboxEvent) error {
		if failing && e.UserID == ana.ID {
			return errors.New("dataverse: 503 service unavailable")
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	w := newWorker(t, f, d, reg)
	bob := f.createUser(t, "bob", authz.StatusActive)

	// Attempt k fails and is rescheduled within [min·2^(k-1)/2, min·2^(k-1)], capped at a minute.
	var delays []time.Duration
	for attempt := 1; attempt <= 8; attempt++ {
		drain(t, w)
		es := f.events(t, ana.ID)
		first := es[0]
		if first.Attempts != attempt || first.LastError != "dataverse: 503 service unavailable" || !first.DeliveredAt.IsZero() {
			t.Fatalf("after attempt %d: %+v", attempt, first)
		}
		delay := first.NextAttemptAt.Sub(f.clock.Now())
		upper := min(time.Second<<(attempt-1), time.Minute)
		if delay < upper/2 || delay > upper {
			t.Errorf("attempt %d: retry in %v, want within [%v, %v]", attempt, delay, upper/2, upper)
		}
		delays = append(delays, delay)
		if !es[1].DeliveredAt.IsZero() || es[1].Attempts != 0 {
			t.Errorf("ana's second event was tried while the first fails: %+v", es[1])
		}
		// Nothing is claimed before the delay is over.
		f.clock.Advance(delay - time.Millisecond)
		if n, err := w.Poll(ctx); err != nil || n != 0 {
			t.Fatalf("Poll before the backoff ended: %d, %v", n, err)
		}
		f.clock.Advance(time.Millisecond)
	}
	if bobs := f.events(t, bob.ID); bobs[0].DeliveredAt.IsZero() {
		t.Errorf("bob's event waited for ana's: %+v", bobs[0])
	}
	if got := metric(t, reg, "crmgate_outbox_failed_attempts_total", authz.LifecycleCreated); got != 8 {
		t.Errorf("failed attempts = %v, want 8", got)
	}
	if got := metric(t, reg, "crmgate_outbox_pending_events", ""); got != 2 {
		t.Errorf("pending gauge = %v, want 2", got)
	}
	// The gauges are as of the last poll, a millisecond ago.
	if got, want := metric(t, reg, "crmgate_outbox_oldest_pending_age_seconds", ""), f.clock.Now().Add(-time.Millisecond).Sub(ana.CreatedAt).Seconds(); got != want {
		t.Errorf("oldest pending age = %vs, want %vs", got, want)
	}
	failing = false
	drain(t, w)
	for _, e := range f.events(t, ana.ID) {
		if e.DeliveredAt.IsZero() {
			t.Errorf("event %d not delivered after recovery: %+v", e.ID, e)
		}
	}
	t.Logf("delays: %v", delays)
}

// TestWorkerNotify shows that Run delivers an event enqueued while it
// waits, at once, through Notify, although its poll interval is an hour.
func TestWorkerNotify(t *testing.T) {
	got := make(chan authz.OutboxEvent, 10)
	d := &deliverer{fn: func(_ context.Context, e authz.OutboxEvent) error { got <- e; return nil }}
	f := newFixture(t, authz.Options{})
	w, err := authz.NewOutboxWorker(f.db, d, authz.OutboxOptions{PollInterval: time.Hour, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := authz.NewService(f.db, authz.Options{Password: fastParams, Now: f.clock.Now, OutboxNotify: w.Notify})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for _, name := range []string{"ana", "bob"} {
		u, err := svc.CreateUser(ctx, authz.NewUser{Username: name, Email: name + "@example.com"}, "cli:test")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-got:
			if e.UserID != u.ID || e.Type != authz.LifecycleCreated {
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

func TestNewOutboxWorkerErrors(t *testing.T) {
	f := newFixture(t, authz.Options{})
	if _, err := authz.NewOutboxWorker(nil, &deliverer{}, authz.OutboxOptions{}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := authz.NewOutboxWorker(f.db, nil, authz.OutboxOptions{}); err == nil {
		t.Error("nil deliverer accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := authz.NewOutboxWorker(f.db, &deliverer{}, authz.OutboxOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := authz.NewOutboxWorker(f.db, &deliverer{}, authz.OutboxOptions{Registerer: reg}); err == nil {
		t.Error("registering the metrics twice did not fail")
	}
}
