package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParseError is one problem in a policy file, found by Parse or LoadFile.
type ParseError struct {
	// File is the name given to Parse (the base name for LoadFile).
	File string
	// Line is 1-based; 0 when the problem has no line (an empty file).
	Line int
	// Msg is the reason, starting with the field it concerns when there is one.
	Msg string
}

// Error formats the problem as "policies: file:line: msg".
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("policies: %s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("policies: %s: %s", e.File, e.Msg)
}

// maxErrors bounds how many problems one Parse reports.
const maxErrors = 50

// decoder walks the yaml.Node tree of a policy file, collecting problems.
// Every known field is listed in a fields table, so adding a field (or a
// top-level section) is one entry; anything else is an unknown field.
type decoder struct {
	file string
	errs []error
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &ParseError{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) err() error {
	switch len(d.errs) {
	case 0:
		return nil
	case 1:
		return d.errs[0]
	}
	return errors.Join(d.errs...)
}

// fields maps the keys a mapping may hold to the functions that decode their
// values.
type fields map[string]func(key, val *yaml.Node)

// mapping decodes the mapping n at path with fs, rejecting unknown and
// repeated keys. A null node counts as an empty mapping.
func (d *decoder) mapping(n *yaml.Node, path string, fs fields) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: must be a mapping", displayPath(path))
		return
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%s: keys must be strings", displayPath(path))
			continue
		}
		name := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "%s: repeated (first at line %d)", name, first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fs[k.Value]
		if !ok {
			d.errorf(k, "%s: unknown field", name)
			continue
		}
		f(k, v)
	}
}

// sequence calls item for each element of the sequence n at path. A null node
// counts as an empty sequence.
func (d *decoder) sequence(n *yaml.Node, path string, item func(i int, n *yaml.Node)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s: must be a list", path)
		return
	}
	for i, c := range n.Content {
		item(i, resolve(c))
	}
}

// str decodes a scalar; ok is false (and a problem recorded) for anything
// else, including null.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n, "%s: must be a string", path)
		return "", false
	}
	return n.Value, true
}

// strList decodes a list of scalars; null is an empty list.
func (d *decoder) strList(n *yaml.Node, path string) []string {
	var out []string
	d.sequence(n, path, func(i int, c *yaml.Node) {
		if s, ok := d.str(c, fmt.Sprintf("%s[%d]", path, i)); ok {
			out = append(out, s)
		}
	})
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func displayPath(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

// decodeFile decodes and compiles a whole policy file.
func (d *decoder) decodeFile(data []byte) *Policy {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(nil, "empty policy file")
		} else {
			d.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "only one YAML document is allowed")
		return nil
	} else if !errors.Is(err, io.EOF) {
		d.yamlError(err)
		return nil
	}
	p := &Policy{}
	root := doc.Content[0]
	sawRoutes := false
	d.mapping(root, "", fields{
		"upstreams": func(_, v *yaml.Node) {
			names := map[string]int{}
			d.sequence(v, "upstreams", func(i int, n *yaml.Node) {
				if u := d.upstream(n, fmt.Sprintf("upstreams[%d]", i), names); u != nil {
					p.Upstreams = append(p.Upstreams, u)
				}
			})
		},
		"routes": func(k, v *yaml.Node) {
			sawRoutes = true
			names := map[string]int{}
			n := 0
			d.sequence(v, "routes", func(i int, c *yaml.Node) {
				n++
				if r := d.route(c, fmt.Sprintf("routes[%d]", i), names); r != nil {
					p.Routes = append(p.Routes, r)
				}
			})
			if n == 0 {
				d.errorf(k, "routes: at least one route is required")
			}
		},
		"dataverse": func(_, v *yaml.Node) {
			p.Dataverse = d.dataverse(v, "dataverse")
		},
		"permissions": func(_, v *yaml.Node) {
			p.Permissions = d.permissionsSection(v)
		},
		"console": func(_, v *yaml.Node) { p.Console = d.console(v, "console") },
	})
	if !sawRoutes && len(d.errs) == 0 {
		d.errorf(root, "routes: at least one route is required")
	}
	return p
}

// yamlError records a syntax error from the YAML parser, moving its line
// number ("yaml: line 3: ...") into the ParseError.
func (d *decoder) yamlError(err error) {
	msg := err.Error()
	line := 0
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if l, convErr := strconv.Atoi(num); convErr == nil {
				line, msg = l, after
			}
		}
	}
	if len(d.errs) < maxErrors {
		d.errs = append(d.errs, &ParseError{File: d.file, Line: line, Msg: msg})
	}
}

// checkName validates a route or upstream name and its uniqueness; names
// maps names seen so far to their lines.
func (d *decoder) checkName(n *yaml.Node, path, name string, names map[string]int) bool {
	if !validName(name) {
		d.errorf(n, "%s: %q must be 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit", path, name)
		return false
	}
	if first, dup := names[name]; dup {
		d.errorf(n, "%s: duplicate name %q (first at line %d)", path, name, first)
		return false
	}
	names[name] = n.Line
	return true
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '_' || c == '-' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// upstream decodes one upstream; it returns nil when it has problems.
func (d *decoder) upstream(n *yaml.Node, path string, names map[string]int) *Upstream {
	before := len(d.errs)
	u := &Upstream{PathPrefix: "/"}
	var nameNode, urlNode *yaml.Node
	d.mapping(n, path, fields{
		"name": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".name"); ok && d.checkName(v, path+".name", s, names) {
				u.Name, nameNode = s, v
			}
		},
		"url": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".url"); ok {
				urlNode = v
				u.URL = d.upstreamURL(v, path+".url", s)
			}
		},
		"hosts": func(_, v *yaml.Node) {
			u.Hosts, u.hosts = d.hosts(v, path+".hosts")
		},
		"path_prefix": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".path_prefix"); ok {
				if err := checkPathPrefix(s); err != nil {
					d.errorf(v, "%s.path_prefix: %q %v", path, s, err)
				} else {
					u.PathPrefix = s
				}
			}
		},
		"audience": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".audience"); ok && d.checkAudience(v, path+".audience", s) {
				u.Audience = s
			}
		},
	})
	if nameNode == nil && len(d.errs) == before {
		d.errorf(n, "%s: name is required", path)
	}
	if urlNode == nil && len(d.errs) == before {
		d.errorf(n, "%s: url is required", path)
	}
	if len(d.errs) != before || u.URL == nil {
		return nil
	}
	if u.Audience == "" {
		u.Audience = u.URL.Scheme + "://" + strings.ToLower(u.URL.Host)
	}
	return u
}

func (d *decoder) upstreamURL(n *yaml.Node, path, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		d.errorf(n, "%s: %v", path, err)
		return nil
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		d.errorf(n, "%s: %q must be an http or https URL", path, raw)
	case u.Opaque != "" || u.Host == "":
		d.errorf(n, "%s: %q has no host", path, raw)
	case u.User != nil:
		d.errorf(n, "%s: must not hold credentials", path)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		d.errorf(n, "%s: %q must not have a query or fragment", path, raw)
	default:
		if _, err := CanonicalHost(u.Host); err != nil {
			d.errorf(n, "%s: %q: %v", path, raw, err)
			return nil
		}
		if u.Path != "" {
			canon, err := CanonicalPath(u.EscapedPath())
			if err != nil {
				d.errorf(n, "%s: %q base path: %v", path, raw, err)
				return nil
			}
			if canon != u.Path {
				d.errorf(n, "%s: %q base path is not canonical, write %q", path, raw, canon)
				return nil
			}
		}
		return u
	}
	return nil
}

func checkPathPrefix(s string) error {
	if strings.Contains(s, "*") {
		return errors.New("is a prefix, not a pattern: no wildcards")
	}
	if _, err := compilePathPattern(s); err != nil {
		return err
	}
	if s != "/" && strings.HasSuffix(s, "/") {
		return fmt.Errorf("must not end with /, write %q", strings.TrimSuffix(s, "/"))
	}
	return nil
}

func (d *decoder) checkAudience(n *yaml.Node, path, s string) bool {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		d.errorf(n, "%s: must be non-empty without spaces or control characters", path)
		return false
	}
	return true
}

func (d *decoder) hosts(n *yaml.Node, path string) ([]string, []hostPattern) {
	var names []string
	var pats []hostPattern
	d.sequence(n, path, func(i int, c *yaml.Node) {
		p := fmt.Sprintf("%s[%d]", path, i)
		s, ok := d.str(c, p)
		if !ok {
			return
		}
		hp, err := compileHostPattern(s)
		if err != nil {
			d.errorf(c, "%s: %q: %v", p, s, err)
			return
		}
		names, pats = append(names, s), append(pats, hp)
	})
	return names, pats
}

// route decodes and compiles one route; it returns nil when it has problems.
func (d *decoder) route(n *yaml.Node, path string, names map[string]int) *Route {
	before := len(d.errs)
	r := &Route{}
	var nameNode, accessNode, pathsNode, rolesNode, condNode, columnsNode, crossNode *yaml.Node
	d.mapping(n, path, fields{
		"name": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".name"); ok && d.checkName(v, path+".name", s, names) {
				r.Name, nameNode = s, v
			}
		},
		"hosts": func(_, v *yaml.Node) {
			r.Hosts, r.hosts = d.hosts(v, path+".hosts")
		},
		"paths": func(_, v *yaml.Node) {
			pathsNode = v
			d.sequence(v, path+".paths", func(i int, c *yaml.Node) {
				p := fmt.Sprintf("%s.paths[%d]", path, i)
				s, ok := d.str(c, p)
				if !ok {
					return
				}
				pp, err := compilePathPattern(s)
				if err != nil {
					d.errorf(c, "%s: %q %v", p, s, err)
					return
				}
				r.Paths, r.paths = append(r.Paths, s), append(r.paths, pp)
			})
		},
		"methods": func(_, v *yaml.Node) {
			for i, m := range d.strList(v, path+".methods") {
				if m == "*" {
					d.errorf(v, "%s.methods[%d]: omit methods to match any method", path, i)
					continue
				}
				if !isToken(m) {
					d.errorf(v, "%s.methods[%d]: %q is not an HTTP method", path, i, m)
					continue
				}
				r.Methods = append(r.Methods, strings.ToUpper(m))
			}
		},
		"access": func(_, v *yaml.Node) {
			accessNode = v
			if s, ok := d.str(v, path+".access"); ok {
				switch a := Access(s); a {
				case AccessPublic, AccessAuthenticated, AccessBound, AccessDeny:
					r.Access = a
				default:
					d.errorf(v, "%s.access: %q must be public, authenticated, bound or deny", path, s)
				}
			}
		},
		"roles": func(_, v *yaml.Node) {
			rolesNode = v
			for i, role := range d.strList(v, path+".roles") {
				if role == "" || strings.TrimSpace(role) != role || strings.ContainsAny(role, ",") ||
					strings.IndexFunc(role, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
					d.errorf(v, "%s.roles[%d]: %q must be non-empty, without commas, control characters or surrounding spaces", path, i, role)
					continue
				}
				r.Roles = append(r.Roles, role)
			}
		},
		"condition": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".condition"); ok {
				condNode = v
				r.Condition = s
				r.program, r.conditionColumns = d.condition(v, path+".condition", s)
			}
		},
		"cross_origin": func(_, v *yaml.Node) {
			crossNode = v
			if s, ok := d.str(v, path+".cross_origin"); ok {
				switch s {
				case "allow":
					r.AllowCrossOrigin = true
				case "refuse":
				default:
					d.errorf(v, "%s.cross_origin: %q must be allow or refuse", path, s)
				}
			}
		},
		"contact_columns": func(_, v *yaml.Node) {
			columnsNode = v
			r.ContactColumns, r.ContactHeaders = d.contactColumns(v, path+".contact_columns")
		},
		"audience": func(_, v *yaml.Node) {
			if s, ok := d.str(v, path+".audience"); ok && d.checkAudience(v, path+".audience", s) {
				r.Audience = s
			}
		},
	})
	if len(d.errs) != before {
		return nil
	}
	switch {
	case nameNode == nil:
		d.errorf(n, "%s: name is required", path)
	case pathsNode == nil || len(r.Paths) == 0:
		d.errorf(n, "%s (%s): paths is required and must not be empty", path, r.Name)
	case accessNode == nil:
		d.errorf(n, "%s (%s): access is required", path, r.Name)
	case r.Access == AccessPublic && len(r.Roles) > 0:
		d.errorf(rolesNode, "%s (%s): roles cannot be used with access public", path, r.Name)
	case r.Access == AccessPublic && condNode != nil:
		d.errorf(condNode, "%s (%s): a condition cannot be used with access public", path, r.Name)
	case r.Access == AccessDeny && len(r.Roles) > 0:
		d.errorf(rolesNode, "%s (%s): roles cannot be used with access deny", path, r.Name)
	case r.Access == AccessDeny && condNode != nil:
		d.errorf(condNode, "%s (%s): a condition cannot be used with access deny (deny is unconditional; put an authenticated route with the condition before it)", path, r.Name)
	case r.AllowCrossOrigin && r.Access != AccessPublic:
		d.errorf(crossNode, "%s (%s): cross_origin: allow is only for access public (another site's request must never act for a signed-in user)", path, r.Name)
	case r.Access == AccessDeny && len(r.ContactColumns) > 0:
		d.errorf(columnsNode, "%s (%s): contact_columns cannot be used with access deny (nothing is proxied)", path, r.Name)
	default:
		return r
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token, the syntax of a method.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
