package store

import (
	"slices"
	"testing"

	"github.com/crmgate/crmgate/authz"
)

func TestSQLiteUsersBoundToContacts(t *testing.T) {
	testUsersBoundToContacts(t, dbOpener(sqliteURL)(t))
}
func TestPostgresUsersBoundToContacts(t *testing.T) {
	testUsersBoundToContacts(t, dbOpener(postgresURL)(t))
}

// testUsersBoundToContacts: one query finds the lookup-bound users of
// several contacts (any case) and the username-bound users of the given
// usernames, never an unbound or custom-bound user who only shares a
// username.
func testUsersBoundToContacts(t *testing.T, db *DB) {
	ctx := t.Context()
	ana, bob, cid, dan, eve := newUser("ana"), newUser("bob"), newUser("cid"), newUser("dan"), newUser("eve")
	ana.Binding, bob.Binding = lookupTo(boundA), lookupTo(boundB)
	cid.Binding = authz.Binding{Mode: authz.BindingUsername}
	dan.Binding = authz.Binding{Mode: authz.BindingCustom}
	eve.Binding = lookupTo(boundA)
	for _, u := range []*authz.User{ana, bob, cid, dan, eve} {
		mustCreate(t, db, u)
	}
	names := func(ids, usernames []string) []string {
		t.Helper()
		us, err := db.UsersBoundToContacts(ctx, ids, usernames)
		if err != nil {
			t.Fatalf("UsersBoundToContacts(%v, %v): %v", ids, usernames, err)
		}
		var out []string
		for _, u := range us {
			out = append(out, u.Username)
		}
		return out
	}
	if got := names([]string{"0F8FAD5B-D9CB-469F-A165-70867728950E", boundB, boundA}, nil); !slices.Equal(got, []string{"ana", "bob", "eve"}) {
		t.Errorf("by ids: %v, want [ana bob eve]", got)
	}
	if got := names([]string{boundB}, []string{"CID", "dan", "ana", ""}); !slices.Equal(got, []string{"ana", "bob", "cid"}) {
		// ana is found by her username but is lookup-bound: she is bound to
		// A, and the caller matches her by contact id, not by name.
		t.Errorf("ids and usernames: %v, want [ana bob cid]", got)
	}
	if got := names([]string{"", ""}, []string{""}); got != nil {
		t.Errorf("empty: %v", got)
	}
	if got := names([]string{"a3bb189e-8bf9-3888-9912-ace4e6543002"}, []string{"nobody"}); got != nil {
		t.Errorf("unknown: %v", got)
	}
	if _, err := db.UsersBoundToContacts(ctx, make([]string, MaxBoundLookup+1), nil); err == nil {
		t.Error("too many ids accepted")
	}
}
