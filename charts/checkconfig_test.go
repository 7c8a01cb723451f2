package charts

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/crmgate/crmgate/config"
)

// TestRenderedConfigChecks runs the real `crmgate check-config`, as the
// init container does, with each scenario's rendered environment and the
// files the pod would see: the policy from the rendered ConfigMap, the
// secrets from the rendered Secret (or, for an existingSecret, the keys
// the chart README lists, made here), the projected token. Mount paths are
// moved under a temporary directory; nothing else changes.
func TestRenderedConfigChecks(t *testing.T) {
	needHelm(t)
	bin := filepath.Join(t.TempDir(), "crmgate")
	build := exec.Command("go", "build", "-o", bin, "../cmd/crmgate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cookie, err := config.GenerateCookieKey()
	if err != nil {
		t.Fatal(err)
	}
	signing, err := config.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	// What an operator puts into an existingSecret (charts/crmgate/README.md).
	existing := map[string]string{
		"cookie-keys":              cookie,
		"signing-keys":             signing,
		"database-url":             "postgres://crmgate:secret@db.example.com:5432/crmgate?sslmode=verify-full",
		"dataverse-client-secret":  "client-secret",
		"smtp-url":                 "smtps://mailer:secret@mail.example.com:465",
		"dataverse-webhook-secret": "a webhook key of at least 32 characters",
		"dataverse-certificate":    certificatePEM(t),
	}
	// What an operator puts into a policy.existingConfigMap.
	const existingPolicy = "upstreams:\n  - name: app\n    url: http://app.portal.svc.cluster.local:3000\nroutes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\n"
	imageEnv := dockerfileEnv(t)
	if !slices.Contains(imageEnv, "CRMGATE_DATABASE_URL=sqlite:/data/crmgate.db") {
		t.Fatalf("the Dockerfile's ENV changed (%v): check the chart's CRMGATE_DATABASE_URL", imageEnv)
	}
	for name, file := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			mounts := map[string]string{
				"/run/secrets/crmgate":               filepath.Join(root, "secrets"),
				"/etc/crmgate":                       filepath.Join(root, "policy"),
				"/var/run/secrets/crmgate/dataverse": filepath.Join(root, "token"),
				"/data":                              filepath.Join(root, "data"),
				"/tmp":                               filepath.Join(root, "tmp"),
			}
			for _, dir := range mounts {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			var dep *appsv1.Deployment
			secretFiles := existing
			writeFile(t, filepath.Join(mounts["/etc/crmgate"], "policy.yaml"), existingPolicy)
			for _, o := range renderScenario(t, file) {
				switch v := o.value.(type) {
				case *appsv1.Deployment:
					dep = v
				case *corev1.Secret:
					secretFiles = map[string]string{}
					for k, b := range v.Data {
						secretFiles[k] = string(b)
					}
				case *corev1.ConfigMap:
					writeFile(t, filepath.Join(mounts["/etc/crmgate"], "policy.yaml"), v.Data["policy.yaml"])
				}
			}
			if dep == nil {
				t.Fatal("no Deployment rendered")
			}
			for k, v := range secretFiles {
				writeFile(t, filepath.Join(mounts["/run/secrets/crmgate"], k), v)
			}
			writeFile(t, filepath.Join(mounts["/var/run/secrets/crmgate/dataverse"], "token"), "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
			initC := dep.Spec.Template.Spec.InitContainers[0]
			// The image's environment first, then the container's, which
			// overrides it name by name (as the container runtime does).
			env := append([]string{"PATH=" + os.Getenv("PATH")}, imageEnv...)
			for _, e := range initC.Env {
				v := e.Value
				for from, to := range mounts {
					if strings.HasPrefix(v, from+"/") {
						v = to + strings.TrimPrefix(v, from)
						break
					} else if strings.HasPrefix(v, "sqlite:"+from+"/") {
						v = "sqlite:" + to + strings.TrimPrefix(v, "sqlite:"+from)
						break
					}
				}
				env = append(env, e.Name+"="+v)
			}
			cmd := exec.Command(bin, initC.Args...)
			cmd.Env = overrideEnv(env)
			cmd.Dir = mounts["/data"]
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "configuration is valid") {
				t.Fatalf("check-config refused the rendered configuration: %v\n%s", err, out)
			}
			if strings.Contains(string(out), "warning") {
				t.Errorf("check-config warned:\n%s", out)
			}
			// The SQLite path is moved under root like every mount.
			if entries, _ := os.ReadDir(mounts["/data"]); len(entries) > 0 {
				t.Errorf("check-config wrote to /data: %v", entries)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// certificatePEM makes a self-signed certificate and its RSA key, as
// CRMGATE_DATAVERSE_CERTIFICATE_FILE holds them.
func certificatePEM(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crmgate chart test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
}

// dockerfileEnv returns the NAME=value pairs of the ENV instructions of the
// Dockerfile's last stage (the image the chart runs).
func dockerfileEnv(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && strings.EqualFold(f[0], "FROM"):
			env = nil
		case len(f) == 2 && strings.EqualFold(f[0], "ENV") && strings.Contains(f[1], "="):
			env = append(env, f[1])
		case len(f) > 0 && strings.EqualFold(f[0], "ENV"):
			t.Fatalf("Dockerfile: an ENV form this test does not read: %q", line)
		}
	}
	return env
}

// overrideEnv keeps the last value of each name, in first-seen order.
func overrideEnv(env []string) []string {
	last := map[string]int{}
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := last[name]; ok {
			out[i] = kv
			continue
		}
		last[name] = len(out)
		out = append(out, kv)
	}
	return out
}
