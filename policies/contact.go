package policies

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/crmgate/crmgate/dataverse"
)

// ContactHeaderPrefix starts the name of every per-column contact header sent
// upstream (the header contract in README.md, Identity headers for
// upstream apps); ContactHeaderName appends the column's part.
const ContactHeaderPrefix = "X-Current-User-Contact-"

// reservedContactHeaders are contact headers with a fixed meaning that no
// column may take.
var reservedContactHeaders = map[string]string{
	ContactHeaderPrefix + "Id": "the bound contact's id",
}

// ContactHeader is one allow-listed contact column of a route and the
// upstream header that carries its value.
type ContactHeader struct {
	// Column is the Dataverse logical name, e.g. "_parentcustomerid_value";
	// it is also the key in the JWT's contact.columns claim.
	Column string
	// Header is the header name, e.g. "X-Current-User-Contact-Parentcustomerid-Value";
	// see ContactHeaderName.
	Header string
}

// ContactHeaderName returns the header that carries the contact column
// column: ContactHeaderPrefix followed by the column's '_'-separated parts,
// empty parts dropped, each with its first letter upper-cased, joined by '-'.
// "fullname" gives "X-Current-User-Contact-Fullname" and
// "_parentcustomerid_value" gives
// "X-Current-User-Contact-Parentcustomerid-Value". The result is already in
// the canonical form of net/http. Headers carry no '_' because many proxies
// drop such headers and crmgate folds '_' to '-' when it strips client
// copies. Distinct columns can give the same header ("a_b", "_a_b"); Parse
// rejects such pairs within a route. column should be valid for Parse;
// ContactHeaderName does not check it.
func ContactHeaderName(column string) string {
	var b strings.Builder
	b.Grow(len(ContactHeaderPrefix) + len(column))
	b.WriteString(ContactHeaderPrefix)
	first := true
	for part := range strings.SplitSeq(column, "_") {
		if part == "" {
			continue
		}
		if !first {
			b.WriteByte('-')
		}
		first = false
		c := part[0]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b.WriteByte(c)
		b.WriteString(part[1:])
	}
	return b.String()
}

// contactColumns decodes a route's contact_columns allow-list: valid,
// distinct column names whose headers are distinct and not reserved.
func (d *decoder) contactColumns(n *yaml.Node, path string) ([]string, []ContactHeader) {
	var cols []string
	var hdrs []ContactHeader
	lines := map[string]int{}
	byHeader := map[string]string{}
	d.sequence(n, path, func(i int, c *yaml.Node) {
		p := fmt.Sprintf("%s[%d]", path, i)
		s, ok := d.str(c, p)
		if !ok {
			return
		}
		if err := dataverse.ValidContactColumn(s); err != nil {
			d.errorf(c, "%s: %v", p, err)
			return
		}
		if first, dup := lines[s]; dup {
			d.errorf(c, "%s: duplicate column %q (first at line %d)", p, s, first)
			return
		}
		lines[s] = c.Line
		h := ContactHeaderName(s)
		if what, ok := reservedContactHeaders[h]; ok {
			d.errorf(c, "%s: column %q would be sent as %s, which is reserved for %s", p, s, h, what)
			return
		}
		if other, dup := byHeader[h]; dup {
			d.errorf(c, "%s: columns %q (line %d) and %q would both be sent as %s", p, other, lines[other], s, h)
			return
		}
		byHeader[h] = s
		cols = append(cols, s)
		hdrs = append(hdrs, ContactHeader{Column: s, Header: h})
	})
	return cols, hdrs
}

// ContactColumns returns the contact columns the gateway must fetch when a
// user signs in, sorted and without duplicates: every route's ContactColumns
// and every column a route's condition names literally (contact.columns.x,
// has(contact.columns.x), contact.columns["x"], "x" in contact.columns). It
// returns nil when no route needs any. A column missing from the fetched
// contact is absent from contact.columns, so a condition that reads it
// forbids.
func (p *Policy) ContactColumns() []string {
	var cols []string
	for _, r := range p.Routes {
		cols = append(cols, r.ContactColumns...)
		cols = append(cols, r.conditionColumns...)
	}
	slices.Sort(cols)
	return slices.Compact(cols)
}

// ContactRoute returns the name of the first route that needs the
// signed-in user's contact: one with access bound, contact columns to
// forward, or a condition that reads contact columns. ok is false when no
// route does. Such routes only work when sessions carry contact snapshots.
func (p *Policy) ContactRoute() (name string, ok bool) {
	for _, r := range p.Routes {
		if r.Access == AccessBound || len(r.ContactColumns) > 0 || len(r.conditionColumns) > 0 {
			return r.Name, true
		}
	}
	return "", false
}
