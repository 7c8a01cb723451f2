package store

import (
	"context"
	"errors"
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

// TestSchemaTooNew: a store whose schema a newer release migrated (a
// version this binary does not know) refuses to start, with an error that
// says what happened and what to do, and changes nothing.
func TestSchemaTooNew(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			dbURL := d.URL(t)
			db, err := Open(t.Context(), dbURL)
			if err != nil {
				t.Fatal(err)
			}
			ms, _ := migrations(db.dialect)
			// What a newer release's next migration leaves behind.
			if _, err := db.db.ExecContext(t.Context(), "CREATE TABLE from_the_future (id BIGINT PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.db.ExecContext(t.Context(), db.q("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"), len(ms)+1, 0); err != nil {
				t.Fatal(err)
			}
			db.Close()

			old, err := Open(t.Context(), dbURL)
			if err == nil {
				old.Close()
				t.Fatal("Open on a schema newer than the binary succeeded")
			}
			var tooNew *SchemaTooNewError
			if !errors.As(err, &tooNew) || tooNew.Have != len(ms)+1 || tooNew.Known != len(ms) {
				t.Fatalf("Open on a newer schema: %v, want a *SchemaTooNewError{Have: %d, Known: %d}", err, len(ms)+1, len(ms))
			}
			for _, want := range []string{"newer than this crmgate knows", "restore a backup"} {
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
			if n != len(ms)+1 || top != len(ms)+1 {
				t.Errorf("schema_migrations has %d rows up to %d after the refusal, want %d up to %d", n, top, len(ms)+1, len(ms)+1)
			}
		})
	}
}
