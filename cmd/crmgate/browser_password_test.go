package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/mail/mailtest"
)

// mailText returns the text/plain part of a raw message, decoded.
func mailText(t *testing.T, raw []byte) string {
	t.Helper()
	return decodeMail(t, mailtest.Message{Data: raw}).Text
}

// waitMail waits for a mail to to whose text matches re, and returns the
// match.
func waitMail(t *testing.T, srv *mailtest.Server, to string, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range srv.Messages() {
			if len(m.To) == 1 && m.To[0] == to {
				if s := re.FindString(mailText(t, m.Data)); s != "" {
					return s
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no mail to %s matching %s within 15s (%d messages)", to, re, len(srv.Messages()))
	return ""
}

func smtpEnv(srv *mailtest.Server) []string {
	return []string{"CRMGATE_SMTP_URL=smtp://127.0.0.1:" + strconv.Itoa(srv.Port) + "?tls=none", "CRMGATE_SMTP_FROM=noreply@demo.crmgate.test"}
}

// TestBrowserPasswordReset follows alice through a forgotten password in
// `crmgate dev` with a real SMTP server: the sign-in page's link, the
// request, the mail read from the server, its link opened in Chromium
// (without JavaScript), the new password, sign-in with it.
func TestBrowserPasswordReset(t *testing.T) {
	browser := requireBrowser(t)
	srv := mailtest.Start(t, mailtest.Options{})
	g := startDevEnv(t, smtpEnv(srv))
	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)
	alice := g.accounts["alice"]

	open(t, ctx, "sign-in page", g.url+"/.auth/signin")
	navigation(t, ctx, "forgot password", chromedp.Click(chromedp.CSS(`a[href="/.auth/reset"]`)))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Reset your password" {
		t.Fatalf("h1 = %q", h1)
	}
	screenshot(t, ctx, "reset_request")
	navigation(t, ctx, "request", chromedp.SendKeys(chromedp.ID("login"), "alice@demo.crmgate.test"+kb.Enter))
	if notice := get(t, ctx, "notice", chromedp.Text(chromedp.CSS(`.notice[role="status"]`))); !strings.Contains(notice, "If an account matches") {
		t.Fatalf("notice = %q", notice)
	}
	screenshot(t, ctx, "reset_sent")

	link := waitMail(t, srv, "alice@demo.crmgate.test", regexp.MustCompile(`http://\S+/\.auth/reset/confirm\?token=[A-Za-z0-9_-]+`))
	if !strings.HasPrefix(link, g.url+"/") {
		t.Fatalf("link %s is not on the public URL %s", link, g.url)
	}
	resp := open(t, ctx, "open the link", link)
	if rp := responseHeader(resp, "Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("Referrer-Policy = %q", rp)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Choose a new password" {
		t.Fatalf("h1 = %q", h1)
	}
	if ac := get(t, ctx, "autocomplete", chromedp.AttributeValue(chromedp.ID("new_password"), "autocomplete")); ac.Value != "new-password" {
		t.Errorf("autocomplete = %q", ac.Value)
	}
	screenshot(t, ctx, "reset_confirm")
	navigation(t, ctx, "save", chromedp.SendKeys(chromedp.ID("new_password"), "lilac harbour violin 42"+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/.auth/signin" {
		t.Fatalf("after the reset at %s", loc)
	}
	if notice := get(t, ctx, "notice", chromedp.Text(chromedp.CSS(`.notice[role="status"]`))); !strings.Contains(notice, "password was changed") {
		t.Errorf("notice = %q", notice)
	}
	screenshot(t, ctx, "reset_done")
	navigation(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("login"), alice.username),
		chromedp.SendKeys(chromedp.ID("password"), "lilac harbour violin 42"+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/" {
		t.Fatalf("after sign-in at %s", loc)
	}
	// The link was spent.
	open(t, ctx, "the link again", link)
	if txt := get(t, ctx, "alert", chromedp.Text(chromedp.CSS(`.alert[role="alert"]`))); !strings.Contains(txt, "does not work any more") {
		t.Errorf("reused link: %q", txt)
	}
	waitMail(t, srv, "alice@demo.crmgate.test", regexp.MustCompile(`password .*changed|changed .*password`))
}

// TestBrowserForcedPasswordChange: alice's contact has the configured
// password-change column true; after signing in she lands on the change
// page and nothing else opens until she changes it; afterwards the column
// is false in the emulator.
func TestBrowserForcedPasswordChange(t *testing.T) {
	browser := requireBrowser(t)
	g := startDevEnv(t, []string{"CRMGATE_PASSWORD_CHANGE_COLUMN=new_mustchangepassword"})
	var dv []string
	for _, l := range g.lines {
		if m := regexp.MustCompile(`^Dataverse: (http://\S+)/api/data/v9\.2/ \(emulator; tenant (\S+), client (\S+), secret (\S+)\)$`).FindStringSubmatch(l); m != nil {
			dv = m
		}
	}
	if dv == nil {
		t.Fatalf("no Dataverse line in:\n%s", strings.Join(g.lines, "\n"))
	}
	client, err := crmclient.New(crmclient.Config{URL: dv[1], AuthorityHost: dv[1], TenantID: dv[2], ClientID: dv[3], ClientSecret: dv[4]})
	if err != nil {
		t.Fatal(err)
	}
	dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	const aliceContact = "c0000000-0000-4000-8000-000000000002"
	bg := context.Background()
	if err := dir.UpdateContact(bg, aliceContact, map[string]any{"new_mustchangepassword": true}, ""); err != nil {
		t.Fatal(err)
	}
	column := func() any {
		c, err := dir.ContactByID(bg, aliceContact, []string{"new_mustchangepassword"})
		if err != nil {
			t.Fatal(err)
		}
		return c.Columns["new_mustchangepassword"]
	}

	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)
	alice := g.accounts["alice"]
	open(t, ctx, "account page", g.url+"/account")
	navigation(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("login"), alice.username),
		chromedp.SendKeys(chromedp.ID("password"), alice.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/.auth/password" || loc.Query().Get("redirect_url") != "/account" {
		t.Fatalf("after sign-in at %s, want the change page", loc)
	}
	if notice := get(t, ctx, "notice", chromedp.Text(chromedp.CSS(`.notice[role="status"]`))); !strings.Contains(notice, "must choose a new password") {
		t.Errorf("notice = %q", notice)
	}
	screenshot(t, ctx, "password_forced")
	for _, p := range []string{"/", "/.auth/profile", "/account"} {
		open(t, ctx, "open "+p, g.url+p)
		if loc := location(t, ctx); loc.Path != "/.auth/password" {
			t.Errorf("%s reached %s before the change", p, loc)
		}
	}
	navigation(t, ctx, "change",
		chromedp.SendKeys(chromedp.ID("current_password"), alice.password),
		chromedp.SendKeys(chromedp.ID("new_password"), "amber meadow cello 17"+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/account" {
		t.Fatalf("after the change at %s, want /account", loc)
	}
	screenshot(t, ctx, "password_changed_account")
	deadline := time.Now().Add(15 * time.Second)
	for column() != false {
		if time.Now().After(deadline) {
			t.Fatalf("the contact column is still %v", column())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
