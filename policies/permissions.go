package policies

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/crmgate/crmgate/authz/permissions"
)

// permissionsSection decodes the policy file's optional permissions
// section: a mapping of local role name to the list of permissions the
// role grants, for example
//
//	permissions:
//	  helpdesk: [users:read, users:credentials]
//	  auditor: [audit:read]
//
// The admin role has every permission and may not be listed; a missing
// section grants nothing to any other role. The names and rules are
// package permissions'; each problem is reported at its line.
func (d *decoder) permissionsSection(n *yaml.Node) permissions.Grants {
	n = resolve(n)
	if isNull(n) {
		return permissions.Grants{}
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "permissions: must be a mapping of role name to a list of permissions")
		return permissions.Grants{}
	}
	byRole := map[string][]string{}
	var order []string
	lines := map[string]*yaml.Node{}
	itemLines := map[string][]*yaml.Node{}
	ok := true
	fs := fields{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			continue // mapping reports it
		}
		role := k.Value
		fs[role] = func(key, val *yaml.Node) {
			path := joinPath("permissions", role)
			val = resolve(val)
			if val.Kind != yaml.SequenceNode && !isNull(val) {
				d.errorf(val, "%s: must be a list of permissions", path)
				ok = false
				return
			}
			list := []string{}
			var nodes []*yaml.Node
			d.sequence(val, path, func(j int, c *yaml.Node) {
				s, good := d.str(c, fmt.Sprintf("%s[%d]", path, j))
				if !good {
					ok = false
					return
				}
				list = append(list, s)
				nodes = append(nodes, c)
			})
			byRole[role], lines[role], itemLines[role] = list, key, nodes
			order = append(order, role)
		}
	}
	before := len(d.errs)
	d.mapping(n, "permissions", fs)
	if !ok || len(d.errs) > before {
		return permissions.Grants{}
	}
	for _, role := range order {
		for _, err := range permissions.CheckGrant(role, byRole[role]) {
			var ge *permissions.GrantError
			at := lines[role]
			if errors.As(err, &ge) && ge.Index >= 0 && ge.Index < len(itemLines[role]) {
				at = itemLines[role][ge.Index]
			}
			d.errorf(at, "%s", err.Error())
		}
	}
	if len(d.errs) > before {
		return permissions.Grants{}
	}
	g, err := permissions.NewGrants(byRole)
	if err != nil { // CheckGrant found nothing, so this cannot happen; report it all the same
		d.errorf(n, "%s", err.Error())
	}
	return g
}
