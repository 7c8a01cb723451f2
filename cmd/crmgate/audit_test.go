package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/store"
)

// TestUnlockAndAuditCommands: users list shows a running lockout, users
// enable says the account is still locked, users unlock clears it
// (audited), and crmgate audit prints the trail as aligned text or JSON
// lines, filtered by user, actor, type, time and limit, with stored
// control characters escaped in the text.
func TestUnlockAndAuditCommands(t *testing.T) {
	dir := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(dir, "db")
	env := []string{"CRMGATE_DATABASE_URL=" + dbURL, "CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192"}
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(t.Context(), args, env, strings.NewReader(""), &out, &bytes.Buffer{})
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	must("users", "create", "--username", "root", "--email", "root@example.test", "--roles", "admin")
	must("users", "create", "--username", "alice", "--email", "alice@example.test")

	// Lock alice out as failed sign-ins would, and plant a hostile detail.
	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u, err := db.UserByLogin(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Second)
	u.FailedCount, u.LockoutUntil = 5, until
	if err := db.UpdateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(t.Context(), &audit.Event{Type: audit.EventSignInFailed, UserID: u.ID, ClientAddr: "192.0.2.9",
		Detail: "wrong_password\n\x1b[2Jforged"}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out := must("users", "list")
	if !regexp.MustCompile(`alice\s+alice@example.test\s+active\s+until `+regexp.QuoteMeta(until.Format(time.RFC3339))).MatchString(out) ||
		!regexp.MustCompile(`root\s+root@example.test\s+active\s+admin\s+-`).MatchString(out) {
		t.Errorf("list does not show the lockout:\n%s", out)
	}
	var listed []struct {
		Username string
		Locked   bool
	}
	if err := json.Unmarshal([]byte(must("users", "list", "--json")), &listed); err != nil || len(listed) != 2 || !listed[0].Locked || listed[1].Locked {
		t.Errorf("list --json: %v %+v", err, listed)
	}
	if out := must("users", "enable", "--login", "alice"); !strings.Contains(out, "still locked out until "+until.Format(time.RFC3339)) ||
		!strings.Contains(out, "users unlock") {
		t.Errorf("enable of a locked account: %q", out)
	}
	if out := must("users", "enable", "--login", "root"); !strings.Contains(out, "not locked out") {
		t.Errorf("enable of an unlocked account: %q", out)
	}
	if out := must("users", "unlock", "alice@EXAMPLE.test"); !strings.Contains(out, "unlocked") {
		t.Errorf("unlock: %q", out)
	}
	if out := must("users", "unlock", "--login", "alice"); !strings.Contains(out, "was not locked out") {
		t.Errorf("second unlock: %q", out)
	}
	if _, err := cli("users", "unlock", "nobody"); err == nil {
		t.Error("unlock of an unknown user succeeded")
	}
	if out := must("users", "list"); strings.Contains(out, "until ") {
		t.Errorf("list after unlock still shows a lockout:\n%s", out)
	}

	// The trail as text: a header, aligned columns, newest first, escaped.
	out = must("audit")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 6 || !regexp.MustCompile(`^ID\s+TIME\s+TYPE\s+ACTOR\s+USER\s+ADDRESS\s+DETAIL$`).MatchString(lines[0]) ||
		!strings.Contains(lines[1], audit.EventAccountUnlocked) {
		t.Fatalf("audit text:\n%s", out)
	}
	if strings.ContainsAny(out, "\x1b") || !strings.Contains(out, `"wrong_password\n\x1b[2Jforged"`) {
		t.Errorf("a stored control character reached the terminal:\n%q", out)
	}
	col := strings.Index(lines[0], "TYPE")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "signin.") && !strings.HasPrefix(l[col:], "user.") && !strings.HasPrefix(l[col:], "account.") {
			t.Errorf("column TYPE not aligned in %q", l)
		}
	}
	// JSON lines, filtered.
	events := func(args ...string) []audit.Event {
		t.Helper()
		out := must(append([]string{"audit", "--json"}, args...)...)
		var es []audit.Event
		for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			if l == "" {
				continue
			}
			var e audit.Event
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("not one JSON object per line: %q", l)
			}
			es = append(es, e)
		}
		return es
	}
	all := events()
	if len(all) != len(lines)-1 {
		t.Fatalf("--json printed %d events, text %d", len(all), len(lines)-1)
	}
	for _, who := range []string{"alice", "ALICE@example.test", u.ID} {
		es := events("--user", who)
		if len(es) == 0 {
			t.Fatalf("--user %s: none", who)
		}
		for _, e := range es {
			if e.UserID != u.ID {
				t.Errorf("--user %s printed %+v", who, e)
			}
		}
	}
	if es := events("--user", "alice", "--type", audit.EventAccountUnlocked); len(es) != 1 || es[0].Actor != "cli" {
		t.Errorf("--type account.unlocked: %+v", es)
	}
	if es := events("--action", audit.EventUserCreated); len(es) != 2 {
		t.Errorf("--action user.created: %d events", len(es))
	}
	if es := events("--actor", "cli", "--limit", "2"); len(es) != 2 || es[0].ID < es[1].ID {
		t.Errorf("--actor cli --limit 2: %+v", es)
	}
	if es := events("--since", "1h"); len(es) != len(all) {
		t.Errorf("--since 1h: %d of %d", len(es), len(all))
	}
	if es := events("--until", "1h"); len(es) != 0 {
		t.Errorf("--until 1h: %+v", es)
	}
	if es := events("--since", all[1].Time.Format(time.RFC3339Nano), "--until", all[0].Time.Add(time.Millisecond).Format(time.RFC3339Nano)); len(es) < 2 {
		t.Errorf("--since/--until around the newest two: %+v", es)
	}
	if es := events("--limit", "0"); len(es) != len(all) {
		t.Errorf("--limit 0: %d of %d", len(es), len(all))
	}
	if es := events("--user", "deleted-user-id"); len(es) != 0 {
		t.Errorf("unknown user: %+v", es)
	}
}

// TestAuditCommandPages: crmgate audit reads past one page of the store
// (authz.MaxListLimit) for a larger --limit or --limit 0, each event once.
func TestAuditCommandPages(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "db")
	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2345
	for i := range n {
		if err := db.AppendAudit(t.Context(), &audit.Event{Type: "test.page", Detail: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	env := []string{"CRMGATE_DATABASE_URL=" + dbURL}
	for _, tt := range []struct {
		limit string
		want  int
	}{{"0", n}, {"1500", 1500}, {"1000", 1000}, {"1", 1}, {"100000", n}} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{"audit", "--json", "--limit", tt.limit}, env, nil, &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		seen := map[string]bool{}
		for i, l := range lines {
			var e audit.Event
			if json.Unmarshal([]byte(l), &e) != nil || seen[e.Detail] || e.Detail != strconv.Itoa(n-1-i) {
				t.Fatalf("--limit %s: line %d is %q", tt.limit, i, l)
			}
			seen[e.Detail] = true
		}
		if len(lines) != tt.want {
			t.Errorf("--limit %s printed %d events; want %d", tt.limit, len(lines), tt.want)
		}
	}
}
