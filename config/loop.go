package config

import (
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// UpstreamLoop reports the setting naming one of the gateway's own
// addresses that upstream u would send proxied requests back to:
// CRMGATE_LISTEN or CRMGATE_OPS_LISTEN (u's port is the listener's and its
// host is the listener's host, or, for a listener on every interface, a
// loopback, unspecified or local address or localhost), or
// CRMGATE_PUBLIC_URL (u names the gateway's public host and port). It
// returns "" when u is not one of them. Such an upstream would proxy every
// request to the gateway itself, which proxies it again, until the
// connections run out.
//
// local lists this machine's interface addresses (from net.InterfaceAddrs);
// nil means loopback and unspecified addresses only. Host names other than
// localhost are not resolved: a name that resolves to the gateway itself is
// not found.
func (c *Config) UpstreamLoop(u *url.URL, local []netip.Addr) string {
	uhost, uport := hostPort(u.Host, u.Scheme)
	if uhost == "" {
		return ""
	}
	for _, l := range []struct{ name, addr string }{{"CRMGATE_LISTEN", c.Listen}, {"CRMGATE_OPS_LISTEN", c.OpsListen}} {
		lhost, lport, err := net.SplitHostPort(l.addr)
		if err != nil || lport != uport {
			continue
		}
		if sameHost(lhost, uhost, local) {
			return l.name
		}
	}
	if pub, err := url.Parse(c.PublicURL); err == nil && pub.Host != "" {
		phost, pport := hostPort(pub.Host, pub.Scheme)
		if pport == uport && strings.EqualFold(phost, uhost) {
			return "CRMGATE_PUBLIC_URL"
		}
	}
	return ""
}

// hostPort splits hostport, giving the scheme's default port when it has
// none; the host comes back without brackets.
func hostPort(hostport, scheme string) (host, port string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), ""
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(scheme)]
	}
	return host, port
}

// sameHost reports whether a connection to uhost reaches a listener bound
// to lhost.
func sameHost(lhost, uhost string, local []netip.Addr) bool {
	la, lerr := netip.ParseAddr(lhost)
	ua, uerr := netip.ParseAddr(uhost)
	isLocalhost := strings.EqualFold(uhost, "localhost") || strings.HasSuffix(strings.ToLower(uhost), ".localhost")
	if lhost == "" || lerr == nil && la.IsUnspecified() {
		// A listener on every interface: any address of this machine.
		if isLocalhost {
			return true
		}
		if uerr != nil {
			return false
		}
		ua = ua.Unmap()
		if ua.IsLoopback() || ua.IsUnspecified() {
			return true
		}
		for _, a := range local {
			if a.Unmap() == ua {
				return true
			}
		}
		return false
	}
	if lerr != nil { // a listener on a host name
		return strings.EqualFold(lhost, uhost)
	}
	if isLocalhost {
		return la.Unmap().IsLoopback()
	}
	return uerr == nil && la.Unmap() == ua.Unmap()
}
