package policies

import (
	"reflect"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"go.yaml.in/yaml/v3"
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
}

// celRequest is the CEL variable "request".
type celRequest struct {
	Method string `cel:"method"`
	Host   string `cel:"host"`
	Path   string `cel:"path"`
}

// celEnv is the one CEL environment every condition compiles against. To add
// a variable (a contact, say), add its type and declaration here and a case in
// activation.ResolveName.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[celUser](),
			reflect.TypeFor[celRequest](),
			ext.ParseStructTags(true),
		),
		cel.Variable("user", cel.ObjectType("policies.celUser")),
		cel.Variable("request", cel.ObjectType("policies.celRequest")),
		ext.Strings(),
	)
})

// condition compiles a CEL condition, recording a problem and returning nil
// when it does not compile or is not a bool.
func (d *decoder) condition(n *yaml.Node, path, src string) cel.Program {
	env, err := celEnv()
	if err != nil {
		d.errorf(n, "%s: CEL environment: %v", path, err)
		return nil
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		d.errorf(n, "%s: %s", path, oneLine(iss.Err().Error()))
		return nil
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		d.errorf(n, "%s: must be a bool expression, not %s", path, ast.OutputType())
		return nil
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(celCostLimit))
	if err != nil {
		d.errorf(n, "%s: %v", path, oneLine(err.Error()))
		return nil
	}
	return prg
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
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "user":
		return &a.user, true
	case "request":
		return &a.request, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

var _ interpreter.Activation = (*activation)(nil)
