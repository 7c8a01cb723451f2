package proxy_test

import (
	"context"
	"html"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
)

// auditCell matches a row of the audit log's table: time, type, actor,
// user, client address, detail.
var auditRowRE = regexp.MustCompile(`<tr><td>([^<]*)</td><td>([^<]*)</td><td>(.*?)</td><td>(.*?)</td><td>([^<]*)</td><td>([^<]*)</td></tr>`)

type auditCells struct{ time, typ, actor, user, addr, detail string }

// auditTable is the rows of the audit log's table in body, in order.
func auditTable(body string) []auditCells {
	var out []auditCells
	for _, m := range auditRowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, auditCells{m[1], m[2], m[3], m[4], m[5], html.UnescapeString(m[6])})
	}
	return out
}

func auditRowTypes(rows []auditCells) string {
	var ts []string
	for _, r := range rows {
		ts = append(ts, r.typ)
	}
	return strings.Join(ts, ",")
}

// lookupCounter counts the store's reads of users by id, per id.
type lookupCounter struct {
	*store.DB
	mu  sync.Mutex
	ids map[string]int
}

func (l *lookupCounter) UserByID(ctx context.Context, id string) (*authz.User, error) {
	l.mu.Lock()
	l.ids[id]++
	l.mu.Unlock()
	return l.DB.UserByID(ctx, id)
}

func (l *lookupCounter) reset() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.ids
	l.ids = map[string]int{}
	return old
}

// TestConsoleAuditLog: the audit log lists events newest first and
// filters them by actor and user (by username, email address or id, each
// resolved to the account id), by action (a known type from the select
// or any typed one) and by time (UTC date-time inputs, read strictly),
// pages with the before cursor, links actors and users that are accounts
// to their page with one lookup per account and page, and explains an
// unknown user or a bad time instead of failing.
func TestConsoleAuditLog(t *testing.T) {
	lc := &lookupCounter{ids: map[string]int{}}
	h := inviteHarness(t, harnessConfig{store: func(db *store.DB) wiring.Store { lc.DB = db; return lc }})
	ctx := t.Context()
	const pw = "correct horse battery"
	t0 := h.clock.Now() // 09:00
	root := h.createUser("root", "root@example.test", pw, "admin")
	ann := h.createUser("ann", "ann@example.test", pw)
	bob := h.createUser("bob", "bob@example.test", pw)
	admin := h.browser()
	h.signIn(admin, "root", pw)
	h.clock.Advance(10 * time.Minute) // 09:10
	for _, u := range []*authz.User{ann, bob} {
		resp, body := h.consolePost(admin, "/users/"+u.ID+"/roles", url.Values{"roles": {"editor"}})
		seeOther(t, resp, body, "/.auth/admin/users/"+u.ID)
	}
	h.clock.Advance(10 * time.Minute) // 09:20
	if resp, _ := h.postSignIn(h.browser(), "bob", "wrong password!", nil); resp.StatusCode == 303 {
		t.Fatal("a wrong password signed in")
	}

	// Unfiltered: every event, newest first, as the store lists them.
	all, err := h.svc.Audit.ListAudit(ctx, audit.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	lc.reset()
	body := h.consoleGet(admin, "/audit", 200)
	rows := auditTable(body)
	if len(rows) != len(all) || len(all) < 6 {
		t.Fatalf("%d rows, the store has %d events:\n%s", len(rows), len(all), body)
	}
	for i, e := range all {
		if rows[i].typ != e.Type || rows[i].time != e.Time.UTC().Format("2006-01-02 15:04 UTC") {
			t.Errorf("row %d = %+v, want %s at %v", i, rows[i], e.Type, e.Time)
		}
	}
	if rows[0].typ != audit.EventSignInFailed || rows[0].addr != "127.0.0.1" {
		t.Errorf("newest row = %+v, want bob's failed sign-in from 127.0.0.1", rows[0])
	}
	// Accounts are linked by username, looked up once each per page.
	rootLink := `<a href="/.auth/admin/users/` + root.ID + `">root</a>`
	annLink := `<a href="/.auth/admin/users/` + ann.ID + `">ann</a>`
	var rolesRows int
	for _, r := range rows {
		if r.typ == audit.EventRolesSet {
			rolesRows++
			if r.actor != rootLink {
				t.Errorf("roles_set actor cell %q, want a link to root", r.actor)
			}
		}
		if r.typ == audit.EventUserCreated && r.actor != "test" {
			t.Errorf("user.created actor cell %q, want the plain actor test", r.actor)
		}
	}
	if rolesRows != 2 {
		t.Errorf("%d roles_set rows, want 2", rolesRows)
	}
	for id, n := range lc.reset() {
		if id != root.ID && n != 1 { // root's session reads its account too
			t.Errorf("user %s read %d times for one page, want 1", id, n)
		}
	}

	// Actor by username, user by email address or by id, each resolved.
	for _, tt := range []struct {
		query string
		want  func(audit.Event) bool
	}{
		{"actor=root", func(e audit.Event) bool { return e.Actor == root.ID }},
		{"user=ANN%40example.test", func(e audit.Event) bool { return e.UserID == ann.ID }},
		{"user=" + bob.ID, func(e audit.Event) bool { return e.UserID == bob.ID }},
		{"action=" + audit.EventRolesSet, func(e audit.Event) bool { return e.Type == audit.EventRolesSet }},
		// The typed action wins over the select.
		{"action=" + audit.EventRolesSet + "&action_other=" + audit.EventSignInFailed, func(e audit.Event) bool { return e.Type == audit.EventSignInFailed }},
		{"since=" + t0.Add(5*time.Minute).Format("2006-01-02T15:04"), func(e audit.Event) bool { return !e.Time.Before(t0.Add(5 * time.Minute)) }},
		{"until=" + t0.Add(15*time.Minute).Format("2006-01-02T15:04:05"), func(e audit.Event) bool { return e.Time.Before(t0.Add(15 * time.Minute)) }},
		{"actor=root&user=bob&since=" + t0.Format("2006-01-02T15:04"), func(e audit.Event) bool { return e.Actor == root.ID && e.UserID == bob.ID }},
	} {
		var want []string
		for _, e := range all {
			if tt.want(e) {
				want = append(want, e.Type)
			}
		}
		body := h.consoleGet(admin, "/audit?"+tt.query, 200)
		if got := auditRowTypes(auditTable(body)); got != strings.Join(want, ",") || len(want) == 0 || len(want) == len(all) {
			t.Errorf("audit?%s: %s, want %v (of %d)", tt.query, got, want, len(all))
		}
	}
	// The typed action is shown back in its field, a known one in the select.
	body = h.consoleGet(admin, "/audit?action_other=webhook.refused", 200)
	if !strings.Contains(body, `name="action_other" type="text" value="webhook.refused"`) || !strings.Contains(body, "No event matches.") {
		t.Errorf("a typed action is not kept:\n%s", body)
	}
	body = h.consoleGet(admin, "/audit?action="+audit.EventRolesSet, 200)
	if !strings.Contains(body, `<option value="`+audit.EventRolesSet+`" selected>`) {
		t.Errorf("the chosen action is not selected:\n%s", body)
	}

	// An unknown user is a message, not an error page.
	body = h.consoleGet(admin, "/audit?user=nobody%40example.test", 200)
	if !strings.Contains(body, "No user has the id, username or email address \u201cnobody@example.test\u201d") || len(auditTable(body)) != 0 {
		t.Errorf("unknown user:\n%s", body)
	}
	// Bad times are refused with a message and 400: strictly the inputs' form.
	for _, q := range []string{"since=yesterday", "since=2026-11-21+09:00", "until=2026-11-21T09:00Z", "since=2026-13-01T00:00",
		"until=24h"} {
		body := h.consoleGet(admin, "/audit?"+q, 400)
		if !strings.Contains(body, "time must be a date and time in UTC such as 2026-03-01T12:00.") {
			t.Errorf("audit?%s: no explanation:\n%s", q, body)
		}
	}
	body = h.consoleGet(admin, "/audit?since=2026-11-21T10:00&until=2026-11-21T09:00", 400)
	if !strings.Contains(body, "The end of the time range must be after its start.") {
		t.Errorf("an empty range is not explained:\n%s", body)
	}

	// The user page links to the user's events.
	body = h.consoleGet(admin, "/users/"+ann.ID, 200)
	if !strings.Contains(body, `<a href="/.auth/admin/audit?user=`+ann.ID+`">All events of this user</a>`) {
		t.Errorf("ann's page does not link to her events:\n%s", body)
	}
	if rows := auditTable(h.consoleGet(admin, "/audit?user="+ann.ID, 200)); len(rows) == 0 || rows[0].user != annLink {
		t.Errorf("ann's events: %+v", rows)
	}
}

var olderRE = regexp.MustCompile(`<a href="(/\.auth/admin/audit\?[^"]+)" rel="next">Older events</a>`)

// TestConsoleAuditLogPages: 60 events of one type fill a page of 50 and
// one of 10, linked by the before cursor; the filter stays on both pages.
func TestConsoleAuditLogPages(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	ctx := t.Context()
	const pw = "correct horse battery"
	h.createUser("root", "root@example.test", pw, "admin")
	admin := h.browser()
	h.signIn(admin, "root", pw)
	for i := range 60 {
		h.svc.Audit.Record(ctx, audit.Event{Type: "test.paged", Actor: "system", Detail: "n" + strconv.Itoa(i)})
		h.clock.Advance(time.Second)
	}
	body := h.consoleGet(admin, "/audit?action_other=test.paged", 200)
	rows := auditTable(body)
	m := olderRE.FindStringSubmatch(body)
	if len(rows) != 50 || rows[0].detail != "n59" || rows[49].detail != "n10" || m == nil {
		t.Fatalf("first page: %d rows, older link %v:\n%s", len(rows), m, body)
	}
	next := html.UnescapeString(m[1])
	if !strings.Contains(next, "action=test.paged") || !strings.Contains(next, "before=") {
		t.Errorf("older link %q does not keep the filter and the cursor", next)
	}
	resp, body := h.get(admin, next)
	rows = auditTable(body)
	if resp.StatusCode != 200 || len(rows) != 10 || rows[0].detail != "n9" || rows[9].detail != "n0" || olderRE.MatchString(body) ||
		!strings.Contains(body, `>Newest events</a>`) {
		t.Errorf("second page: %d, %d rows:\n%s", resp.StatusCode, len(rows), body)
	}
}
