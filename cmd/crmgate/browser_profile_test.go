package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/crmclient"
)

// TestBrowserProfile follows alice to her profile in `crmgate dev`: signed
// out, the page sends her to sign in and back; her names were pulled from
// her emulator contact; she changes her first name with the keyboard,
// without JavaScript, and the change reaches the contact in the emulator.
func TestBrowserProfile(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	alice := g.accounts["alice"]
	disableScripts(t, ctx)

	open(t, ctx, "open the profile", g.url+"/.auth/profile")
	checkSignInPage(t, ctx, "/.auth/profile")
	navigation(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("login"), alice.username),
		chromedp.SendKeys(chromedp.ID("password"), alice.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/.auth/profile" {
		t.Fatalf("after sign-in at %s, want /.auth/profile", loc)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Your profile" {
		t.Errorf("h1 = %q", h1)
	}
	for id, want := range map[string]string{"first_name": "Alice", "last_name": "Example", "email": "alice@demo.crmgate.test"} {
		if got := get(t, ctx, id, chromedp.Value(chromedp.ID(id))); got != want {
			t.Errorf("%s = %q, want %q (pulled from the contact)", id, got, want)
		}
	}
	if ro := get(t, ctx, "email readonly", chromedp.AttributeValue(chromedp.ID("email"), "readonly")); !ro.Exists {
		t.Error("the email field is editable")
	}
	if hint := get(t, ctx, "hint", chromedp.Text(chromedp.ID("first_name-hint"))); !strings.Contains(hint, "customer record") {
		t.Errorf("first name hint = %q", hint)
	}

	do(t, ctx, "clear first name", chromedp.Clear(chromedp.ID("first_name")))
	navigation(t, ctx, "save", chromedp.SendKeys(chromedp.ID("first_name"), "Alicia"+kb.Enter))
	if notice := get(t, ctx, "notice", chromedp.Text(chromedp.CSS(`.notice[role="status"]`))); notice != "Your profile was saved." {
		t.Errorf("notice = %q", notice)
	}
	if got := get(t, ctx, "first name", chromedp.Value(chromedp.ID("first_name"))); got != "Alicia" {
		t.Errorf("first name after save = %q", got)
	}
	if got := get(t, ctx, "display name", chromedp.Value(chromedp.ID("display_name"))); got != "Alicia Example" {
		t.Errorf("display name after save = %q, want the contact's recomputed fullname", got)
	}
	screenshot(t, ctx, "profile")

	// The emulator's contact has the new name.
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
	c, err := client.GetContact(context.Background(), crmclient.MustParseGUID("c0000000-0000-4000-8000-000000000002"), nil, crmclient.WebRoleModelStandard)
	if err != nil {
		t.Fatal(err)
	}
	if c.FirstName != "Alicia" || c.FullName != "Alicia Example" {
		t.Errorf("contact after the profile change: %q / %q", c.FirstName, c.FullName)
	}
}
