package store

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/dataverse"
)

const guardRole = "admin"

func boundRef() authz.Binding {
	return authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: "11111111-1111-4111-8111-111111111111", LogicalName: "contact"}}
}

// breakGlassCount counts the break-glass accounts for role in db.
func breakGlassCount(t *testing.T, db *DB, role string) int {
	t.Helper()
	users, err := db.ListUsers(t.Context(), authz.UserFilter{Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range users {
		if authz.IsBreakGlass(u, role) {
			n++
		}
	}
	return n
}

// testBreakGlassGuard shows what the guarded update and delete refuse and
// what they let through: only the change that takes away the last active,
// unbound holder of the role is refused, and a refusal leaves the row, its
// UpdatedAt and the outbox as they were.
func testBreakGlassGuard(t *testing.T, db *DB) {
	ctx := t.Context()
	root := newUser("root")
	root.Roles = []string{"member", guardRole}
	mustCreate(t, db, root)
	bound := newUser("bound") // an admin, but bound: not break-glass
	bound.Roles, bound.Binding = []string{guardRole}, boundRef()
	mustCreate(t, db, bound)
	off := newUser("off") // an admin, but disabled
	off.Roles, off.Status = []string{guardRole}, authz.StatusDisabled
	mustCreate(t, db, off)
	wait := newUser("wait") // an admin, but pending
	wait.Roles, wait.Status = []string{guardRole}, authz.StatusPending
	mustCreate(t, db, wait)
	ana := mustCreate(t, db, newUser("ana"))

	refuse := []struct {
		name   string
		change func(u *authz.User)
	}{
		{"drop the role", func(u *authz.User) { u.Roles = []string{"member"} }},
		{"disable", func(u *authz.User) { u.Status = authz.StatusDisabled }},
		{"set pending", func(u *authz.User) { u.Status = authz.StatusPending }},
		{"bind by lookup", func(u *authz.User) { u.Binding = boundRef() }},
		{"bind by username", func(u *authz.User) { u.Binding = authz.Binding{Mode: authz.BindingUsername} }},
	}
	for _, c := range refuse {
		before, _ := db.UserByID(ctx, root.ID)
		u := *before
		c.change(&u)
		err := db.UpdateUserKeepingBreakGlass(ctx, &u, guardRole, event(lifecycle.Updated))
		if !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
			t.Fatalf("%s of the last break-glass account: %v, want ErrLastBreakGlassAdmin", c.name, err)
		}
		if !u.UpdatedAt.Equal(before.UpdatedAt) {
			t.Errorf("%s: UpdatedAt moved on a refused update", c.name)
		}
		if after, _ := db.UserByID(ctx, root.ID); !reflect.DeepEqual(after, before) {
			t.Errorf("%s: refused update was applied: %+v", c.name, after)
		}
	}
	if err := db.DeleteUserKeepingBreakGlass(ctx, root.ID, guardRole, event(lifecycle.Deleted)); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
		t.Fatalf("delete of the last break-glass account: %v, want ErrLastBreakGlassAdmin", err)
	}
	if _, err := db.UserByID(ctx, root.ID); err != nil {
		t.Fatalf("refused delete removed the user: %v", err)
	}
	if es := allEvents(t, db, ""); len(es) != 0 {
		t.Fatalf("refused changes enqueued %d events", len(es))
	}

	// Changes that keep the account break-glass, and changes to others, pass.
	u, _ := db.UserByID(ctx, root.ID)
	u.FirstName, u.Roles = "Renamed", []string{guardRole}
	if err := db.UpdateUserKeepingBreakGlass(ctx, u, guardRole, event(lifecycle.Updated)); err != nil {
		t.Fatalf("update that keeps the account break-glass: %v", err)
	}
	a, _ := db.UserByID(ctx, ana.ID)
	a.Roles = []string{"vip"}
	if err := db.UpdateUserKeepingBreakGlass(ctx, a, guardRole, event(lifecycle.Updated)); err != nil {
		t.Fatalf("update of another user: %v", err)
	}
	if err := db.DeleteUserKeepingBreakGlass(ctx, off.ID, guardRole, event(lifecycle.Deleted)); err != nil {
		t.Fatalf("delete of a disabled admin: %v", err)
	}
	if es := allEvents(t, db, ""); len(es) != 3 {
		t.Fatalf("%d events after three changes, want 3", len(es))
	}
	// The usual errors of the unguarded methods.
	stale := *u
	stale.UpdatedAt = stale.UpdatedAt.Add(-1)
	stale.Roles = nil
	if err := db.UpdateUserKeepingBreakGlass(ctx, &stale, guardRole); !errors.Is(err, authz.ErrStale) {
		t.Errorf("stale update: %v, want ErrStale", err)
	}
	missing := newUser("ghost")
	missing.ID = "ghost"
	if err := db.UpdateUserKeepingBreakGlass(ctx, missing, guardRole); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("update of a missing user: %v, want ErrNotFound", err)
	}
	if err := db.DeleteUserKeepingBreakGlass(ctx, "ghost", guardRole); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("delete of a missing user: %v, want ErrNotFound", err)
	}

	// An empty role guards nothing.
	u, _ = db.UserByID(ctx, root.ID)
	u.Roles = nil
	if err := db.UpdateUserKeepingBreakGlass(ctx, u, ""); err != nil {
		t.Fatalf("update without a role: %v", err)
	}
	// Nobody is break-glass now, and a change of nobody's is refused.
	if n := breakGlassCount(t, db, guardRole); n != 0 {
		t.Fatalf("%d break-glass accounts, want 0", n)
	}
	if err := db.DeleteUserKeepingBreakGlass(ctx, root.ID, guardRole); err != nil {
		t.Fatalf("delete of a former admin with no break-glass account left: %v", err)
	}

	// The role is matched exactly: "ad_in" and "Admin" are other roles,
	// though LIKE would let "_" match any character and SQLite's LIKE
	// ignores case.
	x := newUser("x")
	x.Roles = []string{"ad_in"}
	mustCreate(t, db, x)
	for _, name := range []string{"y", "z"} {
		o := newUser(name)
		o.Roles = []string{"admin", "Ad_in", "ad_inx", "xad_in"}
		mustCreate(t, db, o)
	}
	if err := db.DeleteUserKeepingBreakGlass(ctx, x.ID, "ad_in"); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
		t.Fatalf("delete of the only holder of ad_in: %v, want ErrLastBreakGlassAdmin", err)
	}
}

// testBreakGlassConcurrent races guarded demotions, disables, bindings and
// deletions of the break-glass accounts against each other, each writer
// retrying on ErrStale as authz does: exactly one account must remain,
// whatever the interleaving, and every change that was not refused left
// its outbox event.
func testBreakGlassConcurrent(t *testing.T, newDB func(t *testing.T) *DB) {
	changes := []struct {
		name   string
		change func(u *authz.User)
	}{
		{"demote", func(u *authz.User) { u.Roles = []string{"member"} }},
		{"disable", func(u *authz.User) { u.Status = authz.StatusDisabled }},
		{"bind", func(u *authz.User) { u.Binding = boundRef() }},
		{"delete", nil},
	}
	for _, admins := range []int{2, 3} {
		for _, writers := range []int{admins, 8} {
			t.Run(fmt.Sprintf("%d admins %d writers", admins, writers), func(t *testing.T) {
				db := newDB(t)
				ids := make([]string, admins)
				for i := range ids {
					u := newUser(fmt.Sprintf("root%d", i))
					u.Roles = []string{guardRole}
					ids[i] = mustCreate(t, db, u).ID
				}
				var (
					wg      sync.WaitGroup
					start   = make(chan struct{})
					mu      sync.Mutex
					applied int
					refused int
				)
				for w := range writers {
					id, c := ids[w%admins], changes[w%len(changes)]
					wg.Go(func() {
						<-start
						err := guardedChange(t, db, id, c.change)
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							applied++
						case errors.Is(err, authz.ErrLastBreakGlassAdmin):
							refused++
						case errors.Is(err, authz.ErrNotFound): // deleted by another writer
						default:
							t.Errorf("%s of %s: %v", c.name, id, err)
						}
					})
				}
				close(start)
				wg.Wait()
				if n := breakGlassCount(t, db, guardRole); n != 1 {
					t.Fatalf("%d break-glass accounts remain, want exactly 1 (applied %d, refused %d)", n, applied, refused)
				}
				if refused == 0 {
					t.Errorf("no change was refused")
				}
				if es := allEvents(t, db, ""); len(es) != applied {
					t.Errorf("%d events for %d applied changes", len(es), applied)
				}
			})
		}
	}
}

// guardedChange applies change to user id with the guarded update, or
// deletes it when change is nil, rereading and retrying on ErrStale.
func guardedChange(t *testing.T, db *DB, id string, change func(*authz.User)) error {
	ctx := t.Context()
	if change == nil {
		return db.DeleteUserKeepingBreakGlass(ctx, id, guardRole, event(lifecycle.Deleted))
	}
	for {
		u, err := db.UserByID(ctx, id)
		if err != nil {
			return err
		}
		change(u)
		err = db.UpdateUserKeepingBreakGlass(ctx, u, guardRole, event(lifecycle.Updated))
		if !errors.Is(err, authz.ErrStale) {
			return err
		}
	}
}
