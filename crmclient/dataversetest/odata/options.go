package odata

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// errTerm is the error for a malformed $select, $orderby or $expand item.
// Microsoft.OData's text, as remembered; not confirmed against Dataverse.
func errTerm(term string) *Error {
	return badRequest("Term '%s' is not valid in a $select or $expand expression.", term)
}

func isIdent(s string) bool {
	return s != "" && isIdentStart(s[0]) && identLen(s) == len(s)
}

// ParseSelect parses a $select value into column names, in the given order
// without duplicates. An empty value or "*" returns nil, meaning all
// columns. Every name must be a column of t (names are case sensitive);
// the caller adds the primary key, which Dataverse always returns.
func ParseSelect(src string, t *EntityType) ([]string, error) {
	src = strings.TrimSpace(src)
	if src == "" || src == "*" {
		return nil, nil
	}
	var cols []string
	for item := range strings.SplitSeq(src, ",") {
		name := strings.TrimSpace(item)
		if !isIdent(name) {
			return nil, errTerm(name)
		}
		if _, ok := t.column(name); !ok {
			return nil, errUnknownProperty(name, t.orEmpty())
		}
		if !slices.Contains(cols, name) {
			cols = append(cols, name)
		}
	}
	return cols, nil
}

// OrderBy is a parsed $orderby: the sort keys, most significant first. A
// nil OrderBy leaves rows in their order.
type OrderBy []OrderKey

// OrderKey is one $orderby item.
type OrderKey struct {
	// Column is a column of the table.
	Column string
	// Desc is true for "desc"; the default is ascending.
	Desc bool
}

// ParseOrderBy parses a $orderby value such as "revenue asc,name desc".
// Every column must belong to t. Parameter aliases, which Dataverse allows
// in $orderby, are not supported by the emulator.
func ParseOrderBy(src string, t *EntityType) (OrderBy, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	var o OrderBy
	end := -1 // after the next line: the byte offset just past item
	for item := range strings.SplitSeq(src, ",") {
		end += 1 + len(item)
		f := strings.Fields(item)
		if len(f) == 0 || len(f) > 2 || len(f) == 2 && f[1] != "asc" && f[1] != "desc" {
			// Not confirmed: Microsoft.OData's text, as remembered.
			return nil, badRequest("Syntax error at position %d in '%s'.", pos16(src, end), src)
		}
		name := f[0]
		switch {
		case strings.HasPrefix(name, "@"):
			return nil, errUnsupported("The parameter alias '" + name + "'")
		case strings.Contains(name, "/"):
			return nil, errUnsupported("Ordering by a related table's column ('" + name + "')")
		case !isIdent(name):
			return nil, errTerm(name)
		}
		if _, ok := t.column(name); !ok {
			return nil, errUnknownProperty(name, t.orEmpty())
		}
		o = append(o, OrderKey{Column: name, Desc: len(f) == 2 && f[1] == "desc"})
	}
	return o, nil
}

// Sort sorts rows by o, stably: rows that tie on every key keep their input
// order. Rows compare as Compare compares them.
func (o OrderBy) Sort(rows []Row, t *EntityType) {
	if len(o) == 0 {
		return
	}
	kinds := o.kinds(t)
	slices.SortStableFunc(rows, func(a, b Row) int { return o.compare(kinds, a, b) })
}

// Compare orders a and b by o: negative when a sorts first, positive when b
// does, 0 when they tie on every key. Strings compare without regard to
// case; choice columns sort by their integer value
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview).
// Nulls, and values of the wrong Go type for the column, come first in
// ascending order and last in descending order, as SQL Server sorts them.
// GUIDs sort as text, not in SQL Server's byte order. Lookup columns sort by
// their GUID, not by the related row's primary name as Dataverse does
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/order-rows).
func (o OrderBy) Compare(a, b Row, t *EntityType) int {
	return o.compare(o.kinds(t), a, b)
}

// kinds returns the Kind of each key's column; a column t lacks compares as
// a string.
func (o OrderBy) kinds(t *EntityType) []Kind {
	kinds := make([]Kind, len(o))
	for i, k := range o {
		kinds[i], _ = t.column(k.Column)
		if kinds[i] == 0 {
			kinds[i] = KindString
		}
	}
	return kinds
}

func (o OrderBy) compare(kinds []Kind, a, b Row) int {
	for i, k := range o {
		c := sortCompare(normalize(kinds[i], a[k.Column]), normalize(kinds[i], b[k.Column]))
		if c != 0 {
			if k.Desc {
				return -c
			}
			return c
		}
	}
	return 0
}

// Expand is one $expand item.
type Expand struct {
	// Nav is the navigation property name. ParseExpand checks only its
	// syntax; the caller must check that t has it.
	Nav string
	// Select holds the names from $select=..., unchecked; nil means all.
	Select []string
	// Filter is the raw $filter text inside the parentheses, or "".
	Filter string
	// OrderBy is the raw $orderby text, or "".
	OrderBy string
	// Top is the $top value; 0 means none was given ($top=0 is rejected).
	Top int
	// Ref is true for "nav/$ref", which returns only @odata.id values.
	Ref bool
}

// ParseExpand parses the syntax of a $expand value such as
// "a($select=x,y),b/$ref,c($select=z;$filter=name eq 'a;b')". Options are
// separated by ";"; commas, semicolons and parentheses inside quoted
// strings are skipped. An empty value returns nil. Nested $expand and
// options other than $select, $filter, $orderby and $top are rejected as
// not supported by the emulator.
func ParseExpand(src string) ([]Expand, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	items, ok := splitTop(src, ',')
	if !ok {
		return nil, errTerm(src)
	}
	var out []Expand
	for _, item := range items {
		e, err := parseExpandItem(strings.TrimSpace(item))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func parseExpandItem(item string) (Expand, *Error) {
	name, rest := item, ""
	if i := strings.IndexAny(item, "(/"); i >= 0 {
		name, rest = item[:i], item[i:]
	}
	if !isIdent(name) {
		return Expand{}, errTerm(item)
	}
	e := Expand{Nav: name}
	switch {
	case rest == "":
		return e, nil
	case rest == "/$ref":
		e.Ref = true
		return e, nil
	case rest[0] != '(' || rest[len(rest)-1] != ')':
		return Expand{}, errTerm(item)
	}
	opts, ok := splitTop(rest[1:len(rest)-1], ';')
	if !ok {
		return Expand{}, errTerm(item)
	}
	seen := map[string]bool{}
	for _, opt := range opts {
		k, v, found := strings.Cut(opt, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !found || v == "" || seen[k] {
			return Expand{}, errTerm(item)
		}
		seen[k] = true
		switch k {
		case "$select":
			for s := range strings.SplitSeq(v, ",") {
				s = strings.TrimSpace(s)
				if !isIdent(s) {
					return Expand{}, errTerm(s)
				}
				e.Select = append(e.Select, s)
			}
		case "$filter":
			e.Filter = v
		case "$orderby":
			e.OrderBy = v
		case "$top":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				// Not confirmed: the emulator's message.
				return Expand{}, badRequest("Invalid value '%s' for $top in $expand of '%s'.", v, name)
			}
			e.Top = n
		case "$expand":
			return Expand{}, errUnsupported("A nested $expand")
		default:
			return Expand{}, errUnsupported("The query option '" + k + "' inside $expand")
		}
	}
	return e, nil
}

// splitTop splits s at sep where sep is outside parentheses and quoted
// strings ('...' with doubled quotes, "..." with backslash escapes). It reports
// false for unbalanced parentheses or an unterminated string.
func splitTop(s string, sep byte) ([]string, bool) {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, false
			}
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if depth != 0 || quote != 0 {
		return nil, false
	}
	return append(out, s[start:]), true
}

// Project returns a new row holding only the listed columns and t's primary
// key (a nil cols keeps every column). A listed column missing from r is
// set to nil, as OData queries return null columns. Annotations are kept:
// keys starting with "@" (such as "@odata.etag") and "col@..." keys of kept
// columns. Values are not copied deeply.
func Project(r Row, cols []string, t *EntityType) Row {
	if cols == nil {
		out := make(Row, len(r))
		maps.Copy(out, r)
		return out
	}
	keep := make(map[string]bool, len(cols)+1)
	out := make(Row, len(cols)+1)
	for _, c := range cols {
		keep[c] = true
		out[c] = r[c]
	}
	if t != nil && t.PrimaryKey != "" {
		keep[t.PrimaryKey] = true
		out[t.PrimaryKey] = r[t.PrimaryKey]
	}
	for k, v := range r {
		if i := strings.IndexByte(k, '@'); i == 0 || i > 0 && keep[k[:i]] {
			out[k] = v
		}
	}
	return out
}
