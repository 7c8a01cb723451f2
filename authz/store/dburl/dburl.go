// Package dburl parses crmgate's database URLs. It is a leaf, so that the
// configuration checks CRMGATE_DATABASE_URL with the rule the store opens it
// with.
package dburl

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SQLiteBusyTimeout is how long an SQLite writer waits for another one.
const SQLiteBusyTimeout = 10 * time.Second

// URL is a parsed database URL: what database/sql opens.
type URL struct {
	// Driver is the database/sql driver name: "sqlite" or "pgx".
	Driver string
	// DSN is the data source name given to the driver. For PostgreSQL it
	// holds the password: never log it.
	DSN string
	// Dialect is "sqlite" or "postgres".
	Dialect string
	// Path is the SQLite database file's path as the operating system
	// names it ("" for PostgreSQL).
	Path string
	// Create reports whether SQLite creates the file when it is missing:
	// true unless a file: URI says mode=ro or mode=rw.
	Create bool
}

// Parse checks a database URL (CRMGATE_DATABASE_URL) and maps it to a
// database/sql driver and DSN, without connecting. Accepted forms:
//
//	postgres://user:pass@host:5432/db?sslmode=...   (also postgresql://)
//	sqlite:/var/lib/crmgate/crmgate.db              (also sqlite:relative/path)
//	file:/var/lib/crmgate/crmgate.db?mode=rwc       (an SQLite URI)
//	/var/lib/crmgate/crmgate.db                     (a bare path)
//
// In-memory SQLite databases are refused: each pooled connection would see
// its own empty database. An error never echoes a password.
func Parse(raw string) (URL, error) {
	driver, dsn, dialect, err := parse(raw)
	if err != nil {
		return URL{}, err
	}
	u := URL{Driver: driver, DSN: dsn, Dialect: dialect}
	if dialect == "sqlite" {
		if u.Path, err = sqlitePath(strings.TrimSpace(raw)); err != nil {
			return URL{}, err
		}
		_, query, _ := strings.Cut(dsn, "?")
		q, _ := url.ParseQuery(query) // parse checked it
		u.Create = q.Get("mode") != "ro" && q.Get("mode") != "rw"
	}
	return u, nil
}

// sqlitePath is the file path of an SQLite URL that parse accepted: a
// file: URI's path (https://sqlite.org/uri.html: an authority, if any, is
// empty or "localhost"; %XX escapes are decoded), or the path as given.
func sqlitePath(raw string) (string, error) {
	switch {
	case strings.HasPrefix(raw, "file:"):
		p, _, _ := strings.Cut(strings.TrimPrefix(raw, "file:"), "?")
		p, _, _ = strings.Cut(p, "#")
		if rest, ok := strings.CutPrefix(p, "//"); ok {
			auth, path, _ := strings.Cut(rest, "/")
			if auth != "" && auth != "localhost" {
				return "", fmt.Errorf("database URL: SQLite URI authority %q: only an empty one or localhost", auth)
			}
			p = "/" + path
		}
		dec, err := url.PathUnescape(p)
		if err != nil {
			return "", fmt.Errorf("database URL: bad escape in SQLite URI path %q", p)
		}
		return dec, nil
	case strings.HasPrefix(raw, "sqlite:"):
		return strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//"), nil
	default:
		return raw, nil
	}
}

func parse(raw string) (driver, dsn, dialect string, err error) {
	raw = strings.TrimSpace(raw)
	var path, query string
	switch {
	case raw == "":
		return "", "", "", errors.New("database URL: empty database URL")
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		if _, err := url.Parse(raw); err != nil {
			return "", "", "", errors.New("database URL: malformed PostgreSQL URL") // the error would echo the password
		}
		return "pgx", raw, "postgres", nil
	case strings.HasPrefix(raw, "file:"):
		// An SQLite URI: SQLite itself reads its path and parameters.
		path, query, _ = strings.Cut(raw, "?")
		if path == "file:" || strings.HasPrefix(path, "file::memory:") || strings.Contains(query, "mode=memory") {
			return "", "", "", fmt.Errorf("database URL: unsupported SQLite URL %q: give a file path", raw)
		}
	case strings.HasPrefix(raw, "sqlite:"):
		path = strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
	case strings.Contains(raw, "://"):
		scheme, _, _ := strings.Cut(raw, "://")
		return "", "", "", fmt.Errorf("database URL: unsupported database URL scheme %q (use postgres://, sqlite: or a file path)", scheme)
	default:
		path = raw
	}
	if !strings.HasPrefix(raw, "file:") {
		if path == "" || path == ":memory:" {
			return "", "", "", fmt.Errorf("database URL: unsupported SQLite URL %q: give a file path", raw)
		}
		if strings.ContainsAny(path, "?#") {
			return "", "", "", fmt.Errorf("database URL: SQLite path %q contains ? or #; use a file: URI", path)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", "", fmt.Errorf("database URL: bad SQLite URL parameters: %w", err)
	}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(int(SQLiteBusyTimeout/time.Millisecond))+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if q.Get("_txlock") == "" {
		// Writers take the lock at BEGIN: a deferred transaction that later
		// writes fails with SQLITE_BUSY instead of waiting.
		q.Set("_txlock", "immediate")
	}
	return "sqlite", path + "?" + q.Encode(), "sqlite", nil
}
