// Package store is crmgate's durable store: accounts and the audit trail in
// embedded SQLite (the default, pure Go) or PostgreSQL (several replicas).
// Both run the same migrations and satisfy authz.Store.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/crmgate/crmgate/authz"
)

var _ authz.Store = (*DB)(nil)

// Dialect names the SQL database behind a DB.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// sqliteBusyTimeout is how long an SQLite writer waits for another one.
const sqliteBusyTimeout = 10 * time.Second

// DB is an open store. It is safe for concurrent use; Close it when done.
type DB struct {
	db      *sql.DB
	dialect Dialect
	now     func() time.Time
}

// Option configures Open.
type Option func(*DB)

// WithNow sets the clock used for timestamps the caller leaves zero; the
// default is time.Now.
func WithNow(now func() time.Time) Option { return func(d *DB) { d.now = now } }

// Open connects to databaseURL and applies pending migrations. Accepted forms:
//
//	postgres://user:pass@host:5432/db?sslmode=...   (also postgresql://)
//	sqlite:/var/lib/crmgate/crmgate.db              (also sqlite:relative/path)
//	file:/var/lib/crmgate/crmgate.db?mode=rwc       (an SQLite URI)
//	/var/lib/crmgate/crmgate.db                     (a bare path)
//
// SQLite runs in WAL mode with a busy timeout, foreign keys on, and
// immediate transactions. In-memory SQLite databases are not supported:
// each pooled connection would see its own empty database.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*DB, error) {
	driver, dsn, dialect, err := parseURL(databaseURL)
	if err != nil {
		return nil, err
	}
	sdb, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dialect, err)
	}
	d := &DB{db: sdb, dialect: dialect, now: time.Now}
	for _, o := range opts {
		o(d)
	}
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: connect to %s: %w", dialect, err)
	}
	if err := d.migrate(ctx); err != nil {
		sdb.Close()
		return nil, err
	}
	return d, nil
}

// parseURL maps a database URL to a database/sql driver and DSN.
func parseURL(raw string) (driver, dsn string, dialect Dialect, err error) {
	raw = strings.TrimSpace(raw)
	var path, query string
	switch {
	case raw == "":
		return "", "", "", errors.New("store: empty database URL")
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		if _, err := url.Parse(raw); err != nil {
			return "", "", "", errors.New("store: malformed PostgreSQL URL") // the error would echo the password
		}
		return "pgx", raw, Postgres, nil
	case strings.HasPrefix(raw, "file:"):
		// An SQLite URI: SQLite itself reads its path and parameters.
		path, query, _ = strings.Cut(raw, "?")
		if path == "file:" || strings.HasPrefix(path, "file::memory:") || strings.Contains(query, "mode=memory") {
			return "", "", "", fmt.Errorf("store: unsupported SQLite URL %q: give a file path", raw)
		}
	case strings.HasPrefix(raw, "sqlite:"):
		path = strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
	case strings.Contains(raw, "://"):
		scheme, _, _ := strings.Cut(raw, "://")
		return "", "", "", fmt.Errorf("store: unsupported database URL scheme %q (use postgres://, sqlite: or a file path)", scheme)
	default:
		path = raw
	}
	if !strings.HasPrefix(raw, "file:") {
		if path == "" || path == ":memory:" {
			return "", "", "", fmt.Errorf("store: unsupported SQLite URL %q: give a file path", raw)
		}
		if strings.ContainsAny(path, "?#") {
			return "", "", "", fmt.Errorf("store: SQLite path %q contains ? or #; use a file: URI", path)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", "", fmt.Errorf("store: bad SQLite URL parameters: %w", err)
	}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(int(sqliteBusyTimeout/time.Millisecond))+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if q.Get("_txlock") == "" {
		// Writers take the lock at BEGIN: a deferred transaction that later
		// writes fails with SQLITE_BUSY instead of waiting.
		q.Set("_txlock", "immediate")
	}
	return "sqlite", path + "?" + q.Encode(), SQLite, nil
}

// Dialect reports which database d uses.
func (d *DB) Dialect() Dialect { return d.dialect }

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// q rewrites a query written with ? placeholders for d's dialect.
func (d *DB) q(query string) string { return rebind(d.dialect, query) }

// rebind turns each ? into $1, $2, ... for PostgreSQL and returns query
// unchanged for SQLite. Queries in this package never hold a literal ?.
func rebind(dialect Dialect, query string) string {
	if dialect != Postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// mapErr translates database errors into authz sentinels: no rows into
// authz.ErrNotFound, unique violations into authz.ErrConflict.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return authz.ErrNotFound
	}
	if isUniqueViolation(err) {
		return fmt.Errorf("%w (%v)", authz.ErrConflict, err)
	}
	return err
}

func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}

// millis converts a time to stored unix milliseconds; the zero time is 0.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMillis is the inverse of millis; times come back in UTC.
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
