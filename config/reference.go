package config

import (
	"strings"
)

// Reference returns the configuration reference as a Markdown table, one row
// per setting, in declaration order. The README embeds it; a test keeps the
// two in step.
func Reference() string {
	var b strings.Builder
	b.WriteString("| Variable | Default | Description |\n|---|---|---|\n")
	for _, f := range Fields() {
		def := "—"
		if f.Default != "" {
			def = "`" + f.Default + "`"
		}
		desc := f.Description
		if f.Secret {
			desc += " Secret: also as `" + f.Name + "_FILE`."
		}
		b.WriteString("| `" + f.Name + "` | " + def + " | " + strings.ReplaceAll(desc, "|", "\\|") + " |\n")
	}
	return b.String()
}
