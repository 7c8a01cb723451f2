package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// secretShown is what Changed shows for a secret that is set.
const secretShown = "(secret)"

// Changed lists the settings whose values differ from their defaults, in
// declaration order, as slog attributes keyed by variable name: the start-up
// log's summary of the effective configuration. A secret never shows its
// value, only that it is set.
func (c *Config) Changed() []slog.Attr {
	def := &Config{}
	_ = env.ParseWithOptions(def, env.Options{Environment: map[string]string{}, Prefix: Prefix}) // the defaults parse: TestFieldsMatchEnv
	var out []slog.Attr
	changed(reflect.ValueOf(c).Elem(), reflect.ValueOf(def).Elem(), Prefix, &out)
	return out
}

func changed(v, def reflect.Value, prefix string, out *[]slog.Attr) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
			changed(v.Field(i), def.Field(i), prefix+f.Tag.Get("envPrefix"), out)
			continue
		}
		name := f.Tag.Get("env")
		if name == "" || name == "-" || reflect.DeepEqual(v.Field(i).Interface(), def.Field(i).Interface()) {
			continue
		}
		value := formatValue(v.Field(i).Interface())
		if f.Tag.Get("secret") == "true" {
			value = secretShown
		}
		*out = append(*out, slog.String(prefix+name, value))
	}
}

// formatValue writes a setting's value as it would be given.
func formatValue(x any) string {
	switch x := x.(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	default:
		return fmt.Sprint(x)
	}
}
