package policies

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// pathPattern is a compiled path pattern (see the package comment). Its zero
// value matches nothing.
type pathPattern struct {
	raw string
	// exact is set when the pattern has no wildcard: a string comparison.
	exact bool
	// prefix is set for "/x/y/**" without other wildcards: the path equals
	// base or starts with base+"/". For "/**" base is "" and every path matches.
	prefix bool
	base   string
	// segs holds the segments for the general case, "*" and "**" included.
	segs []string
}

// compilePathPattern validates p and compiles it. Patterns are written
// decoded (as CanonicalPath returns paths) and must already be canonical.
func compilePathPattern(p string) (pathPattern, error) {
	if p == "" || p[0] != '/' {
		return pathPattern{}, errors.New("must start with /")
	}
	canon, err := CanonicalPath((&url.URL{Path: p}).EscapedPath())
	if err != nil {
		return pathPattern{}, fmt.Errorf("not a valid path: %w", err)
	}
	if canon != p {
		return pathPattern{}, fmt.Errorf("not canonical, write %q", canon)
	}
	segs := strings.Split(p[1:], "/")
	wild := false
	for i, s := range segs {
		switch {
		case s == "**":
			if i != len(segs)-1 {
				return pathPattern{}, errors.New(`"**" is allowed only as the last segment`)
			}
			wild = true
		case s == "*":
			wild = true
		case strings.Contains(s, "*"):
			return pathPattern{}, errors.New(`"*" and "**" must be whole segments`)
		}
	}
	pp := pathPattern{raw: p}
	switch {
	case !wild:
		pp.exact = true
	case segs[len(segs)-1] == "**" && !strings.Contains(p[:len(p)-2], "*"):
		pp.prefix = true
		pp.base = p[:len(p)-3]
	default:
		pp.segs = segs
	}
	return pp, nil
}

// match reports whether the canonical path p matches.
func (pp *pathPattern) match(p string) bool {
	switch {
	case pp.exact:
		return p == pp.raw
	case pp.prefix:
		if !strings.HasPrefix(p, pp.base) {
			return false
		}
		rest := p[len(pp.base):]
		return rest == "" || rest[0] == '/'
	case pp.segs == nil:
		return false
	}
	if p == "" || p[0] != '/' {
		return false
	}
	rest, done := p[1:], false
	for _, want := range pp.segs {
		if want == "**" {
			return true
		}
		if done {
			return false
		}
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest, done = rest, "", true
		}
		if want == "*" {
			if seg == "" {
				return false
			}
		} else if seg != want {
			return false
		}
	}
	return done
}

// hostPattern is a compiled host pattern: an exact canonical host, or
// "*.example.com" matching exactly one more label. Its zero value matches
// nothing.
type hostPattern struct {
	exact  string
	suffix string // ".example.com" for "*.example.com"
}

func compileHostPattern(h string) (hostPattern, error) {
	name, wildcard := strings.CutPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return hostPattern{}, errors.New(`a wildcard is allowed only as "*." followed by a name`)
	}
	canon, err := CanonicalHost(name)
	if err != nil {
		return hostPattern{}, err
	}
	if canon != name {
		return hostPattern{}, fmt.Errorf("not canonical (lowercase, no port, no trailing dot), write %q", canon)
	}
	if wildcard {
		if !strings.Contains(name, ".") {
			return hostPattern{}, errors.New("a wildcard needs at least two labels after it")
		}
		return hostPattern{suffix: "." + name}, nil
	}
	return hostPattern{exact: name}, nil
}

// match reports whether the canonical host h matches.
func (hp *hostPattern) match(h string) bool {
	if hp.suffix == "" {
		return hp.exact != "" && h == hp.exact
	}
	label, ok := strings.CutSuffix(h, hp.suffix)
	return ok && label != "" && !strings.Contains(label, ".")
}

// hostSpecificity says how closely h is matched by hps: 0 no match, 1 any
// host (empty list), 2 a wildcard, 3 an exact name.
func hostSpecificity(hps []hostPattern, h string) int {
	if len(hps) == 0 {
		return 1
	}
	best := 0
	for i := range hps {
		if hps[i].match(h) {
			if hps[i].suffix == "" {
				return 3
			}
			best = 2
		}
	}
	return best
}

// matchHosts reports whether h matches one of hps; an empty list matches any host.
func matchHosts(hps []hostPattern, h string) bool {
	if len(hps) == 0 {
		return true
	}
	for i := range hps {
		if hps[i].match(h) {
			return true
		}
	}
	return false
}
