package accounts_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/wiring"
)

// wantRule fails unless err is the policy's refusal by rule, carrying a
// user-facing *authz.ValidationError for field "password".
func wantRule(t *testing.T, err error, rule string) {
	t.Helper()
	var re *password.RuleError
	var ve *authz.ValidationError
	if !errors.As(err, &re) || re.Rule != rule || !errors.As(err, &ve) || ve.Field != "password" {
		t.Fatalf("err = %v, want the password rule %s", err, rule)
	}
}

// TestCreateUserAppliesPasswordPolicy: CreateUser refuses a password the
// policy refuses, with the new account's own username and email, and
// creates nothing; an account without a password is still allowed.
func TestCreateUserAppliesPasswordPolicy(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{})
	for _, tt := range []struct{ pw, rule string }{
		{"short pw", password.RuleTooShort},
		{"Qwerty123456", password.RuleCommon},
		{"i am Ana.Silva ok", password.RuleUsername},
		{"hello ANA.S 2026 ok", password.RuleEmail},
		{strings.Repeat("long ", 52), password.RuleTooLong},
		{"line\nbreak password", password.RuleControl},
	} {
		_, err := f.Svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "ana.silva", Email: "ana.s@example.com", Password: tt.pw}, "cli:test")
		wantRule(t, err, tt.rule)
	}
	if _, err := f.DB.UserByLogin(ctx, "ana.silva"); !errors.Is(err, authz.ErrNotFound) {
		t.Fatalf("a refused password still created the account: %v", err)
	}
	if _, err := f.Svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "ana.silva", Email: "ana.s@example.com"}, "cli:test"); err != nil {
		t.Fatalf("an account without a password: %v", err)
	}
}

// TestSetPasswordAppliesPasswordPolicy: SetPassword checks against the
// account's username and email, refuses before changing anything (stamp,
// hash, audit), and accepts a good password.
func TestSetPasswordAppliesPasswordPolicy(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{})
	ana := f.CreateUser(t, "ana.silva", authz.StatusActive)
	for _, tt := range []struct{ login, pw, rule string }{
		{"ana.silva", "ANA.SILVA-2026!", password.RuleUsername},
		{"ana.silva@example.com", "my ana.silva@example.com", password.RuleUsername},
		{"ana.silva", "letmein", password.RuleTooShort},
		{"ana.silva", "PasswordPassword", password.RuleCommon},
	} {
		wantRule(t, f.Svc.Accounts.SetPassword(ctx, tt.login, tt.pw, "admin"), tt.rule)
	}
	if u := f.User(t, ana.ID); u.SecurityStamp != ana.SecurityStamp || u.PasswordHash != ana.PasswordHash {
		t.Fatal("a refused password changed the account")
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventPasswordSet}); n != 0 {
		t.Fatalf("%d password_set audit rows for refused passwords", n)
	}
	if err := f.Svc.Accounts.SetPassword(ctx, "ana.silva", "lamp river oboe", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.SignIn(t, "ana.silva", "lamp river oboe", "192.0.2.1"); err != nil {
		t.Fatalf("sign-in with the new password: %v", err)
	}
	if err := f.Svc.Accounts.SetPassword(ctx, "nobody", "lamp river oboe", "admin"); !errors.Is(err, authz.ErrNotFound) {
		t.Fatalf("unknown login: %v", err)
	}
}

// TestPasswordPolicyConfigured: the minimum comes from wiring.Options
// (CRMGATE_PASSWORD_MIN_LENGTH), an invalid one stops the build, and a
// password set under an older, weaker rule still signs in: sign-in never
// applies the policy.
func TestPasswordPolicyConfigured(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{PasswordPolicy: password.Policy{MinLength: 20}})
	ana := f.CreateUser(t, "ana", authz.StatusActive) // GoodPassword has 21 characters
	wantRule(t, f.Svc.Accounts.SetPassword(ctx, "ana", "lamp river oboe ab", "admin"), password.RuleTooShort)
	if err := f.Svc.Accounts.SetPassword(ctx, "ana", "lamp river oboe abcd", "admin"); err != nil {
		t.Fatal(err)
	}

	// An account whose password predates the policy (8 characters, on the
	// common list) is stored directly, as an old release would have.
	h, err := password.Hash("password", authztest.FastParams)
	if err != nil {
		t.Fatal(err)
	}
	u := f.User(t, ana.ID)
	u.PasswordHash = h
	if err := f.DB.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := f.SignIn(t, "ana", "password", "192.0.2.1"); err != nil {
		t.Fatalf("an old password no longer signs in: %v", err)
	}

	for _, n := range []int{-1, 7, 257} {
		if err := authztest.BuildErr(t, wiring.Options{PasswordPolicy: password.Policy{MinLength: n}}); err == nil || !strings.Contains(err.Error(), "minimum length") {
			t.Errorf("MinLength %d: %v", n, err)
		}
	}
}
