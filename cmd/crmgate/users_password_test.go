package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz/store"
)

// TestUsersForcePasswordChange: users force-password-change and
// set-password --must-change-password set the must-change flag (and a
// plain set-password clears it); an unknown login is an error.
func TestUsersForcePasswordChange(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "db")
	env := []string{"CRMGATE_DATABASE_URL=sqlite:" + dbPath, "CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192"}
	users := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users"}, args...), env, strings.NewReader(stdin), &out, io.Discard)
		return out.String(), err
	}
	mustChange := func() bool {
		t.Helper()
		db, err := store.Open(context.Background(), "sqlite:"+dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		u, err := db.UserByLogin(context.Background(), "dora")
		if err != nil {
			t.Fatal(err)
		}
		return u.MustChangePassword
	}
	if _, err := users("a first password 1\n", "create", "--username", "dora", "--email", "dora@example.test", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if mustChange() {
		t.Fatal("flag set at creation")
	}
	if out, err := users("", "force-password-change", "dora"); err != nil || !strings.Contains(out, "must choose a new password") {
		t.Fatalf("force-password-change: %v %q", err, out)
	}
	if !mustChange() {
		t.Fatal("force-password-change did not set the flag")
	}
	if _, err := users("a second password 2\n", "set-password", "--login", "dora", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if mustChange() {
		t.Fatal("set-password without --must-change-password kept the flag")
	}
	if out, err := users("a third password 3\n", "set-password", "--login", "dora", "--password-stdin", "--must-change-password"); err != nil ||
		!strings.Contains(out, "right after signing in") {
		t.Fatalf("set-password --must-change-password: %v %q", err, out)
	}
	if !mustChange() {
		t.Fatal("set-password --must-change-password did not set the flag")
	}
	if _, err := users("", "force-password-change", "--login", "nobody"); err == nil {
		t.Fatal("force-password-change of an unknown login succeeded")
	}
}
