package policies

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrAmbiguousPath is wrapped by every error CanonicalPath returns. A request
// whose path fails canonicalisation must be answered with 400 Bad Request and
// never matched against a rule or proxied: the gateway and the upstream could
// read such a path differently. Test with errors.Is; the wrapped message names
// the reason and, where it can, the byte offset, never the path itself (it may
// hold control characters meant for a log).
var ErrAmbiguousPath = errors.New("policies: ambiguous path")

// ErrInvalidHost is wrapped by every error CanonicalHost returns. A request
// whose Host fails canonicalisation should be answered with 400 Bad Request.
var ErrInvalidHost = errors.New("policies: invalid host")

// ambiguous wraps ErrAmbiguousPath with a reason and, when offset is not
// negative, the byte offset in the path where it was found.
func ambiguous(reason string, offset int) error {
	if offset < 0 {
		return fmt.Errorf("%w: %s", ErrAmbiguousPath, reason)
	}
	return fmt.Errorf("%w: %s at byte %d", ErrAmbiguousPath, reason, offset)
}

// CanonicalPath decodes and cleans an escaped request path (what
// url.URL.EscapedPath returns) into the one form that is matched against the
// policy and sent upstream. Proxy the returned path, not the original: set the
// outgoing url.URL's Path to it and clear RawPath, so that the upstream sees
// exactly the path the decision was made on.
//
// The input must start with "/". It is percent-decoded strictly; every error
// wraps ErrAmbiguousPath. These are rejected, raw or percent-encoded:
//   - a malformed escape ("%", "%4", "%zz", "%u002e");
//   - an encoded slash (%2F) or any backslash: upstreams disagree on whether
//     they separate segments;
//   - ";", which Tomcat, Jetty and others read as the start of path parameters
//     ("/admin;x=y", "/..;/admin");
//   - "?" and "#" inside the path (%3F, %23 in any case, or a raw "#" that a
//     client left in the request line): an upstream that decodes the path
//     and parses it again as a URL would end the path there, so a route
//     pattern such as "/files/*/public" could match "/files/x%3F/public"
//     while the upstream serves "/files/x";
//   - control characters: bytes below 0x20, DEL (0x7f) and the C1 range
//     U+0080 to U+009F;
//   - double encoding: a decoded "%" followed by two hex digits ("%252e"),
//     which an upstream that decodes twice would turn into something else;
//   - bytes that do not decode to valid UTF-8, including overlong forms such
//     as %c0%ae;
//   - a segment made only of dots and spaces other than "." and ".." ("...",
//     ". .", ".. "), which some platforms treat as "." or "..";
//   - a ".." that would climb above the root.
//
// Cleaning follows RFC 3986 section 5.2.4 (remove_dot_segments), as browsers
// do: repeated slashes are merged, "." and ".." segments are resolved after
// decoding (so "%2e%2E" is ".."), and the path keeps a trailing slash when it
// had one or when its last segment was "." or "..". So "/a/." and "/a/b/.."
// both become "/a/", "/a//" becomes "/a/" and "/a/b" stays "/a/b". This
// differs from path.Clean, which drops the trailing slash.
//
// The result is idempotent: escaping it again (url.URL{Path: p}.EscapedPath())
// and passing it through CanonicalPath yields the same string.
//
// CanonicalPath does not fold letter case, Unicode normalisation forms or
// trailing dots and spaces inside a segment. An upstream that does (IIS and
// other Windows servers: "/ADMIN", "/admin./") may serve the same resource for
// paths the policy treats as different; end such policies with a deny rule
// rather than a public catch-all.
func CanonicalPath(escapedPath string) (string, error) {
	if escapedPath == "" || escapedPath[0] != '/' {
		return "", ambiguous("path does not start with /", 0)
	}
	if isClean(escapedPath) {
		return escapedPath, nil
	}
	decoded, err := decodePath(escapedPath)
	if err != nil {
		return "", err
	}
	return removeDotSegments(decoded)
}

// isClean reports whether p (starting with "/") is printable ASCII with no
// escapes, no characters rejected by CanonicalPath, no empty segment except a
// trailing one and no dot segment, so that CanonicalPath(p) == p.
func isClean(p string) bool {
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c < 0x21 || c > 0x7e || c == '%' || c == '\\' || c == ';' || c == '?' || c == '#' {
				return false
			}
			if c != '/' {
				continue
			}
		}
		seg := p[segStart:i]
		if seg == "" && i < len(p) {
			return false // "//"
		}
		if seg != "" && strings.Trim(seg, ".") == "" {
			return false // ".", ".." or "..."
		}
		segStart = i + 1
	}
	return true
}

// decodePath percent-decodes p and rejects every byte class listed on
// CanonicalPath. Offsets in errors refer to the escaped input.
func decodePath(p string) (string, error) {
	buf := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c, at := p[i], i
		encoded := false
		if c == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", ambiguous("malformed percent escape", at)
			}
			c = unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			encoded = true
		}
		switch {
		case c == '/' && encoded:
			return "", ambiguous("encoded slash", at)
		case c == '\\':
			return "", ambiguous("backslash", at)
		case c == ';':
			return "", ambiguous("semicolon (path parameter)", at)
		case c == '?' || c == '#':
			return "", ambiguous("query or fragment delimiter inside the path", at)
		case c < 0x20 || c == 0x7f:
			return "", ambiguous("control character", at)
		}
		buf = append(buf, c)
	}
	// A decoded "%" followed by two hex digits, however the digits were
	// written ("%25%32%65"), is double encoding too.
	for i := 0; i+2 < len(buf); i++ {
		if buf[i] == '%' && isHex(buf[i+1]) && isHex(buf[i+2]) {
			return "", ambiguous("double percent-encoding", -1)
		}
	}
	for i := 0; i < len(buf); {
		r, size := utf8.DecodeRune(buf[i:])
		if r == utf8.RuneError && size <= 1 {
			return "", ambiguous("invalid UTF-8", -1)
		}
		if r >= 0x80 && r <= 0x9f {
			return "", ambiguous("control character", -1)
		}
		i += size
	}
	return string(buf), nil
}

// removeDotSegments merges slashes and resolves dot segments of a decoded
// path that starts with "/", keeping a trailing slash (RFC 3986 5.2.4).
func removeDotSegments(p string) (string, error) {
	out := make([]byte, 0, len(p))
	trailing := false
	for start := 1; start <= len(p); {
		end := strings.IndexByte(p[start:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += start
		}
		seg := p[start:end]
		switch {
		case seg == "" || seg == ".":
			trailing = true
		case seg == "..":
			if len(out) == 0 {
				return "", ambiguous(`".." above the root`, -1)
			}
			out = out[:lastSlash(out)]
			trailing = true
		case strings.Trim(seg, ". ") == "":
			return "", ambiguous("segment of only dots and spaces", -1)
		default:
			out = append(out, '/')
			out = append(out, seg...)
			trailing = false
		}
		start = end + 1
	}
	if len(out) == 0 || trailing {
		out = append(out, '/')
	}
	return string(out), nil
}

func lastSlash(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '/' {
			return i
		}
	}
	return 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// CanonicalHost returns the form of a Host header (or URL host) that policies
// match against: ASCII lowercase, without the port, without one trailing dot,
// and for IP literals the address in its standard text form without brackets
// ("[::FFFF:1]:8443" becomes "::ffff:1", "10.0.0.1:80" becomes "10.0.0.1").
//
// Names must be ASCII (internationalised names arrive as "xn--" punycode):
// letters, digits, "-" and "_", in dot-separated labels of 1 to 63 bytes, at
// most 253 bytes in all. A port, when present, must be decimal and at most
// 65535. Everything else, including an empty host, userinfo, IPv6 zones and
// non-ASCII letters that Unicode would fold to ASCII (the Kelvin sign), is
// rejected with an error wrapping ErrInvalidHost.
func CanonicalHost(host string) (string, error) {
	if host == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidHost)
	}
	name := host
	if host[0] == '[' {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", fmt.Errorf("%w: unterminated IPv6 literal", ErrInvalidHost)
		}
		if err := checkPort(host[end+1:]); err != nil {
			return "", err
		}
		addr, err := netip.ParseAddr(host[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", fmt.Errorf("%w: bad IPv6 literal", ErrInvalidHost)
		}
		return addr.String(), nil
	}
	if strings.Count(host, ":") > 1 {
		// A bare IPv6 address, as some clients send it.
		addr, err := netip.ParseAddr(host)
		if err != nil || addr.Zone() != "" {
			return "", fmt.Errorf("%w: bad IPv6 address", ErrInvalidHost)
		}
		return addr.String(), nil
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		if err := checkPort(host[i:]); err != nil {
			return "", err
		}
		name = host[:i]
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return "", fmt.Errorf("%w: bad length", ErrInvalidHost)
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("%w: empty label", ErrInvalidHost)
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
		default:
			return "", fmt.Errorf("%w: character %q not allowed", ErrInvalidHost, c)
		}
		label++
		if label > 63 {
			return "", fmt.Errorf("%w: label longer than 63 bytes", ErrInvalidHost)
		}
	}
	if label == 0 {
		return "", fmt.Errorf("%w: empty label", ErrInvalidHost)
	}
	// Only ASCII is left, so ToLower cannot map a non-ASCII letter to ASCII.
	return strings.ToLower(name), nil
}

// checkPort validates the part after the host: empty, or ":" and a port
// (RFC 3986 allows an empty port).
func checkPort(s string) error {
	if s == "" {
		return nil
	}
	if s[0] != ':' {
		return fmt.Errorf("%w: junk after host", ErrInvalidHost)
	}
	s = s[1:]
	if s == "" {
		return nil
	}
	if len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return fmt.Errorf("%w: bad port", ErrInvalidHost)
	}
	if n, err := strconv.Atoi(s); err != nil || n > 65535 {
		return fmt.Errorf("%w: bad port", ErrInvalidHost)
	}
	return nil
}
