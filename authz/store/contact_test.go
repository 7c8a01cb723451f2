package store

import (
	"context"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

const (
	boundA = "0f8fad5b-d9cb-469f-a165-70867728950e"
	boundB = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
)

func lookupTo(id string) authz.Binding {
	return authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: id, LogicalName: "contact"}}
}

// testUsersBoundToContact: the users whose lookup binding names a contact
// are found by the contact id, in any case, and follow every write.
func testUsersBoundToContact(t *testing.T, db *DB) {
	ctx := t.Context()
	ana, bob, cid := newUser("ana"), newUser("bob"), newUser("cid")
	ana.Binding, bob.Binding = lookupTo(boundA), lookupTo(boundA)
	cid.Binding = authz.Binding{Mode: authz.BindingUsername}
	for _, u := range []*authz.User{ana, bob, cid} {
		mustCreate(t, db, u)
	}
	names := func(id string) []string {
		t.Helper()
		us, err := db.UsersBoundToContact(ctx, id)
		if err != nil {
			t.Fatalf("UsersBoundToContact: %v", err)
		}
		var out []string
		for _, u := range us {
			out = append(out, u.Username)
		}
		return out
	}
	if got := names(boundA); len(got) != 2 || got[0] != "ana" || got[1] != "bob" {
		t.Fatalf("bound to A: %v, want [ana bob]", got)
	}
	if got := names("0F8FAD5B-D9CB-469F-A165-70867728950E"); len(got) != 2 {
		t.Errorf("upper-case id: %v", got)
	}
	bob.Binding = lookupTo(boundB)
	if err := db.UpdateUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if got := names(boundA); len(got) != 1 || got[0] != "ana" {
		t.Errorf("after rebinding bob: bound to A %v", got)
	}
	if got := names(boundB); len(got) != 1 || got[0] != "bob" {
		t.Errorf("after rebinding bob: bound to B %v", got)
	}
	if err := db.DeleteUser(ctx, ana.ID); err != nil {
		t.Fatal(err)
	}
	if got := names(boundA); len(got) != 0 {
		t.Errorf("after deleting ana: %v", got)
	}
	if got := names(""); got != nil {
		t.Errorf("empty id: %v", got)
	}
}

// testContactIDBackfill: a database written before the contact_id column
// existed gets it filled from the stored bindings when it is migrated.
func testContactIDBackfill(t *testing.T, url string) {
	ctx := context.Background()
	db, err := New(url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := migrations(db.dialect)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:5] { // the schema before contact_id
		if err := db.apply(ctx, conn, m); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	for _, row := range []struct{ id, binding string }{
		{"u1", `{"mode":"lookup","ref":{"Id":"0F8FAD5B-D9CB-469F-A165-70867728950E","LogicalName":"contact"}}`},
		{"u2", `{"mode":"username"}`},
		{"u3", `{"mode":"none"}`},
	} {
		if _, err := conn.ExecContext(ctx, db.q(`INSERT INTO users (id, username, username_norm, email, email_norm, status,
			binding, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'active', ?, 1, 1)`),
			row.id, row.id, row.id, row.id+"@example.com", row.id+"@example.com", row.binding); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if err := db.Start(ctx); err != nil {
		t.Fatalf("Start (migrating to the latest version): %v", err)
	}
	us, err := db.UsersBoundToContact(ctx, boundA)
	if err != nil || len(us) != 1 || us[0].ID != "u1" {
		t.Fatalf("after the backfill: %v, %v", us, err)
	}
	var empty int
	if err := db.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE contact_id = ''`).Scan(&empty); err != nil || empty != 2 {
		t.Fatalf("users without a lookup contact: %d, %v", empty, err)
	}
}
