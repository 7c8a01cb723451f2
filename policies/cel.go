package policies

import (
	"reflect"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"go.yaml.in/yaml/v3"

	"github.com/crmgate/crmgate/dataverse"
)

// celCostLimit bounds the work one condition evaluation may do; beyond it the
// evaluation fails and the route forbids the request.
const celCostLimit = 1_000_000

// celUser is the CEL variable "user". Field names in CEL come from the cel tags.
type celUser struct {
	ID            string   `cel:"id"`
	Username      string   `cel:"username"`
	Email         string   `cel:"email"`
	EmailVerified bool     `cel:"email_verified"`
	Name          string   `cel:"name"`
	Roles         []string `cel:"roles"`
	AuthMethod    string   `cel:"auth_method"`
	Authenticated bool     `cel:"authenticated"`
	Bound         bool     `cel:"bound"`
}

// celContact is the CEL variable "contact": the user's bound contact, or an
// empty one (empty strings, no columns) when the user is not bound. Columns is
// map(string, dyn) in CEL; reading a missing column is a runtime error, which
// forbids, so conditions fail closed for unbound users and unfetched columns.
type celContact struct {
	ID          string         `cel:"id"`
	LogicalName string         `cel:"logicalname"`
	Name        string         `cel:"name"`
	Columns     map[string]any `cel:"columns"`
}

// celRequest is the CEL variable "request".
type celRequest struct {
	Method string `cel:"method"`
	Host   string `cel:"host"`
	Path   string `cel:"path"`
}

// celEnv is the one CEL environment every condition compiles against. To add
// a variable, add its type and declaration here and a case in
// activation.ResolveName.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[celUser](),
			reflect.TypeFor[celRequest](),
			reflect.TypeFor[celContact](),
			ext.ParseStructTags(true),
		),
		cel.Variable("user", cel.ObjectType("policies.celUser")),
		cel.Variable("request", cel.ObjectType("policies.celRequest")),
		cel.Variable("contact", cel.ObjectType("policies.celContact")),
		ext.Strings(),
	)
})

// condition compiles a CEL condition, recording a problem and returning a nil
// program when it does not compile, is not a bool or names an invalid contact
// column. It also returns the contact columns the condition names literally
// (see conditionColumns), sorted and unique.
func (d *decoder) condition(n *yaml.Node, path, src string) (cel.Program, []string) {
	env, err := celEnv()
	if err != nil {
		d.errorf(n, "%s: CEL environment: %v", path, err)
		return nil, nil
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		d.errorf(n, "%s: %s", path, oneLine(iss.Err().Error()))
		return nil, nil
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		d.errorf(n, "%s: must be a bool expression, not %s", path, ast.OutputType())
		return nil, nil
	}
	cols := conditionColumns(ast.NativeRep())
	for _, c := range cols {
		if err := dataverse.ValidContactColumn(c); err != nil {
			d.errorf(n, "%s: contact column: %v", path, err)
			return nil, nil
		}
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(celCostLimit))
	if err != nil {
		d.errorf(n, "%s: %v", path, oneLine(err.Error()))
		return nil, nil
	}
	return prg, cols
}

// conditionColumns returns the contact columns a checked condition names
// literally, sorted and unique: contact.columns.x and has(contact.columns.x),
// contact.columns["x"], and "x" in contact.columns. Other uses (a computed
// key, a comprehension over the map) name no column: they see only the
// columns the gateway fetched for other reasons.
func conditionColumns(a *celast.AST) []string {
	var cols []string
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.SelectKind:
			if sel := e.AsSelect(); isContactColumns(sel.Operand()) {
				cols = append(cols, sel.FieldName())
			}
		case celast.CallKind:
			call := e.AsCall()
			args := call.Args()
			if len(args) != 2 {
				return
			}
			var key celast.Expr
			switch call.FunctionName() {
			case operators.Index:
				if isContactColumns(args[0]) {
					key = args[1]
				}
			case operators.In:
				if isContactColumns(args[1]) {
					key = args[0]
				}
			}
			if key != nil && key.Kind() == celast.LiteralKind {
				if s, ok := key.AsLiteral().Value().(string); ok {
					cols = append(cols, s)
				}
			}
		}
	}))
	slices.Sort(cols)
	return slices.Compact(cols)
}

// isContactColumns reports whether e is the expression contact.columns.
func isContactColumns(e celast.Expr) bool {
	if e.Kind() != celast.SelectKind {
		return false
	}
	sel := e.AsSelect()
	op := sel.Operand()
	return sel.FieldName() == "columns" && op.Kind() == celast.IdentKind && op.AsIdent() == "contact"
}

// oneLine keeps the first line of a CEL message (the rest is a source excerpt
// with a caret) and names the position inside the expression as such.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	if rest, ok := strings.CutPrefix(first, "ERROR: <input>:"); ok {
		return "CEL error at expression line:column " + rest
	}
	return first
}

// activation resolves the CEL variables of one evaluation without building a map.
type activation struct {
	user    celUser
	request celRequest
	contact celContact
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "user":
		return &a.user, true
	case "request":
		return &a.request, true
	case "contact":
		return &a.contact, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

var _ interpreter.Activation = (*activation)(nil)
