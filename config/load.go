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
// reported at once; the Config is nil when there is one. Load does not
// validate: call Validate, or use Check for both.
func Load(environ []string) (*Config, error) {
	cfg, _, errs := load(environ)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Check loads environ and validates it: the one check of the settings that
// serve, dev and check-config apply. It reports every problem once: each
// variable that could not be read or parsed, then every rule the others
// break. A variable that did not parse is left at its default for the
// rules, and a rule whose message names such a variable is not reported
// (it would speak of the default, not of what was set).
//
// The Config is returned even with an error, so that check-config can go on
// to compile the policy file it names and report that too; a Config that
// came with an error must not be served.
func Check(environ []string) (*Config, error) {
	cfg, failed, errs := load(environ)
	if verr := cfg.Validate(); verr != nil {
		for _, e := range flatten(verr) {
			if !mentionsAny(e.Error(), failed) {
				errs = append(errs, e)
			}
		}
	}
	return cfg, errors.Join(errs...)
}

// flatten lists the leaves of a tree of joined errors.
func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

// mentionsAny reports whether msg names one of the variables in names as a
// whole word.
func mentionsAny(msg string, names map[string]bool) bool {
	for n := range names {
		for i := 0; ; {
			j := strings.Index(msg[i:], n)
			if j < 0 {
				break
			}
			end := i + j + len(n)
			if end == len(msg) || !isNameByte(msg[end]) {
				return true
			}
			i = end
		}
	}
	return false
}

func isNameByte(b byte) bool { return b == '_' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' }

// load reads environ into a Config with every variable that could not be
// read or parsed left at its default; failed names those variables and
// errs says why. The Config is never nil.
func load(environ []string) (cfg *Config, failed map[string]bool, errs []error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, Prefix) {
			vars[k] = v
		}
	}
	failed = map[string]bool{}
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
		// An empty value does not count as set: a container cannot unset a
		// variable its image sets (the image's CRMGATE_DATABASE_URL), only
		// override it, and the Helm chart overrides it with "" when the
		// URL comes from a file.
		if v, both := vars[f.Name]; both && v != "" {
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set; set only one", f.Name, f.Name))
			failed[f.Name] = true
			delete(vars, f.Name)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_FILE: %v", f.Name, err))
			failed[f.Name] = true
			continue
		}
		vars[f.Name] = strings.TrimRight(string(b), "\r\n")
	}
	// Check each value against its type first, so errors name the variable
	// (env's own errors name the Go field). A value that does not parse is
	// dropped: its default stands in, so that the rest can still be checked.
	for _, f := range Fields() {
		if v, ok := vars[f.Name]; ok {
			if err := checkValue(f.kind, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", f.Name, err))
				failed[f.Name] = true
				delete(vars, f.Name)
			}
		}
	}
	cfg = &Config{}
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
	return cfg, failed, errs
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
