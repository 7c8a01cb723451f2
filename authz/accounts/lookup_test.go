package accounts_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
)

// TestLookupBindingIsChecked: a lookup binding is checked in Dataverse
// before it is saved. A contact that does not exist, or that another user
// is bound to (by lookup, or by a username binding matching its username),
// is refused with a clear error and changes nothing; an explicit override
// binds a shared contact and audits whom it is shared with.
func TestLookupBindingIsChecked(t *testing.T) {
	ctx := t.Context()
	owned := authztest.Contact(authztest.C3, "cid@example.com", "cid", true) // adx_identity_username of user cid
	dir := authztest.Rows(nil, authztest.Contact(authztest.C1, "one@example.com", "", true),
		authztest.Contact(authztest.C2, "two@example.com", "", false), owned)
	f := authztest.NewFixture(t, wiring.Options{Contacts: dir})
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	bob := f.CreateUser(t, "bob", authz.StatusActive)
	f.CreateUser(t, "cid", authz.StatusActive)
	if err := f.Svc.Accounts.SetBinding(ctx, "cid", authz.Binding{Mode: authz.BindingUsername}, "cli:test"); err != nil {
		t.Fatal(err)
	}
	refused := func(t *testing.T, err error, reason string, others ...string) {
		t.Helper()
		var rerr *accounts.BindingRefusedError
		if !errors.As(err, &rerr) || !errors.Is(err, accounts.ErrBindingRefused) || rerr.Reason != reason ||
			strings.Join(rerr.Others, ",") != strings.Join(others, ",") {
			t.Fatalf("error %v, want a refusal for %s naming %v", err, reason, others)
		}
	}
	events := func(u *authz.User) int { return len(f.Events(t, u.ID)) }
	unchanged := func(t *testing.T, u *authz.User, eventsBefore int) {
		t.Helper()
		got := f.User(t, u.ID)
		if got.UpdatedAt != u.UpdatedAt || got.SecurityStamp != u.SecurityStamp {
			t.Errorf("%s changed by a refused binding: %+v", u.Username, got.Binding)
		}
		if n := events(u); n != eventsBefore {
			t.Errorf("%s: a refused binding sent %d lifecycle events", u.Username, n-eventsBefore)
		}
	}

	// A contact that does not exist.
	missing := "44444444-4444-4444-8444-444444444444"
	n := events(ana)
	err := f.Svc.Accounts.SetBinding(ctx, "ana", authztest.Lookup(missing), "cli:test")
	refused(t, err, accounts.RefusedContactNotFound)
	if !strings.Contains(err.Error(), "there is no contact "+missing) {
		t.Errorf("error text %q", err)
	}
	unchanged(t, ana, n)

	// A free contact binds, inactive or not (the sign-in check judges that),
	// and binding again to it is no conflict with oneself.
	for range 2 {
		if err := f.Svc.Accounts.SetBinding(ctx, "ana", authztest.Lookup(authztest.C1), "cli:test"); err != nil {
			t.Fatalf("bind to a free contact: %v", err)
		}
	}
	if err := f.Svc.Accounts.SetBinding(ctx, "bob", authztest.Lookup(authztest.C2), "cli:test"); err != nil {
		t.Fatalf("bind to an inactive contact: %v", err)
	}
	bob = f.User(t, bob.ID)
	n = events(bob)

	// Bound to another user by lookup: refused, naming ana.
	err = f.Svc.Accounts.SetBinding(ctx, "bob", authztest.Lookup(strings.ToUpper(authztest.C1)), "cli:test")
	refused(t, err, accounts.RefusedContactBound, "ana")
	if !strings.Contains(err.Error(), "already bound to ana") {
		t.Errorf("error text %q", err)
	}
	unchanged(t, bob, n)
	// Matched by cid's username binding: refused, naming cid.
	refused(t, f.Svc.Accounts.SetBinding(ctx, "bob", authztest.Lookup(authztest.C3), "cli:test"), accounts.RefusedContactBound, "cid")
	unchanged(t, bob, n)

	// The explicit override binds it, and says whom it is shared with.
	res, err := f.Svc.Accounts.SetBindings(ctx, []accounts.BindingChange{
		{User: "bob", Binding: authztest.Lookup(authztest.C1), AllowShared: true},
		{User: "cid@example.com", Binding: authztest.Lookup(authztest.C1)},
	}, "apikey:k1")
	if err != nil || res[0].Err != nil {
		t.Fatalf("shared binding: %v, %v", err, res)
	}
	refused(t, res[1].Err, accounts.RefusedContactBound, "ana", "bob")
	if got := f.User(t, bob.ID).Binding; got.Ref == nil || got.Ref.ID != authztest.C1 {
		t.Errorf("bob's binding after the override: %+v", got)
	}
	e := f.LastAudit(t, audit.EventBindingShared)
	if e.UserID != bob.ID || e.Actor != "apikey:k1" || e.Detail != "contact "+authztest.C1+" also bound to "+ana.ID {
		t.Errorf("shared binding audit = %+v", e)
	}
	if n := authztest.CountAudit(t, f, audit.Filter{Type: audit.EventBindingShared}); n != 1 {
		t.Errorf("%d shared-binding audit events, want 1", n)
	}
}

// TestLookupBindingWithoutDataverse: without a directory, or while
// Dataverse cannot answer, a lookup binding is refused and nothing changes;
// the other modes need no check.
func TestLookupBindingWithoutDataverse(t *testing.T) {
	ctx := t.Context()
	f := authztest.NewFixture(t, wiring.Options{})
	f.CreateUser(t, "ana", authz.StatusActive)
	err := f.Svc.Accounts.SetBinding(ctx, "ana", authztest.Lookup(authztest.C1), "cli:test")
	var rerr *accounts.BindingRefusedError
	if !errors.As(err, &rerr) || rerr.Reason != accounts.RefusedNoDirectory || !strings.Contains(err.Error(), "no Dataverse is configured") {
		t.Fatalf("lookup without Dataverse: %v", err)
	}
	if err := f.Svc.Accounts.SetBinding(ctx, "ana", authz.Binding{Mode: authz.BindingUsername}, "cli:test"); err != nil {
		t.Fatalf("username binding without Dataverse: %v", err)
	}

	g := authztest.NewFixture(t, wiring.Options{Contacts: authztest.Down()})
	bob := g.CreateUser(t, "bob", authz.StatusActive)
	err = g.Svc.Accounts.SetBinding(ctx, "bob", authztest.Lookup(authztest.C1), "cli:test")
	if !errors.Is(err, dataverse.ErrUnavailable) || errors.Is(err, accounts.ErrBindingRefused) {
		t.Fatalf("lookup while Dataverse is down: %v, want ErrUnavailable", err)
	}
	if got := g.User(t, bob.ID); got.UpdatedAt != bob.UpdatedAt {
		t.Errorf("bob changed while Dataverse was down: %+v", got.Binding)
	}
}
