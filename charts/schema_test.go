package charts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemaRefuses renders the chart with bad values, each on top of a
// valid scenario so that only the value under test is wrong, and expects
// helm to refuse them with the given messages (helm template checks
// values.schema.json before rendering; the rules that compare two values
// are template failures).
func TestSchemaRefuses(t *testing.T) {
	needHelm(t)
	cases := []struct {
		name, base, values string
		want               []string
	}{
		{"unknown top-level key", "default", "replicas: 2\n", []string{"additional properties 'replicas' not allowed"}},
		{"unknown nested key", "default", "image:\n  name: crmgate\n", []string{"at '/image'", "additional properties 'name' not allowed"}},
		{"replicaCount a string", "default", "replicaCount: \"2\"\n", []string{"at '/replicaCount'", "got string, want integer"}},
		{"replicaCount negative", "default", "replicaCount: -1\n", []string{"at '/replicaCount'", "minimum"}},
		{"replicaCount fractional", "default", "replicaCount: 1.5\n", []string{"at '/replicaCount'", "want integer"}},
		{"two replicas on SQLite", "default", "replicaCount: 2\n", []string{"at '/database/type'", "value must be 'postgres'"}},
		{"autoscaling on SQLite", "default", "autoscaling:\n  enabled: true\n", []string{"at '/database/type'", "value must be 'postgres'"}},
		{"unknown database type", "default", "database:\n  type: mysql\n", []string{"at '/database/type'", "'sqlite', 'postgres'"}},
		{"postgres without a URL", "default", "database:\n  type: postgres\n", []string{"at '/secrets/databaseURL'", "does not match pattern"}},
		{"postgres URL of another scheme", "default", "database:\n  type: postgres\nsecrets:\n  databaseURL: mysql://db/crmgate\n", []string{"at '/secrets/databaseURL'"}},
		{"bad image pull policy", "default", "image:\n  pullPolicy: Sometimes\n", []string{"at '/image/pullPolicy'", "'Always', 'IfNotPresent', 'Never'"}},
		{"bad image digest", "default", "image:\n  digest: sha256:abc\n", []string{"at '/image/digest'"}},
		{"no public URL", "default", "config:\n  publicURL: \"\"\n", []string{"at '/config/publicURL'", "minLength"}},
		{"public URL with a path", "default", "config:\n  publicURL: https://portal.example.com/app\n", []string{"at '/config/publicURL'", "does not match pattern"}},
		{"no keys without existingSecret", "default", "secrets:\n  cookieKeys: \"\"\n  signingKeys: \"\"\n", []string{"at '/secrets/cookieKeys'", "at '/secrets/signingKeys'"}},
		{"neither policy nor upstream", "default", "config:\n  upstreamURL: \"\"\n", []string{"at '/config/upstreamURL'", "minLength"}},
		{"policy twice", "default", "policy:\n  content: \"routes: []\"\n  existingConfigMap: my-policy\n", []string{"at '/policy/existingConfigMap'", "value must be ''"}},
		{"ingress without hosts", "default", "ingress:\n  enabled: true\n", []string{"at '/ingress/hosts'", "minItems"}},
		{"ingress host with a scheme", "default", "ingress:\n  enabled: true\n  hosts: [\"https://portal.example.com\"]\n", []string{"at '/ingress/hosts/0'"}},
		{"ingress TLS without a secret", "default", "ingress:\n  enabled: true\n  hosts: [portal.example.com]\n  tls:\n    - hosts: [portal.example.com]\n", []string{"at '/ingress/tls/0'", "missing property 'secretName'"}},
		{"HTTPRoute without a Gateway", "default", "httpRoute:\n  enabled: true\n", []string{"at '/httpRoute/parentRefs'", "minItems"}},
		{"forward-auth without trusted proxies", "default", "forwardAuth:\n  enabled: true\n", []string{"at '/config/trustedProxies'", "minItems"}},
		{"PDB with one replica", "default", "podDisruptionBudget:\n  enabled: true\n", []string{"'anyOf' failed"}},
		{"PDB with an HPA of one", "production", "autoscaling:\n  minReplicas: 1\n", []string{"'anyOf' failed"}},
		{"HPA without a CPU request", "production", "resources:\n  requests:\n    cpu: null\n", []string{"at '/resources/requests'", "missing property 'cpu'"}},
		{"HPA max below min", "production", "autoscaling:\n  minReplicas: 4\n  maxReplicas: 3\n", []string{"autoscaling.maxReplicas (3) must be at least autoscaling.minReplicas (4)"}},
		{"negative shutdown delay", "default", "config:\n  shutdownDelaySeconds: -5\n", []string{"at '/config/shutdownDelaySeconds'", "minimum"}},
		{"shutdown delay as a duration", "default", "config:\n  shutdownDelaySeconds: 5s\n", []string{"at '/config/shutdownDelaySeconds'", "want integer"}},
		{"unknown setting in env", "default", "config:\n  env:\n    CRMGATE_SESION_IDLE_TIMEOUT: 1h\n", []string{"at '/config/env'", "CRMGATE_SESION_IDLE_TIMEOUT"}},
		{"setting the chart owns in env", "default", "config:\n  env:\n    CRMGATE_PUBLIC_URL: https://other.example.com\n", []string{"at '/config/env'", "CRMGATE_PUBLIC_URL"}},
		{"secret in env", "default", "config:\n  env:\n    CRMGATE_COOKIE_KEYS: abc\n", []string{"at '/config/env'", "CRMGATE_COOKIE_KEYS"}},
		{"env value not a string", "default", "config:\n  env:\n    CRMGATE_SITE_NAME: 5\n", []string{"at '/config/env/CRMGATE_SITE_NAME'", "want string"}},
		{"trusted proxy not a CIDR", "default", "config:\n  trustedProxies: [ingress-nginx]\n", []string{"at '/config/trustedProxies/0'"}},
		{"Dataverse without a tenant", "default", "dataverse:\n  url: https://example.crm.dynamics.com\n  clientID: 11111111-2222-3333-4444-555555555555\n  auth: federatedToken\n", []string{"at '/dataverse/tenantID'", "minLength"}},
		{"Dataverse client secret missing", "default", "dataverse:\n  url: https://example.crm.dynamics.com\n  tenantID: t\n  clientID: 11111111-2222-3333-4444-555555555555\n", []string{"at '/secrets/dataverseClientSecret'"}},
		{"Dataverse over http", "default", "dataverse:\n  url: http://example.crm.dynamics.com\n", []string{"at '/dataverse/url'"}},
		{"bad Dataverse auth", "default", "dataverse:\n  auth: password\n", []string{"at '/dataverse/auth'"}},
		{"mail without a sender", "default", "smtp:\n  enabled: true\nsecrets:\n  smtpURL: smtps://u:p@mail.example.com:465\n", []string{"at '/smtp/from'", "minLength"}},
		{"mail without a URL", "default", "smtp:\n  enabled: true\n  from: noreply@example.com\n", []string{"at '/secrets/smtpURL'"}},
		{"webhook without Dataverse", "default", "dataverse:\n  webhook: true\nsecrets:\n  dataverseWebhookSecret: " + strings.Repeat("k", 32) + "\n", []string{"at '/dataverse/url'"}},
		{"webhook with a short key", "default", "dataverse:\n  url: https://example.crm4.dynamics.com\n  webhook: true\nsecrets:\n  dataverseWebhookSecret: short\n", []string{"at '/secrets/dataverseWebhookSecret'", "minLength"}},
		{"service port out of range", "default", "service:\n  port: 70000\n", []string{"at '/service/port'", "maximum"}},
		{"bad service type", "default", "service:\n  type: ExternalName\n", []string{"at '/service/type'"}},
		{"resources with an unknown resource", "default", "resources:\n  limits:\n    gpu: 1\n", []string{"at '/resources/limits'", "'gpu' not allowed"}},
		{"resources with a bad quantity", "default", "resources:\n  limits:\n    memory: lots\n", []string{"at '/resources/limits/memory'"}},
		{"runAsUser root", "default", "securityContext:\n  runAsUser: 0\n", []string{"at '/securityContext/runAsUser'", "minimum"}},
		{"network policy peer with an unknown key", "default", "networkPolicy:\n  enabled: true\n  ingressFrom:\n    - podSelecter: {}\n", []string{"at '/networkPolicy/ingressFrom/0'", "'podSelecter' not allowed"}},
		{"ServiceMonitor interval without a unit", "default", "serviceMonitor:\n  enabled: true\n  interval: \"30\"\n", []string{"at '/serviceMonitor/interval'"}},
		{"probe period zero", "default", "probes:\n  readiness:\n    periodSeconds: 0\n", []string{"at '/probes/readiness/periodSeconds'", "minimum"}},
		{"secret key with a slash", "default", "secretKeys:\n  cookieKeys: a/b\n", []string{"at '/secretKeys/cookieKeys'"}},
		{"storage size not a quantity", "default", "database:\n  persistence:\n    size: big\n", []string{"at '/database/persistence/size'"}},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(c.values), 0o600); err != nil {
				t.Fatal(err)
			}
			base := filepath.Join("testdata", "scenarios", c.base+".yaml")
			out, err := render(t, base, file)
			if err == nil {
				t.Fatalf("case %d: helm template accepted:\n%s\nrendering:\n%.400s", i, c.values, out)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestLintRefuses checks that helm lint --strict, not only helm template,
// refuses values the schema refuses.
func TestLintRefuses(t *testing.T) {
	needHelm(t)
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("replicaCount: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := lint(t, filepath.Join("testdata", "scenarios", "default.yaml"), file)
	if err == nil {
		t.Fatalf("helm lint accepted two replicas on SQLite:\n%s", out)
	}
	if !strings.Contains(err.Error(), "value must be 'postgres'") {
		t.Errorf("lint error lacks the schema's reason:\n%v", err)
	}
}

// TestChartDefaultsNeedSettings shows that the chart's own values.yaml is
// not installable as it is: the public URL, the keys and an upstream or
// policy have no safe default.
func TestChartDefaultsNeedSettings(t *testing.T) {
	needHelm(t)
	_, err := render(t)
	if err == nil {
		t.Fatal("the chart rendered without a public URL, keys or upstream")
	}
	for _, w := range []string{"/config/publicURL", "/secrets/cookieKeys", "/secrets/signingKeys", "/config/upstreamURL"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}
