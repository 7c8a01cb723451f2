package odata

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type tokKind int

const (
	tkEOF tokKind = iota
	tkIdent
	tkAlias
	tkString
	tkNumber
	tkGuid
	tkDateTime
	tkLParen
	tkRParen
	tkComma
	tkEquals
	tkSlash
	tkLBracket
)

// token is one lexical element of a $filter expression.
type token struct {
	kind tokKind
	pos  int    // byte offset of the first character
	text string // raw text; the unescaped value for tkString
	num  float64
	int  bool // the number has no fraction or exponent
	tm   time.Time
}

// lexer reads tokens on demand, so (as in Microsoft.OData) an error is
// reported for the leftmost problem the parser reaches.
type lexer struct {
	src string
	pos int
}

var (
	reNumber   = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`)
	reDateTime = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})`)
	reDate     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}`)
)

var punctuation = map[byte]tokKind{'(': tkLParen, ')': tkRParen, ',': tkComma, '=': tkEquals, '/': tkSlash, '[': tkLBracket}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// isGUID reports whether s is a GUID in 8-4-4-4-12 hex form.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// parseDateTime parses an OData DateTimeOffset literal (seconds optional) or
// a bare date, which is taken as midnight UTC. Comparing a date-only literal
// with a date-time column is an emulator choice, not confirmed.
func parseDateTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if tm, err := time.Parse(layout, s); err == nil {
			return tm, true
		}
	}
	return time.Time{}, false
}

func (lx *lexer) skipSpace() {
	for lx.pos < len(lx.src) && isSpace(lx.src[lx.pos]) {
		lx.pos++
	}
}

// errUnterminated is the documented error for a string literal with no
// closing quote. The position is where the lexer stopped, the end of the
// text, which matches the documented example ("position 21" for the
// 21-character filter lastname eq 'O'Bryan':
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows).
func (lx *lexer) errUnterminated() *Error {
	return badRequest("There is an unterminated literal at position %d in '%s'.", pos16(lx.src, len(lx.src)), lx.src)
}

// errSyntax, errInvalidChar and errUnrecognized use Microsoft.OData's
// message texts as remembered; not confirmed against Dataverse.
func (lx *lexer) errSyntax(off int) *Error {
	return badRequest("Syntax error at position %d in '%s'.", pos16(lx.src, off), lx.src)
}

func (lx *lexer) errInvalidChar(off int) *Error {
	return badRequest("Syntax error: character '%s' is not valid at position %d in '%s'.", quoteRune(lx.src, off), pos16(lx.src, off), lx.src)
}

func (lx *lexer) errUnrecognized(edm, lit string, off int) *Error {
	return badRequest("Unrecognized '%s' literal '%s' at '%d' in '%s'.", edm, lit, pos16(lx.src, off), lx.src)
}

// quoted reads a single-quoted literal whose opening quote is at start; a
// doubled quote stands for one quote.
func (lx *lexer) quoted(start int) (string, *Error) {
	var b strings.Builder
	i := start + 1
	for {
		j := strings.IndexByte(lx.src[i:], '\'')
		if j < 0 {
			return "", lx.errUnterminated()
		}
		b.WriteString(lx.src[i : i+j])
		i += j + 1
		if i < len(lx.src) && lx.src[i] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		lx.pos = i
		return b.String(), nil
	}
}

// boundary reports whether a literal ending at off is properly delimited.
func (lx *lexer) boundary(off int) bool {
	return off >= len(lx.src) || !isIdentPart(lx.src[off]) && lx.src[off] != '.' && lx.src[off] != '\'' && lx.src[off] != '-' && lx.src[off] != ':'
}

func (lx *lexer) next() (token, *Error) {
	lx.skipSpace()
	start := lx.pos
	if start >= len(lx.src) {
		return token{kind: tkEOF, pos: start}, nil
	}
	c := lx.src[start]
	if k, ok := punctuation[c]; ok {
		lx.pos++
		return token{kind: k, pos: start, text: string(c)}, nil
	}
	rest := lx.src[start:]
	if c == '\'' {
		s, err := lx.quoted(start)
		if err != nil {
			return token{}, err
		}
		return token{kind: tkString, pos: start, text: s}, nil
	}
	if len(rest) >= 36 && isGUID(rest[:36]) && lx.boundary(start+36) {
		lx.pos = start + 36
		return token{kind: tkGuid, pos: start, text: strings.ToLower(rest[:36])}, nil
	}
	if c >= '0' && c <= '9' || c == '-' && len(rest) > 1 && rest[1] >= '0' && rest[1] <= '9' {
		lit := reDateTime.FindString(rest)
		if lit == "" && c != '-' {
			if d := reDate.FindString(rest); d != "" && lx.boundary(start+len(d)) {
				lit = d
			}
		}
		if lit != "" {
			end := start + len(lit)
			if !lx.boundary(end) {
				return token{}, lx.errSyntax(end)
			}
			tm, ok := parseDateTime(lit)
			if !ok {
				return token{}, lx.errUnrecognized("Edm.DateTimeOffset", lit, start)
			}
			lx.pos = end
			return token{kind: tkDateTime, pos: start, text: lit, tm: tm}, nil
		}
		lit = reNumber.FindString(rest)
		end := start + len(lit)
		if !lx.boundary(end) {
			return token{}, lx.errSyntax(end)
		}
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return token{}, lx.errUnrecognized("Edm.Decimal", lit, start)
		}
		lx.pos = end
		return token{kind: tkNumber, pos: start, text: lit, num: f, int: !strings.ContainsAny(lit, ".eE")}, nil
	}
	if c == '@' && len(rest) > 1 && isIdentStart(rest[1]) {
		end := start + 1 + identLen(rest[1:])
		lx.pos = end
		return token{kind: tkAlias, pos: start, text: lx.src[start:end]}, nil
	}
	if isIdentStart(c) {
		end := start + identLen(rest)
		// Dotted names (Microsoft.Dynamics.CRM.In) are one token.
		for end+1 < len(lx.src) && lx.src[end] == '.' && isIdentStart(lx.src[end+1]) {
			end += 1 + identLen(lx.src[end+1:])
		}
		if end < len(lx.src) && lx.src[end] == '\'' {
			// An identifier directly followed by a quote is a typed literal
			// prefix (duration'...', binary'...') to Microsoft.OData, which
			// is why O'Bryan gives "unterminated literal" rather than a
			// syntax error. Dataverse columns have no such literals.
			if _, err := lx.quoted(end); err != nil {
				return token{}, err
			}
			return token{}, lx.errSyntax(start)
		}
		lx.pos = end
		return token{kind: tkIdent, pos: start, text: lx.src[start:end]}, nil
	}
	return token{}, lx.errInvalidChar(start)
}

func identLen(s string) int {
	n := 0
	for n < len(s) && isIdentPart(s[n]) {
		n++
	}
	return n
}

// array reads the elements of a JSON-style array whose "[" has just been
// consumed, up to and including the closing "]". Elements may be JSON
// strings ("O'Brian", documented in
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows),
// single-quoted OData strings, or bare words (numbers, GUIDs, true/false).
// The raw text is returned; the caller converts it to the column's type.
func (lx *lexer) array() ([]string, *Error) {
	var out []string
	lx.skipSpace()
	if lx.pos < len(lx.src) && lx.src[lx.pos] == ']' {
		lx.pos++
		return out, nil
	}
	for {
		lx.skipSpace()
		if lx.pos >= len(lx.src) {
			return nil, lx.errSyntax(lx.pos)
		}
		start := lx.pos
		switch c := lx.src[start]; c {
		case '"':
			i := start + 1
			for i < len(lx.src) && lx.src[i] != '"' {
				if lx.src[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(lx.src) {
				return nil, lx.errUnterminated()
			}
			var s string
			if err := json.Unmarshal([]byte(lx.src[start:i+1]), &s); err != nil {
				return nil, lx.errSyntax(start)
			}
			out = append(out, s)
			lx.pos = i + 1
		case '\'':
			s, err := lx.quoted(start)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		default:
			i := start
			for i < len(lx.src) && !isSpace(lx.src[i]) && lx.src[i] != ',' && lx.src[i] != ']' {
				i++
			}
			if i == start {
				return nil, lx.errSyntax(start)
			}
			out = append(out, lx.src[start:i])
			lx.pos = i
		}
		lx.skipSpace()
		if lx.pos < len(lx.src) && lx.src[lx.pos] == ',' {
			lx.pos++
			continue
		}
		if lx.pos < len(lx.src) && lx.src[lx.pos] == ']' {
			lx.pos++
			return out, nil
		}
		return nil, lx.errSyntax(lx.pos)
	}
}
