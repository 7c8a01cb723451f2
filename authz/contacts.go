package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors a Contacts implementation returns; match them with errors.Is.
var (
	// ErrContactNotFound means the contact does not exist.
	ErrContactNotFound = errors.New("authz: contact not found")
	// ErrDirectoryUnavailable means Dataverse cannot answer now (the
	// breaker is open, or retries were exhausted). Sign-in of a bound user
	// fails closed with it, so the caller can show "try again shortly";
	// unbound users never meet it.
	ErrDirectoryUnavailable = errors.New("authz: contact directory unavailable")
	// ErrContactChanged means a conditional update was refused because the
	// contact changed in Dataverse since it was read (its ETag no longer
	// matches; HTTP 412). Nothing was written.
	ErrContactChanged = errors.New("authz: contact changed since it was read")
)

// Contact is the snapshot of a Dataverse contact that authz reads through
// Contacts and hands to the session. It holds no secret: implementations
// must not copy password hashes or security stamps into it.
type Contact struct {
	// ID is contactid, a lower-case GUID.
	ID string
	// LogicalName is "contact".
	LogicalName string
	// Name is fullname.
	Name string
	// Active reports statecode 0.
	Active bool
	// LogonEnabled is adx_identity_logonenabled (WEBAPI.md §7.1).
	LogonEnabled bool
	// Email, FirstName, LastName and Username are emailaddress1,
	// firstname, lastname and adx_identity_username.
	Email, FirstName, LastName, Username string
	// Columns holds every column the caller asked for, by logical name,
	// as Dataverse sent it: a string, a bool, nil for null, or a number
	// (json.Number, float64 or an integer type). authz compares filter
	// conditions against it, so a missing column never matches.
	Columns map[string]any
	// Roles are the names of the contact's active web roles; nil when the
	// request did not ask for them.
	Roles []string
	// ETag is the row version Dataverse sent (@odata.etag, e.g. W/"5012"),
	// for a conditional UpdateContact; empty when it sent none.
	ETag string
}

// Condition is one "Column Op Value" term of a contact query. Values are
// data, never query text: the Contacts implementation must encode them
// with its filter builder (crmclient.F), which escapes them.
type Condition struct {
	// Column is a contact column's logical name, checked by ValidColumn.
	Column string
	// Op is "eq" or "ne".
	Op string
	// Value is a string, an int64, a bool, or nil for null.
	Value any
}

// ContactQuery asks for the contacts that satisfy every condition.
type ContactQuery struct {
	// Conditions are joined with "and"; never empty. Strings compare as
	// Dataverse compares them (case-insensitively, and with %, _ and [ ]
	// possibly acting as wildcards, WEBAPI.md §3.1), so authz checks every
	// returned row again against the conditions and takes the columns they
	// name from Contact.Columns.
	Conditions []Condition
	// Columns are the columns to return in Contact.Columns; they always
	// include the conditions' columns.
	Columns []string
	// Roles asks for the active web roles in the same request ($expand).
	Roles bool
	// Limit caps the rows returned, 1 to 5000.
	Limit int
}

// Contacts is what authz needs from Dataverse; cmd adapts
// *crmclient.Client to it. Every method makes exactly one Web API request,
// so that a sign-in costs one round trip when no cache answers.
// Implementations return ErrDirectoryUnavailable (wrapped or not) when
// Dataverse cannot answer; they must then not answer from a stale cache,
// since the sign-in check fails closed on it.
type Contacts interface {
	// ContactByID returns contact id (a lower-case GUID) with columns in
	// Contact.Columns and its active web roles, in one request, whether
	// or not it is active. A missing contact gives ErrContactNotFound.
	ContactByID(ctx context.Context, id string, columns []string) (*Contact, error)
	// FindContacts returns the contacts, active or not, that match q, at
	// most q.Limit, ordered by id, in one request (with the web roles
	// expanded when q.Roles). No match is an empty slice, not an error.
	FindContacts(ctx context.Context, q ContactQuery) ([]*Contact, error)
	// UpdateContact writes columns (logical name to a string, a bool, an
	// int64 or nil) to contact id in one request, only if the contact still
	// has etag (If-Match); an empty etag updates whatever version is there.
	// It never creates a contact: a missing one gives ErrContactNotFound, a
	// changed one ErrContactChanged.
	UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error
}

// ContactSnapshots serves recently read contacts, for the revalidation of
// signed-in sessions: within its time to live a snapshot is answered
// without a request, and concurrent lookups of one contact share one
// request. crmclient.CachedDirectory satisfies it. Implementations must
// return ErrDirectoryUnavailable rather than a snapshot older than their
// time to live, since the session's grace period is counted from the last
// confirmed snapshot.
type ContactSnapshots interface {
	// ContactSnapshot returns contact id (lower-case GUID), active or not,
	// with at least columns in Contact.Columns and its active web roles.
	// A missing contact gives ErrContactNotFound.
	ContactSnapshot(ctx context.Context, id string, columns []string) (*Contact, error)
}

// value returns the contact's column col: from Columns, else from the
// typed fields for the columns they hold.
func (c *Contact) value(col string) (any, bool) {
	if v, ok := c.Columns[col]; ok {
		return v, true
	}
	switch col {
	case "contactid":
		return c.ID, true
	case "fullname":
		return c.Name, true
	case "emailaddress1":
		return c.Email, true
	case "firstname":
		return c.FirstName, true
	case "lastname":
		return c.LastName, true
	case "adx_identity_username":
		return c.Username, true
	case "adx_identity_logonenabled":
		return c.LogonEnabled, true
	case "statecode":
		if c.Active {
			return int64(0), true
		}
		return int64(1), true
	}
	return nil, false
}

// Matches reports whether the contact satisfies cond, compared the way
// Dataverse would but never more loosely: strings equal ignoring case
// (no wildcards, no accent folding), numbers and booleans by value, null
// only with nil. A column missing from the contact never matches, not even
// with "ne".
func (cond Condition) Matches(c *Contact) bool {
	got, ok := c.value(cond.Column)
	if !ok {
		return false
	}
	eq := valueEqual(got, cond.Value)
	switch cond.Op {
	case "eq":
		return eq
	case "ne":
		return !eq
	}
	return false
}

// valueEqual compares a column value as decoded from JSON with a
// condition value.
func valueEqual(got, want any) bool {
	switch w := want.(type) {
	case nil:
		return got == nil
	case string:
		g, ok := got.(string)
		return ok && strings.EqualFold(g, w)
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case int64:
		switch g := got.(type) {
		case json.Number:
			n, err := g.Int64()
			return err == nil && n == w
		case float64:
			return g == math.Trunc(g) && g == float64(w)
		case int:
			return int64(g) == w
		case int32:
			return int64(g) == w
		case int64:
			return g == w
		}
	}
	return false
}

// matchesAll reports whether c satisfies every condition.
func matchesAll(c *Contact, conds []Condition) bool {
	for _, cond := range conds {
		if !cond.Matches(c) {
			return false
		}
	}
	return true
}

// odataKeywords are words a column name must not be, so that it cannot read
// as an operator or a literal.
var odataKeywords = []string{"and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "has", "in",
	"add", "sub", "mul", "div", "mod", "null", "true", "false", "inf", "nan"}

// ValidColumn checks a Dataverse logical column name: 1 to 128 ASCII
// letters, digits and underscores, not starting with a digit, and not an
// OData keyword. It is the rule crmclient's filter builder applies.
func ValidColumn(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("authz: column name %q: want 1 to 128 characters", truncateText(name, 64))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("authz: column name %q: only letters, digits and _ are allowed", truncateText(name, 64))
		}
	}
	if slices.Contains(odataKeywords, strings.ToLower(name)) {
		return fmt.Errorf("authz: column name %q is an OData keyword", name)
	}
	return nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// The user fields a FilterTemplate placeholder may name.
const (
	TemplateFieldUsername  = "username"
	TemplateFieldEmail     = "email"
	TemplateFieldFirstName = "first_name"
	TemplateFieldLastName  = "last_name"
	TemplateFieldID        = "id"
)

// templateFields maps each placeholder to the user field it takes.
var templateFields = map[string]func(*User) string{
	TemplateFieldUsername:  func(u *User) string { return u.Username },
	TemplateFieldEmail:     func(u *User) string { return u.Email },
	TemplateFieldFirstName: func(u *User) string { return u.FirstName },
	TemplateFieldLastName:  func(u *User) string { return u.LastName },
	TemplateFieldID:        func(u *User) string { return u.ID },
}

// Limits of a filter template.
const (
	MaxTemplateLen   = 2000
	MaxTemplateTerms = 20
)

// ErrEmptyUserField is wrapped by FilterTemplate.Conditions when a
// placeholder names a user field that is empty: an empty value would match
// every contact whose column is empty.
var ErrEmptyUserField = errors.New("authz: filter template: user field is empty")

// FilterTemplateError reports a filter template that does not parse.
type FilterTemplateError struct {
	// Pos is the 1-based character position of the problem in the template.
	Pos int
	// Msg says what is wrong there.
	Msg string
}

// Error implements error.
func (e *FilterTemplateError) Error() string {
	return fmt.Sprintf("authz: filter template: position %d: %s", e.Pos, e.Msg)
}

// FilterTemplate is a contact filter whose values may come from the user
// being bound or signed in, parsed once at configuration time by
// ParseFilterTemplate. User values never become query text: Conditions
// hands them over as data, and the Contacts implementation escapes them.
// A nil *FilterTemplate means no filter.
//
// The grammar (keywords in lower case, whitespace between tokens free):
//
//	template = term *( "and" term )
//	term     = column ( "eq" / "ne" ) value
//	value    = "{" field "}" / "'" text "'" / integer / "true" / "false" / "null"
//	field    = "username" / "email" / "first_name" / "last_name" / "id"
//
// column is a logical name (see ValidColumn); inside text a single quote
// is written as two single quotes; integer is an optional "-" and decimal
// digits. Nothing else is accepted: no "or", "not", parentheses,
// functions, lambda operators or other comparison operators, GUID or date
// literals. Example:
//
//	emailaddress1 eq {email} and adx_portalaccess eq true
type FilterTemplate struct {
	src   string
	terms []templateTerm
}

type templateTerm struct {
	column, op string
	field      string // a placeholder, or "" for a literal
	value      any    // the literal: string, int64, bool or nil
}

// ParseFilterTemplate parses s (see FilterTemplate for the grammar). A
// template that does not parse gives a *FilterTemplateError naming the
// position.
func ParseFilterTemplate(s string) (*FilterTemplate, error) {
	if len(s) > MaxTemplateLen {
		return nil, &FilterTemplateError{Pos: 1, Msg: fmt.Sprintf("longer than %d bytes", MaxTemplateLen)}
	}
	if !utf8.ValidString(s) {
		return nil, &FilterTemplateError{Pos: 1, Msg: "not valid UTF-8"}
	}
	toks, err := lexTemplate(s)
	if err != nil {
		return nil, err
	}
	t := &FilterTemplate{src: s}
	p := 0
	next := func() templateToken {
		tok := toks[p]
		if tok.kind != tokEOF {
			p++
		}
		return tok
	}
	for {
		col := next()
		switch {
		case col.kind == tokEOF && len(t.terms) == 0:
			return nil, &FilterTemplateError{Pos: col.pos, Msg: "empty template"}
		case col.kind != tokIdent:
			return nil, &FilterTemplateError{Pos: col.pos, Msg: "expected a column name, found " + col.describe()}
		}
		if err := ValidColumn(col.text); err != nil {
			return nil, &FilterTemplateError{Pos: col.pos, Msg: strings.TrimPrefix(err.Error(), "authz: ")}
		}
		if toks[p].kind == tokPunct && toks[p].text == "(" {
			return nil, &FilterTemplateError{Pos: toks[p].pos, Msg: fmt.Sprintf("functions such as %s(...) are not supported", col.text)}
		}
		op := next()
		if op.kind != tokIdent || op.text != "eq" && op.text != "ne" {
			return nil, &FilterTemplateError{Pos: op.pos, Msg: "expected eq or ne, found " + op.describe()}
		}
		term := templateTerm{column: col.text, op: op.text}
		v := next()
		switch {
		case v.kind == tokField:
			if _, ok := templateFields[v.text]; !ok {
				return nil, &FilterTemplateError{Pos: v.pos, Msg: fmt.Sprintf("unknown field {%s}; want one of {username}, {email}, {first_name}, {last_name}, {id}", truncateText(v.text, 32))}
			}
			term.field = v.text
		case v.kind == tokString:
			term.value = v.text
		case v.kind == tokInt:
			n, err := strconv.ParseInt(v.text, 10, 64)
			if err != nil {
				return nil, &FilterTemplateError{Pos: v.pos, Msg: "integer out of range"}
			}
			term.value = n
		case v.kind == tokIdent && v.text == "true":
			term.value = true
		case v.kind == tokIdent && v.text == "false":
			term.value = false
		case v.kind == tokIdent && v.text == "null":
			term.value = nil
		default:
			return nil, &FilterTemplateError{Pos: v.pos, Msg: "expected a value ({field}, 'text', an integer, true, false or null), found " + v.describe()}
		}
		t.terms = append(t.terms, term)
		if len(t.terms) > MaxTemplateTerms {
			return nil, &FilterTemplateError{Pos: col.pos, Msg: fmt.Sprintf("more than %d terms", MaxTemplateTerms)}
		}
		j := next()
		switch {
		case j.kind == tokEOF:
			return t, nil
		case j.kind == tokIdent && j.text == "and":
		case j.kind == tokIdent && j.text == "or":
			return nil, &FilterTemplateError{Pos: j.pos, Msg: "only \"and\" may join terms"}
		default:
			return nil, &FilterTemplateError{Pos: j.pos, Msg: "expected \"and\" or the end, found " + j.describe()}
		}
	}
}

// MustParseFilterTemplate is ParseFilterTemplate that panics on an error,
// for templates written in the program's source.
func MustParseFilterTemplate(s string) *FilterTemplate {
	t, err := ParseFilterTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template as it was written; "" for nil.
func (t *FilterTemplate) String() string {
	if t == nil {
		return ""
	}
	return t.src
}

// MarshalText implements encoding.TextMarshaler.
func (t *FilterTemplate) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with
// ParseFilterTemplate, so that configuration decoders reject a bad
// template at start-up.
func (t *FilterTemplate) UnmarshalText(b []byte) error {
	p, err := ParseFilterTemplate(string(b))
	if err != nil {
		return err
	}
	*t = *p
	return nil
}

// Columns returns the columns the template reads, each once, in order.
func (t *FilterTemplate) Columns() []string {
	if t == nil {
		return nil
	}
	var cols []string
	for _, term := range t.terms {
		if !slices.Contains(cols, term.column) {
			cols = append(cols, term.column)
		}
	}
	return cols
}

// HasFields reports whether some term takes a user field.
func (t *FilterTemplate) HasFields() bool {
	if t == nil {
		return false
	}
	return slices.ContainsFunc(t.terms, func(term templateTerm) bool { return term.field != "" })
}

// Conditions fills the template with u's fields. A placeholder whose field
// is empty, or not valid UTF-8, gives an error wrapping ErrEmptyUserField
// (the latter cannot happen for stored users). Nil gives no conditions.
func (t *FilterTemplate) Conditions(u *User) ([]Condition, error) {
	if t == nil {
		return nil, nil
	}
	conds := make([]Condition, 0, len(t.terms))
	for _, term := range t.terms {
		c := Condition{Column: term.column, Op: term.op, Value: term.value}
		if term.field != "" {
			v := templateFields[term.field](u)
			if v == "" || !utf8.ValidString(v) {
				return nil, fmt.Errorf("%w: {%s}", ErrEmptyUserField, term.field)
			}
			c.Value = v
		}
		conds = append(conds, c)
	}
	return conds, nil
}

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokString
	tokInt
	tokField
	tokPunct
)

type templateToken struct {
	kind tokenKind
	text string // identifier, unquoted string, digits, field name or the punctuation
	pos  int    // 1-based character position
}

func (t templateToken) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end"
	case tokString:
		return "a quoted string"
	case tokInt:
		return "an integer"
	case tokField:
		return "{" + truncateText(t.text, 32) + "}"
	case tokPunct:
		r, _ := utf8.DecodeRuneInString(t.text)
		return "character " + strconv.QuoteRune(r)
	}
	return strconv.Quote(truncateText(t.text, 32))
}

// lexTemplate splits s into tokens and ends them with tokEOF.
func lexTemplate(s string) ([]templateToken, error) {
	var toks []templateToken
	pos := func(i int) int { return utf8.RuneCountInString(s[:i]) + 1 }
	isIdent := func(c byte, first bool) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case isIdent(c, true):
			j := i + 1
			for j < len(s) && isIdent(s[j], false) {
				j++
			}
			toks = append(toks, templateToken{kind: tokIdent, text: s[i:j], pos: pos(i)})
			i = j
		case c >= '0' && c <= '9' || c == '-':
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j == i+1 && c == '-' {
				return nil, &FilterTemplateError{Pos: pos(i), Msg: "\"-\" without digits"}
			}
			if j < len(s) && (isIdent(s[j], false) || s[j] == '.') {
				return nil, &FilterTemplateError{Pos: pos(i), Msg: "only integer literals are supported (no decimals, GUIDs or dates)"}
			}
			toks = append(toks, templateToken{kind: tokInt, text: s[i:j], pos: pos(i)})
			i = j
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, &FilterTemplateError{Pos: pos(i), Msg: "unterminated string"}
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				r, size := utf8.DecodeRuneInString(s[j:])
				if unicode.IsControl(r) {
					return nil, &FilterTemplateError{Pos: pos(j), Msg: "control character in a string"}
				}
				b.WriteString(s[j : j+size])
				j += size
			}
			toks = append(toks, templateToken{kind: tokString, text: b.String(), pos: pos(i)})
			i = j + 1
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, &FilterTemplateError{Pos: pos(i), Msg: "unterminated placeholder"}
			}
			toks = append(toks, templateToken{kind: tokField, text: s[i+1 : i+end], pos: pos(i)})
			i += end + 1
		default:
			// Left to the parser, which reports the first problem in order.
			r, size := utf8.DecodeRuneInString(s[i:])
			toks = append(toks, templateToken{kind: tokPunct, text: string(r), pos: pos(i)})
			i += size
		}
	}
	return append(toks, templateToken{kind: tokEOF, pos: utf8.RuneCountInString(s) + 1}), nil
}
