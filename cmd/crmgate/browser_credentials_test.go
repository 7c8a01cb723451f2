package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/mail/mailtest"
)

// The demo contacts without an account (demoSeed).
const (
	demoBea  = "c0000000-0000-4000-8000-000000000003"
	demoCarl = "c0000000-0000-4000-8000-000000000004"
)

// receivedMail is one mail the test SMTP server accepted, decoded.
type receivedMail struct {
	To, Subject, Text, HTML string
}

// decodeMail reads the subject and the text and HTML parts of m.
func decodeMail(t *testing.T, m mailtest.Message) receivedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("read mail: %v", err)
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	out := receivedMail{To: strings.Join(m.To, ","), Subject: subject}
	var walk func(header map[string][]string, body io.Reader)
	walk = func(header map[string][]string, body io.Reader) {
		h := mail.Header(header)
		mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil {
			t.Fatalf("content type %q: %v", h.Get("Content-Type"), err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			r := multipart.NewReader(body, params["boundary"])
			for {
				p, err := r.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(p.Header, p)
			}
		}
		switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			body = quotedprintable.NewReader(body)
		case "base64":
			body = base64.NewDecoder(base64.StdEncoding, body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		switch mt {
		case "text/plain":
			out.Text = string(b)
		case "text/html":
			out.HTML = string(b)
		}
	}
	walk(msg.Header, msg.Body)
	return out
}

// waitMails waits until the server holds n mails and returns them decoded.
func waitMails(t *testing.T, srv *mailtest.Server, n int) []receivedMail {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(srv.Messages()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d mails arrived within 20s, want %d", len(srv.Messages()), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var out []receivedMail
	for _, m := range srv.Messages() {
		out = append(out, decodeMail(t, m))
	}
	return out
}

// bypassCSP lets DevTools run apiFetch on the pages loaded from now on:
// their Content-Security-Policy allows no script and no fetch.
func bypassCSP(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "bypass CSP", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true})
		return err
	}))
}

// apiFetch calls the gateway's REST API from the page, with the browser's
// session cookie, as the admin's own script would (same origin), and
// returns the status and the body. Call bypassCSP before loading the page.
func apiFetch(t *testing.T, ctx context.Context, method, path, body string) (int, string) {
	t.Helper()
	js := fmt.Sprintf(`fetch(%q, {method: %q, headers: {"Content-Type": "application/json"}, body: %s, credentials: "same-origin"})
		.then(async r => ({status: r.status, body: await r.text()}))`, path, method, jsonString(body))
	type answer struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	a := get(t, ctx, method+" "+path, chromedp.Evaluate[answer](js, chromedp.EvalAwaitPromise))
	return a.Status, a.Body
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// devDataDir is the temporary directory `crmgate dev` printed.
func devDataDir(t *testing.T, g *devGateway) string {
	t.Helper()
	re := regexp.MustCompile(`^Data:  (.+) \(deleted on exit\)`)
	for _, l := range g.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no Data line in:\n%s", strings.Join(g.lines, "\n"))
	return ""
}

// signInAdmin signs the demo admin in through the sign-in page.
func signInAdmin(t *testing.T, ctx context.Context, g *devGateway) {
	t.Helper()
	admin := g.accounts["admin"]
	open(t, ctx, "open /admin", g.url+"/admin")
	checkSignInPage(t, ctx, "/admin")
	navigation(t, ctx, "sign in", chromedp.KeyEvent(admin.username+kb.Tab+admin.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/admin" {
		t.Fatalf("after sign-in at %s, want /admin", loc)
	}
}

// TestBrowserGenerateCredentials: in `crmgate dev`, with a real SMTP
// server, the signed-in admin generates credentials through the REST API
// for the demo contacts Bea and Carl (and alice, who has an account and is
// skipped); each gets one set-password mail, read from the server, whose
// link is the gateway's /.auth/reset/confirm?purpose=set_password page. A
// rerun sends nothing more. Bea then follows her link in a browser of her
// own, chooses her password on the "Choose your password" page, and signs
// in bound to her contact.
func TestBrowserGenerateCredentials(t *testing.T) {
	browser := requireBrowser(t)
	smtpSrv := mailtest.Start(t, mailtest.Options{})
	g := startDevEnv(t, []string{"CRMGATE_SMTP_URL=smtp://" + smtpSrv.Addr() + "?tls=none", "CRMGATE_SMTP_FROM=Demo <noreply@demo.crmgate.test>"})
	ctx := newBrowser(t, browser)
	bypassCSP(t, ctx)
	signInAdmin(t, ctx, g)

	body := `{"contact_ids":["` + demoBea + `","` + demoCarl + `","c0000000-0000-4000-8000-000000000002"]}`
	status, answer := apiFetch(t, ctx, "POST", "/.auth/api/users/invite-contacts", body)
	if status != 200 || !strings.Contains(answer, `"summary":{"created":2,"would_create":0,"skipped":1,"failed":0}`) {
		t.Fatalf("invite-contacts: %d %s", status, answer)
	}
	mails := waitMails(t, smtpSrv, 2)
	linkRE := regexp.MustCompile(regexp.QuoteMeta(g.url) + `/\.auth/reset/confirm\?[^\s"<>]+`)
	seen := map[string]bool{}
	beaLink := ""
	for _, m := range mails {
		link := linkRE.FindString(m.Text)
		u, err := url.Parse(link)
		if err != nil || u.Query().Get("purpose") != "set_password" || len(u.Query().Get("token")) != 43 {
			t.Fatalf("mail to %s: link %q (%v) in\n%s", m.To, link, err, m.Text)
		}
		if !strings.Contains(m.HTML, strings.ReplaceAll(link, "&", "&amp;")) || !strings.Contains(m.Text, "7 days") {
			t.Errorf("mail to %s: the HTML lacks the link or the text the expiry:\n%s", m.To, m.Text)
		}
		seen[m.To] = true
		if m.To == "bea@demo.crmgate.test" {
			beaLink = link
		}
	}
	if !seen["bea@demo.crmgate.test"] || !seen["carl@demo.crmgate.test"] || mails[0].Subject != "Your account at crmgate demo" {
		t.Errorf("mails to %v, subject %q", seen, mails[0].Subject)
	}
	// The mail as the person sees it.
	open(t, ctx, "show the mail", "data:text/html;base64,"+base64.StdEncoding.EncodeToString([]byte(mails[0].HTML)))
	screenshot(t, ctx, "credentials-mail")

	// A rerun: both skipped, nothing sent.
	open(t, ctx, "back to the gateway", g.url+"/admin")
	status, answer = apiFetch(t, ctx, "POST", "/.auth/api/users/invite-contacts", `{"filter":"jobtitle eq 'Buyer'"}`)
	if status != 200 || !strings.Contains(answer, `"summary":{"created":0,"would_create":0,"skipped":2,"failed":0}`) {
		t.Fatalf("rerun: %d %s", status, answer)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(smtpSrv.Messages()); n != 2 {
		t.Errorf("%d mails after the rerun, want 2", n)
	}

	// Bea, in her own browser, without JavaScript.
	bea := newBrowser(t, browser)
	disableScripts(t, bea)
	open(t, bea, "Bea's link", beaLink)
	if title := get(t, bea, "title", chromedp.Title()); !strings.Contains(title, "Choose your password") {
		t.Fatalf("set-password page title %q", title)
	}
	screenshot(t, bea, "credentials-set-password")
	navigation(t, bea, "choose", chromedp.SendKeys(chromedp.ID("new_password"), "copper meadow lantern 7"+kb.Enter))
	if loc := location(t, bea); loc.Path != "/.auth/signin" {
		t.Fatalf("after choosing the password at %s, want the sign-in page", loc)
	}
	navigation(t, bea, "sign in", chromedp.SendKeys(chromedp.ID("login"), "bea@demo.crmgate.test"),
		chromedp.SendKeys(chromedp.ID("password"), "copper meadow lantern 7"+kb.Enter))
	me := meBody(t, bea, g.url)
	if !strings.Contains(me, `"id":"`+demoBea+`"`) || !strings.Contains(me, `"username":"bea@demo.crmgate.test"`) {
		t.Fatalf("/.auth/me after Bea's first sign-in: %s", me)
	}
	// The link is spent.
	open(t, bea, "Bea's link again", beaLink)
	if body := get(t, bea, "page", chromedp.Text(chromedp.CSS("main"))); !strings.Contains(strings.ToLower(body), "expired") &&
		!strings.Contains(strings.ToLower(body), "invalid") {
		t.Errorf("a spent set-password link shows:\n%s", body)
	}
}

// TestBrowserApproval: a registration waiting for approval (created with
// crmgate users create --status pending against the dev database) cannot
// sign in; the admin approves it through the REST API from the browser;
// the approval mail arrives at a real SMTP server; its sign-in link opens
// the sign-in page, where the person signs in.
func TestBrowserApproval(t *testing.T) {
	browser := requireBrowser(t)
	smtpSrv := mailtest.Start(t, mailtest.Options{})
	g := startDevEnv(t, []string{"CRMGATE_SMTP_URL=smtp://" + smtpSrv.Addr() + "?tls=none", "CRMGATE_SMTP_FROM=noreply@demo.crmgate.test"})
	dbEnv := []string{"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(devDataDir(t, g), "crmgate.db"), "CRMGATE_PUBLIC_URL=" + g.url}
	const pw = "sunrise over a quiet harbour"
	if err := run(context.Background(), []string{"users", "create", "--username", "dora", "--email", "dora@demo.crmgate.test",
		"--name", "Dora Newcomer", "--status", "pending", "--password-stdin"}, dbEnv, strings.NewReader(pw+"\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}

	// Pending: the right password gets the same answer as a wrong one.
	dora := newBrowser(t, browser)
	open(t, dora, "sign-in page", g.url+"/.auth/signin")
	resp := navigation(t, dora, "sign in while pending", chromedp.KeyEvent("dora"+kb.Tab+pw+kb.Enter))
	if resp.Status != 401 {
		t.Fatalf("pending sign-in: status %d, want 401", resp.Status)
	}

	admin := newBrowser(t, browser)
	bypassCSP(t, admin)
	signInAdmin(t, admin, g)
	status, answer := apiFetch(t, admin, "POST", "/.auth/api/users/dora/approve", "")
	if status != 200 || !strings.Contains(answer, `"status":"active"`) {
		t.Fatalf("approve: %d %s", status, answer)
	}
	if status, answer := apiFetch(t, admin, "POST", "/.auth/api/users/dora/reject", `{"reason":"too late"}`); status != 409 || !strings.Contains(answer, "not_pending") {
		t.Errorf("reject after approval: %d %s", status, answer)
	}
	m := waitMails(t, smtpSrv, 1)[0]
	if m.To != "dora@demo.crmgate.test" || !strings.Contains(m.Subject, "approved") {
		t.Fatalf("approval mail %+v", m)
	}
	link := regexp.MustCompile(regexp.QuoteMeta(g.url) + `/\.auth/signin\b`).FindString(m.Text)
	if link == "" {
		t.Fatalf("no sign-in link in\n%s", m.Text)
	}
	open(t, dora, "the mail's link", link)
	screenshot(t, dora, "approval-signin")
	navigation(t, dora, "sign in", chromedp.KeyEvent("dora"+kb.Tab+pw+kb.Enter))
	if loc := location(t, dora); loc.Path != "/" || strings.HasPrefix(loc.Path, "/.auth/signin") {
		t.Errorf("after sign-in at %s", loc)
	}
	screenshot(t, dora, "approval-signed-in")
}
