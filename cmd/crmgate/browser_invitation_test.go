package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
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

// devMailEnv starts a real SMTP server for `crmgate dev` and returns it
// with the settings that send the gateway's mail there.
func devMailEnv(t *testing.T) (*mailtest.Server, []string) {
	t.Helper()
	srv := mailtest.Start(t, mailtest.Options{})
	return srv, []string{"CRMGATE_SMTP_URL=smtp://127.0.0.1:" + strconv.Itoa(srv.Port) + "?tls=none", "CRMGATE_SMTP_FROM=crmgate demo <noreply@demo.crmgate.test>"}
}

// waitMail waits for a mail to to with a link matching re and returns
// the link.
func invWaitMail(t *testing.T, srv *mailtest.Server, to string, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		msgs := srv.Messages()
		for i := len(msgs) - 1; i >= 0; i-- {
			if len(msgs[i].To) == 1 && msgs[i].To[0] == to {
				if link := re.FindString(mailText(t, msgs[i].Data)); link != "" {
					return link
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no mail to %s with a link matching %s within 20s", to, re)
	return ""
}

// meBody opens /.auth/me and returns its text. Chromium may still be
// replacing the document (its JSON viewer) when the body is first read,
// so a read that finds no node is tried again.
func meBody(t *testing.T, ctx context.Context, base string) string {
	t.Helper()
	open(t, ctx, "open /.auth/me", base+"/.auth/me")
	var err error
	for range 20 {
		var body string
		if body, err = chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("body"))); err == nil && body != "" {
			return body
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/.auth/me: %v", err)
	return ""
}

// devDataverse is a client of the emulator `crmgate dev` printed.
func devDataverse(t *testing.T, g *devGateway) *crmclient.Client {
	t.Helper()
	re := regexp.MustCompile(`^Dataverse: (http://127\.0\.0\.1:[0-9]+)/api/data/v9\.2/ \(emulator; tenant (\S+), client (\S+), secret (\S+)\)$`)
	for _, l := range g.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			c, err := crmclient.New(crmclient.Config{URL: m[1], AuthorityHost: m[1], TenantID: m[2], ClientID: m[3], ClientSecret: m[4], MaxRetries: -1})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("crmgate dev printed no Dataverse line:\n%s", strings.Join(g.lines, "\n"))
	return nil
}

// devDataDir is the data directory `crmgate dev` printed.
func invDevDataDir(t *testing.T, g *devGateway) string {
	t.Helper()
	for _, l := range g.lines {
		if rest, ok := strings.CutPrefix(l, "Data:  "); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatal("crmgate dev printed no data directory")
	return ""
}

// TestBrowserInvitationDataverse: a Power Pages invitation created in the
// emulator is redeemed in Chromium without JavaScript: the person chooses
// a username and password, a confirmation arrives at the contact's address
// on a real SMTP server, following it makes the account, the redemption is
// written back to the emulator (count, redeemed contact, status, web
// role), and the new user signs in bound to the contact.
func TestBrowserInvitationDataverse(t *testing.T) {
	browser := requireBrowser(t)
	smtp, env := devMailEnv(t)
	g := startDevEnv(t, env)
	dv := devDataverse(t, g)
	bg := context.Background()
	contact, err := dv.Create(bg, crmclient.SetContacts, map[string]any{"firstname": "Dana", "lastname": "Vu",
		"emailaddress1": "dana@demo.crmgate.test", "adx_identity_logonenabled": true})
	if err != nil {
		t.Fatal(err)
	}
	const partners = "d0000000-0000-4000-8000-000000000002"
	const code = "PP-7731-browser"
	inv, err := dv.Create(bg, crmclient.SetInvitations, map[string]any{"adx_name": "Invite Dana", "adx_invitationcode": code,
		"adx_type": crmclient.InvitationSingle, "adx_maximumredemptions": 1, "adx_redemptions": 0,
		"adx_inviteContact@odata.bind": "/contacts(" + contact.String() + ")"})
	if err != nil {
		t.Fatal(err)
	}
	if err := dv.Associate(bg, crmclient.SetInvitations, inv, "adx_invitation_webrole", crmclient.SetWebRoles, crmclient.MustParseGUID(partners)); err != nil {
		t.Fatal(err)
	}

	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)
	open(t, ctx, "open the invitation", g.url+"/.auth/invitation?code="+code)
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Accept your invitation" {
		t.Fatalf("h1 = %q", h1)
	}
	if email := get(t, ctx, "email", chromedp.Value(chromedp.ID("email"))); email != "d•••@demo.crmgate.test" {
		t.Errorf("shown address = %q, want it masked", email)
	}
	screenshot(t, ctx, "invitation_dataverse")
	do(t, ctx, "fill in", chromedp.SendKeys(chromedp.ID("username"), "dana"),
		chromedp.SendKeys(chromedp.ID("password"), "violet harbour lantern 42"))
	navigation(t, ctx, "submit", chromedp.SendKeys(chromedp.ID("password_confirm"), "violet harbour lantern 42"+kb.Enter))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Check your email" {
		t.Fatalf("after submit h1 = %q: %s", h1, get(t, ctx, "main", chromedp.Text(chromedp.CSS("main"))))
	}
	screenshot(t, ctx, "invitation_pending")
	link := invWaitMail(t, smtp, "dana@demo.crmgate.test", regexp.MustCompile(regexp.QuoteMeta(g.url)+`/\.auth/invitation/confirm\?token=[A-Za-z0-9_-]+`))
	open(t, ctx, "follow the confirmation link", link)
	navigation(t, ctx, "confirm", chromedp.Click(chromedp.CSS(`main form button[type="submit"]`)))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Welcome" {
		t.Fatalf("after confirming h1 = %q", h1)
	}
	screenshot(t, ctx, "invitation_done")

	// The write-back reaches the emulator through the outbox.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var row struct {
			Redemptions int     `json:"adx_redemptions"`
			Status      int     `json:"statuscode"`
			Redeemed    *string `json:"_adx_redeemedcontact_value"`
		}
		if _, err := dv.Retrieve(bg, crmclient.SetInvitations, crmclient.ByID(inv), crmclient.RetrieveOptions{
			Select: []string{"adx_redemptions", "statuscode", "_adx_redeemedcontact_value"}}, &row); err != nil {
			t.Fatal(err)
		}
		if row.Redemptions == 1 && row.Status == crmclient.InvitationStatusRedeemed && row.Redeemed != nil && *row.Redeemed == contact.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("invitation not written back within 20s: %+v", row)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ct, err := dv.GetContact(bg, contact, nil, crmclient.WebRoleModelStandard)
	if err != nil || !strings.Contains(strings.Join(ct.RoleNames(), ","), "Partners") {
		t.Fatalf("contact roles after the write-back: %v, %v", ct, err)
	}

	navigation(t, ctx, "go to sign in", chromedp.Click(chromedp.CSS("main a.button")))
	do(t, ctx, "login", chromedp.SendKeys(chromedp.ID("login"), "dana"))
	navigation(t, ctx, "sign in", chromedp.SendKeys(chromedp.ID("password"), "violet harbour lantern 42"+kb.Enter))
	if body := meBody(t, ctx, g.url); !strings.Contains(body, contact.String()) || !strings.Contains(body, "Partners") {
		t.Fatalf("/.auth/me after redeeming: %s", body)
	}
}

// TestBrowserInvitationCrmgate: an invitation created with `crmgate
// invitations create` is mailed over a real SMTP server; its link opens in
// Chromium without JavaScript, the person chooses a username and password,
// and signs in with the invitation's local role and redirect.
func TestBrowserInvitationCrmgate(t *testing.T) {
	browser := requireBrowser(t)
	smtp, env := devMailEnv(t)
	g := startDevEnv(t, env)
	var out bytes.Buffer
	cliEnv := []string{"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(invDevDataDir(t, g), "crmgate.db"), "CRMGATE_PUBLIC_URL=" + g.url}
	if err := run(context.Background(), []string{"invitations", "create", "--email", "erin@demo.crmgate.test", "--roles", "member",
		"--redirect", "/account"}, cliEnv, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatalf("invitations create: %v", err)
	}
	link := invWaitMail(t, smtp, "erin@demo.crmgate.test", regexp.MustCompile(regexp.QuoteMeta(g.url)+`/\.auth/invitation\?code=[A-Za-z0-9_-]+`))
	if strings.Contains(out.String(), link[strings.Index(link, "code=")+5:]) {
		t.Fatal("the CLI printed the code")
	}
	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)
	open(t, ctx, "follow the invitation link", link)
	if email := get(t, ctx, "email", chromedp.Value(chromedp.ID("email"))); email != "erin@demo.crmgate.test" {
		t.Errorf("shown address = %q", email)
	}
	screenshot(t, ctx, "invitation_crmgate")
	do(t, ctx, "fill in", chromedp.SendKeys(chromedp.ID("username"), "erin"),
		chromedp.SendKeys(chromedp.ID("password"), "amber meadow compass 17"))
	navigation(t, ctx, "submit", chromedp.SendKeys(chromedp.ID("password_confirm"), "amber meadow compass 17"+kb.Enter))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "Welcome" {
		t.Fatalf("after submit h1 = %q: %s", h1, get(t, ctx, "main", chromedp.Text(chromedp.CSS("main"))))
	}
	navigation(t, ctx, "go to sign in", chromedp.Click(chromedp.CSS("main a.button")))
	do(t, ctx, "login", chromedp.SendKeys(chromedp.ID("login"), "erin"))
	navigation(t, ctx, "sign in", chromedp.SendKeys(chromedp.ID("password"), "amber meadow compass 17"+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/account" {
		t.Errorf("after sign-in at %s, want the invitation's redirect /account", loc)
	}
	if body := meBody(t, ctx, g.url); !strings.Contains(body, `"member"`) {
		t.Fatalf("/.auth/me: %s", body)
	}
	// The link is dead now.
	open(t, ctx, "reuse the link", link)
	if msg := get(t, ctx, "alert", chromedp.Text(chromedp.CSS(`[role="alert"]`))); !strings.Contains(msg, "invalid or has expired") {
		t.Errorf("reused link: %q", msg)
	}
	screenshot(t, ctx, "invitation_reused")
}
