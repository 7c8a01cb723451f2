package main

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// No container engine runs where these tests run, so they check what a
// `docker build` and `docker run` would show: the repository's Dockerfile,
// parsed with BuildKit's own parser and checked with its linter, follows
// the image rules, and its builder stage's go build command, run here with
// the same environment and flags, gives a static binary that reports the
// stamped version.

// pinnedImage is IMAGE:TAG@sha256:DIGEST: a tag says what the image is, the
// digest which one it is.
var pinnedImage = regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$`)

// dockerStages parses the repository's Dockerfile with BuildKit and fails on
// any lint warning.
func dockerStages(t *testing.T) []instructions.Stage {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		t.Errorf("Dockerfile lint %s: %s (%v)", rule, msg, loc)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return stages
}

// TestDockerfileRules: the image is built in stages, from base images pinned
// by tag and digest, and runs a distroless static nonroot image as
// 65532:65532 with an exec-form entry point, the OCI labels, both ports,
// and the SQLite store on a /data volume that user owns.
func TestDockerfileRules(t *testing.T) {
	stages := dockerStages(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a runtime stage", len(stages))
	}
	names := map[string]bool{}
	for _, s := range stages {
		if !names[s.BaseName] && !pinnedImage.MatchString(s.BaseName) {
			t.Errorf("FROM %s is not pinned as IMAGE:TAG@sha256:DIGEST", s.BaseName)
		}
		names[s.Name] = true
		for _, c := range s.Commands {
			if add, ok := c.(*instructions.AddCommand); ok {
				t.Errorf("ADD %v: use COPY (ADD fetches URLs and unpacks archives)", add.SourcePaths)
			}
		}
	}

	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static-debian12:nonroot@") {
		t.Errorf("the final stage is FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.BaseName)
	}
	var (
		user, workdir     string
		entrypoint, cmd   *instructions.ShellDependantCmdLine
		ports, volumes    []string
		labels, env       = map[string]string{}, map[string]string{}
		binary, dataChown bool
	)
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.WorkdirCommand:
			workdir = c.Path
		case *instructions.EntrypointCommand:
			entrypoint = &c.ShellDependantCmdLine
		case *instructions.CmdCommand:
			cmd = &c.ShellDependantCmdLine
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = strings.Trim(kv.Value, `"`) // LABEL keeps the quotes
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env[kv.Key] = kv.Value
			}
		case *instructions.CopyCommand:
			switch c.DestPath {
			case "/crmgate":
				binary = c.From != ""
			case "/data":
				dataChown = c.Chown == "65532:65532"
			}
		case *instructions.RunCommand:
			t.Errorf("RUN in the runtime stage: %v (distroless has no shell)", c.CmdLine)
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (distroless nonroot, numeric so that runAsNonRoot can check it)", user)
	}
	if entrypoint == nil || entrypoint.PrependShell || !slices.Equal(entrypoint.CmdLine, []string{"/crmgate"}) {
		t.Errorf("ENTRYPOINT %+v, want the exec form [\"/crmgate\"]", entrypoint)
	}
	if cmd == nil || cmd.PrependShell || !slices.Equal(cmd.CmdLine, []string{"serve"}) {
		t.Errorf("CMD %+v, want the exec form [\"serve\"]", cmd)
	}
	slices.Sort(ports)
	if !slices.Equal(ports, []string{"8080", "9090"}) {
		t.Errorf("EXPOSE %v, want 8080 (gateway) and 9090 (ops)", ports)
	}
	for _, l := range []string{"title", "description", "source", "licenses", "version", "url", "documentation"} {
		if labels["org.opencontainers.image."+l] == "" {
			t.Errorf("no org.opencontainers.image.%s label", l)
		}
	}
	if labels["org.opencontainers.image.licenses"] != "Apache-2.0" {
		t.Errorf("licenses label %q, want Apache-2.0 (LICENSE)", labels["org.opencontainers.image.licenses"])
	}
	if env["CRMGATE_DATABASE_URL"] != "sqlite:/data/crmgate.db" || !slices.Contains(volumes, "/data") || workdir != "/data" {
		t.Errorf("CRMGATE_DATABASE_URL %q, VOLUME %v, WORKDIR %q: want the SQLite store on the /data volume", env["CRMGATE_DATABASE_URL"], volumes, workdir)
	}
	if !binary || !dataChown {
		t.Errorf("COPY of the binary from the builder to /crmgate: %v; of /data owned by 65532:65532: %v", binary, dataChown)
	}
}

// TestDockerignore: the build context leaves out the VCS data and local
// databases (which may hold accounts).
func TestDockerignore(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	for _, want := range []string{".git", "**/*.db", "**/*.db-wal", "**/*.db-shm"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// TestDockerBuildCommand runs the builder stage's go build command as the
// Dockerfile writes it, with VERSION set, and checks that the result is a
// static executable (no program interpreter, no dynamic section, no shared
// libraries), so that it runs on distroless/static, and that `crmgate
// version` prints the stamped version.
func TestDockerBuildCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary (about a minute)")
	}
	stages := dockerStages(t)
	var build, versionArg string
	for _, c := range stages[0].Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			if line := strings.Join(c.CmdLine, " "); strings.Contains(line, "go build") {
				build = line
			}
		case *instructions.ArgCommand:
			for _, a := range c.Args {
				if a.Key == "VERSION" {
					versionArg = a.Key
				}
			}
		}
	}
	if build == "" || versionArg == "" {
		t.Fatalf("the builder stage has no go build RUN (%q) or no ARG VERSION", build)
	}
	for _, want := range []string{"CGO_ENABLED=0 ", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "-o /out/crmgate ", "./cmd/crmgate"} {
		if !strings.Contains(build, want) {
			t.Errorf("the go build command lacks %s: %s", want, build)
		}
	}
	out := filepath.Join(t.TempDir(), "crmgate")
	const stamp = "v9.8.7-dockerfile-test"
	run := exec.Command("sh", "-c", strings.Replace(build, "-o /out/crmgate ", "-o '"+out+"' ", 1))
	run.Dir = filepath.Join("..", "..") // WORKDIR /src, where COPY . . put the module
	run.Env = append(os.Environ(), "VERSION="+stamp)
	if msg, err := run.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, msg)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is not static", p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Error("the binary has a .dynamic section: it is not static")
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -s did not take")
	}

	got, err := exec.Command(out, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("crmgate version: %v\n%s", err, got)
	}
	if first, _, _ := strings.Cut(string(got), "\n"); first != "crmgate "+stamp {
		t.Errorf("crmgate version printed %q, want %q", got, "crmgate "+stamp)
	}
}
