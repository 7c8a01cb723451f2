//go:build linux

package main

import (
	"context"
	"database/sql"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
)

// rollingMigrationCount is the number of migrations in the source tree.
func rollingMigrationCount(t *testing.T) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "authz", "store", "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v (%d files)", err, len(files))
	}
	return len(files)
}

// rollingSQL opens dbURL (a postgres:// URL or sqlite:PATH) with database/sql.
func rollingSQL(t *testing.T, dbURL string) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", dbURL
	if path, ok := strings.CutPrefix(dbURL, "sqlite:"); ok {
		driver, dsn = "sqlite", path
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestMigrateRaceServe starts three `crmgate serve` processes at the same
// instant on an empty database of each dialect (a PostgreSQL schema, and
// one new SQLite file): each comes up, and schema_migrations holds every
// version exactly once. On PostgreSQL the advisory lock serialises the
// migrations; on SQLite the immediate transactions do.
func TestMigrateRaceServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gateway processes")
	}
	const processes = 3
	want := rollingMigrationCount(t)
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			dir := t.TempDir()
			dbURL := d.URL(t)
			env := rollingSetEnv(baseEnv(t, dir), "CRMGATE_DATABASE_URL="+dbURL, "CRMGATE_SHUTDOWN_DELAY=0s", "CRMGATE_LOG_ACCESS=false")
			var rs []*rollingReplica
			for i := range processes {
				rs = append(rs, newRollingReplica(t, "gateway-"+string(rune('1'+i)), env))
			}
			for _, r := range rs {
				r.start(t)
			}
			deadline := time.Now().Add(30 * time.Second)
			for _, r := range rs {
				r.waitReady(t, deadline)
			}
			db := rollingSQL(t, dbURL)
			rows, err := db.QueryContext(t.Context(), "SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version")
			if err != nil {
				t.Fatal(err)
			}
			next := 1
			for rows.Next() {
				var v, n int
				if err := rows.Scan(&v, &n); err != nil {
					t.Fatal(err)
				}
				if v != next || n != 1 {
					t.Errorf("schema_migrations: version %d recorded %d times, expected version %d once", v, n, next)
				}
				next++
			}
			rows.Close()
			if next-1 != want {
				t.Errorf("schema_migrations ends at version %d, want %d", next-1, want)
			}
			for _, r := range rs {
				r.signal(t, syscall.SIGTERM)
			}
			for _, r := range rs {
				if err := r.wait(t, 20*time.Second); err != nil {
					t.Errorf("%s exited with %v; logs:\n%s", r.name, err, r.Logs())
				}
				if strings.Contains(r.Logs(), `"level":"ERROR"`) {
					t.Errorf("%s logged an error; logs:\n%s", r.name, r.Logs())
				}
			}
		})
	}
}

// TestServeRefusesNewerSchema: an older crmgate started on a database a
// newer release migrated serves when the newer migrations are additive,
// and says so in its log; when one is marked breaking it refuses to serve,
// and says why, and so do the commands that open the database.
func TestServeRefusesNewerSchema(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) {
			dir := t.TempDir()
			dbURL := d.URL(t)
			db, err := store.Open(t.Context(), dbURL)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			n := rollingMigrationCount(t)
			raw := rollingSQL(t, dbURL)
			q := "INSERT INTO schema_migrations (version, applied_at, requires_known) VALUES ($1, 0, $2)"
			if d.Name == "SQLite" {
				q = "INSERT INTO schema_migrations (version, applied_at, requires_known) VALUES (?, 0, ?)"
			}
			if _, err := raw.ExecContext(t.Context(), q, n+1, 0); err != nil { // additive
				t.Fatal(err)
			}
			pub, ops := freeAddr(t), freeAddr(t)
			env := rollingSetEnv(baseEnv(t, dir), "CRMGATE_DATABASE_URL="+dbURL, "CRMGATE_LISTEN="+pub, "CRMGATE_OPS_LISTEN="+ops,
				"CRMGATE_SHUTDOWN_DELAY=0s")

			// Additive: serve starts, warns once, and stops cleanly.
			logs := &syncBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- run(ctx, []string{"serve"}, env, nil, io.Discard, logs) }()
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(logs.String(), "newer than this crmgate") {
				if time.Now().After(deadline) {
					cancel()
					t.Fatalf("no warning about the newer schema; logs:\n%s", logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("serve on an additively newer schema: %v; logs:\n%s", err, logs)
			}
			if err := run(context.Background(), []string{"users", "list"}, env, nil, io.Discard, io.Discard); err != nil {
				t.Fatalf("users list on an additively newer schema: %v", err)
			}

			// Breaking: refused.
			if _, err := raw.ExecContext(t.Context(), q, n+2, n+2); err != nil {
				t.Fatal(err)
			}
			ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel2()
			err = run(ctx2, []string{"serve"}, env, nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "needs a crmgate that knows version") {
				t.Fatalf("serve on a newer schema: %v", err)
			}
			err = run(ctx2, []string{"users", "list"}, env, nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "needs a crmgate that knows version") {
				t.Fatalf("users list on a newer schema: %v", err)
			}
		})
	}
}
