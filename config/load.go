package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Field describes one setting, for documentation and for Load.
type Field struct {
	Name        string // full variable name, e.g. CRMGATE_PUBLIC_URL
	Default     string
	Secret      bool // also accepted as Name+"_FILE"; never printed
	Description string
	kind        reflect.Type
}

// Fields lists every setting of Config in declaration order.
func Fields() []Field {
	var out []Field
	walk(reflect.TypeOf(Config{}), Prefix, &out)
	return out
}

func walk(t reflect.Type, prefix string, out *[]Field) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
			walk(f.Type, prefix+f.Tag.Get("envPrefix"), out)
			continue
		}
		name := f.Tag.Get("env")
		if name == "" || name == "-" {
			continue
		}
		*out = append(*out, Field{
			Name:        prefix + name,
			Default:     f.Tag.Get("envDefault"),
			Secret:      f.Tag.Get("secret") == "true",
			Description: f.Tag.Get("desc"),
			kind:        f.Type,
		})
	}
}

// Load builds a Config from environ (as from os.Environ) with the defaults
// applied. Secrets given as <NAME>_FILE are read here. Every problem is
// reported at once. Load does not validate: call Validate.
func Load(environ []string) (*Config, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, Prefix) {
			vars[k] = v
		}
	}
	var errs []error
	known := map[string]bool{}
	for _, f := range Fields() {
		known[f.Name] = true
		if !f.Secret {
			continue
		}
		known[f.Name+"_FILE"] = true
		path, ok := vars[f.Name+"_FILE"]
		if !ok {
			continue
		}
		if _, both := vars[f.Name]; both {
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set; set only one", f.Name, f.Name))
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_FILE: %v", f.Name, err))
			continue
		}
		vars[f.Name] = strings.TrimRight(string(b), "\r\n")
	}
	// Check each value against its type first, so errors name the variable
	// (env's own errors name the Go field).
	for _, f := range Fields() {
		if v, ok := vars[f.Name]; ok {
			if err := checkValue(f.kind, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", f.Name, err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg := &Config{}
	if err := env.ParseWithOptions(cfg, env.Options{Environment: vars, Prefix: Prefix}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) {
			errs = append(errs, agg.Errors...)
		} else {
			errs = append(errs, err)
		}
	}
	for k := range vars {
		if !known[k] && !kubernetesServiceVar(k) {
			cfg.Unknown = append(cfg.Unknown, k)
		}
	}
	sort.Strings(cfg.Unknown)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// kubernetesServiceVar reports whether k looks like a variable Kubernetes
// injects for a Service named crmgate (CRMGATE_SERVICE_HOST, CRMGATE_PORT_8080_TCP...).
func kubernetesServiceVar(k string) bool {
	rest := strings.TrimPrefix(k, Prefix)
	return rest == "PORT" || strings.HasPrefix(rest, "PORT_") || strings.HasPrefix(rest, "SERVICE_")
}

// checkValue reports whether v parses as a value of type t.
func checkValue(t reflect.Type, v string) error {
	if t == reflect.TypeOf(time.Duration(0)) {
		if _, err := time.ParseDuration(v); err != nil {
			return fmt.Errorf("%q is not a duration like 90s, 15m or 12h", v)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Int:
		if _, err := strconv.Atoi(v); err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
	case reflect.Uint8, reflect.Uint32:
		if _, err := strconv.ParseUint(v, 10, t.Bits()); err != nil {
			return fmt.Errorf("%q is not a whole number from 0 to %d", v, uint64(1)<<t.Bits()-1)
		}
	case reflect.Bool:
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
	}
	return nil
}
