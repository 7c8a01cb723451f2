package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/permissions"
)

// TestRESTAPIAudit: GET /api/audit lists the audit trail newest first for
// an admin session or a key with audit:read, filtered by user (id,
// username or email), actor, type and time, paged with before/next; it
// refuses the anonymous, non-admins, keys without the scope and every
// malformed or unknown query parameter with a clear 400.
func TestRESTAPIAudit(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	root := h.createUser("root", "root@example.test", "correct horse battery", "admin")
	alice := h.createUser("alice", "alice@example.test", "correct horse battery")
	admin, aliceC, anon := h.browser(), h.browser(), h.browser()
	h.signIn(admin, "root", "correct horse battery")
	h.clock.Advance(time.Minute)
	h.signIn(aliceC, "alice", "correct horse battery")
	h.clock.Advance(time.Minute)
	resp, _ := h.postSignIn(anon, "alice", "wrong password", nil)
	resp.Body.Close()
	ctx := context.Background()
	readKey, readInfo, err := h.svc.APIKeys.CreateAPIKey(ctx, "collector", []string{permissions.AuditRead}, time.Time{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	usersKey, _, _ := h.svc.APIKeys.CreateAPIKey(ctx, "flow", []string{permissions.UsersRead, permissions.BindingsWrite, permissions.ContactsRead}, time.Time{}, "test")

	type list struct {
		Events []audit.Event
		Next   string
	}
	call := func(c *http.Client, key, q string) (int, list, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", h.url("/.auth/api/audit"+q), nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, body := h.do(c, req)
		var l list
		_ = json.Unmarshal([]byte(body), &l)
		return resp.StatusCode, l, body
	}
	types := func(l list) []string {
		var out []string
		for _, e := range l.Events {
			out = append(out, e.Type)
		}
		return out
	}

	code, all, body := call(admin, "", "")
	if code != 200 || len(all.Events) < 5 || all.Next != "" {
		t.Fatalf("admin list: %d %s", code, body)
	}
	for i := 1; i < len(all.Events); i++ {
		if all.Events[i].ID >= all.Events[i-1].ID {
			t.Fatalf("not newest first: %v", types(all))
		}
	}
	for _, leak := range []string{"correct horse", "wrong password", "argon2id", "cgk_", readKey[17:]} {
		if strings.Contains(body, leak) {
			t.Fatalf("audit list leaks %q: %s", leak, body)
		}
	}

	// The key with audit:read; its use is audited as apikey.used.
	code, l, body := call(&http.Client{}, readKey, "?type="+audit.EventAPIKeyUsed)
	if code != 200 || len(l.Events) != 1 || l.Events[0].Actor != "apikey:"+readInfo.ID {
		t.Fatalf("key list of apikey.used: %d %s", code, body)
	}

	// Filters: user by id, username and email alike; actor; type; time.
	for _, who := range []string{alice.ID, "alice", "ALICE@example.test"} {
		code, l, body = call(admin, "", "?user="+url.QueryEscape(who))
		if code != 200 || len(l.Events) == 0 {
			t.Fatalf("user=%s: %d %s", who, code, body)
		}
		for _, e := range l.Events {
			if e.UserID != alice.ID {
				t.Fatalf("user=%s listed %+v", who, e)
			}
		}
	}
	code, l, _ = call(admin, "", "?user=alice&type="+audit.EventSignInFailed)
	if code != 200 || len(l.Events) != 1 || l.Events[0].Detail == "" {
		t.Fatalf("alice's failed sign-ins: %d %+v", code, l)
	}
	code, l, _ = call(admin, "", "?actor="+root.ID)
	if code != 200 || len(l.Events) != 1 || l.Events[0].Type != audit.EventSignIn {
		t.Fatalf("actor=root: %d %+v", code, l)
	}
	code, l, _ = call(admin, "", "?user=deleted-user-id")
	if code != 200 || len(l.Events) != 0 {
		t.Fatalf("unknown user id: %d %+v", code, l)
	}
	t1 := all.Events[len(all.Events)-1].Time // the oldest event
	code, l, _ = call(admin, "", "?since="+url.QueryEscape(t1.Add(time.Minute).Format(time.RFC3339))+"&until="+url.QueryEscape(t1.Add(2*time.Minute).Format(time.RFC3339)))
	if code != 200 || len(l.Events) != 1 || l.Events[0].UserID != alice.ID || l.Events[0].Type != audit.EventSignIn {
		t.Fatalf("the second minute: %d %v", code, types(l))
	}
	code, l, _ = call(admin, "", "?since=1h")
	if code != 200 || len(l.Events) != len(all.Events)+1 { // + the admin's own apikey-less call adds nothing; the key's use one row
		t.Fatalf("since=1h: %d %d events, want %d", code, len(l.Events), len(all.Events)+1)
	}

	// Paging: every event once, in order, then no next.
	var paged []int64
	next := ""
	for range 20 {
		q := "?limit=2"
		if next != "" {
			q += "&before=" + next
		}
		code, l, body = call(admin, "", q)
		if code != 200 {
			t.Fatalf("page: %d %s", code, body)
		}
		for _, e := range l.Events {
			paged = append(paged, e.ID)
		}
		if next = l.Next; next == "" {
			break
		}
	}
	_, now, _ := call(admin, "", "?limit=1000")
	if len(paged) != len(now.Events) {
		t.Fatalf("paging listed %d events; the whole list has %d", len(paged), len(now.Events))
	}
	for i, e := range now.Events {
		if paged[i] != e.ID {
			t.Fatalf("page order differs at %d", i)
		}
	}

	long := strings.Repeat("a", 129)
	for _, tt := range []struct {
		name, key, q string
		c            *http.Client
		status       int
		code, msg    string
	}{
		{"anonymous", "", "", anon, 401, "unauthenticated", ""},
		{"not an admin", "", "", aliceC, 403, "forbidden", ""},
		{"key without audit:read", usersKey, "", &http.Client{}, 403, "forbidden", "audit:read"},
		{"bad key", "cgk_aaaaaaaaaaaa_" + readKey[17:], "", &http.Client{}, 401, "invalid_api_key", ""},
		{"unknown parameter", "", "?usr=alice", admin, 400, "bad_request", `unknown query parameter "usr"`},
		{"unknown parameter with a good one", "", "?type=signout&sort=asc", admin, 400, "bad_request", "sort"},
		{"repeated parameter", "", "?type=a&type=b", admin, 400, "bad_request", "more than once"},
		{"bad since", "", "?since=yesterday", admin, 400, "bad_request", "RFC 3339"},
		{"bad until", "", "?until=2026-13-01T00:00:00Z", admin, 400, "bad_request", "until"},
		{"date without time", "", "?since=2026-03-01", admin, 400, "bad_request", "since"},
		{"negative duration", "", "?since=-1h", admin, 400, "bad_request", "since"},
		{"zero duration", "", "?since=0s", admin, 400, "bad_request", "since"},
		{"huge duration", "", "?since=2540400h", admin, 400, "bad_request", "since"},
		{"until before since", "", "?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", admin, 400, "bad_request", "after its start"},
		{"limit zero", "", "?limit=0", admin, 400, "bad_request", "limit"},
		{"limit huge", "", "?limit=100000", admin, 400, "bad_request", "limit"},
		{"limit overflow", "", "?limit=99999999999999999999", admin, 400, "bad_request", "limit"},
		{"limit not a number", "", "?limit=ten", admin, 400, "bad_request", "limit"},
		{"before zero", "", "?before=0", admin, 400, "bad_request", "before"},
		{"before negative", "", "?before=-5", admin, 400, "bad_request", "before"},
		{"before not a number", "", "?before=abc", admin, 400, "bad_request", "before"},
		{"long type", "", "?type=" + long, admin, 400, "bad_request", "type"},
		{"long actor", "", "?actor=" + long, admin, 400, "bad_request", "actor"},
		{"long user", "", "?user=" + long, admin, 400, "bad_request", "user"},
		{"control character", "", "?type=signin%0aforged", admin, 400, "bad_request", "type"},
		{"NUL in user", "", "?user=alice%00", admin, 400, "bad_request", "user"},
		{"bad UTF-8", "", "?actor=%ff%fe", admin, 400, "bad_request", "actor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := call(tt.c, tt.key, tt.q)
			var e struct{ Error, Message string }
			if code != tt.status || json.Unmarshal([]byte(body), &e) != nil || e.Error != tt.code || !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("%d %s", code, body)
			}
		})
	}
}

// TestRESTAPIUserByLogin: GET /api/users/{id} also takes a username or an
// email, as the bulk bindings endpoint names users; malformed names are
// a 400, unknown ones a 404.
func TestRESTAPIUserByLogin(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	alice := h.createUser("alice", "alice@example.test", "correct horse battery")
	admin := h.browser()
	h.signIn(admin, "root", "correct horse battery")
	for _, who := range []string{alice.ID, "alice", "ALICE", "alice@example.test", "Alice@Example.TEST"} {
		resp, body := h.get(admin, "/.auth/api/users/"+url.PathEscape(who))
		var u struct{ ID string }
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &u) != nil || u.ID != alice.ID {
			t.Errorf("GET users/%s: %d %s", who, resp.StatusCode, body)
		}
	}
	for _, tt := range []struct {
		who    string
		status int
	}{
		{"nobody", 404},
		{"nobody@example.test", 404},
		{strings.Repeat("a", 254), 404},
		{strings.Repeat("a", 255), 400},
		{"alice%20", 400},
		{"ali%00ce", 400},
		{"ali%0Ace", 400},
		{"%ff", 400},
		{"a%5Cb", 400},
	} {
		resp, body := h.get(admin, "/.auth/api/users/"+tt.who)
		if resp.StatusCode != tt.status {
			t.Errorf("GET users/%s: %d %s; want %d", tt.who, resp.StatusCode, body, tt.status)
		}
	}
}
