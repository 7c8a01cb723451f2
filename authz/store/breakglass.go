package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
)

// breakGlassLockKey is the pg_advisory_xact_lock key that serialises the
// guarded changes of every replica sharing a PostgreSQL database (the
// bytes of "crmgate\x01"). It differs from migrationLockKey, a session
// lock of the same key space.
const breakGlassLockKey int64 = 0x63726d6761746501

// UpdateUserKeepingBreakGlass implements the feature stores. In one transaction it
// takes the guard lock, reads the stored row, applies the optimistic update
// and, when the row was a break-glass account and u is not, looks for
// another one. Reading the row under the lock, rather than trusting the
// caller's copy, keeps the check right whatever the caller believed.
func (d *DB) UpdateUserKeepingBreakGlass(ctx context.Context, u *authz.User, role string, events ...outbox.Event) error {
	if role == "" {
		return d.UpdateUserAndEnqueue(ctx, u, events...)
	}
	prev := u.UpdatedAt
	err := d.inTx(ctx, "update user", func(tx *sql.Tx) error {
		if err := d.lockBreakGlass(ctx, tx); err != nil {
			return fmt.Errorf("store: update user: %w", err)
		}
		was, err := d.breakGlassRow(ctx, tx, u.ID, role)
		if err != nil && !errors.Is(err, authz.ErrNotFound) {
			return fmt.Errorf("store: update user: %w", err)
		}
		// A missing row makes updateUser report ErrNotFound.
		if err := d.updateUser(ctx, tx, u); err != nil {
			return err
		}
		if was && !authz.IsBreakGlass(u, role) {
			if err := d.someBreakGlass(ctx, tx, role); err != nil {
				return fmt.Errorf("store: update user: %w", err)
			}
		}
		return d.enqueue(ctx, tx, u.ID, events)
	})
	if err != nil {
		u.UpdatedAt = prev // the update was rolled back
	}
	return err
}

// DeleteUserKeepingBreakGlass implements the feature stores with the lock and the
// check of UpdateUserKeepingBreakGlass.
func (d *DB) DeleteUserKeepingBreakGlass(ctx context.Context, id, role string, events ...outbox.Event) error {
	if role == "" {
		return d.DeleteUser(ctx, id, events...)
	}
	return d.inTx(ctx, "delete user", func(tx *sql.Tx) error {
		if err := d.lockBreakGlass(ctx, tx); err != nil {
			return fmt.Errorf("store: delete user: %w", err)
		}
		was, err := d.breakGlassRow(ctx, tx, id, role)
		if err != nil {
			return fmt.Errorf("store: delete user: %w", err)
		}
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM users WHERE id = ?`), id); err != nil {
			return fmt.Errorf("store: delete user: %w", err)
		}
		if was {
			if err := d.someBreakGlass(ctx, tx, role); err != nil {
				return fmt.Errorf("store: delete user: %w", err)
			}
		}
		return d.enqueue(ctx, tx, id, events)
	})
}

// lockBreakGlass makes tx the only guarded change in progress until it
// ends. On PostgreSQL that is a transaction-scoped advisory lock: a second
// guarded transaction waits for the first to commit or roll back, and
// under READ COMMITTED its later statements then see what the first
// committed. SQLite needs nothing more: Open makes every transaction
// BEGIN IMMEDIATE, which takes the database's single write lock before
// the first read. (Were that overridden with _txlock=deferred, the
// guarded transactions write before they look for the remaining
// accounts, and SQLite refuses to upgrade a stale read snapshot to a
// writer, so the outcome would be an error rather than a lost account.)
func (d *DB) lockBreakGlass(ctx context.Context, tx *sql.Tx) error {
	if d.dialect != Postgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", breakGlassLockKey); err != nil {
		return fmt.Errorf("break-glass lock: %w", err)
	}
	return nil
}

// breakGlassRow reports whether the stored user id is a break-glass
// account for role; a missing user gives ErrNotFound.
func (d *DB) breakGlassRow(ctx context.Context, tx *sql.Tx, id, role string) (bool, error) {
	var status, roles, binding string
	err := tx.QueryRowContext(ctx, d.q(`SELECT status, roles, binding FROM users WHERE id = ?`), id).Scan(&status, &roles, &binding)
	if err != nil {
		return false, mapErr(err)
	}
	return decodeBreakGlass(status, roles, binding, role)
}

// someBreakGlass returns nil when at least one break-glass account for
// role exists, and an error wrapping authz.ErrLastBreakGlassAdmin
// otherwise. A LIKE on the roles' JSON text narrows the rows to those
// that may hold role; each is then decoded and checked exactly.
func (d *DB) someBreakGlass(ctx context.Context, tx *sql.Tx, role string) error {
	quoted, err := json.Marshal(role) // the element as encodeUser writes it
	if err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, d.q(`SELECT status, roles, binding FROM users
		WHERE status = ? AND roles LIKE ? ESCAPE '\'`),
		string(authz.StatusActive), "%"+likeEscaper.Replace(string(quoted))+"%")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var status, roles, binding string
		if err := rows.Scan(&status, &roles, &binding); err != nil {
			return err
		}
		ok, err := decodeBreakGlass(status, roles, binding, role)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return authz.ErrLastBreakGlassAdmin
}

// decodeBreakGlass decodes a row's JSON columns and applies authz.IsBreakGlass.
func decodeBreakGlass(status, roles, binding, role string) (bool, error) {
	var rs []string
	if err := json.Unmarshal([]byte(roles), &rs); err != nil {
		return false, fmt.Errorf("roles: %w", err)
	}
	var b authz.Binding
	if err := json.Unmarshal([]byte(binding), &b); err != nil {
		return false, fmt.Errorf("binding: %w", err)
	}
	return authz.IsBreakGlass(&authz.User{Status: authz.Status(status), Roles: rs, Binding: b}, role), nil
}
