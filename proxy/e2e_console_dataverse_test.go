package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/proxy"
)

// fixableMail delivers mail the way the gateway does without SMTP
// (mail.Unconfigured: every mail fails for good) until fixed, then
// records the events it delivers.
type fixableMail struct {
	mu        sync.Mutex
	fixed     bool
	delivered []int64
}

func (d *fixableMail) Deliver(ctx context.Context, e outbox.Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.fixed {
		return mail.Unconfigured{}.Deliver(ctx, e)
	}
	d.delivered = append(d.delivered, e.ID)
	return nil
}

func (d *fixableMail) fix() { d.mu.Lock(); d.fixed = true; d.mu.Unlock() }

func (d *fixableMail) got(id int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.delivered, id)
}

// enqueueMail enqueues a mail to to about userID, with a secret link in
// its body as the gateway's mails have, and returns its id.
func enqueueMail(t *testing.T, h *harness, typ, userID, to string) int64 {
	t.Helper()
	p, _ := json.Marshal(mail.Message{To: to, Subject: "Set your password", Text: "https://gw.example/.auth/set-password?token=TOPSECRETTOKEN"})
	e := outbox.Event{Kind: mail.Kind, Type: typ, UserID: userID, Payload: p, CreatedAt: h.clock.Now()}
	if err := h.db.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	all, err := h.db.OutboxEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return all[len(all)-1].ID
}

// failedIDs are the ids of the failed outbox events, in order.
func failedIDs(t *testing.T, h *harness) []int64 {
	t.Helper()
	evs, err := h.db.FailedOutbox(t.Context(), "", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

// delivered reports whether the store has event id as delivered.
func delivered(t *testing.T, h *harness, id int64) bool {
	t.Helper()
	all, err := h.db.OutboxEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(e outbox.Event) bool { return e.ID == id })
	return i >= 0 && !all[i].DeliveredAt.IsZero() && all[i].FailedAt.IsZero()
}

// outboxAudit is the one audit event of typ, or fails the test.
func outboxAudit(t *testing.T, h *harness, typ string) audit.Event {
	t.Helper()
	evs, err := h.svc.Audit.ListAudit(t.Context(), audit.Filter{Type: typ})
	if err != nil || len(evs) != 1 {
		t.Fatalf("%s audit events: %+v, %v; want one", typ, evs, err)
	}
	return evs[0]
}

// TestConsoleDataverse: after the emulator answered 429 with a
// Retry-After and then failed until the breaker opened, the Dataverse
// page shows the throttling, the open breaker, its refusals and the
// cache; the outbox part lists the mail the real worker gave up on,
// without its content. A failed event retried after its confirmation is
// delivered by the worker; one dropped after its confirmation is gone;
// the rest of its kind is dropped at once after a confirmation; each is
// audited with the administrator as actor.
func TestConsoleDataverse(t *testing.T) {
	emu, _ := newContactEmulator(t)
	dvClock := &fakeClock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	client, err := crmclient.New(crmclient.Config{URL: emu.URL, AuthorityHost: emu.URL, TenantID: dvTenant, ClientID: dvClient,
		ClientSecret: dvSecret, MaxRetries: -1, BreakerFailures: 3, BreakerOpenTimeout: time.Hour, Now: dvClock.Now,
		// The wait for a Retry-After passes on the client's clock.
		Sleep: func(_ context.Context, d time.Duration) error { dvClock.Advance(d); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := crmclient.NewContactCache(client, nil, crmclient.WebRoleModelStandard, crmclient.CacheOptions{Now: dvClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var worker atomic.Pointer[outbox.Worker]
	h := inviteHarness(t, harnessConfig{db: db, mutate: func(o *proxy.Options) {
		o.Console.DataverseStatus = func() dataverse.Status { return client.Status(cache) }
		// As cmd/crmgate wires it: a retry wakes the worker.
		admin, err := outbox.NewAdmin(db, o.AuditLog, outbox.AdminOptions{Now: o.Now, Notify: func() {
			if w := worker.Load(); w != nil {
				w.Notify()
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		o.Console.Outbox = admin
	}})
	ctx := t.Context()
	const pw = "correct horse battery"
	root := h.createUser("root", "root@example.test", pw, "admin")
	ann := h.createUser("ann", "ann@example.test", pw)
	bob := h.createUser("bob", "bob@example.test", pw)
	admin := h.browser()
	h.signIn(admin, "root", pw)

	deliverer := &fixableMail{}
	w, err := outbox.NewWorker(db, outbox.ByKind{mail.Kind: deliverer, lifecycle.Kind: outbox.NoDeliverer{}},
		outbox.Options{PollInterval: time.Hour, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	worker.Store(w)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	t.Cleanup(func() { stop(); <-done })
	e1 := enqueueMail(t, h, "set_password", ann.ID, "Ann <ann@Example.TEST>")
	e2 := enqueueMail(t, h, "set_password", bob.ID, "bob@example.test")
	e3 := enqueueMail(t, h, "welcome", "", "someone@elsewhere.test")
	w.Notify()
	waitFor(t, func() bool { return len(failedIDs(t, h)) == 3 })

	// Dataverse asks to wait 30 s: the 429 shows with its Retry-After, and
	// nothing is sent until then.
	emu.SetFaults(dataversetest.Faults{Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second, Count: 1})
	if _, err := client.WhoAmI(ctx); !crmclient.IsThrottled(err) {
		t.Fatalf("WhoAmI on a 429: %v", err)
	}
	body := h.consoleGet(admin, "/dataverse", 200)
	for _, want := range []string{`id="breaker-state">closed</span>`, "<td>429</td><td></td><td>30s</td>", "0 of 3 that open the breaker",
		`id="throttled-until">2026-11-21 09:00:30 UTC (in 30s): no request is sent before then`, "0 failures, 1 throttled (429)"} {
		if !strings.Contains(body, want) {
			t.Errorf("status after a 429: no %q\n%s", want, body)
		}
	}
	// Then it fails until the breaker opens, and the breaker refuses.
	emu.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	for range 3 {
		if _, err := client.WhoAmI(ctx); err == nil {
			t.Fatal("WhoAmI succeeded during the outage")
		}
	}
	before := emu.Requests("")
	if _, err := client.WhoAmI(ctx); err == nil || emu.Requests("") != before {
		t.Fatalf("the open breaker let a call through: %v", err)
	}
	if _, _, err := cache.Get(ctx, crmclient.MustParseGUID(annID)); err == nil {
		t.Fatal("the cache loaded a contact through the open breaker")
	}
	body = h.consoleGet(admin, "/dataverse", 200)
	for _, want := range []string{`id="breaker-state">open</span> since 2026-11-21 09:00 UTC`,
		"(3 in a row open it)", "Calls refused by the breaker</dt><dd>2</dd>", "3 failures, 1 throttled (429)",
		"<td>WhoAmI</td><td>503</td>", "<td>429</td><td></td><td>30s</td>", `id="throttled-until">not throttled`,
		"<td>contact</td><td>0</td><td>0</td><td>1</td><td>0</td><td>1</td><td>1</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("status with the breaker open: no %q\n%s", want, body)
		}
	}

	// The failed mails, with their user, error and a summary, never the
	// content or the address.
	for _, want := range []string{`<tr id="event-` + strconv.FormatInt(e1, 10) + `"><td>` + strconv.FormatInt(e1, 10) + `</td><td>mail</td><td>set_password</td><td><a href="/.auth/admin/users/` + ann.ID + `">ann</a></td><td>1</td><td>mail: event ` + strconv.FormatInt(e1, 10) + ` not sent: CRMGATE_SMTP_URL is unset</td>`,
		`<a href="/.auth/admin/users/` + bob.ID + `">bob</a>`, "bytes, to …@example.test", "bytes, to …@elsewhere.test",
		`action="/.auth/admin/dataverse/outbox/` + strconv.FormatInt(e2, 10) + `/drop"`, `<td>mail</td><td>0</td><td>0</td><td>none</td><td>3</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("outbox part: no %q\n%s", want, body)
		}
	}
	for _, secret := range []string{"TOPSECRETTOKEN", "ann@", "someone@"} {
		if strings.Contains(body, secret) {
			t.Errorf("the page shows %q of a payload", secret)
		}
	}

	// Retry asks first, with the warning; confirmed, the worker delivers it.
	retry := "/dataverse/outbox/" + strconv.FormatInt(e1, 10) + "/retry"
	resp, body := h.consolePost(admin, retry, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Retry failed event "+strconv.FormatInt(e1, 10)+"?") ||
		!strings.Contains(body, "an old event can arrive after later events of the same user") {
		t.Fatalf("retry without confirmation: %d\n%s", resp.StatusCode, body)
	}
	if ids := failedIDs(t, h); !slices.Contains(ids, e1) {
		t.Fatal("the unconfirmed retry changed the event")
	}
	deliverer.fix()
	resp, body = h.consolePost(admin, retry, url.Values{"confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/dataverse?notice=outbox-retried")
	waitFor(t, func() bool { return deliverer.got(e1) && delivered(t, h, e1) })
	if e := outboxAudit(t, h, outbox.EventRetried); e.Actor != root.ID || e.UserID != ann.ID {
		t.Errorf("retry audited as %+v, want actor root about ann", e)
	}
	// Retrying it again is refused: it is no longer failed.
	resp, body = h.consolePost(admin, retry, url.Values{"confirmed": {"yes"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "is no longer failed (it is delivered)") {
		t.Errorf("retrying a delivered event: %d\n%s", resp.StatusCode, body)
	}

	// Drop asks first; confirmed, the event is gone.
	drop := "/dataverse/outbox/" + strconv.FormatInt(e2, 10) + "/drop"
	resp, body = h.consolePost(admin, drop, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Drop failed event "+strconv.FormatInt(e2, 10)+"?") {
		t.Fatalf("drop without confirmation: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(admin, drop, url.Values{"confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/dataverse?notice=outbox-dropped")
	if ids := failedIDs(t, h); !slices.Equal(ids, []int64{e3}) {
		t.Errorf("failed events after the drop: %v, want [%d]", ids, e3)
	}
	all, err := db.OutboxEvents(ctx, "")
	if err != nil || slices.ContainsFunc(all, func(e outbox.Event) bool { return e.ID == e2 }) {
		t.Errorf("the dropped event is still stored (%v)", err)
	}
	if e := outboxAudit(t, h, outbox.EventDropped); e.Actor != root.ID || e.UserID != bob.ID {
		t.Errorf("drop audited as %+v, want actor root about bob", e)
	}
	resp, body = h.consolePost(admin, drop, url.Values{"confirmed": {"yes"}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "There is no failed event "+strconv.FormatInt(e2, 10)) {
		t.Errorf("dropping a dropped event: %d\n%s", resp.StatusCode, body)
	}

	// Retry all and drop all ask first; dropping all of mail empties it.
	resp, body = h.consolePost(admin, "/dataverse/outbox/retry-all", url.Values{"kind": {"mail"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "Retry every failed event of the kind mail?") ||
		!strings.Contains(body, `name="kind" value="mail"`) {
		t.Fatalf("retry all without confirmation: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(admin, "/dataverse/outbox/drop-all", url.Values{"kind": {"mail"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "Drop every failed event of the kind mail?") {
		t.Fatalf("drop all without confirmation: %d\n%s", resp.StatusCode, body)
	}
	if ids := failedIDs(t, h); !slices.Equal(ids, []int64{e3}) {
		t.Fatalf("the unconfirmed bulk actions changed the outbox: %v", ids)
	}
	resp, body = h.consolePost(admin, "/dataverse/outbox/drop-all", url.Values{"kind": {"mail"}, "confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/dataverse?notice=outbox-dropped-all")
	if ids := failedIDs(t, h); len(ids) != 0 || deliverer.got(e3) {
		t.Errorf("failed events after drop all: %v (delivered: %v)", ids, deliverer.got(e3))
	}
	if e := outboxAudit(t, h, outbox.EventDroppedAll); e.Actor != root.ID || e.Detail != "kind mail count 1" {
		t.Errorf("drop all audited as %+v", e)
	}
	resp, body = h.consolePost(admin, "/dataverse/outbox/retry-all", url.Values{"kind": {"mail"}, "confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/dataverse?notice=outbox-none")
	if body := h.consoleGet(admin, "/dataverse?notice=outbox-none", 200); !strings.Contains(body, "No failed event of the kind was left") ||
		!strings.Contains(body, "No failed event.") {
		t.Errorf("page after the bulk actions:\n%s", body)
	}
	// A bulk action without a kind is explained.
	resp, body = h.consolePost(admin, "/dataverse/outbox/retry-all", url.Values{"confirmed": {"yes"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "The kind must be 1 to 128 printable characters.") {
		t.Errorf("retry all without a kind: %d\n%s", resp.StatusCode, body)
	}
}

var failedRowRE = regexp.MustCompile(`<tr id="event-(\d+)">`)

// TestConsoleDataverseAccess: without Dataverse the page says so and still
// shows the outbox, 55 failed events in pages of 50; a user whose roles
// grant only users:read sees neither the audit log nor the Dataverse page
// in the menu and is refused both; one with audit:read sees them but no
// retry or drop button, and is refused those.
func TestConsoleDataverseAccess(t *testing.T) {
	h := inviteHarness(t, harnessConfig{policy: testPolicy + "permissions:\n  reader: [users:read]\n  auditor: [audit:read]\n"})
	ctx := t.Context()
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	h.createUser("rita", "rita@example.test", pw, "reader")
	h.createUser("otto", "otto@example.test", pw, "auditor")
	admin, reader, auditor := h.browser(), h.browser(), h.browser()
	h.signIn(admin, "root", pw)
	h.signIn(reader, "rita", pw)
	h.signIn(auditor, "otto", pw)
	for range 55 {
		enqueueMail(t, h, "welcome", "", "x@example.test")
	}
	w, err := outbox.NewWorker(h.db, outbox.ByKind{mail.Kind: mail.Unconfigured{}, lifecycle.Kind: outbox.NoDeliverer{}},
		outbox.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for {
		n, err := w.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	ids := failedIDs(t, h)
	if len(ids) != 55 {
		t.Fatalf("%d failed events, want 55", len(ids))
	}

	menu := func(body string) (audit, dv bool) {
		return strings.Contains(body, `<li><a href="/.auth/admin/audit"`), strings.Contains(body, `<li><a href="/.auth/admin/dataverse"`)
	}
	if a, d := menu(h.consoleGet(reader, "/users", 200)); a || d {
		t.Errorf("a users:read user's menu shows the audit log (%v) or Dataverse (%v)", a, d)
	}
	h.consoleGet(reader, "/audit", 403)
	h.consoleGet(reader, "/dataverse", 403)

	body := h.consoleGet(auditor, "/dataverse", 200)
	if a, d := menu(body); !a || !d {
		t.Errorf("an audit:read user's menu: audit log %v, Dataverse %v", a, d)
	}
	if !strings.Contains(body, `id="no-dataverse">No Dataverse is configured`) || !strings.Contains(body, "<td>mail</td><td>0</td><td>0</td><td>none</td><td>55</td>") {
		t.Errorf("the page without Dataverse:\n%s", body)
	}
	if strings.Contains(body, "/retry\"") || strings.Contains(body, "/drop\"") || strings.Contains(body, "retry-all") {
		t.Errorf("an audit:read user is offered retry or drop:\n%s", body)
	}
	resp, _ := h.consolePost(auditor, "/dataverse/outbox/"+strconv.FormatInt(ids[0], 10)+"/drop", url.Values{"confirmed": {"yes"}})
	if resp.StatusCode != http.StatusForbidden || len(failedIDs(t, h)) != 55 {
		t.Errorf("an audit:read user dropping: %d", resp.StatusCode)
	}

	// Pages of failed events.
	body = h.consoleGet(admin, "/dataverse", 200)
	rows := failedRowRE.FindAllStringSubmatch(body, -1)
	m := regexp.MustCompile(`<a href="([^"]+)" rel="next">More failed events</a>`).FindStringSubmatch(body)
	if len(rows) != 50 || rows[0][1] != strconv.FormatInt(ids[0], 10) || m == nil {
		t.Fatalf("first page of failed events: %d rows, next %v", len(rows), m)
	}
	resp, body = h.get(admin, strings.ReplaceAll(m[1], "&amp;", "&"))
	rows = failedRowRE.FindAllStringSubmatch(body, -1)
	if resp.StatusCode != 200 || len(rows) != 5 || rows[0][1] != strconv.FormatInt(ids[50], 10) || strings.Contains(body, "More failed events") ||
		!strings.Contains(body, ">First failed events</a>") {
		t.Errorf("second page of failed events: %d, %d rows\n%s", resp.StatusCode, len(rows), body)
	}
}
