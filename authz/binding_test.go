package authz_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

// Contact ids of the tests.
const (
	c1 = "11111111-1111-4111-8111-111111111111"
	c2 = "22222222-2222-4222-8222-222222222222"
	c3 = "33333333-3333-4333-8333-333333333333"
)

func contact(id, email, username string, active bool) *dataverse.Contact {
	return &dataverse.Contact{ID: id, LogicalName: "contact", Name: "Contact " + id[:1], Active: active, LogonEnabled: true,
		Email: email, Username: username, Roles: []string{"Customer"},
		Columns: map[string]any{"emailaddress1": email, "adx_identity_username": username, "new_tier": "gold"}}
}

func lookup(id string) authz.Binding {
	return authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: id, LogicalName: "contact"}}
}

func TestResolveBinding(t *testing.T) {
	custom := authz.MustParseFilterTemplate("emailaddress1 eq {email} and lastname eq {last_name}")
	ana := func(b authz.Binding) *authz.User {
		return &authz.User{ID: "u1", Username: "ana", Email: "ana@example.com", LastName: "Lima", Binding: b}
	}
	withLast := func(c *dataverse.Contact, last string) *dataverse.Contact {
		c.LastName = last
		return c
	}
	tests := []struct {
		name     string
		dir      *directory
		opts     authz.BindingOptions
		user     *authz.User
		want     string // contact id
		reason   string // BindingError.Reason
		unavail  bool
		requests int
	}{
		{name: "none", dir: rows(nil, contact(c1, "ana@example.com", "ana", true)),
			user: ana(authz.Binding{Mode: authz.BindingNone}), requests: 0},
		{name: "zero binding", dir: rows(nil, contact(c1, "ana@example.com", "ana", true)),
			user: ana(authz.Binding{}), requests: 0},
		{name: "lookup", dir: rows(nil, contact(c1, "x@example.com", "x", true)),
			user: ana(lookup(strings.ToUpper(c1))), want: c1, requests: 1},
		{name: "lookup of an inactive contact resolves", dir: rows(nil, contact(c1, "x@example.com", "x", false)),
			user: ana(lookup(c1)), want: c1, requests: 1},
		{name: "lookup missing", dir: rows(nil, contact(c2, "x@example.com", "x", true)),
			user: ana(lookup(c1)), reason: authz.ReasonContactNotFound, requests: 1},
		{name: "username", dir: rows(nil, contact(c1, "x@example.com", "ANA", true), contact(c2, "y@example.com", "bob", true)),
			user: ana(authz.Binding{Mode: authz.BindingUsername}), want: c1, requests: 1},
		{name: "username in another column",
			dir:  rows(nil, contact(c1, "ana", "other", true), contact(c2, "y@example.com", "ana", true)),
			opts: authz.BindingOptions{UsernameColumn: "emailaddress1"},
			user: ana(authz.Binding{Mode: authz.BindingUsername}), want: c1, requests: 1},
		{name: "username wildcard match is not exact",
			dir:    rows(func(*dataverse.Contact, dataverse.ContactQuery) bool { return true }, contact(c1, "x@example.com", "axb", true)),
			user:   &authz.User{ID: "u2", Username: "a_b", Binding: authz.Binding{Mode: authz.BindingUsername}},
			reason: authz.ReasonContactNotFound, requests: 1},
		{name: "username two active", dir: rows(nil, contact(c1, "x@example.com", "ana", true), contact(c2, "y@example.com", "Ana", true)),
			user: ana(authz.Binding{Mode: authz.BindingUsername}), reason: authz.ReasonContactAmbiguous, requests: 1},
		{name: "custom", opts: authz.BindingOptions{Custom: custom},
			dir:  rows(nil, withLast(contact(c1, "ana@example.com", "a", true), "Lima"), withLast(contact(c2, "ana@example.com", "b", true), "Other")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), want: c1, requests: 1},
		{name: "custom no match", opts: authz.BindingOptions{Custom: custom},
			dir:  rows(nil, withLast(contact(c1, "bob@example.com", "a", true), "Lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: authz.ReasonContactNotFound, requests: 1},
		{name: "custom two matches", opts: authz.BindingOptions{Custom: custom},
			dir:  rows(nil, withLast(contact(c1, "ana@example.com", "a", true), "Lima"), withLast(contact(c2, "ANA@example.com", "b", true), "lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: authz.ReasonContactAmbiguous, requests: 1},
		{name: "custom only inactive", opts: authz.BindingOptions{Custom: custom},
			dir:  rows(nil, withLast(contact(c1, "ana@example.com", "a", false), "Lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: authz.ReasonContactInactive, requests: 1},
		{name: "custom one active one inactive", opts: authz.BindingOptions{Custom: custom},
			dir:  rows(nil, withLast(contact(c1, "ana@example.com", "a", false), "Lima"), withLast(contact(c2, "ana@example.com", "b", true), "Lima")),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), want: c2, requests: 1},
		{name: "custom with an empty user field", opts: authz.BindingOptions{Custom: custom},
			dir:    rows(nil, withLast(contact(c1, "ana@example.com", "a", true), "")),
			user:   &authz.User{ID: "u1", Username: "ana", Email: "ana@example.com", Binding: authz.Binding{Mode: authz.BindingCustom}},
			reason: authz.ReasonUserFieldEmpty, requests: 0},
		{name: "custom without a filter", dir: rows(nil, contact(c1, "ana@example.com", "a", true)),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: authz.ReasonBindingUnconfigured, requests: 0},
		{name: "a full page is ambiguous", opts: authz.BindingOptions{Custom: custom},
			dir:  rows(func(*dataverse.Contact, dataverse.ContactQuery) bool { return true }, manyContacts(60)...),
			user: ana(authz.Binding{Mode: authz.BindingCustom}), reason: authz.ReasonContactAmbiguous, requests: 1},
		{name: "lookup unavailable", dir: down(), user: ana(lookup(c1)), unavail: true, requests: 1},
		{name: "username unavailable", dir: down(), user: ana(authz.Binding{Mode: authz.BindingUsername}), unavail: true, requests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, authz.Options{Contacts: tt.dir, Binding: tt.opts})
			c, err := f.svc.ResolveBinding(t.Context(), tt.user, []string{"new_tier"})
			var berr *authz.BindingError
			switch {
			case tt.unavail:
				if !errors.Is(err, dataverse.ErrUnavailable) || errors.Is(err, authz.ErrBindingFailed) {
					t.Errorf("err = %v, want ErrDirectoryUnavailable", err)
				}
			case tt.reason != "":
				if !errors.As(err, &berr) || berr.Reason != tt.reason || !errors.Is(err, authz.ErrBindingFailed) || c != nil {
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
			if n := tt.dir.requests(); n != tt.requests {
				t.Errorf("%d directory requests, want %d", n, tt.requests)
			}
			for _, q := range tt.dir.queries {
				if !q.Roles || q.Limit < 2 || !contains(q.Columns, "new_tier") {
					t.Errorf("query %+v: want roles, a limit above 1 and the asked columns", q)
				}
				for _, cond := range q.Conditions {
					if !contains(q.Columns, cond.Column) {
						t.Errorf("query %+v does not read its condition column %s", q, cond.Column)
					}
				}
			}
			for _, id := range tt.dir.ids {
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
		out[i] = contact(c3, "someone@example.com", "x", false)
	}
	return out
}

func TestResolveUsernameQuery(t *testing.T) {
	dir := rows(nil, contact(c1, "x@example.com", "ana", true))
	f := newFixture(t, authz.Options{Contacts: dir})
	if _, err := f.svc.ResolveBinding(t.Context(), &authz.User{Username: "ana", Binding: authz.Binding{Mode: authz.BindingUsername}}, nil); err != nil {
		t.Fatalf("ResolveBinding: %v", err)
	}
	want := []dataverse.Condition{{Column: "adx_identity_username", Op: "eq", Value: "ana"}}
	if len(dir.queries) != 1 || !reflect.DeepEqual(dir.queries[0].Conditions, want) {
		t.Errorf("queries = %+v, want one with %+v", dir.queries, want)
	}
}

func TestAutoMapEmail(t *testing.T) {
	tests := []struct {
		name     string
		contacts []*dataverse.Contact
		others   []authz.Binding // bindings of existing users other1, other2, ...
		dir      func(cs []*dataverse.Contact) *directory
		want     string // the contact id bound, "" for the default
	}{
		{name: "one active contact", contacts: []*dataverse.Contact{contact(c1, "new@example.com", "", true)}, want: c1},
		{name: "email differs in case", contacts: []*dataverse.Contact{contact(c1, "NEW@Example.com", "", true)}, want: c1},
		{name: "no contact"},
		{name: "only inactive", contacts: []*dataverse.Contact{contact(c1, "new@example.com", "", false)}},
		{name: "two active", contacts: []*dataverse.Contact{contact(c1, "new@example.com", "", true), contact(c2, "new@example.com", "", true)}},
		{name: "bound to another user", contacts: []*dataverse.Contact{contact(c1, "new@example.com", "", true)},
			others: []authz.Binding{lookup(c1)}},
		{name: "the other is bound", contacts: []*dataverse.Contact{contact(c1, "new@example.com", "", true), contact(c2, "new@example.com", "", true)},
			others: []authz.Binding{{}, lookup(c1)}, want: c2},
		{name: "bound by username to another user", contacts: []*dataverse.Contact{contact(c1, "new@example.com", "other1", true)},
			others: []authz.Binding{{Mode: authz.BindingUsername}}},
		{name: "wildcard match is not exact",
			contacts: []*dataverse.Contact{contact(c1, "newxexample.com", "", true)},
			dir: func(cs []*dataverse.Contact) *directory {
				return rows(func(*dataverse.Contact, dataverse.ContactQuery) bool { return true }, cs...)
			}},
		{name: "directory unavailable", contacts: []*dataverse.Contact{contact(c1, "new@example.com", "", true)},
			dir: func([]*dataverse.Contact) *directory { return down() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := rows(nil, tt.contacts...)
			if tt.dir != nil {
				dir = tt.dir(tt.contacts)
			}
			f := newFixture(t, authz.Options{Contacts: dir, Binding: authz.BindingOptions{AutoMapEmail: true, DefaultMode: authz.BindingUsername}})
			ctx := t.Context()
			for i, b := range tt.others {
				name := "other" + string(rune('1'+i))
				f.createUser(t, name, authz.StatusActive)
				if err := f.svc.SetBinding(ctx, name, b, "cli:test"); err != nil {
					t.Fatalf("SetBinding: %v", err)
				}
			}
			u, err := f.svc.CreateUser(ctx, authz.NewUser{Username: "new", Email: "new@example.com"}, "cli:test")
			if err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
			got := f.user(t, u.ID).Binding
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
	f := newFixture(t, authz.Options{Contacts: rows(nil), Binding: authz.BindingOptions{
		DefaultMode: authz.BindingCustom, Custom: authz.MustParseFilterTemplate("emailaddress1 eq {email}")}})
	u := f.createUser(t, "ana", authz.StatusActive)
	if got := f.user(t, u.ID).Binding; got.Mode != authz.BindingCustom || got.Ref != nil {
		t.Errorf("binding = %+v, want custom", got)
	}
	// Without options new users stay unbound and nothing asks Dataverse.
	g := newFixture(t, authz.Options{})
	if got := g.createUser(t, "bob", authz.StatusActive).Binding; got.Mode != authz.BindingNone {
		t.Errorf("binding = %+v, want none", got)
	}
}

func TestNewServiceBindingOptions(t *testing.T) {
	dir := rows(nil)
	literal := authz.MustParseFilterTemplate("new_tier eq 'gold'")
	tests := []struct {
		name string
		opts authz.Options
		want string // "" when valid
	}{
		{"zero", authz.Options{}, ""},
		{"username default", authz.Options{Contacts: dir, Binding: authz.BindingOptions{DefaultMode: authz.BindingUsername}}, ""},
		{"username default without directory", authz.Options{Binding: authz.BindingOptions{DefaultMode: authz.BindingUsername}}, "needs a contact directory"},
		{"lookup default", authz.Options{Contacts: dir, Binding: authz.BindingOptions{DefaultMode: authz.BindingLookup}}, "cannot be lookup"},
		{"unknown default", authz.Options{Contacts: dir, Binding: authz.BindingOptions{DefaultMode: "magic"}}, "unknown default binding mode"},
		{"custom default without filter", authz.Options{Contacts: dir, Binding: authz.BindingOptions{DefaultMode: authz.BindingCustom}}, "needs a custom filter"},
		{"custom filter without a field", authz.Options{Contacts: dir, Binding: authz.BindingOptions{Custom: literal}}, "names no user field"},
		{"bad username column", authz.Options{Contacts: dir, Binding: authz.BindingOptions{UsernameColumn: "user name"}}, "username binding column"},
		{"auto-map without directory", authz.Options{Binding: authz.BindingOptions{AutoMapEmail: true}}, "auto-map needs"},
		{"check without directory", authz.Options{SignInCheck: authz.SignInCheck{Enabled: true}}, "sign-in check needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newServiceErr(t, tt.opts)
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

// newServiceErr returns NewService's error for opts over a real store.
func newServiceErr(t *testing.T, opts authz.Options) error {
	t.Helper()
	opts.Password = fastParams
	_, err := authz.NewService(newFixture(t, authz.Options{}).db, opts)
	return err
}

func TestBreakGlass(t *testing.T) {
	ctx := t.Context()
	setup := func(t *testing.T, role string) *fixture {
		f := newFixture(t, authz.Options{BreakGlassRole: role, Contacts: rows(nil)})
		for _, n := range []authz.NewUser{
			{Username: "root", Email: "root@example.com", Password: goodPassword, Roles: []string{"admin"}},
			{Username: "bound", Email: "bound@example.com", Password: goodPassword, Roles: []string{"admin"}},
			{Username: "ana", Email: "ana@example.com", Password: goodPassword, Roles: []string{"member"}},
		} {
			if _, err := f.svc.CreateUser(ctx, n, "cli:test"); err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
		}
		if err := f.svc.SetBinding(ctx, "bound", lookup(c1), "cli:test"); err != nil {
			t.Fatalf("SetBinding: %v", err)
		}
		return f
	}
	changes := []struct {
		name   string
		change func(f *fixture) error
	}{
		{"drop the role", func(f *fixture) error { return f.svc.SetRoles(ctx, "root", []string{"member"}, "cli:test") }},
		{"disable", func(f *fixture) error { return f.svc.SetStatus(ctx, "root", authz.StatusDisabled, "cli:test") }},
		{"set pending", func(f *fixture) error { return f.svc.SetStatus(ctx, "root", authz.StatusPending, "cli:test") }},
		{"bind", func(f *fixture) error { return f.svc.SetBinding(ctx, "root", lookup(c2), "cli:test") }},
		{"bind by username", func(f *fixture) error {
			return f.svc.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingUsername}, "cli:test")
		}},
		{"delete", func(f *fixture) error { return f.svc.DeleteUser(ctx, "root", "cli:test") }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			// "bound" is an admin too, but a bound one cannot sign in
			// while Dataverse is down, so it does not count.
			f := setup(t, "admin")
			before := f.userByLogin(t, "root")
			if err := c.change(f); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
				t.Fatalf("change of the last break-glass admin: %v, want ErrLastBreakGlassAdmin", err)
			}
			if after := f.userByLogin(t, "root"); !reflect.DeepEqual(after, before) {
				t.Errorf("refused change was applied: %+v", after)
			}
			// Changes to other users pass.
			if err := f.svc.SetRoles(ctx, "ana", []string{"member", "vip"}, "cli:test"); err != nil {
				t.Errorf("SetRoles of another user: %v", err)
			}
			// With a second break-glass admin the change passes.
			if err := f.svc.SetBinding(ctx, "bound", authz.Binding{}, "cli:test"); err != nil {
				t.Fatalf("unbind: %v", err)
			}
			if err := c.change(f); err != nil {
				t.Errorf("change with another break-glass admin: %v", err)
			}
			// And now that one is the last.
			if err := f.svc.SetStatus(ctx, "bound", authz.StatusDisabled, "cli:test"); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
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
		if err := f.svc.DeleteUser(ctx, "root", "cli:test"); err != nil {
			t.Errorf("DeleteUser: %v", err)
		}
	})
	t.Run("promotion is never refused", func(t *testing.T) {
		f := setup(t, "admin")
		if err := f.svc.SetRoles(ctx, "ana", []string{"admin"}, "cli:test"); err != nil {
			t.Errorf("SetRoles: %v", err)
		}
		if err := f.svc.SetStatus(ctx, "root", authz.StatusDisabled, "cli:test"); err != nil {
			t.Errorf("SetStatus with ana now a break-glass admin: %v", err)
		}
	})
}

func (f *fixture) userByLogin(t *testing.T, login string) *authz.User {
	t.Helper()
	us, err := f.svc.ListUsers(t.Context(), authz.UserFilter{Query: login})
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	for _, u := range us {
		if u.Username == login {
			return u
		}
	}
	t.Fatalf("no user %s", login)
	return nil
}
