package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/store/storetest"
)

// TestMigrateRace starts eight stores, each with a database handle of its
// own as separate replicas have, at the same instant on an empty database
// of each dialect, several times: every one comes up, and schema_migrations
// holds each version exactly once. (cmd/crmgate's TestMigrateRaceServe does
// the same with real serve processes.)
func TestMigrateRace(t *testing.T) {
	const starters = 8
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			rounds := 5
			if testing.Short() {
				rounds = 1
			}
			for round := range rounds {
				dbURL := d.URL(t)
				dbs := make([]*DB, starters)
				for i := range dbs {
					db, err := New(dbURL)
					if err != nil {
						t.Fatal(err)
					}
					dbs[i] = db
					defer db.Close()
				}
				errs := make([]error, starters)
				gate := make(chan struct{})
				var wg sync.WaitGroup
				for i, db := range dbs {
					wg.Go(func() {
						<-gate
						errs[i] = db.Start(context.Background())
					})
				}
				close(gate)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d: Start of store %d: %v", round, i, err)
					}
				}
				checkMigratedOnce(t, dbs[0])
				// Every store works on the result.
				for i, db := range dbs {
					if _, err := db.ListUsers(t.Context(), authz.UserFilter{}); err != nil {
						t.Fatalf("round %d: store %d after the race: %v", round, i, err)
					}
				}
			}
		})
	}
}

// checkMigratedOnce fails t unless db's schema_migrations holds versions 1
// to the latest, each exactly once.
func checkMigratedOnce(t *testing.T, db *DB) {
	t.Helper()
	ms, err := migrations(db.dialect)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.db.QueryContext(t.Context(), "SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := 1
	for rows.Next() {
		var v, n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		if v != want || n != 1 {
			t.Fatalf("schema_migrations: version %d recorded %d times, expected version %d once", v, n, want)
		}
		want++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want-1 != len(ms) {
		t.Fatalf("schema_migrations ends at version %d, want %d", want-1, len(ms))
	}
}

// TestSchemaTooNew: on a schema a newer release migrated, an older store
// runs when the newer migrations are additive (a rollout's old replicas, a
// rollback) and reports the versions; when one of them is marked breaking
// it refuses to start, with an error that says what happened and what to
// do, and changes nothing.
func TestSchemaTooNew(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			dbURL := d.URL(t)
			db, err := Open(t.Context(), dbURL)
			if err != nil {
				t.Fatal(err)
			}
			ms, _ := migrations(db.dialect)
			if got := db.Schema(); got != (SchemaVersions{Database: len(ms), Known: len(ms)}) {
				t.Fatalf("Schema() = %+v on a current schema", got)
			}
			// What a newer release's next, additive migration leaves behind.
			if _, err := db.db.ExecContext(t.Context(), "CREATE TABLE from_the_future (id BIGINT PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.db.ExecContext(t.Context(), db.q("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"), len(ms)+1, 0); err != nil {
				t.Fatal(err)
			}
			db.Close()

			old, err := Open(t.Context(), dbURL)
			if err != nil {
				t.Fatalf("Open on an additively newer schema: %v", err)
			}
			if got := old.Schema(); got != (SchemaVersions{Database: len(ms) + 1, Known: len(ms)}) {
				t.Errorf("Schema() = %+v, want the database one version ahead", got)
			}
			if _, err := old.UserByLogin(t.Context(), "nobody"); err == nil {
				t.Error("found a user in an empty store")
			}
			// The newer release's second migration is marked breaking.
			if _, err := old.db.ExecContext(t.Context(), old.q("INSERT INTO schema_migrations (version, applied_at, requires_known) VALUES (?, ?, ?)"),
				len(ms)+2, 0, len(ms)+2); err != nil {
				t.Fatal(err)
			}
			old.Close()

			old, err = Open(t.Context(), dbURL)
			if err == nil {
				old.Close()
				t.Fatal("Open on a schema with a breaking migration it does not know succeeded")
			}
			var tooNew *SchemaTooNewError
			if !errors.As(err, &tooNew) || tooNew.Have != len(ms)+2 || tooNew.Known != len(ms) || tooNew.Requires != len(ms)+2 {
				t.Fatalf("Open on a newer schema: %v, want a *SchemaTooNewError{Have: %d, Known: %d, Requires: %d}", err, len(ms)+2, len(ms), len(ms)+2)
			}
			for _, want := range []string{"needs a crmgate that knows version", "restore a backup"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}

			// Nothing was changed: the versions are as the newer release left them.
			raw, err := New(dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			var n, top int
			if err := raw.db.QueryRowContext(t.Context(), "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &top); err != nil {
				t.Fatal(err)
			}
			if n != len(ms)+2 || top != len(ms)+2 {
				t.Errorf("schema_migrations has %d rows up to %d after the refusal, want %d up to %d", n, top, len(ms)+2, len(ms)+2)
			}
		})
	}
}

// TestBreakingMarker: a migration file starting with the marker records
// its version as the versions a binary must know; others record 0.
func TestBreakingMarker(t *testing.T) {
	ms, err := migrations(SQLite)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.breaking {
			t.Errorf("%s is marked breaking: every migration so far is additive", m.name)
		}
	}
	if ms[compatVersion-1].name != "0013_schema_compat.sql" {
		t.Fatalf("compatVersion %d is %s", compatVersion, ms[compatVersion-1].name)
	}
	db, err := Open(t.Context(), storetest.SQLiteURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := len(ms) + 1
	for _, m := range []migration{
		{version: next, name: "additive", sql: "CREATE TABLE additive (id BIGINT)"},
		{version: next + 1, name: "breaking", sql: breakingMarker + "\nALTER TABLE additive RENAME TO breaking", breaking: true},
	} {
		if err := db.apply(t.Context(), conn, m); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.db.QueryContext(t.Context(), "SELECT version, requires_known FROM schema_migrations WHERE version >= ? ORDER BY version", next)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got [][2]int
	for rows.Next() {
		var v, r int
		if err := rows.Scan(&v, &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, [2]int{v, r})
	}
	if want := [][2]int{{next, 0}, {next + 1, next + 1}}; !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}
