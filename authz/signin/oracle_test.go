package signin_test

import (
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
)

// oracleFixture has, with explanations off (the default): "ana" (active),
// "dis" (disabled), "pen" (pending), "ref" (bound to an inactive contact,
// with the Dataverse check on), "nopw" (no password), and "lck", locked
// out for the address lockedAddr.
func oracleFixture(t *testing.T, params password.Params) *authztest.Fixture {
	t.Helper()
	dir := authztest.Rows(nil, authztest.Contact(authztest.C1, "ref@example.com", "ref", false))
	f := authztest.NewFixture(t, wiring.Options{Password: params, Contacts: dir, MaxFailures: 2,
		SignInCheck: signin.Check{Enabled: true, RequireLogonEnabled: true}})
	f.CreateUser(t, "ana", authz.StatusActive)
	f.CreateUser(t, "dis", authz.StatusDisabled)
	f.CreateUser(t, "pen", authz.StatusPending)
	f.CreateUser(t, "ref", authz.StatusActive)
	f.Bind(t, "ref", authztest.Lookup(authztest.C1))
	f.CreateUser(t, "lck", authz.StatusActive)
	if _, err := f.Svc.Accounts.CreateUser(t.Context(), accounts.NewUser{Username: "nopw", Email: "nopw@example.com"}, "cli:test"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		f.SignIn(t, "lck", "wrong password", lockedAddr)
	}
	return f
}

const lockedAddr = "203.0.113.5"

// oracleCases are sign-ins that must all look like a wrong password: the
// reason is what the audit log records.
var oracleCases = []struct {
	name, login, pw, addr, reason string
}{
	{"wrong password", "ana", "wrong password", "192.0.2.1", signin.ReasonWrongPassword},
	{"unknown user", "nobody", authztest.GoodPassword, "192.0.2.1", signin.ReasonUnknownUser},
	{"disabled, right password", "dis", authztest.GoodPassword, "192.0.2.1", signin.ReasonDisabled},
	{"disabled, wrong password", "dis", "wrong password", "192.0.2.1", signin.ReasonWrongPassword},
	{"pending, right password", "pen", authztest.GoodPassword, "192.0.2.1", signin.ReasonPending},
	{"refused by Dataverse, right password", "ref", authztest.GoodPassword, "192.0.2.1", binding.ReasonContactInactive},
	{"refused by Dataverse, wrong password", "ref", "wrong password", "192.0.2.1", signin.ReasonWrongPassword},
	{"locked address, right password", "lck", authztest.GoodPassword, lockedAddr, signin.ReasonLockedOut},
	{"no password", "nopw", authztest.GoodPassword, "192.0.2.1", signin.ReasonNoPassword},
}

// TestNoPasswordOracle: the correct password of a disabled, pending,
// locked or Dataverse-refused account gets exactly the error of a wrong
// one, the audit log has the real reason, and the failure counts are not
// reset (so not even a later lockout tells the cases apart).
func TestNoPasswordOracle(t *testing.T) {
	f := oracleFixture(t, password.Params{})
	for _, tt := range oracleCases {
		t.Run(tt.name, func(t *testing.T) {
			var before int
			if u, err := f.DB.UserByLogin(t.Context(), tt.login); err == nil {
				before = u.FailedCount
			}
			u, err := f.SignIn(t, tt.login, tt.pw, tt.addr)
			if u != nil || err != signin.ErrInvalidCredentials {
				t.Fatalf("SignIn = %v, %v; want exactly ErrInvalidCredentials", u, err)
			}
			if e := f.LastAudit(t, audit.EventSignInFailed); e.Detail != tt.reason || e.ClientAddr != tt.addr {
				t.Errorf("audit = %+v, want reason %s", e, tt.reason)
			}
			if u, err := f.DB.UserByLogin(t.Context(), tt.login); err == nil && tt.reason != signin.ReasonLockedOut && u.FailedCount != before+1 {
				t.Errorf("failed count %d -> %d, want it counted like a wrong password", before, u.FailedCount)
			}
		})
	}
	// With explanations the right password of a refused account says why.
	g := authztest.NewFixture(t, wiring.Options{ExplainRefusals: true})
	g.CreateUser(t, "dis", authz.StatusDisabled)
	if _, err := g.SignIn(t, "dis", authztest.GoodPassword, ""); err != signin.ErrAccountDisabled {
		t.Errorf("with ExplainRefusals: %v, want ErrAccountDisabled", err)
	}
}

// TestNoPasswordOracleTiming: every branch verifies one argon2id hash
// (the stored one or the dummy one), so none answers much faster than a
// wrong password. Only a lower bound is checked: a loaded machine makes
// answers slower, never faster.
func TestNoPasswordOracleTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("measures argon2id work")
	}
	// Costly enough (about 10 ms) to stand out from the store's work.
	params := password.Params{Memory: 16 * 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	f := oracleFixture(t, params)
	measure := func(login, pw, addr string) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			_, _ = f.SignIn(t, login, pw, addr)
			best = min(best, time.Since(start))
		}
		return best
	}
	// The hash alone, without the store: the floor every branch must
	// reach. Its minimum over many runs, interleaved with the cases, is
	// the unloaded cost; a case's minimum can only be slowed by load.
	h, err := password.Hash("some password", params)
	if err != nil {
		t.Fatal(err)
	}
	hash := time.Duration(1 << 62)
	floor := func() {
		start := time.Now()
		_, _, _ = params.Verify(h, "another password")
		hash = min(hash, time.Since(start))
	}
	got := map[string]time.Duration{}
	for _, tt := range oracleCases {
		floor()
		got[tt.name] = measure(tt.login, tt.pw, tt.addr)
		floor()
	}
	for _, tt := range oracleCases {
		if d := got[tt.name]; d < hash*7/10 {
			t.Errorf("%s answered in %v, less than one argon2id verification (%v)", tt.name, d, hash)
		}
	}
}
