package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/config"
)

// TestGenKeysFiles: gen-keys writes each secret to a new file of mode 0600
// that the configuration loads through <NAME>_FILE, prints the settings
// instead of the secrets, and never overwrites a file (leaving nothing
// behind when it refuses).
func TestGenKeysFiles(t *testing.T) {
	dir := t.TempDir()
	ck, sk := filepath.Join(dir, "cookie.key"), filepath.Join(dir, "signing.pem")
	var out bytes.Buffer
	if err := runGenKeys(&out, "--cookie-keys-file", ck, "--signing-key-file", sk); err != nil {
		t.Fatal(err)
	}
	want := "CRMGATE_COOKIE_KEYS_FILE=" + ck + "\nCRMGATE_SIGNING_KEYS_FILE=" + sk + "\n"
	if out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	for _, f := range []string{ck, sk} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	// The files are what the configuration reads.
	cfg, err := config.Load([]string{"CRMGATE_COOKIE_KEYS_FILE=" + ck, "CRMGATE_SIGNING_KEYS_FILE=" + sk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Cookie.DecodeKeys(); err != nil {
		t.Errorf("cookie key file: %v", err)
	}
	if keys, err := cfg.Signing.PrivateKeys(); err != nil || len(keys) != 1 {
		t.Errorf("signing key file: %d keys, %v", len(keys), err)
	}

	before, _ := os.ReadFile(ck)
	fresh := filepath.Join(dir, "fresh.pem")
	for _, args := range [][]string{
		{"--cookie-keys-file", ck},
		{"--signing-key-file", sk},
		{"--signing-key-file", fresh, "--cookie-keys-file", ck}, // the new one is not left behind
		{"--cookie-keys-file", fresh, "--signing-key-file", sk},
	} {
		out.Reset()
		err := runGenKeys(&out, args...)
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("%v: error %v, want a refusal to overwrite", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%v printed %q after refusing", args, out.String())
		}
		if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v left %s behind", args, fresh)
		}
	}
	if after, _ := os.ReadFile(ck); !bytes.Equal(before, after) {
		t.Error("an existing key file was changed")
	}

	// One file: the other secret is printed.
	out.Reset()
	if err := runGenKeys(&out, "--signing-key-file", filepath.Join(dir, "only.pem")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "CRMGATE_COOKIE_KEYS=") || !strings.Contains(out.String(), "CRMGATE_SIGNING_KEYS_FILE=") || strings.Contains(out.String(), "BEGIN") {
		t.Errorf("with only a signing key file: %q", out.String())
	}

	// Bad command lines are usage errors.
	for _, args := range [][]string{
		{"--nope"}, {"extra"}, {"--cookie-keys-file"},
		{"--cookie-keys-file", filepath.Join(dir, "same"), "--signing-key-file", filepath.Join(dir, "same")},
		{"--cookie-keys-file", filepath.Join(dir, "missing", "dir", "key")},
	} {
		err := runGenKeys(&out, args...)
		if err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "same")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the refused same-file command wrote a file")
	}
}

// TestGenKeysRelativePaths: the printed settings name the files by absolute
// path, so they work from any directory.
func TestGenKeysRelativePaths(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var out bytes.Buffer
	if err := runGenKeys(&out, "--cookie-keys-file", "c.key", "--signing-key-file", "s.pem"); err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	for _, want := range []string{"CRMGATE_COOKIE_KEYS_FILE=" + filepath.Join(real, "c.key"), "CRMGATE_SIGNING_KEYS_FILE=" + filepath.Join(real, "s.pem")} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("printed %q, want a line %q", out.String(), want)
		}
	}
}
