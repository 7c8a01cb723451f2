package charts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/crmgate/crmgate/config"
)

const (
	valuesBegin = "<!-- values:begin -->\n"
	valuesEnd   = "<!-- values:end -->"
)

// value is one documented key of values.yaml.
type value struct {
	path        string // dotted, e.g. image.pullPolicy
	def         string // the default, as JSON
	description string
}

// documentedValues walks values.yaml: a key whose head comment has a
// "# --" line is documented as a whole (its description is that line and
// the comment lines after it); a mapping without one is walked into; any
// other key without a description is an error.
func documentedValues(t *testing.T) []value {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []value
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := prefix + k.Value
			desc := description(k.HeadComment)
			if desc == "" && v.Kind == yaml.MappingNode && len(v.Content) > 0 {
				walk(v, path+".")
				continue
			}
			if desc == "" {
				t.Errorf("values.yaml: %s has no \"# --\" description (line %d)", path, k.Line)
				continue
			}
			var x any
			if err := v.Decode(&x); err != nil {
				t.Fatalf("values.yaml: %s: %v", path, err)
			}
			j, err := json.Marshal(x)
			if err != nil {
				t.Fatalf("values.yaml: %s: %v", path, err)
			}
			out = append(out, value{path: path, def: string(j), description: desc})
		}
	}
	walk(doc.Content[0], "")
	return out
}

// description returns the text of the "# --" line of a head comment and
// the comment lines after it, joined by spaces.
func description(head string) string {
	var parts []string
	started := false
	for _, l := range strings.Split(head, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "# -- "):
			started, parts = true, []string{strings.TrimPrefix(l, "# -- ")}
		case started && strings.HasPrefix(l, "#"):
			parts = append(parts, strings.TrimSpace(strings.TrimPrefix(l, "#")))
		case started:
			started = false
		}
	}
	return strings.Join(parts, " ")
}

// schemaNode is the part of a JSON schema the table and the checks read.
type schemaNode struct {
	Type                 any                    `json:"type"`
	Enum                 []any                  `json:"enum"`
	Properties           map[string]*schemaNode `json:"properties"`
	AdditionalProperties any                    `json:"additionalProperties"`
	AnyOf                []*schemaNode          `json:"anyOf"`
}

func loadSchema(t *testing.T) *schemaNode {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s schemaNode
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	return &s
}

// lookup finds the schema of a dotted path.
func (s *schemaNode) lookup(path string) *schemaNode {
	n := s
	for _, k := range strings.Split(path, ".") {
		if n == nil || n.Properties == nil {
			return nil
		}
		n = n.Properties[k]
	}
	return n
}

// typeName is what the table shows in the Type column.
func (s *schemaNode) typeName() string {
	if len(s.Enum) > 0 {
		var vs []string
		for _, e := range s.Enum {
			vs = append(vs, fmt.Sprintf("`%v`", e))
		}
		return "one of " + strings.Join(vs, ", ")
	}
	switch t := s.Type.(type) {
	case string:
		return t
	case []any:
		var ts []string
		for _, x := range t {
			ts = append(ts, fmt.Sprint(x))
		}
		return strings.Join(ts, " or ")
	}
	if len(s.AnyOf) > 0 {
		var ts []string
		for _, a := range s.AnyOf {
			ts = append(ts, a.typeName())
		}
		return strings.Join(ts, " or ")
	}
	return "any"
}

// valuesTable renders the README's table of values.
func valuesTable(t *testing.T) string {
	t.Helper()
	schema := loadSchema(t)
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, v := range documentedValues(t) {
		s := schema.lookup(v.path)
		if s == nil {
			t.Errorf("values.schema.json has no %s", v.path)
			continue
		}
		def := v.def
		if strings.Contains(def, "|") {
			def = strings.ReplaceAll(def, "|", `\|`)
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", v.path, s.typeName(), def, strings.ReplaceAll(v.description, "|", `\|`))
	}
	return b.String()
}

// TestREADMEValues keeps the chart README's table of values equal to
// values.yaml and the schema: every key documented, every key in the
// schema. -update rewrites the table.
func TestREADMEValues(t *testing.T) {
	path := filepath.Join(chartDir, "README.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, valuesBegin), strings.Index(readme, valuesEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q … %q markers", path, strings.TrimSpace(valuesBegin), valuesEnd)
	}
	want := valuesTable(t)
	if t.Failed() {
		return
	}
	if got := readme[i+len(valuesBegin) : j]; got != want {
		if *update {
			if err := os.WriteFile(path, []byte(readme[:i+len(valuesBegin)]+want+readme[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("%s values table is out of date; run: go test ./charts -run README -update", path)
	}
}

// TestSchemaCoversValues checks the other direction: every property of the
// schema is a key of values.yaml (down to the documented keys), and every
// object of the schema refuses unknown keys.
func TestSchemaCoversValues(t *testing.T) {
	documented := map[string]bool{}
	for _, v := range documentedValues(t) {
		documented[v.path] = true
	}
	var walk func(s *schemaNode, prefix string)
	walk = func(s *schemaNode, prefix string) {
		if s.Properties != nil && s.AdditionalProperties != false {
			t.Errorf("values.schema.json: %q accepts unknown keys", strings.TrimSuffix(prefix, "."))
		}
		for k, p := range s.Properties {
			path := prefix + k
			if documented[path] {
				continue
			}
			if p.Properties == nil {
				t.Errorf("values.schema.json: %s is not a documented key of values.yaml", path)
				continue
			}
			walk(p, path+".")
		}
	}
	walk(loadSchema(t), "")
	// Self-contained: helm must not fetch anything to validate values.
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"$ref"`) || strings.Contains(string(b), `"$id"`) {
		t.Error("values.schema.json refers to other schemas; keep it self-contained")
	}
}

// chartOwnedSettings are the CRMGATE_* settings the chart sets itself from
// its own values (or, for TEMPLATES_DIR, cannot support: the chart mounts
// no template directory); config.env may not name them.
var chartOwnedSettings = []string{
	"CRMGATE_PUBLIC_URL", "CRMGATE_LISTEN", "CRMGATE_OPS_LISTEN", "CRMGATE_AUTH_PREFIX", "CRMGATE_POLICY_FILE",
	"CRMGATE_UPSTREAM_URL", "CRMGATE_TRUSTED_PROXIES", "CRMGATE_SHUTDOWN_DELAY", "CRMGATE_SHUTDOWN_TIMEOUT",
	"CRMGATE_DATAVERSE_URL", "CRMGATE_DATAVERSE_TENANT_ID", "CRMGATE_DATAVERSE_CLIENT_ID",
	"CRMGATE_DATAVERSE_CERTIFICATE_FILE", "CRMGATE_DATAVERSE_FEDERATED_TOKEN_FILE", "CRMGATE_SMTP_FROM",
	"CRMGATE_TEMPLATES_DIR",
}

// TestSchemaEnvMatchesConfig keeps the settings config.env accepts equal
// to crmgate's own (package config): every non-secret setting the chart
// does not set itself, and no other name. Secrets come only from the
// Secret, as files.
func TestSchemaEnvMatchesConfig(t *testing.T) {
	env := loadSchema(t).lookup("config.env")
	if env == nil || env.AdditionalProperties != false {
		t.Fatal("values.schema.json: config.env must list its settings and refuse others")
	}
	var got []string
	for k := range env.Properties {
		got = append(got, k)
	}
	var want []string
	for _, f := range config.Fields() {
		if !f.Secret && !slices.Contains(chartOwnedSettings, f.Name) {
			want = append(want, f.Name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("values.schema.json config.env lacks the setting %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("values.schema.json config.env accepts %s, which is not a crmgate setting config.env may carry", g)
		}
	}
	helpers, err := os.ReadFile(filepath.Join(chartDir, "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range chartOwnedSettings {
		if name != "CRMGATE_TEMPLATES_DIR" && !strings.Contains(string(helpers), "name: "+name+"\n") {
			t.Errorf("%s is listed as set by the chart, but templates/_helpers.tpl does not set it", name)
		}
	}
}
