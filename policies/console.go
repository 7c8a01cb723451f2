package policies

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/crmgate/crmgate/dataverse"
)

// Console is the policy file's optional console section: settings of the
// admin console's pages.
type Console struct {
	// Contacts configures the contact list (console.contacts); its zero
	// value lists every contact with the default columns.
	Contacts ConsoleContacts
}

// ConsoleContacts is console.contacts: which Dataverse contacts the admin
// console lists and manages, and which columns it shows.
type ConsoleContacts struct {
	// Filter selects the contacts, like a saved view, with the grammar of
	// dataverse.binding_filter but without placeholders, e.g.
	// "adx_organizationname eq 'Contoso' and statecode eq 0"; the zero
	// value selects every contact. Contacts outside it cannot be read,
	// changed or deleted from the console. The gateway parses it at
	// start-up (authz/binding.ParseFilterTemplate, authz/contacts.CheckOptions)
	// and reports a problem at its Line.
	Filter FilterText
	// CompanyColumn is the text column shown and edited as the company;
	// empty means adx_organizationname.
	CompanyColumn string
	// CompanyLine is the line of CompanyColumn, for messages.
	CompanyLine int
	// Columns are extra contact columns the list shows and edits as text,
	// each a valid, non-secret column name, in the order given.
	Columns []string
	// ColumnsLine is the line of Columns, for messages.
	ColumnsLine int
}

// console decodes the console section.
func (d *decoder) console(n *yaml.Node, path string) Console {
	var c Console
	d.mapping(n, path, fields{
		"contacts": func(_, v *yaml.Node) { c.Contacts = d.consoleContacts(v, path+".contacts") },
	})
	return c
}

// consoleContacts decodes console.contacts. Column names are checked with
// dataverse.ValidContactColumn here, at their lines; the rest (no
// placeholder, no fixed or repeated column) by authz/contacts.CheckOptions
// when the gateway is built.
func (d *decoder) consoleContacts(n *yaml.Node, path string) ConsoleContacts {
	var cc ConsoleContacts
	d.mapping(n, path, fields{
		"filter": func(_, v *yaml.Node) { cc.Filter = d.filterText(v, path+".filter") },
		"company_column": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".company_column"); ok {
				if err := dataverse.ValidContactColumn(s); err != nil {
					d.errorf(v, "%s.company_column: %v", path, err)
					return
				}
				cc.CompanyColumn, cc.CompanyLine = s, v.Line
			}
		},
		"columns": func(_, v *yaml.Node) {
			cc.ColumnsLine = v.Line
			d.sequence(v, path+".columns", func(i int, c *yaml.Node) {
				p := fmt.Sprintf("%s.columns[%d]", path, i)
				s, ok := d.str(c, p)
				if !ok {
					return
				}
				if err := dataverse.ValidContactColumn(s); err != nil {
					d.errorf(c, "%s: %v", p, err)
					return
				}
				cc.Columns = append(cc.Columns, s)
			})
		},
	})
	return cc
}
