package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/dataverse"

	"github.com/crmgate/crmgate/authz"
)

// base64url is the alphabet of securecookie values.
const base64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="

func randomValue(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = base64url[rng.IntN(len(base64url))]
	}
	return string(b)
}

// cookieHeader is the Cookie header a browser sends for cookies, in the
// order given.
func cookieHeader(cookies []*http.Cookie) http.Header {
	pairs := make([]string, 0, len(cookies))
	for _, c := range cookies {
		if c.MaxAge >= 0 {
			pairs = append(pairs, c.Name+"="+c.Value)
		}
	}
	return http.Header{"Cookie": {strings.Join(pairs, "; ")}}
}

// testBases are session cookies with the attributes the gateway can give
// them: plain http, a __Host- name, and a parent domain with a remember-me
// Max-Age (the longest attributes).
func testBases() map[string]*http.Cookie {
	return map[string]*http.Cookie{
		"http": {Name: "crmgate_session", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode},
		"host": {Name: "__Host-crmgate_session", Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode},
		"domain+remember": {Name: "crmgate_session", Path: "/", Domain: "customers.example.com", HttpOnly: true, Secure: true,
			SameSite: http.SameSiteLaxMode, MaxAge: 2_592_000, Expires: time.Date(2026, 12, 21, 9, 0, 0, 0, time.UTC)},
	}
}

// TestChunkSplitJoin splits values of every length around each boundary
// (one cookie full, each further companion full, the cap) and random
// lengths, and checks for each: it fits exactly when the layout's capacity
// allows, in the fewest cookies, every Set-Cookie within 4096 bytes, with
// the main cookie's attributes and names, and the parts read back in any
// order give the value again.
func TestChunkSplitJoin(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for label, base := range testBases() {
		t.Run(label, func(t *testing.T) {
			l := layoutFor(base)
			if l.main < 3000 || l.companion < 3000 || l.capacity() < 12000 {
				t.Fatalf("layout %+v leaves too little room", l)
			}
			// fewest is the least number of cookies a value of n bytes needs.
			fewest := func(n int) int {
				if n <= l.main {
					return 1
				}
				return 1 + (n-(l.main-2)+l.companion-1)/l.companion
			}
			var sizes []int
			for _, b := range []int{0, 1, l.main} {
				sizes = append(sizes, b-1, b, b+1)
			}
			for c := 2; c <= maxSessionChunks+1; c++ {
				b := l.main - 2 + (c-1)*l.companion // the longest value c cookies hold
				sizes = append(sizes, b-1, b, b+1)
			}
			for range 200 {
				sizes = append(sizes, 1+rng.IntN(l.capacity()+l.companion))
			}
			for _, n := range sizes {
				if n < 1 {
					continue
				}
				v := randomValue(rng, n)
				parts, ok := l.split(v)
				if ok != (n <= l.capacity()) {
					t.Fatalf("%d bytes: split ok = %v, capacity %d", n, ok, l.capacity())
				}
				cookies, err := sessionCookieSet(base, v, nil, true)
				if !ok {
					var tooLarge *SessionTooLargeError
					if !errors.As(err, &tooLarge) || tooLarge.Size != n || tooLarge.Limit != l.capacity() || cookies != nil {
						t.Fatalf("%d bytes: %v, %d cookies; want a *SessionTooLargeError and none", n, err, len(cookies))
					}
					continue
				}
				if err != nil || len(parts) != fewest(n) {
					t.Fatalf("%d bytes: %d parts (want %d), err %v", n, len(parts), fewest(n), err)
				}
				for i, c := range cookies {
					line := c.String()
					if len(line) > maxCookieBytes {
						t.Fatalf("%d bytes: cookie %s is %d bytes", n, c.Name, len(line))
					}
					want := *base
					want.Name, want.Value = base.Name, c.Value
					if i > 0 {
						want.Name = companionName(base.Name, i+1)
					}
					if i >= len(parts) { // deletion of an unused slot (r is nil)
						want.Value, want.MaxAge, want.Expires = "", -1, time.Time{}
					}
					if !reflect.DeepEqual(*c, want) {
						t.Fatalf("%d bytes: cookie %d is %+v, want %+v", n, i, *c, want)
					}
				}
				// A value that exactly fills one cookie uses all 4096 bytes:
				// the layout is not wastefully cautious.
				if n == l.main && len(cookies[0].String()) != maxCookieBytes {
					t.Fatalf("a full cookie is %d bytes, want %d", len(cookies[0].String()), maxCookieBytes)
				}
				sent := cookies[:len(parts)]
				rng.Shuffle(len(sent), func(i, j int) { sent[i], sent[j] = sent[j], sent[i] })
				h := cookieHeader(sent)
				h["Cookie"] = append([]string{"theme=dark"}, h["Cookie"]...)
				got, err := sessionValue(h, base.Name)
				if err != nil || got != v {
					t.Fatalf("%d bytes in %d parts: read back %d bytes, err %v", n, len(parts), len(got), err)
				}
			}
		})
	}
}

// TestSessionValueMalformed: cookies that do not form one value are
// errSessionInvalid (so the session ends and every part is cleared), the
// absence of a session is not, and look-alike names outside the companion
// slots are ignored.
func TestSessionValueMalformed(t *testing.T) {
	tests := []struct {
		name, header, want string
		invalid            bool
	}{
		{"no cookie", "", "", false},
		{"other cookies", "theme=dark; a=b", "", false},
		{"empty main", "s=", "", false},
		{"single", "theme=dark; s=abc", "abc", false},
		{"quoted", `s="abc"`, "abc", false},
		{"first of duplicates", "s=abc; s=def", "abc", false},
		{"chunked", "s_3=ghi; s=3.abc; s_2=def", "abcdefghi", false},
		{"look-alikes outside the slots", "s=abc; s_9=x; s_02=x; s_1=x; s_0=x; s_x=x; s_=x; s_csrf=x", "abc", false},
		{"part missing", "s=3.abc; s_2=def", "", true},
		{"middle part missing", "s=3.abc; s_3=ghi", "", true},
		{"empty part", "s=2.abc; s_2=", "", true},
		{"part not announced", "s=2.abc; s_2=def; s_3=ghi", "", true},
		{"companion of a single cookie", "s=abc; s_2=def", "", true},
		{"companions without main", "s_2=def; s_3=ghi", "", true},
		{"companion with an empty main", "s=; s_2=def", "", true},
		{"count of one", "s=1.abc", "", true},
		{"count beyond the cap", "s=5.abc; s_2=a; s_3=b; s_4=c; s_5=d", "", true},
		{"count zero", "s=0.abc", "", true},
		{"count not a digit", "s=x.abc; s_2=def", "", true},
		{"no first part", "s=2.; s_2=def", "", true},
		{"too long", "s=4." + strings.Repeat("a", 4100) + "; s_2=" + strings.Repeat("b", 4100) +
			"; s_3=" + strings.Repeat("c", 4100) + "; s_4=" + strings.Repeat("d", 4100), "", true},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h["Cookie"] = []string{tt.header}
		}
		got, err := sessionValue(h, "s")
		if (err != nil) != tt.invalid || got != tt.want {
			t.Errorf("%s: sessionValue(%.60q) = %.60q, %v; want %q, invalid %v", tt.name, tt.header, got, err, tt.want, tt.invalid)
		}
		if err != nil && !errors.Is(err, errSessionInvalid) {
			t.Errorf("%s: error %v is not errSessionInvalid", tt.name, err)
		}
	}
	// Parts may come in separate Cookie lines (HTTP/2 sends one per cookie).
	h := http.Header{"Cookie": {"s_2=def", "theme=dark", "s=2.abc"}}
	if got, err := sessionValue(h, "s"); err != nil || got != "abcdef" {
		t.Errorf("parts in separate lines: %q, %v", got, err)
	}
}

// bigSession is a signed-in session whose contact snapshot holds a column
// of n bytes.
func bigSession(n int) *Session {
	return &Session{ID: "sid", UserID: "u1", Stamp: "st", AuthMethod: "password", AuthTime: 1_800_000_000, LastSeen: 1_800_000_000,
		CheckedAt: 1_800_000_000, Username: "u",
		Contact: &dataverse.Contact{ID: "c1", LogicalName: "contact", Name: "Ann Lee",
			Columns: map[string]any{"description": strings.Repeat("x", n)}, Roles: []string{"Partners"}}}
}

// TestChunkedSessionTampering: the parts of a chunked session are only
// good together and in order. Swapping two, changing one byte of one,
// truncating one, or mixing parts of two sessions never decodes.
func TestChunkedSessionTampering(t *testing.T) {
	codec, _ := newSessionCodec("s", [][]byte{testKey(1)}, time.Hour)
	base := &http.Cookie{Name: "s", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	encodeParts := func(s *Session) []*http.Cookie {
		v, err := codec.encode(s)
		if err != nil {
			t.Fatal(err)
		}
		cookies, err := sessionCookieSet(base, v, &http.Request{Header: http.Header{}}, true)
		if err != nil {
			t.Fatal(err)
		}
		return cookies
	}
	decodeParts := func(cookies []*http.Cookie) (*Session, error) {
		v, err := sessionValue(cookieHeader(cookies), "s")
		if err != nil {
			return nil, err
		}
		return codec.decode(v)
	}
	in := bigSession(6000)
	cookies := encodeParts(in)
	if len(cookies) != 3 {
		t.Fatalf("a 6 KB snapshot in %d cookies, want 3", len(cookies))
	}
	if got, err := decodeParts(cookies); err != nil || !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip: %v", err)
	}
	other := bigSession(6000)
	other.ID = "sid2"
	others := encodeParts(other)

	with := func(i int, value string) []*http.Cookie {
		out := make([]*http.Cookie, len(cookies))
		for j, c := range cookies {
			cc := *c
			out[j] = &cc
		}
		out[i].Value = value
		return out
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		b[i] = base64url[(strings.IndexByte(base64url, b[i])+1)%len(base64url)]
		return string(b)
	}
	swapped := with(1, cookies[2].Value)
	swapped[2].Value = cookies[1].Value
	cases := map[string][]*http.Cookie{
		"swapped parts":           swapped,
		"changed byte in part 2":  with(1, flip(cookies[1].Value, 100)),
		"changed byte in part 3":  with(2, flip(cookies[2].Value, len(cookies[2].Value)-10)),
		"changed count":           with(0, "2"+cookies[0].Value[1:]),
		"truncated part":          with(1, cookies[1].Value[:len(cookies[1].Value)-1]),
		"part of another session": with(1, others[1].Value),
		"main of another session": with(0, others[0].Value),
	}
	for name, cs := range cases {
		if s, err := decodeParts(cs); err == nil {
			t.Errorf("%s: decoded %+v", name, s)
		} else if !errors.Is(err, errSessionInvalid) {
			t.Errorf("%s: %v, want errSessionInvalid", name, err)
		}
	}
}

// FuzzSessionCookies feeds arbitrary Cookie headers to the reader and the
// codec: nothing panics, and nothing but the parts the codec made decodes.
func FuzzSessionCookies(f *testing.F) {
	codec, _ := newSessionCodec("s", [][]byte{testKey(1)}, time.Hour)
	in := bigSession(5000)
	v, _ := codec.encode(in)
	cookies, _ := sessionCookieSet(&http.Cookie{Name: "s", Path: "/"}, v, &http.Request{Header: http.Header{}}, true)
	valid := cookieHeader(cookies).Get("Cookie")
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add("s=3.abc; s_2=def; s_3=ghi")
	f.Add("s=2.; s_2=; s_3=x")
	f.Add(`s="4.a"; s_4="b"`)
	f.Fuzz(func(t *testing.T, header string) {
		v, err := sessionValue(http.Header{"Cookie": {header}}, "s")
		if err != nil || v == "" {
			return
		}
		if s, err := codec.decode(v); err == nil && !reflect.DeepEqual(s, in) {
			t.Fatalf("decoded a session the codec never made from %q", header)
		}
	})
}

// TestSessionValueSingleCookieAllocs: reading a session held in one cookie,
// the hot path of every proxied request, allocates nothing.
func TestSessionValueSingleCookieAllocs(t *testing.T) {
	h := http.Header{"Cookie": {"theme=dark; crmgate_session=" + strings.Repeat("A", 400) + "; crmgate_session_csrf=x; other=1"}}
	allocs := testing.AllocsPerRun(100, func() {
		if v, err := sessionValue(h, "crmgate_session"); err != nil || len(v) != 400 {
			t.Fatal("not read")
		}
	})
	if allocs != 0 {
		t.Fatalf("reading a single-cookie session allocates %.0f times", allocs)
	}
}

func BenchmarkSessionValue(b *testing.B) {
	for _, parts := range []int{1, 3} {
		b.Run(strconv.Itoa(parts)+"-cookies", func(b *testing.B) {
			base := &http.Cookie{Name: "crmgate_session", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
			l := layoutFor(base)
			n := 400
			if parts > 1 {
				n = l.main + l.companion
			}
			cookies, err := sessionCookieSet(base, randomValue(rand.New(rand.NewPCG(1, 1)), n), &http.Request{Header: http.Header{}}, false)
			if err != nil || len(cookies) != parts {
				b.Fatalf("%d cookies, %v", len(cookies), err)
			}
			h := cookieHeader(cookies)
			h["Cookie"][0] = "theme=dark; " + h["Cookie"][0] + "; crmgate_session_csrf=x"
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sessionValue(h, "crmgate_session"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// chunkTestServer is a gateway on https://gw.example.com whose session
// cookie is called name, with cookie domain domain (empty: host-only), for
// a user whose store record auth returns.
func chunkTestServer(t *testing.T, name, domain string, user func() *authz.User) *Server {
	t.Helper()
	srv, _ := testServer(t, "upstreams:\n  - name: a\n    url: http://127.0.0.1:1\nroutes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\n")
	opts := srv.opts
	opts.CookieName, opts.CookieDomain = name, domain
	opts.Users = &fakeAuth{userByID: func(context.Context, string) (*authz.User, error) { return user(), nil }}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// setCookies parses the Set-Cookie lines of rec, failing t when one is
// longer than a browser keeps.
func setCookies(t *testing.T, rec *httptest.ResponseRecorder) []*http.Cookie {
	t.Helper()
	for _, line := range rec.Result().Header["Set-Cookie"] {
		if len(line) > maxCookieBytes {
			t.Fatalf("Set-Cookie of %d bytes: %.80s…", len(line), line)
		}
	}
	return rec.Result().Cookies()
}

func cookieNames(cookies []*http.Cookie) (set, deleted []string) {
	for _, c := range cookies {
		if c.MaxAge < 0 {
			deleted = append(deleted, c.Name)
		} else {
			set = append(set, c.Name)
		}
	}
	return set, deleted
}

// TestWriteSessionChunks writes sessions of growing and shrinking size
// through writeSessionFor and loadSession with a __Host- name: each part
// keeps the main cookie's attributes (remember-me Max-Age included), the
// session reads back from its parts, a shorter session deletes exactly the
// parts the request carried, and one beyond the cap sets nothing and
// returns the typed error inside a friendly *Error.
func TestWriteSessionChunks(t *testing.T) {
	user := func() *authz.User {
		return &authz.User{ID: "u1", Username: "u", Status: authz.StatusActive, SecurityStamp: "st"}
	}
	srv := chunkTestServer(t, "__Host-crmgate_session", "", user)
	write := func(r *http.Request, s *Session) ([]*http.Cookie, error) {
		rec := httptest.NewRecorder()
		err := srv.writeSessionFor(rec, r, s)
		return setCookies(t, rec), err
	}
	request := func(cookies []*http.Cookie) *http.Request {
		r := httptest.NewRequest("GET", "https://gw.example.com/", nil)
		r.Header = cookieHeader(cookies)
		return r
	}

	big := bigSession(6000)
	big.AuthTime, big.LastSeen, big.CheckedAt = srv.now().Unix(), srv.now().Unix(), srv.now().Unix()
	big.Remember = true
	cookies, err := write(request(nil), big)
	set, deleted := cookieNames(cookies)
	if err != nil || !reflect.DeepEqual(set, []string{"__Host-crmgate_session", "__Host-crmgate_session_2", "__Host-crmgate_session_3"}) || deleted != nil {
		t.Fatalf("6 KB snapshot: set %v, deleted %v, %v", set, deleted, err)
	}
	for _, c := range cookies {
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" ||
			c.MaxAge != cookies[0].MaxAge || c.MaxAge < 29*24*3600 {
			t.Errorf("part %s lacks the session attributes: %s", c.Name, c.String())
		}
	}
	// The parts read back as the session, through the pipeline's loader.
	rec := httptest.NewRecorder()
	got, err := srv.loadSession(rec, request(cookies))
	if err != nil || got == nil || !reflect.DeepEqual(got.Contact, big.Contact) {
		t.Fatalf("load chunked session: %v %+v", err, got)
	}
	if len(rec.Result().Header["Set-Cookie"]) != 0 {
		t.Fatalf("a fresh session was re-issued: %v", rec.Result().Header["Set-Cookie"])
	}

	// Shrinking to two parts deletes the third; to one, the second (the
	// request no longer has the third); no deletion for slots never sent.
	mid := *big
	mid.Contact = &dataverse.Contact{ID: "c1", LogicalName: "contact", Columns: map[string]any{"description": strings.Repeat("y", 2500)}}
	cookies2, err := write(request(cookies), &mid)
	set, deleted = cookieNames(cookies2)
	if err != nil || len(set) != 2 || !reflect.DeepEqual(deleted, []string{"__Host-crmgate_session_3"}) {
		t.Fatalf("shrink to 2: set %v, deleted %v, %v", set, deleted, err)
	}
	small := *big
	small.Contact = &dataverse.Contact{ID: "c1", LogicalName: "contact"}
	cookies1, err := write(request(cookies2[:2]), &small)
	set, deleted = cookieNames(cookies1)
	if err != nil || !reflect.DeepEqual(set, []string{"__Host-crmgate_session"}) || !reflect.DeepEqual(deleted, []string{"__Host-crmgate_session_2"}) {
		t.Fatalf("shrink to 1: set %v, deleted %v, %v", set, deleted, err)
	}
	for _, c := range cookies1[1:] {
		if !c.Secure || c.Path != "/" || c.Domain != "" {
			t.Errorf("a deletion must match the cookie it deletes (__Host- needs Secure, Path=/): %s", c.String())
		}
	}
	// A single-cookie session written again costs one Set-Cookie.
	if cookies, err := write(request(cookies1), &small); err != nil || len(cookies) != 1 {
		t.Fatalf("rewrite of a single-cookie session: %d Set-Cookie, %v", len(cookies), err)
	}
	// Without the request, every unused slot is deleted.
	if cookies, err := write(nil, &small); err != nil || len(cookies) != maxSessionChunks {
		t.Fatalf("write without a request: %d Set-Cookie, %v", len(cookies), err)
	}

	// Beyond the cap: nothing is set; the cause names the fix.
	cookies, err = write(request(cookies1), bigSession(12000))
	var tooLarge *SessionTooLargeError
	var page *Error
	if !errors.As(err, &tooLarge) || !errors.As(err, &page) || len(cookies) != 0 {
		t.Fatalf("a 12 KB snapshot: %v, %d cookies", err, len(cookies))
	}
	if !tooLarge.HasContact || tooLarge.Size <= tooLarge.Limit || !strings.Contains(err.Error(), "reduce contact_columns in the policy") {
		t.Errorf("typed error: %+v %q", tooLarge, err)
	}
	if page.Status != http.StatusInternalServerError || page.Code != "session_too_large" || strings.Contains(page.Message, "contact_columns") {
		t.Errorf("user-facing error: %+v", page)
	}
	noContact := &SessionTooLargeError{Size: 20000, Limit: 15000}
	if strings.Contains(noContact.Error(), "contact_columns") {
		t.Errorf("cause without a contact: %q", noContact.Error())
	}
}

// TestCookieDomainOnEveryPart: with a cookie domain, every part and every
// deletion carries it (a deletion without it would not match).
func TestCookieDomainOnEveryPart(t *testing.T) {
	srv := chunkTestServer(t, "crmgate_session", "example.com", func() *authz.User { return nil })
	rec := httptest.NewRecorder()
	if err := srv.writeSessionFor(rec, nil, bigSession(8000)); err != nil {
		t.Fatal(err)
	}
	cookies := setCookies(t, rec)
	set, deleted := cookieNames(cookies)
	if len(set) != maxSessionChunks || deleted != nil {
		t.Fatalf("8 KB snapshot: set %v, deleted %v", set, deleted)
	}
	rec = httptest.NewRecorder()
	srv.endSession(rec, "signout")
	cleared := setCookies(t, rec)
	set, deleted = cookieNames(cleared)
	if set != nil || len(deleted) != maxSessionChunks {
		t.Fatalf("end of session: set %v, deleted %v", set, deleted)
	}
	for _, c := range append(cookies, cleared...) {
		if c.Domain != "example.com" || !c.Secure || !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
			t.Errorf("%s lacks the session attributes: %s", c.Name, c.String())
		}
	}
}

// TestLoadSessionEndsSessionThatOutgrowsCookies: a refresh that no longer
// fits (here a display name grown in the store, copied at the stamp
// check) ends the session, clears every part and returns the friendly
// error, rather than keeping a session it can no longer write.
func TestLoadSessionEndsSessionThatOutgrowsCookies(t *testing.T) {
	var name string
	srv := chunkTestServer(t, "s", "", func() *authz.User {
		return &authz.User{ID: "u1", Username: "u", DisplayName: name, Status: authz.StatusActive, SecurityStamp: "st"}
	})
	now := srv.now()
	sess := bigSession(5000)
	sess.AuthTime, sess.LastSeen, sess.CheckedAt = now.Unix(), now.Unix(), now.Unix()
	rec := httptest.NewRecorder()
	if err := srv.writeSessionFor(rec, nil, sess); err != nil {
		t.Fatal(err)
	}
	cookies := setCookies(t, rec)
	name = strings.Repeat("N", 6000)
	later := now.Add(3 * time.Minute) // past the stamp check
	srv.now = func() time.Time { return later }
	req := httptest.NewRequest("GET", "https://gw.example.com/", nil)
	req.Header = cookieHeader(cookies)
	rec = httptest.NewRecorder()
	got, err := srv.loadSession(rec, req)
	var tooLarge *SessionTooLargeError
	if got != nil || !errors.As(err, &tooLarge) {
		t.Fatalf("loadSession = %+v, %v; want the too-large error", got, err)
	}
	if set, deleted := cookieNames(setCookies(t, rec)); set != nil || len(deleted) != maxSessionChunks {
		t.Fatalf("set %v, deleted %v; want every part deleted", set, deleted)
	}
}

// TestGatewayCookiesNeverUpstream: the session cookie, its companions and
// anything named like one, and the CSRF cookie are removed before
// proxying; every other cookie passes byte for byte.
func TestGatewayCookiesNeverUpstream(t *testing.T) {
	srv := chunkTestServer(t, "__Host-s", "", func() *authz.User { return nil })
	tests := []struct{ in, want string }{
		{"__Host-s=3.a; __Host-s_2=b; __Host-s_3=c; theme=dark", "theme=dark"},
		{"__Host-s_9=x; __Host-s_02=x; __Host-s_0=x; __Host-s_1234567890=x; __Host-s_csrf=x; a=1", "a=1"},
		{"__Host-s_x=keep; __Host-s_=keep; __Host-s_2x=keep; __Host-sx_2=keep; s_2=keep; __host-s_2=keep",
			"__Host-s_x=keep; __Host-s_=keep; __Host-s_2x=keep; __Host-sx_2=keep; s_2=keep; __host-s_2=keep"},
	}
	for _, tt := range tests {
		h := http.Header{"Cookie": {tt.in}}
		removeCookiesFunc(h, srv.isGatewayCookie)
		if got := h.Get("Cookie"); got != tt.want {
			t.Errorf("upstream Cookie for %q = %q, want %q", tt.in, got, tt.want)
		}
	}
}
