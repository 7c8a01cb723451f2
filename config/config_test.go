package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
)

func validEnv(t *testing.T) []string {
	t.Helper()
	ck, _ := GenerateCookieKey()
	sk, _ := GenerateSigningKey()
	return []string{
		"CRMGATE_PUBLIC_URL=https://gw.example.com",
		"CRMGATE_UPSTREAM_URL=http://127.0.0.1:3000",
		"CRMGATE_COOKIE_KEYS=" + ck,
		"CRMGATE_SIGNING_KEYS=" + sk,
		"PATH=/usr/bin", // not ours: ignored
	}
}

func TestLoadDefaultsAndValid(t *testing.T) {
	cfg, err := Load(validEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if cfg.Listen != ":8080" || cfg.OpsListen != ":9090" || cfg.AuthPrefix != "/.auth" || cfg.DatabaseURL != "sqlite:crmgate.db" ||
		cfg.Session.IdleTimeout != time.Hour || cfg.Password.MemoryKiB != 19456 || cfg.Signing.TokenTTL != 5*time.Minute {
		t.Fatalf("defaults: %+v", cfg)
	}
	if cfg.CookieName() != "__Host-crmgate_session" || !cfg.SecureCookies() {
		t.Fatalf("https public URL: cookie %q secure %v", cfg.CookieName(), cfg.SecureCookies())
	}
	cfg.PublicURL = "http://localhost:8080"
	if cfg.CookieName() != "crmgate_session" || cfg.SecureCookies() {
		t.Fatal("http public URL must not use __Host- or Secure")
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	sk, _ := GenerateSigningKey()
	keyFile := filepath.Join(dir, "signing.pem")
	if err := os.WriteFile(keyFile, []byte(sk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envs := validEnv(t)
	var base []string
	for _, e := range envs {
		if !strings.HasPrefix(e, "CRMGATE_SIGNING_KEYS=") {
			base = append(base, e)
		}
	}
	cfg, err := Load(append(base, "CRMGATE_SIGNING_KEYS_FILE="+keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("key from file rejected: %v", err)
	}
	if _, err := Load(append(envs, "CRMGATE_SIGNING_KEYS_FILE="+keyFile)); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("both value and _FILE: %v", err)
	}
	// An empty value is no value: the file wins (a Kubernetes container
	// overrides its image's CRMGATE_DATABASE_URL with "" this way).
	if cfg, err := Load(append(base, "CRMGATE_SIGNING_KEYS=", "CRMGATE_SIGNING_KEYS_FILE="+keyFile)); err != nil || cfg.Signing.Keys == "" {
		t.Fatalf("empty value and _FILE: %v", err)
	}
	dbFile := filepath.Join(dir, "database-url")
	if err := os.WriteFile(dbFile, []byte("postgres://crmgate@db.example.com/crmgate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := Load(append(base, "CRMGATE_SIGNING_KEYS_FILE="+keyFile, "CRMGATE_DATABASE_URL=", "CRMGATE_DATABASE_URL_FILE="+dbFile)); err != nil || cfg.DatabaseURL != "postgres://crmgate@db.example.com/crmgate" {
		t.Fatalf("empty CRMGATE_DATABASE_URL and its _FILE: %v %+v", err, cfg)
	}
	if _, err := Load(append(base, "CRMGATE_SIGNING_KEYS_FILE="+filepath.Join(dir, "missing"))); err == nil || !strings.Contains(err.Error(), "CRMGATE_SIGNING_KEYS_FILE") {
		t.Fatalf("missing file: %v", err)
	}
	// _FILE is only for secrets.
	cfg, err = Load(append(base, "CRMGATE_SIGNING_KEYS_FILE="+keyFile, "CRMGATE_LISTEN_FILE=/x"))
	if err != nil || len(cfg.Unknown) != 1 || cfg.Unknown[0] != "CRMGATE_LISTEN_FILE" {
		t.Fatalf("non-secret _FILE: %v %v", err, cfg.Unknown)
	}
}

func TestLoadReportsEveryParseError(t *testing.T) {
	_, err := Load(append(validEnv(t), "CRMGATE_SESSION_IDLE_TIMEOUT=soon", "CRMGATE_SIGNIN_MAX_FAILURES=many"))
	if err == nil || !strings.Contains(err.Error(), "IDLE_TIMEOUT") || !strings.Contains(err.Error(), "MAX_FAILURES") {
		t.Fatalf("want both parse errors, got %v", err)
	}
}

// TestCheckReportsEveryProblemOnce: variables that do not parse do not hide
// the rules the others break, and each problem is reported once: a rule
// that would speak of a default standing in for an unparsable value (the
// idle timeout against an absolute timeout that did not parse) is left out.
func TestCheckReportsEveryProblemOnce(t *testing.T) {
	env := append(validEnv(t),
		"CRMGATE_SESSION_ABSOLUTE_TIMEOUT=soon", // does not parse
		"CRMGATE_SESSION_IDLE_TIMEOUT=13h",      // would exceed the default absolute timeout
		"CRMGATE_SIGNIN_MAX_FAILURES=many",      // does not parse
		"CRMGATE_LOG_FORMAT=xml",                // parses, breaks a rule
		"CRMGATE_PUBLIC_URL=ftp://x",            // replaces the valid one: breaks a rule
	)
	cfg, err := Check(env)
	if err == nil || cfg == nil {
		t.Fatalf("Check = %v, %v; want the config and its problems", cfg, err)
	}
	msg := err.Error()
	for name, want := range map[string]int{
		"CRMGATE_SESSION_ABSOLUTE_TIMEOUT": 1, "CRMGATE_SIGNIN_MAX_FAILURES": 1, "CRMGATE_LOG_FORMAT": 1,
		"CRMGATE_PUBLIC_URL": 1, "CRMGATE_SESSION_IDLE_TIMEOUT": 0,
	} {
		if got := strings.Count(msg, name); got != want {
			t.Errorf("%s reported %d times, want %d:\n%s", name, got, want, msg)
		}
	}
	if lines := strings.Count(msg, "\n") + 1; lines != 4 {
		t.Errorf("%d problems reported, want 4:\n%s", lines, msg)
	}
	if _, err := Check(validEnv(t)); err != nil {
		t.Errorf("Check refuses a valid configuration: %v", err)
	}
	// What Check refuses, Load and Validate refuse, and the other way round.
	for _, e := range [][]string{validEnv(t), append(validEnv(t), "CRMGATE_LOG_FORMAT=xml"), append(validEnv(t), "CRMGATE_SIGNIN_MAX_FAILURES=x")} {
		_, cerr := Check(e)
		c, lerr := Load(e)
		if lerr == nil {
			lerr = c.Validate()
		}
		if (cerr == nil) != (lerr == nil) {
			t.Errorf("Check %v, Load+Validate %v", cerr, lerr)
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	env := []string{
		"CRMGATE_PUBLIC_URL=ftp://x/path",
		"CRMGATE_LISTEN=nope",
		"CRMGATE_AUTH_PREFIX=auth/",
		"CRMGATE_COOKIE_KEYS=c2hvcnQ=",
		"CRMGATE_SIGNING_KEYS=-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
		"CRMGATE_SESSION_IDLE_TIMEOUT=24h",
		"CRMGATE_SIGNING_TOKEN_TTL=1h",
		"CRMGATE_BRAND_COLOR=red",
		"CRMGATE_LOGO_URL=javascript:alert(1)",
		"CRMGATE_TRUSTED_PROXIES=10.0.0.0/8,bogus",
		"CRMGATE_REDIRECT_ALLOWLIST=https://ok.example.com,https://x.example.com/path",
		"CRMGATE_LOG_FORMAT=xml",
		"CRMGATE_DATABASE_URL=mysql://x",
		"CRMGATE_PASSWORD_ARGON2_MEMORY_KIB=16",
		"CRMGATE_COOKIE_NAME=gate_2",
		"CRMGATE_PASWORD_TYPO=1",
		"CRMGATE_SERVICE_HOST=10.0.0.1", // injected by Kubernetes: not a typo
		"CRMGATE_PORT_8080_TCP=tcp://10.0.0.1:8080",
	}
	cfg, err := Load(env)
	if err != nil {
		t.Fatal(err)
	}
	verr := cfg.Validate()
	if verr == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"PUBLIC_URL", "CRMGATE_LISTEN", "AUTH_PREFIX", "POLICY_FILE", "COOKIE_KEYS", "SIGNING_KEYS",
		"SESSION_IDLE_TIMEOUT", "TOKEN_TTL", "BRAND_COLOR", "LOGO_URL", "TRUSTED_PROXIES", "REDIRECT_ALLOWLIST", "LOG_FORMAT",
		"DATABASE_URL", "ARGON2_MEMORY_KIB", "COOKIE_NAME: must not end in '_' and digits"} {
		if !strings.Contains(verr.Error(), want) {
			t.Errorf("Validate did not report %s:\n%v", want, verr)
		}
	}
	if len(cfg.Unknown) != 1 || cfg.Unknown[0] != "CRMGATE_PASWORD_TYPO" {
		t.Errorf("Unknown = %v", cfg.Unknown)
	}
	// Secrets never appear in messages.
	if strings.Contains(verr.Error(), "c2hvcnQ") || strings.Contains(verr.Error(), "AAAA") {
		t.Errorf("secret echoed in validation errors: %v", verr)
	}
}

func TestKeyParsing(t *testing.T) {
	k1, _ := GenerateSigningKey()
	k2, _ := GenerateSigningKey()
	keys, err := SigningConfig{Keys: k1 + "\n" + k2}.PrivateKeys()
	if err != nil || len(keys) != 2 {
		t.Fatalf("two PEM keys: %v %d", err, len(keys))
	}
	if _, err := (SigningConfig{Keys: k1 + "trailing junk"}).PrivateKeys(); err == nil {
		t.Fatal("trailing junk accepted")
	}
	ck1, _ := GenerateCookieKey()
	ck2, _ := GenerateCookieKey()
	ks, err := CookieConfig{Keys: ck1 + ", " + ck2}.DecodeKeys()
	if err != nil || len(ks) != 2 || len(ks[0]) != 32 {
		t.Fatalf("cookie keys: %v", err)
	}
	if _, err := (CookieConfig{Keys: ck1 + ",!!"}).DecodeKeys(); err == nil {
		t.Fatal("bad base64 accepted")
	}
}

// TestFieldsMatchEnv guards the documentation walker against drifting from
// how caarlos0/env names the variables.
func TestFieldsMatchEnv(t *testing.T) {
	params, err := env.GetFieldParamsWithOptions(&Config{}, env.Options{Prefix: Prefix})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, p := range params {
		want[p.Key] = p.DefaultValue
	}
	fields := Fields()
	if len(fields) != len(want) {
		t.Fatalf("Fields() has %d settings, env has %d", len(fields), len(want))
	}
	for _, f := range fields {
		def, ok := want[f.Name]
		if !ok || def != f.Default {
			t.Errorf("%s: env knows it %v with default %q, Fields says %q", f.Name, ok, def, f.Default)
		}
		if f.Description == "" {
			t.Errorf("%s has no description", f.Name)
		}
	}
}

// TestChangedShowsNoSecret: the start-up summary lists exactly the settings
// that differ from their defaults, and no secret's value.
func TestChangedShowsNoSecret(t *testing.T) {
	env := append(validEnv(t), "CRMGATE_DATABASE_URL=postgres://u:hunter2@db/crm", "CRMGATE_SESSION_IDLE_TIMEOUT=30m",
		"CRMGATE_TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16", "CRMGATE_LISTEN=:8080") // the default, given explicitly
	cfg, err := Load(env)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var all strings.Builder
	for _, a := range cfg.Changed() {
		got[a.Key] = a.Value.String()
		fmt.Fprintf(&all, "%s=%s ", a.Key, a.Value)
	}
	want := map[string]string{
		"CRMGATE_PUBLIC_URL": "https://gw.example.com", "CRMGATE_UPSTREAM_URL": "http://127.0.0.1:3000",
		"CRMGATE_DATABASE_URL": "(secret)", "CRMGATE_COOKIE_KEYS": "(secret)", "CRMGATE_SIGNING_KEYS": "(secret)",
		"CRMGATE_SESSION_IDLE_TIMEOUT": "30m0s", "CRMGATE_TRUSTED_PROXIES": "10.0.0.0/8,192.168.0.0/16",
	}
	if !maps.Equal(got, want) {
		t.Errorf("Changed = %v\nwant %v", got, want)
	}
	for _, secret := range []string{"hunter2", cfg.Cookie.Keys[:12]} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("summary shows a secret: %s", all.String())
		}
	}
}

// TestSignInLockoutLimits checks the defaults of the two lockouts and
// that the account's budget can be neither empty nor below one address's.
func TestSignInLockoutLimits(t *testing.T) {
	cfg, err := Load(validEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.SignIn; s.MaxFailures != 5 || s.AccountMaxFailures != 20 || s.LockoutDuration != 15*time.Minute || s.ExplainRefusals {
		t.Errorf("sign-in defaults: %+v", s)
	}
	tests := []struct {
		env []string
		bad bool
	}{
		{[]string{"CRMGATE_SIGNIN_ACCOUNT_MAX_FAILURES=5"}, false},
		{[]string{"CRMGATE_SIGNIN_ACCOUNT_MAX_FAILURES=4"}, true},
		{[]string{"CRMGATE_SIGNIN_ACCOUNT_MAX_FAILURES=0"}, true},
		{[]string{"CRMGATE_SIGNIN_ACCOUNT_MAX_FAILURES=-3"}, true},
		{[]string{"CRMGATE_SIGNIN_MAX_FAILURES=1", "CRMGATE_SIGNIN_ACCOUNT_MAX_FAILURES=1"}, false},
		{[]string{"CRMGATE_SIGNIN_MAX_FAILURES=30"}, true},
		{[]string{"CRMGATE_SIGNIN_EXPLAIN_REFUSALS=true"}, false},
	}
	for _, tt := range tests {
		cfg, err := Load(append(validEnv(t), tt.env...))
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		err = cfg.Validate()
		if got := err != nil && strings.Contains(err.Error(), "SIGNIN_ACCOUNT_MAX_FAILURES"); got != tt.bad {
			t.Errorf("%v: Validate = %v, want a SIGNIN_ACCOUNT_MAX_FAILURES problem: %v", tt.env, err, tt.bad)
		}
	}
	if _, err := Load(append(validEnv(t), "CRMGATE_SIGNIN_EXPLAIN_REFUSALS=perhaps")); err == nil {
		t.Error("a non-boolean EXPLAIN_REFUSALS was accepted")
	}
}
