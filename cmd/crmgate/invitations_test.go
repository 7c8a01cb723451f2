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

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/mail"
)

// TestInvitationsCommand drives `crmgate invitations` against a real
// SQLite store and the Dataverse emulator: create for an address and for a
// contact (its address read from Dataverse), list, resend (a new code),
// revoke, every mail queued with a link from CRMGATE_PUBLIC_URL and the
// code nowhere in the output, audited as the CLI; bad input is refused.
func TestInvitationsCommand(t *testing.T) {
	dir := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(dir, "db")
	const contact = "c0000000-0000-4000-8000-00000000000a"
	_, dvEnv := startEmulatorWith(t, `{"contacts": [{"contactid": "`+contact+`", "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.test"}]}`)
	env := append([]string{"CRMGATE_DATABASE_URL=" + dbURL, "CRMGATE_PUBLIC_URL=https://portal.example.com"}, dvEnv...)
	cmd := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"invitations"}, args...), env, strings.NewReader(""), &out, io.Discard)
		return out.String(), err
	}
	out, err := cmd("create", "--email", "new@example.test", "--roles", "member", "--redirect", "/welcome", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var first invitations.Invitation
	if err := json.Unmarshal([]byte(out), &first); err != nil || first.Email != "new@example.test" || first.Roles[0] != "member" {
		t.Fatalf("create: %q, %v", out, err)
	}
	if out, err = cmd("create", "--contact", contact); err != nil || !strings.Contains(out, "ann@example.test") {
		t.Fatalf("create for a contact: %q, %v", out, err)
	}
	if out, err = cmd("create", "--email", "team@example.test", "--group", "--max", "5", "--expires", "48h"); err != nil || !strings.Contains(out, "group, 5") {
		t.Fatalf("create group: %q, %v", out, err)
	}
	for _, bad := range [][]string{
		{"create"}, {"create", "--email", "x@example.test", "--max", "3"}, {"create", "--email", "x@example.test", "--redirect", "https://evil.example/"},
		{"create", "--email", "not an address"}, {"create", "--contact", "not-a-guid"}, {"revoke"}, {"frobnicate"},
		{"create", "--contact", "c0000000-0000-4000-8000-0000000000ff"},
	} {
		if _, err := cmd(bad...); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	if _, err := cmd("resend", "--id", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd("revoke", "--id", "3"); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd("revoke", "--id", "3"); err == nil {
		t.Fatal("revoked twice")
	}
	if _, err := cmd("resend", "--id", "3"); err == nil {
		t.Fatal("resent a revoked invitation")
	}
	out, err = cmd("list")
	if err != nil || !strings.Contains(out, "new@example.test") || !strings.Contains(out, "revoked") || strings.Count(out, "\n") != 4 {
		t.Fatalf("list: %q, %v", out, err)
	}

	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	evs, err := db.OutboxEvents(context.Background(), "invitation:1")
	if err != nil || len(evs) != 2 {
		t.Fatalf("mails of invitation 1 = %d, %v (want the first and the resent)", len(evs), err)
	}
	var codes []string
	for _, e := range evs {
		var m mail.Message
		if err := json.Unmarshal(e.Payload, &m); err != nil {
			t.Fatal(err)
		}
		i := strings.Index(m.Text, "https://portal.example.com/.auth/invitation?code=")
		if i < 0 || m.To != "new@example.test" {
			t.Fatalf("mail to %s without a public link:\n%s", m.To, m.Text)
		}
		code := strings.Fields(m.Text[i+len("https://portal.example.com/.auth/invitation?code="):])[0]
		codes = append(codes, code)
		if strings.Contains(out, code) {
			t.Fatal("the CLI printed a code")
		}
	}
	if codes[0] == codes[1] {
		t.Fatal("resend kept the code")
	}
	log := audit.New(db, nil, nil)
	created, err := log.ListAudit(context.Background(), audit.Filter{Type: invitations.EventCreated, Limit: 10})
	if err != nil || len(created) != 3 || created[0].Actor != cliActor {
		t.Fatalf("created audit = %+v, %v", created, err)
	}
	// Without a public URL there is no link to mail.
	var o bytes.Buffer
	err = run(context.Background(), []string{"invitations", "create", "--email", "x@example.test"}, []string{"CRMGATE_DATABASE_URL=" + dbURL}, strings.NewReader(""), &o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CRMGATE_PUBLIC_URL") {
		t.Fatalf("without a public URL: %v", err)
	}
	var ue usageError
	if _, err := cmd("create"); !errors.As(err, &ue) {
		t.Fatalf("missing flags: %v, want a usage error", err)
	}
}
