package policies

import (
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/crmgate/crmgate/dataverse"
)

// Dataverse is the policy file's optional dataverse section: what the
// gateway tells Dataverse, as opposed to the connection settings, which are
// CRMGATE_DATAVERSE_* environment variables.
type Dataverse struct {
	// LifecycleActions maps a lifecycle event, one of LifecycleEvents, to
	// the Dataverse unbound action called when it happens. An event that
	// is not in the map sends nothing; nil sends nothing at all.
	LifecycleActions map[string]LifecycleAction
	// BindingFilter is the contact filter of custom bindings
	// (binding_filter), e.g. "emailaddress1 eq {email}"; its Text is
	// empty when the file has none, and custom bindings then fail to
	// resolve. This package checks only that it is a string: the gateway
	// parses it at start-up with authz.ParseFilterTemplate and reports a
	// problem at its Line.
	BindingFilter FilterText
	// SignInFilter is the extra filter the bound contact must also match
	// at sign-in (signin_filter), e.g. "adx_portalaccess eq true"; empty
	// means none. Parsed like BindingFilter.
	SignInFilter FilterText
}

// FilterText is a contact filter template as written in the policy file,
// not yet parsed (package policies does not import authz, which owns the
// grammar). The zero value means no filter.
type FilterText struct {
	// Text is the template, e.g. "emailaddress1 eq {email}".
	Text string
	// Line is the line of the value in the policy file, for messages.
	Line int
}

// LifecycleAction is one unbound action (custom API) and its parameters.
type LifecycleAction struct {
	// Name is the action's unique name, e.g. alex_WPUserCreated: an ASCII
	// letter or '_' followed by letters, digits and '_'.
	Name string
	// Params maps each action parameter name (an identifier, like Name) to
	// the event field it takes, one of LifecycleFields. Nil sends no
	// parameters.
	Params map[string]string
	// Line is the line of the action in the policy file, for messages.
	Line int
}

// The lifecycle events, the keys of dataverse.lifecycle_actions.
const (
	LifecycleCreated = "created"
	LifecycleUpdated = "updated"
	LifecycleDeleted = "deleted"
	LifecycleBound   = "bound"
	LifecycleUnbound = "unbound"
	// LifecycleApproved and LifecycleRejected are an administrator's
	// decision on a pending registration (package authz/onboarding).
	LifecycleApproved = "approved"
	LifecycleRejected = "rejected"
)

// LifecycleEvents returns the lifecycle events in the order of their
// documentation.
func LifecycleEvents() []string {
	return []string{LifecycleCreated, LifecycleUpdated, LifecycleDeleted, LifecycleBound, LifecycleUnbound,
		LifecycleApproved, LifecycleRejected}
}

// lifecycleFields is a copy of the event fields package authz can send
// (authz.LifecycleField*): this package does not import authz, and a test
// in cmd/crmgate keeps the two lists equal.
var lifecycleFields = []string{
	"id", "username", "email", "first_name", "last_name", "display_name", "roles", "status",
	"contact_id", "binding_mode", "event_id", "event_type", "occurred_at",
}

// LifecycleFields returns the event fields an action parameter may take,
// as a new slice.
func LifecycleFields() []string { return slices.Clone(lifecycleFields) }

// dataverse decodes the dataverse section.
func (d *decoder) dataverse(n *yaml.Node, path string) Dataverse {
	var dv Dataverse
	d.mapping(n, path, fields{
		"lifecycle_actions": func(_, v *yaml.Node) {
			path := path + ".lifecycle_actions"
			fs := fields{}
			for _, ev := range LifecycleEvents() {
				fs[ev] = func(k, v *yaml.Node) {
					if a, ok := d.lifecycleAction(k, v, path+"."+ev); ok {
						if dv.LifecycleActions == nil {
							dv.LifecycleActions = map[string]LifecycleAction{}
						}
						dv.LifecycleActions[ev] = a
					}
				}
			}
			d.mapping(v, path, fs)
		},
		"binding_filter": func(_, v *yaml.Node) { dv.BindingFilter = d.filterText(v, path+".binding_filter") },
		"signin_filter":  func(_, v *yaml.Node) { dv.SignInFilter = d.filterText(v, path+".signin_filter") },
	})
	return dv
}

// filterText decodes a filter template: a non-empty string, or null for
// none.
func (d *decoder) filterText(n *yaml.Node, path string) FilterText {
	n = resolve(n)
	if isNull(n) {
		return FilterText{}
	}
	s, ok := d.str(n, path)
	if !ok {
		return FilterText{}
	}
	if strings.TrimSpace(s) == "" {
		d.errorf(n, "%s: must not be empty (leave it out for no filter)", path)
		return FilterText{}
	}
	return FilterText{Text: s, Line: n.Line}
}

// lifecycleAction decodes one action; ok is false when it has problems or
// is null (no action for the event).
func (d *decoder) lifecycleAction(k, n *yaml.Node, path string) (LifecycleAction, bool) {
	before := len(d.errs)
	a := LifecycleAction{Line: k.Line}
	if isNull(resolve(n)) {
		return a, false
	}
	sawName := false
	d.mapping(n, path, fields{
		"name": func(_, v *yaml.Node) {
			sawName = true
			if s, ok := d.str(v, path+".name"); ok {
				if dataverse.ValidIdentifier(s) != nil {
					d.errorf(v, "%s.name: %q must be an action's unique name: a letter or '_' followed by letters, digits and '_'", path, s)
				}
				a.Name = s
			}
		},
		"params": func(_, v *yaml.Node) {
			a.Params = d.actionParams(v, path+".params")
		},
	})
	if !sawName && len(d.errs) == before {
		d.errorf(n, "%s: name is required", path)
	}
	return a, len(d.errs) == before
}

// actionParams decodes a mapping of parameter names to event fields.
func (d *decoder) actionParams(n *yaml.Node, path string) map[string]string {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: must be a mapping of parameter names to event fields", path)
		return nil
	}
	out := make(map[string]string, len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%s: keys must be strings", path)
			continue
		}
		name := path + "." + k.Value
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "%s: repeated (first at line %d)", name, first)
			continue
		}
		seen[k.Value] = k.Line
		if dataverse.ValidIdentifier(k.Value) != nil {
			d.errorf(k, "%s: %q is not a parameter name: a letter or '_' followed by letters, digits and '_'", path, k.Value)
			continue
		}
		f, ok := d.str(v, name)
		if !ok {
			continue
		}
		if !slices.Contains(lifecycleFields, f) {
			d.errorf(v, "%s: unknown event field %q (known: %s)", name, f, strings.Join(lifecycleFields, ", "))
			continue
		}
		out[k.Value] = f
	}
	return out
}
