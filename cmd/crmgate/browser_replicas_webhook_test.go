package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/proxy"
)

// The settings of TestBrowserReplicasWebhook that its assertions depend on.
const (
	// webhookSecret is CRMGATE_HOOKS_DATAVERSE_SECRET, the registration's
	// key (sent as ?code=, the WebhookKey authentication).
	webhookSecret = "replicas-webhook-key-7f3a9c21d84e4b6f"
	// webhookDeliveryBound is how soon the emulator must have delivered
	// the deactivation to replica A: it posts once the PATCH is answered,
	// one request to a local replica that answers after one store write
	// (measured below, not assumed).
	webhookDeliveryBound = time.Second
	// webhookReceiverBound is how soon the replica that received the
	// webhook must refuse the session: the delivery, then one second for
	// a busy machine (the session's contact is asked again at once).
	webhookReceiverBound = webhookDeliveryBound + time.Second
	// webhookOtherBound is how soon the other replica must refuse it: the
	// delivery, one session feed interval (it learns the change from the
	// store's contact_changes), and one second for a busy machine.
	webhookOtherBound = webhookDeliveryBound + proxy.SessionFeedInterval + time.Second
	// webhookPoll is how often the browser asks each replica again.
	webhookPoll = 100 * time.Millisecond
)

// webhookSeed has the two contacts the test's users are bound to by
// username: carol's is deactivated, dave's is left alone.
const webhookSeed = `{"contacts": [
  {"contactid": "c0000000-0000-4000-8000-0000000ca201", "firstname": "Carol", "lastname": "Example",
   "emailaddress1": "carol@example.test", "adx_identity_username": "carol", "adx_identity_logonenabled": true},
  {"contactid": "c0000000-0000-4000-8000-0000000da7e0", "firstname": "Dave", "lastname": "Example",
   "emailaddress1": "dave@example.test", "adx_identity_username": "dave", "adx_identity_logonenabled": true}
]}`

const (
	carolContact = "c0000000-0000-4000-8000-0000000ca201"
	daveContact  = "c0000000-0000-4000-8000-0000000da7e0"
)

// TestBrowserReplicasWebhook: a contact deactivated in Dataverse ends a
// signed-in browser's session on two gateway replicas sharing PostgreSQL
// within seconds. Dataverse posts its webhook to one load-balanced URL,
// here replica A; A drops the session at once, B learns the change from
// the session feed. The contact revalidation interval is its default
// (5m), so what ends the session is the webhook, not revalidation. A
// second user, bound to another contact, stays signed in on both.
func TestBrowserReplicasWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gateway subprocesses")
	}
	browser := requireBrowser(t)
	x := newReplicaEnv(t)
	if err := x.em.LoadSeed(strings.NewReader(webhookSeed)); err != nil {
		t.Fatal(err)
	}
	x.env = append(x.env, "CRMGATE_BINDING_DEFAULT_MODE=username", "CRMGATE_SIGNIN_DATAVERSE_CHECK=true",
		"CRMGATE_HOOKS_DATAVERSE_SECRET="+webhookSecret)
	cfg, err := loadConfig(x.env)
	if err != nil {
		t.Fatal(err)
	}
	// Revalidation must be far from due: the session ends within seconds
	// only if the webhook and the session feed end it.
	revalidate := cfg.Session.ContactRevalidateInterval
	if envValue(x.env, "CRMGATE_SESSION_CONTACT_REVALIDATE_INTERVAL") != "" || revalidate < 60*webhookOtherBound {
		t.Fatalf("contact revalidation every %s: want the default, much longer than the bound %s", revalidate, webhookOtherBound)
	}
	for _, name := range []string{"carol", "dave"} {
		x.cli(t, "users", "create", "--username", name, "--email", name+"@example.test", "--password-stdin")
	}
	// `users create` leaves them unbound (CRMGATE_BINDING_DEFAULT_MODE
	// binds those serve creates); an operator binds them by username.
	x.cli(t, "users", "set-binding", "--mode", "username", "carol", "dave")
	x.rs = startReplicas(t, 2, x.env)
	a, b := x.rs.All()[0], x.rs.All()[1]
	if _, err := x.em.RegisterWebhook(dataversetest.Webhook{URL: a.URL("/.auth/hooks/dataverse"), Auth: dataversetest.WebhookKey,
		Key: webhookSecret}); err != nil {
		t.Fatal(err)
	}

	// Dave, another client, signs in through B.
	dave := newReplicaBrowser(t, "203.0.113.40")
	if status, body := dave.signIn(b, b, "dave", replicaPassword); status != http.StatusOK || !strings.HasPrefix(body, "user=") {
		t.Fatalf("dave's sign-in through B: %d %.200q", status, body)
	}
	daveCookies := dave.cookies()
	if me := dave.get(t, b, "/.auth/me"); !strings.Contains(me, daveContact) {
		t.Fatalf("dave's session carries no contact: %s", me)
	}

	// Carol signs in through A in Chromium, typing on the sign-in page.
	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)
	// The upstream's plain-text page makes Chromium fetch /favicon.ico
	// after it loads, with the session cookie: its answer could clear the
	// cookie restored for the next probe. Nothing is asked but the page.
	do(t, ctx, "block the favicon", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetBlockedURLs, network.SetBlockedURLsParams{
			URLPatterns: []*network.BlockPattern{{URLPattern: "*://*:*/favicon.ico", Block: true}}})
		return err
	}))
	open(t, ctx, "open /private on A", a.URL("/private"))
	checkSignInPage(t, ctx, "/private")
	resp := navigation(t, ctx, "sign in on A",
		chromedp.SendKeys(chromedp.ID("login"), "carol"),
		chromedp.SendKeys(chromedp.ID("password"), replicaPassword+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/private" || resp.Status != http.StatusOK {
		t.Fatalf("after sign-in at %s (status %d), want /private (200)", loc, resp.Status)
	}
	// The cookie is the host's, whatever the port: B serves it too.
	carolID := ""
	for _, r := range []*replica{a, b} {
		served, _, text := browserProbe(t, ctx, r, nil)
		if !served || !strings.HasPrefix(text, "user=") {
			t.Fatalf("%s: carol's protected page before the deactivation: %q", r.Name, text)
		}
		if carolID == "" {
			carolID = text
		} else if text != carolID {
			t.Fatalf("%s serves %q, A served %q", r.Name, text, carolID)
		}
	}
	// The cookies both replicas served: each probe below sends them again,
	// so that A clearing its cookie when it ends the session does not end
	// it for B too.
	carolCookies := browserCookies(t, ctx, a)

	// Deactivated in Dataverse, as someone in the CRM would.
	deactivated := x.webAPI(t, http.MethodPatch, "contacts("+carolContact+")", map[string]any{"statecode": 1, "statuscode": 2})
	delivered := make(chan time.Duration, 1)
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if x.em.WaitWebhooks(wctx) != nil {
			delivered <- -1
			return
		}
		delivered <- time.Since(deactivated)
	}()

	ended := map[string]time.Duration{}
	rounds := 0
	for len(ended) < 2 && time.Since(deactivated) < webhookOtherBound+3*time.Second {
		tick := time.Now()
		for _, r := range []*replica{a, b} {
			if _, ok := ended[r.Name]; ok {
				continue
			}
			if served, _, _ := browserProbe(t, ctx, r, carolCookies); !served {
				ended[r.Name] = time.Since(deactivated)
			}
		}
		rounds++
		time.Sleep(webhookPoll - time.Since(tick))
	}
	round := (time.Since(deactivated) / time.Duration(rounds)).Round(time.Millisecond)
	// What ended it on each: the contact asked again (the webhook's or the
	// feed's mark), not a missing cookie.
	for _, r := range []*replica{a, b} {
		if n, _ := r.Metric(t, `crmgate_sessions_ended_total{reason="contact_revoked"}`); n < 1 {
			t.Errorf("%s: no session ended by its contact (crmgate_sessions_ended_total contact_revoked = %v)", r.Name, n)
		}
	}
	delivery := <-delivered
	if delivery < 0 || delivery > webhookDeliveryBound {
		t.Errorf("the webhook was delivered %s after the deactivation, bound %s (-1: not within 10s)", delivery, webhookDeliveryBound)
	}
	var got []string
	for _, d := range x.em.WebhookDeliveries() {
		if d.ID == carolContact {
			endpoint, _, _ := strings.Cut(d.URL, "?")
			got = append(got, fmt.Sprintf("%s %s %d", endpoint, d.Message, d.Status))
		}
	}
	if want := a.URL("/.auth/hooks/dataverse") + " Update 200"; len(got) != 1 || got[0] != want {
		t.Errorf("webhook deliveries of carol's contact: %q, want one %q", got, want)
	}
	for _, c := range []struct {
		r     *replica
		bound time.Duration
	}{{a, webhookReceiverBound}, {b, webhookOtherBound}} {
		if d, ok := ended[c.r.Name]; !ok || d > c.bound {
			t.Errorf("%s: carol's session ended after %s (ended: %v), bound %s", c.r.Name, d, ok, c.bound)
		}
	}
	seconds := func(r *replica) string {
		if d, ok := ended[r.Name]; ok {
			return fmt.Sprintf("%.2fs", d.Seconds())
		}
		return "not ended"
	}
	t.Logf("contact deactivated → session ended: A %s, B %s (webhook delivered to A after %.2fs; a probe round every %s; bounds A %s, B %s; contact revalidation every %s)",
		seconds(a), seconds(b), delivery.Seconds(), round,
		webhookReceiverBound, webhookOtherBound, revalidate)

	// Refused for good on both, with the sign-in page.
	for _, r := range []*replica{a, b} {
		if served, status, text := browserProbe(t, ctx, r, carolCookies); served {
			t.Errorf("%s serves carol's session again: %d %q", r.Name, status, text)
		}
	}
	checkSignInPage(t, ctx, "/private")
	screenshot(t, ctx, "replicas-webhook-signed-out")

	// Dave's contact did not change: his session lives on both replicas.
	for _, r := range []*replica{a, b} {
		if status, body := dave.probe(t, r, daveCookies); status != http.StatusOK || !strings.HasPrefix(body, "user=") || body == carolID {
			t.Errorf("%s: dave's session after carol's deactivation: %d %q, want 200 and his page", r.Name, status, body)
		}
	}
}

// browserProbe sets cookies in the tab (none: it keeps its own), opens
// /private on r, and reports whether r served the page (200 from the
// upstream), the page's status, and its text. It fails the test unless a
// page that is not served is a refusal: the sign-in page, or a 401 or
// 403 page.
func browserProbe(t *testing.T, ctx context.Context, r *replica, cookies []*network.CookieParam) (served bool, status int64, text string) {
	t.Helper()
	if cookies != nil {
		do(t, ctx, "restore cookies", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, network.SetCookies, network.SetCookiesParams{Cookies: cookies})
			return err
		}))
	}
	resp := open(t, ctx, r.Name+" /private", r.URL("/private"))
	loc := location(t, ctx)
	text = get(t, ctx, "page text", chromedp.Evaluate[string](`document.body ? document.body.innerText.trim() : ""`))
	switch {
	case resp.Status == http.StatusOK && loc.Path == "/private":
		return true, resp.Status, text
	case loc.Path == "/.auth/signin", resp.Status == http.StatusUnauthorized, resp.Status == http.StatusForbidden:
		return false, resp.Status, text
	}
	t.Fatalf("%s /private: %d at %s, want the page, the sign-in page or a refusal: %.200q", r.Name, resp.Status, loc, text)
	return false, 0, ""
}

// browserCookies returns the tab's cookies for r as they can be set again
// (host-only cookies of 127.0.0.1, whatever the port).
func browserCookies(t *testing.T, ctx context.Context, r *replica) []*network.CookieParam {
	t.Helper()
	var out []*network.CookieParam
	do(t, ctx, "read cookies", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{r.URL("/")}})
		for _, c := range res.Cookies {
			p := &network.CookieParam{Name: c.Name, Value: c.Value, URL: r.URL("/"), Path: c.Path,
				Secure: c.Secure, HTTPOnly: c.HTTPOnly, SameSite: c.SameSite}
			if !c.Session {
				p.Expires = cdp.TimeSinceEpoch(c.Expires)
			}
			out = append(out, p)
		}
		return err
	}))
	if len(out) == 0 {
		t.Fatalf("the browser holds no cookie for %s", r.Name)
	}
	return out
}

// webAPI sends a Web API request to the emulator as a CRM user's
// application would (a client-credentials token, then the request), wants
// 204, and returns when the request was sent.
func (x *replicaEnv) webAPI(t *testing.T, method, path string, body map[string]any) time.Time {
	t.Helper()
	base := envValue(x.env, "CRMGATE_DATAVERSE_URL")
	resp, err := http.PostForm(base+"/"+envValue(x.env, "CRMGATE_DATAVERSE_TENANT_ID")+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {envValue(x.env, "CRMGATE_DATAVERSE_CLIENT_ID")},
		"client_secret": {envValue(x.env, "CRMGATE_DATAVERSE_CLIENT_SECRET")}, "scope": {base + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, base+dataversetest.APIPrefix+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	sent := time.Now()
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
	return sent
}
