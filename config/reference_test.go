package config

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's configuration reference")

const (
	refBegin = "<!-- config-reference:begin -->\n"
	refEnd   = "<!-- config-reference:end -->"
)

// TestREADMEReference keeps the README's configuration table equal to the
// Config struct. Run with -update after changing the struct.
func TestREADMEReference(t *testing.T) {
	const path = "../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, refBegin), strings.Index(readme, refEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q … %q markers", strings.TrimSpace(refBegin), refEnd)
	}
	want := Reference()
	if got := readme[i+len(refBegin) : j]; got != want {
		if *update {
			if err := os.WriteFile(path, []byte(readme[:i+len(refBegin)]+want+readme[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("README.md configuration reference is out of date; run: go test ./config -run README -update")
	}
}
