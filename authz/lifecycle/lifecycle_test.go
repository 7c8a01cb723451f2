package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/authztest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
)

// caller is an ActionCaller made of a function; it records every call.
type caller struct {
	names  []string
	params []map[string]any
	fn     func(name string) error
}

func (c *caller) CallAction(_ context.Context, name string, params, _ any) error {
	c.names = append(c.names, name)
	c.params = append(c.params, params.(map[string]any))
	if c.fn != nil {
		return c.fn(name)
	}
	return nil
}

func lifecycleEvent(t *testing.T, id int64, typ string, u lifecycle.Snapshot) outbox.Event {
	t.Helper()
	p, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	return outbox.Event{ID: id, Kind: lifecycle.Kind, Type: typ, UserID: u.ID, Payload: p}
}

func TestActionDeliverer(t *testing.T) {
	all := map[string]string{
		"UserId": "id", "Username": "username", "Email": "email", "FirstName": "first_name", "LastName": "last_name",
		"DisplayName": "display_name", "Roles": "roles", "Status": "status", "ContactId": "contact_id",
		"Mode": "binding_mode", "EventId": "event_id", "EventType": "event_type", "At": "occurred_at",
	}
	actions := lifecycle.Actions{
		Created:  lifecycle.ActionSpec{Name: "alex_WPUserCreated", Params: all},
		Bound:    lifecycle.ActionSpec{Name: "alex_WPUserBound", Params: map[string]string{"UserId": "id", "ContactId": "contact_id"}},
		Deleted:  lifecycle.ActionSpec{Name: "alex_WPUserDeleted", Params: map[string]string{"UserId": "id", "ContactId": "contact_id"}},
		Approved: lifecycle.ActionSpec{Name: "alex_WPUserApproved", Params: map[string]string{"UserId": "id", "Status": "status", "EventType": "event_type"}},
		Rejected: lifecycle.ActionSpec{Name: "alex_WPUserRejected", Params: map[string]string{"Email": "email", "Status": "status"}},
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 5_000_000, time.UTC)
	ana := lifecycle.Snapshot{ID: "u1", Username: "ana", Email: "ana@example.com", FirstName: "Ana", Roles: []string{"member", "vip"},
		Status: authz.StatusActive, Binding: authz.Binding{Mode: authz.BindingNone}, OccurredAt: at}
	boundAna := ana
	pendingAna := ana
	pendingAna.Status = authz.StatusPending
	boundAna.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: authztest.ContactID, LogicalName: "contact"}}

	tests := []struct {
		name       string
		e          outbox.Event
		wantAction string
		wantParams map[string]any
		wantErr    error
	}{
		{"created with every field", lifecycleEvent(t, 7, lifecycle.Created, ana), "alex_WPUserCreated", map[string]any{
			"UserId": "u1", "Username": "ana", "Email": "ana@example.com", "FirstName": "Ana", "LastName": "",
			"DisplayName": "", "Roles": "member,vip", "Status": "active", "Mode": "none",
			"EventId": "7", "EventType": "user.created", "At": "2026-03-01T12:00:00.005Z",
		}, nil},
		{"bound sends the contact", lifecycleEvent(t, 8, lifecycle.Bound, boundAna), "alex_WPUserBound",
			map[string]any{"UserId": "u1", "ContactId": authztest.ContactID}, nil},
		{"deleted while unbound leaves the contact out", lifecycleEvent(t, 9, lifecycle.Deleted, ana), "alex_WPUserDeleted",
			map[string]any{"UserId": "u1"}, nil},
		{"updated is not configured", lifecycleEvent(t, 10, lifecycle.Updated, ana), "", nil, outbox.ErrNothingToDeliver},
		{"unbound is not configured", lifecycleEvent(t, 11, lifecycle.Unbound, ana), "", nil, outbox.ErrNothingToDeliver},
		{"approved", lifecycleEvent(t, 12, lifecycle.Approved, ana), "alex_WPUserApproved",
			map[string]any{"UserId": "u1", "Status": "active", "EventType": "user.approved"}, nil},
		{"rejected sends the user as it was", lifecycleEvent(t, 13, lifecycle.Rejected, pendingAna), "alex_WPUserRejected",
			map[string]any{"Email": "ana@example.com", "Status": "pending"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &caller{}
			d, err := lifecycle.NewActionDeliverer(c, actions)
			if err != nil {
				t.Fatal(err)
			}
			err = d.Deliver(t.Context(), tt.e)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Deliver error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantAction == "" {
				if len(c.names) != 0 {
					t.Errorf("called %v", c.names)
				}
				return
			}
			if len(c.names) != 1 || c.names[0] != tt.wantAction || !reflect.DeepEqual(c.params[0], tt.wantParams) {
				t.Errorf("called %v with %v, want %s with %v", c.names, c.params, tt.wantAction, tt.wantParams)
			}
		})
	}

	t.Run("failures are returned for a retry", func(t *testing.T) {
		down := errors.New("crmclient: unavailable")
		d, _ := lifecycle.NewActionDeliverer(&caller{fn: func(string) error { return down }}, actions)
		if err := d.Deliver(t.Context(), lifecycleEvent(t, 1, lifecycle.Created, ana)); !errors.Is(err, down) {
			t.Errorf("Deliver error = %v, want it to wrap %v", err, down)
		}
	})
	t.Run("unknown kind, type or payload", func(t *testing.T) {
		d, _ := lifecycle.NewActionDeliverer(&caller{}, actions)
		for _, e := range []outbox.Event{
			{Kind: "email", Type: lifecycle.Created, Payload: []byte("{}")},
			{Kind: lifecycle.Kind, Type: "user.renamed", Payload: []byte("{}")},
			{Kind: lifecycle.Kind, Type: lifecycle.Created, Payload: []byte("{")},
		} {
			if err := d.Deliver(t.Context(), e); err == nil || errors.Is(err, outbox.ErrNothingToDeliver) {
				t.Errorf("Deliver(%+v) = %v, want an error that keeps the event", e, err)
			}
		}
	})
}

func TestLifecycleActionsValidate(t *testing.T) {
	tests := []struct {
		name string
		a    lifecycle.Actions
		want []string // substrings of the error; none means valid
	}{
		{"zero", lifecycle.Actions{}, nil},
		{"good", lifecycle.Actions{Created: lifecycle.ActionSpec{Name: "alex_WPUserCreated",
			Params: map[string]string{"UserId": "id", "Roles": "roles"}}}, nil},
		{"every problem at once", lifecycle.Actions{
			Created:  lifecycle.ActionSpec{Name: "alex/../x", Params: map[string]string{"User Id": "id", "X": "password_hash"}},
			Updated:  lifecycle.ActionSpec{Params: map[string]string{"UserId": "id"}},
			Rejected: lifecycle.ActionSpec{Name: "alex_WPUserRejected", Params: map[string]string{"Reason": "reason"}},
		}, []string{`created: name "alex/../x"`, `parameter name "User Id"`, `parameter X: unknown field "password_hash"`,
			"updated: parameters without an action name", `rejected: parameter Reason: unknown field "reason"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := lifecycle.NewActionDeliverer(&caller{}, tt.a); err == nil {
				t.Error("NewActionDeliverer accepted it")
			}
		})
	}
}

// TestActionDelivererThroughWorker shows the pieces together: an event
// type without an action is marked delivered and counted as skipped.
func TestActionDelivererThroughWorker(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	if err := f.Svc.Accounts.SetStatus(t.Context(), "ana", authz.StatusDisabled, "cli:test"); err != nil {
		t.Fatal(err)
	}
	c := &caller{}
	d, err := lifecycle.NewActionDeliverer(c, lifecycle.Actions{
		Created: lifecycle.ActionSpec{Name: "alex_WPUserCreated", Params: map[string]string{"UserId": "id", "Email": "email"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	authztest.Drain(t, authztest.Worker(t, f, d, reg))
	if len(c.names) != 1 || c.params[0]["UserId"] != u.ID || c.params[0]["Email"] != "ana@example.com" {
		t.Errorf("calls %v %v", c.names, c.params)
	}
	for _, e := range f.Events(t, u.ID) {
		if e.DeliveredAt.IsZero() {
			t.Errorf("event %d (%s) still pending", e.ID, e.Type)
		}
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_skipped_total", lifecycle.Updated); got != 1 {
		t.Errorf("skipped user.updated = %v, want 1", got)
	}
	if got := authztest.Metric(t, reg, "crmgate_outbox_delivered_total", lifecycle.Created); got != 1 {
		t.Errorf("delivered user.created = %v, want 1", got)
	}
}
