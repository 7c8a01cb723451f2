package proxy_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/proxy"
)

// mailPublicURL is the public URL the mails' links are built from: not the
// test listener's address, so that a link built from the request's Host
// could never pass for one built from the configuration.
const mailPublicURL = "https://portal.example.com"

func testComposer(t *testing.T) *mail.Composer {
	t.Helper()
	c, err := mail.NewComposer(mail.ComposerOptions{PublicURL: mailPublicURL, AuthPrefix: "/.auth", Site: mail.Site{Name: "Test Site"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// passwordHarness is a gateway with the password pages (mail composed,
// reset on), on db (nil: a fresh SQLite file).
func passwordHarness(t *testing.T, db *store.DB, mutate func(*proxy.Options)) *harness {
	t.Helper()
	return newHarness(t, harnessConfig{db: db, mutate: mutate, authz: func(o *wiring.Options) {
		o.Mail = testComposer(t)
		o.MaxOutstandingTokens = 3
	}})
}

// sentMail is one mail the outbox holds.
type sentMail struct {
	Type string
	mail.Message
}

// drainMails claims every pending outbox event (as the worker would, the
// others marked delivered) and returns the mails among them.
func drainMails(t *testing.T, db *store.DB) []sentMail {
	t.Helper()
	ctx := context.Background()
	var out []sentMail
	for {
		evs, err := db.ClaimOutbox(ctx, time.Now().Add(24*365*time.Hour), time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			if e.Kind == mail.Kind {
				var m mail.Message
				if err := json.Unmarshal(e.Payload, &m); err != nil {
					t.Fatal(err)
				}
				out = append(out, sentMail{Type: e.Type, Message: m})
			}
			if err := db.CompleteOutbox(ctx, e, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

var linkRE = regexp.MustCompile(`https?://[^\s"<>]+/\.auth/reset/confirm\?token=[A-Za-z0-9_-]+`)

// resetLink asks for a reset of login from c and returns the mailed link
// (nil when no mail went out).
func (h *harness) resetLink(c *http.Client, login string, hdr ...string) *url.URL {
	h.t.Helper()
	resp, body := h.postForm(c, "/.auth/reset", "/.auth/reset", url.Values{"login": {login}}, hdr...)
	if resp.StatusCode != 200 || !strings.Contains(body, "If an account matches") {
		h.t.Fatalf("reset request: %d\n%s", resp.StatusCode, body)
	}
	var link *url.URL
	for _, m := range drainMails(h.t, h.db) {
		if m.Type != "reset_password" {
			continue
		}
		found := linkRE.FindString(m.Text)
		if found == "" {
			h.t.Fatalf("reset mail without a link:\n%s", m.Text)
		}
		u, err := url.Parse(found)
		if err != nil {
			h.t.Fatal(err)
		}
		link = u
	}
	return link
}

// formToken loads page with c and returns its form's CSRF token.
func (h *harness) formToken(c *http.Client, page string) string {
	h.t.Helper()
	resp, body := h.get(c, page)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("no csrf_token on %s (%d):\n%s", page, resp.StatusCode, body)
	}
	return html.UnescapeString(m[1])
}

// postForm posts form to path as a same-origin browser, with the CSRF
// token of page (empty: none).
func (h *harness) postForm(c *http.Client, page, path string, form url.Values, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	if page != "" {
		form.Set("csrf_token", h.formToken(c, page))
	}
	req, _ := http.NewRequest("POST", h.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return h.do(c, req)
}

// confirmPath is the link's path and query on the test gateway.
func confirmPath(link *url.URL) string { return link.Path + "?" + link.RawQuery }

func TestResetEndToEnd(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	u := h.createUser("ana", "ana@example.com", "old password 123")
	// Two sessions of ana from before the reset.
	s1, s2 := h.browser(), h.browser()
	h.signIn(s1, "ana", "old password 123")
	h.signIn(s2, "ana@example.com", "old password 123")
	if resp, _ := h.get(s1, "/account/x"); resp.StatusCode != 200 {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}

	// The sign-in page links to the reset.
	if _, body := h.get(h.browser(), "/.auth/signin"); !strings.Contains(body, `href="/.auth/reset"`) {
		t.Fatalf("sign-in page without the reset link:\n%s", body)
	}

	c := h.browser()
	link := h.resetLink(c, "ANA@example.com")
	if link == nil {
		t.Fatal("no reset mail")
	}
	if got := link.Scheme + "://" + link.Host; got != mailPublicURL {
		t.Fatalf("link built from %s, want the public URL %s", got, mailPublicURL)
	}
	// The link can be fetched any number of times (mail scanners) without
	// being spent; the page keeps the secret out of Referer headers.
	for range 3 {
		resp, body := h.get(c, confirmPath(link))
		if resp.StatusCode != 200 || !strings.Contains(body, "Choose a new password") || !strings.Contains(body, `name="token"`) {
			t.Fatalf("confirm page: %d\n%s", resp.StatusCode, body)
		}
		if rp := resp.Header.Get("Referrer-Policy"); rp != "no-referrer" {
			t.Fatalf("Referrer-Policy %q", rp)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("Cache-Control %q", cc)
		}
	}
	secret := link.Query().Get("token")

	// A password the policy refuses leaves the link working.
	resp, body := h.postForm(c, confirmPath(link), "/.auth/reset/confirm", url.Values{"token": {secret}, "new_password": {"short"}})
	if resp.StatusCode != 400 || !strings.Contains(body, "aria-invalid") {
		t.Fatalf("weak password: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = h.postForm(c, confirmPath(link), "/.auth/reset/confirm", url.Values{"token": {secret}, "new_password": {"brand new password 456"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.auth/signin?password_changed=1" {
		t.Fatalf("reset: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := h.get(c, "/.auth/signin?password_changed=1"); !strings.Contains(body, "Your password was changed") {
		t.Fatalf("no notice:\n%s", body)
	}

	// Spent: the link works no more, not even for the form.
	if resp, body := h.get(c, confirmPath(link)); resp.StatusCode != 404 || !strings.Contains(body, "does not work any more") {
		t.Fatalf("reused link: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = h.postForm(c, "/.auth/reset", "/.auth/reset/confirm", url.Values{"token": {secret}, "new_password": {"third password 789"}})
	if resp.StatusCode != 404 {
		t.Fatalf("reused link POST: %d", resp.StatusCode)
	}

	// Every session from before ends at its next stamp check.
	h.clock.Advance(3 * time.Minute)
	for i, s := range []*http.Client{s1, s2} {
		if resp, _ := h.get(s, "/account/x"); resp.StatusCode != http.StatusFound {
			t.Fatalf("session %d survived the reset: %d", i+1, resp.StatusCode)
		}
	}
	// The old password is gone, the new one signs in.
	if resp, _ := h.postSignIn(h.browser(), "ana", "old password 123", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old password: %d", resp.StatusCode)
	}
	h.signIn(h.browser(), "ana", "brand new password 456")

	// The user was told, and the trail has it (never the secret).
	mails := drainMails(t, h.db)
	if !slices.ContainsFunc(mails, func(m sentMail) bool { return m.Type == "password_changed" && m.To == "ana@example.com" }) {
		t.Fatalf("no password_changed mail: %+v", mails)
	}
	evs, err := h.svc.Audit.ListAudit(context.Background(), audit.Filter{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
		if strings.Contains(e.Detail, secret) {
			t.Fatalf("audit detail holds the secret: %+v", e)
		}
	}
	for _, want := range []string{recovery.EventResetRequested, recovery.EventPasswordReset, "token.consumed", "token.refused"} {
		if !slices.Contains(types, want) {
			t.Errorf("audit lacks %s: %v", want, types)
		}
	}
}
