package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/crmgate/crmgate/authz"
)

// MaxBoundLookup is the most contact ids, and the most usernames, one
// UsersBoundToContacts call takes: a page of the admin console's contact
// list (authz/contacts.MaxLimit) with room to spare.
const MaxBoundLookup = 500

// UsersBoundToContacts returns, in one query, the users bound to any of the
// contacts of a page: those whose lookup binding names one of ids (the
// contact_id column, compared in lower case), and those bound in username
// mode whose username is one of usernames (a username binding names no
// contact; the caller passes each contact's username column). Users are
// ordered by normalised username, each once, at most maxBoundUsers per
// contact id plus those of the usernames. Empty ids and usernames are
// skipped; none at all returns nil. More than MaxBoundLookup ids or
// usernames is an error.
func (d *DB) UsersBoundToContacts(ctx context.Context, ids, usernames []string) ([]*authz.User, error) {
	if len(ids) > MaxBoundLookup || len(usernames) > MaxBoundLookup {
		return nil, fmt.Errorf("store: users bound to contacts: at most %d ids and %d usernames", MaxBoundLookup, MaxBoundLookup)
	}
	var where []string
	var args []any
	in := func(col string, vals []string, norm func(string) string) {
		var ph []string
		seen := map[string]bool{}
		for _, v := range vals {
			v = norm(v)
			if v == "" || seen[v] {
				continue
			}
			seen[v] = true
			ph = append(ph, "?")
			args = append(args, v)
		}
		if len(ph) > 0 {
			where = append(where, col+" IN ("+strings.Join(ph, ", ")+")")
		}
	}
	in("contact_id", ids, strings.ToLower)
	nIDs := len(args)
	in("username_norm", usernames, authz.NormalizeLogin)
	if len(where) == 0 {
		return nil, nil
	}
	// Bounded: maxBoundUsers per contact, one user per username.
	limit := nIDs*maxBoundUsers + (len(args) - nIDs)
	args = append(args, limit)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+userColumns+` FROM users WHERE `+strings.Join(where, " OR ")+`
		ORDER BY username_norm LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: users bound to contacts: %w", err)
	}
	defer rows.Close()
	var out []*authz.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: users bound to contacts: %w", err)
		}
		// A username match counts only for a user bound in username mode.
		if boundContact(u) == "" && u.Binding.Mode != authz.BindingUsername {
			continue
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: users bound to contacts: %w", err)
	}
	return out, nil
}
