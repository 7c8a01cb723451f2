package proxy_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/proxy"
)

const invitePassword = "correct horse battery"

// inviteHarness is a gateway whose identity layer composes mail (links
// from https://portal.example.com) and so serves invitations.
func inviteHarness(t *testing.T, hc harnessConfig, mods ...func(*wiring.Options)) *harness {
	t.Helper()
	prev := hc.authz
	hc.authz = func(o *wiring.Options) {
		if prev != nil {
			prev(o)
		}
		o.Mail = authztest.Composer
		for _, m := range mods {
			m(o)
		}
	}
	return newHarness(t, hc)
}

// postForm posts form to path as a same-origin browser would.
func (h *harness) invPostForm(c *http.Client, path string, form url.Values) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return h.do(c, req)
}

// pageCSRF is the csrf_token of a page body.
func pageCSRF(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf_token in page:\n%s", body)
	}
	return html.UnescapeString(m[1])
}

// mails returns the mail messages queued for an outbox queue, oldest first.
func (h *harness) invMails(queue string) []mail.Message {
	h.t.Helper()
	evs, err := h.db.OutboxEvents(context.Background(), queue)
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
		out = append(out, m)
	}
	return out
}

var inviteLinkRE = regexp.MustCompile(`https://portal\.example\.com/\.auth/invitation(?:/confirm)?\?(?:code|token)=([A-Za-z0-9_%-]+)`)

// linkSecret finds the link of m and returns it and its code or token.
func linkSecret(t *testing.T, m mail.Message) (link, secret string) {
	t.Helper()
	got := inviteLinkRE.FindStringSubmatch(m.Text)
	if got == nil {
		t.Fatalf("no invitation link from the public URL in the mail:\n%s", m.Text)
	}
	s, err := url.QueryUnescape(got[1])
	if err != nil {
		t.Fatal(err)
	}
	return got[0], s
}

// createInvitationAPI creates an invitation through the REST API as the
// signed-in admin and returns it and the code from its mail.
func (h *harness) createInvitationAPI(admin *http.Client, body string, hdr ...string) (*invitations.Invitation, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.url("/.auth/api/invitations"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, out := h.do(admin, req)
	if resp.StatusCode != http.StatusCreated {
		h.t.Fatalf("create invitation: %d %s", resp.StatusCode, out)
	}
	if strings.Contains(out, "code") && strings.Contains(out, "code_hash") {
		h.t.Fatalf("the API answer carries the code: %s", out)
	}
	var inv invitations.Invitation
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		h.t.Fatal(err)
	}
	ms := h.invMails(fmt.Sprintf("invitation:%d", inv.ID))
	if len(ms) == 0 {
		h.t.Fatalf("no mail queued for invitation %d", inv.ID)
	}
	_, code := linkSecret(h.t, ms[len(ms)-1])
	return &inv, code
}

// redeemForm opens the invitation page of code and posts the registration.
func (h *harness) redeemForm(c *http.Client, code, username string) (*http.Response, string) {
	h.t.Helper()
	resp, body := h.get(c, "/.auth/invitation?code="+url.QueryEscape(code))
	if resp.StatusCode != 200 {
		return resp, body
	}
	return h.invPostForm(c, "/.auth/invitation", url.Values{"csrf_token": {pageCSRF(h.t, body)}, "code": {code}, "action": {"register"},
		"username": {username}, "password": {invitePassword}, "password_confirm": {invitePassword}})
}

func invAuditTypes(t *testing.T, svc *wiring.Services, typ string) []audit.Event {
	t.Helper()
	evs, err := svc.Audit.ListAudit(context.Background(), audit.Filter{Type: typ, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestInvitationCrmgateRedeem: an admin invites an address through the
// REST API; the mail's link comes from the public URL whatever Host and
// X-Forwarded-Host the request carried; the person opens it, chooses a
// username and password (CSRF and same-origin checked), gets the local
// roles and a confirmed address, can sign in and is sent to the
// invitation's redirect; the code then is dead, like every hostile one.
func TestInvitationCrmgateRedeem(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	h.createUser("root", "root@example.test", invitePassword, "admin")
	admin := h.browser()
	h.signIn(admin, "root", invitePassword)
	inv, code := h.createInvitationAPI(admin, `{"email":"new@example.test","roles":["member"],"redirect_url":"/account/home"}`,
		"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "http")
	if inv.Kind != invitations.Single || inv.MaxRedemptions != 1 || inv.Email != "new@example.test" {
		t.Fatalf("invitation = %+v", inv)
	}
	m := h.invMails(fmt.Sprintf("invitation:%d", inv.ID))[0]
	if m.To != "new@example.test" || strings.Contains(m.Text+m.HTML, "evil.example") || strings.Contains(m.Text, h.gw.URL) {
		t.Fatalf("mail to %s with a link from the request:\n%s", m.To, m.Text)
	}

	p := h.browser()
	resp, body := h.get(p, "/.auth/invitation?code="+url.QueryEscape(code))
	if resp.StatusCode != 200 || !strings.Contains(body, "Create my account") || !strings.Contains(body, "new@example.test") ||
		resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("invitation page: %d\n%s", resp.StatusCode, body)
	}
	form := url.Values{"code": {code}, "action": {"register"}, "username": {"newbie"}, "password": {invitePassword}, "password_confirm": {invitePassword}}
	// No CSRF token: refused, nothing made.
	if resp, _ := h.invPostForm(p, "/.auth/invitation", form); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("without CSRF token: %d", resp.StatusCode)
	}
	_, body = h.get(p, "/.auth/invitation?code="+url.QueryEscape(code))
	// Cross-origin: refused before the handler.
	form.Set("csrf_token", pageCSRF(t, body))
	req, _ := http.NewRequest("POST", h.url("/.auth/invitation"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := h.do(p, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin: %d", resp.StatusCode)
	}
	if _, err := h.svc.Accounts.LookupUser(context.Background(), "newbie"); err == nil {
		t.Fatal("a refused form created the account")
	}
	// Passwords that differ, then a weak one: the form again, nothing made.
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("password_confirm", "something else entirely")
	if resp, body := h.invPostForm(p, "/.auth/invitation", bad); resp.StatusCode != 400 || !strings.Contains(body, "The two passwords differ") {
		t.Fatalf("differing passwords: %d\n%s", resp.StatusCode, body)
	}
	bad.Set("password", "short")
	bad.Set("password_confirm", "short")
	if resp, body := h.invPostForm(p, "/.auth/invitation", bad); resp.StatusCode != 400 || !strings.Contains(body, `id="password-error"`) {
		t.Fatalf("weak password: %d\n%s", resp.StatusCode, body[strings.Index(body, "<main"):])
	}
	resp, body = h.invPostForm(p, "/.auth/invitation", form)
	if resp.StatusCode != 200 || !strings.Contains(body, "Your account is ready") ||
		!strings.Contains(body, `/.auth/signin?redirect_url=%2Faccount%2Fhome`) {
		t.Fatalf("redeem: %d\n%s", resp.StatusCode, body)
	}
	u, err := h.svc.Accounts.LookupUser(context.Background(), "newbie")
	if err != nil || !u.HasRole("member") || !u.EmailConfirmed || u.Email != "new@example.test" || u.Status != authz.StatusActive {
		t.Fatalf("new user = %+v, %v", u, err)
	}
	h.signIn(h.browser(), "newbie", invitePassword)
	if got, _ := h.svc.Invitations.Get(context.Background(), inv.ID); got.Redemptions != 1 {
		t.Fatalf("redemptions = %d", got.Redemptions)
	}
	if evs := invAuditTypes(t, h.svc, invitations.EventRedeemed); len(evs) != 1 || evs[0].UserID != u.ID {
		t.Fatalf("redeemed audit = %+v", evs)
	}
	if evs := invAuditTypes(t, h.svc, invitations.EventCreated); len(evs) != 1 || evs[0].Actor == "" {
		t.Fatalf("created audit = %+v", evs)
	}
	// Reused: the generic answer.
	resp, body = h.get(h.browser(), "/.auth/invitation?code="+url.QueryEscape(code))
	if resp.StatusCode != 404 || !strings.Contains(body, "invalid or has expired") {
		t.Fatalf("reused code: %d\n%s", resp.StatusCode, body)
	}
	for _, e := range invAuditTypes(t, h.svc, "") {
		if strings.Contains(e.Detail, code) {
			t.Fatalf("an audit event holds the code: %+v", e)
		}
	}
}

// TestInvitationHostileCodes: tampered, foreign, malformed, expired,
// revoked and replaced (resent) codes all get the one generic answer, each
// refusal audited with its reason; guessing is throttled per client
// address (429, audited once) while other addresses are not.
func TestInvitationHostileCodes(t *testing.T) {
	h := inviteHarness(t, harnessConfig{guesses: 6})
	h.createUser("root", "root@example.test", invitePassword, "admin")
	admin := h.browser()
	h.signIn(admin, "root", invitePassword)
	_, revoked := h.createInvitationAPI(admin, `{"email":"r@example.test"}`)
	resent, old := h.createInvitationAPI(admin, `{"email":"s@example.test"}`)
	_, expired := h.createInvitationAPI(admin, `{"email":"e@example.test","expires_in_hours":1}`)
	if resp, _ := h.invPostForm(admin, "/.auth/api/invitations/1/revoke", nil); resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if resp, _ := h.invPostForm(admin, fmt.Sprintf("/.auth/api/invitations/%d/resend", resent.ID), nil); resp.StatusCode != 200 {
		t.Fatalf("resend: %d", resp.StatusCode)
	}
	ms := h.invMails(fmt.Sprintf("invitation:%d", resent.ID))
	if len(ms) != 2 {
		t.Fatalf("resend mails = %d", len(ms))
	}
	if _, fresh := linkSecret(t, ms[1]); fresh == old {
		t.Fatal("the resent mail carries the old code")
	}
	h.clock.Advance(2 * time.Hour)
	tampered := []byte(old)
	tampered[5] ^= 1
	if tampered[5] == '_' || tampered[5] == '-' {
		tampered[5] = 'A'
	}
	codes := map[string]string{"revoked": revoked, "replaced": old, "expired": expired, "tampered": string(tampered),
		"foreign": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "malformed": "x y\x00z"}
	c := h.browser()
	var answer string
	for name, code := range codes {
		resp, body := h.get(c, "/.auth/invitation?code="+url.QueryEscape(code))
		if resp.StatusCode != 404 || !strings.Contains(body, "This invitation is invalid or has expired.") {
			t.Fatalf("%s: %d\n%s", name, resp.StatusCode, body)
		}
		page := body
		if answer == "" {
			answer = page
		} else if page != answer {
			t.Errorf("%s: the answer differs from the other refusals", name)
		}
	}
	refusals := invAuditTypes(t, h.svc, invitations.EventRefused)
	reasons := map[string]bool{}
	for _, e := range refusals {
		reasons[e.Detail[strings.LastIndexByte(e.Detail, ' ')+1:]] = true
		if e.ClientAddr == "" {
			t.Errorf("refusal without a client address: %+v", e)
		}
	}
	for _, r := range []string{invitations.RefusedRevoked, invitations.RefusedExpired, invitations.RefusedUnknown, invitations.RefusedMalformed} {
		if !reasons[r] {
			t.Errorf("no refusal audited as %s: %v", r, reasons)
		}
	}
	// Six refusals used the burst: the next guess is throttled, audited once.
	for range 3 {
		if resp, _ := h.get(c, "/.auth/invitation?code=guess"+fmt.Sprint(time.Now().UnixNano())); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("guess past the limit: %d", resp.StatusCode)
		}
	}
	if evs := invAuditTypes(t, h.svc, invitations.EventThrottled); len(evs) != 1 {
		t.Fatalf("throttled audit events = %d, want 1", len(evs))
	}
	// An hour later the address may try again.
	h.clock.Advance(time.Hour)
	if resp, _ := h.get(c, "/.auth/invitation?code=again"); resp.StatusCode != 404 {
		t.Fatalf("after the refill: %d", resp.StatusCode)
	}
}

// TestThrottleStoreFailure: when the throttles' store fails, the
// invitation page checks no code and the sign-in form checks no password:
// both answer the one 503 error page with its request ID and Retry-After,
// and the log says which limiter failed, with the same request ID.
// Proxied requests never ask the throttles: a signed-in user's go on.
func TestThrottleStoreFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.db")
	db, err := store.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	logs := &lockedBuffer{}
	h := inviteHarness(t, harnessConfig{db: db, mutate: func(o *proxy.Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) }})
	h.createUser("ana", "ana@example.test", invitePassword)
	h.createUser("ben", "ben@example.test", invitePassword)
	signedIn := h.browser()
	h.signIn(signedIn, "ben", invitePassword)
	c := h.browser()
	if resp, _ := h.get(c, "/.auth/invitation?code=guess1"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a refused code before the failure: %d", resp.StatusCode)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`DROP TABLE throttles`); err != nil {
		t.Fatal(err)
	}
	refusals := len(invAuditTypes(t, h.svc, invitations.EventRefused))
	for range 3 {
		if resp, _ := h.get(signedIn, "/account/orders"); resp.StatusCode != http.StatusOK {
			t.Fatalf("a proxied request on a failed throttle store: %d", resp.StatusCode)
		}
	}
	check := func(what, limiter string, resp *http.Response, body string) {
		t.Helper()
		m := regexp.MustCompile(`Request ID: <code>([0-9a-f]+)</code>`).FindStringSubmatch(body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "30" || m == nil ||
			!strings.Contains(body, "This form cannot be accepted just now, and nothing was changed.") {
			t.Fatalf("%s on a failed throttle: %d Retry-After=%q\n%s", what, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		found := false
		for _, line := range strings.Split(logs.String(), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) != nil || e["request_id"] != m[1] {
				continue
			}
			found = e["level"] == "ERROR" && e["status"] == float64(503) && e["code"] == "throttle_unavailable" &&
				strings.Contains(fmt.Sprint(e["err"]), limiter)
		}
		if !found {
			t.Errorf("%s: no error log line naming %s for request %s:\n%s", what, limiter, m[1], logs.String())
		}
	}
	resp, body := h.get(c, "/.auth/invitation?code=guess2")
	check("invitation code", "invitations.guess", resp, body)
	if n := len(invAuditTypes(t, h.svc, invitations.EventRefused)); n != refusals {
		t.Errorf("a code was checked on a failed throttle: %d refusals, want %d", n, refusals)
	}
	signIns := func() int {
		return len(invAuditTypes(t, h.svc, audit.EventSignIn)) + len(invAuditTypes(t, h.svc, audit.EventSignInFailed))
	}
	before := signIns()
	resp, body = h.postForm(c, "/.auth/signin", "/.auth/signin", url.Values{"login": {"ana"}, "password": {invitePassword}})
	check("sign-in", "signin.client", resp, body)
	if n := signIns(); n != before {
		t.Errorf("a password was checked on a failed throttle: %d sign-in events, want %d", n, before)
	}
}

// TestInvitationRedeemRaceSQLite and ...Postgres: simultaneous
// redemptions of a single-use invitation through the HTTP edge make
// exactly one account; members of a group invitation confirm their own
// addresses, and at its last redemption simultaneous confirmations let
// exactly one more through.
func TestInvitationRedeemRaceSQLite(t *testing.T) {
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "race.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	testInvitationRedeemRace(t, db)
}

func TestInvitationRedeemRacePostgres(t *testing.T) {
	db, err := store.Open(context.Background(), storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	testInvitationRedeemRace(t, db)
}

// racePosts posts each form from its own browser at the same moment and
// counts the 200 answers; every other answer must be want.
func (h *harness) racePosts(path string, clients []*http.Client, forms []url.Values, want ...int) int {
	h.t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range forms {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("POST", h.url(path), strings.NewReader(forms[i].Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", h.gw.URL)
			resp, err := clients[i].Do(req)
			if err != nil {
				h.t.Error(err)
				return
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				wins.Add(1)
			case !slices.Contains(want, resp.StatusCode):
				h.t.Errorf("racer %d: %d", i, resp.StatusCode)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

// confirmForm opens a confirmation link's page and returns the form that
// completes it.
func (h *harness) confirmForm(c *http.Client, token string) url.Values {
	h.t.Helper()
	resp, body := h.get(c, "/.auth/invitation/confirm?token="+url.QueryEscape(token))
	if resp.StatusCode != 200 || !strings.Contains(body, "Create my account") {
		h.t.Fatalf("confirmation page: %d\n%s", resp.StatusCode, body)
	}
	return url.Values{"csrf_token": {pageCSRF(h.t, body)}, "token": {token}}
}

// confirmations maps each address to the token of its newest
// confirmation mail.
func (h *harness) confirmations() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	for _, m := range h.invMails("") {
		if strings.Contains(m.Text, "/.auth/invitation/confirm?token=") {
			_, tok := linkSecret(h.t, m)
			out[m.To] = tok
		}
	}
	return out
}

func testInvitationRedeemRace(t *testing.T, db *store.DB) {
	h := inviteHarness(t, harnessConfig{db: db})
	h.createUser("root", "root@example.test", invitePassword, "admin")
	admin := h.browser()
	h.signIn(admin, "root", invitePassword)
	registration := func(c *http.Client, code, username, email string) url.Values {
		_, body := h.get(c, "/.auth/invitation?code="+url.QueryEscape(code))
		return url.Values{"csrf_token": {pageCSRF(t, body)}, "code": {code}, "action": {"register"},
			"username": {username}, "email": {email}, "password": {invitePassword}, "password_confirm": {invitePassword}}
	}
	const racers = 8
	_, single := h.createInvitationAPI(admin, `{"email":"one@example.test"}`)
	clients, forms := make([]*http.Client, racers), make([]url.Values, racers)
	for i := range racers {
		clients[i] = h.browser()
		forms[i] = registration(clients[i], single, fmt.Sprintf("s%d", i), "")
	}
	// A loser is told the code is used up (404), or, once the winner's
	// account exists, that the invited person has one (409).
	if n := h.racePosts("/.auth/invitation", clients, forms, 404, 409); n != 1 {
		t.Fatalf("single-use invitation: %d winners, want 1", n)
	}
	users, _ := h.svc.Accounts.ListUsers(context.Background(), authz.UserFilter{Query: "one@example.test"})
	if len(users) != 1 {
		t.Fatalf("accounts with the invited address: %d", len(users))
	}

	// A group of 3: two members confirm their addresses one after the other.
	_, group := h.createInvitationAPI(admin, `{"email":"team@example.test","kind":"group","max_redemptions":3}`)
	for i := range 2 {
		c := h.browser()
		resp, body := h.invPostForm(c, "/.auth/invitation", registration(c, group, fmt.Sprintf("early%d", i), fmt.Sprintf("early%d@example.test", i)))
		if resp.StatusCode != 200 || !strings.Contains(body, "Check your email") {
			t.Fatalf("group member %d: %d\n%s", i, resp.StatusCode, body)
		}
		tok := h.confirmations()[fmt.Sprintf("early%d@example.test", i)]
		if resp, body := h.invPostForm(c, "/.auth/invitation/confirm", h.confirmForm(c, tok)); resp.StatusCode != 200 || !strings.Contains(body, "Your account is ready") {
			t.Fatalf("confirm member %d: %d\n%s", i, resp.StatusCode, body)
		}
	}
	// The last redemption: eight members confirm at the same moment.
	for i := range racers {
		clients[i] = h.browser()
		if resp, _ := h.invPostForm(clients[i], "/.auth/invitation", registration(clients[i], group, fmt.Sprintf("late%d", i), fmt.Sprintf("late%d@example.test", i))); resp.StatusCode != 200 {
			t.Fatalf("late member %d: %d", i, resp.StatusCode)
		}
	}
	toks := h.confirmations()
	for i := range racers {
		forms[i] = h.confirmForm(clients[i], toks[fmt.Sprintf("late%d@example.test", i)])
	}
	if n := h.racePosts("/.auth/invitation/confirm", clients, forms, 404); n != 1 {
		t.Fatalf("group at its last redemption: %d winners, want 1", n)
	}
	late, _ := h.svc.Accounts.ListUsers(context.Background(), authz.UserFilter{Query: "late"})
	if len(late) != 1 {
		t.Fatalf("late accounts: %d, want 1", len(late))
	}
}

// TestInvitationAPI: an API key needs invitations:write to create and
// invitations:read to list; the list pages by id; a bad body, an unsafe
// redirect, an unknown field and a group invitation naming a contact are
// refused with 400 and create nothing; the answers never carry a code.
func TestInvitationAPI(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	ctx := context.Background()
	write, _, err := h.svc.APIKeys.CreateAPIKey(ctx, "flow", []string{permissions.InvitationsWrite}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	read, _, _ := h.svc.APIKeys.CreateAPIKey(ctx, "reader", []string{permissions.InvitationsRead}, time.Time{}, "test")
	call := func(key, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, h.url("/.auth/api"+path), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, out := h.do(http.DefaultClient, req)
		return resp.StatusCode, out
	}
	for i := range 3 {
		if code, out := call(write, "POST", "/invitations", fmt.Sprintf(`{"email":"p%d@example.test","roles":["member"]}`, i)); code != 201 || strings.Contains(out, "hash") {
			t.Fatalf("create %d: %d %s", i, code, out)
		}
	}
	if code, _ := call(read, "POST", "/invitations", `{"email":"x@example.test"}`); code != 403 {
		t.Fatalf("create with a read key: %d", code)
	}
	if code, _ := call(write, "GET", "/invitations", ""); code != 403 {
		t.Fatalf("list with a write key: %d", code)
	}
	code, out := call(read, "GET", "/invitations?limit=2", "")
	var page struct {
		Invitations []invitations.Invitation `json:"invitations"`
		Next        string                   `json:"next"`
	}
	if code != 200 || json.Unmarshal([]byte(out), &page) != nil || len(page.Invitations) != 2 || page.Next != "2" {
		t.Fatalf("list: %d %s", code, out)
	}
	code, out = call(read, "GET", "/invitations?after="+page.Next, "")
	page.Next = ""
	if code != 200 || json.Unmarshal([]byte(out), &page) != nil || len(page.Invitations) != 1 || page.Invitations[0].Email != "p2@example.test" || page.Next != "" {
		t.Fatalf("second page: %d %s", code, out)
	}
	for name, body := range map[string]string{
		"not JSON": `{`, "unknown field": `{"email":"a@example.test","code":"mine"}`, "open redirect": `{"email":"a@example.test","redirect_url":"https://evil.example/"}`,
		"scheme-relative": `{"email":"a@example.test","redirect_url":"//evil.example"}`, "bad kind": `{"email":"a@example.test","kind":"many"}`,
		"group with a contact": `{"email":"a@example.test","kind":"group","max_redemptions":3,"contact_id":"` + annID + `"}`,
		"no address":           `{}`, "too long": `{"email":"a@example.test","expires_in_hours":100000}`,
	} {
		if code, out := call(write, "POST", "/invitations", body); code != 400 {
			t.Errorf("%s: %d %s", name, code, out)
		}
	}
	if code, _ := call(write, "POST", "/invitations/99/revoke", ""); code != 404 {
		t.Fatalf("revoke unknown: %d", code)
	}
	if code, _ := call(write, "DELETE", "/invitations/1", ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, out := call(read, "GET", "/invitations/1", ""); code != 200 || !strings.Contains(out, "revoked_at") {
		t.Fatalf("get revoked: %d %s", code, out)
	}
	if evs := invAuditTypes(t, h.svc, invitations.EventRevoked); len(evs) != 1 || !strings.HasPrefix(evs[0].Actor, "apikey:") {
		t.Fatalf("revoked audit = %+v", evs)
	}
}
