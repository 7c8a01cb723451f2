// Package smtpurl parses crmgate's outgoing mail server URL
// (CRMGATE_SMTP_URL). It is a leaf, so that the configuration checks the URL
// with the rule the mail sender dials it with.
package smtpurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Security is how the connection to the mail server is protected.
type Security int

// The connection securities. The zero value is Implicit, the safest.
const (
	// Implicit is TLS from the first byte (smtps://, RFC 8314 section 3.3).
	Implicit Security = iota
	// StartTLS is a plain connection upgraded with STARTTLS before
	// anything else is sent (smtp://, RFC 3207); a server that does not
	// offer STARTTLS is refused, so credentials never go out in clear.
	StartTLS
	// None is a plain connection without TLS (smtp://...?tls=none), only
	// for a local relay and never with credentials. Dangerous: anyone on
	// the path reads every mail.
	None
)

// String names s as the URL spells it.
func (s Security) String() string {
	switch s {
	case Implicit:
		return "implicit-tls"
	case StartTLS:
		return "starttls"
	case None:
		return "none"
	}
	return "unknown"
}

// Default ports of each form (RFC 8314 section 7.3, RFC 6409 section 3.1,
// RFC 5321 section 4.5.4.2).
const (
	DefaultImplicitPort = 465
	DefaultStartTLSPort = 587
	DefaultNonePort     = 25
)

// URL is a parsed mail server URL. Password is a secret: never log it.
type URL struct {
	// Host is the server's host name or IP address, without brackets.
	Host string
	// Port is the TCP port, 1 to 65535.
	Port int
	// Security says how the connection is protected.
	Security Security
	// Username and Password are the SMTP AUTH credentials; both empty
	// means no authentication.
	Username, Password string
}

// String renders u without its password, for logs and summaries.
func (u URL) String() string {
	scheme := "smtp"
	if u.Security == Implicit {
		scheme = "smtps"
	}
	user := ""
	if u.Username != "" {
		user = url.User(u.Username).String() + ":xxxxx@"
	}
	s := scheme + "://" + user + net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	if u.Security == None {
		s += "?tls=none"
	}
	return s
}

// Parse checks a mail server URL and returns its parts, without
// connecting. Accepted forms:
//
//	smtps://user:pass@host:465   implicit TLS (port defaults to 465)
//	smtp://user:pass@host:587    STARTTLS, required (port defaults to 587)
//	smtp://host:25?tls=none      a local relay without TLS (port defaults to 25); no credentials
//
// User and password are percent-decoded. An error never echoes the password.
func Parse(raw string) (URL, error) {
	if raw != strings.TrimSpace(raw) || raw == "" {
		return URL{}, errors.New("SMTP URL: must not be empty or have surrounding spaces")
	}
	for _, r := range raw {
		if r < 0x21 || r == 0x7f {
			return URL{}, errors.New("SMTP URL: must not contain spaces or control characters")
		}
	}
	pu, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, password included: say less.
		return URL{}, errors.New("SMTP URL: not a valid URL (check that special characters in the user and password are percent-encoded)")
	}
	var u URL
	switch pu.Scheme {
	case "smtps":
		u.Security = Implicit
	case "smtp":
		u.Security = StartTLS
	default:
		return URL{}, fmt.Errorf("SMTP URL: scheme %q: use smtps:// (implicit TLS) or smtp:// (STARTTLS, or ?tls=none for a local relay)", pu.Scheme)
	}
	if pu.Opaque != "" {
		return URL{}, errors.New("SMTP URL: must be scheme://host[:port], e.g. smtps://user:pass@mail.example.com")
	}
	if pu.Path != "" && pu.Path != "/" || pu.Fragment != "" || pu.RawFragment != "" || pu.ForceQuery {
		return URL{}, errors.New("SMTP URL: must not have a path or fragment")
	}
	q, err := url.ParseQuery(pu.RawQuery)
	if err != nil {
		return URL{}, errors.New("SMTP URL: bad query")
	}
	for k, vs := range q {
		if k != "tls" {
			return URL{}, fmt.Errorf("SMTP URL: unknown parameter %q (only tls=none is known)", k)
		}
		if len(vs) != 1 || vs[0] != "none" {
			return URL{}, errors.New("SMTP URL: tls may only be none (smtp:// means STARTTLS, smtps:// implicit TLS)")
		}
		if u.Security == Implicit {
			return URL{}, errors.New("SMTP URL: smtps:// is always TLS; tls=none needs smtp://")
		}
		u.Security = None
	}
	u.Host = pu.Hostname()
	if u.Host == "" {
		return URL{}, errors.New("SMTP URL: missing host")
	}
	if strings.HasPrefix(pu.Host, "[") {
		if ip := net.ParseIP(u.Host); ip == nil || ip.To4() != nil {
			return URL{}, fmt.Errorf("SMTP URL: bad IPv6 address %q", u.Host)
		}
	} else if !validHostname(u.Host) {
		return URL{}, fmt.Errorf("SMTP URL: bad host %q", u.Host)
	}
	u.Port = map[Security]int{Implicit: DefaultImplicitPort, StartTLS: DefaultStartTLSPort, None: DefaultNonePort}[u.Security]
	if p := pu.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || p[0] == '0' {
			return URL{}, fmt.Errorf("SMTP URL: port %q: must be 1 to 65535", p)
		}
		u.Port = n
	} else if strings.HasSuffix(pu.Host, ":") {
		return URL{}, errors.New("SMTP URL: empty port")
	}
	if pu.User != nil {
		u.Username = pu.User.Username()
		u.Password, _ = pu.User.Password()
		if u.Username == "" {
			return URL{}, errors.New("SMTP URL: credentials need a user name")
		}
		if u.Password == "" {
			return URL{}, errors.New("SMTP URL: credentials need a password")
		}
		for _, s := range []string{u.Username, u.Password} {
			for _, r := range s {
				if r < 0x20 || r == 0x7f {
					return URL{}, errors.New("SMTP URL: user and password must not contain control characters")
				}
			}
		}
		if u.Security == None {
			return URL{}, errors.New("SMTP URL: tls=none would send the credentials in clear; use smtps:// or smtp:// (STARTTLS), or a relay without credentials")
		}
	}
	return u, nil
}

// validHostname reports whether h is an IPv4 address or a DNS name of
// letters, digits, hyphens, underscores and dots.
func validHostname(h string) bool {
	if len(h) > 253 || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, r := range h {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}
