package main

// Real-browser tests: `crmgate dev` runs in-process (run with the "dev"
// command, as a user starts it) and a headless Chromium, driven with
// chromedp, signs in, is refused, and signs out, the way a person would:
// by typing and pressing Enter, on pages that run no JavaScript.
//
// The browser is found on $PATH (chromium, chromium-browser, google-chrome).
// Without one the tests skip, except when CI=true: then they fail, so a CI
// image without a browser cannot pass silently.
//
// go test -run Browser ./cmd/crmgate/ -browser-screenshots=DIR keeps the
// screenshots the tests take in DIR (for example testdata) for a person to
// look at; without the flag they go to a temporary directory.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

var browserScreenshots = flag.String("browser-screenshots", "",
	"directory that keeps the screenshots of the browser tests (e.g. testdata); empty means a temporary directory")

// devAccount is a demo account as `crmgate dev` prints it.
type devAccount struct {
	username, password string
}

// devGateway is a running `crmgate dev` and what it printed on stdout.
type devGateway struct {
	url      string // public URL, from the "open" line
	lines    []string
	accounts map[string]devAccount

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

var (
	devOpenLine    = regexp.MustCompile(`^crmgate dev: open (http://127\.0\.0\.1:[0-9]+)$`)
	devAccountLine = regexp.MustCompile(`^  ([a-z]+) +password ([A-Z2-7]{16})  roles \[[a-z,]*\]$`)
)

// startDev runs `crmgate dev` on free ports until the test ends, and returns
// once it has printed its last line ("Press Ctrl-C to stop.").
func startDev(t *testing.T) *devGateway {
	t.Helper()
	return startDevEnv(t, nil)
}

// startDevEnv is startDev with environment variables (branding settings).
func startDevEnv(t *testing.T, environ []string) *devGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	g := &devGateway{cancel: cancel, done: make(chan error, 1), accounts: map[string]devAccount{}}
	go func() {
		err := run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"}, environ, nil, pw, io.Discard)
		pw.Close()
		g.done <- err
	}()
	printed := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.HasSuffix(sc.Text(), "Press Ctrl-C to stop.") {
				printed <- lines
				break
			}
		}
		// Keep draining so that run never blocks on a write to stdout.
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("crmgate dev returned %v, want nil", err)
		}
	})

	select {
	case g.lines = <-printed:
	case err := <-g.done:
		g.done <- err // for stop
		t.Fatalf("crmgate dev returned before it printed its accounts: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("crmgate dev printed no complete start-up message within 30s")
	}
	for _, line := range g.lines {
		if m := devOpenLine.FindStringSubmatch(line); m != nil {
			g.url = m[1]
		}
		if m := devAccountLine.FindStringSubmatch(line); m != nil {
			g.accounts[m[1]] = devAccount{username: m[1], password: m[2]}
		}
	}
	if g.url == "" || g.accounts["admin"].password == "" || g.accounts["alice"].password == "" {
		t.Fatalf("crmgate dev output lacks the URL or the admin and alice accounts:\n%s", strings.Join(g.lines, "\n"))
	}
	return g
}

// stop cancels run and waits for it to return; it returns run's error.
func (g *devGateway) stop() error {
	g.stopOnce.Do(func() {
		g.cancel()
		select {
		case g.stopErr = <-g.done:
		case <-time.After(20 * time.Second):
			g.stopErr = errors.New("run did not return within 20s of the cancellation")
		}
	})
	return g.stopErr
}

// requireBrowser returns the Chromium or Chrome executable on $PATH. Without
// one it skips the test, or fails it when CI=true.
func requireBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium, chromium-browser or google-chrome on $PATH; CI=true needs the browser tests to run")
	}
	t.Skip("no chromium, chromium-browser or google-chrome on $PATH")
	return ""
}

// newBrowser starts the browser at path, headless with a fresh profile (no
// cookies), and returns a tab context that ends after 40 s or with the test.
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	return newBrowserFor(t, path, 40*time.Second)
}

// newBrowserFor is newBrowser whose tab may be used for d (a test that
// waits for a long job between its steps).
func newBrowserFor(t *testing.T, path string, d time.Duration) context.Context {
	t.Helper()
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container; the pages are our own
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(actx)
	// Cleanups run last-in first-out: the browser stops before its profile
	// directory is removed.
	t.Cleanup(acancel)
	t.Cleanup(cancel)
	// The first Run starts the browser; it must not carry the timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	tctx, tcancel := context.WithTimeout(ctx, d)
	t.Cleanup(tcancel)
	return tctx
}

// do runs actions in the browser and fails the test on an error.
func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action in the browser and returns its value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// navigation runs actions that load a page (a navigation, a click, Enter in
// a form) and returns the HTTP response of the page that loads.
func navigation(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if resp == nil {
		t.Fatalf("%s: no HTTP response", what)
	}
	return resp
}

// open loads rawURL in the tab and returns the HTTP response of the page.
func open(t *testing.T, ctx context.Context, what, rawURL string) *network.Response {
	t.Helper()
	resp := get(t, ctx, what, chromedp.NavigateResponse(rawURL))
	if resp == nil {
		t.Fatalf("%s: no HTTP response", what)
	}
	return resp
}

// location is the URL of the page in the tab.
func location(t *testing.T, ctx context.Context) *url.URL {
	t.Helper()
	u, err := url.Parse(get(t, ctx, "location", chromedp.Location()))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// responseHeader is the value of a response header, found case-insensitively.
func responseHeader(resp *network.Response, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// activeElementID is the id of the focused element.
func activeElementID(t *testing.T, ctx context.Context) string {
	t.Helper()
	return get(t, ctx, "focused element", chromedp.Evaluate[string](`document.activeElement ? document.activeElement.id : ""`))
}

// disableScripts turns JavaScript off in the tab: the gateway's pages must
// work without it. The test still reads the page through DevTools.
func disableScripts(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "disable scripts", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	}))
}

// upstreamHeaders reads the demo page's "X-Current-User headers received" table.
func upstreamHeaders(t *testing.T, ctx context.Context) map[string]string {
	t.Helper()
	return get(t, ctx, "headers table", chromedp.Evaluate[map[string]string](`Object.fromEntries(
		[...document.querySelectorAll('section[aria-labelledby="headers-title"] tbody tr')]
			.map(tr => [tr.querySelector('th').textContent.trim(), tr.querySelector('td').textContent.trim()]))`))
}

// upstreamClaims reads the demo page's verified claims (it shows them only
// when the X-Current-User signature verified against the JWKS).
func upstreamClaims(t *testing.T, ctx context.Context) map[string]any {
	t.Helper()
	box := get(t, ctx, "identity box", chromedp.Text(chromedp.CSS(`section[aria-labelledby="identity-title"] .box`)))
	if !strings.HasPrefix(box, "Token valid") {
		t.Fatalf("demo app says %q, want a valid token", box)
	}
	raw := get(t, ctx, "claims", chromedp.TextContent(chromedp.CSS(`section[aria-labelledby="identity-title"] pre`)))
	var claims map[string]any
	if err := json.Unmarshal([]byte(raw), &claims); err != nil {
		t.Fatalf("claims %q: %v", raw, err)
	}
	return claims
}

// screenshot saves a full-page PNG of the tab as name.png and checks that it
// is a real picture: a PNG of the viewport's width with many colours.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	b := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if r := img.Bounds(); r.Dx() < 300 || r.Dy() < 300 {
		t.Errorf("screenshot %s is %v, want at least 300×300", name, r)
	}
	if n := colours(img, 3); n < 8 {
		t.Errorf("screenshot %s has %d colours, want a rendered page (≥ 8)", name, n)
	}
	dir := *browserScreenshots
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// colours counts distinct colours on a grid of step×step pixels.
func colours(img image.Image, step int) int {
	seen := map[[4]uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += step {
		for x := r.Min.X; x < r.Max.X; x += step {
			cr, cg, cb, ca := img.At(x, y).RGBA()
			seen[[4]uint32{cr, cg, cb, ca}] = true
		}
	}
	return len(seen)
}

// checkSignInPage checks that the tab shows the gateway's sign-in page, sent
// there from redirect (a path of the demo app).
func checkSignInPage(t *testing.T, ctx context.Context, redirect string) {
	t.Helper()
	loc := location(t, ctx)
	if loc.Path != "/.auth/signin" || loc.Query().Get("redirect_url") != redirect {
		t.Fatalf("at %s, want /.auth/signin?redirect_url=%s", loc, redirect)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Sign in" {
		t.Errorf("h1 = %q, want %q", h1, "Sign in")
	}
}

// TestBrowserSignInFlow follows a person: the account page sends them to
// sign in, they type with the keyboard on a page without JavaScript, land on
// the page they asked for with verified identity headers, are refused the
// admin area, and sign out.
func TestBrowserSignInFlow(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	alice := g.accounts["alice"]
	disableScripts(t, ctx)

	resp := open(t, ctx, "open /account", g.url+"/account")
	if resp.Status != http.StatusOK {
		t.Errorf("sign-in page status %d, want 200", resp.Status)
	}
	checkSignInPage(t, ctx, "/account")
	screenshot(t, ctx, "signin")

	for _, f := range []struct{ id, label string }{{"login", "Username or email"}, {"password", "Password"}} {
		sel := chromedp.CSS(`label[for="` + f.id + `"]`)
		do(t, ctx, "label of "+f.id, chromedp.WaitVisible(sel))
		if got := get(t, ctx, "label text", chromedp.Text(sel)); got != f.label {
			t.Errorf("label for %s = %q, want %q", f.id, got, f.label)
		}
	}
	if n := get(t, ctx, "scripts", chromedp.Evaluate[int](`document.scripts.length`)); n != 0 {
		t.Errorf("sign-in page has %d scripts, want none", n)
	}
	if id := activeElementID(t, ctx); id != "login" {
		t.Errorf("focus on %q, want the login field (autofocus)", id)
	}

	resp = navigation(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("login"), alice.username),
		chromedp.SendKeys(chromedp.ID("password"), alice.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/account" || resp.Status != http.StatusOK {
		t.Fatalf("after sign-in at %s (status %d), want /account (200)", loc, resp.Status)
	}
	body := get(t, ctx, "page text", chromedp.Text(chromedp.CSS("body")))
	for _, want := range []string{"Your account", "alice@demo.crmgate.test", `"preferred_username"`, "Alice Example · Profile · Sign out"} {
		if !strings.Contains(body, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	claims := upstreamClaims(t, ctx)
	headers := upstreamHeaders(t, ctx)
	if claims["preferred_username"] != "alice" || claims["email"] != "alice@demo.crmgate.test" || claims["iss"] != g.url {
		t.Errorf("claims = %v, want alice's with iss %s", claims, g.url)
	}
	if id := headers["X-Current-User-Id"]; id == "" || id != claims["sub"] {
		t.Errorf("X-Current-User-Id = %q, want the token's sub %v", id, claims["sub"])
	}
	if got := headers["X-Current-User-Email"]; got != "alice@demo.crmgate.test" {
		t.Errorf("X-Current-User-Email = %q", got)
	}
	cookies := get(t, ctx, "cookies section", chromedp.Text(chromedp.CSS(`section[aria-labelledby="cookies-title"]`)))
	if strings.Contains(cookies, "crmgate_") {
		t.Errorf("the gateway's cookies reached the upstream: %q", cookies)
	}
	screenshot(t, ctx, "account")

	// The admin area is refused by the gateway, with a request ID a person can quote.
	resp = open(t, ctx, "open /admin", g.url+"/admin")
	if resp.Status != http.StatusForbidden {
		t.Errorf("/admin as alice: status %d, want 403", resp.Status)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Access denied" {
		t.Errorf("403 page h1 = %q, want %q", h1, "Access denied")
	}
	rid := get(t, ctx, "request id", chromedp.Text(chromedp.CSS(".request-id")))
	if want := "Request ID: " + responseHeader(resp, "X-Request-Id"); rid != want || want == "Request ID: " {
		t.Errorf("request id line %q, want %q (the X-Request-Id header)", rid, want)
	}
	screenshot(t, ctx, "forbidden")

	// Sign out: the demo's link, the gateway's confirmation, the button.
	open(t, ctx, "back to /account", g.url+"/account")
	navigation(t, ctx, "sign-out link", chromedp.Click(chromedp.Search(`//header//a[normalize-space()="Sign out"]`)))
	if loc := location(t, ctx); loc.Path != "/.auth/signout" {
		t.Fatalf("sign-out link led to %s, want /.auth/signout", loc)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Sign out?" {
		t.Errorf("confirmation h1 = %q", h1)
	}
	screenshot(t, ctx, "signout")
	resp = navigation(t, ctx, "sign-out button", chromedp.Click(chromedp.CSS(`main form button[type="submit"]`)))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); resp.Status != http.StatusOK || h1 != "You have signed out" {
		t.Errorf("after sign-out: status %d, h1 %q; want 200, %q", resp.Status, h1, "You have signed out")
	}
	screenshot(t, ctx, "signedout")

	open(t, ctx, "open /account signed out", g.url+"/account")
	checkSignInPage(t, ctx, "/account")
}

// TestBrowserWrongPassword checks the failed sign-in page: one generic
// message announced as an alert, whether the account exists or not; the
// typed login kept, the password not; the fields marked invalid and the
// focus on the password, ready for another try.
func TestBrowserWrongPassword(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	const generic = "The username or password is incorrect, or the account is temporarily locked."

	tests := []struct {
		name, login, password string
	}{
		{"wrong password", "alice", "not-" + g.accounts["alice"].password},
		{"unknown account", "nobody@demo.crmgate.test", g.accounts["alice"].password},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open(t, ctx, "open sign-in", g.url+"/.auth/signin?redirect_url=%2Faccount")
			resp := navigation(t, ctx, "sign in",
				chromedp.SendKeys(chromedp.ID("login"), tt.login),
				chromedp.SendKeys(chromedp.ID("password"), tt.password+kb.Enter))
			if resp.Status != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.Status)
			}
			alert := chromedp.CSS(`#signin-error`)
			do(t, ctx, "error visible", chromedp.WaitVisible(alert))
			if got := get(t, ctx, "error text", chromedp.Text(alert)); got != generic {
				t.Errorf("error %q, want %q", got, generic)
			}
			if got := get(t, ctx, "role", chromedp.AttributeValue(alert, "role")); got.Value != "alert" {
				t.Errorf("error role = %q, want alert", got.Value)
			}
			if got := get(t, ctx, "login value", chromedp.Value(chromedp.ID("login"))); got != tt.login {
				t.Errorf("login field = %q, want the typed %q", got, tt.login)
			}
			if got := get(t, ctx, "password value", chromedp.Value(chromedp.ID("password"))); got != "" {
				t.Errorf("password field was filled in again (%d characters)", len(got))
			}
			for _, id := range []string{"login", "password"} {
				attrs := get(t, ctx, id+" attributes", chromedp.Attributes(chromedp.ID(id)))
				if attrs["aria-invalid"] != "true" || attrs["aria-describedby"] != "signin-error" {
					t.Errorf("%s: aria-invalid=%q aria-describedby=%q, want true and signin-error", id, attrs["aria-invalid"], attrs["aria-describedby"])
				}
			}
			if id := activeElementID(t, ctx); id != "password" {
				t.Errorf("focus on %q, want the password field", id)
			}
			if loc := location(t, ctx); loc.Path != "/.auth/signin" {
				t.Errorf("at %s, want /.auth/signin", loc)
			}
			if got := get(t, ctx, "redirect_url", chromedp.Value(chromedp.CSS(`input[name="redirect_url"]`))); got != "/account" {
				t.Errorf("redirect_url = %q, want it kept for the next try", got)
			}
		})
	}
	screenshot(t, ctx, "signin-error")
}

// TestBrowserAdmin signs the admin in with the keyboard alone (autofocus,
// Tab, Enter) and checks the demo app sees the verified admin role.
func TestBrowserAdmin(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	admin := g.accounts["admin"]

	open(t, ctx, "open /admin", g.url+"/admin")
	checkSignInPage(t, ctx, "/admin")
	if id := activeElementID(t, ctx); id != "login" {
		t.Fatalf("focus on %q, want the login field", id)
	}
	resp := navigation(t, ctx, "sign in", chromedp.KeyEvent(admin.username+kb.Tab+admin.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/admin" || resp.Status != http.StatusOK {
		t.Fatalf("after sign-in at %s (status %d), want /admin (200)", loc, resp.Status)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Administration" {
		t.Errorf("h1 = %q, want Administration", h1)
	}
	if ok := get(t, ctx, "role box", chromedp.Text(chromedp.CSS("main > .box"))); ok != "Your verified token carries the admin role." {
		t.Errorf("demo app says %q, want the admin role confirmed", ok)
	}
	claims := upstreamClaims(t, ctx)
	if roles, _ := claims["roles"].([]any); len(roles) != 1 || roles[0] != "admin" {
		t.Errorf("roles claim = %v, want [admin]", claims["roles"])
	}
	if got := upstreamHeaders(t, ctx)["X-Current-User-Roles"]; got != "admin" {
		t.Errorf("X-Current-User-Roles = %q, want admin", got)
	}
	screenshot(t, ctx, "admin")
}

// TestBrowserSignInPageNarrow renders the sign-in page on a phone-sized
// viewport: nothing may overflow sideways.
func TestBrowserSignInPageNarrow(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	do(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	open(t, ctx, "open sign-in", g.url+"/.auth/signin")
	if w := get(t, ctx, "scroll width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("page is %d CSS pixels wide on a 390-pixel screen", w)
	}
	do(t, ctx, "button visible", chromedp.WaitVisible(chromedp.CSS(`button[type="submit"]`)))
	screenshot(t, ctx, "signin-phone")
}

// TestBrowserDevOutput checks what `crmgate dev` prints, line by line, since
// the README tells people to read it: where to go, the generated accounts,
// the ops URL, the mail page and the temporary data directory, which goes
// away on exit.
func TestBrowserDevOutput(t *testing.T) {
	g := startDev(t)
	patterns := []string{
		`^crmgate dev: open (http://127\.0\.0\.1:[0-9]+)$`,
		`^$`,
		`^Demo accounts \(generated for this run\):$`,
		`^  admin      password [A-Z2-7]{16}  roles \[admin\]$`,
		`^  alice      password [A-Z2-7]{16}  roles \[\]$`,
		`^  breakglass password [A-Z2-7]{16}  roles \[admin\]$`,
		`^  \(admin and alice are bound to demo contacts; breakglass is not: the break-glass admin signs in even while Dataverse is down\)$`,
		`^$`,
		`^Pages: (\S+) \(public\), (\S+) \(signed in\), (\S+) \(admin only\)$`,
		`^Admin: (http://127\.0\.0\.1:[0-9]+/\.auth/admin/) \(the admin console; sign in as admin or breakglass\)$`,
		`^Ops:   (http://127\.0\.0\.1:[0-9]+/metrics)$`,
		`^Mail:  (http://127\.0\.0\.1:[0-9]+/\.auth/dev/mail) \(every mail the gateway sends, captured here; none leaves this machine\)$`,
		`^Dataverse: (http://127\.0\.0\.1:[0-9]+)/api/data/v9\.2/ \(emulator; tenant (\S+), client (\S+), secret (\S+)\)$`,
		`^Data:  (\S+) \(deleted on exit\)\. Press Ctrl-C to stop\.$`,
	}
	if len(g.lines) != len(patterns) {
		t.Fatalf("crmgate dev printed %d lines, want %d:\n%s", len(g.lines), len(patterns), strings.Join(g.lines, "\n"))
	}
	var groups [][]string
	for i, p := range patterns {
		m := regexp.MustCompile(p).FindStringSubmatch(g.lines[i])
		if m == nil {
			t.Fatalf("line %d = %q, want it to match %s", i+1, g.lines[i], p)
		}
		groups = append(groups, m)
	}
	for _, page := range append(groups[8][1:], groups[9][1]) {
		if !strings.HasPrefix(page, g.url+"/") {
			t.Errorf("page %q is not on the gateway %s", page, g.url)
		}
	}

	// Metrics appear once the gateway has served a request.
	resp, err := http.Get(g.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(groups[10][1])
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(metrics, []byte("crmgate_")) {
		t.Errorf("ops URL %s: status %d, want 200 with crmgate_ metrics", groups[10][1], resp.StatusCode)
	}

	// The mail page is on the gateway and answers.
	if mailURL := groups[11][1]; !strings.HasPrefix(mailURL, g.url+"/") {
		t.Errorf("mail page %q is not on the gateway %s", mailURL, g.url)
	} else if r, err := http.Get(mailURL); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("mail page %s: %v %v", mailURL, r, err)
	} else {
		r.Body.Close()
	}

	other := startDev(t)
	for name, a := range g.accounts {
		if other.accounts[name].password == a.password {
			t.Errorf("%s has the same password in two runs", name)
		}
	}

	// The emulator answers with the printed credentials and has the demo contacts.
	dv := groups[12]
	tr, err := http.PostForm(dv[1]+"/"+dv[2]+"/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {dv[3]}, "client_secret": {dv[4]}, "scope": {dv[1] + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(tr.Body).Decode(&tok)
	tr.Body.Close()
	req, _ := http.NewRequest("GET", dv[1]+"/api/data/v9.2/contacts?$select=adx_identity_username", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	cr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	contacts, _ := io.ReadAll(cr.Body)
	cr.Body.Close()
	if cr.StatusCode != 200 || !bytes.Contains(contacts, []byte(`"alice"`)) || !bytes.Contains(contacts, []byte(`"admin"`)) {
		t.Fatalf("emulator contacts: %d %s", cr.StatusCode, contacts)
	}

	dataDir := groups[13][1]
	if _, err := os.Stat(dataDir); err != nil {
		t.Fatalf("data directory while running: %v", err)
	}
	if err := g.stop(); err != nil {
		t.Fatalf("run returned %v after cancellation, want nil", err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory %s after exit: %v, want it deleted", dataDir, err)
	}
}

// TestBrowserDevPrintedPages opens every page of the "Pages:" line of
// `crmgate dev` as the admin: each must be a page of the demo app, not its
// "Page not found".
func TestBrowserDevPrintedPages(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	var pages []string
	for _, line := range g.lines {
		if rest, ok := strings.CutPrefix(line, "Pages: "); ok {
			for _, f := range strings.Fields(rest) {
				if strings.HasPrefix(f, "http") {
					pages = append(pages, strings.TrimSuffix(f, ","))
				}
			}
		}
	}
	if len(pages) != 3 {
		t.Fatalf("Pages line lists %v, want 3 URLs", pages)
	}

	open(t, ctx, "open sign-in", g.url+"/.auth/signin")
	admin := g.accounts["admin"]
	navigation(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("login"), admin.username),
		chromedp.SendKeys(chromedp.ID("password"), admin.password+kb.Enter))
	for _, page := range pages {
		resp := open(t, ctx, "open "+page, page)
		h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("h1")))
		if resp.Status != http.StatusOK || h1 == "Page not found" {
			t.Errorf("%s (printed by crmgate dev): status %d, h1 %q; want a page of the demo app", page, resp.Status, h1)
		}
	}
}
