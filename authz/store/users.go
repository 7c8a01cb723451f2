package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/signin"
)

// userColumns are the columns scanUser reads, in its order.
const userColumns = `id, username, email, first_name, last_name, display_name, password_hash, roles, status,
	email_confirmed, must_change_password, failed_count, lockout_until, security_stamp, binding,
	created_at, updated_at, last_sign_in_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanUser(r rowScanner) (*authz.User, error) {
	var (
		u                          authz.User
		roles, binding             string
		lockout, created, updated  int64
		lastSignIn                 int64
		status                     string
		emailConfirmed, mustChange bool
	)
	err := r.Scan(&u.ID, &u.Username, &u.Email, &u.FirstName, &u.LastName, &u.DisplayName, &u.PasswordHash,
		&roles, &status, &emailConfirmed, &mustChange, &u.FailedCount, &lockout, &u.SecurityStamp, &binding,
		&created, &updated, &lastSignIn)
	if err != nil {
		return nil, mapErr(err)
	}
	u.Status = authz.Status(status)
	u.EmailConfirmed, u.MustChangePassword = emailConfirmed, mustChange
	u.LockoutUntil, u.CreatedAt, u.UpdatedAt, u.LastSignInAt = fromMillis(lockout), fromMillis(created), fromMillis(updated), fromMillis(lastSignIn)
	u.Roles = []string{}
	if err := json.Unmarshal([]byte(roles), &u.Roles); err != nil {
		return nil, fmt.Errorf("store: user %s: roles: %w", u.ID, err)
	}
	if u.Roles == nil {
		u.Roles = []string{}
	}
	if err := json.Unmarshal([]byte(binding), &u.Binding); err != nil {
		return nil, fmt.Errorf("store: user %s: binding: %w", u.ID, err)
	}
	return &u, nil
}

// boundContact is the contact_id column of u: the lower-case id its lookup
// binding names, or "".
func boundContact(u *authz.User) string {
	if u.Binding.Mode != authz.BindingLookup || u.Binding.Ref == nil {
		return ""
	}
	return strings.ToLower(u.Binding.Ref.ID)
}

// encodeUser returns the JSON columns of u.
func encodeUser(u *authz.User) (roles, binding string, err error) {
	r := u.Roles
	if r == nil {
		r = []string{}
	}
	rb, err := json.Marshal(r)
	if err != nil {
		return "", "", fmt.Errorf("store: roles: %w", err)
	}
	b := u.Binding
	if b.Mode == "" {
		b.Mode = authz.BindingNone
	}
	bb, err := json.Marshal(b)
	if err != nil {
		return "", "", fmt.Errorf("store: binding: %w", err)
	}
	return string(rb), string(bb), nil
}

// newID returns a random 128-bit id in hex.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read documents it)
	return hex.EncodeToString(b)
}

// querier is what the user statements need: a *sql.DB or a *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CreateUser implements the feature stores.
func (d *DB) CreateUser(ctx context.Context, u *authz.User) error {
	return d.createUser(ctx, d.db, u)
}

// CreateUserAndEnqueue implements the feature stores.
func (d *DB) CreateUserAndEnqueue(ctx context.Context, u *authz.User, events ...outbox.Event) error {
	return d.inTx(ctx, "create user", func(tx *sql.Tx) error {
		if err := d.createUser(ctx, tx, u); err != nil {
			return err
		}
		return d.enqueue(ctx, tx, u.ID, events)
	})
}

// UpdateUserAndEnqueue implements the feature stores.
func (d *DB) UpdateUserAndEnqueue(ctx context.Context, u *authz.User, events ...outbox.Event) error {
	prev := u.UpdatedAt
	err := d.inTx(ctx, "update user", func(tx *sql.Tx) error {
		if err := d.updateUser(ctx, tx, u); err != nil {
			return err
		}
		return d.enqueue(ctx, tx, u.ID, events)
	})
	if err != nil {
		u.UpdatedAt = prev // the update was rolled back
	}
	return err
}

// DeleteUser implements the feature stores.
func (d *DB) DeleteUser(ctx context.Context, id string, events ...outbox.Event) error {
	return d.inTx(ctx, "delete user", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`DELETE FROM users WHERE id = ?`), id)
		if err != nil {
			return fmt.Errorf("store: delete user: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = authz.ErrNotFound
			}
			return fmt.Errorf("store: delete user: %w", err)
		}
		return d.enqueue(ctx, tx, id, events)
	})
}

// inTx runs fn in a transaction and commits it when fn returns nil.
func (d *DB) inTx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: commit: %w", what, err)
	}
	return nil
}

func (d *DB) createUser(ctx context.Context, db querier, u *authz.User) error {
	if u.ID == "" {
		u.ID = newID()
	}
	now := d.now()
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.CreatedAt
	}
	u.CreatedAt, u.UpdatedAt = fromMillis(millis(u.CreatedAt)), fromMillis(millis(u.UpdatedAt))
	u.LockoutUntil, u.LastSignInAt = fromMillis(millis(u.LockoutUntil)), fromMillis(millis(u.LastSignInAt))
	if u.Roles == nil {
		u.Roles = []string{}
	}
	roles, binding, err := encodeUser(u)
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, d.q(`INSERT INTO users (id, username, username_norm, email, email_norm,
		first_name, last_name, display_name, password_hash, roles, status, email_confirmed, must_change_password,
		failed_count, lockout_until, security_stamp, binding, contact_id, created_at, updated_at, last_sign_in_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		u.ID, u.Username, authz.NormalizeLogin(u.Username), u.Email, authz.NormalizeLogin(u.Email),
		u.FirstName, u.LastName, u.DisplayName, u.PasswordHash, roles, string(u.Status), u.EmailConfirmed,
		u.MustChangePassword, u.FailedCount, millis(u.LockoutUntil), u.SecurityStamp, binding, boundContact(u),
		millis(u.CreatedAt), millis(u.UpdatedAt), millis(u.LastSignInAt))
	if err != nil {
		return fmt.Errorf("store: create user: %w", mapErr(err))
	}
	return nil
}

// UserByID implements the feature stores.
func (d *DB) UserByID(ctx context.Context, id string) (*authz.User, error) {
	u, err := scanUser(d.db.QueryRowContext(ctx, d.q(`SELECT `+userColumns+` FROM users WHERE id = ?`), id))
	if err != nil {
		return nil, fmt.Errorf("store: user by id: %w", err)
	}
	return u, nil
}

// UserByLogin implements the feature stores.
func (d *DB) UserByLogin(ctx context.Context, login string) (*authz.User, error) {
	n := authz.NormalizeLogin(login)
	if n == "" {
		return nil, fmt.Errorf("store: user by login: %w", authz.ErrNotFound)
	}
	u, err := scanUser(d.db.QueryRowContext(ctx, d.q(`SELECT `+userColumns+` FROM users
		WHERE username_norm = ? OR email_norm = ?
		ORDER BY CASE WHEN username_norm = ? THEN 0 ELSE 1 END LIMIT 1`), n, n, n))
	if err != nil {
		return nil, fmt.Errorf("store: user by login: %w", err)
	}
	return u, nil
}

// maxBoundUsers caps UsersBoundToContact: enough to name the others in a
// refusal, bounded however many accounts share one contact.
const maxBoundUsers = 20

// UsersBoundToContact implements the feature stores: the users whose lookup
// binding names contact id (compared in lower case), ordered by normalised
// username, at most maxBoundUsers of them.
func (d *DB) UsersBoundToContact(ctx context.Context, id string) ([]*authz.User, error) {
	id = strings.ToLower(id)
	if id == "" {
		return nil, nil
	}
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+userColumns+` FROM users WHERE contact_id = ?
		ORDER BY username_norm LIMIT ?`), id, maxBoundUsers)
	if err != nil {
		return nil, fmt.Errorf("store: users bound to contact: %w", err)
	}
	defer rows.Close()
	var out []*authz.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: users bound to contact: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: users bound to contact: %w", err)
	}
	return out, nil
}

// likeEscaper escapes LIKE wildcards for the ESCAPE '\' clause.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ListUsers implements the feature stores.
func (d *DB) ListUsers(ctx context.Context, f authz.UserFilter) ([]*authz.User, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	where, args := d.userWhere(f)
	if f.After != "" {
		where = append(where, "username_norm > ?")
		args = append(args, f.After)
	}
	query := `SELECT ` + userColumns + ` FROM users`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	dir := " ASC"
	if f.Desc {
		dir = " DESC"
	}
	query += " ORDER BY " + userSortColumns[cmp.Or(f.Sort, authz.SortUsername)] + dir
	if f.Sort != "" && f.Sort != authz.SortUsername {
		query += ", username_norm" + dir
	}
	query += " LIMIT ? OFFSET ?"
	args = append(args, authz.EffectiveLimit(f.Limit), f.Offset)
	rows, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	defer rows.Close()
	var out []*authz.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	return out, nil
}

// userSortColumns are the columns of the orders of authz.UserFilter.
var userSortColumns = map[authz.UserSort]string{
	authz.SortUsername:   "username_norm",
	authz.SortEmail:      "email_norm",
	authz.SortStatus:     "status",
	authz.SortLastSignIn: "last_sign_in_at",
	authz.SortCreated:    "created_at",
}

// userWhere returns the conditions of f's query, status and mode (not its
// cursor), for ListUsers and CountUsers.
func (d *DB) userWhere(f authz.UserFilter) ([]string, []any) {
	var where []string
	var args []any
	if q := authz.NormalizeLogin(f.Query); q != "" {
		pat := "%" + likeEscaper.Replace(q) + "%"
		where = append(where, `(username_norm LIKE ? ESCAPE '\' OR email_norm LIKE ? ESCAPE '\')`)
		args = append(args, pat, pat)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(f.Status))
	}
	if f.Mode != "" {
		expr := "json_extract(binding, '$.mode')"
		if d.dialect == Postgres {
			expr = "(binding::jsonb ->> 'mode')"
		}
		if f.Mode == authz.BindingNone {
			where = append(where, "COALESCE("+expr+", 'none') IN ('none', '')")
		} else {
			where = append(where, expr+" = ?")
			args = append(args, string(f.Mode))
		}
	}
	return where, args
}

// CountUsers returns how many users f's query, status and mode select
// (its cursor, order, offset and limit aside).
func (d *DB) CountUsers(ctx context.Context, f authz.UserFilter) (int, error) {
	if err := f.Check(); err != nil {
		return 0, err
	}
	where, args := d.userWhere(f)
	query := `SELECT COUNT(*) FROM users`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	var n int
	if err := d.db.QueryRowContext(ctx, d.q(query), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return n, nil
}

// UpdateUser implements the feature stores.
func (d *DB) UpdateUser(ctx context.Context, u *authz.User) error {
	return d.updateUser(ctx, d.db, u)
}

func (d *DB) updateUser(ctx context.Context, db querier, u *authz.User) error {
	roles, binding, err := encodeUser(u)
	if err != nil {
		return err
	}
	prev := millis(u.UpdatedAt)
	next := max(d.now().UnixMilli(), prev+1)
	res, err := db.ExecContext(ctx, d.q(`UPDATE users SET username = ?, username_norm = ?, email = ?, email_norm = ?,
		first_name = ?, last_name = ?, display_name = ?, password_hash = ?, roles = ?, status = ?,
		email_confirmed = ?, must_change_password = ?, failed_count = ?, lockout_until = ?, security_stamp = ?,
		binding = ?, contact_id = ?, updated_at = ?, last_sign_in_at = ?
		WHERE id = ? AND updated_at = ?`),
		u.Username, authz.NormalizeLogin(u.Username), u.Email, authz.NormalizeLogin(u.Email),
		u.FirstName, u.LastName, u.DisplayName, u.PasswordHash, roles, string(u.Status),
		u.EmailConfirmed, u.MustChangePassword, u.FailedCount, millis(u.LockoutUntil), u.SecurityStamp,
		binding, boundContact(u), next, millis(u.LastSignInAt), u.ID, prev)
	if err != nil {
		return fmt.Errorf("store: update user: %w", mapErr(err))
	}
	if err := d.affectedOne(ctx, db, res, u.ID); err != nil {
		if errors.Is(err, errNoMatch) {
			err = authz.ErrStale
		}
		return fmt.Errorf("store: update user: %w", err)
	}
	u.UpdatedAt = fromMillis(next)
	return nil
}

// affectedOne returns nil when res changed a row; otherwise ErrNotFound if
// no user has id, or errNoMatch if the user exists but the condition failed.
func (d *DB) affectedOne(ctx context.Context, db querier, res sql.Result, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var one int
	if err := db.QueryRowContext(ctx, d.q("SELECT 1 FROM users WHERE id = ?"), id).Scan(&one); err != nil {
		return mapErr(err)
	}
	return errNoMatch
}

var errNoMatch = errors.New("store: row did not match")

// BeginSignInAttempt implements the feature stores. One transaction locks
// the user's row (FOR UPDATE on PostgreSQL; SQLite's immediate
// transactions hold the single write lock), reads the account's counter
// and the client's, applies limits.Begin and writes both back, so that
// concurrent attempts on one account, from any replica, queue and each
// sees the previous one's counts. Counters of other addresses on the
// account that are past their window and lockout are deleted on the way.
func (d *DB) BeginSignInAttempt(ctx context.Context, id, client string, now time.Time, limits signin.Limits) (signin.Attempt, error) {
	if err := limits.Validate(); err != nil {
		return signin.Attempt{}, fmt.Errorf("store: begin sign-in attempt: %w", err)
	}
	var a signin.Attempt
	err := d.inTx(ctx, "begin sign-in attempt", func(tx *sql.Tx) error {
		account, err := d.lockAccountCounter(ctx, tx, id)
		if err != nil {
			return err
		}
		var pair signin.Counter
		var count int
		var last, lockout int64
		switch err := tx.QueryRowContext(ctx, d.q(`SELECT failed_count, last_failed_at, lockout_until
			FROM signin_failures WHERE user_id = ? AND client = ?`), id, client).Scan(&count, &last, &lockout); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			pair = signin.Counter{Failures: count, LastFailure: fromMillis(last), LockoutUntil: fromMillis(lockout)}
		}
		a = limits.Begin(account, pair, now)
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO signin_failures (user_id, client, failed_count, last_failed_at, lockout_until)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, client) DO UPDATE SET failed_count = excluded.failed_count,
				last_failed_at = excluded.last_failed_at, lockout_until = excluded.lockout_until`),
			id, client, a.Client.Failures, millis(a.Client.LastFailure), millis(a.Client.LockoutUntil)); err != nil {
			return err
		}
		if a.Account != account {
			if _, err := tx.ExecContext(ctx, d.q(`UPDATE users SET failed_count = ?, last_failed_at = ?, lockout_until = ? WHERE id = ?`),
				a.Account.Failures, millis(a.Account.LastFailure), millis(a.Account.LockoutUntil), id); err != nil {
				return err
			}
		}
		nowMs := now.UnixMilli()
		_, err = tx.ExecContext(ctx, d.q(`DELETE FROM signin_failures WHERE user_id = ? AND client <> ?
			AND last_failed_at <= ? AND lockout_until <= ?`), id, client, nowMs-limits.LockFor.Milliseconds(), nowMs)
		return err
	})
	if err != nil {
		return signin.Attempt{}, fmt.Errorf("store: begin sign-in attempt: %w", mapErr(err))
	}
	return a, nil
}

// lockAccountCounter locks user id's row until tx ends and returns its
// failure counter; authz.ErrNotFound when there is no such user.
func (d *DB) lockAccountCounter(ctx context.Context, tx *sql.Tx, id string) (signin.Counter, error) {
	lock := ""
	if d.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	var count int
	var last, lockout int64
	if err := tx.QueryRowContext(ctx, d.q(`SELECT failed_count, last_failed_at, lockout_until FROM users WHERE id = ?`+lock), id).
		Scan(&count, &last, &lockout); err != nil {
		return signin.Counter{}, mapErr(err)
	}
	return signin.Counter{Failures: count, LastFailure: fromMillis(last), LockoutUntil: fromMillis(lockout)}, nil
}

// clearSignInFailures ends failures on user id after a right password at
// now: client's counter on it goes (every address's when all), the
// account's counter becomes Counter.AfterSuccess(now) (cleared when all),
// and last_sign_in_at is set to now when signedIn. With all it returns how
// many address counters it deleted and how many of them were locked out
// at now.
func (d *DB) clearSignInFailures(ctx context.Context, what, id, client string, all, signedIn bool, now time.Time) (addresses, locked int, err error) {
	err = d.inTx(ctx, what, func(tx *sql.Tx) error {
		addresses, locked = 0, 0 // inTx may retry
		account, err := d.lockAccountCounter(ctx, tx, id)
		if err != nil {
			return err
		}
		if all {
			account = signin.Counter{}
			rows, err := tx.QueryContext(ctx, d.q(`DELETE FROM signin_failures WHERE user_id = ? RETURNING lockout_until`), id)
			if err != nil {
				return err
			}
			for rows.Next() {
				var until int64
				if err := rows.Scan(&until); err != nil {
					rows.Close()
					return err
				}
				addresses++
				if fromMillis(until).After(now) {
					locked++
				}
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
		} else {
			account = account.AfterSuccess(now)
			_, err = tx.ExecContext(ctx, d.q(`DELETE FROM signin_failures WHERE user_id = ? AND client = ?`), id, client)
		}
		if err != nil {
			return err
		}
		set, args := `failed_count = ?, last_failed_at = ?, lockout_until = ?`,
			[]any{account.Failures, millis(account.LastFailure), millis(account.LockoutUntil)}
		if signedIn {
			set += `, last_sign_in_at = ?`
			args = append(args, millis(now))
		}
		_, err = tx.ExecContext(ctx, d.q(`UPDATE users SET `+set+` WHERE id = ?`), append(args, id)...)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: %s: %w", what, mapErr(err))
	}
	return addresses, locked, nil
}

// RecordSignInSuccess implements the feature stores.
func (d *DB) RecordSignInSuccess(ctx context.Context, id, client string, at time.Time) error {
	_, _, err := d.clearSignInFailures(ctx, "record sign-in", id, client, false, true, at)
	return err
}

// ClearSignInFailures implements the feature stores.
func (d *DB) ClearSignInFailures(ctx context.Context, id, client string, now time.Time) error {
	_, _, err := d.clearSignInFailures(ctx, "clear sign-in failures", id, client, false, false, now)
	return err
}

// ResetSignInFailures clears the failure counter of user id and of every
// client address on it, ending both kinds of lockout (an administrator
// unlocking the account). It returns how many client addresses had a
// failure counter on the account and how many of them were locked out at
// now, or authz.ErrNotFound for a missing user.
func (d *DB) ResetSignInFailures(ctx context.Context, id string, now time.Time) (addresses, locked int, err error) {
	return d.clearSignInFailures(ctx, "reset sign-in failures", id, "", true, false, now)
}

// ReplacePasswordHash implements the feature stores.
func (d *DB) ReplacePasswordHash(ctx context.Context, id, oldHash, newHash string) error {
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?`),
		newHash, id, oldHash)
	if err == nil {
		err = d.affectedOne(ctx, d.db, res, id)
	}
	if errors.Is(err, errNoMatch) {
		err = authz.ErrStale
	}
	if err != nil {
		return fmt.Errorf("store: replace password hash: %w", err)
	}
	return nil
}
