package binding_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz/authztest"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
)

func TestResolveBinding(t *testing.T) {
	custom := binding.MustParseFilterTemplate("emailaddress1 eq {email} and lastname eq {last_name}")
	ana := func(b authz.Binding) *authz.User {
		return &authz.User{ID: "u1", Username: "ana", Email: "ana@example.com", LastName: "Lima", Binding: b}
	}
	withLast := func(c *dataverse.Contact, last string) *dataverse.Contact {
		c.LastName = last
		return c
	}
	tests := []struct {
		name     string
		dir      *authztest.Directory
		opts     binding.Options
		user     *authz.User
		want     string // contact id
		reason   string // BindingError.Reason
		unavail  bool
		requests int
	}{
		{name: "none", dir: authztest.Rows(nil, authztest.Contact(authztest.C1, "ana@example.com", "ana", true)),
			user: ana(authz.Binding{Mode: authz.BindingNone}), requests: 0},
		{name: "zero binding", dir: authztest.Rows(nil, authztest.Contact(authztest.C1, "ana@example.com", "ana", true)),
			user: ana(authz.Binding{}), requests: 0},
		{name: "lookup", dir: authztest.Rows(nil, authztest.Contact(authztest.C1, "x@example.com", "x", true)),
			user: ana(authztest.Lookup(strings.ToUpper(authztest.C1))), want: authztest.C1, requests: 1},
		{name: "lookup of an inactive contact resolves", dir: authztest.Rows(nil, authztest.Contact(authztest.C1, "x@example.com", "x", false)),
			user: ana(authztest.Lookup(authztest.C1)), want: authztest.C1, requests: 1},
		{name: "lookup missing", dir: authztest.Rows(nil, authztest.Contact(authztest.C2, "x@example.com", "x", true)),
			user: ana(authztest.Lookup(authztest.C1)), reason: binding.ReasonContactNotFound, requests: 1},
		{name: "username", dir: authztest.Rows(nil, authztest.Contact(authztest.C1, "x@example.com", "ANA", true), authztest.Contact(authztest.C2, "y@example.com", "bob", true)),
			user: ana(authz.Binding{Mode: authz.BindingUsername}), want: authztest.C1, requests: 1},
		{name: "username in another column",
			dir:  authztest.Rows(nil, authztest.Contact(authztest.C1, "ana", "other", true), authztest.Contact(authztest.C2, "y@example.com", "ana", true)),
			opts: binding.Options{UsernameColumn: "emailaddress1"},
			user: ana(authz.Binding{Mode: authz.BindingUsername}), want: authztest.C1, requests: 1},
		{name: "username wildcard match is not exact",
			dir:    authztest.Rows(func(*dataverse.Contact, dataverse.ContactQuery) bool { return true }, authztest.Contact(authztest.C1, "x@example.com", "axb", true)),
			user:   &authz.User{ID: "u2", Username: "a_b", Binding: authz.Binding{Mode: authz.BindingUsername}},
			reason: binding.ReasonContactNotFound, requests: 1},
		{name: "username two active", dir: authztest.Rows(nil, authztest.Contact(authztest.C1, "x@example.com", "ana", true), authztest.Contact(authztest.C2, "y@example.com", "Ana", true)),
			user: ana(authz.Binding{Mode: authz.BindingUsername}), reason: binding.ReasonContactAmbiguous, requests: 1},
		{name: "custom", opts: binding.Options{Custom: custom},
			dir:  authztest.Rows(nil, withLast(authztest.Contact(authztest.C1, "ana@example.com", "a", true), "Lima"), withLast(authztest.Contact(authztest.C2, "ana@example.com", "b", true), "Other")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), want: authztest.C1, requests: 1},
		{name: "custom no match", opts: binding.Options{Custom: custom},
			dir:  authztest.Rows(nil, withLast(authztest.Contact(authztest.C1, "bob@example.com", "a", true), "Lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: binding.ReasonContactNotFound, requests: 1},
		{name: "custom two matches", opts: binding.Options{Custom: custom},
			dir:  authztest.Rows(nil, withLast(authztest.Contact(authztest.C1, "ana@example.com", "a", true), "Lima"), withLast(authztest.Contact(authztest.C2, "ANA@example.com", "b", true), "lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: binding.ReasonContactAmbiguous, requests: 1},
		{name: "custom only inactive", opts: binding.Options{Custom: custom},
			dir:  authztest.Rows(nil, withLast(authztest.Contact(authztest.C1, "ana@example.com", "a", false), "Lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: binding.ReasonContactInactive, requests: 1},
		{name: "custom one active one inactive", opts: binding.Options{Custom: custom},
			dir:  authztest.Rows(nil, withLast(authztest.Contact(authztest.C1, "ana@example.com", "a", false), "Lima"), withLast(authztest.Contact(authztest.C2, "ana@example.com", "b", true), "Lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), want: authztest.C2, requests: 1},
		{name: "custom with an empty user field", opts: binding.Options{Custom: custom},
			dir:    authztest.Rows(nil, withLast(authztest.Contact(authztest.C1, "ana@example.com", "a", true), "")),
			user:   &authz.User{ID: "u1", Username: "ana", Email: "ana@example.com", Binding: authz.Binding{Mode: authz.BindingCustom}},
			reason: binding.ReasonUserFieldEmpty, requests: 0},
		{name: "custom without a filter", dir: authztest.Rows(nil, authztest.Contact(authztest.C1, "ana@example.com", "a", true)),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: binding.ReasonBindingUnconfigured, requests: 0},
		{name: "a full page is ambiguous", opts: binding.Options{Custom: custom},
			dir:  authztest.Rows(func(*dataverse.Contact, dataverse.ContactQuery) bool { return true }, manyContacts(60)...),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: binding.ReasonContactAmbiguous, requests: 1},
		{name: "lookup unavailable", dir: authztest.Down(), user: ana(authztest.Lookup(authztest.C1)), unavail: true, requests: 1},
		{name: "username unavailable", dir: authztest.Down(), user: ana(authz.Binding{Mode: authz.BindingUsername}), unavail: true, requests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := authztest.NewFixture(t, wiring.Options{Contacts: tt.dir, Binding: tt.opts})
			c, err := f.Svc.Binding.ResolveBinding(t.Context(), tt.user, []string{"new_tier"})
			var berr *binding.Error
			switch {
			case tt.unavail:
				if !errors.Is(err, dataverse.ErrUnavailable) || errors.Is(err, binding.ErrFailed) {
					t.Errorf("err = %v, want ErrDirectoryUnavailable", err)
				}
			case tt.reason != "":
				if !errors.As(err, &berr) || berr.Reason != tt.reason || !errors.Is(err, binding.ErrFailed) || c != nil {
					t.Errorf("ResolveBinding = %v, %v; want a BindingError with reason %s", c, err, tt.reason)
				}
			case tt.want == "":
				if c != nil || err != nil {
					t.Errorf("ResolveBinding = %+v, %v; want nil, nil", c, err)
				}
			default:
				if err != nil {
					t.Fatalf("ResolveBinding: %v", err)
				}
				if c.ID != tt.want || !reflect.DeepEqual(c.Columns, map[string]any{"new_tier": "gold"}) || len(c.Roles) != 1 {
					t.Errorf("contact = %+v, want %s with only the asked columns and its roles", c, tt.want)
				}
			}
			if n := tt.dir.Requests(); n != tt.requests {
				t.Errorf("%d directory requests, want %d", n, tt.requests)
			}
			for _, q := range tt.dir.Queries {
				if !q.Roles || q.Limit < 2 || !contains(q.Columns, "new_tier") {
					t.Errorf("query %+v: want roles, a limit above 1 and the asked columns", q)
				}
				for _, cond := range q.Conditions {
					if !contains(q.Columns, cond.Column) {
						t.Errorf("query %+v does not read its condition column %s", q, cond.Column)
					}
				}
			}
			for _, id := range tt.dir.IDs {
				if id != strings.ToLower(id) {
					t.Errorf("ContactByID(%q): want a lower-case id", id)
				}
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func manyContacts(n int) []*dataverse.Contact {
	out := make([]*dataverse.Contact, n)
	for i := range out {
		out[i] = authztest.Contact(authztest.C3, "someone@example.com", "x", false)
	}
	return out
}

func TestResolveUsernameQuery(t *testing.T) {
	dir := authztest.Rows(nil, authztest.Contact(authztest.C1, "x@example.com", "ana", true))
	f := authztest.NewFixture(t, wiring.Options{Contacts: dir})
	if _, err := f.Svc.Binding.ResolveBinding(t.Context(), &authz.User{Username: "ana", Binding: authz.Binding{Mode: authz.BindingUsername}}, nil); err != nil {
		t.Fatalf("ResolveBinding: %v", err)
	}
	want := []dataverse.Condition{{Column: "adx_identity_username", Op: "eq", Value: "ana"}}
	if len(dir.Queries) != 1 || !reflect.DeepEqual(dir.Queries[0].Conditions, want) {
		t.Errorf("queries = %+v, want one with %+v", dir.Queries, want)
	}
}

func TestAutoMapEmail(t *testing.T) {
	tests := []struct {
		name     string
		contacts []*dataverse.Contact
		others   []authz.Binding // bindings of existing users other1, other2, ...
		dir      func(cs []*dataverse.Contact) *authztest.Directory
		want     string // the contact id bound, "" for the default
	}{
		{name: "one active contact", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "new@example.com", "", true)}, want: authztest.C1},
		{name: "email differs in case", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "NEW@Example.com", "", true)}, want: authztest.C1},
		{name: "no contact"},
		{name: "only inactive", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "new@example.com", "", false)}},
		{name: "two active", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "new@example.com", "", true), authztest.Contact(authztest.C2, "new@example.com", "", true)}},
		{name: "bound to another user", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "new@example.com", "", true)},
			others: []authz.Binding{authztest.Lookup(authztest.C1)}},
		{name: "the other is bound", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "new@example.com", "", true), authztest.Contact(authztest.C2, "new@example.com", "", true)},
			others: []authz.Binding{{}, authztest.Lookup(authztest.C1)}, want: authztest.C2},
		{name: "bound by username to another user", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "new@example.com", "other1", true)},
			others: []authz.Binding{{Mode: authz.BindingUsername}}},
		{name: "wildcard match is not exact",
			contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "newxexample.com", "", true)},
			dir: func(cs []*dataverse.Contact) *authztest.Directory {
				return authztest.Rows(func(*dataverse.Contact, dataverse.ContactQuery) bool { return true }, cs...)
			}},
		{name: "directory unavailable", contacts: []*dataverse.Contact{authztest.Contact(authztest.C1, "new@example.com", "", true)},
			dir: func([]*dataverse.Contact) *authztest.Directory { return authztest.Down() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := authztest.Rows(nil, tt.contacts...)
			if tt.dir != nil {
				dir = tt.dir(tt.contacts)
			}
			f := authztest.NewFixture(t, wiring.Options{Contacts: dir, Binding: binding.Options{AutoMapEmail: true, DefaultMode: authz.BindingUsername}})
			ctx := t.Context()
			for i, b := range tt.others {
				name := "other" + string(rune('1'+i))
				f.CreateUser(t, name, authz.StatusActive)
				if err := f.Svc.Accounts.SetBinding(ctx, name, b, "cli:test"); err != nil {
					t.Fatalf("SetBinding: %v", err)
				}
			}
			u, err := f.Svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: "new", Email: "new@example.com"}, "cli:test")
			if err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
			got := f.User(t, u.ID).Binding
			want := authz.Binding{Mode: authz.BindingUsername}
			if tt.want != "" {
				want = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: tt.want, LogicalName: "contact", Name: "Contact " + tt.want[:1]}}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("binding = %+v (ref %+v), want %+v", got, got.Ref, want)
			}
		})
	}
}

func TestDefaultBindingMode(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{Contacts: authztest.Rows(nil), Binding: binding.Options{
		DefaultMode: authz.BindingCustom, Custom: binding.MustParseFilterTemplate("emailaddress1 eq {email}")}})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	if got := f.User(t, u.ID).Binding; got.Mode != authz.BindingCustom || got.Ref != nil {
		t.Errorf("binding = %+v, want custom", got)
	}
	// Without options new users stay unbound and nothing asks Dataverse.
	g := authztest.NewFixture(t, wiring.Options{})
	if got := g.CreateUser(t, "bob", authz.StatusActive).Binding; got.Mode != authz.BindingNone {
		t.Errorf("binding = %+v, want none", got)
	}
}

func TestNewServiceBindingOptions(t *testing.T) {
	dir := authztest.Rows(nil)
	literal := binding.MustParseFilterTemplate("new_tier eq 'gold'")
	tests := []struct {
		name string
		opts wiring.Options
		want string // "" when valid
	}{
		{"zero", wiring.Options{}, ""},
		{"username default", wiring.Options{Contacts: dir, Binding: binding.Options{DefaultMode: authz.BindingUsername}}, ""},
		{"username default without directory", wiring.Options{Binding: binding.Options{DefaultMode: authz.BindingUsername}}, "needs a contact directory"},
		{"lookup default", wiring.Options{Contacts: dir, Binding: binding.Options{DefaultMode: authz.BindingLookup}}, "cannot be lookup"},
		{"unknown default", wiring.Options{Contacts: dir, Binding: binding.Options{DefaultMode: "magic"}}, "unknown default binding mode"},
		{"custom default without filter", wiring.Options{Contacts: dir, Binding: binding.Options{DefaultMode: authz.BindingCustom}}, "needs a custom filter"},
		{"custom filter without a field", wiring.Options{Contacts: dir, Binding: binding.Options{Custom: literal}}, "names no user field"},
		{"bad username column", wiring.Options{Contacts: dir, Binding: binding.Options{UsernameColumn: "user name"}}, "username binding column"},
		{"auto-map without directory", wiring.Options{Binding: binding.Options{AutoMapEmail: true}}, "auto-map needs"},
		{"check without directory", wiring.Options{SignInCheck: signin.Check{Enabled: true}}, "sign-in check needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := authztest.BuildErr(t, tt.opts)
			if tt.want == "" {
				if err != nil {
					t.Errorf("NewService: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewService error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBreakGlass(t *testing.T) {
	ctx := t.Context()
	setup := func(t *testing.T, role string) *authztest.Fixture {
		f := authztest.NewFixture(t, wiring.Options{BreakGlassRole: role, Contacts: authztest.Known(authztest.C1, authztest.C2)})
		for _, n := range []accounts.NewUser{
			{Username: "root", Email: "root@example.com", Password: authztest.GoodPassword, Roles: []string{"admin"}},
			{Username: "bound", Email: "bound@example.com", Password: authztest.GoodPassword, Roles: []string{"admin"}},
			{Username: "ana", Email: "ana@example.com", Password: authztest.GoodPassword, Roles: []string{"member"}},
		} {
			if _, err := f.Svc.Accounts.CreateUser(ctx, n, "cli:test"); err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
		}
		if err := f.Svc.Accounts.SetBinding(ctx, "bound", authztest.Lookup(authztest.C1), "cli:test"); err != nil {
			t.Fatalf("SetBinding: %v", err)
		}
		return f
	}
	changes := []struct {
		name   string
		change func(f *authztest.Fixture) error
	}{
		{"drop the role", func(f *authztest.Fixture) error {
			return f.Svc.Accounts.SetRoles(ctx, "root", []string{"member"}, "cli:test")
		}},
		{"disable", func(f *authztest.Fixture) error {
			return f.Svc.Accounts.SetStatus(ctx, "root", authz.StatusDisabled, "cli:test")
		}},
		{"set pending", func(f *authztest.Fixture) error {
			return f.Svc.Accounts.SetStatus(ctx, "root", authz.StatusPending, "cli:test")
		}},
		{"bind", func(f *authztest.Fixture) error {
			return f.Svc.Accounts.SetBinding(ctx, "root", authztest.Lookup(authztest.C2), "cli:test")
		}},
		{"bind by username", func(f *authztest.Fixture) error {
			return f.Svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingUsername}, "cli:test")
		}},
		{"delete", func(f *authztest.Fixture) error { return f.Svc.Accounts.DeleteUser(ctx, "root", "cli:test") }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			// "bound" is an admin too, but a bound one cannot sign in
			// while Dataverse is down, so it does not count.
			f := setup(t, "admin")
			before := f.UserByLogin(t, "root")
			if err := c.change(f); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
				t.Fatalf("change of the last break-glass admin: %v, want ErrLastBreakGlassAdmin", err)
			}
			if after := f.UserByLogin(t, "root"); !reflect.DeepEqual(after, before) {
				t.Errorf("refused change was applied: %+v", after)
			}
			// Changes to other users pass.
			if err := f.Svc.Accounts.SetRoles(ctx, "ana", []string{"member", "vip"}, "cli:test"); err != nil {
				t.Errorf("SetRoles of another user: %v", err)
			}
			// With a second break-glass admin the change passes.
			if err := f.Svc.Accounts.SetBinding(ctx, "bound", authz.Binding{}, "cli:test"); err != nil {
				t.Fatalf("unbind: %v", err)
			}
			if err := c.change(f); err != nil {
				t.Errorf("change with another break-glass admin: %v", err)
			}
			// And now that one is the last.
			if err := f.Svc.Accounts.SetStatus(ctx, "bound", authz.StatusDisabled, "cli:test"); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
				t.Errorf("disable the new last one: %v", err)
			}
		})
	}
	t.Run("guard off", func(t *testing.T) {
		f := setup(t, "")
		for _, c := range changes[:1] {
			if err := c.change(f); err != nil {
				t.Errorf("%s without a break-glass role: %v", c.name, err)
			}
		}
	})
	t.Run("no break-glass admin to begin with", func(t *testing.T) {
		f := setup(t, "superuser")
		if err := f.Svc.Accounts.DeleteUser(ctx, "root", "cli:test"); err != nil {
			t.Errorf("DeleteUser: %v", err)
		}
	})
	t.Run("promotion is never refused", func(t *testing.T) {
		f := setup(t, "admin")
		if err := f.Svc.Accounts.SetRoles(ctx, "ana", []string{"admin"}, "cli:test"); err != nil {
			t.Errorf("SetRoles: %v", err)
		}
		if err := f.Svc.Accounts.SetStatus(ctx, "root", authz.StatusDisabled, "cli:test"); err != nil {
			t.Errorf("SetStatus with ana now a break-glass admin: %v", err)
		}
	})
}
