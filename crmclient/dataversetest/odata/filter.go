package odata

import (
	"strings"
)

// Filter is a parsed $filter expression. It is safe for concurrent use.
type Filter interface {
	// Match reports whether the row is returned: the expression is true
	// for it (false and null both exclude the row).
	Match(r Row) bool
}

// maxDepth bounds the nesting of parentheses, "not" and function calls.
// Microsoft.OData has a recursion limit too (800 by default); Dataverse's
// own limit is not documented, so this one is the emulator's.
const maxDepth = 64

// ParseFilter parses a $filter value (already URL-decoded) for table t.
//
// Supported (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows):
// eq ne gt ge lt le; and, or, not; parentheses
// (precedence: not, then comparisons, then and, then or, as in
// Microsoft.OData); column-to-column comparisons; contains, startswith and
// endswith, whose string argument honours the SQL wildcards % _ [] [^];
// Microsoft.Dynamics.CRM.In, NotIn, Between and NotBetween; literals:
// quoted strings (a doubled quote stands for one), unquoted or quoted GUIDs,
// null, true, false, numbers and unquoted ISO 8601 date-times. Null follows SQL: "x eq null"
// and "x ne null" test for null, any other comparison with a null value is
// unknown, so "lastname ne 'Smith'" does not return rows whose lastname is
// null (not confirmed by the documentation).
//
// Not supported, each rejected with a 400 that says "not supported by the
// emulator": the other query functions, lambda any/all, lookup traversal
// (a/b), parameter aliases (@p1).
//
// Errors are always *Error. Syntax errors are reported before unknown
// columns and type mismatches, as Microsoft.OData parses before it binds.
func ParseFilter(src string, t *EntityType) (Filter, error) {
	p := &parser{lx: lexer{src: src}, t: t.orEmpty()}
	n, err := p.parse()
	if err != nil {
		return nil, err
	}
	return filter{n}, nil
}

type filter struct{ root node }

func (f filter) Match(r Row) bool {
	v := f.root.eval(r)
	return v.t == tBool && !v.null && v.b
}

// node is a bound, typed expression.
type node interface {
	typ() vtype
	edm() string
	eval(r Row) val
}

type anyNode struct{}

func (anyNode) typ() vtype    { return tAny }
func (anyNode) edm() string   { return "Edm.Untyped" }
func (anyNode) eval(Row) val  { return unknown }
func (c colNode) typ() vtype  { return vtypeOf(c.kind) }
func (c colNode) edm() string { return c.kind.edm() }
func (c colNode) eval(r Row) val {
	return normalize(c.kind, r[c.name])
}

type colNode struct {
	name string
	kind Kind
}

type litNode struct {
	v       val
	edmName string
}

func (l litNode) typ() vtype   { return l.v.t }
func (l litNode) edm() string  { return l.edmName }
func (l litNode) eval(Row) val { return l.v }

func isNullLit(n node) bool {
	l, ok := n.(litNode)
	return ok && l.v.t == tNull
}

type boolNode struct{}

func (boolNode) typ() vtype  { return tBool }
func (boolNode) edm() string { return "Edm.Boolean" }

type cmpNode struct {
	boolNode
	op           string
	l, r         node
	lNull, rNull bool // that side is the null literal
}

func (c cmpNode) eval(r Row) val {
	lv, rv := c.l.eval(r), c.r.eval(r)
	if c.lNull || c.rNull {
		other := lv
		if c.lNull {
			other = rv
		}
		switch c.op {
		case "eq":
			return boolVal(other.null)
		case "ne":
			return boolVal(!other.null)
		}
		return unknown
	}
	if lv.null || rv.null || lv.t != rv.t {
		return unknown
	}
	n := compareVals(lv, rv)
	switch c.op {
	case "eq":
		return boolVal(n == 0)
	case "ne":
		return boolVal(n != 0)
	case "gt":
		return boolVal(n > 0)
	case "ge":
		return boolVal(n >= 0)
	case "lt":
		return boolVal(n < 0)
	}
	return boolVal(n <= 0) // le
}

type logicNode struct {
	boolNode
	and  bool
	l, r node
}

// eval uses three-valued (Kleene) logic.
func (n logicNode) eval(r Row) val {
	a, b := n.l.eval(r), n.r.eval(r)
	known := func(v val, want bool) bool { return !v.null && v.b == want }
	if n.and {
		switch {
		case known(a, false) || known(b, false):
			return boolVal(false)
		case a.null || b.null:
			return unknown
		}
		return boolVal(true)
	}
	switch {
	case known(a, true) || known(b, true):
		return boolVal(true)
	case a.null || b.null:
		return unknown
	}
	return boolVal(false)
}

type notNode struct {
	boolNode
	x node
}

func (n notNode) eval(r Row) val {
	v := n.x.eval(r)
	if v.null {
		return unknown
	}
	return boolVal(!v.b)
}

type likeNode struct {
	boolNode
	arg node
	pat []likeTok
}

func (n likeNode) eval(r Row) val {
	v := n.arg.eval(r)
	if v.null {
		return unknown
	}
	return boolVal(likeMatch(n.pat, v.s))
}

// inNode is Microsoft.Dynamics.CRM.In / NotIn.
type inNode struct {
	boolNode
	col    colNode
	vals   []val
	negate bool
}

func (n inNode) eval(r Row) val {
	v := n.col.eval(r)
	if v.null {
		return unknown // SQL: NULL IN (...) and NULL NOT IN (...) are unknown
	}
	for _, w := range n.vals {
		if compareVals(v, w) == 0 {
			return boolVal(!n.negate)
		}
	}
	return boolVal(n.negate)
}

// betweenNode is Microsoft.Dynamics.CRM.Between / NotBetween; both bounds
// are inclusive, as in SQL.
type betweenNode struct {
	boolNode
	col    colNode
	lo, hi val
	negate bool
}

func (n betweenNode) eval(r Row) val {
	v := n.col.eval(r)
	if v.null {
		return unknown
	}
	in := compareVals(v, n.lo) >= 0 && compareVals(v, n.hi) <= 0
	return boolVal(in != n.negate)
}

// hasQueryFunction reports whether n uses a Dataverse query function.
func hasQueryFunction(n node) bool {
	switch x := n.(type) {
	case inNode, betweenNode:
		return true
	case logicNode:
		return hasQueryFunction(x.l) || hasQueryFunction(x.r)
	case notNode:
		return hasQueryFunction(x.x)
	case cmpNode:
		return hasQueryFunction(x.l) || hasQueryFunction(x.r)
	}
	return false
}

// parser is a recursive-descent parser that binds as it goes. The first
// binding error (unknown column, type mismatch) is kept in bindErr and
// parsing continues, so that a syntax error later in the text wins.
type parser struct {
	lx      lexer
	tok     token
	t       *EntityType
	depth   int
	bindErr *Error
}

func (p *parser) parse() (node, *Error) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tkEOF {
		return nil, p.errCloseParenOrOperator(p.tok.pos)
	}
	if p.bindErr != nil {
		return nil, p.bindErr
	}
	if n.typ() != tBool {
		// Not confirmed: Microsoft.OData's text, as remembered.
		return nil, badRequest("The $filter expression must evaluate to a single boolean value.")
	}
	return n, nil
}

func (p *parser) advance() *Error {
	tok, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = tok
	return nil
}

func (p *parser) keyword(k string) bool {
	return p.tok.kind == tkIdent && p.tok.text == k
}

// bind records a binding error and returns a placeholder node.
func (p *parser) bind(err *Error) node {
	if p.bindErr == nil {
		p.bindErr = err
	}
	return anyNode{}
}

func (p *parser) enter() *Error {
	p.depth++
	if p.depth > maxDepth {
		return badRequest("The $filter expression is nested more than %d levels deep; the emulator does not allow that.", maxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// The following messages are Microsoft.OData's, as remembered; not
// confirmed against Dataverse.
func (p *parser) errExpressionExpected(off int) *Error {
	return badRequest("Expression expected at position %d in '%s'.", pos16(p.lx.src, off), p.lx.src)
}

func (p *parser) errCloseParenOrOperator(off int) *Error {
	return badRequest("')' or operator expected at position %d in '%s'.", pos16(p.lx.src, off), p.lx.src)
}

func (p *parser) errCloseParenOrComma(off int) *Error {
	return badRequest("')' or ',' expected at position %d in '%s'.", pos16(p.lx.src, off), p.lx.src)
}

func errIncompatible(l, r, op string) *Error {
	return badRequest("A binary operator with incompatible types was detected. Found operand types '%s' and '%s' for operator kind '%s'.", l, r, op)
}

var opKinds = map[string]string{
	"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
	"lt": "LessThan", "le": "LessThanOrEqual",
}

func (p *parser) parseOr() (node, *Error) {
	l, err := p.parseAnd()
	for err == nil && p.keyword("or") {
		if err = p.advance(); err != nil {
			break
		}
		var r node
		if r, err = p.parseAnd(); err != nil {
			break
		}
		l = p.logic(false, l, r)
	}
	return l, err
}

func (p *parser) parseAnd() (node, *Error) {
	l, err := p.parseComparison()
	for err == nil && p.keyword("and") {
		if err = p.advance(); err != nil {
			break
		}
		var r node
		if r, err = p.parseComparison(); err != nil {
			break
		}
		l = p.logic(true, l, r)
	}
	return l, err
}

func (p *parser) logic(and bool, l, r node) node {
	if l.typ() == tAny || r.typ() == tAny {
		return anyNode{}
	}
	if l.typ() != tBool || r.typ() != tBool {
		op := "Or"
		if and {
			op = "And"
		}
		return p.bind(errIncompatible(l.edm(), r.edm(), op))
	}
	return logicNode{and: and, l: l, r: r}
}

func (p *parser) parseComparison() (node, *Error) {
	l, err := p.parseUnary()
	for err == nil && p.tok.kind == tkIdent && opKinds[p.tok.text] != "" {
		op := p.tok.text
		if err = p.advance(); err != nil {
			break
		}
		var r node
		if r, err = p.parseUnary(); err != nil {
			break
		}
		l = p.compare(op, l, r)
	}
	return l, err
}

func (p *parser) compare(op string, l, r node) node {
	lt, rt := l.typ(), r.typ()
	if lt == tAny || rt == tAny {
		return anyNode{}
	}
	ln, rn := isNullLit(l), isNullLit(r)
	if !ln && !rn {
		// Quoted GUIDs are accepted in practice (third-party observation,
		// not documented).
		l, r = quotedGUID(l, r), quotedGUID(r, l)
		if l.typ() != r.typ() {
			return p.bind(errIncompatible(l.edm(), r.edm(), opKinds[op]))
		}
	}
	return cmpNode{op: op, l: l, r: r, lNull: ln, rNull: rn}
}

// quotedGUID returns n as a GUID literal when it is a string literal holding
// a GUID and other is GUID-typed; otherwise n unchanged.
func quotedGUID(n, other node) node {
	lit, ok := n.(litNode)
	if ok && lit.v.t == tString && other.typ() == tGuid && isGUID(lit.v.s) {
		return litNode{v: val{t: tGuid, s: strings.ToLower(lit.v.s)}, edmName: "Edm.Guid"}
	}
	return n
}

func (p *parser) parseUnary() (node, *Error) {
	if !p.keyword("not") {
		return p.parsePrimary()
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	switch {
	case x.typ() == tAny:
		return x, nil
	case x.typ() != tBool:
		// Not confirmed: Microsoft.OData's text, as remembered. Note that
		// "not a eq b" means "(not a) eq b", as in Microsoft.OData.
		return p.bind(badRequest("A unary operator with an incompatible type was detected. Found operand type '%s' for operator kind 'Not'.", x.edm())), nil
	case hasQueryFunction(x):
		// Documented text (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/use-web-api-functions);
		// the code is not.
		return p.bind(badRequest("Not operator along with the Custom Named Condition operators is not allowed")), nil
	}
	return notNode{x: x}, nil
}

func (p *parser) parsePrimary() (node, *Error) {
	tok := p.tok
	var lit litNode
	switch tok.kind {
	case tkLParen:
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tkRParen {
			return nil, p.errCloseParenOrOperator(p.tok.pos)
		}
		return x, p.advance()
	case tkString:
		lit = litNode{v: val{t: tString, s: tok.text}, edmName: "Edm.String"}
	case tkGuid:
		lit = litNode{v: val{t: tGuid, s: tok.text}, edmName: "Edm.Guid"}
	case tkNumber:
		edm := "Edm.Decimal"
		if tok.int {
			edm = "Edm.Int32"
			if tok.num > 1<<31-1 || tok.num < -(1<<31) {
				edm = "Edm.Int64"
			}
		}
		lit = litNode{v: val{t: tNumber, f: tok.num}, edmName: edm}
	case tkDateTime:
		lit = litNode{v: val{t: tDateTime, tm: tok.tm}, edmName: "Edm.DateTimeOffset"}
	case tkAlias:
		return nil, errUnsupported("The parameter alias '" + tok.text + "'")
	case tkIdent:
		switch tok.text {
		case "null":
			lit = litNode{v: val{t: tNull, null: true}, edmName: "Edm.Untyped"}
		case "true", "false":
			lit = litNode{v: boolVal(tok.text == "true"), edmName: "Edm.Boolean"}
		default:
			if err := p.advance(); err != nil {
				return nil, err
			}
			switch p.tok.kind {
			case tkLParen:
				return p.parseCall(tok.text)
			case tkSlash:
				if _, ok := p.t.column(tok.text); !ok && !p.t.navigation(tok.text) {
					return nil, errUnknownProperty(tok.text, p.t)
				}
				return nil, errUnsupported("Lookup traversal and lambda operators (any, all) after '" + tok.text + "/'")
			}
			return p.column(tok.text), nil
		}
	default:
		return nil, p.errExpressionExpected(tok.pos)
	}
	return lit, p.advance()
}

func (p *parser) column(name string) node {
	if k, ok := p.t.column(name); ok {
		return colNode{name: name, kind: k}
	}
	if p.t.navigation(name) {
		return p.bind(errUnsupported("Filtering on the navigation property '" + name + "'"))
	}
	return p.bind(errUnknownProperty(name, p.t))
}

const crmPrefix = "Microsoft.Dynamics.CRM."

// parseCall parses a function call; p.tok is its "(".
func (p *parser) parseCall(name string) (node, *Error) {
	switch {
	case strings.HasPrefix(name, crmPrefix):
		return p.parseQueryFunction(name)
	case name == "contains" || name == "startswith" || name == "endswith":
		return p.parseStringFunction(name)
	}
	return nil, errUnsupported("The function '" + name + "'")
}

func (p *parser) parseStringFunction(name string) (node, *Error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	a, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tkComma {
		return nil, p.errCloseParenOrComma(p.tok.pos)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	b, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tkRParen {
		return nil, p.errCloseParenOrComma(p.tok.pos)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if a.typ() == tAny || b.typ() == tAny {
		return anyNode{}, nil
	}
	lit, isLit := b.(litNode)
	if a.typ() != tString || b.typ() != tString {
		// Not confirmed: Microsoft.OData's text, as remembered.
		return p.bind(badRequest("No function signature for the function with name '%s' matches the specified arguments. The function signatures considered are: %s(Edm.String Nullable=true, Edm.String Nullable=true).", name, name)), nil
	}
	if !isLit {
		return p.bind(errUnsupported("A '" + name + "' whose second argument is not a string literal")), nil
	}
	// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows:
	// % _ [] [^] act as SQL wildcards inside these
	// functions' values (they translate to SQL LIKE); eq does not.
	pat := compileLike(lit.v.s)
	if name != "startswith" {
		pat = append([]likeTok{{kind: likeAny}}, pat...)
	}
	if name != "endswith" {
		pat = append(pat, likeTok{kind: likeAny})
	}
	return likeNode{arg: a, pat: pat}, nil
}

// queryParam is one Name=value argument of a Dataverse query function.
type queryParam struct {
	scalar  string
	isArray bool
	array   []string
}

func (p *parser) parseQueryFunction(name string) (node, *Error) {
	fn := strings.TrimPrefix(name, crmPrefix)
	switch fn {
	case "In", "NotIn", "Between", "NotBetween":
	default:
		return nil, errUnsupported("The query function '" + name + "'")
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	params := map[string]queryParam{}
	for p.tok.kind != tkRParen {
		if p.tok.kind != tkIdent {
			return nil, p.lx.errSyntax(p.tok.pos)
		}
		pname := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tkEquals {
			return nil, p.lx.errSyntax(p.tok.pos)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		var qp queryParam
		switch p.tok.kind {
		case tkLBracket:
			arr, err := p.lx.array()
			if err != nil {
				return nil, err
			}
			qp = queryParam{isArray: true, array: arr}
		case tkString, tkNumber, tkGuid, tkDateTime, tkIdent:
			qp = queryParam{scalar: p.tok.text}
		default:
			return nil, p.errExpressionExpected(p.tok.pos)
		}
		if _, dup := params[pname]; dup {
			return nil, badRequest("The parameter '%s' of '%s' is given more than once.", pname, name)
		}
		params[pname] = qp
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind == tkComma {
			if err := p.advance(); err != nil {
				return nil, err
			}
			continue
		}
		if p.tok.kind != tkRParen {
			return nil, p.errCloseParenOrComma(p.tok.pos)
		}
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return p.bindQueryFunction(name, fn, params), nil
}

// bindQueryFunction checks the parameters of In, NotIn, Between and
// NotBetween. Its messages are the emulator's own; not confirmed.
func (p *parser) bindQueryFunction(name, fn string, params map[string]queryParam) node {
	pn, okName := params["PropertyName"]
	pv, okValues := params["PropertyValues"]
	if len(params) != 2 || !okName || pn.isArray || !okValues || !pv.isArray {
		return p.bind(badRequest("The query function '%s' takes exactly the parameters PropertyName='<column>' and PropertyValues=[...].", name))
	}
	kind, ok := p.t.column(pn.scalar)
	if !ok {
		return p.bind(errUnknownProperty(pn.scalar, p.t))
	}
	vals := make([]val, 0, len(pv.array))
	for _, raw := range pv.array {
		v, ok := convert(kind, raw)
		if !ok {
			return p.bind(badRequest("The value '%s' given to '%s' is not a valid '%s' for the property '%s'.", raw, name, kind.edm(), pn.scalar))
		}
		vals = append(vals, v)
	}
	col := colNode{name: pn.scalar, kind: kind}
	switch fn {
	case "In", "NotIn":
		if len(vals) == 0 {
			return p.bind(badRequest("The query function '%s' needs at least one value in PropertyValues.", name))
		}
		return inNode{col: col, vals: vals, negate: fn == "NotIn"}
	}
	if len(vals) != 2 {
		return p.bind(badRequest("The query function '%s' needs exactly two values in PropertyValues.", name))
	}
	return betweenNode{col: col, lo: vals[0], hi: vals[1], negate: fn == "NotBetween"}
}

// convert parses the text of a PropertyValues element as a value of kind k.
func convert(k Kind, raw string) (val, bool) {
	t := vtypeOf(k)
	switch t {
	case tString:
		return val{t: t, s: raw}, true
	case tGuid:
		if isGUID(raw) {
			return val{t: t, s: strings.ToLower(raw)}, true
		}
	case tNumber:
		if reNumber.FindString(raw) == raw {
			lx := lexer{src: raw}
			if tok, err := lx.next(); err == nil && tok.kind == tkNumber {
				return val{t: t, f: tok.num}, true
			}
		}
	case tBool:
		if raw == "true" || raw == "false" {
			return boolVal(raw == "true"), true
		}
	case tDateTime:
		if tm, ok := parseDateTime(raw); ok {
			return val{t: t, tm: tm}, true
		}
	}
	return val{}, false
}
