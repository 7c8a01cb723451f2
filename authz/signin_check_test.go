package authz_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

// checkFixture is a service with the sign-in check on over dir, with the
// users "ana" (member, bound by lookup to contact c1) and "root" (an
// unbound admin).
func checkFixture(t *testing.T, dir *directory, check authz.SignInCheck) *fixture {
	t.Helper()
	f := newFixture(t, authz.Options{Contacts: dir, SignInCheck: check, BreakGlassRole: "admin", MaxFailures: 3})
	f.createUser(t, "ana", authz.StatusActive)
	if err := f.svc.SetBinding(t.Context(), "ana", lookup(c1), "cli:test"); err != nil {
		t.Fatalf("SetBinding: %v", err)
	}
	if _, err := f.svc.CreateUser(t.Context(), authz.NewUser{Username: "root", Email: "root@example.com",
		Password: goodPassword, Roles: []string{"admin"}}, "cli:test"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return f
}

func TestSignInCheckRefusals(t *testing.T) {
	full := authz.SignInCheck{Enabled: true, RequireLogonEnabled: true,
		Extra: authz.MustParseFilterTemplate("new_tier eq 'gold' and emailaddress1 eq {email}")}
	good := func() *dataverse.Contact {
		c := contact(c1, "ana@example.com", "ana", true)
		c.Columns["new_secret"] = "not asked for"
		return c
	}
	tests := []struct {
		name    string
		check   authz.SignInCheck
		contact func(c *dataverse.Contact) // changes the good contact; nil removes it
		binding *authz.Binding
		reason  string
		asks    int // directory requests; -1 means none
	}{
		{name: "missing", check: full, reason: authz.ReasonContactNotFound},
		{name: "inactive", check: full, contact: func(c *dataverse.Contact) { c.Active = false }, reason: authz.ReasonContactInactive},
		{name: "logon disabled", check: full, contact: func(c *dataverse.Contact) { c.LogonEnabled = false }, reason: authz.ReasonContactLogonDisabled},
		{name: "extra filter", check: full, contact: func(c *dataverse.Contact) { c.Columns["new_tier"] = "silver" }, reason: authz.ReasonContactFilter},
		{name: "extra column missing", check: full, contact: func(c *dataverse.Contact) { delete(c.Columns, "new_tier") }, reason: authz.ReasonContactFilter},
		{name: "extra with an empty user field", check: authz.SignInCheck{Enabled: true, Extra: authz.MustParseFilterTemplate("firstname eq {first_name}")},
			contact: func(*dataverse.Contact) {}, reason: authz.ReasonUserFieldEmpty},
		{name: "username ambiguous", check: full, contact: func(*dataverse.Contact) {},
			binding: &authz.Binding{Mode: authz.BindingUsername}, reason: authz.ReasonContactAmbiguous},
		{name: "custom unconfigured", check: full, contact: func(*dataverse.Contact) {},
			binding: &authz.Binding{Mode: authz.BindingCustom}, reason: authz.ReasonBindingUnconfigured, asks: -1},
		{name: "logon disabled but not required", check: authz.SignInCheck{Enabled: true},
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
				twin.ID = c2
				cs = append(cs, c, twin) // the twin makes a username binding ambiguous
			}
			dir := rows(nil, cs...)
			f := checkFixture(t, dir, tt.check)
			if tt.binding != nil {
				if err := f.svc.SetBinding(t.Context(), "ana", *tt.binding, "cli:test"); err != nil {
					t.Fatalf("SetBinding: %v", err)
				}
			}
			f.signIn(t, "ana", "wrong password", "")
			u, c, err := f.svc.SignInWithContact(t.Context(), authz.Credentials{Login: "ana", Password: goodPassword, ClientAddr: "192.0.2.1"}, []string{"new_tier"})
			want := 1
			if tt.asks < 0 {
				want = 0
			}
			if n := dir.requests(); n != want {
				t.Errorf("%d directory requests, want %d", n, want)
			}
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("SignInWithContact: %v", err)
				}
				if u.Username != "ana" || c == nil || c.ID != c1 || !reflect.DeepEqual(c.Columns, map[string]any{"new_tier": "gold"}) ||
					!reflect.DeepEqual(c.Roles, []string{"Customer"}) {
					t.Errorf("SignInWithContact = %+v, %+v", u, c)
				}
				if e := f.lastAudit(t, authz.EventSignIn); e.UserID != u.ID {
					t.Errorf("sign-in audit = %+v", e)
				}
				return
			}
			var refused *authz.SignInRefusedError
			if !errors.As(err, &refused) || refused.Reason != tt.reason || !errors.Is(err, authz.ErrSignInRefused) {
				t.Fatalf("SignInWithContact = %v, %v, %v; want a refusal for %s", u, c, err, tt.reason)
			}
			if u != nil || c != nil {
				t.Errorf("refused sign-in returned %+v, %+v", u, c)
			}
			// One user-facing text for every reason.
			if err.Error() != authz.ErrSignInRefused.Error() {
				t.Errorf("error text %q reveals more than %q", err, authz.ErrSignInRefused)
			}
			e := f.lastAudit(t, authz.EventSignInFailed)
			if e.Detail != tt.reason || e.ClientAddr != "192.0.2.1" || e.Actor == "" {
				t.Errorf("audit = %+v, want detail %s", e, tt.reason)
			}
			if got := f.userByLogin(t, "ana"); got.FailedCount != 0 || !got.LastSignInAt.IsZero() {
				t.Errorf("after a refusal: failed count %d, last sign-in %v; want the count cleared and no sign-in recorded",
					got.FailedCount, got.LastSignInAt)
			}
			// SignIn enforces the check too.
			if _, err := f.svc.SignIn(t.Context(), authz.Credentials{Login: "ana", Password: goodPassword}); !errors.Is(err, authz.ErrSignInRefused) {
				t.Errorf("SignIn: %v, want ErrSignInRefused", err)
			}
		})
	}
}

// TestDirectoryUnavailable shows the break-glass path: while Dataverse is
// down, bound users fail closed with ErrDirectoryUnavailable and the
// unbound admin signs in without any request.
func TestDirectoryUnavailable(t *testing.T) {
	dir := down()
	f := checkFixture(t, dir, authz.SignInCheck{Enabled: true, RequireLogonEnabled: true})
	ctx := t.Context()
	_, c, err := f.svc.SignInWithContact(ctx, authz.Credentials{Login: "ana", Password: goodPassword}, nil)
	if !errors.Is(err, dataverse.ErrUnavailable) || errors.Is(err, authz.ErrSignInRefused) || c != nil {
		t.Fatalf("bound user while Dataverse is down: %v, want ErrDirectoryUnavailable", err)
	}
	if e := f.lastAudit(t, authz.EventSignInFailed); e.Detail != authz.ReasonDirectoryUnavailable {
		t.Errorf("audit = %+v", e)
	}
	n := dir.requests()
	u, c, err := f.svc.SignInWithContact(ctx, authz.Credentials{Login: "root", Password: goodPassword}, []string{"fullname"})
	if err != nil || u.Username != "root" || c != nil {
		t.Fatalf("unbound admin while Dataverse is down: %v, %v, %v", u, c, err)
	}
	if dir.requests() != n {
		t.Error("an unbound user's sign-in asked Dataverse")
	}
	if _, err := f.svc.CheckSignIn(ctx, u, nil); err != nil {
		t.Errorf("CheckSignIn of the unbound admin: %v", err)
	}
	// A wrong password is still just a wrong password: no request, no hint.
	n = dir.requests()
	if _, _, err := f.svc.SignInWithContact(ctx, authz.Credentials{Login: "ana", Password: "wrong password"}, nil); !errors.Is(err, authz.ErrInvalidCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	if dir.requests() != n {
		t.Error("a wrong password reached Dataverse")
	}
}

func TestCheckSignInOffOrUnbound(t *testing.T) {
	dir := rows(nil, contact(c1, "ana@example.com", "ana", false))
	f := checkFixture(t, dir, authz.SignInCheck{})
	u, c, err := f.svc.SignInWithContact(t.Context(), authz.Credentials{Login: "ana", Password: goodPassword}, nil)
	if err != nil || u == nil || c != nil {
		t.Errorf("with the check off: %v, %v, %v; want the user, no contact", u, c, err)
	}
	if dir.requests() != 0 {
		t.Error("the check is off but Dataverse was asked")
	}
}

func TestCheckSignInDirect(t *testing.T) {
	dir := rows(nil, contact(c1, "ana@example.com", "ana", false))
	f := checkFixture(t, dir, authz.SignInCheck{Enabled: true})
	ana := f.userByLogin(t, "ana")
	c, err := f.svc.CheckSignIn(t.Context(), ana, nil)
	var refused *authz.SignInRefusedError
	if !errors.As(err, &refused) || refused.Reason != authz.ReasonContactInactive || c != nil {
		t.Errorf("CheckSignIn = %v, %v; want a refusal for the inactive contact", c, err)
	}
	if e := f.lastAudit(t, authz.EventSignInFailed); e.UserID != ana.ID || e.Detail != authz.ReasonContactInactive {
		t.Errorf("audit = %+v", e)
	}
}
