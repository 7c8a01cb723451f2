package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/store"
)

// TestUsersSetBinding drives `crmgate users set-binding` against a real
// SQLite store: named users, --from-mode and --all, --dry-run, a lookup of
// one contact, per-user lines, exit status 1 when any change failed (an
// unknown login, the last break-glass admin), audit and lifecycle events
// for every change, and usage errors for contradictory flags.
func TestUsersSetBinding(t *testing.T) {
	dir := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(dir, "db")
	// A lookup binding is checked in Dataverse: the emulator holds Ann.
	_, dvEnv := startEmulatorWith(t, `{"contacts": [{"contactid": "c0000000-0000-4000-8000-00000000000a", "fullname": "Ann Lee", "lastname": "Lee"}]}`)
	env := append([]string{"CRMGATE_DATABASE_URL=" + dbURL, "CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192"}, dvEnv...)
	users := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users"}, args...), env, strings.NewReader(""), &out, io.Discard)
		return out.String(), err
	}
	for _, n := range []string{"root", "alice", "bob", "carol"} {
		args := []string{"create", "--username", n, "--email", n + "@example.test"}
		if n == "root" {
			args = append(args, "--roles", "admin")
		}
		if _, err := users(args...); err != nil {
			t.Fatal(err)
		}
	}
	modes := func() map[string]string {
		t.Helper()
		svc, closeStore, err := openAccounts(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		defer closeStore()
		us, err := svc.Accounts.ListUsers(context.Background(), authz.UserFilter{Limit: authz.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, u := range us {
			m[u.Username] = describeBinding(u.Binding)
		}
		return m
	}
	line := func(out, status, user, rest string) bool {
		return regexp.MustCompile(`(?m)^` + status + `\s+` + user + `\s+` + regexp.QuoteMeta(rest) + `$`).MatchString(out)
	}
	var ue usageError

	// Named users: two changes and an unknown login, which makes it fail.
	out, err := users("set-binding", "--mode", "username", "alice", "BOB@example.test", "nobody", "alice")
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "1 of 3 changes failed") {
		t.Fatalf("set-binding with an unknown login: %v\n%s", err, out)
	}
	if !line(out, "ok", "alice", "none -> username") || !line(out, "ok", "bob", "none -> username") ||
		!line(out, "failed", "nobody", "no such user") || !strings.Contains(out, "2 changed, 1 failed") {
		t.Fatalf("output:\n%s", out)
	}

	// --dry-run changes nothing.
	before := modes()
	out, err = users("set-binding", "--mode", "username", "--from-mode", "none", "--dry-run")
	if err != nil || !line(out, "would set", "carol", "none -> username") || !line(out, "would set", "root", "none -> username") ||
		strings.Contains(out, "alice") || !strings.Contains(out, "2 users would change") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if after := modes(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("dry run changed %v into %v", before, after)
	}

	// Everyone unbound: carol changes, root is the last break-glass admin.
	out, err = users("set-binding", "--mode", "username", "--from-mode", "none")
	if err == nil || !line(out, "ok", "carol", "none -> username") ||
		!line(out, "failed", "root", "refused: the last active, unbound admin (break-glass account) must stay unbound") {
		t.Fatalf("from-mode none: %v\n%s", err, out)
	}
	if m := modes(); m["root"] != "none" || m["carol"] != "username" {
		t.Fatalf("after from-mode none: %v", m)
	}

	// --all skips who is bound that way already and succeeds.
	out, err = users("set-binding", "--mode", "none", "--all")
	if err != nil || !strings.Contains(out, "3 changed, 0 failed") || strings.Contains(out, "root") {
		t.Fatalf("--all: %v\n%s", err, out)
	}

	// A lookup names one contact; setting it twice leaves it unchanged.
	const ann = "C0000000-0000-4000-8000-00000000000A"
	out, err = users("set-binding", "--mode", "lookup", "--contact", ann, "--contact-name", "Ann Lee", "alice")
	if err != nil || !line(out, "ok", "alice", "none -> lookup "+strings.ToLower(ann)) {
		t.Fatalf("lookup: %v\n%s", err, out)
	}
	out, err = users("set-binding", "--mode", "lookup", "--contact", ann, "--contact-name", "Ann Lee", "alice")
	if err != nil || !line(out, "unchanged", "alice", "lookup "+strings.ToLower(ann)) || !strings.Contains(out, "no users to change") {
		t.Fatalf("lookup again: %v\n%s", err, out)
	}

	// Every change was audited with the CLI as actor and left its event.
	svc, closeStore, err := openAccounts(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	es, err := svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventBindingSet, Limit: authz.MaxListLimit})
	closeStore()
	if err != nil || len(es) != 7 || es[0].Actor != cliActor || es[0].Detail != "lookup" {
		t.Fatalf("binding audit: %v %d events, newest %+v", err, len(es), es[0])
	}
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	events, err := db.OutboxEvents(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, e := range events {
		types[e.Type]++
	}
	if types[lifecycle.Bound] != 4 || types[lifecycle.Unbound] != 3 {
		t.Fatalf("lifecycle events: %v", types)
	}
	withoutDataverse := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users"}, args...), env[:2], strings.NewReader(""), &out, io.Discard)
		return out.String(), err
	}
	if err := checkedLookups(users, withoutDataverse); err != nil {
		t.Fatal(err)
	}

	for name, args := range map[string][]string{
		"no mode":             {"alice"},
		"no users":            {"--mode", "none"},
		"users and --all":     {"--mode", "none", "--all", "alice"},
		"--all and from-mode": {"--mode", "none", "--all", "--from-mode", "username"},
		"bad mode":            {"--mode", "sometimes", "alice"},
		"bad from-mode":       {"--mode", "none", "--from-mode", "sometimes"},
		"lookup of two":       {"--mode", "lookup", "--contact", ann, "alice", "bob"},
		"lookup for --all":    {"--mode", "lookup", "--contact", ann, "--all"},
		"lookup without id":   {"--mode", "lookup", "alice"},
		"lookup bad id":       {"--mode", "lookup", "--contact", "not-a-guid", "alice"},
		"contact not lookup":  {"--mode", "username", "--contact", ann, "alice"},
		"flag after a login":  {"alice", "--mode", "none"},
		"unknown flag":        {"--mode", "none", "--everyone"},
	} {
		if out, err := users(append([]string{"set-binding"}, args...)...); !errors.As(err, &ue) {
			t.Errorf("%s: %v, want a usage error\n%s", name, err, out)
		}
	}
}

// TestUsersSetBindingBatches changes more users than one SetBindings call
// takes, through --from-mode, which pages through the users and applies
// the changes in batches.
func TestUsersSetBindingBatches(t *testing.T) {
	dir := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(dir, "db")
	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	n := accounts.MaxBindingChanges + 20
	for i := range n {
		u := &authz.User{Username: fmt.Sprintf("u%04d", i), Email: fmt.Sprintf("u%04d@example.test", i),
			Status: authz.StatusActive, Binding: authz.Binding{Mode: authz.BindingNone}}
		if err := db.CreateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	env := []string{"CRMGATE_DATABASE_URL=" + dbURL}
	var out bytes.Buffer
	err = run(context.Background(), []string{"users", "set-binding", "--mode", "custom", "--from-mode", "none"}, env, strings.NewReader(""), &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), fmt.Sprintf("%d changed, 0 failed", n)) ||
		strings.Count(out.String(), "none -> custom") != n {
		t.Fatalf("%v\n%.500s", err, out.String())
	}
}

// checkedLookups shows that set-binding checks a lookup in Dataverse: a
// contact that does not exist, or that alice is bound to, is refused and
// the command fails; --allow-shared binds bob to alice's contact. Without
// the Dataverse settings a lookup cannot be checked and is refused.
func checkedLookups(users, withoutDataverse func(args ...string) (string, error)) error {
	const ann = "c0000000-0000-4000-8000-00000000000a"
	line := func(out, status, user, rest string) bool {
		return regexp.MustCompile(`(?m)^` + status + `\s+` + user + `\s+` + regexp.QuoteMeta(rest)).MatchString(out)
	}
	out, err := users("set-binding", "--mode", "lookup", "--contact", "c0000000-0000-4000-8000-0000000000ff", "bob")
	if err == nil || !line(out, "failed", "bob", "refused: there is no contact c0000000-0000-4000-8000-0000000000ff in Dataverse") {
		return fmt.Errorf("missing contact: %v\n%s", err, out)
	}
	out, err = users("set-binding", "--mode", "lookup", "--contact", ann, "bob")
	if err == nil || !line(out, "failed", "bob", "refused: contact "+ann+" is already bound to alice; give --allow-shared") {
		return fmt.Errorf("bound contact: %v\n%s", err, out)
	}
	out, err = users("set-binding", "--mode", "lookup", "--contact", ann, "--allow-shared", "bob")
	if err != nil || !line(out, "ok", "bob", "none -> lookup "+ann) {
		return fmt.Errorf("--allow-shared: %v\n%s", err, out)
	}
	out, err = withoutDataverse("set-binding", "--mode", "lookup", "--contact", ann, "carol")
	if err == nil || !line(out, "failed", "carol", "refused: contact "+ann+" cannot be checked: no Dataverse is configured (set CRMGATE_DATAVERSE_URL") {
		return fmt.Errorf("without Dataverse: %v\n%s", err, out)
	}
	return nil
}
