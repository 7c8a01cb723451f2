package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsersPasswordPolicy: crmgate users create and set-password apply the
// password policy with CRMGATE_PASSWORD_MIN_LENGTH, print the rule's
// sentence, and refuse an unusable minimum.
func TestUsersPasswordPolicy(t *testing.T) {
	dir := t.TempDir()
	env := []string{"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(dir, "db"), "CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=8192",
		"CRMGATE_PASSWORD_MIN_LENGTH=16"}
	users := func(env []string, stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users"}, args...), env, strings.NewReader(stdin), &out, io.Discard)
		return out.String(), err
	}
	create := []string{"create", "--username", "carol", "--email", "carol@example.test", "--password-stdin"}
	if _, err := users(env, "fifteen chars!!\n", create...); err == nil || !strings.Contains(err.Error(), "at least 16 characters") {
		t.Fatalf("a 15-character password under a minimum of 16: %v", err)
	}
	if _, err := users(env, "sixteen chars ok\n", create...); err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := users(env, "I am CAROL, hello!\n", "set-password", "--login", "carol", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "username") {
		t.Fatalf("set-password containing the username: %v", err)
	}
	if _, err := users(env, "lamp river oboe quartz\n", "set-password", "--login", "carol", "--password-stdin"); err != nil {
		t.Fatalf("set-password: %v", err)
	}
	// The generated password passes the policy at any allowed minimum, even
	// one above the 26 characters of one rand.Text.
	if out, err := users(append(env, "CRMGATE_PASSWORD_MIN_LENGTH=40"), "", "set-password", "--login", "carol"); err != nil || !strings.Contains(out, "password: ") {
		t.Fatalf("generated password: %v %q", err, out)
	}
	if _, err := users(append(env, "CRMGATE_PASSWORD_MIN_LENGTH=5"), "", "set-password", "--login", "carol"); err == nil || !strings.Contains(err.Error(), "minimum length") {
		t.Fatalf("a minimum below 8: %v", err)
	}
}
