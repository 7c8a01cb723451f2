package proxy_test

// End-to-end tests of sessions too large for one cookie: a user bound to an
// emulator contact whose forwarded column holds kilobytes signs in through
// the real sign-in form and stays signed in across requests with a real
// cookie jar, and once with a real Chromium, which (unlike
// net/http/cookiejar) drops any cookie over 4096 bytes.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/proxy"
)

// bigColumnPolicy forwards a free-text contact column on /orders, so the
// session's contact snapshot carries it.
const bigColumnPolicy = `upstreams:
  - name: app
    url: %s
routes:
  - name: orders
    paths: ["/orders/**"]
    access: bound
    contact_columns: [emailaddress1, adx_organizationname]
  - name: other
    paths: ["/**"]
    access: authenticated
`

// lockedBuffer is a log destination the gateway's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cookieHarness is a gateway in front of an emulator whose contact Ann
// (bound to user ann by username) has an organisation name of the given
// size; the gateway logs into the returned buffer.
type cookieHarness struct {
	*harness
	client *crmclient.Client
	log    *lockedBuffer
}

func newCookieHarness(t *testing.T, orgBytes int) *cookieHarness {
	t.Helper()
	_, client := newContactEmulator(t)
	logs := &lockedBuffer{}
	h := newHarness(t, harnessConfig{policy: bigColumnPolicy,
		mutate: func(o *proxy.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) },
		authz: func(o *wiring.Options) {
			o.Contacts = crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
			o.Binding = binding.Options{DefaultMode: authz.BindingUsername}
			o.SignInCheck = signin.Check{Enabled: true, RequireLogonEnabled: true}
		}})
	ch := &cookieHarness{harness: h, client: client, log: logs}
	ch.setOrganisation(orgText(orgBytes))
	h.createUser("ann", "ann@example.test", "correct horse battery")
	return ch
}

// orgText is n bytes of varied text (JSON and base64 do not shrink it).
func orgText(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteString("Acme Holdings division ")
		b.WriteByte(byte('A' + i%26))
		b.WriteString("; ")
	}
	return b.String()[:n]
}

func (h *cookieHarness) setOrganisation(v string) {
	h.t.Helper()
	if err := h.client.Update(context.Background(), crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(annID)),
		map[string]any{"adx_organizationname": v}, ""); err != nil {
		h.t.Fatal(err)
	}
}

// sessionParts returns the names of the gateway's session cookies in c's
// jar, main cookie first.
func (h *cookieHarness) sessionParts(c *http.Client) []string {
	u, _ := url.Parse(h.gw.URL)
	var names []string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "crmgate_session" || strings.HasPrefix(ck.Name, "crmgate_session_") && ck.Name != "crmgate_session_csrf" {
			names = append(names, ck.Name)
		}
	}
	slices.Sort(names)
	return names
}

// checkSetCookies fails the test when a Set-Cookie of resp is longer than a
// browser keeps (cookiejar keeps anything), and returns the names it sets
// and deletes.
func checkSetCookies(t *testing.T, resp *http.Response) (set, deleted []string) {
	t.Helper()
	for _, line := range resp.Header["Set-Cookie"] {
		if len(line) > 4096 {
			t.Fatalf("Set-Cookie of %d bytes, more than browsers keep: %.60s…", len(line), line)
		}
	}
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			deleted = append(deleted, c.Name)
		} else {
			set = append(set, c.Name)
		}
	}
	slices.Sort(set)
	slices.Sort(deleted)
	return set, deleted
}

// orgClaim is the organisation column of the contact claim of the last
// request to /orders the upstream received (a browser also asks for
// /favicon.ico, whose route forwards no columns).
func (h *cookieHarness) orgClaim() string {
	h.t.Helper()
	var last *seen
	h.up.mu.Lock()
	for i := range h.up.reqs {
		if strings.HasPrefix(h.up.reqs[i].Path, "/orders/") {
			last = &h.up.reqs[i]
		}
	}
	h.up.mu.Unlock()
	if last == nil {
		h.t.Fatal("the upstream received no request for /orders")
	}
	claims := h.verifyToken(last.Header.Get("X-Current-User"), h.up.srv.URL)
	ct, _ := claims["contact"].(map[string]any)
	cols, _ := ct["columns"].(map[string]any)
	s, _ := cols["adx_organizationname"].(string)
	return s
}

var chunkedParts = []string{"crmgate_session", "crmgate_session_2", "crmgate_session_3"}

// TestLargeContactSessionStaysSignedIn: a 6 KB contact column makes an
// 11 KB session, written as three cookies of at most 4096 bytes each. The
// user stays signed in across requests, cookie re-issues and stamp checks;
// the upstream gets the whole snapshot and none of the gateway's cookies,
// nor a client's look-alikes of them; other cookies pass.
func TestLargeContactSessionStaysSignedIn(t *testing.T) {
	h := newCookieHarness(t, 6000)
	ann := h.browser()
	resp, body := h.postSignIn(ann, "ann", "correct horse battery", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", resp.StatusCode, body)
	}
	if set, _ := checkSetCookies(t, resp); !slices.Equal(set, chunkedParts) {
		t.Fatalf("sign-in set %v, want %v", set, chunkedParts)
	}
	u, _ := url.Parse(h.gw.URL)
	ann.Jar.SetCookies(u, []*http.Cookie{{Name: "theme", Value: "dark"}, {Name: "crmgate_session_9", Value: "forged"},
		{Name: "crmgate_session_02", Value: "forged"}})

	for i, step := range []time.Duration{0, 30 * time.Second, 90 * time.Second, 3 * time.Minute} {
		h.clock.Advance(step) // past a re-issue (1m) and a stamp check (2m)
		resp, body := h.get(ann, "/orders/1")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d\n%.300s", i, resp.StatusCode, body)
		}
		if set, deleted := checkSetCookies(t, resp); len(deleted) != 0 || (len(set) != 0 && !slices.Equal(set, chunkedParts)) {
			t.Fatalf("request %d re-issued %v, deleted %v", i, set, deleted)
		}
		if got := h.orgClaim(); got != orgText(6000) {
			t.Fatalf("request %d: the upstream's contact claim has %d bytes of the column, want 6000", i, len(got))
		}
		var names []string
		for _, c := range h.up.last(t).Header["Cookie"] {
			for part := range strings.SplitSeq(c, ";") {
				name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
				names = append(names, name)
			}
		}
		if !slices.Equal(names, []string{"theme"}) {
			t.Fatalf("request %d: the upstream received cookies %v, want only theme", i, names)
		}
	}
	// The look-alikes stay in the jar: the gateway ignores what it never sets.
	if parts := h.sessionParts(ann); !slices.Equal(parts, []string{"crmgate_session", "crmgate_session_02", "crmgate_session_2", "crmgate_session_3", "crmgate_session_9"}) {
		t.Fatalf("jar holds %v", parts)
	}
}

// TestShrunkSessionDeletesStaleParts: a contact snapshot that shrinks in
// Dataverse (seen at the next revalidation), or a new sign-in with a
// smaller snapshot, deletes the parts the session no longer needs, and the
// user stays signed in on the single cookie.
func TestShrunkSessionDeletesStaleParts(t *testing.T) {
	h := newCookieHarness(t, 6000)
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	if parts := h.sessionParts(ann); !slices.Equal(parts, chunkedParts) {
		t.Fatalf("after sign-in: %v", parts)
	}

	// Revalidation (every 5m) brings the smaller snapshot.
	h.setOrganisation("Acme")
	h.clock.Advance(6 * time.Minute)
	resp, _ := h.get(ann, "/orders/1")
	set, deleted := checkSetCookies(t, resp)
	if resp.StatusCode != http.StatusOK || !slices.Equal(set, []string{"crmgate_session"}) ||
		!slices.Equal(deleted, []string{"crmgate_session_2", "crmgate_session_3"}) {
		t.Fatalf("shrink at revalidation: %d, set %v, deleted %v", resp.StatusCode, set, deleted)
	}
	if got := h.orgClaim(); got != "Acme" {
		t.Fatalf("claim after revalidation: %q", got)
	}
	if parts := h.sessionParts(ann); !slices.Equal(parts, []string{"crmgate_session"}) {
		t.Fatalf("jar after the shrink: %v", parts)
	}
	if resp, _ := h.get(ann, "/orders/2"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the shrink: %d", resp.StatusCode)
	}

	// Grow again at a new sign-in, then sign in once more with a small
	// snapshot over the chunked cookies: the new sign-in deletes them.
	h.setOrganisation(orgText(6000))
	h.signIn(ann, "ann", "correct horse battery")
	if parts := h.sessionParts(ann); !slices.Equal(parts, chunkedParts) {
		t.Fatalf("after the second sign-in: %v", parts)
	}
	h.setOrganisation("Acme")
	resp, body := h.postSignIn(ann, "ann", "correct horse battery", nil)
	set, deleted = checkSetCookies(t, resp)
	if resp.StatusCode != http.StatusSeeOther || !slices.Contains(set, "crmgate_session") ||
		!slices.Equal(deleted, []string{"crmgate_session_2", "crmgate_session_3"}) {
		t.Fatalf("small sign-in over a chunked session: %d, set %v, deleted %v\n%.300s", resp.StatusCode, set, deleted, body)
	}
	if resp, _ := h.get(ann, "/orders/3"); resp.StatusCode != http.StatusOK || h.orgClaim() != "Acme" {
		t.Fatalf("after the small sign-in: %d", resp.StatusCode)
	}
}

// TestTamperedPartEndsSession: one changed part, or a missing one, makes
// the session invalid: the request is treated as signed out and every part
// is deleted.
func TestTamperedPartEndsSession(t *testing.T) {
	h := newCookieHarness(t, 6000)
	u, _ := url.Parse(h.gw.URL)
	for name, tamper := range map[string]func(c *http.Client){
		"changed part": func(c *http.Client) {
			for _, ck := range c.Jar.Cookies(u) {
				if ck.Name == "crmgate_session_2" {
					b := []byte(ck.Value)
					b[len(b)/2] ^= 'A' ^ 'B' // stays base64url for letters A and B; changes the bits otherwise
					if b[len(b)/2] == ck.Value[len(b)/2] {
						b[len(b)/2] = 'Z'
					}
					c.Jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: string(b)}})
				}
			}
		},
		"missing part": func(c *http.Client) {
			c.Jar.SetCookies(u, []*http.Cookie{{Name: "crmgate_session_3", MaxAge: -1}})
		},
		"swapped parts": func(c *http.Client) {
			var p2, p3 string
			for _, ck := range c.Jar.Cookies(u) {
				switch ck.Name {
				case "crmgate_session_2":
					p2 = ck.Value
				case "crmgate_session_3":
					p3 = ck.Value
				}
			}
			c.Jar.SetCookies(u, []*http.Cookie{{Name: "crmgate_session_2", Value: p3}, {Name: "crmgate_session_3", Value: p2}})
		},
	} {
		t.Run(name, func(t *testing.T) {
			ann := h.browser()
			h.signIn(ann, "ann", "correct horse battery")
			if resp, _ := h.get(ann, "/orders/1"); resp.StatusCode != http.StatusOK {
				t.Fatalf("before tampering: %d", resp.StatusCode)
			}
			tamper(ann)
			before := h.up.count()
			resp, _ := h.get(ann, "/orders/1")
			_, deleted := checkSetCookies(t, resp)
			if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/.auth/signin") || h.up.count() != before {
				t.Fatalf("tampered session: %d to %q, upstream reached: %v", resp.StatusCode, resp.Header.Get("Location"), h.up.count() != before)
			}
			if !slices.Equal(deleted, []string{"crmgate_session", "crmgate_session_2", "crmgate_session_3", "crmgate_session_4"}) {
				t.Fatalf("deleted %v, want every part", deleted)
			}
			if parts := h.sessionParts(ann); len(parts) != 0 {
				t.Fatalf("jar still holds %v", parts)
			}
		})
	}
}

// TestChunkedSessionSignOut: signing out of a chunked session deletes
// every part and revokes the session, so a copy of the parts taken before
// no longer works.
func TestChunkedSessionSignOut(t *testing.T) {
	h := newCookieHarness(t, 6000)
	ann := h.browser()
	h.signIn(ann, "ann", "correct horse battery")
	u, _ := url.Parse(h.gw.URL)
	stolen := ann.Jar.Cookies(u)

	req, _ := http.NewRequest("POST", h.url("/.auth/signout"), nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, _ := h.do(ann, req)
	if _, deleted := checkSetCookies(t, resp); resp.StatusCode != http.StatusOK || len(deleted) != 4 || len(h.sessionParts(ann)) != 0 {
		t.Fatalf("sign-out: %d, deleted %v, jar %v", resp.StatusCode, deleted, h.sessionParts(ann))
	}
	replay := h.browser()
	replay.Jar.SetCookies(u, stolen)
	if resp, _ := h.get(replay, "/orders/1"); resp.StatusCode != http.StatusFound {
		t.Fatalf("replayed parts after sign-out: %d", resp.StatusCode)
	}
	events, err := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventSignOut})
	if err != nil || len(events) != 1 {
		t.Fatalf("sign-out audit: %v %v", events, err)
	}
}

// TestTooLargeContactSnapshot: a contact column too large for the session
// cookies (12 KB) no longer refuses the sign-in (issue 9, item 6: one
// large column never locks a user out): it is left out of the snapshot,
// the token and the headers, and the log names it and its size with what
// to change. (Before the bound, this sign-in got the friendly "too much
// profile data" page, which TestWriteSessionChunks still renders for a
// session too large for other reasons.)
func TestTooLargeContactSnapshot(t *testing.T) {
	h := newCookieHarness(t, 12000)
	ann := h.browser()
	resp, body := h.postSignIn(ann, "ann", "correct horse battery", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in with a 12 KB column: %d\n%.500s", resp.StatusCode, body)
	}
	if resp, body := h.get(ann, "/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in: %d\n%.300s", resp.StatusCode, body)
	}
	if got := h.orgClaim(); got != "" {
		t.Errorf("the upstream got %d bytes of the oversized column", len(got))
	}
	logs := h.log.String()
	if !strings.Contains(logs, "contact columns left out of the session") || !strings.Contains(logs, "bytes.adx_organizationname=12002") ||
		!strings.Contains(logs, "user_id=") {
		t.Errorf("the log lacks the cause:\n%s", logs)
	}
}

// TestBrowserKeepsChunkedSession signs in with a real Chromium, which drops
// any cookie over 4096 bytes: with an 11 KB session the user stays signed
// in across pages, and the browser holds three parts within the limit. It
// skips without a browser on $PATH, except when CI=true.
func TestBrowserKeepsChunkedSession(t *testing.T) {
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no chromium, chromium-browser or google-chrome on $PATH; CI=true needs the browser tests to run")
		}
		t.Skip("no chromium, chromium-browser or google-chrome on $PATH")
	}
	h := newCookieHarness(t, 6000)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(path), chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(acancel)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without the timeout
		t.Fatalf("start %s: %v", path, err)
	}
	ctx, tcancel := context.WithTimeout(ctx, 40*time.Second)
	t.Cleanup(tcancel)

	if _, err := chromedp.Run(ctx, chromedp.NavigateResponse(h.url("/.auth/signin?redirect_url=/orders/1"))); err != nil {
		t.Fatal(err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.SendKeys(chromedp.ID("login"), "ann"),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"+kb.Enter))
	if err != nil || resp == nil || resp.Status != http.StatusOK || !strings.HasSuffix(resp.URL, "/orders/1") {
		t.Fatalf("sign-in in the browser: %v, %+v", err, resp)
	}
	for i, step := range []time.Duration{0, 90 * time.Second, 3 * time.Minute} {
		h.clock.Advance(step) // a re-issue and a stamp check on the way
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(h.url("/orders/2")))
		if err != nil || resp == nil || resp.Status != http.StatusOK || !strings.HasSuffix(resp.URL, "/orders/2") {
			t.Fatalf("page %d in the browser: %v, %+v", i, err, resp)
		}
		if got := h.orgClaim(); got != orgText(6000) {
			t.Fatalf("page %d: the upstream's contact claim has %d bytes of the column", i, len(got))
		}
	}
	cookies, err := chromedp.Run(ctx, chromedp.Action[*network.GetCookiesResult](func(ctx context.Context, tg *chromedp.Target) (*network.GetCookiesResult, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{h.gw.URL}})
		return &res, err
	}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cookies.Cookies {
		if strings.HasPrefix(c.Name, "crmgate_session") && c.Name != "crmgate_session_csrf" {
			names = append(names, c.Name)
			if len(c.Name)+len(c.Value) > 4096 {
				t.Errorf("browser cookie %s is %d bytes", c.Name, len(c.Name)+len(c.Value))
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, chunkedParts) {
		t.Fatalf("the browser holds %v, want %v", names, chunkedParts)
	}
}

// TestUpstreamCannotSetGatewayCookies: Set-Cookie lines an upstream sends
// for the session cookie, its parts or the CSRF binding are dropped (an
// upstream could otherwise plant a session or break one); its own cookies
// pass, and the user stays signed in.
func TestUpstreamCannotSetGatewayCookies(t *testing.T) {
	h := newHarness(t, harnessConfig{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{"crmgate_session=planted; Path=/", " crmgate_session_2=x", "crmgate_session_csrf=fixed; Path=/",
			"app=1; Path=/", "crmgate_session_x=theirs"} {
			w.Header().Add("Set-Cookie", c)
		}
		fmt.Fprint(w, "ok")
	})})
	h.createUser("ann", "ann@example.test", "correct horse battery")
	c := h.browser()
	h.signIn(c, "ann", "correct horse battery")
	before := h.sessionCookie(c).Value
	resp, _ := h.get(c, "/account/x")
	got := resp.Header.Values("Set-Cookie")
	if len(got) != 2 || got[0] != "app=1; Path=/" || got[1] != "crmgate_session_x=theirs" {
		t.Errorf("Set-Cookie reaching the browser: %q", got)
	}
	if h.sessionCookie(c).Value != before {
		t.Error("the upstream replaced the session cookie")
	}
	if resp, _ := h.get(c, "/account/y"); resp.StatusCode != http.StatusOK {
		t.Errorf("signed out after the upstream's attempt: %d", resp.StatusCode)
	}
}
