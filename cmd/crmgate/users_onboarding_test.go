package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/mail"
)

// cliMails returns the mails queued in the store at dbURL for userID.
func cliMails(t *testing.T, dbURL, userID string) []mail.Message {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	es, err := db.OutboxEvents(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	var out []mail.Message
	for _, e := range es {
		if e.Kind == mail.Kind {
			var m mail.Message
			if err := json.Unmarshal(e.Payload, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}

// TestUsersApproveReject drives `crmgate users create --status pending`,
// `approve` and `reject` against a real SQLite store: several logins at
// once, one line each, exit status 1 when any failed, the mails queued
// with links from CRMGATE_PUBLIC_URL, audit with the cli actor.
func TestUsersApproveReject(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "db")
	env := []string{"CRMGATE_DATABASE_URL=" + dbURL, "CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192", "CRMGATE_PUBLIC_URL=https://portal.example.com"}
	users := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users"}, args...), env, strings.NewReader(""), &out, io.Discard)
		return out.String(), err
	}
	for _, n := range []string{"ann", "bob", "cara", "dan"} {
		if _, err := users("create", "--username", n, "--email", n+"@example.test", "--status", "pending"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := users("create", "--username", "x", "--email", "x@example.test", "--status", "bogus"); err == nil {
		t.Error("a bogus status was accepted")
	}
	out, err := users("approve", "ann", "bob@example.test")
	if err != nil || !strings.Contains(out, "approved  ann") || !strings.Contains(out, "2 approved, 0 failed") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	out, err = users("approve", "ann", "ghost", "cara")
	if err == nil || !strings.Contains(out, "failed    ann    not waiting for approval") || !strings.Contains(out, "failed    ghost  no such user") ||
		!strings.Contains(out, "1 approved, 2 failed") {
		t.Errorf("approve with failures: %v\n%s", err, out)
	}
	out, err = users("reject", "--reason", "Use your work address.", "dan", "ann")
	if err == nil || !strings.Contains(out, "rejected  dan") || !strings.Contains(out, "not waiting for approval") {
		t.Errorf("reject: %v\n%s", err, out)
	}
	var ue usageError
	for _, bad := range [][]string{{"approve"}, {"reject", "--reason", strings.Repeat("x", 501), "bob"}, {"approve", "ann", "--x"}} {
		if _, err := users(bad...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
	if err := run(context.Background(), []string{"users", "approve", "bob"}, env[:2], strings.NewReader(""), io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "CRMGATE_PUBLIC_URL") {
		t.Errorf("without a public URL: %v", err)
	}

	svc, closeStore, err := openAccounts(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	ann, err := svc.Accounts.LookupUser(context.Background(), "ann")
	if err != nil || ann.Status != authz.StatusActive {
		t.Fatalf("ann %+v %v", ann, err)
	}
	if ms := cliMails(t, dbURL, ann.ID); len(ms) != 1 || !strings.Contains(ms[0].Text, "https://portal.example.com/.auth/signin") {
		t.Errorf("ann's mails %+v", ms)
	}
	if _, err := svc.Accounts.LookupUser(context.Background(), "dan"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("dan not deleted: %v", err)
	}
	es, _ := svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventUserRejected})
	if len(es) != 1 || es[0].Actor != "cli" {
		t.Fatalf("rejection audit %+v", es)
	}
	if ms := cliMails(t, dbURL, es[0].UserID); len(ms) != 1 || !strings.Contains(ms[0].Text, "Use your work address.") {
		t.Errorf("dan's mails %+v", ms)
	}
}

// TestUsersInviteContacts drives `crmgate users invite-contacts` against
// the emulator: ids and a filter, a dry run, per-contact lines, exit
// status 1 when one failed, a rerun that creates and sends nothing.
func TestUsersInviteContacts(t *testing.T) {
	const (
		eve = "e0000000-0000-4000-8000-00000000000e"
		fay = "e0000000-0000-4000-8000-00000000000f"
		gus = "e0000000-0000-4000-8000-000000000010"
	)
	_, dvEnv := startEmulatorWith(t, `{"contacts": [
	  {"contactid": "`+eve+`", "firstname": "Eve", "lastname": "Stone", "emailaddress1": "eve@example.test", "jobtitle": "partner"},
	  {"contactid": "`+fay+`", "firstname": "Fay", "lastname": "Hill", "emailaddress1": "fay@example.test", "jobtitle": "partner"},
	  {"contactid": "`+gus+`", "firstname": "Gus", "lastname": "NoMail", "jobtitle": "other"}]}`)
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "db")
	env := append([]string{"CRMGATE_DATABASE_URL=" + dbURL, "CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192",
		"CRMGATE_PUBLIC_URL=https://portal.example.com", "CRMGATE_CREDENTIALS_SET_PASSWORD_TTL=48h"}, dvEnv...)
	users := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users", "invite-contacts"}, args...), env, strings.NewReader(""), &out, io.Discard)
		return out.String(), err
	}
	out, err := users("--contact", eve+","+gus, "--dry-run")
	if err == nil || !strings.Contains(out, "would create  "+eve+"  eve@example.test") || !strings.Contains(out, "no email address") ||
		!strings.Contains(out, "dry run: 1 would be created, 0 skipped, 1 failed") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, err = users("--contact", eve, "--contact", gus)
	if err == nil || !strings.Contains(out, "created  "+eve) || !strings.Contains(out, "1 created, 0 skipped, 1 failed") {
		t.Fatalf("invite: %v\n%s", err, out)
	}
	out, err = users("--filter", "jobtitle eq 'partner'", "--json")
	var res []onboarding.InviteResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || len(res) != 2 ||
		res[0].Outcome != onboarding.Skipped || res[0].Reason != onboarding.ReasonAlreadyHasAccount || res[1].Outcome != onboarding.Created {
		t.Fatalf("filter: %v\n%s", err, out)
	}
	out, err = users("--filter", "jobtitle eq 'partner'")
	if err != nil || !strings.Contains(out, "0 created, 2 skipped, 0 failed") {
		t.Errorf("rerun: %v\n%s", err, out)
	}
	if ms := cliMails(t, dbURL, res[1].UserID); len(ms) != 1 || !strings.Contains(ms[0].Text, "https://portal.example.com/.auth/reset/confirm?purpose=set_password&token=") ||
		!strings.Contains(ms[0].Text, "2 days") {
		t.Errorf("fay's mails %+v", ms)
	}
	var ue usageError
	for _, bad := range [][]string{{}, {"--contact", eve, "--filter", "a eq 1"}, {"--filter", "emailaddress1 eq {email}"}, {eve}} {
		if _, err := users(bad...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
	var noDV bytes.Buffer
	if err := run(context.Background(), []string{"users", "invite-contacts", "--contact", eve}, env[:3], strings.NewReader(""), &noDV, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "no Dataverse") {
		t.Errorf("without Dataverse: %v", err)
	}
}
