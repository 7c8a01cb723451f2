package binding

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

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
var templateFields = map[string]func(*authz.User) string{
	TemplateFieldUsername:  func(u *authz.User) string { return u.Username },
	TemplateFieldEmail:     func(u *authz.User) string { return u.Email },
	TemplateFieldFirstName: func(u *authz.User) string { return u.FirstName },
	TemplateFieldLastName:  func(u *authz.User) string { return u.LastName },
	TemplateFieldID:        func(u *authz.User) string { return u.ID },
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
		if err := dataverse.ValidContactColumn(col.text); err != nil {
			return nil, &FilterTemplateError{Pos: col.pos, Msg: err.Error()}
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
func (t *FilterTemplate) Conditions(u *authz.User) ([]dataverse.Condition, error) {
	if t == nil {
		return nil, nil
	}
	conds := make([]dataverse.Condition, 0, len(t.terms))
	for _, term := range t.terms {
		c := dataverse.Condition{Column: term.column, Op: term.op, Value: term.value}
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
