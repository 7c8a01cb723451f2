package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeBlocks returns the fenced code blocks of lang in the README section
// that starts with heading, in order.
func readmeBlocks(t *testing.T, heading, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no %q section", heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var blocks []string
	for {
		_, rest, ok := strings.Cut(section, "```"+lang+"\n")
		if !ok {
			return blocks
		}
		block, after, ok := strings.Cut(rest, "```")
		if !ok {
			t.Fatalf("unterminated %s block in %q", lang, heading)
		}
		blocks = append(blocks, block)
		section = after
	}
}

// TestREADMEQuickStart follows "Running it for real" literally: its gen-keys
// line writes the key files, its exports are the environment ($PWD the
// directory it runs in), and check-config accepts it, both with the
// upstream URL and with the README's example policy in its place. The
// example's contact route passes too once Dataverse and the sign-in check
// are configured, as the README says.
func TestREADMEQuickStart(t *testing.T) {
	dir := t.TempDir()
	sh := readmeBlocks(t, "## Running it for real", "sh")
	if len(sh) == 0 {
		t.Fatal("no sh block in Running it for real")
	}
	var env []string
	var ranGenKeys, ranCheck bool
	for _, line := range strings.Split(sh[0], "\n") {
		cmd, _, _ := strings.Cut(line, "#")
		fields := strings.Fields(strings.ReplaceAll(cmd, "$PWD", dir))
		switch {
		case len(fields) == 0:
		case fields[0] == "export":
			env = append(env, fields[1])
		case len(fields) > 1 && fields[0] == "crmgate" && fields[1] == "gen-keys":
			args := fields[2:]
			for i, a := range args {
				if i > 0 && strings.HasPrefix(args[i-1], "--") && !filepath.IsAbs(a) {
					args[i] = filepath.Join(dir, a)
				}
			}
			var out bytes.Buffer
			if err := runGenKeys(&out, args...); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			ranGenKeys = true
		case len(fields) > 1 && fields[0] == "crmgate" && fields[1] == "check-config":
			ranCheck = true
		}
	}
	if !ranGenKeys || !ranCheck || len(env) < 4 {
		t.Fatalf("the quick start lost its gen-keys or check-config line, or its exports (%v)", env)
	}
	env = append(env, "CRMGATE_DATABASE_URL=sqlite:"+filepath.Join(dir, "crmgate.db"))
	checkConfig := func(name string, env []string) {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard); err != nil || !strings.Contains(out.String(), "configuration is valid") {
			t.Errorf("%s: check-config: %v\n%s", name, err, out.String())
		}
		if strings.Contains(out.String(), "warning") {
			t.Errorf("%s: check-config warns:\n%s", name, out.String())
		}
	}
	checkConfig("the quick start", env)

	yaml := readmeBlocks(t, "## Policy file", "yaml")
	if len(yaml) < 2 {
		t.Fatalf("Policy file has %d yaml blocks, want the example and its contact route", len(yaml))
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(yaml[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	var withPolicy []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "CRMGATE_UPSTREAM_URL=") {
			withPolicy = append(withPolicy, kv)
		}
	}
	withPolicy = append(withPolicy, "CRMGATE_POLICY_FILE="+policy)
	checkConfig("the example policy", withPolicy)

	contact := filepath.Join(dir, "contact.yaml")
	if err := os.WriteFile(contact, []byte(yaml[0]+yaml[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	_, dvEnv := startEmulator(t)
	withContact := append(append(withPolicy[:len(withPolicy)-1:len(withPolicy)-1], "CRMGATE_POLICY_FILE="+contact, "CRMGATE_SIGNIN_DATAVERSE_CHECK=true"), dvEnv...)
	checkConfig("the example policy with its contact route", withContact)

	// The example's upstream does not point at the gateway's own ports.
	for _, port := range []string{":8080", ":9090"} {
		for _, line := range strings.Split(yaml[0], "\n") {
			if strings.Contains(line, "url:") && strings.Contains(line, "127.0.0.1"+port) {
				t.Errorf("the example policy's upstream uses the gateway's port %s: %s", port, line)
			}
		}
	}
}
