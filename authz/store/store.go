// Package store is crmgate's durable store: accounts and the audit trail in
// embedded SQLite (the default, pure Go) or PostgreSQL (several replicas).
// Both run the same migrations and satisfy the Store interface of every
// authz feature (accounts, signin, profile, binding, apikeys, audit, outbox, tokens, registration,
// onboarding, invitations) and the throttles' buckets (throttle.Store).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/profile"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store/dburl"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/tokens"
)

var (
	_ accounts.Store     = (*DB)(nil)
	_ signin.Store       = (*DB)(nil)
	_ profile.Store      = (*DB)(nil)
	_ binding.Users      = (*DB)(nil)
	_ apikeys.Store      = (*DB)(nil)
	_ audit.Store        = (*DB)(nil)
	_ outbox.Store       = (*DB)(nil)
	_ tokens.Store       = (*DB)(nil)
	_ registration.Store = (*DB)(nil)
	_ onboarding.Store   = (*DB)(nil)
	_ invitations.Store  = (*DB)(nil)
	_ throttle.Store     = (*DB)(nil)
)

// Dialect names the SQL database behind a DB.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// sqliteBusyTimeout is how long an SQLite writer waits for another one.
const sqliteBusyTimeout = dburl.SQLiteBusyTimeout

// DB is an open store. It is safe for concurrent use; Close it when done.
type DB struct {
	db      *sql.DB
	dialect Dialect
	create  string // the SQLite file to create when missing; "" for none
	now     func() time.Time
}

// Option configures Open.
type Option func(*DB)

// WithNow sets the clock used for timestamps the caller leaves zero; the
// default is time.Now.
func WithNow(now func() time.Time) Option { return func(d *DB) { d.now = now } }

// Open connects to databaseURL and applies pending migrations: New, then
// Start. Accepted forms:
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
	d, err := New(databaseURL, opts...)
	if err != nil {
		return nil, err
	}
	if err := d.Start(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// New checks databaseURL (the forms Open accepts) and returns a store that
// has not connected yet: it does no I/O, so that check-config can build
// everything serve builds and start nothing. Call Start before using it.
func New(databaseURL string, opts ...Option) (*DB, error) {
	u, err := dburl.Parse(databaseURL)
	if err != nil {
		return nil, err
	}
	sdb, err := sql.Open(u.Driver, u.DSN)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", u.Dialect, err)
	}
	d := &DB{db: sdb, dialect: Dialect(u.Dialect), now: time.Now}
	if u.Create {
		d.create = u.Path
	}
	for _, o := range opts {
		o(d)
	}
	return d, nil
}

// Start connects to the database and applies pending migrations. A new
// SQLite file is created readable and writable by its owner only (0600), as
// are its -wal and -shm files, which SQLite creates with the database
// file's permissions; an existing file keeps its own.
//
// The SQLite file's directory must be writable, even for an existing file:
// SQLite creates the -wal and -shm files and the journal next to it. Start
// checks that first and answers a *DirNotWritableError naming the
// directory, rather than SQLite's "unable to open database file".
func (d *DB) Start(ctx context.Context) error {
	if d.create != "" {
		if err := checkWritableDir(filepath.Dir(d.create)); err != nil {
			return err
		}
		f, err := os.OpenFile(d.create, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			if err := f.Close(); err != nil {
				return fmt.Errorf("store: create %s: %w", d.create, err)
			}
		case !errors.Is(err, fs.ErrExist):
			return fmt.Errorf("store: create %s: %w", d.create, err)
		}
	}
	if err := d.connect(ctx); err != nil {
		return fmt.Errorf("store: connect to %s: %w", d.dialect, err)
	}
	return d.migrate(ctx)
}

// DirNotWritableError is Start's answer when the SQLite database's
// directory does not let crmgate create files: a read-only filesystem (a
// container's read-only root without a volume) or a directory owned by
// another user.
type DirNotWritableError struct {
	Dir string // the directory, as the database URL names it
	Err error  // the operating system's answer to creating a file there
}

func (e *DirNotWritableError) Error() string {
	return fmt.Sprintf("store: the SQLite directory %s is not writable (%v): crmgate needs a writable directory "+
		"(in a container, a writable volume mounted there, as /data in the crmgate image) for the database "+
		"and its -wal and -shm files; or set CRMGATE_DATABASE_URL to a path in one, or to a postgres:// URL", e.Dir, e.Err)
}

func (e *DirNotWritableError) Unwrap() error { return e.Err }

// checkWritableDir creates and removes a file in dir. A missing directory
// is left to the caller's create step, whose error names the file.
func checkWritableDir(dir string) error {
	f, err := os.CreateTemp(dir, ".crmgate-write-check-*")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return &DirNotWritableError{Dir: dir, Err: err}
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return &DirNotWritableError{Dir: dir, Err: err}
	}
	return nil
}

// connect opens the first connection. On SQLite it retries while the
// answer is SQLITE_BUSY, for up to the busy timeout: a connection runs
// PRAGMA journal_mode=WAL, and on a file that is not in WAL mode yet (a new
// one) that change needs an exclusive lock, for which SQLite may answer
// SQLITE_BUSY at once instead of calling the busy handler ("If SQLite
// determines that invoking the busy handler could result in a deadlock, it
// will go ahead and return SQLITE_BUSY", https://sqlite.org/c3ref/busy_handler.html).
// Two processes, or two stores in one, opening a new file together would
// otherwise fail now and then. Once the file is in WAL mode the pragma
// changes nothing and takes no lock.
func (d *DB) connect(ctx context.Context) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := d.db.PingContext(ctx)
		if err == nil || d.dialect != SQLite || !isBusy(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// parseURL maps a database URL to a database/sql driver and DSN with the
// one rule, dburl.Parse.
func parseURL(raw string) (driver, dsn string, dialect Dialect, err error) {
	u, err := dburl.Parse(raw)
	return u.Driver, u.DSN, Dialect(u.Dialect), err
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

// isBusy reports whether err is SQLite's SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
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
