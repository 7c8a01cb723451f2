package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...";
// empty means not stamped: buildVersion falls back to what the Go
// toolchain recorded.
var version = ""

// buildVersion is the version to report: the -X stamp; else the main
// module's version when the binary was built with go install MODULE@VERSION;
// else the source revision go build recorded from the VCS (12 hex digits,
// "-dirty" with uncommitted changes); else "dev".
func buildVersion(stamp string, info *debug.BuildInfo, ok bool) string {
	if stamp != "" {
		return stamp
	}
	if !ok || info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return rev + dirty
}

// printVersion writes the version line and the Go version and platform.
func printVersion(w io.Writer) {
	info, ok := debug.ReadBuildInfo()
	fmt.Fprintf(w, "crmgate %s\n%s %s/%s\n", buildVersion(version, info, ok), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
