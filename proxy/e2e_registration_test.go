package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/mail"
)

// regPublicURL is the public URL the mails' links are built from; the
// harness listens elsewhere, so a link built from the request would show.
const regPublicURL = "https://portal.example.com"

var regComposer = func() *mail.Composer {
	c, err := mail.NewComposer(mail.ComposerOptions{PublicURL: regPublicURL, AuthPrefix: "/.auth", Site: mail.Site{Name: "Test Site"}})
	if err != nil {
		panic(err)
	}
	return c
}()

const regPassword = "correct horse battery staple"

// regOptions turns registration on in mode with confirmation.
func regOptions(mode registration.Mode, mods ...func(*registration.Options)) func(*wiring.Options) {
	return func(o *wiring.Options) {
		o.Mail = regComposer
		o.MaxOutstandingTokens = 1
		o.Registration = registration.Options{Mode: mode, ConfirmEmail: true, ConfirmTTL: 24 * time.Hour,
			ClientRate: 1000, ClientBurst: 1000, EmailRate: 1000, EmailBurst: 1000,
			Fields: []registration.Field{{Column: "telephone1", Label: "Phone"}}}
		for _, m := range mods {
			m(&o.Registration)
		}
	}
}

func newRegHarness(t *testing.T, mode registration.Mode, hc harnessConfig, mods ...func(*registration.Options)) *harness {
	t.Helper()
	prev := hc.authz
	hc.authz = func(o *wiring.Options) {
		if prev != nil {
			prev(o)
		}
		regOptions(mode, mods...)(o)
	}
	return newHarness(t, hc)
}

// postForm submits a form as a same-origin browser would.
func (h *harness) postRegForm(c *http.Client, path string, form url.Values, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return h.do(c, req)
}

// formToken loads path and returns its form's CSRF token.
func (h *harness) regFormToken(c *http.Client, path string) string {
	h.t.Helper()
	resp, body := h.get(c, path)
	m := csrfRE.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		h.t.Fatalf("GET %s: %d, no form token\n%s", path, resp.StatusCode, body)
	}
	return html.UnescapeString(m[1])
}

// register submits the registration form for email.
func (h *harness) register(c *http.Client, email string, extra url.Values, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	form := url.Values{"email": {email}, "password": {regPassword}, "first_name": {"Eve"}, "last_name": {"Ng"},
		"csrf_token": {h.regFormToken(c, "/.auth/register")}}
	for k, v := range extra {
		form[k] = v
	}
	return h.postRegForm(c, "/.auth/register", form, hdr...)
}

// mails returns the mails queued for the account with login, oldest first.
func (h *harness) mails(login string) []mail.Message {
	h.t.Helper()
	u, err := h.db.UserByLogin(context.Background(), login)
	if err != nil {
		h.t.Fatalf("user %s: %v", login, err)
	}
	evs, err := h.db.OutboxEvents(context.Background(), u.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []mail.Message
	for _, e := range evs {
		if e.Kind != mail.Kind {
			continue
		}
		var m mail.Message
		if err := json.Unmarshal(e.Payload, &m); err != nil {
			h.t.Fatal(err)
		}
		m.Subject = e.Type + ": " + m.Subject
		out = append(out, m)
	}
	return out
}

var confirmLinkRE = regexp.MustCompile(`https?://[^\s"<>]+/\.auth/confirm\?token=([A-Za-z0-9_-]+)`)

// confirmLink returns the link and secret of the newest confirm_email mail of login.
func (h *harness) confirmLink(login string) (link, secret string) {
	h.t.Helper()
	ms := h.mails(login)
	for i := len(ms) - 1; i >= 0; i-- {
		if strings.HasPrefix(ms[i].Subject, registration.MailConfirm+":") {
			m := confirmLinkRE.FindStringSubmatch(ms[i].Text)
			if m == nil {
				h.t.Fatalf("no confirmation link in:\n%s", ms[i].Text)
			}
			return m[0], m[1]
		}
	}
	h.t.Fatalf("no confirm_email mail for %s in %d mails", login, len(ms))
	return "", ""
}

// confirm opens the confirmation page of secret and presses its button.
func (h *harness) confirm(c *http.Client, secret string) (*http.Response, string) {
	h.t.Helper()
	tok := h.regFormToken(c, "/.auth/confirm?token="+url.QueryEscape(secret))
	return h.postRegForm(c, "/.auth/confirm", url.Values{"token": {secret}, "csrf_token": {tok}})
}

func auditTypes(t *testing.T, h *harness) []string {
	t.Helper()
	evs, err := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// TestRegistrationOff: by default the page does not exist and the sign-in
// page has no link to it.
func TestRegistrationOff(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	c := h.browser()
	if resp, _ := h.get(c, "/.auth/register"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET register = %d, want 404", resp.StatusCode)
	}
	if resp, _ := h.postRegForm(c, "/.auth/register", url.Values{"email": {"a@b.example"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST register = %d, want 404", resp.StatusCode)
	}
	if _, body := h.get(c, "/.auth/signin"); strings.Contains(body, "/.auth/register") {
		t.Error("sign-in page links to registration while it is off")
	}
}

// TestRegisterConfirmSignIn is the whole open-mode flow over HTTP: the
// form, the mail (its link from the public URL), sign-in refused until
// confirmed, a GET that does not spend the link, the confirmation, then
// sign-in; the link is dead afterwards.
func TestRegisterConfirmSignIn(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{})
	c := h.browser()
	if _, body := h.get(c, "/.auth/signin?redirect_url=%2Faccount%2Fx"); !strings.Contains(body, `href="/.auth/register?redirect_url=%2Faccount%2Fx"`) {
		t.Errorf("sign-in page has no registration link:\n%s", body)
	}
	resp, body := h.register(c, "eve@example.com", url.Values{"field_telephone1": {"+1 555 0100"}, "redirect_url": {"/account/x"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "Check your email") {
		t.Fatalf("register: %d\n%s", resp.StatusCode, body)
	}
	u, err := h.db.UserByLogin(context.Background(), "eve@example.com")
	if err != nil || u.Username != "eve@example.com" || u.EmailConfirmed || u.Status != authz.StatusActive || u.Binding.Mode != authz.BindingNone {
		t.Fatalf("user = %+v, %v", u, err)
	}
	reg, err := h.db.RegistrationByUser(context.Background(), u.ID)
	if err != nil || reg.State != registration.StateConfirming || reg.Fields["telephone1"] != "+1 555 0100" {
		t.Fatalf("registration = %+v, %v", reg, err)
	}
	link, secret := h.confirmLink("eve@example.com")
	if !strings.HasPrefix(link, regPublicURL+"/.auth/confirm?token=") {
		t.Errorf("link %q is not built from the public URL", link)
	}

	// Not confirmed yet: the right password gets the resend page.
	resp, body = h.postSignIn(c, "eve@example.com", regPassword, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "confirm your email address first") {
		t.Fatalf("sign-in before confirmation: %d\n%s", resp.StatusCode, body)
	}
	// A wrong password is still just a wrong password.
	if resp, body = h.postSignIn(c, "eve@example.com", "wrong password here", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d\n%s", resp.StatusCode, body)
	}

	// GET, twice (a mail scanner, then the person): nothing is spent.
	for range 2 {
		resp, body = h.get(c, "/.auth/confirm?token="+secret)
		if resp.StatusCode != 200 || !strings.Contains(body, "Confirm my email address") || resp.Header.Get("Referrer-Policy") != "same-origin" {
			t.Fatalf("GET confirm: %d %q\n%s", resp.StatusCode, resp.Header.Get("Referrer-Policy"), body)
		}
	}
	resp, body = h.confirm(c, secret)
	if resp.StatusCode != 200 || !strings.Contains(body, "Your address is confirmed") ||
		!strings.Contains(body, `href="/.auth/signin?redirect_url=%2Faccount%2Fx"`) {
		t.Fatalf("confirm: %d\n%s", resp.StatusCode, body)
	}
	if u, _ := h.db.UserByLogin(context.Background(), "eve@example.com"); !u.EmailConfirmed {
		t.Error("email not marked confirmed")
	}
	h.signIn(c, "eve@example.com", regPassword)

	// The link is dead now.
	if resp, body = h.confirm(h.browser(), secret); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid, was already used or has expired") {
		t.Errorf("reused link: %d\n%s", resp.StatusCode, body)
	}
	types := auditTypes(t, h)
	for _, want := range []string{registration.EventRegistered, registration.EventEmailConfirmed, audit.EventTokenIssued, audit.EventTokenConsumed, audit.EventTokenRefused} {
		if !slices.Contains(types, want) {
			t.Errorf("audit has no %s: %v", want, types)
		}
	}
	// The lifecycle events of a registration.
	evs, _ := h.db.OutboxEvents(context.Background(), u.ID)
	var lc []string
	for _, e := range evs {
		if e.Kind != mail.Kind {
			lc = append(lc, e.Type)
		}
	}
	if !slices.Contains(lc, "user.created") || !slices.Contains(lc, "user.registered") {
		t.Errorf("lifecycle events = %v", lc)
	}
}

// TestOperatorUsersSignInUnconfirmed: accounts created by an operator have
// email_confirmed false and no registration; they are not held back.
func TestOperatorUsersSignInUnconfirmed(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{})
	u := h.createUser("ops", "ops@example.com", regPassword)
	if u.EmailConfirmed {
		t.Fatal("precondition: operator-created users are unconfirmed")
	}
	h.signIn(h.browser(), "ops", regPassword)
}

// TestConfirmHostileTokens: tampered, foreign (another purpose), expired,
// malformed, revoked (an older link after a resend) and reused secrets all
// get the same refusal, and none of them spends or confirms anything.
func TestConfirmHostileTokens(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{})
	c := h.browser()
	h.register(c, "eve@example.com", nil)
	_, secret := h.confirmLink("eve@example.com")
	u, _ := h.db.UserByLogin(context.Background(), "eve@example.com")

	tampered := []byte(secret)
	if tampered[5] == 'A' {
		tampered[5] = 'B'
	} else {
		tampered[5] = 'A'
	}
	foreign, _, err := h.svc.Tokens.Issue(context.Background(), tokens.PurposeResetPassword, u.ID, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	var refusal string
	for name, s := range map[string]string{"tampered": string(tampered), "foreign purpose": foreign, "malformed": "abc",
		"empty": "", "too long": strings.Repeat("A", 200)} {
		resp, body := h.postRegForm(c, "/.auth/confirm", url.Values{"token": {s}, "csrf_token": {h.regFormToken(c, "/.auth/confirm?token="+secret)}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d\n%s", name, resp.StatusCode, body)
		}
		msg := regexp.MustCompile(`(?s)<div class="alert".*?</div>`).FindString(body)
		if refusal == "" {
			refusal = msg
		} else if msg != refusal {
			t.Errorf("%s: refusal differs:\n%s\n%s", name, msg, refusal)
		}
	}
	// CSRF: no token, wrong token, another site.
	if resp, _ := h.postRegForm(c, "/.auth/confirm", url.Values{"token": {secret}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := h.postRegForm(c, "/.auth/confirm", url.Values{"token": {secret}, "csrf_token": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := h.postRegForm(c, "/.auth/confirm", url.Values{"token": {secret}, "csrf_token": {h.regFormToken(c, "/.auth/confirm?token=x")}},
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d", resp.StatusCode)
	}
	if reg, _ := h.db.RegistrationByUser(context.Background(), u.ID); reg.State != registration.StateConfirming {
		t.Fatalf("a refused request confirmed the address: %s", reg.State)
	}

	// Resend revokes the older link (MaxOutstanding 1).
	resp, _ := h.postRegForm(c, "/.auth/confirm/resend", url.Values{"email": {"eve@example.com"}, "csrf_token": {h.regFormToken(c, "/.auth/confirm/resend")}})
	if resp.StatusCode != 200 {
		t.Fatalf("resend: %d", resp.StatusCode)
	}
	var newer string
	waitFor(t, func() bool { _, newer = h.confirmLink("eve@example.com"); return newer != secret })
	if resp, _ := h.confirm(c, secret); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("revoked older link: %d", resp.StatusCode)
	}
	// Expired: the newer link, a day and a bit later.
	h.clock.Advance(24*time.Hour + time.Minute)
	if resp, _ := h.confirm(c, newer); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("expired link: %d", resp.StatusCode)
	}
	reasons := map[string]bool{}
	evs, _ := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventTokenRefused, Limit: 100})
	for _, e := range evs {
		reasons[e.Detail[strings.LastIndexByte(e.Detail, ' ')+1:]] = true
	}
	for _, want := range []string{tokens.RefusedMalformed, tokens.RefusedUnknown, tokens.RefusedWrongPurpose, tokens.RefusedRevoked, tokens.RefusedExpired} {
		if !reasons[want] {
			t.Errorf("no refusal audited as %s: %v", want, reasons)
		}
	}
}

// TestRegisterCSRF: the form refuses a missing or forged token and
// another site's post, and creates nothing.
func TestRegisterCSRF(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{})
	c := h.browser()
	form := url.Values{"email": {"eve@example.com"}, "password": {regPassword}}
	if resp, _ := h.postRegForm(c, "/.auth/register", form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	form.Set("csrf_token", "forged")
	if resp, _ := h.postRegForm(c, "/.auth/register", form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged token: %d", resp.StatusCode)
	}
	form.Set("csrf_token", h.regFormToken(c, "/.auth/register"))
	if resp, _ := h.postRegForm(c, "/.auth/register", form, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d", resp.StatusCode)
	}
	if _, err := h.db.UserByLogin(context.Background(), "eve@example.com"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("a refused form created the account: %v", err)
	}
	// The resend form too.
	if resp, _ := h.postRegForm(c, "/.auth/confirm/resend", url.Values{"email": {"eve@example.com"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("resend without token: %d", resp.StatusCode)
	}
}

// TestRegisterValidation: bad input comes back with the messages at the
// fields and in the summary, nothing created.
func TestRegisterValidation(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{})
	c := h.browser()
	resp, body := h.register(c, "not-an-address", url.Values{"password": {"short"}, "field_telephone1": {strings.Repeat("9", 300)},
		"redirect_url": {"https://evil.example/"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{`href="#email"`, `href="#password"`, `href="#field_telephone1"`, `id="password-error"`, `aria-invalid="true"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(body, "evil.example") {
		t.Error("an unsafe redirect_url was echoed")
	}
	// The password is the email address: refused by the policy.
	resp, body = h.register(c, "eve.longaddress@example.com", url.Values{"password": {"eve.longaddress@example.com"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="password-error"`) {
		t.Errorf("password = email: %d\n%s", resp.StatusCode, body)
	}
}

// TestRegisterLinkPoisoning: a registration and a resend sent with a
// hostile Host and X-Forwarded-Host still mail links to the public URL.
func TestRegisterLinkPoisoning(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{})
	c := h.browser()
	resp, body := h.register(c, "eve@example.com", nil, "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https", "Forwarded", "host=evil.example")
	if resp.StatusCode != 200 {
		t.Fatalf("register: %d\n%s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("POST", h.url("/.auth/confirm/resend"), strings.NewReader(url.Values{"email": {"eve@example.com"},
		"csrf_token": {h.regFormToken(c, "/.auth/confirm/resend")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Host = "evil.example"
	// A Host the gateway does not serve is refused before any page.
	if resp, _ = h.do(c, req); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("resend with Host evil.example: %d, want 421", resp.StatusCode)
	}
	h.postRegForm(c, "/.auth/confirm/resend", url.Values{"email": {"eve@example.com"}, "csrf_token": {h.regFormToken(c, "/.auth/confirm/resend")}},
		"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https")
	waitFor(t, func() bool { return len(h.mails("eve@example.com")) == 2 })
	for _, m := range h.mails("eve@example.com") {
		if strings.Contains(m.Text+m.HTML, "evil.example") {
			t.Errorf("mail carries the client's host:\n%s", m.Text)
		}
		if link := confirmLinkRE.FindString(m.Text); !strings.HasPrefix(link, regPublicURL+"/.auth/confirm?token=") {
			t.Errorf("link %q", link)
		}
	}
}

// TestRegisterEnumeration: registering with an address that has an account
// gets the same page as a new address, its owner is mailed instead, and
// the timing is close (the ratio is logged).
func TestRegisterEnumeration(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{})
	owner := h.createUser("ana", "ana@example.com", regPassword)
	c := h.browser()
	_, fresh := h.register(c, "new@example.com", nil)
	_, taken := h.register(c, "ana@example.com", nil)
	norm := func(s, email string) string {
		s = strings.ReplaceAll(s, email, "EMAIL")
		return csrfRE.ReplaceAllString(s, "")
	}
	if norm(fresh, "new@example.com") != norm(taken, "ana@example.com") {
		t.Errorf("pages differ:\n%s\n---\n%s", fresh, taken)
	}
	ms := h.mails("ana@example.com")
	if len(ms) != 1 || !strings.HasPrefix(ms[0].Subject, registration.MailExisting+":") || !strings.Contains(ms[0].Text, regPublicURL+"/.auth/signin") {
		t.Fatalf("owner's mails = %+v", ms)
	}
	if u, _ := h.db.UserByID(context.Background(), owner.ID); u.PasswordHash != owner.PasswordHash || u.FirstName != owner.FirstName {
		t.Error("the existing account changed")
	}
	ratio := registerTimingRatio(t, h, c, 31)
	if ratio < 0.33 || ratio > 3 {
		t.Errorf("taken/fresh timing ratio %.2f is far from 1", ratio)
	}
	// With the production hashing parameters the hash dominates both.
	if !testing.Short() {
		hp := newRegHarness(t, registration.ModeOpen, harnessConfig{authz: func(o *wiring.Options) { o.Password = password.Default }})
		hp.createUser("ana", "ana@example.com", regPassword)
		if ratio := registerTimingRatio(t, hp, hp.browser(), 15); ratio < 0.67 || ratio > 1.5 {
			t.Errorf("with production parameters, taken/fresh timing ratio %.2f is far from 1", ratio)
		}
	}
}

// registerTimingRatio registers n new addresses and n times the taken
// ana@example.com, interleaved, and returns the ratio of the medians.
func registerTimingRatio(t *testing.T, h *harness, c *http.Client, n int) float64 {
	t.Helper()
	var tf, tt []time.Duration
	for i := range n {
		start := time.Now()
		h.register(c, "fresh"+strings.Repeat("x", i)+"@example.com", nil)
		tf = append(tf, time.Since(start))
		start = time.Now()
		h.register(c, "ana@example.com", nil)
		tt = append(tt, time.Since(start))
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	ratio := float64(med(tt)) / float64(med(tf))
	t.Logf("register timing: taken %v, fresh %v, ratio %.2f", med(tt), med(tf), ratio)
	return ratio
}

// TestResendNonEnumeratingAndThrottled: the resend page answers the same
// for an unknown address, a confirmed account and one waiting, mails only
// the last, and throttles per address and per client.
func TestResendNonEnumeratingAndThrottled(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{}, func(o *registration.Options) {
		o.EmailRate, o.EmailBurst, o.ClientRate, o.ClientBurst = 1, 2, 1, 6
	})
	c := h.browser()
	h.register(c, "eve@example.com", nil)
	h.createUser("ana", "ana@example.com", regPassword)
	resend := func(email string) (*http.Response, string) {
		return h.postRegForm(c, "/.auth/confirm/resend", url.Values{"email": {email}, "csrf_token": {h.regFormToken(c, "/.auth/confirm/resend")}})
	}
	var pages []string
	for _, email := range []string{"eve@example.com", "nobody@example.com", "ana@example.com"} {
		resp, body := resend(email)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", email, resp.StatusCode)
		}
		pages = append(pages, csrfRE.ReplaceAllString(strings.ReplaceAll(body, email, "EMAIL"), ""))
	}
	if pages[0] != pages[1] || pages[1] != pages[2] {
		t.Errorf("resend pages differ:\n%s\n---\n%s\n---\n%s", pages[0], pages[1], pages[2])
	}
	waitFor(t, func() bool { return len(h.mails("eve@example.com")) == 2 })
	time.Sleep(50 * time.Millisecond) // the resends run after the answer
	if n := len(h.mails("ana@example.com")); n != 0 {
		t.Errorf("a confirmed account got %d mails", n)
	}
	// Per address: the burst of 2 (one registration, one resend) is spent.
	if resp, _ := resend("eve@example.com"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third attempt for one address: %d", resp.StatusCode)
	}
	// Per client: 6 in all (1 registration + 4 resends so far + this one),
	// then refused whatever the address.
	resend("other1@example.com")
	if resp, _ := resend("other2@example.com"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("client over its burst: %d", resp.StatusCode)
	}
	if !slices.Contains(auditTypes(t, h), registration.EventRegisterThrottled) {
		t.Error("throttling not audited")
	}
}

// TestRegisterThrottledPerClient: registrations from one address are
// throttled whatever the address typed in.
func TestRegisterThrottledPerClient(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{}, func(o *registration.Options) { o.ClientRate, o.ClientBurst = 1, 2 })
	c := h.browser()
	for i, want := range []int{200, 200, http.StatusTooManyRequests} {
		if resp, _ := h.register(c, "u"+strings.Repeat("x", i)+"@example.com", nil); resp.StatusCode != want {
			t.Errorf("registration %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// TestConcurrentConfirm: many simultaneous confirmations of one link;
// exactly one confirms, on SQLite and PostgreSQL.
func TestConcurrentConfirm(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			hc := harnessConfig{}
			if dialect == "postgres" {
				db, err := store.Open(context.Background(), storetest.PostgresURL(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				hc.db = db
			}
			h := newRegHarness(t, registration.ModeOpen, hc)
			c := h.browser()
			h.register(c, "eve@example.com", nil)
			_, secret := h.confirmLink("eve@example.com")
			const n = 12
			// One form, pressed n times at once (the CSRF cookie is per browser).
			form := url.Values{"token": {secret}, "csrf_token": {h.regFormToken(c, "/.auth/confirm?token="+secret)}}
			var wg sync.WaitGroup
			codes := make([]int, n)
			for i := range n {
				wg.Go(func() {
					resp, _ := h.postRegForm(c, "/.auth/confirm", form)
					codes[i] = resp.StatusCode
				})
			}
			wg.Wait()
			ok := 0
			for _, code := range codes {
				switch code {
				case 200:
					ok++
				case http.StatusBadRequest:
				default:
					t.Errorf("status %d", code)
				}
			}
			if ok != 1 {
				t.Fatalf("%d confirmations succeeded, want exactly 1 (%v)", ok, codes)
			}
			evs, _ := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: registration.EventEmailConfirmed, Limit: 10})
			if len(evs) != 1 {
				t.Errorf("%d confirmations audited", len(evs))
			}
		})
	}
}

// TestRegisterApproval: the account waits as pending after confirming,
// is told so and mailed, and cannot sign in.
func TestRegisterApproval(t *testing.T) {
	h := newRegHarness(t, registration.ModeApproval, harnessConfig{})
	c := h.browser()
	if _, body := h.get(c, "/.auth/register"); !strings.Contains(body, "An administrator reviews every new account") {
		t.Errorf("form does not say accounts are reviewed:\n%s", body)
	}
	h.register(c, "eve@example.com", nil)
	u, _ := h.db.UserByLogin(context.Background(), "eve@example.com")
	if u.Status != authz.StatusPending {
		t.Fatalf("status %s", u.Status)
	}
	_, secret := h.confirmLink("eve@example.com")
	resp, body := h.confirm(c, secret)
	if resp.StatusCode != 200 || !strings.Contains(body, "Waiting for approval") {
		t.Fatalf("confirm: %d\n%s", resp.StatusCode, body)
	}
	ms := h.mails("eve@example.com")
	if last := ms[len(ms)-1]; !strings.HasPrefix(last.Subject, registration.MailPending+":") {
		t.Errorf("last mail %q, want registration_pending", last.Subject)
	}
	if resp, _ := h.postSignIn(c, "eve@example.com", regPassword, nil); resp.StatusCode == http.StatusSeeOther {
		t.Error("a pending account signed in")
	}
}

// TestRegisterInvitationMode: the page only forwards an invitation code.
func TestRegisterInvitationMode(t *testing.T) {
	h := newRegHarness(t, registration.ModeInvitation, harnessConfig{})
	c := h.browser()
	resp, body := h.get(c, "/.auth/register")
	if resp.StatusCode != 200 || !strings.Contains(body, `action="/.auth/invitation"`) || !strings.Contains(body, `name="code"`) {
		t.Fatalf("invitation page: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := h.postRegForm(c, "/.auth/register", url.Values{"email": {"eve@example.com"}}); resp.StatusCode == 200 {
		t.Error("a registration was accepted in invitation mode")
	}
}

// regDeliverer delivers mails and lifecycle events (nothing to do) and
// hands contact events to the registration's deliverer.
type regDeliverer struct{ contacts outbox.Deliverer }

func (d regDeliverer) Deliver(ctx context.Context, e outbox.Event) error {
	if e.Kind == registration.ContactKind {
		return d.contacts.Deliver(ctx, e)
	}
	return outbox.ErrNothingToDeliver
}

// TestRegisterCreateContactDataverseDown: with contact creation on, a
// Dataverse outage when the address is confirmed keeps the account
// waiting ("being set up", no sign-in); after recovery the outbox creates
// the contact exactly once, binds the account, and it signs in.
func TestRegisterCreateContactDataverseDown(t *testing.T) {
	emu, client := newContactEmulator(t)
	dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{authz: func(o *wiring.Options) { o.Contacts = dir }},
		func(o *registration.Options) { o.CreateContact = true })
	c := h.browser()
	resp, body := h.register(c, "eve@example.com", url.Values{"field_telephone1": {"+1 555 0100"}})
	if resp.StatusCode != 200 {
		t.Fatalf("register: %d\n%s", resp.StatusCode, body)
	}
	u, _ := h.db.UserByLogin(context.Background(), "eve@example.com")
	reg, _ := h.db.RegistrationByUser(context.Background(), u.ID)

	cd, err := registration.NewContactDeliverer(h.db, dir, h.svc.Audit, h.clock.Now, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := outbox.NewWorker(h.db, regDeliverer{cd}, outbox.Options{Now: h.clock.Now, MinBackoff: time.Second, MaxBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	emu.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	_, secret := h.confirmLink("eve@example.com")
	resp, body = h.confirm(c, secret)
	if resp.StatusCode != 200 || !strings.Contains(body, "Your account is being set up") {
		t.Fatalf("confirm: %d\n%s", resp.StatusCode, body)
	}
	for range 3 {
		if _, err := w.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(2 * time.Minute)
	}
	if _, ok := emu.Row("contacts", reg.ContactID); ok {
		t.Fatal("contact created while Dataverse was down")
	}
	resp, body = h.postSignIn(c, "eve@example.com", regPassword, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Your account is being set up") {
		t.Fatalf("sign-in while setting up: %d\n%s", resp.StatusCode, body)
	}

	emu.SetFaults(dataversetest.Faults{})
	h.clock.Advance(2 * time.Minute)
	if _, err := w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	row, ok := emu.Row("contacts", reg.ContactID)
	if !ok || row["emailaddress1"] != "eve@example.com" || row["lastname"] != "Ng" || row["firstname"] != "Eve" || row["telephone1"] != "+1 555 0100" {
		t.Fatalf("contact = %v, %v", row, ok)
	}
	u, _ = h.db.UserByID(context.Background(), u.ID)
	if u.Binding.Mode != authz.BindingLookup || u.Binding.Ref == nil || u.Binding.Ref.ID != reg.ContactID {
		t.Fatalf("binding = %+v", u.Binding)
	}
	// A redelivery (lost completion) creates no second contact.
	before := emu.Requests("")
	if err := cd.Deliver(context.Background(), outbox.Event{Kind: registration.ContactKind, Type: "create", UserID: u.ID,
		Payload: json.RawMessage(`{"user_id":"` + u.ID + `","contact_id":"` + reg.ContactID + `"}`)}); !errors.Is(err, outbox.ErrNothingToDeliver) {
		t.Errorf("redelivery: %v", err)
	}
	if emu.Requests("") != before {
		t.Error("a redelivery of a finished registration called Dataverse")
	}
	h.signIn(c, "eve@example.com", regPassword)
}

// TestResendTiming: asking for a new confirmation link takes about as long
// for an address that has an account waiting for its confirmation as for
// an unknown one, since the lookup and the mail happen after the answer.
// The ratio of the medians is logged (issue 10 asks for it to be noted).
func TestResendTiming(t *testing.T) {
	h := newRegHarness(t, registration.ModeOpen, harnessConfig{}, func(o *registration.Options) {
		o.EmailRate, o.EmailBurst, o.ClientRate, o.ClientBurst = 1000, 1000, 1000, 1000
	})
	c := h.browser()
	h.register(c, "eve@example.com", nil)
	resend := func(email string) time.Duration {
		form := url.Values{"email": {email}, "csrf_token": {h.regFormToken(c, "/.auth/confirm/resend")}}
		start := time.Now()
		resp, _ := h.postRegForm(c, "/.auth/confirm/resend", form)
		d := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("resend %s: %d", email, resp.StatusCode)
		}
		return d
	}
	var waiting, unknown []time.Duration
	for i := range 25 {
		waiting = append(waiting, resend("eve@example.com"))
		unknown = append(unknown, resend("nobody"+strings.Repeat("x", i)+"@example.com"))
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	ratio := float64(med(waiting)) / float64(med(unknown))
	t.Logf("resend timing: waiting account %v, unknown address %v, ratio %.2f", med(waiting), med(unknown), ratio)
	if ratio < 0.33 || ratio > 3 {
		t.Errorf("waiting/unknown timing ratio %.2f is far from 1", ratio)
	}
}
