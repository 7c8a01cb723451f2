package policies

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/crmgate/crmgate/authz/permissions"
)

// Policy is a compiled policy file: the upstreams requests are proxied to and
// the ordered routes that decide whether they may be. It is immutable after
// Parse and safe for concurrent use. A zero Policy has no routes, so Route
// returns nil for every request, which callers must treat as deny.
type Policy struct {
	// Routes in file order; the first that matches a request decides.
	Routes []*Route
	// Upstreams in file order.
	Upstreams []*Upstream
	// Dataverse is the optional dataverse section; its zero value
	// configures nothing.
	Dataverse Dataverse
	// Permissions are the grants of the permissions section: what each
	// local role may do in the REST API and the admin console. The zero
	// value (no section) grants every permission to the admin role and
	// none to any other.
	Permissions permissions.Grants
	// Console is the optional console section; its zero value configures
	// the admin console's defaults.
	Console Console
}

// Upstream is an application requests are proxied to. Build it with Parse;
// an Upstream built by hand has no compiled host patterns and its hosts never
// match.
type Upstream struct {
	// Name is unique within the policy.
	Name string
	// URL is the upstream's base URL: http or https, with a host, maybe a base
	// path, never a query, fragment or userinfo.
	URL *url.URL
	// Hosts are the canonical host patterns this upstream serves; empty means
	// any host.
	Hosts []string
	// PathPrefix is the canonical request path prefix this upstream serves,
	// matched on segment boundaries: "/" (the default) or a path without a
	// trailing slash such as "/api", which matches "/api" and "/api/x" but not
	// "/apix".
	PathPrefix string
	// Audience is the JWT "aud" for requests proxied here; it defaults to the
	// URL's origin (scheme://host[:port], lowercase).
	Audience string

	hosts []hostPattern
}

// Access says what a route requires.
type Access string

// The route access kinds. The zero value is not valid and Decide treats it as
// AccessDeny.
const (
	// AccessPublic allows everyone, signed in or not.
	AccessPublic Access = "public"
	// AccessAuthenticated allows signed-in users that hold one of the route's
	// roles (if it lists any) and satisfy its condition (if it has one).
	AccessAuthenticated Access = "authenticated"
	// AccessBound is AccessAuthenticated for users bound to a Dataverse
	// contact only: a signed-in user without a contact is forbidden.
	AccessBound Access = "bound"
	// AccessDeny refuses everyone.
	AccessDeny Access = "deny"
)

// Route is one compiled rule of a policy file. Build it with Parse: a Route
// built by hand has no compiled patterns, matches no request, and its Decide
// never evaluates a condition.
type Route struct {
	// Name is unique within the policy and safe as a metrics label.
	Name string
	// Access is what the route requires.
	Access Access
	// Roles, when not empty, are the roles of which a user must hold at least
	// one (exact, case-sensitive comparison).
	Roles []string
	// Condition is the source of the route's CEL condition; empty means none.
	Condition string
	// Audience overrides the upstream's JWT audience; empty means use the
	// upstream's (see AudienceFor).
	Audience string
	// Methods are the upper-case methods the route applies to; empty means
	// any method.
	Methods []string
	// Hosts are the canonical host patterns the route applies to; empty means
	// any host.
	Hosts []string
	// Paths are the canonical path patterns the route applies to; never empty.
	Paths []string
	// ContactColumns is the route's allow-list of contact columns (Dataverse
	// logical names) sent upstream, in file order: only these appear in the
	// JWT's contact.columns claim and as X-Current-User-Contact-* headers.
	// Empty (the default) sends no column. The contact's id, logical name and
	// name are not columns: the header contract in README.md, Identity
	// headers for upstream apps, sends them for every bound user.
	ContactColumns []string
	// AllowCrossOrigin lets cross-origin state-changing requests through
	// (the file's "cross_origin: allow"), for legacy pages that receive
	// other sites' POST callbacks: payment return pages, SAML assertion
	// consumers. Parse allows it on public routes only. False (the default)
	// means the gateway refuses them (403) before any route decides; the
	// gateway proxies the requests it lets through as anonymous.
	AllowCrossOrigin bool
	// ContactHeaders pairs each of ContactColumns, in the same order, with
	// its header name (see ContactHeaderName). Parse guarantees the header
	// names are distinct and never X-Current-User-Contact-Id.
	ContactHeaders []ContactHeader

	hosts            []hostPattern
	paths            []pathPattern
	program          cel.Program
	conditionColumns []string
}

// LoadFile reads and compiles the policy file at path. Errors are as for
// Parse, naming the file by its base name.
func LoadFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	return Parse(filepath.Base(path), data)
}

// Parse compiles a policy file. name is used only in error messages. It
// reports every problem it finds, not only the first: the error is a
// *ParseError or, for several problems, an errors.Join of them, one per line,
// each naming the file, the line and the reason ("policies: policy.yaml:12:
// routes[2].access: must be public, authenticated or deny"). Find them with
// errors.As.
func Parse(name string, data []byte) (*Policy, error) {
	d := &decoder{file: name}
	p := d.decodeFile(data)
	if err := d.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// Route returns the first route that applies to the request, or nil when none
// does: the request must then be denied. host must come from CanonicalHost (or
// be empty when the request had none) and path from CanonicalPath; anything
// else may match the wrong route. method is compared ignoring ASCII case,
// because some frameworks upper-case the method before routing on it.
func (p *Policy) Route(host, method, path string) *Route {
	for _, r := range p.Routes {
		if r.matches(host, method, path) {
			return r
		}
	}
	return nil
}

func (r *Route) matches(host, method, path string) bool {
	if len(r.Methods) > 0 && !hasMethod(r.Methods, method) {
		return false
	}
	if !matchHosts(r.hosts, host) {
		return false
	}
	for i := range r.paths {
		if r.paths[i].match(path) {
			return true
		}
	}
	return false
}

func hasMethod(methods []string, m string) bool {
	for _, want := range methods {
		if strings.EqualFold(want, m) {
			return true
		}
	}
	return false
}

// Upstream returns the upstream that serves the request: the one whose hosts
// match host most specifically (an exact name before a wildcard before an
// upstream without hosts, as web servers choose virtual hosts), then with the
// longest path prefix that matches path on a segment boundary, the first in
// the file on a tie. It returns nil when none does. host and path must be
// canonical, as for Route.
func (p *Policy) Upstream(host, path string) *Upstream {
	var best *Upstream
	bestHost := 0
	for _, u := range p.Upstreams {
		spec := hostSpecificity(u.hosts, host)
		if spec == 0 || !hasPathPrefix(path, u.PathPrefix) {
			continue
		}
		if best == nil || spec > bestHost || (spec == bestHost && len(u.PathPrefix) > len(best.PathPrefix)) {
			best, bestHost = u, spec
		}
	}
	return best
}

// hasPathPrefix reports whether path is prefix or lies below it. prefix is
// "/" or has no trailing slash.
func hasPathPrefix(path, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(path, "/")
	}
	if prefix == "" || !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// NamesHost reports whether host (canonical, as CanonicalHost returns it)
// matches one of the host patterns an upstream or a route names. Upstreams
// and routes without hosts name no host: they serve any host, but that does
// not make every host one of the gateway's.
func (p *Policy) NamesHost(host string) bool {
	for _, u := range p.Upstreams {
		if len(u.hosts) > 0 && matchHosts(u.hosts, host) {
			return true
		}
	}
	for _, r := range p.Routes {
		if len(r.hosts) > 0 && matchHosts(r.hosts, host) {
			return true
		}
	}
	return false
}

// ServesHost reports whether some upstream serves host (canonical, as
// CanonicalHost returns it): one of its host patterns matches, or it lists
// no hosts and so serves every host. A request for a host no upstream
// serves cannot be proxied anywhere.
func (p *Policy) ServesHost(host string) bool {
	for _, u := range p.Upstreams {
		if matchHosts(u.hosts, host) {
			return true
		}
	}
	return false
}

// AudienceFor returns the JWT audience for a request matched by r and proxied
// to u: the route's Audience if set, else the upstream's. u may be nil (for
// example in forward-auth mode), in which case the result may be empty.
func (r *Route) AudienceFor(u *Upstream) string {
	if r.Audience != "" || u == nil {
		return r.Audience
	}
	return u.Audience
}
