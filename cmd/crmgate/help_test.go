package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// TestHelpEveryCommand runs every command and subcommand with each help
// flag: the usage goes to stdout, nothing to stderr, no error (exit 0),
// and nothing is opened (no environment is given, so a command that went
// on to read its configuration or database would fail).
func TestHelpEveryCommand(t *testing.T) {
	var paths [][]string
	for cmd := range commandUsage {
		paths = append(paths, []string{cmd})
	}
	for _, sub := range append(slices.Clone(usersCommands), "set-binding", "api-key") {
		paths = append(paths, []string{"users", sub})
	}
	for _, sub := range []string{"create", "list", "revoke"} {
		paths = append(paths, []string{"users", "api-key", sub})
	}
	for _, path := range paths {
		for _, flag := range []string{"--help", "-h", "-help", "--h"} {
			for _, where := range []string{"alone", "after other flags"} {
				args := append(slices.Clone(path), flag)
				if where == "after other flags" {
					args = append(slices.Clone(path), "--json", "--login", "x", flag)
				}
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					var out, errOut bytes.Buffer
					err := run(t.Context(), args, nil, strings.NewReader(""), &out, &errOut)
					want := "usage: crmgate " + strings.Join(path, " ")
					if path[0] == "help" {
						want = "usage: crmgate help"
					}
					if err != nil || !strings.HasPrefix(out.String(), want) || errOut.Len() != 0 {
						t.Fatalf("err %v, stdout %q, stderr %q; want %q on stdout", err, firstLine(out.String()), errOut.String(), want)
					}
				})
			}
		}
	}
	// The top level and help COMMAND.
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "audit"}, {"help", "users", "unlock"}, {"help", "users", "api-key", "create"}} {
		var out bytes.Buffer
		if err := run(t.Context(), args, nil, nil, &out, &bytes.Buffer{}); err != nil || !strings.HasPrefix(out.String(), "usage: crmgate") {
			t.Errorf("%v: %v %q", args, err, firstLine(out.String()))
		}
	}
	// Every command the top-level usage lists has its own help.
	for _, line := range strings.Split(usage, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  ") && len(f) > 1 {
			if _, ok := commandUsage[f[0]]; !ok {
				t.Errorf("usage lists %q, which has no --help text", f[0])
			}
		}
	}
}

// TestUnknownCommandsAndFlags: unknown commands, subcommands and flags,
// and arguments to commands that take none, are usage errors (exit 2,
// printed to stderr by main) carrying the usage, and print nothing to
// stdout; "--" ends the search for a help flag.
func TestUnknownCommandsAndFlags(t *testing.T) {
	for _, args := range [][]string{
		{"frobnicate"}, {"frobnicate", "--help"}, {"--bogus"},
		{"serve", "--bogus"}, {"serve", "extra"}, {"check-config", "-x"}, {"gen-keys", "--out"}, {"version", "--short"},
		{"dev", "--bogus"}, {"dataverse-emulator", "--bogus"}, {"audit", "--bogus"}, {"audit", "extra"},
		{"users"}, {"users", "frob"}, {"users", "frob", "--help"}, {"users", "list", "--bogus"},
		{"users", "api-key"}, {"users", "api-key", "frob"}, {"users", "api-key", "frob", "-h"}, {"users", "api-key", "list", "--bogus"},
		{"users", "set-binding", "--bogus"}, {"users", "unlock", "a", "b"}, {"help", "frob"},
		{"audit", "--", "--help"},
		{"audit", "--limit", "-1"}, {"audit", "--since", "yesterday"}, {"audit", "--until", "-5m"},
		{"audit", "--since", "2026-03-02T00:00:00Z", "--until", "2026-03-01T00:00:00Z"},
		{"audit", "--type", strings.Repeat("t", 200)}, {"audit", "--user", "a\x1b[2J"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), args, nil, strings.NewReader(""), &out, &bytes.Buffer{})
			var ue usageError
			if !errors.As(err, &ue) || out.Len() != 0 {
				t.Fatalf("err %v (%T), stdout %q; want a usage error and no output", err, err, out.String())
			}
		})
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// TestVersion: version prints the stamp, else the module version or the
// VCS revision the toolchain recorded, and the Go version and platform.
func TestVersion(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}}
	dirty := append(slices.Clone(rev), debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	for _, tt := range []struct {
		name, stamp string
		info        *debug.BuildInfo
		ok          bool
		want        string
	}{
		{"stamp wins", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}, Settings: rev}, true, "v1.2.3"},
		{"module version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}, Settings: rev}, true, "v0.4.0"},
		{"revision", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev}, true, "0123456789ab"},
		{"dirty revision", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: dirty}, true, "0123456789ab-dirty"},
		{"nothing recorded", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "dev"},
		{"no build info", "", nil, false, "dev"},
	} {
		if got := buildVersion(tt.stamp, tt.info, tt.ok); got != tt.want {
			t.Errorf("%s: buildVersion = %q; want %q", tt.name, got, tt.want)
		}
	}
	old := version
	version = "v7.7.7-test"
	t.Cleanup(func() { version = old })
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version"}, nil, nil, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	want := "crmgate v7.7.7-test\n" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if out.String() != want {
		t.Errorf("version printed %q; want %q", out.String(), want)
	}
}

// TestVersionStampedByLdflags builds the binary with the README's build
// command and runs it: the -X stamp reaches crmgate version, and --help
// and an unknown flag give the exit statuses scripts rely on.
func TestVersionStampedByLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "crmgate")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v0.0.0-ldflags-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "crmgate v0.0.0-ldflags-test\ngo1.") {
		t.Fatalf("version: %v %q", err, out)
	}
	cmd := exec.Command(bin, "users", "unlock", "--help")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.HasPrefix(stdout.String(), "usage: crmgate users unlock") || stderr.Len() != 0 {
		t.Fatalf("users unlock --help: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
	cmd = exec.Command(bin, "audit", "--bogus")
	stdout.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "usage: crmgate audit") {
		t.Fatalf("audit --bogus: %v, stdout %q, stderr %q; want exit 2 with the usage on stderr", err, stdout.String(), stderr.String())
	}
}
