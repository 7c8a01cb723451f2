package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/mail/mailtest"
	"github.com/crmgate/crmgate/proxy"
)

// The settings of TestReplicas that its assertions depend on.
const (
	// replicaStampCheck is CRMGATE_SESSION_STAMP_CHECK_INTERVAL, the
	// default: the session feed, not the stamp check, must end a session
	// signed out or disabled through another replica
	// (proxy.SessionFeedInterval).
	replicaStampCheck = 2 * time.Minute
	// replicaFeedBound is how soon the other replicas must refuse it: one
	// feed interval, plus one second for a busy machine.
	replicaFeedBound = proxy.SessionFeedInterval + time.Second
	// replicaMaxFailures is CRMGATE_SIGNIN_MAX_FAILURES.
	replicaMaxFailures = 3
	// replicaClientBurst is CRMGATE_SIGNIN_CLIENT_BURST (with a rate of one
	// attempt a minute, nothing refills during the test).
	replicaClientBurst = 8
	// replicaLease is CRMGATE_OUTBOX_LEASE.
	replicaLease = 3 * time.Second
	// replicaAction is the Dataverse action every lifecycle event calls;
	// its parameter Created or Updated says which event it was.
	replicaAction = "alex_WPUserEvent"
	// replicaPassword is every test account's password.
	replicaPassword = "correct horse battery staple"
)

// replicaEnv is the test's environment: a gateway configuration shared by
// every replica and by the CLI, so one database and the same keys.
type replicaEnv struct {
	env  []string
	em   *dataversetest.Server
	smtp *mailtest.Server
	db   *store.DB // the same database, opened by the test to read the outbox
	rs   *replicaSet
}

// TestReplicas runs three gateway processes on one PostgreSQL database,
// with the same cookie and signing keys from configuration, and shows that
// what must hold across replicas is shared through the store: sessions,
// sign-out, the lockout, the per-client sign-in throttle, one-time links,
// and outbox delivery (once each under contention, in order per user,
// nothing lost when a replica is killed mid-delivery). A client reaches
// the replicas as a load balancer without session affinity would send it,
// from an address given in X-Forwarded-For (127.0.0.1 is a trusted proxy),
// so that each subtest is a client of its own.
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gateway subprocesses")
	}
	x := newReplicaEnv(t)
	for _, name := range []string{"alice", "bob", "lockme", "resetme", "dora"} {
		x.cli(t, "users", "create", "--username", name, "--email", name+"@example.test", "--password-stdin")
	}
	x.rs = startReplicas(t, 3, x.env)
	rs := x.rs.All()
	a, b, c := rs[0], rs[1], rs[2]

	t.Run("a session from one replica is served by all", func(t *testing.T) {
		br := newReplicaBrowser(t, "203.0.113.1")
		// The form comes from C and is posted to A: its CSRF token is
		// valid on every replica (keys from configuration).
		if status, body := br.signIn(c, a, "alice", replicaPassword); status != http.StatusOK || !strings.HasPrefix(body, "user=") {
			t.Fatalf("sign-in through A: %d %q", status, body)
		}
		id := strings.Fields(strings.TrimPrefix(br.get(t, a, "/private"), "user="))[0]
		for _, r := range rs {
			if status, body := br.probe(t, r, br.cookies()); status != http.StatusOK || body != "user="+id+" jwt=yes" {
				t.Errorf("%s: the session from A got %d %q, want 200 %q", r.Name, status, body, "user="+id+" jwt=yes")
			}
		}
	})

	t.Run("sign-out on one replica ends the session on all", func(t *testing.T) {
		br := newReplicaBrowser(t, "203.0.113.2")
		if status, body := br.signIn(a, a, "bob", replicaPassword); status != http.StatusOK {
			t.Fatalf("sign-in through A: %d %q", status, body)
		}
		// A copy of the cookie, as a thief would keep it. It is checked
		// against the store only at the stamp check interval (2m): what
		// ends it below within a second is the session feed's revocation.
		copied := br.cookies()
		for _, r := range rs {
			if status, _ := br.probe(t, r, copied); status != http.StatusOK {
				t.Fatalf("%s: %d before the sign-out", r.Name, status)
			}
		}
		br.signOut(t, b)
		signedOut := time.Now()
		if status, _ := br.probe(t, b, copied); status == http.StatusOK {
			t.Errorf("B still serves the copied cookie right after signing it out")
		}
		// A and C learn of it from the session feed.
		ended := map[string]time.Duration{}
		for len(ended) < 2 && time.Since(signedOut) < replicaFeedBound+3*time.Second {
			for _, r := range []*replica{a, c} {
				if _, ok := ended[r.Name]; ok {
					continue
				}
				if status, _ := br.probe(t, r, copied); status != http.StatusOK {
					ended[r.Name] = time.Since(signedOut)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, r := range []*replica{a, c} {
			d, ok := ended[r.Name]
			switch {
			case !ok:
				t.Errorf("%s still serves the signed-out session %s after the sign-out", r.Name, time.Since(signedOut).Round(time.Millisecond))
			case d > replicaFeedBound:
				t.Errorf("%s refused the signed-out session only after %s, bound %s", r.Name, d, replicaFeedBound)
			}
		}
		t.Logf("after a sign-out on B: refused at once on B, on A after %s, on C after %s (bound: %s)",
			ended[a.Name].Round(time.Millisecond), ended[c.Name].Round(time.Millisecond), replicaFeedBound)
		// Refused for good, not once.
		for _, r := range rs {
			if status, _ := br.probe(t, r, copied); status == http.StatusOK {
				t.Errorf("%s serves the signed-out session again", r.Name)
			}
		}
	})

	t.Run("a user disabled through the CLI is signed out on all replicas", func(t *testing.T) {
		br := newReplicaBrowser(t, "203.0.113.20")
		if status, _ := br.signIn(a, a, "dora", replicaPassword); status != http.StatusOK {
			t.Fatalf("sign-in: %d", status)
		}
		for _, r := range rs {
			if status, _ := br.probe(t, r, br.cookies()); status != http.StatusOK {
				t.Fatalf("%s: %d before the change", r.Name, status)
			}
		}
		x.cli(t, "users", "disable", "--login", "dora")
		disabled := time.Now()
		ended := map[string]time.Duration{}
		for len(ended) < len(rs) && time.Since(disabled) < replicaFeedBound+3*time.Second {
			for _, r := range rs {
				if _, ok := ended[r.Name]; !ok {
					if status, _ := br.probe(t, r, br.cookies()); status != http.StatusOK {
						ended[r.Name] = time.Since(disabled)
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, r := range rs {
			if d, ok := ended[r.Name]; !ok || d > replicaFeedBound {
				t.Errorf("%s: the disabled user's session ended after %v (ended: %v), bound %s", r.Name, d, ok, replicaFeedBound)
			}
		}
		t.Logf("a user disabled through the CLI: sessions refused after A %s, B %s, C %s (bound %s, stamp check interval %s)",
			ended[a.Name].Round(time.Millisecond), ended[b.Name].Round(time.Millisecond), ended[c.Name].Round(time.Millisecond),
			replicaFeedBound, replicaStampCheck)
	})

	t.Run("a lockout reached through the replicas holds on all", func(t *testing.T) {
		attacker := newReplicaBrowser(t, "203.0.113.3")
		for i := range replicaMaxFailures {
			r := rs[i%len(rs)]
			if status, _ := attacker.signIn(r, r, "lockme", "wrong password "+strconv.Itoa(i)); status != http.StatusUnauthorized {
				t.Fatalf("failure %d through %s: %d, want 401", i+1, r.Name, status)
			}
		}
		// The address is locked out of the account on every replica, the
		// right password included.
		for _, r := range rs {
			if status, body := attacker.signIn(r, r, "lockme", replicaPassword); status != http.StatusUnauthorized {
				t.Errorf("%s: the right password from the locked-out address got %d %.80q, want 401", r.Name, status, body)
			}
		}
		// The owner, from another address, is not locked out.
		owner := newReplicaBrowser(t, "198.51.100.3")
		if status, body := owner.signIn(c, c, "lockme", replicaPassword); status != http.StatusOK {
			t.Errorf("the owner from another address through C: %d %.80q, want 200", status, body)
		}
		// An operator's unlock, in the store, lifts it on every replica.
		x.cli(t, "users", "unlock", "--login", "lockme")
		if status, body := attacker.signIn(b, b, "lockme", replicaPassword); status != http.StatusOK {
			t.Errorf("the right password through B after the unlock: %d %.80q, want 200", status, body)
		}
	})

	t.Run("the per-client sign-in throttle reached through one replica holds on all", func(t *testing.T) {
		br := newReplicaBrowser(t, "203.0.113.4")
		throttledAfter := 0
		for i := range replicaClientBurst + 2 {
			status, _ := br.signIn(a, a, "nobody", "wrong password")
			if status == http.StatusTooManyRequests {
				throttledAfter = i
				break
			}
			if status != http.StatusUnauthorized {
				t.Fatalf("attempt %d through A: %d, want 401 or 429", i+1, status)
			}
		}
		if throttledAfter == 0 {
			t.Fatalf("A never throttled the client within %d attempts", replicaClientBurst+2)
		}
		for _, r := range []*replica{b, c} {
			if status, _ := br.signIn(r, r, "alice", replicaPassword); status != http.StatusTooManyRequests {
				t.Errorf("%s: a client A throttles after %d attempts got %d, want 429", r.Name, throttledAfter, status)
			}
		}
		t.Logf("A throttled the client after %d attempts (burst %d); B and C refused its next ones", throttledAfter, replicaClientBurst)
		// Another client is not affected.
		other := newReplicaBrowser(t, "198.51.100.4")
		if status, _ := other.signIn(b, b, "alice", replicaPassword); status != http.StatusOK {
			t.Errorf("another client through B: %d, want 200", status)
		}
	})

	t.Run("a reset link from one replica is spent on another and refused on the third", func(t *testing.T) {
		x.testResetLink(t, a, b, c)
	})

	t.Run("an invitation redeemed on one replica is refused on the others", func(t *testing.T) {
		x.testInvitation(t, a, b, c)
	})

	t.Run("outbox under contention: every event once, in order per user", func(t *testing.T) {
		x.testOutboxContention(t)
	})

	// Last: they stop replicas A and B.
	t.Run("a replica killed mid-delivery loses nothing", func(t *testing.T) {
		x.testOutboxKill(t, a, b, c)
	})

	t.Run("a replica stopped with SIGTERM leaves the others serving", func(t *testing.T) {
		br := newReplicaBrowser(t, "203.0.113.7")
		if status, body := br.signIn(b, b, "alice", replicaPassword); status != http.StatusOK {
			t.Fatalf("sign-in through B: %d %.200q", status, body)
		}
		b.Signal(t, syscall.SIGTERM)
		if _, err := b.Exited(); err != nil || !strings.Contains(b.Logs(), "serve returned: <nil>") {
			t.Errorf("B did not stop cleanly on SIGTERM: %v", err)
		}
		if status, _ := br.probe(t, c, br.cookies()); status != http.StatusOK {
			t.Errorf("C: the session from the stopped B got %d, want 200", status)
		}
	})
}

// newReplicaEnv starts the emulator, the mail server and the upstream, and
// builds the configuration on a PostgreSQL schema of the test's own.
func newReplicaEnv(t *testing.T) *replicaEnv {
	t.Helper()
	const (
		tenant   = "emulator.local"
		clientID = "00000000-0000-4000-8000-00000000c0de"
		secret   = "replicas-test-secret"
	)
	dbURL := storetest.PostgresURL(t)
	em := dataversetest.NewServer(dataversetest.Options{TenantID: tenant,
		Clients: []dataversetest.Client{{ID: clientID, Secret: secret}},
		Actions: map[string]dataversetest.Action{replicaAction: {}}})
	t.Cleanup(em.Close)
	smtp := mailtest.Start(t, mailtest.Options{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jwt := "no"
		if strings.Count(r.Header.Get("X-Current-User"), ".") == 2 {
			jwt = "yes"
		}
		fmt.Fprintf(w, "user=%s jwt=%s", r.Header.Get("X-Current-User-Id"), jwt)
	}))
	t.Cleanup(upstream.Close)

	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("routes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\n"+
		"dataverse:\n  lifecycle_actions:\n"+
		"    created: {name: "+replicaAction+", params: {UserId: id, Created: status}}\n"+
		"    updated: {name: "+replicaAction+", params: {UserId: id, Updated: status}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := baseEnv(t, dir, "CRMGATE_DATABASE_URL="+dbURL, "CRMGATE_UPSTREAM_URL="+upstream.URL, "CRMGATE_POLICY_FILE="+policy,
		"CRMGATE_SHUTDOWN_DELAY=0s", "CRMGATE_TRUSTED_PROXIES=127.0.0.1/32",
		"CRMGATE_SESSION_STAMP_CHECK_INTERVAL="+replicaStampCheck.String(),
		"CRMGATE_SIGNIN_MAX_FAILURES="+strconv.Itoa(replicaMaxFailures),
		"CRMGATE_SIGNIN_CLIENT_RATE=1", "CRMGATE_SIGNIN_CLIENT_BURST="+strconv.Itoa(replicaClientBurst),
		"CRMGATE_DATAVERSE_URL="+em.URL, "CRMGATE_DATAVERSE_AUTHORITY_HOST="+em.URL, "CRMGATE_DATAVERSE_TENANT_ID="+tenant,
		"CRMGATE_DATAVERSE_CLIENT_ID="+clientID, "CRMGATE_DATAVERSE_CLIENT_SECRET="+secret, "CRMGATE_DATAVERSE_TIMEOUT=2s",
		"CRMGATE_OUTBOX_POLL_INTERVAL=100ms", "CRMGATE_OUTBOX_MAX_BACKOFF=1s", "CRMGATE_OUTBOX_LEASE="+replicaLease.String(),
		"CRMGATE_SMTP_URL=smtp://127.0.0.1:"+strconv.Itoa(smtp.Port)+"?tls=none", "CRMGATE_SMTP_FROM=noreply@example.test",
		"CRMGATE_SMTP_TIMEOUT=2s")
	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &replicaEnv{env: env, em: em, smtp: smtp, db: db}
}

// cli runs a crmgate command in this process on the replicas' database, as
// an operator would, with replicaPassword on its standard input.
func (x *replicaEnv) cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut strings.Builder
	if err := run(context.Background(), args, x.env, strings.NewReader(replicaPassword+"\n"), &out, &errOut); err != nil {
		t.Errorf("crmgate %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// userIDs returns every user's id by username.
func (x *replicaEnv) userIDs(t *testing.T) map[string]string {
	t.Helper()
	users, err := x.db.ListUsers(t.Context(), authz.UserFilter{Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, u := range users {
		ids[u.Username] = u.ID
	}
	return ids
}

// replicaBrowser is one client of the replicas: a cookie jar shared by
// every replica (host-only cookies ignore the port, as a browser does when
// one host name is balanced over replicas) and a client address.
type replicaBrowser struct {
	t   *testing.T
	ip  string // sent as X-Forwarded-For
	jar *cookiejar.Jar
}

func newReplicaBrowser(t *testing.T, ip string) *replicaBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &replicaBrowser{t: t, ip: ip, jar: jar}
}

// do sends one request from the browser, following redirects on the same
// replica, and returns the final status and body.
func (b *replicaBrowser) do(method, target string, form url.Values) (int, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", b.ip)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	c := &http.Client{Jar: b.jar, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp.StatusCode, string(data)
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// formToken GETs page on r and returns the form's CSRF token.
func (b *replicaBrowser) formToken(r *replica, page string) string {
	b.t.Helper()
	status, body := b.do(http.MethodGet, r.URL(page), nil)
	m := csrfField.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		b.t.Fatalf("%s %s: %d without a CSRF token: %.200q", r.Name, page, status, body)
	}
	return m[1]
}

// signIn loads the sign-in form from form and posts it to post, asking to
// return to /private; it returns the final answer (the upstream's on
// success).
func (b *replicaBrowser) signIn(form, post *replica, login, password string) (int, string) {
	b.t.Helper()
	tok := b.formToken(form, "/.auth/signin?redirect_url=/private")
	return b.do(http.MethodPost, post.URL("/.auth/signin"), url.Values{"login": {login}, "password": {password},
		"csrf_token": {tok}, "redirect_url": {"/private"}})
}

// signOut posts the sign-out form to r.
func (b *replicaBrowser) signOut(t *testing.T, r *replica) {
	t.Helper()
	tok := b.formToken(r, "/.auth/signout")
	if status, body := b.do(http.MethodPost, r.URL("/.auth/signout"), url.Values{"csrf_token": {tok}}); status != http.StatusOK {
		t.Fatalf("sign-out on %s: %d %.200q", r.Name, status, body)
	}
}

// get GETs path on r and fails unless it answers 200.
func (b *replicaBrowser) get(t *testing.T, r *replica, path string) string {
	t.Helper()
	status, body := b.do(http.MethodGet, r.URL(path), nil)
	if status != http.StatusOK {
		t.Fatalf("%s %s: %d %.200q", r.Name, path, status, body)
	}
	return body
}

// cookies returns the browser's cookies.
func (b *replicaBrowser) cookies() []*http.Cookie {
	return b.jar.Cookies(&url.URL{Scheme: "http", Host: "127.0.0.1"})
}

// probe GETs /private on r with exactly cookies (the jar is not used nor
// changed) and does not follow redirects: 200 and the upstream's answer
// when the session is served, a redirect to the sign-in page when not.
func (b *replicaBrowser) probe(t *testing.T, r *replica, cookies []*http.Cookie) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.URL("/private"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", b.ip)
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s /private: %v", r.Name, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && !strings.Contains(resp.Header.Get("Location"), "/.auth/signin") {
		t.Fatalf("%s /private: %d %q, want 200 or a redirect to sign in", r.Name, resp.StatusCode, resp.Header.Get("Location"))
	}
	return resp.StatusCode, string(data)
}

// testResetLink asks for a password reset through a; the mail (sent by
// whichever replica's outbox worker claims it) carries a one-time link that
// b spends, and that c then refuses.
func (x *replicaEnv) testResetLink(t *testing.T, a, b, c *replica) {
	br := newReplicaBrowser(t, "203.0.113.5")
	tok := br.formToken(a, "/.auth/reset")
	if status, body := br.do(http.MethodPost, a.URL("/.auth/reset"), url.Values{"login": {"resetme"}, "csrf_token": {tok}}); status != http.StatusOK {
		t.Fatalf("reset request through A: %d %.200q", status, body)
	}
	link := waitMail(t, x.smtp, "resetme@example.test", regexp.MustCompile(`http://\S+/\.auth/reset/confirm\?\S*token=[A-Za-z0-9_-]+`))
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	path := u.RequestURI()

	// B shows the form (the link is not spent by looking at it) and spends it.
	status, body := br.do(http.MethodGet, b.URL(path), nil)
	m := csrfField.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		t.Fatalf("the link on B: %d %.200q", status, body)
	}
	const newPassword = "quite another passphrase 4711"
	form := url.Values{"token": {u.Query().Get("token")}, "purpose": {u.Query().Get("purpose")}, "new_password": {newPassword}, "csrf_token": {m[1]}}
	if status, body := br.do(http.MethodPost, b.URL("/.auth/reset/confirm"), form); status != http.StatusOK || !strings.Contains(body, `name="login"`) {
		t.Fatalf("spending the link on B: %d %.200q, want the sign-in page", status, body)
	}
	// C refuses it, shown or posted, and so does A.
	if status, _ := br.do(http.MethodGet, c.URL(path), nil); status != http.StatusNotFound {
		t.Errorf("the spent link on C: %d, want 404", status)
	}
	form.Set("csrf_token", br.formToken(c, "/.auth/signin"))
	form.Set("new_password", "and yet another passphrase 0815")
	if status, _ := br.do(http.MethodPost, c.URL("/.auth/reset/confirm"), form); status != http.StatusNotFound {
		t.Errorf("posting the spent link to C: %d, want 404", status)
	}
	if status, _ := br.do(http.MethodGet, a.URL(path), nil); status != http.StatusNotFound {
		t.Errorf("the spent link on A: %d, want 404", status)
	}
	// The new password works everywhere; the old one nowhere.
	if status, body := br.signIn(c, c, "resetme", newPassword); status != http.StatusOK {
		t.Errorf("the new password through C: %d %.200q", status, body)
	}
	if status, _ := newReplicaBrowser(t, "198.51.100.5").signIn(a, a, "resetme", replicaPassword); status != http.StatusUnauthorized {
		t.Errorf("the old password through A: %d, want 401", status)
	}
}

// testInvitation creates an invitation through the CLI; its mailed code
// is shown by a, redeemed on b, and then refused by c and a.
func (x *replicaEnv) testInvitation(t *testing.T, a, b, c *replica) {
	x.cli(t, "invitations", "create", "--email", "invited@example.test")
	link := waitMail(t, x.smtp, "invited@example.test", regexp.MustCompile(`http://\S+/\.auth/invitation\?code=[A-Za-z0-9_-]+`))
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	path, code := u.RequestURI(), u.Query().Get("code")
	br := newReplicaBrowser(t, "203.0.113.6")
	status, body := br.do(http.MethodGet, a.URL(path), nil)
	m := csrfField.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil || !strings.Contains(body, `name="username"`) {
		t.Fatalf("the invitation on A: %d %.300q", status, body)
	}
	const pw = "a welcome passphrase 2718"
	form := url.Values{"code": {code}, "action": {"register"}, "username": {"invited"}, "password": {pw}, "password_confirm": {pw}, "csrf_token": {m[1]}}
	if status, body := br.do(http.MethodPost, b.URL("/.auth/invitation"), form); status != http.StatusOK || !strings.Contains(body, "/.auth/signin") {
		t.Fatalf("redeeming on B: %d %q", status, regexp.MustCompile(`(?s)<main.*</main>`).FindString(body))
	}
	for _, r := range []*replica{c, a} {
		if status, _ := br.do(http.MethodGet, r.URL(path), nil); status != http.StatusNotFound {
			t.Errorf("the redeemed invitation on %s: %d, want 404", r.Name, status)
		}
	}
	form.Set("username", "invited2")
	form.Set("csrf_token", br.formToken(c, "/.auth/signin"))
	if status, _ := br.do(http.MethodPost, c.URL("/.auth/invitation"), form); status != http.StatusNotFound {
		t.Errorf("redeeming it again on C: %d, want 404", status)
	}
	if status, body := br.signIn(c, c, "invited", pw); status != http.StatusOK {
		t.Errorf("the invited account through C: %d %.200q", status, body)
	}
}

// lifecycleCall is one call of replicaAction: the event type and the
// status it carried.
type lifecycleCall struct{ event, status string }

// callsByUser returns the calls of replicaAction for each user id, in the
// order the emulator received them.
func (x *replicaEnv) callsByUser() map[string][]lifecycleCall {
	out := map[string][]lifecycleCall{}
	for _, call := range x.em.ActionCalls(replicaAction) {
		id, _ := call["UserId"].(string)
		if s, ok := call["Created"].(string); ok {
			out[id] = append(out[id], lifecycleCall{"created", s})
		} else if s, ok := call["Updated"].(string); ok {
			out[id] = append(out[id], lifecycleCall{"updated", s})
		}
	}
	return out
}

// waitDelivered waits until no outbox event of ids is pending and
// returns their events.
func (x *replicaEnv) waitDelivered(t *testing.T, ids []string, within time.Duration) map[string][]outbox.Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, pending := map[string][]outbox.Event{}, 0
		for _, id := range ids {
			evs, err := x.db.OutboxEvents(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.DeliveredAt.IsZero() {
					pending++
				}
			}
			out[id] = evs
		}
		if pending == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outbox events still pending after %s", pending, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deliveredBy returns how many lifecycle events each replica has delivered.
func deliveredBy(t *testing.T, rs []*replica) []string {
	var out []string
	for _, r := range rs {
		if !r.running() {
			continue
		}
		n := 0.0
		for _, typ := range []string{"user.created", "user.updated"} {
			v, _ := r.Metric(t, `crmgate_outbox_delivered_total{type="`+typ+`"}`)
			n += v
		}
		out = append(out, fmt.Sprintf("%s %v", r.Name, n))
	}
	return out
}

// testOutboxContention creates 40 users through the CLI while the three
// replicas run, 10 of them then disabled, enabled and disabled again:
// every event reaches Dataverse exactly once (no replica dies, no lease
// ends), each user's in order, and each was claimed once.
func (x *replicaEnv) testOutboxContention(t *testing.T) {
	const users, busy = 40, 10
	before := deliveredBy(t, x.rs.All())
	var wg sync.WaitGroup
	for w := range 4 { // four operators at once
		wg.Go(func() {
			for i := w; i < users; i += 4 {
				name := fmt.Sprintf("burst%02d", i)
				x.cli(t, "users", "create", "--username", name, "--email", name+"@example.test")
				if i < busy {
					x.cli(t, "users", "disable", "--login", name)
					x.cli(t, "users", "enable", "--login", name)
					x.cli(t, "users", "disable", "--login", name)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ids := x.userIDs(t)
	var want []string
	for i := range users {
		want = append(want, ids[fmt.Sprintf("burst%02d", i)])
	}
	events := x.waitDelivered(t, want, 20*time.Second)
	calls := x.callsByUser()
	total := 0
	for i, id := range want {
		expect := []lifecycleCall{{"created", "active"}}
		if i < busy {
			expect = append(expect, lifecycleCall{"updated", "disabled"}, lifecycleCall{"updated", "active"}, lifecycleCall{"updated", "disabled"})
		}
		total += len(expect)
		if !slices.Equal(calls[id], expect) {
			t.Errorf("burst%02d: Dataverse got %v, want %v once each in this order", i, calls[id], expect)
		}
		for _, e := range events[id] {
			if e.Attempts != 1 || !e.FailedAt.IsZero() {
				t.Errorf("burst%02d: event %d (%s) claimed %d times, failed at %v", i, e.ID, e.Type, e.Attempts, e.FailedAt)
			}
		}
	}
	t.Logf("%d events of %d users delivered once each; lifecycle events delivered per replica before %v, after %v",
		total, users, before, deliveredBy(t, x.rs.All()))
}

// testOutboxKill kills replica a with SIGKILL while it is delivering. All
// three are paused (SIGSTOP) while the events are written, then a alone
// resumes, so that it claims them in one batch; a is killed while it holds
// claims, then b and c resume and deliver everything once a's lease ends.
// Duplicates may only be events a had claimed. a is killed as soon as the
// emulator has counted its second call, so usually before a marked that
// event delivered: it then arrives twice (at least once), while the calls
// a had not made yet, or that were cut off in the emulator's latency,
// arrive once.
func (x *replicaEnv) testOutboxKill(t *testing.T, a, b, c *replica) {
	const users = 16
	ids0 := x.userIDs(t)
	var all []string
	for _, id := range ids0 {
		all = append(all, id)
	}
	x.waitDelivered(t, all, 20*time.Second) // nothing is claimed when the replicas pause
	x.em.SetFaults(dataversetest.Faults{Latency: 150 * time.Millisecond})
	for _, r := range []*replica{a, b, c} {
		r.Send(t, syscall.SIGSTOP)
	}
	paused := []*replica{b, c}
	defer func() {
		for _, r := range paused {
			r.Send(t, syscall.SIGCONT)
		}
	}()
	callsBefore := len(x.em.ActionCalls(replicaAction))
	for i := range users {
		name := fmt.Sprintf("kill%02d", i)
		x.cli(t, "users", "create", "--username", name, "--email", name+"@example.test")
	}
	ids := x.userIDs(t)
	var want []string
	for i := range users {
		want = append(want, ids[fmt.Sprintf("kill%02d", i)])
	}
	a.Send(t, syscall.SIGCONT)

	// a has delivered some and holds claims on others: kill it.
	deadline := time.Now().Add(20 * time.Second)
	var claimed int
	for {
		evs, err := x.db.OutboxEvents(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		claimed = 0
		for _, e := range evs {
			if slices.Contains(want, e.UserID) && e.DeliveredAt.IsZero() && e.LockedUntil.After(time.Now()) {
				claimed++
			}
		}
		if len(x.em.ActionCalls(replicaAction))-callsBefore >= 2 && claimed >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A did not start delivering: %d calls, %d claimed", len(x.em.ActionCalls(replicaAction))-callsBefore, claimed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.Signal(t, syscall.SIGKILL)
	killedAt := time.Now()
	atKill := len(x.em.ActionCalls(replicaAction)) - callsBefore
	for _, r := range paused {
		r.Send(t, syscall.SIGCONT)
	}
	paused = nil
	x.em.SetFaults(dataversetest.Faults{})

	events := x.waitDelivered(t, want, replicaLease+20*time.Second)
	recovered := time.Since(killedAt)
	calls := x.callsByUser()
	reclaimed, duplicates := 0, 0
	for i, id := range want {
		evs := events[id]
		if len(evs) != 1 || !evs[0].FailedAt.IsZero() {
			t.Fatalf("kill%02d: outbox events %+v, want one delivered", i, evs)
		}
		again := evs[0].Attempts > 1
		if again {
			reclaimed++
		}
		n := len(calls[id])
		switch {
		case n == 0:
			t.Errorf("kill%02d: its created event never reached Dataverse", i)
		case n > 1 && !again:
			t.Errorf("kill%02d: delivered %d times but claimed once", i, n)
		case n > 1:
			duplicates += n - 1
		}
	}
	if reclaimed == 0 {
		t.Errorf("no event was claimed again after the kill: A held no claim")
	}
	t.Logf("SIGKILL of A with %d events claimed and %d of %d delivered: all delivered %s later; %d events claimed again after A's lease, %d delivered twice",
		claimed, atKill, users, recovered.Round(time.Millisecond), reclaimed, duplicates)
}
