package proxy

import (
	"net/url"
	"strings"
)

// maxRedirectLen bounds a return address (redirect_url) in bytes, as sent (percent-encoded
// form). 8 KB covers the long query strings of legacy sites and is what common servers accept
// as a whole request line (nginx large_client_header_buffers 8k, Apache LimitRequestLine 8190);
// longer values are refused, and the sign-in page then says it will not return there.
const maxRedirectLen = 8 << 10

// redirectValidator decides which redirect_url values the gateway honours:
// same-site relative paths, and absolute http(s) URLs whose origin is the
// gateway's own or on the allow-list. Everything else is an open redirect.
type redirectValidator struct {
	self    string          // the public origin, lower-case scheme://host[:port]
	allowed map[string]bool // lower-case origins
}

func newRedirectValidator(publicOrigin string, allowlist []string) redirectValidator {
	v := redirectValidator{self: strings.ToLower(publicOrigin), allowed: map[string]bool{}}
	for _, o := range allowlist {
		v.allowed[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return v
}

// validate returns the URL to redirect to and true when raw may be honoured.
// The returned value is re-serialised, never the raw input.
func (v redirectValidator) validate(raw string) (string, bool) {
	if raw == "" || len(raw) > maxRedirectLen {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		// Browsers drop tab and newlines inside URLs ("/\t/evil" becomes
		// "//evil") and read '\' as '/'; refuse them and every other control
		// character or space outright.
		if c := raw[i]; c <= 0x20 || c == 0x7f || c == '\\' {
			return "", false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		return "", false
	}
	if u.Scheme == "" && u.Host == "" {
		// Relative: must be a path from the root, never protocol-relative.
		if !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
			return "", false
		}
		// A path whose decoded form starts with "//" is still safe to send
		// as-is (browsers do not decode before resolving), but nothing
		// legitimate needs it: refuse.
		if strings.HasPrefix(u.Path, "//") {
			return "", false
		}
		return bounded(u.RequestURI() + fragment(u))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	origin := strings.ToLower(u.Scheme + "://" + u.Host)
	if origin != v.self && !v.allowed[origin] {
		return "", false
	}
	return bounded(u.String())
}

// bounded refuses a re-serialised address that grew past maxRedirectLen
// (raw non-ASCII bytes are percent-encoded), so that what the gateway echoes
// in a form is accepted again when the form comes back.
func bounded(s string) (string, bool) {
	if len(s) > maxRedirectLen {
		return "", false
	}
	return s, true
}

func fragment(u *url.URL) string {
	if u.Fragment == "" {
		return ""
	}
	return "#" + u.EscapedFragment()
}

// tooLong reports whether raw is refused only for its length.
func (v redirectValidator) tooLong(raw string) bool { return len(raw) > maxRedirectLen }

// orDefault returns the validated redirect or "/" when raw is not acceptable.
func (v redirectValidator) orDefault(raw string) string {
	if s, ok := v.validate(raw); ok {
		return s
	}
	return "/"
}
