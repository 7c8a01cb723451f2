package proxy_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
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

// TestResetHostileLinks: every link that is not an outstanding reset link
// of its purpose gets the same "does not work" page and spends nothing.
func TestResetHostileLinks(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	u := h.createUser("ben", "ben@example.com", "old password 123")
	ctx := context.Background()
	issue := func(p tokens.Purpose, ttl time.Duration) string {
		s, _, err := h.svc.Tokens.Issue(ctx, p, u.ID, ttl, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	reset := issue(tokens.PurposeResetPassword, time.Hour)
	confirm := issue(tokens.PurposeConfirmEmail, time.Hour)
	setpw := issue(tokens.PurposeSetPassword, time.Hour)
	expiring := issue(tokens.PurposeResetPassword, time.Minute)
	tampered := []byte(reset)
	if tampered[5] == 'A' {
		tampered[5] = 'B'
	} else {
		tampered[5] = 'A'
	}
	c := h.browser()
	refused := func(name, q string) {
		t.Helper()
		resp, body := h.get(c, "/.auth/reset/confirm?"+q)
		if resp.StatusCode != 404 || !strings.Contains(body, "does not work any more") || strings.Contains(body, `name="token"`) {
			t.Errorf("%s: GET %d\n%s", name, resp.StatusCode, body)
		}
		v, _ := url.ParseQuery(q)
		form := url.Values{"token": {v.Get("token")}, "new_password": {"a good new password 1"}}
		if p := v.Get("purpose"); p != "" {
			form.Set("purpose", p)
		}
		if resp, _ := h.postForm(c, "/.auth/reset", "/.auth/reset/confirm", form); resp.StatusCode != 404 {
			t.Errorf("%s: POST %d", name, resp.StatusCode)
		}
	}
	refused("tampered", "token="+string(tampered))
	refused("garbage", "token=%3Cscript%3E")
	refused("empty", "token=")
	refused("too long", "token="+strings.Repeat("A", 500))
	refused("confirm_email token as reset", "token="+confirm)
	refused("set_password token as reset", "token="+setpw)
	refused("reset token as set_password", "token="+reset+"&purpose=set_password")
	refused("unknown purpose", "token="+reset+"&purpose=invitation")
	// The clock only moves forward: a clock stepped back finds the link
	// throttle's recently used bucket at worst empty (package throttle).
	h.clock.Advance(2 * time.Minute)
	refused("expired", "token="+expiring)
	// None of it spent the real links: the reset one still works, and the
	// set-password one as what it is.
	resp, body := h.get(c, "/.auth/reset/confirm?token="+setpw+"&purpose=set_password")
	if resp.StatusCode != 200 || !strings.Contains(body, "Choose your password") {
		t.Fatalf("set_password link: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = h.postForm(c, "/.auth/reset/confirm?token="+reset, "/.auth/reset/confirm", url.Values{"token": {reset}, "new_password": {"a good new password 1"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the real link: %d", resp.StatusCode)
	}
	// The password changed: the set-password link died with it.
	if resp, _ := h.get(c, "/.auth/reset/confirm?token="+setpw+"&purpose=set_password"); resp.StatusCode != 404 {
		t.Fatalf("set_password link after the change: %d", resp.StatusCode)
	}
}

// TestResetLinkDiesWithOtherChange: a password set by another path
// (administrator, change page) revokes the outstanding reset links.
func TestResetLinkDiesWithOtherChange(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	h.createUser("cat", "cat@example.com", "old password 123")
	link := h.resetLink(h.browser(), "cat")
	if err := h.svc.Accounts.SetPassword(context.Background(), "cat", "admin set password 1", "admin"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := h.get(h.browser(), confirmPath(link)); resp.StatusCode != 404 {
		t.Fatalf("reset link after an administrator's change: %d", resp.StatusCode)
	}
}

// TestSetPasswordLink: the "choose your password" link sets the password
// and confirms the address.
func TestSetPasswordLink(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	u := h.createUser("dan", "dan@example.com", "")
	secret, _, err := h.svc.Tokens.Issue(context.Background(), tokens.PurposeSetPassword, u.ID, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := h.browser()
	page := "/.auth/reset/confirm?token=" + secret + "&purpose=set_password"
	resp, _ := h.postForm(c, page, "/.auth/reset/confirm", url.Values{"token": {secret}, "purpose": {"set_password"}, "new_password": {"my first password 1"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("set password: %d", resp.StatusCode)
	}
	got, err := h.svc.Accounts.UserByID(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.EmailConfirmed {
		t.Fatal("email not confirmed by the set-password link")
	}
	h.signIn(h.browser(), "dan", "my first password 1")
}

// TestResetEnumeration: an existing account, an unknown one, a disabled
// and a pending one get byte-identical answers, in about the same time.
func TestResetEnumeration(t *testing.T) {
	h := passwordHarness(t, nil, func(o *proxy.Options) { o.TrustedProxies = []string{"127.0.0.1/32"} })
	const n = 60
	for i := range n {
		h.createUser("user"+itoa(i), "user"+itoa(i)+"@example.com", "a password 12345")
	}
	off := h.createUser("off", "off@example.com", "a password 12345")
	if err := h.svc.Accounts.SetStatus(context.Background(), off.Username, authz.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	pend := h.createUser("pend", "pend@example.com", "a password 12345")
	if err := h.svc.Accounts.SetStatus(context.Background(), pend.Username, authz.StatusPending, "test"); err != nil {
		t.Fatal(err)
	}
	c := h.browser()
	token := h.formToken(c, "/.auth/reset")
	post := func(login string, i int) (int, string, time.Duration) {
		form := url.Values{"login": {login}, "csrf_token": {token}}
		req, _ := http.NewRequest("POST", h.url("/.auth/reset"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", h.gw.URL)
		// Each request from its own address: the per-address throttle is
		// tested apart.
		req.Header.Set("X-Forwarded-For", "10.1."+itoa(i/250)+"."+itoa(i%250+1))
		start := time.Now()
		resp, body := h.do(c, req)
		return resp.StatusCode, body, time.Since(start)
	}
	st0, body0, _ := post("user0", 0)
	for i, login := range []string{"nobody-at-all", "off", "pend@example.com"} {
		st, body, _ := post(login, 1+i)
		if st != st0 || body != body0 {
			t.Fatalf("%s answered differently: %d vs %d\n%s\n---\n%s", login, st, st0, body, body0)
		}
	}
	if got := drainMails(t, h.db); len(got) != 1 || got[0].To != "user0@example.com" {
		t.Fatalf("mails: %+v", got)
	}
	// Timing: alternate existing and unknown accounts, each once.
	var known, unknown []time.Duration
	for i := 1; i < n; i++ {
		_, _, d := post("user"+itoa(i), 10+2*i)
		known = append(known, d)
		_, _, d = post("ghost"+itoa(i)+"@example.com", 11+2*i)
		unknown = append(unknown, d)
	}
	mk, mu := median(known), median(unknown)
	ratio := float64(mk) / float64(mu)
	t.Logf("reset request timing over %d pairs: median existing %v, unknown %v, ratio %.2f", len(known), mk, mu, ratio)
	if ratio < 0.5 || ratio > 2 {
		t.Fatalf("existing and unknown accounts answer at different speeds: ratio %.2f", ratio)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestResetThrottles: one address cannot ask for resets without end, and
// one account receives at most a few mails, with the same answer.
func TestResetThrottles(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	h.createUser("eve", "eve@example.com", "a password 12345")
	c := h.browser()
	for i := range recovery.ClientBurst {
		resp, body := h.postForm(c, "/.auth/reset", "/.auth/reset", url.Values{"login": {"eve"}})
		if resp.StatusCode != 200 || !strings.Contains(body, "If an account matches") {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp, _ := h.postForm(c, "/.auth/reset", "/.auth/reset", url.Values{"login": {"eve"}})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("throttled address: %d", resp.StatusCode)
	}
	if got := drainMails(t, h.db); len(got) != recovery.AccountBurst {
		t.Fatalf("%d reset mails for one account, want at most %d", len(got), recovery.AccountBurst)
	}
}

// TestResetLinkHostPoisoning: whatever Host or X-Forwarded-Host the request
// names, the mailed link points at the public URL.
func TestResetLinkHostPoisoning(t *testing.T) {
	h := passwordHarness(t, nil, func(o *proxy.Options) { o.TrustedProxies = []string{"127.0.0.1/32"} })
	h.createUser("fay", "fay@example.com", "a password 12345")
	link := h.resetLink(h.browser(), "fay", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https", "Forwarded", "host=evil.example")
	if link == nil || link.Scheme+"://"+link.Host != mailPublicURL {
		t.Fatalf("poisoned link: %v", link)
	}
	// A foreign Host is not served at all.
	req, _ := http.NewRequest("POST", h.url("/.auth/reset"), strings.NewReader("login=fay"))
	req.Host = "evil.example"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := h.do(h.browser(), req); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("foreign host: %d", resp.StatusCode)
	}
	if got := drainMails(t, h.db); len(got) != 0 {
		t.Fatalf("mail for a foreign host: %+v", got)
	}
}

// TestPasswordFormsCSRF: every password form refuses a post without its
// token or from another site, and spends nothing.
func TestPasswordFormsCSRF(t *testing.T) {
	h := passwordHarness(t, nil, nil)
	u := h.createUser("gus", "gus@example.com", "a password 12345")
	secret, _, err := h.svc.Tokens.Issue(context.Background(), tokens.PurposeResetPassword, u.ID, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := h.browser()
	h.signIn(c, "gus", "a password 12345")
	forms := map[string]url.Values{
		"/.auth/reset":         {"login": {"gus"}},
		"/.auth/reset/confirm": {"token": {secret}, "new_password": {"a good new password 1"}},
		"/.auth/password":      {"current_password": {"a password 12345"}, "new_password": {"a good new password 1"}},
	}
	for path, form := range forms {
		// No token.
		if resp, _ := h.postForm(c, "", path, form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s without a token: %d", path, resp.StatusCode)
		}
		// Another site.
		req, _ := http.NewRequest("POST", h.url(path), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if resp, _ := h.do(c, req); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s from another site: %d", path, resp.StatusCode)
		}
	}
	if got := drainMails(t, h.db); slices.ContainsFunc(got, func(m sentMail) bool { return m.Type == "reset_password" }) {
		t.Fatal("a refused form sent a reset mail")
	}
	h.signIn(h.browser(), "gus", "a password 12345") // unchanged
	if resp, _ := h.get(c, "/.auth/reset/confirm?token="+secret); resp.StatusCode != 200 {
		t.Fatalf("link spent by a refused form: %d", resp.StatusCode)
	}
}

// TestResetConcurrentPosts: of many simultaneous posts of one link exactly
// one sets a password, on SQLite and PostgreSQL.
func TestResetConcurrentPosts(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			db, err := store.Open(context.Background(), d.URL(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			h := passwordHarness(t, db, nil)
			u := h.createUser("hal", "hal@example.com", "a password 12345")
			secret, _, err := h.svc.Tokens.Issue(context.Background(), tokens.PurposeResetPassword, u.ID, time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			const n = 8
			type client struct {
				c     *http.Client
				token string
			}
			var cs []client
			for range n {
				c := h.browser()
				cs = append(cs, client{c, h.formToken(c, "/.auth/reset/confirm?token="+secret)})
			}
			var wg sync.WaitGroup
			codes := make([]int, n)
			start := make(chan struct{})
			for i, cl := range cs {
				wg.Go(func() {
					form := url.Values{"token": {secret}, "new_password": {"concurrent password " + itoa(i)}, "csrf_token": {cl.token}}
					req, _ := http.NewRequest("POST", h.url("/.auth/reset/confirm"), strings.NewReader(form.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.Header.Set("Origin", h.gw.URL)
					<-start
					resp, err := cl.c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					codes[i] = resp.StatusCode
				})
			}
			close(start)
			wg.Wait()
			won := -1
			for i, c := range codes {
				switch c {
				case http.StatusSeeOther:
					if won >= 0 {
						t.Fatalf("two posts won: %v", codes)
					}
					won = i
				case http.StatusNotFound:
				default:
					t.Fatalf("unexpected status: %v", codes)
				}
			}
			if won < 0 {
				t.Fatalf("no post won: %v", codes)
			}
			h.signIn(h.browser(), "hal", "concurrent password "+itoa(won))
		})
	}
}
