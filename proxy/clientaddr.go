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
