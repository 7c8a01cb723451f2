package main

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/mail/mailtest"
)

// devMailURL is the mail page URL from the "Mail:" line of `crmgate dev`.
func devMailURL(t *testing.T, g *devGateway) string {
	t.Helper()
	re := regexp.MustCompile(`^Mail:  (http://\S+/\.auth/dev/mail) `)
	for _, line := range g.lines {
		if m := re.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
	t.Fatalf("crmgate dev printed no mail page:\n%s", strings.Join(g.lines, "\n"))
	return ""
}

// TestBrowserDevMail follows a newcomer without a mail server: the page
// printed by `crmgate dev` is empty, "Send a test mail" enqueues a mail in
// the gateway's outbox, the worker sends it with the real SMTP sender to
// the built-in capture, the page shows it (newest first, its plain text
// with the link clickable, its HTML sandboxed), and the link leads to the
// sign-in page and on to the account.
func TestBrowserDevMail(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)
	page := devMailURL(t, g)

	resp := open(t, ctx, "open the mail page", page)
	if resp.Status != http.StatusOK {
		t.Fatalf("mail page: status %d", resp.Status)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Captured mail" {
		t.Errorf("h1 = %q", h1)
	}
	if st := get(t, ctx, "status", chromedp.Text(chromedp.CSS("main .mail-empty"))); !strings.HasPrefix(st, "No mail yet.") {
		t.Errorf("empty page says %q", st)
	}
	screenshot(t, ctx, "devmail-empty")

	// Twice, so that the list has an order to check.
	for i := range 2 {
		navigation(t, ctx, "send a test mail", chromedp.Click(chromedp.Search(`//button[normalize-space()="Send a test mail"]`)))
		if loc := location(t, ctx); loc.Path != "/.auth/dev/mail/"+strconv.Itoa(i+1) {
			t.Fatalf("after sending: at %s, want the new message /.auth/dev/mail/%d", loc, i+1)
		}
		if i == 0 {
			open(t, ctx, "back to the list", page)
		}
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Your account at crmgate demo is approved" {
		t.Errorf("message h1 = %q", h1)
	}
	headers := get(t, ctx, "headers", chromedp.Text(chromedp.CSS("dl.mail-headers")))
	for _, want := range []string{"noreply@demo.crmgate.test", "alice@demo.crmgate.test", "Message-ID", "@demo.crmgate.test>"} {
		if !strings.Contains(headers, want) {
			t.Errorf("headers lack %q: %q", want, headers)
		}
	}
	// The Message-ID is the outbox event's: crmgate.<event id>.<created>.
	if !regexp.MustCompile(`<crmgate\.[0-9]+\.[0-9a-z]+@demo\.crmgate\.test>`).MatchString(headers) {
		t.Errorf("Message-ID is not the outbox event's: %q", headers)
	}
	text := get(t, ctx, "text", chromedp.Text(chromedp.CSS("pre.mail-text")))
	signin := g.url + "/.auth/signin?redirect_url=%2Faccount"
	if !strings.Contains(text, "Hello Alice,") || !strings.Contains(text, signin) {
		t.Errorf("text part = %q, want the greeting and %s", text, signin)
	}
	if src := get(t, ctx, "iframe", chromedp.AttributeValue(chromedp.CSS("iframe.mail-html"), "sandbox")); src.Value == "" ||
		strings.Contains(src.Value, "allow-scripts") || strings.Contains(src.Value, "allow-same-origin") {
		t.Errorf("iframe sandbox = %q", src.Value)
	}
	screenshot(t, ctx, "devmail-message")

	open(t, ctx, "the list", page)
	rows := get(t, ctx, "rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll("table.mail-list tbody tr a")].map(a => a.getAttribute("href"))`))
	if strings.Join(rows, ",") != "/.auth/dev/mail/2,/.auth/dev/mail/1" {
		t.Errorf("list links %v, want newest first", rows)
	}
	screenshot(t, ctx, "devmail-list")

	// On a phone nothing overflows sideways, the list nor a message.
	do(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	for _, p := range []string{page, page + "/1"} {
		open(t, ctx, "open "+p, p)
		if w := get(t, ctx, "scroll width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
			t.Errorf("%s is %d CSS pixels wide on a 390-pixel screen", p, w)
		}
	}
	screenshot(t, ctx, "devmail-phone")
	do(t, ctx, "desktop viewport", chromedp.EmulateViewport(1280, 900))

	// The link in the mail, clicked in the plain text, opens the sign-in
	// page; signing in lands on the page the link asked for.
	open(t, ctx, "message 1", page+"/1")
	navigation(t, ctx, "follow the mail's link", chromedp.Click(chromedp.CSS(`pre.mail-text a`)))
	checkSignInPage(t, ctx, "/account")
	alice := g.accounts["alice"]
	navigation(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("login"), alice.username),
		chromedp.SendKeys(chromedp.ID("password"), alice.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/account" {
		t.Errorf("after sign-in at %s, want /account", loc)
	}
}

// TestBrowserDevMailHTMLLink clicks the button in the mail's HTML part,
// inside the sandboxed frame: the link replaces the whole page (base
// target _top, allowed on a click only) with the sign-in page, and the
// frame's document has no access to the page (an opaque origin).
func TestBrowserDevMailHTMLLink(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	page := devMailURL(t, g)
	open(t, ctx, "open the mail page", page)
	navigation(t, ctx, "send a test mail", chromedp.Click(chromedp.Search(`//button[normalize-space()="Send a test mail"]`)))
	frameSel := chromedp.CSS("iframe.mail-html")
	do(t, ctx, "frame visible", chromedp.WaitVisible(frameSel))
	// The frame is sandboxed without allow-same-origin: the page cannot
	// read its document (contentDocument is null for an opaque origin).
	if opaque := get(t, ctx, "frame origin", chromedp.Evaluate[bool](`document.querySelector("iframe.mail-html").contentDocument === null`)); !opaque {
		t.Error("the page can read the sandboxed frame's document")
	}
	// The sandboxed frame is an opaque origin: Chromium runs it in its own
	// process, a separate target to attach to.
	var frameTarget target.ID
	for deadline := time.Now().Add(10 * time.Second); frameTarget == "" && time.Now().Before(deadline); {
		infos, err := chromedp.Targets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range infos {
			if info.Type == "iframe" && strings.HasSuffix(info.URL, "/.auth/dev/mail/1/html") {
				frameTarget = info.TargetID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if frameTarget == "" {
		t.Fatal("no target for the sandboxed frame")
	}
	fctx, fcancel := chromedp.NewContext(ctx, chromedp.WithTargetID(frameTarget))
	defer fcancel()
	if origin := get(t, fctx, "frame origin", chromedp.Evaluate[string](`String(self.origin)`)); origin != "null" {
		t.Errorf("frame origin = %q, want null (opaque)", origin)
	}
	screenshot(t, ctx, "devmail-html")
	do(t, fctx, "click the mail's button", chromedp.Click(chromedp.Search(`//a[normalize-space()="Sign in"]`)))
	for deadline := time.Now().Add(10 * time.Second); location(t, ctx).Path != "/.auth/signin" && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	do(t, ctx, "sign-in page loaded", chromedp.WaitVisible(chromedp.ID("login")))
	checkSignInPage(t, ctx, "/account")
}

// TestDevMailHonoursSMTPURL: with CRMGATE_SMTP_URL set, `crmgate dev` sends
// to that server, prints it (without a password), and serves no mail page.
func TestDevMailHonoursSMTPURL(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	url := "smtp://127.0.0.1:" + strconv.Itoa(srv.Port) + "?tls=none"
	g := startDevEnv(t, []string{"CRMGATE_SMTP_URL=" + url, "CRMGATE_SMTP_FROM=tests@example.test"})
	found := false
	for _, line := range g.lines {
		found = found || line == "Mail:  sent to "+url+" (CRMGATE_SMTP_URL)"
	}
	if !found {
		t.Errorf("no Mail line for %s:\n%s", url, strings.Join(g.lines, "\n"))
	}
	r, err := http.Get(g.url + "/.auth/dev/mail")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound || strings.Contains(string(b), "Captured mail") {
		t.Errorf("/.auth/dev/mail with an explicit server: %d", r.StatusCode)
	}
}
