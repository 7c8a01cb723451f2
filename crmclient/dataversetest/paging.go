package dataversetest

// Keyset paging. Each @odata.nextLink carries a $skiptoken in Dataverse's
// form, a URL-encoded
//
//	<cookie pagenumber="2" pagingcookie="..." istracking="False" />
//
// whose pagingcookie attribute is the URL-encoded paging cookie (so that it
// is URL-encoded twice in the nextLink):
//
//	<cookie page="1"><fullname last="..." first="..." /><contactid last="{GUID}" first="{GUID}" /></cookie>
//
// with one element per $orderby column and then the primary key, each giving
// the values of the page's last and first rows
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results,
// https://learn.microsoft.com/power-apps/developer/data-platform/fetchxml/page-results).
// The next page holds the rows that sort after the last row, as they are when
// it is requested, so rows deleted or added between requests neither shift
// nor repeat the rest: "The page a record shows on is determined at the time
// each page is rendered"
// (https://learn.microsoft.com/power-apps/developer/data-platform/org-service/paging-behaviors-and-ordering).
//
// Like Dataverse's, the token is not signed: the emulator refuses one it
// cannot have written (bad syntax, encoding, values, or columns other than
// the query's order) with a 400, and resumes after whatever position a
// well-formed one names.

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/crmgate/crmgate/crmclient/dataversetest/odata"
)

// errSkipToken is wrapped by every error decodeSkipToken returns.
var errSkipToken = errors.New("invalid $skiptoken")

// badSkipToken is the 400 for a $skiptoken the emulator did not write.
// Dataverse's code and text for it are not documented; "0x0" and this
// message are the emulator's own.
func badSkipToken(err error) *apiError {
	return errf(http.StatusBadRequest, "0x0", "The $skiptoken query option value is not a valid paging cookie: %s. Send the @odata.nextLink URL unchanged.",
		strings.TrimPrefix(err.Error(), errSkipToken.Error()+": "))
}

// pageOrder is the order paging follows: the $orderby keys, then the
// primary key ascending when $orderby does not name it. Without $orderby
// Dataverse orders by the primary key ascending
// (https://learn.microsoft.com/power-apps/developer/data-platform/org-service/paging-behaviors-and-ordering),
// and its paging cookie always ends with the primary key
// (https://learn.microsoft.com/power-apps/developer/data-platform/fetchxml/page-results).
// That ties are broken by the primary key ascending is not documented.
func pageOrder(o odata.OrderBy, pk string) odata.OrderBy {
	for _, k := range o {
		if k.Column == pk {
			return o
		}
	}
	return append(o[:len(o):len(o)], odata.OrderKey{Column: pk})
}

// skipToken is a decoded $skiptoken.
type skipToken struct {
	// page is the number of the page the token asks for (2 or more).
	page int
	// last holds the order columns' values in the last row of the page
	// before; the page asked for starts after it.
	last odata.Row
}

// maxPageNumber bounds pagenumber so that page+1 never overflows.
const maxPageNumber = math.MaxInt32

// encodeSkipToken returns the $skiptoken (before URL encoding) for page
// number page, which follows the page whose first and last rows, in order,
// are given.
func encodeSkipToken(page int, t *odata.EntityType, order odata.OrderBy, first, last odata.Row) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<cookie page="%d">`, page-1)
	for _, k := range order {
		b.WriteString("<" + k.Column)
		cookieValue(&b, "last", t, k.Column, last[k.Column])
		cookieValue(&b, "first", t, k.Column, first[k.Column])
		b.WriteString(" />")
	}
	b.WriteString("</cookie>")
	inner := cookieEscape(b.String())
	return fmt.Sprintf(`<cookie pagenumber="%d" pagingcookie="%s" istracking="False" />`, page, inner)
}

// cookieValue writes the attribute name="value" for v, a value of column
// col. A null is written as name+"null" = "1": how Dataverse records a null
// value is not documented.
func cookieValue(b *strings.Builder, name string, t *odata.EntityType, col string, v any) {
	text, null := odata.KeyText(t, col, v)
	if null {
		b.WriteString(" " + name + `null="1"`)
		return
	}
	b.WriteString(" " + name + `="`)
	xmlEscapeAttr(b, text)
	b.WriteByte('"')
}

// decodeSkipToken parses a $skiptoken that encodeSkipToken wrote for a
// query ordered by order. The errors wrap errSkipToken.
func decodeSkipToken(tok string, t *odata.EntityType, order odata.OrderBy) (skipToken, error) {
	fail := func(format string, args ...any) (skipToken, error) {
		return skipToken{}, fmt.Errorf("%w: "+format, append([]any{errSkipToken}, args...)...)
	}
	sc := &cookieScanner{s: tok}
	outer, closed, err := sc.element()
	if err != nil {
		return fail("not a <cookie pagenumber=... pagingcookie=... /> element: %w", err)
	}
	if outer.name != "cookie" || !closed || sc.pos != len(sc.s) {
		return fail("not a single <cookie pagenumber=... pagingcookie=... /> element")
	}
	if err := outer.only("pagenumber", "pagingcookie", "istracking"); err != nil {
		return fail("%w", err)
	}
	pn, ok := outer.attr("pagenumber")
	page, err := strconv.Atoi(pn)
	if !ok || err != nil || strconv.Itoa(page) != pn || page < 2 || page > maxPageNumber {
		return fail("pagenumber %q is not a page number from 2 to %d", pn, maxPageNumber)
	}
	// Older samples omit istracking; change tracking is not emulated.
	if v, ok := outer.attr("istracking"); ok && v != "False" {
		return fail(`istracking %q is not "False"`, v)
	}
	enc, ok := outer.attr("pagingcookie")
	if !ok {
		return fail("no pagingcookie")
	}
	pc, err := url.PathUnescape(enc)
	if err != nil {
		return fail("pagingcookie is not URL-encoded: %w", err)
	}
	sc = &cookieScanner{s: pc}
	inner, closed, err := sc.element()
	if err != nil {
		return fail("pagingcookie: %w", err)
	}
	if inner.name != "cookie" || closed {
		return fail("pagingcookie is not a <cookie> element")
	}
	if err := inner.only("page"); err != nil {
		return fail("pagingcookie: %w", err)
	}
	if p, _ := inner.attr("page"); p != strconv.Itoa(page-1) {
		return fail("pagingcookie page %q does not precede pagenumber %d", p, page)
	}
	last := odata.Row{}
	for i := 0; ; i++ {
		if sc.endTag("cookie") {
			if i != len(order) {
				return fail("pagingcookie has %d of the query's %d order columns (%s)", i, len(order), orderColumns(order))
			}
			break
		}
		el, closed, err := sc.element()
		if err != nil {
			return fail("pagingcookie: %w", err)
		}
		if i >= len(order) || el.name != order[i].Column || !closed {
			return fail("pagingcookie element <%s> does not match the query's order (%s)", el.name, orderColumns(order))
		}
		if err := el.only("last", "lastnull", "first", "firstnull"); err != nil {
			return fail("pagingcookie <%s>: %w", el.name, err)
		}
		v, err := el.value(t, "last")
		if err != nil {
			return fail("pagingcookie <%s>: %w", el.name, err)
		}
		if _, err := el.value(t, "first"); err != nil {
			return fail("pagingcookie <%s>: %w", el.name, err)
		}
		last[el.name] = v
	}
	if sc.pos != len(sc.s) {
		return fail("pagingcookie has text after </cookie>")
	}
	return skipToken{page: page, last: last}, nil
}

// orderColumns lists the columns of order for error messages.
func orderColumns(order odata.OrderBy) string {
	cols := make([]string, len(order))
	for i, k := range order {
		cols[i] = k.Column
	}
	return strings.Join(cols, ",")
}

// cookieElement is one start tag of a paging cookie.
type cookieElement struct {
	name  string
	attrs [][2]string // name, unescaped value; in order, no duplicates
}

func (e cookieElement) attr(name string) (string, bool) {
	for _, a := range e.attrs {
		if a[0] == name {
			return a[1], true
		}
	}
	return "", false
}

// only reports an attribute whose name is not listed.
func (e cookieElement) only(names ...string) error {
	for _, a := range e.attrs {
		known := false
		for _, n := range names {
			known = known || a[0] == n
		}
		if !known {
			return fmt.Errorf("unexpected attribute %s on <%s>", a[0], e.name)
		}
	}
	return nil
}

// value parses the value that the attribute name, or name+"null", of a
// column element gives; exactly one of the two must be present.
func (e cookieElement) value(t *odata.EntityType, name string) (any, error) {
	text, hasValue := e.attr(name)
	null, hasNull := e.attr(name + "null")
	switch {
	case hasValue && hasNull, !hasValue && !hasNull:
		return nil, fmt.Errorf("want exactly one of %s and %snull", name, name)
	case hasNull && null != "1":
		return nil, fmt.Errorf(`%snull %q is not "1"`, name, null)
	case hasNull:
		return nil, nil
	}
	v, err := odata.ParseKeyText(t, e.name, text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// cookieScanner reads the XML subset paging cookies use: start tags with
// double-quoted attributes, self-closing tags and end tags, with nothing
// between them. encoding/xml is not used because it refuses character
// references to control characters, which column values may hold.
type cookieScanner struct {
	s   string
	pos int
}

// element reads a start tag; closed reports "/>".
func (c *cookieScanner) element() (el cookieElement, closed bool, err error) {
	if !c.skip("<") {
		return el, false, fmt.Errorf("want '<' at offset %d", c.pos)
	}
	if el.name = c.name(); el.name == "" {
		return el, false, fmt.Errorf("want an element name at offset %d", c.pos)
	}
	for {
		spaced := c.spaces()
		switch {
		case c.skip("/>"):
			return el, true, nil
		case c.skip(">"):
			return el, false, nil
		case !spaced:
			return el, false, fmt.Errorf("want ' ', '>' or '/>' at offset %d", c.pos)
		}
		name := c.name()
		if name == "" || !c.skip(`="`) {
			return el, false, fmt.Errorf("want an attribute at offset %d", c.pos)
		}
		if _, dup := el.attr(name); dup {
			return el, false, fmt.Errorf("attribute %s repeated on <%s>", name, el.name)
		}
		end := strings.IndexByte(c.s[c.pos:], '"')
		if end < 0 {
			return el, false, fmt.Errorf("attribute %s is not terminated", name)
		}
		v, err := xmlUnescape(c.s[c.pos : c.pos+end])
		if err != nil {
			return el, false, fmt.Errorf("attribute %s: %w", name, err)
		}
		c.pos += end + 1
		el.attrs = append(el.attrs, [2]string{name, v})
	}
}

// endTag consumes "</name>" if it comes next.
func (c *cookieScanner) endTag(name string) bool {
	return c.skip("</" + name + ">")
}

func (c *cookieScanner) skip(s string) bool {
	if strings.HasPrefix(c.s[c.pos:], s) {
		c.pos += len(s)
		return true
	}
	return false
}

func (c *cookieScanner) spaces() bool {
	start := c.pos
	for c.pos < len(c.s) && c.s[c.pos] == ' ' {
		c.pos++
	}
	return c.pos > start
}

// name reads an XML name made of ASCII letters, digits, '_', '-' and '.',
// not starting with a digit, '-' or '.'; column names are of this form.
func (c *cookieScanner) name() string {
	start := c.pos
	for c.pos < len(c.s) {
		ch := c.s[c.pos]
		letter := ch == '_' || 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z'
		if !letter && (c.pos == start || !(ch == '-' || ch == '.' || '0' <= ch && ch <= '9')) {
			break
		}
		c.pos++
	}
	return c.s[start:c.pos]
}

// xmlEscapeAttr writes s as a double-quoted attribute value: markup
// characters as entities, control characters as character references, so
// that xmlUnescape gives s back exactly.
func xmlEscapeAttr(b *strings.Builder, s string) {
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '"':
			b.WriteString("&quot;")
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, "&#x%x;", r)
		default:
			b.WriteRune(r)
		}
	}
}

// xmlUnescape resolves the five predefined entities and character
// references in an attribute value. A raw '<', an unknown entity or a
// reference to no valid character is an error.
func xmlUnescape(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("not UTF-8")
	}
	if !strings.ContainsAny(s, "&<") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			return "", errors.New("raw '<' in a value")
		case '&':
		default:
			b.WriteByte(s[i])
			continue
		}
		end := strings.IndexByte(s[i:], ';')
		if end < 0 {
			return "", errors.New("unterminated entity")
		}
		ent := s[i+1 : i+end]
		i += end
		switch ent {
		case "amp":
			b.WriteByte('&')
		case "lt":
			b.WriteByte('<')
		case "gt":
			b.WriteByte('>')
		case "quot":
			b.WriteByte('"')
		case "apos":
			b.WriteByte('\'')
		default:
			num, ok := strings.CutPrefix(ent, "#")
			base := 10
			if hex, isHex := strings.CutPrefix(num, "x"); isHex {
				num, base = hex, 16
			}
			n, err := strconv.ParseUint(num, base, 32)
			if !ok || err != nil || !utf8.ValidRune(rune(n)) {
				return "", fmt.Errorf("unknown entity &%s;", ent)
			}
			b.WriteRune(rune(n))
		}
	}
	return b.String(), nil
}

// cookieEscape percent-encodes every byte but ASCII letters, digits, '-',
// '_' and '.', with lower-case hex digits and a space as %20, as the
// documented nextLink and pagingcookie values show (%253ccookie%2520page,
// %2528sample%2529). The exact set of bytes Dataverse leaves as they are is
// not documented.
func cookieEscape(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' || c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// skipTokenEscape encodes a $skiptoken for the query string as the
// documented nextLink values do ("$skiptoken=%3Ccookie%20pagenumber=%222%22
// ...%20/%3E"): upper-case hex, with '=' and '/' left as they are.
func skipTokenEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' || c == '_' || c == '.' || c == '=' || c == '/' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
