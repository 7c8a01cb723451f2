package main

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/mail/mailtest"
)

// mailText returns the subject and the decoded text/plain part of a raw
// message as the SMTP server received it.
func regMailText(t *testing.T, raw []byte) (subject, text string) {
	t.Helper()
	m := decodeMail(t, mailtest.Message{Data: raw})
	return m.Subject, m.Text
}

// waitMail waits for a message to to whose subject contains want.
func regWaitMail(t *testing.T, srv *mailtest.Server, to, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range srv.Messages() {
			if !slices.Contains(m.To, to) {
				continue
			}
			if subject, text := regMailText(t, m.Data); strings.Contains(subject, want) {
				return text
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no mail %q to %s arrived", want, to)
	return ""
}

// registerInBrowser fills the registration form from the sign-in page's
// link and submits it.
func registerInBrowser(t *testing.T, ctx *browserTab, email, name string) {
	t.Helper()
	open(t, ctx.ctx, "open the sign-in page", ctx.base+"/.auth/signin")
	navigation(t, ctx.ctx, "follow the registration link", chromedp.Click(chromedp.CSS(`a[href^="/.auth/register"]`)))
	if h1 := get(t, ctx.ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Create an account" {
		t.Fatalf("h1 = %q", h1)
	}
	do(t, ctx.ctx, "fill the form",
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("first_name"), name),
		chromedp.SendKeys(chromedp.ID("last_name"), "Tester"))
	screenshot(t, ctx.ctx, ctx.prefix+"_form")
	navigation(t, ctx.ctx, "submit", chromedp.SendKeys(chromedp.ID("password"), "correct horse battery staple"+kb.Enter))
	if h1 := get(t, ctx.ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Check your email" {
		t.Fatalf("after registering: h1 = %q", h1)
	}
	screenshot(t, ctx.ctx, ctx.prefix+"_check_mail")
}

// browserTab is a tab and the gateway it talks to.
type browserTab struct {
	ctx    context.Context
	base   string
	prefix string // of the screenshot names
}

var confirmURLRE = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/\.auth/confirm\?token=[A-Za-z0-9_-]+`)

// confirmInBrowser follows the emailed link and presses the button.
func confirmInBrowser(t *testing.T, tab *browserTab, text string) {
	t.Helper()
	link := confirmURLRE.FindString(text)
	if !strings.HasPrefix(link, tab.base+"/.auth/confirm?token=") {
		t.Fatalf("no link to %s in the mail:\n%s", tab.base, text)
	}
	open(t, tab.ctx, "open the confirmation link", link)
	if h1 := get(t, tab.ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Confirm your email address" {
		t.Fatalf("confirm page h1 = %q", h1)
	}
	screenshot(t, tab.ctx, tab.prefix+"_confirm")
	navigation(t, tab.ctx, "confirm", chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
}

// TestBrowserRegisterOpen registers in open mode in `crmgate dev` (with
// contact creation in the emulator), reads the confirmation mail from a
// real SMTP server, follows its link, confirms, and signs in.
func TestBrowserRegisterOpen(t *testing.T) {
	browser := requireBrowser(t)
	srv := mailtest.Start(t, mailtest.Options{})
	g := startDevEnv(t, []string{"CRMGATE_SMTP_URL=smtp://127.0.0.1:" + strconv.Itoa(srv.Port) + "?tls=none",
		"CRMGATE_SMTP_FROM=crmgate demo <noreply@demo.crmgate.test>", "CRMGATE_REGISTRATION_MODE=open",
		"CRMGATE_REGISTRATION_CREATE_CONTACT=true"})
	tab := &browserTab{ctx: newBrowser(t, browser), base: g.url, prefix: "register_open"}
	disableScripts(t, tab.ctx)
	registerInBrowser(t, tab, "eve@demo.crmgate.test", "Eve")

	text := regWaitMail(t, srv, "eve@demo.crmgate.test", "Confirm your email address")
	confirmInBrowser(t, tab, text)
	h1 := get(t, tab.ctx, "h1", chromedp.Text(chromedp.CSS("main h1")))
	if h1 != "Your account is being set up" && h1 != "Your address is confirmed" {
		t.Fatalf("after confirming: h1 = %q", h1)
	}
	screenshot(t, tab.ctx, "register_open_confirmed")

	// Sign in; the contact is created by the outbox within moments.
	for attempt := 0; ; attempt++ {
		open(t, tab.ctx, "open the sign-in page", g.url+"/.auth/signin")
		navigation(t, tab.ctx, "sign in",
			chromedp.SendKeys(chromedp.ID("login"), "eve@demo.crmgate.test"),
			chromedp.SendKeys(chromedp.ID("password"), "correct horse battery staple"+kb.Enter))
		if loc := location(t, tab.ctx); !strings.HasPrefix(loc.Path, "/.auth/") {
			break
		}
		if attempt == 20 {
			t.Fatalf("still not signed in at %s: %s", location(t, tab.ctx), get(t, tab.ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))))
		}
		time.Sleep(250 * time.Millisecond)
	}
	open(t, tab.ctx, "open the account page", g.url+"/account")
	screenshot(t, tab.ctx, "register_open_signed_in")
	claims := upstreamClaims(t, tab.ctx)
	if claims["email"] != "eve@demo.crmgate.test" {
		t.Errorf("claims = %v", claims)
	}
	if c, ok := claims["contact"].(map[string]any); !ok || c["id"] == "" {
		t.Errorf("not bound to the created contact: %v", claims["contact"])
	}
}

// TestBrowserRegisterApproval registers in approval mode up to the page
// that says the account waits for approval, and the mail that says so.
func TestBrowserRegisterApproval(t *testing.T) {
	browser := requireBrowser(t)
	srv := mailtest.Start(t, mailtest.Options{})
	g := startDevEnv(t, []string{"CRMGATE_SMTP_URL=smtp://127.0.0.1:" + strconv.Itoa(srv.Port) + "?tls=none",
		"CRMGATE_SMTP_FROM=noreply@demo.crmgate.test", "CRMGATE_REGISTRATION_MODE=approval"})
	tab := &browserTab{ctx: newBrowser(t, browser), base: g.url, prefix: "register_approval"}
	disableScripts(t, tab.ctx)
	registerInBrowser(t, tab, "pat@demo.crmgate.test", "Pat")
	confirmInBrowser(t, tab, regWaitMail(t, srv, "pat@demo.crmgate.test", "Confirm your email address"))
	if h1 := get(t, tab.ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Waiting for approval" {
		t.Fatalf("after confirming: h1 = %q", h1)
	}
	screenshot(t, tab.ctx, "register_approval_pending")
	regWaitMail(t, srv, "pat@demo.crmgate.test", "waiting for approval")
}
