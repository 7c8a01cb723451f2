package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/crmgate/crmgate/dataverse"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ActionCaller calls a Dataverse unbound action: params are marshalled as
// its JSON body, its response decoded into out (nil ignores it).
// crmclient.(*Client).CallAction satisfies it.
type ActionCaller interface {
	CallAction(ctx context.Context, name string, params, out any) error
}

// LifecycleActions names the Dataverse unbound action called for each user
// lifecycle event. A zero ActionSpec means the event is not sent: it is
// marked delivered with nothing to do. The zero value sends nothing.
type LifecycleActions struct {
	// Created is called for LifecycleCreated, e.g. alex_WPUserCreated.
	Created ActionSpec
	// Updated is called for LifecycleUpdated (password, roles or status changed).
	Updated ActionSpec
	// Deleted is called for LifecycleDeleted, with the fields as they were
	// just before the deletion.
	Deleted ActionSpec
	// Bound is called for LifecycleBound (a binding other than none was set).
	Bound ActionSpec
	// Unbound is called for LifecycleUnbound (the binding was set to none).
	Unbound ActionSpec
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
	LifecycleFieldID          = "id"           // the gateway user id
	LifecycleFieldUsername    = "username"     // the username
	LifecycleFieldEmail       = "email"        // the email address
	LifecycleFieldFirstName   = "first_name"   // the first name, may be empty
	LifecycleFieldLastName    = "last_name"    // the last name, may be empty
	LifecycleFieldDisplayName = "display_name" // the display name, may be empty
	LifecycleFieldRoles       = "roles"        // the local roles, comma-separated
	LifecycleFieldStatus      = "status"       // pending, active or disabled
	LifecycleFieldContactID   = "contact_id"   // the bound contact's GUID; left out when none
	LifecycleFieldBindingMode = "binding_mode" // none, lookup, username or custom
	LifecycleFieldEventID     = "event_id"     // the outbox event id in decimal, equal across redeliveries
	LifecycleFieldEventType   = "event_type"   // e.g. user.created
	LifecycleFieldOccurredAt  = "occurred_at"  // the change time, RFC 3339 in UTC with milliseconds
)

var lifecycleFields = []string{
	LifecycleFieldID, LifecycleFieldUsername, LifecycleFieldEmail, LifecycleFieldFirstName,
	LifecycleFieldLastName, LifecycleFieldDisplayName, LifecycleFieldRoles, LifecycleFieldStatus,
	LifecycleFieldContactID, LifecycleFieldBindingMode, LifecycleFieldEventID, LifecycleFieldEventType,
	LifecycleFieldOccurredAt,
}

// Validate reports every problem of a: an action or parameter name that is
// not a plain identifier, a parameter without an action, an unknown field.
func (a LifecycleActions) Validate() error {
	var errs []error
	for _, s := range []struct {
		event string
		spec  ActionSpec
	}{{"created", a.Created}, {"updated", a.Updated}, {"deleted", a.Deleted}, {"bound", a.Bound}, {"unbound", a.Unbound}} {
		if s.spec.Name == "" {
			if len(s.spec.Params) > 0 {
				errs = append(errs, fmt.Errorf("authz: lifecycle action %s: parameters without an action name", s.event))
			}
			continue
		}
		if dataverse.ValidIdentifier(s.spec.Name) != nil {
			errs = append(errs, fmt.Errorf("authz: lifecycle action %s: name %q is not an identifier", s.event, s.spec.Name))
		}
		for _, p := range slices.Sorted(maps.Keys(s.spec.Params)) {
			if dataverse.ValidIdentifier(p) != nil {
				errs = append(errs, fmt.Errorf("authz: lifecycle action %s: parameter name %q is not an identifier", s.event, p))
			}
			if f := s.spec.Params[p]; !slices.Contains(lifecycleFields, f) {
				errs = append(errs, fmt.Errorf("authz: lifecycle action %s: parameter %s: unknown field %q (known: %s)",
					s.event, p, f, strings.Join(lifecycleFields, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// ActionDeliverer is the Deliverer of lifecycle events: it calls the
// configured Dataverse action with the event's snapshot. Build it with
// NewActionDeliverer.
type ActionDeliverer struct {
	caller  ActionCaller
	actions LifecycleActions
}

var _ Deliverer = (*ActionDeliverer)(nil)

// NewActionDeliverer returns a deliverer calling actions through caller,
// after validating actions.
func NewActionDeliverer(caller ActionCaller, actions LifecycleActions) (*ActionDeliverer, error) {
	if caller == nil {
		return nil, errors.New("authz: action deliverer needs a caller")
	}
	if err := actions.Validate(); err != nil {
		return nil, err
	}
	return &ActionDeliverer{caller: caller, actions: actions}, nil
}

// Deliver implements Deliverer. An event type without a configured action
// gives ErrNothingToDeliver. An event of another kind, or whose payload
// cannot be read, is an error, so it stays in the outbox (and blocks its
// user's later events) until someone looks at it.
func (d *ActionDeliverer) Deliver(ctx context.Context, e OutboxEvent) error {
	if e.Kind != OutboxKindLifecycle {
		return fmt.Errorf("authz: action deliverer: event %d has kind %q, not %q", e.ID, e.Kind, OutboxKindLifecycle)
	}
	var spec ActionSpec
	switch e.Type {
	case LifecycleCreated:
		spec = d.actions.Created
	case LifecycleUpdated:
		spec = d.actions.Updated
	case LifecycleDeleted:
		spec = d.actions.Deleted
	case LifecycleBound:
		spec = d.actions.Bound
	case LifecycleUnbound:
		spec = d.actions.Unbound
	default:
		return fmt.Errorf("authz: action deliverer: event %d has unknown type %q", e.ID, e.Type)
	}
	if spec.Name == "" {
		return ErrNothingToDeliver
	}
	var u LifecycleUser
	if err := json.Unmarshal(e.Payload, &u); err != nil {
		return fmt.Errorf("authz: action deliverer: event %d payload: %w", e.ID, err)
	}
	params := make(map[string]any, len(spec.Params))
	for p, field := range spec.Params {
		if v, ok := lifecycleValue(field, e, &u); ok {
			params[p] = v
		}
	}
	if err := d.caller.CallAction(ctx, spec.Name, params, nil); err != nil {
		return fmt.Errorf("authz: action %s for event %d: %w", spec.Name, e.ID, err)
	}
	return nil
}

// lifecycleValue returns the value of field for the event; ok is false for
// a value to leave out.
func lifecycleValue(field string, e OutboxEvent, u *LifecycleUser) (v string, ok bool) {
	switch field {
	case LifecycleFieldID:
		return u.ID, true
	case LifecycleFieldUsername:
		return u.Username, true
	case LifecycleFieldEmail:
		return u.Email, true
	case LifecycleFieldFirstName:
		return u.FirstName, true
	case LifecycleFieldLastName:
		return u.LastName, true
	case LifecycleFieldDisplayName:
		return u.DisplayName, true
	case LifecycleFieldRoles:
		return strings.Join(u.Roles, ","), true
	case LifecycleFieldStatus:
		return string(u.Status), true
	case LifecycleFieldContactID:
		if u.Binding.Ref == nil || u.Binding.Ref.ID == "" {
			return "", false
		}
		return u.Binding.Ref.ID, true
	case LifecycleFieldBindingMode:
		if u.Binding.Mode == "" {
			return string(BindingNone), true
		}
		return string(u.Binding.Mode), true
	case LifecycleFieldEventID:
		return strconv.FormatInt(e.ID, 10), true
	case LifecycleFieldEventType:
		return e.Type, true
	case LifecycleFieldOccurredAt:
		return u.OccurredAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), true
	}
	return "", false // Validate refuses unknown fields
}

// NoDeliverer is the Deliverer when no Dataverse is configured: it sends
// nothing and answers ErrNothingToDeliver, so the worker marks every event
// done (counted as skipped) and the outbox stays bounded by its retention.
// Dangerous only if used by mistake with Dataverse configured: its events
// would never reach Dataverse.
type NoDeliverer struct{}

// Deliver implements Deliverer.
func (NoDeliverer) Deliver(context.Context, OutboxEvent) error { return ErrNothingToDeliver }
