package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBrowserConsoleInvitations: in `crmgate dev`, without JavaScript,
// the admin creates an invitation (a bad address first: explained, the
// form kept), resends it, and revokes it after a confirmation; the mail
// of each send reaches the dev mail page, and the revoked code no longer
// opens the invitation page. Then the admin disables alice from her page,
// after a confirmation, and alice's account is disabled in the store.
func TestBrowserConsoleInvitations(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)
	signInConsole(t, ctx, g, "admin")

	open(t, ctx, "new invitation", g.url+"/.auth/admin/invitations/new")
	navigation(t, ctx, "a bad address", chromedp.SendKeys(chromedp.ID("email"), "not-an-address"+kb.Enter))
	if text := consoleText(t, ctx); !strings.Contains(strings.ToLower(text), "email") || !strings.Contains(text, "New invitation") {
		t.Fatalf("a bad address:\n%s", text)
	}
	do(t, ctx, "clear", chromedp.Clear(chromedp.ID("email")))
	navigation(t, ctx, "create", chromedp.SendKeys(chromedp.ID("email"), "fran@demo.crmgate.test"+kb.Enter))
	if text := consoleText(t, ctx); !strings.Contains(text, "The invitation was created") || !strings.Contains(text, "fran@demo.crmgate.test") {
		t.Fatalf("after creating:\n%s", text)
	}
	invPage := location(t, ctx).String()
	// code waits for a mail with another code than prev on the dev mail
	// page (newest first) and returns its code.
	code := func(prev string) string {
		t.Helper()
		re := regexp.MustCompile(`/\.auth/invitation\?code=([A-Za-z0-9_-]+)`)
		deadline := time.Now().Add(10 * time.Second)
		for {
			open(t, ctx, "dev mail", devMailURL(t, g))
			// The newest mail first; the link is in its plain text.
			hrefs := get(t, ctx, "mails", chromedp.Evaluate[[]string](`[...document.querySelectorAll("table.mail-list tbody tr a")].map(a => a.href)`))
			text := ""
			if len(hrefs) > 0 {
				open(t, ctx, "the newest mail", hrefs[0])
				text = get(t, ctx, "text", chromedp.Text(chromedp.CSS("pre.mail-text")))
				if m := re.FindStringSubmatch(text); m != nil && m[1] != prev {
					return m[1]
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new invitation link on the dev mail page:\n%s", text)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	first := code("")

	open(t, ctx, "the invitation", invPage)
	navigation(t, ctx, "resend", chromedp.Click(chromedp.CSS(`form[action$="/resend"] button`)))
	if text := consoleText(t, ctx); !strings.Contains(text, "mailed again with a new code") {
		t.Fatalf("after resending:\n%s", text)
	}
	second := code(first)

	open(t, ctx, "the invitation", invPage)
	navigation(t, ctx, "revoke", chromedp.Click(chromedp.CSS(`form[action$="/revoke"] button`)))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); !strings.Contains(h1, "Revoke the invitation of fran@demo.crmgate.test") {
		t.Fatalf("confirmation h1 %q", h1)
	}
	navigation(t, ctx, "confirm", chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")))
	if text := consoleText(t, ctx); !strings.Contains(text, "revoked") {
		t.Fatalf("after revoking:\n%s", text)
	}
	if resp := open(t, ctx, "the revoked code", g.url+"/.auth/invitation?code="+second); resp.Status != 404 {
		t.Errorf("the revoked code opens the invitation page: %d", resp.Status)
	}

	// Disable alice, after a confirmation.
	open(t, ctx, "alice's page", g.url+"/.auth/admin/users/"+devUser(t, g, "alice").ID)
	navigation(t, ctx, "disable", chromedp.Click(chromedp.CSS(`form[action$="/status"] button`)))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Disable alice?" {
		t.Fatalf("confirmation h1 %q", h1)
	}
	navigation(t, ctx, "confirm", chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")))
	if text := consoleText(t, ctx); !strings.Contains(text, "The account is disabled") {
		t.Fatalf("after disabling:\n%s", text)
	}
	if st := devUser(t, g, "alice").Status; st != "disabled" {
		t.Errorf("alice is %s in the store", st)
	}
}
