package config

import (
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz/tokens"
)

// TestTokensDefaults: three outstanding links, and the retention of the
// tokens package's sweep.
func TestTokensDefaults(t *testing.T) {
	cfg, err := Load(validEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tokens.MaxOutstanding != 3 || cfg.Tokens.Retention != tokens.DefaultRetention {
		t.Fatalf("tokens = %+v, want 3 and %s", cfg.Tokens, tokens.DefaultRetention)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTokensValidate(t *testing.T) {
	for _, tt := range []struct {
		kv, name string
		ok       bool
	}{
		{"CRMGATE_TOKENS_MAX_OUTSTANDING=1", "", true},
		{"CRMGATE_TOKENS_MAX_OUTSTANDING=100", "", true},
		{"CRMGATE_TOKENS_MAX_OUTSTANDING=0", "CRMGATE_TOKENS_MAX_OUTSTANDING", false},
		{"CRMGATE_TOKENS_MAX_OUTSTANDING=-1", "CRMGATE_TOKENS_MAX_OUTSTANDING", false},
		{"CRMGATE_TOKENS_MAX_OUTSTANDING=101", "CRMGATE_TOKENS_MAX_OUTSTANDING", false},
		{"CRMGATE_TOKENS_RETENTION=1h", "", true},
		{"CRMGATE_TOKENS_RETENTION=59m", "CRMGATE_TOKENS_RETENTION", false},
		{"CRMGATE_TOKENS_RETENTION=0s", "CRMGATE_TOKENS_RETENTION", false},
		{"CRMGATE_TOKENS_RETENTION=8761h", "CRMGATE_TOKENS_RETENTION", false},
	} {
		cfg, err := Load(append(validEnv(t), tt.kv))
		if err != nil {
			t.Fatalf("%s: %v", tt.kv, err)
		}
		err = cfg.Validate()
		if tt.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.name) {
			t.Errorf("%s: Validate = %v, want ok=%v naming %s", tt.kv, err, tt.ok, tt.name)
		}
	}
	for _, kv := range []string{"CRMGATE_TOKENS_MAX_OUTSTANDING=three", "CRMGATE_TOKENS_RETENTION=week"} {
		if _, err := Load(append(validEnv(t), kv)); err == nil {
			t.Errorf("%s accepted", kv)
		}
	}
}
