package signin_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/crmgate/crmgate/authz/authztest"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
)

// checkFixture is a service with the sign-in check on over dir, with the
// users "ana" (member, bound by lookup to contact authztest.C1) and "root" (an
// unbound admin).
func checkFixture(t *testing.T, dir *authztest.Directory, check signin.Check) *authztest.Fixture {
	t.Helper()
	// With explanations, so that each refusal can be told apart here;
	// TestNoPasswordOracle shows the default, which hides them.
	f := authztest.NewFixture(t, wiring.Options{Contacts: dir, SignInCheck: check, BreakGlassRole: "admin", MaxFailures: 3,
		ExplainRefusals: true})
	f.CreateUser(t, "ana", authz.StatusActive)
	// Bound earlier, when the contact existed and Dataverse answered.
	f.Bind(t, "ana", authztest.Lookup(authztest.C1))
	if _, err := f.Svc.Accounts.CreateUser(t.Context(), accounts.NewUser{Username: "root", Email: "root@example.com",
		Password: authztest.GoodPassword, Roles: []string{"admin"}}, "cli:test"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return f
}

func TestSignInCheckRefusals(t *testing.T) {
	full := signin.Check{Enabled: true, RequireLogonEnabled: true,
		Extra: binding.MustParseFilterTemplate("new_tier eq 'gold' and emailaddress1 eq {email}")}
	good := func() *dataverse.Contact {
		c := authztest.Contact(authztest.C1, "ana@example.com", "ana", true)
		c.Columns["new_secret"] = "not asked for"
		return c
	}
	tests := []struct {
		name    string
		check   signin.Check
		contact func(c *dataverse.Contact) // changes the good contact; nil removes it
		binding *authz.Binding
		reason  string
		asks    int // directory requests; -1 means none
	}{
		{name: "missing", check: full, reason: binding.ReasonContactNotFound},
		{name: "inactive", check: full, contact: func(c *dataverse.Contact) { c.Active = false }, reason: binding.ReasonContactInactive},
		{name: "logon disabled", check: full, contact: func(c *dataverse.Contact) { c.LogonEnabled = false }, reason: binding.ReasonContactLogonDisabled},
		{name: "extra filter", check: full, contact: func(c *dataverse.Contact) { c.Columns["new_tier"] = "silver" }, reason: binding.ReasonContactFilter},
		{name: "extra column missing", check: full, contact: func(c *dataverse.Contact) { delete(c.Columns, "new_tier") }, reason: binding.ReasonContactFilter},
		{name: "extra with an empty user field", check: signin.Check{Enabled: true, Extra: binding.MustParseFilterTemplate("firstname eq {first_name}")},
			contact: func(*dataverse.Contact) {}, reason: binding.ReasonUserFieldEmpty},
		{name: "username ambiguous", check: full, contact: func(*dataverse.Contact) {},
			binding: &authz.Binding{Mode: authz.BindingUsername}, reason: binding.ReasonContactAmbiguous},
		{name: "custom unconfigured", check: full, contact: func(*dataverse.Contact) {},
			binding: &authz.Binding{Mode: authz.BindingCustom}, reason: binding.ReasonBindingUnconfigured, asks: -1},
		{name: "logon disabled but not required", check: signin.Check{Enabled: true},
			contact: func(c *dataverse.Contact) { c.LogonEnabled = false }},
		{name: "all checks pass", check: full, contact: func(*dataverse.Contact) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cs []*dataverse.Contact
			if tt.contact != nil {
				c := good()
				tt.contact(c)
				twin := good()
				twin.ID = authztest.C2
				cs = append(cs, c, twin) // the twin makes a username binding ambiguous
			}
			dir := authztest.Rows(nil, cs...)
			f := checkFixture(t, dir, tt.check)
			if tt.binding != nil {
				f.Bind(t, "ana", *tt.binding)
			}
			f.SignIn(t, "ana", "wrong password", "")
			u, c, err := f.Svc.SignIn.SignInWithContact(t.Context(), signin.Credentials{Login: "ana", Password: authztest.GoodPassword, ClientAddr: "192.0.2.1"}, []string{"new_tier"})
			want := 1
			if tt.asks < 0 {
				want = 0
			}
			if n := dir.Requests(); n != want {
				t.Errorf("%d directory requests, want %d", n, want)
			}
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("SignInWithContact: %v", err)
				}
				if u.Username != "ana" || c == nil || c.ID != authztest.C1 || !reflect.DeepEqual(c.Columns, map[string]any{"new_tier": "gold"}) ||
					!reflect.DeepEqual(c.Roles, []string{"Customer"}) {
					t.Errorf("SignInWithContact = %+v, %+v", u, c)
				}
				if e := f.LastAudit(t, audit.EventSignIn); e.UserID != u.ID {
					t.Errorf("sign-in audit = %+v", e)
				}
				return
			}
			var refused *signin.RefusedError
			if !errors.As(err, &refused) || refused.Reason != tt.reason || !errors.Is(err, signin.ErrRefused) {
				t.Fatalf("SignInWithContact = %v, %v, %v; want a refusal for %s", u, c, err, tt.reason)
			}
			if u != nil || c != nil {
				t.Errorf("refused sign-in returned %+v, %+v", u, c)
			}
			// One user-facing text for every reason.
			if err.Error() != signin.ErrRefused.Error() {
				t.Errorf("error text %q reveals more than %q", err, signin.ErrRefused)
			}
			e := f.LastAudit(t, audit.EventSignInFailed)
			if e.Detail != tt.reason || e.ClientAddr != "192.0.2.1" || e.Actor == "" {
				t.Errorf("audit = %+v, want detail %s", e, tt.reason)
			}
			if got := f.UserByLogin(t, "ana"); got.FailedCount != 0 || !got.LastSignInAt.IsZero() {
				t.Errorf("after a refusal: failed count %d, last sign-in %v; want the count cleared and no sign-in recorded",
					got.FailedCount, got.LastSignInAt)
			}
			// SignIn enforces the check too.
			if _, err := f.Svc.SignIn.SignIn(t.Context(), signin.Credentials{Login: "ana", Password: authztest.GoodPassword}); !errors.Is(err, signin.ErrRefused) {
				t.Errorf("SignIn: %v, want ErrSignInRefused", err)
			}
		})
	}
}

// TestDirectoryUnavailable shows the break-glass path: while Dataverse is
// down, bound users fail closed with ErrDirectoryUnavailable and the
// unbound admin signs in without any request.
func TestDirectoryUnavailable(t *testing.T) {
	dir := authztest.Down()
	f := checkFixture(t, dir, signin.Check{Enabled: true, RequireLogonEnabled: true})
	ctx := t.Context()
	_, c, err := f.Svc.SignIn.SignInWithContact(ctx, signin.Credentials{Login: "ana", Password: authztest.GoodPassword}, nil)
	if !errors.Is(err, dataverse.ErrUnavailable) || errors.Is(err, signin.ErrRefused) || c != nil {
		t.Fatalf("bound user while Dataverse is down: %v, want ErrDirectoryUnavailable", err)
	}
	if e := f.LastAudit(t, audit.EventSignInFailed); e.Detail != binding.ReasonDirectoryUnavailable {
		t.Errorf("audit = %+v", e)
	}
	n := dir.Requests()
	u, c, err := f.Svc.SignIn.SignInWithContact(ctx, signin.Credentials{Login: "root", Password: authztest.GoodPassword}, []string{"fullname"})
	if err != nil || u.Username != "root" || c != nil {
		t.Fatalf("unbound admin while Dataverse is down: %v, %v, %v", u, c, err)
	}
	if dir.Requests() != n {
		t.Error("an unbound user's sign-in asked Dataverse")
	}
	if _, err := f.Svc.SignIn.CheckSignIn(ctx, u, nil); err != nil {
		t.Errorf("CheckSignIn of the unbound admin: %v", err)
	}
	// A wrong password is still just a wrong password: no request, no hint.
	n = dir.Requests()
	if _, _, err := f.Svc.SignIn.SignInWithContact(ctx, signin.Credentials{Login: "ana", Password: "wrong password"}, nil); !errors.Is(err, signin.ErrInvalidCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	if dir.Requests() != n {
		t.Error("a wrong password reached Dataverse")
	}
}

func TestCheckSignInOffOrUnbound(t *testing.T) {
	dir := authztest.Rows(nil, authztest.Contact(authztest.C1, "ana@example.com", "ana", false))
	f := checkFixture(t, dir, signin.Check{})
	u, c, err := f.Svc.SignIn.SignInWithContact(t.Context(), signin.Credentials{Login: "ana", Password: authztest.GoodPassword}, nil)
	if err != nil || u == nil || c != nil {
		t.Errorf("with the check off: %v, %v, %v; want the user, no contact", u, c, err)
	}
	if dir.Requests() != 0 {
		t.Error("the check is off but Dataverse was asked")
	}
}

func TestCheckSignInDirect(t *testing.T) {
	dir := authztest.Rows(nil, authztest.Contact(authztest.C1, "ana@example.com", "ana", false))
	f := checkFixture(t, dir, signin.Check{Enabled: true})
	ana := f.UserByLogin(t, "ana")
	c, err := f.Svc.SignIn.CheckSignIn(t.Context(), ana, nil)
	var refused *signin.RefusedError
	if !errors.As(err, &refused) || refused.Reason != binding.ReasonContactInactive || c != nil {
		t.Errorf("CheckSignIn = %v, %v; want a refusal for the inactive contact", c, err)
	}
	if e := f.LastAudit(t, audit.EventSignInFailed); e.UserID != ana.ID || e.Detail != binding.ReasonContactInactive {
		t.Errorf("audit = %+v", e)
	}
}
