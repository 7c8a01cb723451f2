package config

import (
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz/password"
)

// TestPasswordMinLengthDefault keeps the one default of the password
// minimum: the env default is the password package's DefaultMinLength.
func TestPasswordMinLengthDefault(t *testing.T) {
	cfg, err := Load(validEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password.MinLength != password.DefaultMinLength {
		t.Fatalf("CRMGATE_PASSWORD_MIN_LENGTH defaults to %d, password.DefaultMinLength is %d", cfg.Password.MinLength, password.DefaultMinLength)
	}
}

func TestPasswordMinLengthValidate(t *testing.T) {
	for _, tt := range []struct {
		v  string
		ok bool
	}{{"8", true}, {"12", true}, {"64", true}, {"256", true}, {"0", false}, {"7", false}, {"-12", false}, {"257", false}} {
		cfg, err := Load(append(validEnv(t), "CRMGATE_PASSWORD_MIN_LENGTH="+tt.v))
		if err != nil {
			t.Fatalf("%s: %v", tt.v, err)
		}
		err = cfg.Validate()
		if tt.ok != (err == nil) {
			t.Fatalf("CRMGATE_PASSWORD_MIN_LENGTH=%s: Validate = %v, want ok=%v", tt.v, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "CRMGATE_PASSWORD_MIN_LENGTH") {
			t.Fatalf("error does not name the setting: %v", err)
		}
	}
	if _, err := Load(append(validEnv(t), "CRMGATE_PASSWORD_MIN_LENGTH=twelve")); err == nil {
		t.Fatal("a non-number was accepted")
	}
}
