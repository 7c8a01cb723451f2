// Package charts holds the checks of the Helm chart in charts/crmgate:
// helm lint and helm template of every scenario under testdata/scenarios,
// golden files of the rendered manifests, strict decoding of every
// rendered object into its Kubernetes API type, a Pod Security
// "restricted" evaluation of every pod, the schema refusing bad values,
// and the values table of the chart's README. It has no code of its own:
// only tests and their data.
//
// helm is built from the Go module proxy at the version pinned below, once
// per test run; nothing is fetched from a chart repository or a cluster.
package charts

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	// helmModule is the helm CLI the checks run, built from the Go
	// module proxy.
	helmModule = "helm.sh/helm/v4/cmd/helm@v4.3.2"
	// kubeVersion is the Kubernetes version templates are rendered for
	// (.Capabilities.KubeVersion) and checked against Chart.yaml's
	// kubeVersion.
	kubeVersion = "1.31.0"
	// chartDir is the chart, relative to this package.
	chartDir = "crmgate"
	// releaseName and namespace of every rendering.
	releaseName = "crmgate"
	namespace   = "crmgate"
)

var update = flag.Bool("update", false, "rewrite the golden files and the chart README's values table")

// helmBin is the helm binary TestMain built; empty when the tests skip.
var helmBin string

// helmHome isolates helm's configuration, cache and data directories.
var helmHome string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if testing.Short() && os.Getenv("CI") != "true" {
		fmt.Println("charts: -short: the chart checks need helm, built from the module proxy; skipped")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "crmgate-helm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// go install builds outside the main module (GOFLAGS cleared, so that
	// the module's own flags do not apply to helm's build).
	cmd := exec.Command("go", "install", helmModule)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "charts: building %s: %v\n%s", helmModule, err, out)
		return 1
	}
	helmBin = filepath.Join(dir, "helm")
	helmHome = filepath.Join(dir, "home")
	return m.Run()
}

// needHelm skips a test when TestMain did not build helm (-short outside CI).
func needHelm(t *testing.T) {
	t.Helper()
	if helmBin == "" {
		t.Skip("-short: helm not built")
	}
}

// helm runs the helm binary with args and returns its stdout; stderr is
// returned in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin, args...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + helmHome,
		"HELM_CACHE_HOME=" + filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME=" + filepath.Join(helmHome, "data"),
		"KUBECONFIG=" + filepath.Join(helmHome, "no-kubeconfig"),
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// render runs helm template with the values files.
func render(t *testing.T, valuesFiles ...string) (string, error) {
	t.Helper()
	args := []string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return helm(t, args...)
}

// lint runs helm lint --strict with the values files.
func lint(t *testing.T, valuesFiles ...string) (string, error) {
	t.Helper()
	args := []string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return helm(t, args...)
}

// scenarios lists the scenario value files by name (without .yaml).
func scenarios(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = f
	}
	for _, want := range []string{"default", "production", "gateway-api", "forward-auth-only"} {
		if _, ok := out[want]; !ok {
			t.Errorf("testdata/scenarios/%s.yaml is missing", want)
		}
	}
	return out
}

// TestLint runs helm lint --strict for every scenario.
func TestLint(t *testing.T) {
	needHelm(t)
	for name, file := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			if out, err := lint(t, file); err != nil {
				t.Fatal(err)
			} else if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint did not report success:\n%s", out)
			}
		})
	}
}

// TestGolden renders every scenario and compares it with
// testdata/golden/<scenario>.yaml; -update rewrites them.
func TestGolden(t *testing.T) {
	needHelm(t)
	for name, file := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			got, err := render(t, file)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./charts -run Golden -update)", err)
			}
			if got != string(want) {
				t.Fatalf("helm template output differs from %s; check the change, then run go test ./charts -run Golden -update\n%s", golden, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return ""
}

// TestNotes renders the release notes (helm install --dry-run=client, no
// cluster) of every scenario: the URLs, and for forward-auth the
// ingress-nginx annotations with the release's Service.
func TestNotes(t *testing.T) {
	needHelm(t)
	for name, file := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, "install", releaseName, chartDir, "--namespace", namespace, "--dry-run=client", "--values", file)
			if err != nil {
				t.Fatal(err)
			}
			i := strings.Index(out, "\nNOTES:\n")
			if i < 0 {
				t.Fatalf("no NOTES in:\n%s", out)
			}
			notes := out[i:]
			want := []string{"/.auth/signin", "/.auth/jwks.json", "svc.cluster.local:8080", "port-forward svc/crmgate", "helm test crmgate -n crmgate"}
			if name == "forward-auth-only" {
				// The repository README's ingress-nginx snippet (Forward-auth),
				// which names a release crmgate in namespace crmgate too.
				readme, err := os.ReadFile(filepath.Join("..", "README.md"))
				if err != nil {
					t.Fatal(err)
				}
				annotations := []string{
					`nginx.ingress.kubernetes.io/auth-url: "http://crmgate.crmgate.svc.cluster.local:8080/.auth/verify"`,
					`nginx.ingress.kubernetes.io/auth-signin: "https://$host/.auth/signin?redirect_url=$escaped_request_uri"`,
					`nginx.ingress.kubernetes.io/auth-response-headers: "X-Current-User,X-Current-User-Id,X-Current-User-Email,X-Current-User-Name,X-Current-User-Roles"`,
				}
				for _, a := range annotations {
					if !strings.Contains(string(readme), a+"\n") {
						t.Errorf("README.md's Forward-auth section lacks %s", a)
					}
				}
				want = append(want, annotations...)
			}
			for _, w := range want {
				if !strings.Contains(notes, w) {
					t.Errorf("NOTES lack %q:\n%s", w, notes)
				}
			}
			if strings.Contains(notes, "<no value>") {
				t.Errorf("NOTES show <no value>:\n%s", notes)
			}
		})
	}
}
