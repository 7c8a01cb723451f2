// Package storetest gives tests fresh, empty databases for authz/store on
// both dialects, so that tests outside the store package can run against
// SQLite and PostgreSQL alike.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// DefaultPostgresURL is the server PostgresURL uses when
// CRMGATE_TEST_POSTGRES_URL is unset.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Opener returns a fresh, empty database URL for one test.
type Opener func(t testing.TB) string

// Dialects names each dialect's Opener, for table-driven tests.
var Dialects = []struct {
	Name string
	URL  Opener
}{
	{"SQLite", SQLiteURL},
	{"Postgres", PostgresURL},
}

// SQLiteURL returns the URL of a new SQLite file in t's temporary directory.
func SQLiteURL(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "crmgate.db")
}

// PostgresURL creates a schema of its own for the test on the server named
// by CRMGATE_TEST_POSTGRES_URL (else DefaultPostgresURL) and returns a URL
// whose search_path selects it; the schema is dropped when the test ends.
// When the server cannot be reached the test is skipped, or fails when the
// environment variable CI is "true".
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("CRMGATE_TEST_POSTGRES_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("postgres unreachable (CI=true): %v", err)
		}
		t.Skipf("postgres unreachable, set CRMGATE_TEST_POSTGRES_URL: %v", err)
	}
	schema := "crmgate_test_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", base, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
