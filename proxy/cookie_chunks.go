package proxy

// Session cookie chunking.
//
// A browser keeps a cookie only while its name, value and attributes fit in
// 4096 bytes (RFC 6265 §6.1 is the minimum browsers honour, and the limit
// they apply); a longer Set-Cookie is dropped without a word, and the user
// can never stay signed in. A session carrying a large contact snapshot can
// encode to more than that, so writeSession splits a long value across the
// main cookie and numbered companion cookies, as oauth2-proxy does:
//
//	<name>     "3.<part 1>"   the number of parts, a dot, the first part
//	<name>_2   "<part 2>"
//	<name>_3   "<part 3>"
//
// A session that fits one cookie (nearly all of them, and every session
// written before chunking existed) is the bare securecookie value, read
// without any allocation. securecookie's output is base64url, which never
// contains a dot, so the two forms cannot be confused. The companions keep
// the main name as their prefix, so a "__Host-" name gives "__Host-" names,
// and they carry the main cookie's attributes.
//
// The parts are not authenticated one by one: securecookie's MAC covers the
// reassembled value, so a part missing, swapped, forged or taken from
// another session makes the whole value fail to decode. A companion the
// main cookie does not announce makes the set invalid too (the gateway
// deletes stale companions whenever it writes a shorter session, so one
// left over is not the gateway's doing); clearing the session deletes every
// companion slot. Other names of the form <name>_<digits> are never the
// gateway's parts and are ignored here, but they are in the gateway's
// namespace: like the parts, they never reach the upstream.

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

const (
	// maxCookieBytes is the most a browser is sure to keep of one cookie:
	// the whole Set-Cookie value, name, value and attributes.
	maxCookieBytes = 4096
	// maxSessionChunks is how many cookies one session may use: the main
	// cookie and up to three companions, about 16 KB in all. Every part is
	// sent with every request, so this bounds the request header size the
	// ingress in front of the gateway must accept. It must stay below 10:
	// the part count is one digit.
	maxSessionChunks = 4
	// maxSessionValue bounds the reassembled value the codec will decode.
	maxSessionValue = maxSessionChunks * maxCookieBytes
	// chunkMarker separates the part count from the first part in the main
	// cookie of a chunked session.
	chunkMarker = '.'
)

// SessionTooLargeError is the error writeSession returns (wrapped in an
// *Error the pages render as a friendly message) when the encoded session
// does not fit in maxSessionChunks cookies. It is an operator's problem, not
// the user's: the policy forwards more contact data than a cookie session
// can carry. Its message names the fix; the zero value reports no sizes.
type SessionTooLargeError struct {
	Size       int  // length of the encoded session value in bytes
	Limit      int  // the most the session cookies could carry with these attributes
	HasContact bool // the session carries a contact snapshot
}

func (e *SessionTooLargeError) Error() string {
	cause := "the user's names and roles are too large for the session cookie"
	if e.HasContact {
		cause = "the contact snapshot is too large for the session cookie: reduce contact_columns in the policy"
	}
	return fmt.Sprintf("proxy: the session needs %d bytes, more than the %d bytes %d cookies can carry: %s",
		e.Size, e.Limit, maxSessionChunks, cause)
}

// errSessionTooLarge wraps a *SessionTooLargeError in the error page users see.
func errSessionTooLarge(e *SessionTooLargeError) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "session_too_large", Title: "Sign-in could not be completed",
		Message: "Your account holds more profile data than this site can keep in a sign-in session. " +
			"Please tell the site's administrators; signing in again will not help until they change the site's settings.",
		Err: e}
}

// companionName is the name of the cookie carrying part n (2 or more) of
// the session cookie called name.
func companionName(name string, n int) string { return name + "_" + strconv.Itoa(n) }

// companionSlot reports which part a cookie called cookie carries for the
// session cookie called name: 2 to maxSessionChunks, or 0 when it is not a
// companion slot.
func companionSlot(name, cookie string) int {
	if len(cookie) != len(name)+2 || cookie[len(name)] != '_' || cookie[:len(name)] != name {
		return 0
	}
	if d := cookie[len(name)+1]; d >= '2' && d <= '0'+maxSessionChunks {
		return int(d - '0')
	}
	return 0
}

// isCompanionLike reports whether cookie is named like a companion of the
// session cookie called name: the name, an underscore and digits. Every
// such name is the gateway's, whether or not the gateway would use it.
func isCompanionLike(name, cookie string) bool {
	if len(cookie) < len(name)+2 || cookie[len(name)] != '_' || cookie[:len(name)] != name {
		return false
	}
	for i := len(name) + 1; i < len(cookie); i++ {
		if cookie[i] < '0' || cookie[i] > '9' {
			return false
		}
	}
	return true
}

// nextCookie parses the first name=value pair of a Cookie header line and
// returns the rest of the line. A pair without "=" has ok false. Quotes
// around the value are removed, as net/http does.
func nextCookie(line string) (name, value, rest string, ok bool) {
	var part string
	part, rest, _ = strings.Cut(line, ";")
	part = strings.TrimLeft(part, " \t")
	name, value, ok = strings.Cut(part, "=")
	if !ok {
		return "", "", rest, false
	}
	value = strings.TrimRight(value, " \t")
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	return name, value, rest, true
}

// sessionCookies is what a request carries of one session: the main cookie
// and each companion slot, the first cookie of each name. It holds
// substrings of the header, so reading it allocates nothing.
type sessionCookies struct {
	main    string
	hasMain bool
	parts   [maxSessionChunks + 1]string // parts[n] is companion n, for n ≥ 2
	has     [maxSessionChunks + 1]bool
}

// readSessionCookies collects the session cookies called name (and its
// companions) from the Cookie headers of h.
func readSessionCookies(h http.Header, name string) sessionCookies {
	var sc sessionCookies
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			k, v, rest, ok := nextCookie(line)
			line = rest
			switch {
			case !ok:
			case k == name:
				if !sc.hasMain {
					sc.main, sc.hasMain = v, true
				}
			default:
				if n := companionSlot(name, k); n != 0 && !sc.has[n] {
					sc.parts[n], sc.has[n] = v, true
				}
			}
		}
	}
	return sc
}

// value reassembles the session value. It returns "", nil when the request
// carries no session cookie, and errSessionInvalid when its cookies do not
// form one value: a part missing or empty, a companion the main cookie does
// not announce, or a malformed part count. Whether the value is a session
// is for the codec to decide. A session in one cookie is returned as it is,
// without allocating.
func (sc *sessionCookies) value() (string, error) {
	companions := false
	for n := 2; n <= maxSessionChunks; n++ {
		companions = companions || sc.has[n]
	}
	if sc.main == "" { // no cookie, or an empty one (as before chunking: no session)
		if companions {
			return "", errSessionInvalid
		}
		return "", nil
	}
	if len(sc.main) < 2 || sc.main[1] != chunkMarker {
		if companions {
			return "", errSessionInvalid
		}
		return sc.main, nil
	}
	count := int(sc.main[0] - '0')
	if count < 2 || count > maxSessionChunks || len(sc.main) == 2 {
		return "", errSessionInvalid
	}
	size := len(sc.main) - 2
	for n := 2; n <= maxSessionChunks; n++ {
		switch {
		case n <= count && sc.parts[n] == "", n > count && sc.has[n]:
			return "", errSessionInvalid
		}
		size += len(sc.parts[n])
	}
	if size > maxSessionValue {
		return "", errSessionInvalid
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(sc.main[2:])
	for n := 2; n <= count; n++ {
		b.WriteString(sc.parts[n])
	}
	return b.String(), nil
}

// sessionValue returns the session value the request headers h carry,
// reassembled from its parts: "" and nil for no session cookie at all,
// errSessionInvalid for cookies that do not form one value.
func sessionValue(h http.Header, name string) (string, error) {
	sc := readSessionCookies(h, name)
	return sc.value()
}

// chunkLayout is how much of a session value each cookie can carry, given
// the length of its name and attributes.
type chunkLayout struct {
	main      int // value bytes the main cookie can hold, the part count included
	companion int // value bytes each companion can hold
}

// capacity is the longest value the layout can split.
func (l chunkLayout) capacity() int {
	return max(l.main, l.main-2+(maxSessionChunks-1)*l.companion)
}

// split cuts v into the values of the main cookie and its companions. A
// value that fits the main cookie is returned as it is; ok is false when v
// needs more than maxSessionChunks cookies.
func (l chunkLayout) split(v string) (parts []string, ok bool) {
	if len(v) <= l.main {
		return []string{v}, true
	}
	first := l.main - 2
	if first <= 0 || l.companion <= 0 {
		return nil, false
	}
	count := 1 + (len(v)-first+l.companion-1)/l.companion
	if count > maxSessionChunks {
		return nil, false
	}
	parts = make([]string, 0, count)
	parts = append(parts, strconv.Itoa(count)+string(chunkMarker)+v[:first])
	for rest := v[first:]; len(rest) > 0; {
		n := min(len(rest), l.companion)
		parts = append(parts, rest[:n])
		rest = rest[n:]
	}
	return parts, true
}

// layoutFor is the chunk layout of the session cookies built like base
// (same name and attributes): the room each Set-Cookie leaves for its value.
func layoutFor(base *http.Cookie) chunkLayout {
	overhead := func(name string) int {
		c := *base
		c.Name, c.Value = name, ""
		return len(c.String())
	}
	return chunkLayout{main: maxCookieBytes - overhead(base.Name), companion: maxCookieBytes - overhead(companionName(base.Name, 2))}
}

// sessionCookieSet builds the Set-Cookie list for value: the main cookie
// and, when value needs them, its companions, all with base's attributes;
// then deletions of the companion slots the new value leaves unused and the
// request carries (every unused slot when r is nil). It returns a
// *SessionTooLargeError when value does not fit.
func sessionCookieSet(base *http.Cookie, value string, r *http.Request, hasContact bool) ([]*http.Cookie, error) {
	layout := layoutFor(base)
	parts, ok := layout.split(value)
	if !ok {
		return nil, &SessionTooLargeError{Size: len(value), Limit: layout.capacity(), HasContact: hasContact}
	}
	var present sessionCookies
	if r != nil {
		present = readSessionCookies(r.Header, base.Name)
	}
	out := make([]*http.Cookie, 0, maxSessionChunks)
	for i, p := range parts {
		c := *base
		c.Value = p
		if i > 0 {
			c.Name = companionName(base.Name, i+1)
		}
		out = append(out, &c)
	}
	for n := len(parts) + 1; n <= maxSessionChunks; n++ {
		if r == nil || present.has[n] {
			out = append(out, expiredCookie(base, companionName(base.Name, n)))
		}
	}
	return out, nil
}

// expiredCookie is a Set-Cookie that deletes the cookie called name set
// with base's attributes (a deletion must match the cookie's path and domain).
func expiredCookie(base *http.Cookie, name string) *http.Cookie {
	return &http.Cookie{Name: name, Value: "", Path: base.Path, Domain: base.Domain, MaxAge: -1,
		HttpOnly: base.HttpOnly, Secure: base.Secure, SameSite: base.SameSite}
}
