// Package lifecycle turns changes of accounts into user lifecycle events
// (created, updated, deleted, bound, unbound, approved, rejected) written to the outbox with the
// change, and delivers them to the Dataverse unbound actions the policy file
// names.
package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/dataverse"
)

// Kind is the Kind of the user lifecycle events meant for
// the Dataverse unbound actions of Actions.
const Kind = "dataverse.lifecycle"

// The lifecycle event types, the Type of Kind events.
const (
	Created = "user.created"
	Updated = "user.updated"
	Deleted = "user.deleted"
	Bound   = "user.bound"
	Unbound = "user.unbound"
	// Approved: an administrator approved a pending registration (the
	// snapshot's status is active).
	Approved = "user.approved"
	// Rejected: an administrator rejected a pending registration; the
	// account is deleted and the snapshot is as it was just before.
	Rejected = "user.rejected"
)

// Snapshot is the payload of a lifecycle event: a snapshot of the
// user's fields at the time of the change, so that a later change does not
// alter an earlier event. It never holds a password hash or security stamp.
type Snapshot struct {
	ID          string        `json:"id"`
	Username    string        `json:"username"`
	Email       string        `json:"email"`
	FirstName   string        `json:"first_name,omitempty"`
	LastName    string        `json:"last_name,omitempty"`
	DisplayName string        `json:"display_name,omitempty"`
	Roles       []string      `json:"roles"`
	Status      authz.Status  `json:"status"`
	Binding     authz.Binding `json:"binding"`
	// OccurredAt is when the change was made.
	OccurredAt time.Time `json:"occurred_at"`
}

// lifecycleEvent returns the outbox event of type typ about u as it is now.
func NewEvent(typ string, u *authz.User, at time.Time) (outbox.Event, error) {
	b := u.Binding
	if b.Mode == "" {
		b.Mode = authz.BindingNone
	}
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	snap := Snapshot{
		ID: u.ID, Username: u.Username, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName,
		DisplayName: u.DisplayName, Roles: roles, Status: u.Status, Binding: b,
		OccurredAt: at.UTC().Truncate(time.Millisecond),
	}
	p, err := json.Marshal(snap)
	if err != nil {
		return outbox.Event{}, fmt.Errorf("lifecycle: event: %w", err)
	}
	return outbox.Event{Kind: Kind, Type: typ, UserID: u.ID, Payload: p, CreatedAt: at}, nil
}

// ActionCaller calls a Dataverse unbound action: params are marshalled as
// its JSON body, its response decoded into out (nil ignores it).
// crmclient.(*Client).CallAction satisfies it.
type ActionCaller interface {
	CallAction(ctx context.Context, name string, params, out any) error
}

// Actions names the Dataverse unbound action called for each user
// lifecycle event. A zero ActionSpec means the event is not sent: it is
// marked delivered with nothing to do. The zero value sends nothing.
type Actions struct {
	// Created is called for Created, e.g. alex_WPUserCreated.
	Created ActionSpec
	// Updated is called for Updated (password, roles or status changed).
	Updated ActionSpec
	// Deleted is called for Deleted, with the fields as they were
	// just before the deletion.
	Deleted ActionSpec
	// Bound is called for Bound (a binding other than none was set).
	Bound ActionSpec
	// Unbound is called for Unbound (the binding was set to none).
	Unbound ActionSpec
	// Approved is called for Approved (a pending registration approved).
	Approved ActionSpec
	// Rejected is called for Rejected (a pending registration rejected
	// and its account deleted), with the fields as they were just before.
	Rejected ActionSpec
}

// ActionSpec is one action and its parameters.
type ActionSpec struct {
	// Name is the action's unique name without namespace, e.g.
	// alex_WPUserCreated; empty means no action.
	Name string
	// Params maps each action parameter name to the event field it takes,
	// one of the LifecycleField* names. Every value is sent as a JSON
	// string, except that contact_id is left out when the user is not
	// bound to a contact (so the action's Guid parameter must be
	// optional). roles is comma-separated (role names never hold a comma)
	// because a String parameter is what every action can declare.
	Params map[string]string
}

// The event fields an ActionSpec may map to action parameters.
const (
	FieldID          = "id"           // the gateway user id
	FieldUsername    = "username"     // the username
	FieldEmail       = "email"        // the email address
	FieldFirstName   = "first_name"   // the first name, may be empty
	FieldLastName    = "last_name"    // the last name, may be empty
	FieldDisplayName = "display_name" // the display name, may be empty
	FieldRoles       = "roles"        // the local roles, comma-separated
	FieldStatus      = "status"       // pending, active or disabled
	FieldContactID   = "contact_id"   // the bound contact's GUID; left out when none
	FieldBindingMode = "binding_mode" // none, lookup, username or custom
	FieldEventID     = "event_id"     // the outbox event id in decimal, equal across redeliveries
	FieldEventType   = "event_type"   // e.g. user.created
	FieldOccurredAt  = "occurred_at"  // the change time, RFC 3339 in UTC with milliseconds
)

var fields = []string{
	FieldID, FieldUsername, FieldEmail, FieldFirstName,
	FieldLastName, FieldDisplayName, FieldRoles, FieldStatus,
	FieldContactID, FieldBindingMode, FieldEventID, FieldEventType,
	FieldOccurredAt,
}

// Validate reports every problem of a: an action or parameter name that is
// not a plain identifier, a parameter without an action, an unknown field.
func (a Actions) Validate() error {
	var errs []error
	for _, s := range []struct {
		event string
		spec  ActionSpec
	}{{"created", a.Created}, {"updated", a.Updated}, {"deleted", a.Deleted}, {"bound", a.Bound}, {"unbound", a.Unbound},
		{"approved", a.Approved}, {"rejected", a.Rejected}} {
		if s.spec.Name == "" {
			if len(s.spec.Params) > 0 {
				errs = append(errs, fmt.Errorf("lifecycle: action %s: parameters without an action name", s.event))
			}
			continue
		}
		if dataverse.ValidIdentifier(s.spec.Name) != nil {
			errs = append(errs, fmt.Errorf("lifecycle: action %s: name %q is not an identifier", s.event, s.spec.Name))
		}
		for _, p := range slices.Sorted(maps.Keys(s.spec.Params)) {
			if dataverse.ValidIdentifier(p) != nil {
				errs = append(errs, fmt.Errorf("lifecycle: action %s: parameter name %q is not an identifier", s.event, p))
			}
			if f := s.spec.Params[p]; !slices.Contains(fields, f) {
				errs = append(errs, fmt.Errorf("lifecycle: action %s: parameter %s: unknown field %q (known: %s)",
					s.event, p, f, strings.Join(fields, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// ActionDeliverer is the outbox.Deliverer of lifecycle events: it calls the
// configured Dataverse action with the event's snapshot. Build it with
// NewActionDeliverer.
type ActionDeliverer struct {
	caller  ActionCaller
	actions Actions
}

var _ outbox.Deliverer = (*ActionDeliverer)(nil)

// NewActionDeliverer returns a deliverer calling actions through caller,
// after validating actions.
func NewActionDeliverer(caller ActionCaller, actions Actions) (*ActionDeliverer, error) {
	if caller == nil {
		return nil, errors.New("lifecycle: action deliverer needs a caller")
	}
	if err := actions.Validate(); err != nil {
		return nil, err
	}
	return &ActionDeliverer{caller: caller, actions: actions}, nil
}

// Deliver implements outbox.Deliverer. An event type without a configured action
// gives outbox.ErrNothingToDeliver. An event of another kind, or whose payload
// cannot be read, is an error, so it stays in the outbox (and blocks its
// user's later events) until someone looks at it.
func (d *ActionDeliverer) Deliver(ctx context.Context, e outbox.Event) error {
	if e.Kind != Kind {
		return fmt.Errorf("lifecycle: action deliverer: event %d has kind %q, not %q", e.ID, e.Kind, Kind)
	}
	var spec ActionSpec
	switch e.Type {
	case Created:
		spec = d.actions.Created
	case Updated:
		spec = d.actions.Updated
	case Deleted:
		spec = d.actions.Deleted
	case Bound:
		spec = d.actions.Bound
	case Unbound:
		spec = d.actions.Unbound
	case Approved:
		spec = d.actions.Approved
	case Rejected:
		spec = d.actions.Rejected
	default:
		return fmt.Errorf("lifecycle: action deliverer: event %d has unknown type %q", e.ID, e.Type)
	}
	if spec.Name == "" {
		return outbox.ErrNothingToDeliver
	}
	var u Snapshot
	if err := json.Unmarshal(e.Payload, &u); err != nil {
		return fmt.Errorf("lifecycle: action deliverer: event %d payload: %w", e.ID, err)
	}
	params := make(map[string]any, len(spec.Params))
	for p, field := range spec.Params {
		if v, ok := fieldValue(field, e, &u); ok {
			params[p] = v
		}
	}
	if err := d.caller.CallAction(ctx, spec.Name, params, nil); err != nil {
		return fmt.Errorf("lifecycle: action %s for event %d: %w", spec.Name, e.ID, err)
	}
	return nil
}

// lifecycleValue returns the value of field for the event; ok is false for
// a value to leave out.
func fieldValue(field string, e outbox.Event, u *Snapshot) (v string, ok bool) {
	switch field {
	case FieldID:
		return u.ID, true
	case FieldUsername:
		return u.Username, true
	case FieldEmail:
		return u.Email, true
	case FieldFirstName:
		return u.FirstName, true
	case FieldLastName:
		return u.LastName, true
	case FieldDisplayName:
		return u.DisplayName, true
	case FieldRoles:
		return strings.Join(u.Roles, ","), true
	case FieldStatus:
		return string(u.Status), true
	case FieldContactID:
		if u.Binding.Ref == nil || u.Binding.Ref.ID == "" {
			return "", false
		}
		return u.Binding.Ref.ID, true
	case FieldBindingMode:
		if u.Binding.Mode == "" {
			return string(authz.BindingNone), true
		}
		return string(u.Binding.Mode), true
	case FieldEventID:
		return strconv.FormatInt(e.ID, 10), true
	case FieldEventType:
		return e.Type, true
	case FieldOccurredAt:
		return u.OccurredAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), true
	}
	return "", false // Validate refuses unknown fields
}
