package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/crmgate/crmgate/authz/authztest"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/wiring"
)

// TestSetBindings applies one batch that mixes every outcome: users named
// by id, username and email are bound, each with its audit event (actor)
// and lifecycle event, a new security stamp; an unknown user, a bad
// binding and the binding of the last break-glass admin fail on their own
// without stopping the rest, and nothing is changed for them.
func TestSetBindings(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{BreakGlassRole: "admin", Contacts: authztest.Known(authztest.C1, authztest.C2)})
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	bob := f.CreateUser(t, "bob", authz.StatusActive)
	cid := f.CreateUser(t, "cid", authz.StatusDisabled)
	var roots []*authz.User
	for _, n := range []string{"root1", "root2"} {
		u, err := f.Svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: n, Email: n + "@example.com", Password: authztest.GoodPassword, Roles: []string{"admin"}}, "cli:test")
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, u)
	}
	before := map[string]*authz.User{}
	for _, u := range []*authz.User{ana, bob, cid, roots[0], roots[1]} {
		before[u.ID] = f.User(t, u.ID)
	}
	eventsBefore := len(f.Events(t, ""))

	username := authz.Binding{Mode: authz.BindingUsername}
	results, err := f.Svc.Accounts.SetBindings(ctx, []accounts.BindingChange{
		{User: ana.ID, Binding: authztest.Lookup(strings.ToUpper(authztest.C1))},
		{User: "BOB", Binding: username},
		{User: "cid@example.com", Binding: username},
		{User: "nobody", Binding: username},
		{User: "", Binding: username},
		{User: ana.ID, Binding: authz.Binding{Mode: authz.BindingLookup}},
		{User: bob.ID, Binding: authz.Binding{Mode: "sometimes"}},
		{User: "root1", Binding: authztest.Lookup(authztest.C2)},
		{User: roots[1].ID, Binding: username},
	}, "apikey:k1")
	if err != nil {
		t.Fatalf("SetBindings: %v", err)
	}
	type want struct {
		id  string
		err string // "", "validation", "not found", "last"
	}
	wants := []want{
		{ana.ID, ""}, {bob.ID, ""}, {cid.ID, ""},
		{"", "not found"}, {"", "not found"},
		{"", "validation"}, {"", "validation"},
		{roots[0].ID, ""}, {roots[1].ID, "last"},
	}
	if len(results) != len(wants) {
		t.Fatalf("%d results for %d changes", len(results), len(wants))
	}
	var verr *authz.ValidationError
	for i, w := range wants {
		r := results[i]
		ok := false
		switch w.err {
		case "":
			ok = r.Err == nil
		case "validation":
			ok = errors.As(r.Err, &verr) && verr.Field == "binding"
		case "not found":
			ok = errors.Is(r.Err, authz.ErrNotFound)
		case "last":
			ok = errors.Is(r.Err, authz.ErrLastBreakGlassAdmin)
		}
		if !ok || (w.id != "" && r.ID != w.id) {
			t.Errorf("result %d (%q): id %q err %v; want id %q, %s", i, r.User, r.ID, r.Err, w.id, w.err)
		}
	}
	if results[1].User != "BOB" {
		t.Errorf("result User = %q, want the input as given", results[1].User)
	}

	// Saved: normalised, new stamp, audited with the actor, one event each.
	if got := f.User(t, ana.ID).Binding; got.Mode != authz.BindingLookup || got.Ref.ID != authztest.C1 {
		t.Errorf("ana's binding: %+v", got)
	}
	for _, u := range []*authz.User{bob, cid, roots[0]} {
		got := f.User(t, u.ID)
		if got.Binding.Mode == authz.BindingNone || got.SecurityStamp == before[u.ID].SecurityStamp {
			t.Errorf("%s: binding %+v, stamp rotated %v", u.Username, got.Binding, got.SecurityStamp != before[u.ID].SecurityStamp)
		}
		es, _ := f.Svc.Audit.ListAudit(ctx, audit.Filter{UserID: u.ID, Type: audit.EventBindingSet})
		if len(es) != 1 || es[0].Actor != "apikey:k1" {
			t.Errorf("%s: binding audit %+v", u.Username, es)
		}
		if es := f.Events(t, u.ID); es[len(es)-1].Type != lifecycle.Bound {
			t.Errorf("%s: last event %s, want %s", u.Username, es[len(es)-1].Type, lifecycle.Bound)
		}
	}
	if n := len(f.Events(t, "")) - eventsBefore; n != 4 {
		t.Errorf("%d lifecycle events for 4 changes", n)
	}
	// Refused: untouched.
	if got := f.User(t, roots[1].ID); got.Binding.Mode != authz.BindingNone || got.UpdatedAt != before[roots[1].ID].UpdatedAt {
		t.Errorf("the last break-glass admin was changed: %+v", got)
	}

	// Unbinding is LifecycleUnbound, like SetBinding.
	results, err = f.Svc.Accounts.SetBindings(ctx, []accounts.BindingChange{{User: "ana", Binding: authz.Binding{}}}, "cli")
	if err != nil || results[0].Err != nil {
		t.Fatalf("unbind: %v %v", err, results)
	}
	if es := f.Events(t, ana.ID); es[len(es)-1].Type != lifecycle.Unbound {
		t.Errorf("unbind event %s", es[len(es)-1].Type)
	}
}

// TestSetBindingsLimits: an oversize batch is refused whole; once the
// context ends the remaining changes fail with its error and change
// nothing; an id wins over a username equal to it.
func TestSetBindingsLimits(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{})
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	many := make([]accounts.BindingChange, accounts.MaxBindingChanges+1)
	for i := range many {
		many[i] = accounts.BindingChange{User: "ana", Binding: authz.Binding{Mode: authz.BindingUsername}}
	}
	var verr *authz.ValidationError
	if res, err := f.Svc.Accounts.SetBindings(ctx, many, "cli"); !errors.As(err, &verr) || res != nil {
		t.Fatalf("%d changes: %v, want a ValidationError", len(many), err)
	}
	if f.User(t, ana.ID).Binding.Mode != authz.BindingNone {
		t.Fatal("an oversize batch changed a user")
	}
	// At the limit the batch is taken. (All but the first name no one,
	// which keeps the test fast: a miss writes nothing.)
	for i := 1; i < len(many); i++ {
		many[i].User = "nobody"
	}
	res, err := f.Svc.Accounts.SetBindings(ctx, many[:accounts.MaxBindingChanges], "cli")
	if err != nil || len(res) != accounts.MaxBindingChanges || res[0].Err != nil || !errors.Is(res[len(res)-1].Err, authz.ErrNotFound) {
		t.Fatalf("%d changes: %v", accounts.MaxBindingChanges, err)
	}
	if res, err := f.Svc.Accounts.SetBindings(ctx, nil, "cli"); err != nil || len(res) != 0 {
		t.Fatalf("empty batch: %v %v", res, err)
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	stamp := f.User(t, ana.ID).SecurityStamp
	res, err = f.Svc.Accounts.SetBindings(done, []accounts.BindingChange{{User: "ana", Binding: authz.Binding{}}}, "cli")
	if err != nil || !errors.Is(res[0].Err, context.Canceled) {
		t.Fatalf("cancelled: %v %+v", err, res)
	}
	if f.User(t, ana.ID).SecurityStamp != stamp {
		t.Error("a change was applied after the context ended")
	}

	// An id wins over another user's username equal to it: ana, bound by
	// username above, is unbound; shadow keeps its binding.
	shadow, err := f.Svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: ana.ID, Email: "shadow@example.com"}, "cli")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Svc.Accounts.SetBinding(ctx, shadow.Username, authz.Binding{Mode: authz.BindingUsername}, "cli"); err != nil {
		t.Fatal(err)
	}
	res, _ = f.Svc.Accounts.SetBindings(ctx, []accounts.BindingChange{{User: ana.ID, Binding: authz.Binding{}}}, "cli")
	if res[0].Err != nil || res[0].ID != ana.ID {
		t.Fatalf("by id: %+v", res[0])
	}
	if f.User(t, shadow.ID).Binding.Mode != authz.BindingUsername || f.User(t, ana.ID).Binding.Mode != authz.BindingNone {
		t.Fatalf("the change went to the user named %s, not the one with that id", ana.ID)
	}
}

// TestBreakGlassConcurrentChanges races demotions, disables, bindings (one
// by one and in batches) and deletions of the last break-glass admins
// through the Service on both databases: exactly one must remain, at least
// one change is refused, and every applied change has its audit event.
func TestBreakGlassConcurrentChanges(t *testing.T) {
	changes := []struct {
		name  string
		apply func(ctx context.Context, svc *wiring.Services, login string) error
	}{
		{"demote", func(ctx context.Context, svc *wiring.Services, login string) error {
			return svc.Accounts.SetRoles(ctx, login, []string{"member"}, "race")
		}},
		{"disable", func(ctx context.Context, svc *wiring.Services, login string) error {
			return svc.Accounts.SetStatus(ctx, login, authz.StatusDisabled, "race")
		}},
		{"bind", func(ctx context.Context, svc *wiring.Services, login string) error {
			// Each admin to a contact of its own: a contact bound to another
			// user would be refused before the guard is reached.
			return svc.Accounts.SetBinding(ctx, login, authztest.Lookup(map[string]string{"root0": authztest.C1, "root1": authztest.C2, "root2": authztest.C3}[login]), "race")
		}},
		{"delete", func(ctx context.Context, svc *wiring.Services, login string) error {
			return svc.Accounts.DeleteUser(ctx, login, "race")
		}},
		{"bulk bind", func(ctx context.Context, svc *wiring.Services, login string) error {
			res, err := svc.Accounts.SetBindings(ctx, []accounts.BindingChange{{User: login, Binding: authz.Binding{Mode: authz.BindingUsername}}}, "race")
			if err != nil {
				return err
			}
			return res[0].Err
		}},
	}
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			for _, admins := range []int{2, 3} {
				for _, writers := range []int{admins, 8} {
					t.Run(fmt.Sprintf("%d admins %d writers", admins, writers), func(t *testing.T) {
						ctx := t.Context()
						db, err := store.Open(ctx, d.URL(t))
						if err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { db.Close() })
						svc, err := wiring.New(db, authztest.Options(wiring.Options{Password: authztest.FastParams, BreakGlassRole: "admin",
							Contacts: authztest.Known(authztest.C1, authztest.C2, authztest.C3)}))
						if err != nil {
							t.Fatal(err)
						}
						logins := make([]string, admins)
						for i := range logins {
							logins[i] = fmt.Sprintf("root%d", i)
							if _, err := svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: logins[i], Email: logins[i] + "@example.com",
								Roles: []string{"admin"}}, "test"); err != nil {
								t.Fatal(err)
							}
						}
						var (
							wg               sync.WaitGroup
							start            = make(chan struct{})
							mu               sync.Mutex
							applied, refused int
						)
						for w := range writers {
							login, c := logins[w%admins], changes[w%len(changes)]
							wg.Go(func() {
								<-start
								err := c.apply(ctx, svc, login)
								mu.Lock()
								defer mu.Unlock()
								switch {
								case err == nil:
									applied++
								case errors.Is(err, authz.ErrLastBreakGlassAdmin):
									refused++
								case errors.Is(err, authz.ErrNotFound): // deleted by another writer
								default:
									t.Errorf("%s of %s: %v", c.name, login, err)
								}
							})
						}
						close(start)
						wg.Wait()
						users, err := svc.Accounts.ListUsers(ctx, authz.UserFilter{Limit: authz.MaxListLimit})
						if err != nil {
							t.Fatal(err)
						}
						left := 0
						for _, u := range users {
							if authz.IsBreakGlass(u, "admin") {
								left++
							}
						}
						if left != 1 || refused == 0 {
							t.Fatalf("%d break-glass admins left (want exactly 1); %d changes applied, %d refused", left, applied, refused)
						}
						es, err := svc.Audit.ListAudit(ctx, audit.Filter{Limit: authz.MaxListLimit})
						if err != nil {
							t.Fatal(err)
						}
						raced := 0
						for _, e := range es {
							if e.Actor == "race" {
								raced++
							}
						}
						if raced != applied {
							t.Errorf("%d audit events for %d applied changes", raced, applied)
						}
					})
				}
			}
		})
	}
}
