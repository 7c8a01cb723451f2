package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddrs finds the client address of a request. X-Forwarded-For is
// believed only when the TCP peer is a trusted proxy, and then only up to the
// first untrusted hop from the right; anything further left was written by
// the client and could be anything.
type clientAddrs struct {
	trusted []netip.Prefix
}

func newClientAddrs(cidrs []string) (clientAddrs, error) {
	var c clientAddrs
	for _, s := range cidrs {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			c.trusted = append(c.trusted, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return c, err
		}
		c.trusted = append(c.trusted, netip.PrefixFrom(a, a.BitLen()))
	}
	return c, nil
}

func (c clientAddrs) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peer returns the TCP peer address of r.
func peer(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// of returns the client address of r and whether the peer is a trusted proxy
// (in which case its X-Forwarded-* headers may be passed on).
func (c clientAddrs) of(r *http.Request) (netip.Addr, bool) {
	p := peer(r)
	if len(c.trusted) == 0 || !c.isTrusted(p) {
		return p, false
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	addr := p
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = a.Unmap()
		if !c.isTrusted(addr) {
			break
		}
	}
	return addr, true
}

// peerTrusted reports whether the TCP peer of r is a trusted proxy, without
// reading any header.
func (c clientAddrs) peerTrusted(r *http.Request) bool {
	return len(c.trusted) > 0 && c.isTrusted(peer(r))
}

// headerClass is what the gateway does with a client-sent header name.
type headerClass uint8

const (
	headerPass       headerClass = iota // an ordinary header
	headerIdentity                      // X-Current-User, X-Current-User-*: always removed
	headerOverride                      // URL and method overrides: always removed
	headerForwarding                    // forwarding and client-IP headers: removed unless the peer is a trusted proxy
	headerDecided                       // a header the gateway sets or decides on: kept, but an underscored spelling is removed
)

// headerClasses maps lowercase header names to their class. X-Forwarded-*
// (every suffix) and X-Current-User-* are matched by prefix in
// classifyHeader.
//
// Sources: the client-IP headers of the CDNs and proxies that set them
// (Cloudflare https://developers.cloudflare.com/fundamentals/reference/http-headers/,
// Fastly, Akamai, Azure Front Door, Envoy), the URL-override headers that
// IIS URL Rewrite, Symfony and Zend honour (X-Original-URL, X-Rewrite-URL:
// https://symfony.com/blog/cve-2018-14773-remove-support-for-legacy-and-risky-http-headers),
// the method overrides of Laravel, Rails, ASP.NET and Express, and "Proxy",
// which CGI turns into HTTP_PROXY (https://httpoxy.org).
var headerClasses = map[string]headerClass{
	// Forwarding and client-IP headers.
	"forwarded":                headerForwarding,
	"x-real-ip":                headerForwarding,
	"true-client-ip":           headerForwarding,
	"x-client-ip":              headerForwarding,
	"client-ip":                headerForwarding,
	"x-client-addr":            headerForwarding,
	"cf-connecting-ip":         headerForwarding,
	"cf-connecting-ipv6":       headerForwarding,
	"cf-pseudo-ipv4":           headerForwarding,
	"fastly-client-ip":         headerForwarding,
	"akamai-client-ip":         headerForwarding,
	"x-cluster-client-ip":      headerForwarding,
	"x-originating-ip":         headerForwarding,
	"x-remote-ip":              headerForwarding,
	"x-remote-addr":            headerForwarding,
	"x-proxyuser-ip":           headerForwarding,
	"x-envoy-external-address": headerForwarding,
	"x-azure-clientip":         headerForwarding,
	"x-azure-socketip":         headerForwarding,
	"x-appengine-user-ip":      headerForwarding,
	"x-host":                   headerForwarding,
	"x-original-host":          headerForwarding,

	// Identity headers of other gateways, which an upstream moved behind
	// crmgate may still believe: oauth2-proxy
	// (https://oauth2-proxy.github.io/oauth2-proxy/configuration/overview),
	// Authelia's Remote-*, Grafana's X-WEBAUTH-USER, Apache's X-Remote-User.
	// X-Auth-Request-*, X-MS-Client-Principal* (Azure App Service
	// authentication) and X-MS-Token-* are matched by prefix.
	"x-forwarded-user":               headerIdentity,
	"x-forwarded-email":              headerIdentity,
	"x-forwarded-preferred-username": headerIdentity,
	"x-forwarded-groups":             headerIdentity,
	"x-forwarded-access-token":       headerIdentity,
	"remote-user":                    headerIdentity,
	"remote-email":                   headerIdentity,
	"remote-name":                    headerIdentity,
	"remote-groups":                  headerIdentity,
	"x-remote-user":                  headerIdentity,
	"x-webauth-user":                 headerIdentity,

	// URL and method overrides.
	"x-original-url":          headerOverride,
	"x-original-uri":          headerOverride,
	"x-original-path":         headerOverride,
	"x-original-method":       headerOverride,
	"x-rewrite-url":           headerOverride,
	"x-rewrite-uri":           headerOverride,
	"x-override-url":          headerOverride,
	"x-override-uri":          headerOverride,
	"x-request-uri":           headerOverride,
	"x-http-destinationurl":   headerOverride,
	"x-proxy-url":             headerOverride,
	"x-envoy-original-path":   headerOverride,
	"x-http-method-override":  headerOverride,
	"x-http-method":           headerOverride,
	"x-method-override":       headerOverride,
	"x-original-http-command": headerOverride,
	"proxy":                   headerOverride,

	// Headers the gateway sets, strips from or decides on.
	"cookie":              headerDecided,
	"authorization":       headerDecided,
	"proxy-authorization": headerDecided,
	"host":                headerDecided,
	"x-request-id":        headerDecided,
	"origin":              headerDecided,
	"referer":             headerDecided,
	"sec-fetch-site":      headerDecided,
	"sec-fetch-mode":      headerDecided,
	"sec-fetch-dest":      headerDecided,
	"sec-fetch-user":      headerDecided,
	"x-requested-with":    headerDecided,
	"accept":              headerDecided,
	"content-type":        headerDecided,
	"content-length":      headerDecided,
	"transfer-encoding":   headerDecided,
	"connection":          headerDecided,
	"upgrade":             headerDecided,
	"te":                  headerDecided,
	"trailer":             headerDecided,
}

// classifyHeader returns the class of a header name, folding ASCII case and
// reading '_' as '-', as CGI, PHP and several Java and Python servers do when
// they turn header names into variables (HTTP_X_FORWARDED_FOR). It does not
// allocate for names up to 64 bytes.
func classifyHeader(name string) headerClass {
	var buf [64]byte
	var folded []byte
	if len(name) <= len(buf) {
		folded = buf[:len(name)]
	} else {
		folded = make([]byte, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		folded[i] = c
	}
	if c, ok := headerClasses[string(folded)]; ok {
		return c
	}
	const ident = "x-current-user"
	switch {
	case hasFoldedPrefix(folded, ident) && (len(folded) == len(ident) || folded[len(ident)] == '-'),
		hasFoldedPrefix(folded, "x-auth-request-"), hasFoldedPrefix(folded, "x-ms-client-principal"),
		hasFoldedPrefix(folded, "x-ms-token-"):
		return headerIdentity
	case hasFoldedPrefix(folded, "x-forwarded"):
		return headerForwarding // X-Forwarded-For, -Host, -Proto, -Uri, -Prefix, ... and X-ForwardedFor
	}
	return headerPass
}

func hasFoldedPrefix(folded []byte, prefix string) bool {
	return len(folded) >= len(prefix) && string(folded[:len(prefix)]) == prefix
}

// clientHeaderRules say which client-sent headers survive step 1 of the
// pipeline. The zero value is the safe default: no trusted peer, and every
// header name containing '_' removed.
type clientHeaderRules struct {
	// trustedPeer keeps forwarding headers (X-Forwarded-*, Forwarded and the
	// client-IP headers): the TCP peer is a trusted proxy that wrote them.
	trustedPeer bool
	// keepUnderscores keeps header names containing '_' unless they fold
	// onto a header the gateway sets, strips or decides on
	// (Options.UnderscoresInHeaders).
	keepUnderscores bool
}

// strip removes from h every header the rules do not let through.
func (rules clientHeaderRules) strip(h http.Header) {
	for k := range h {
		underscored := strings.IndexByte(k, '_') >= 0
		if underscored && !rules.keepUnderscores {
			delete(h, k)
			continue
		}
		if !underscored && !mayStrip(k) {
			continue // most browser headers: Accept, Cookie, User-Agent, Sec-Fetch-*
		}
		switch classifyHeader(k) {
		case headerIdentity, headerOverride:
			delete(h, k)
		case headerForwarding:
			if underscored || !rules.trustedPeer {
				delete(h, k)
			}
		case headerDecided:
			if underscored {
				delete(h, k)
			}
		}
	}
}

// stripPairs holds the first two bytes (folded) of every header name that
// strip may remove when it has no '_': bit b&63 of stripPairs[a] is set for
// a name starting with a, b. A name whose pair is not set is an ordinary
// header and skips classifyHeader (the hot path's common case). Collisions
// of b&63 only send more names to classifyHeader, which decides.
var stripPairs = func() (p [128]uint64) {
	add := func(name string) {
		if len(name) >= 2 { // shorter names are always classified (mayStrip)
			p[name[0]&127] |= 1 << (name[1] & 63)
		}
	}
	for name, class := range headerClasses {
		if class != headerDecided {
			add(name)
		}
	}
	for _, prefix := range []string{"x-current-user", "x-auth-request-", "x-ms-client-principal", "x-ms-token-", "x-forwarded"} {
		add(prefix)
	}
	return p
}()

// mayStrip reports whether strip must classify name, which has no '_':
// false only for names that fold to no class strip acts on without an
// underscore. Names shorter than two bytes or outside ASCII are classified.
func mayStrip(name string) bool {
	if len(name) < 2 || name[0] >= 128 || name[1] >= 128 {
		return true
	}
	a, b := name[0], name[1]
	if 'A' <= a && a <= 'Z' {
		a += 'a' - 'A'
	}
	if 'A' <= b && b <= 'Z' {
		b += 'a' - 'A'
	}
	return stripPairs[a]&(1<<(b&63)) != 0
}
