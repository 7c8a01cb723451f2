package crmclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/crmgate/crmgate/dataverse"
)

// Directory reads and updates the contacts of a Dataverse environment for
// the binding, sign-in and profile features of package authz: contacts, the
// columns asked for and their active web roles, one Web API request per
// call. It never caches: every call asks Dataverse, so a sign-in never sees
// a stale contact (sessions are revalidated through CachedDirectory
// instead). The zero value is not usable; build it with NewDirectory. It is
// safe for concurrent use. The interfaces it satisfies are declared by
// their consumers in authz, and asserted where cmd/crmgate wires them.
type Directory struct {
	client *Client
	model  WebRoleModel
}

// NewDirectory returns the Directory of c, reading web roles in model.
// c must not be nil.
func NewDirectory(c *Client, model WebRoleModel) *Directory {
	return &Directory{client: c, model: model}
}

// identityColumns are the columns FindContacts always selects: those of
// dataverse.Contact's typed fields. The credential columns
// (dataverse.SecretContactColumns) are left out, so that a search does not
// carry password hashes over the wire.
var identityColumns = []string{
	"contactid", "fullname", "firstname", "lastname", "emailaddress1", "statecode",
	"adx_identity_username", "adx_identity_logonenabled",
}

// checkColumns validates the column names a caller passes in with
// dataverse.ValidContactColumn: an invalid or secret one wraps
// ErrInvalidArgument (and ErrInvalidFilter), never dataverse.ErrUnavailable.
func checkColumns(cols []string) error {
	for _, c := range cols {
		if err := dataverse.ValidContactColumn(c); err != nil {
			return fmt.Errorf("crmclient: directory: %w: %w: %w", ErrInvalidArgument, ErrInvalidFilter, err)
		}
	}
	return nil
}

// contactGUID parses the contact id a caller passes in. One that is not a
// GUID, or is the nil GUID, names no contact: the error wraps both
// dataverse.ErrContactNotFound and ErrInvalidArgument.
func contactGUID(op, id string) (GUID, error) {
	g, err := ParseGUID(id)
	if err == nil && g.IsZero() {
		err = errors.New("crmclient: the nil GUID")
	}
	if err != nil {
		return GUID{}, fmt.Errorf("crmclient: directory: %s: %w: %w: %w", op, dataverse.ErrContactNotFound, ErrInvalidArgument, err)
	}
	return g, nil
}

// directoryError maps an error of the client to the directory contract:
// ErrUnavailable becomes dataverse.ErrUnavailable (the cause stays in
// the chain), and, when notFound is set, a missing record becomes
// dataverse.ErrContactNotFound.
func directoryError(op string, err error, notFound bool) error {
	switch {
	case errors.Is(err, ErrUnavailable):
		return fmt.Errorf("crmclient: directory: %s: %w: %w", op, dataverse.ErrUnavailable, err)
	case notFound && (errors.Is(err, ErrNotFound) || IsNotFound(err)):
		return fmt.Errorf("crmclient: directory: %s: %w: %w", op, dataverse.ErrContactNotFound, err)
	}
	return fmt.Errorf("crmclient: directory: %s: %w", op, err)
}

// ContactByID returns contact id, active or not, with
// exactly columns in Contact.Columns and its active web roles, in one
// request (GetContact). An id that is not a GUID, or is the nil GUID,
// names no contact: the error wraps both dataverse.ErrContactNotFound and
// ErrInvalidArgument, and nothing is sent. A secret or malformed column
// name wraps ErrInvalidArgument. Dataverse being unavailable wraps
// dataverse.ErrUnavailable and ErrUnavailable.
func (d *Directory) ContactByID(ctx context.Context, id string, columns []string) (*dataverse.Contact, error) {
	g, err := contactGUID("contact by id", id)
	if err != nil {
		return nil, err
	}
	if err := checkColumns(columns); err != nil {
		return nil, err
	}
	ct, err := d.client.GetContact(ctx, g, columns, d.model)
	if err != nil {
		return nil, directoryError("contact by id", err, true)
	}
	return toSnapshot(ct, columns, true)
}

// FindContacts answers q with one collection request whose
// $filter is built with F from q.Conditions (joined with and), selecting
// the identity columns plus q.Columns and the conditions' columns,
// ordered by contactid, with $top q.Limit and, when q.Roles, the web-role
// relationship expanded. q must have at least one condition, each with Op
// "eq" or "ne" and a Value that is a string, an int64, a bool or nil, and
// a Limit of 1 to 5,000; anything else wraps ErrInvalidArgument and sends
// nothing. Dataverse matches strings loosely (case, wildcards), so callers
// check the rows again with dataverse.Condition.Matches. An expanded role list
// that Dataverse pages is an error rather than a partial list.
func (d *Directory) FindContacts(ctx context.Context, q dataverse.ContactQuery) ([]*dataverse.Contact, error) {
	filter, err := contactFilter(q.Conditions)
	if err != nil {
		return nil, err
	}
	if q.Limit < 1 || q.Limit > 5000 {
		return nil, invalidArg("directory: find contacts: limit %d: want 1 to 5000", q.Limit)
	}
	extra := slices.Clone(q.Columns)
	for _, c := range q.Conditions {
		if !slices.Contains(extra, c.Column) {
			extra = append(extra, c.Column)
		}
	}
	if err := checkColumns(extra); err != nil {
		return nil, err
	}
	cols := slices.Clone(identityColumns)
	for _, c := range extra {
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	opts := ListOptions{Query: Query{Select: cols, Filter: filter, OrderBy: []string{"contactid"}, Top: q.Limit}}
	var rs roleSchema
	if q.Roles {
		if rs, err = d.model.schema(); err != nil {
			return nil, err
		}
		opts.Expand = []Expand{{Nav: rs.relationship, Select: rs.columns()}}
	}
	out := []*dataverse.Contact{}
	_, err = d.client.List(ctx, SetContacts, opts, func(row json.RawMessage) error {
		ct, err := decodeContact(row, extra)
		if err != nil {
			return err
		}
		if q.Roles {
			if ct.Roles, err = decodeRoles(row, rs, ct.ID); err != nil {
				return err
			}
		}
		ac, err := toSnapshot(ct, extra, q.Roles)
		if err != nil {
			return err
		}
		out = append(out, ac)
		return nil
	})
	if err != nil {
		return nil, directoryError("find contacts", err, false)
	}
	return out, nil
}

// UpdateContact writes columns to contact id with one PATCH of contact id with
// columns, If-Match etag (or * when etag is empty), so it never creates a
// contact (If-Match, https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api). A stale etag wraps dataverse.ErrContactChanged, a
// missing contact dataverse.ErrContactNotFound, Dataverse being unavailable
// dataverse.ErrUnavailable. Values must be strings, bools, int64s or
// nil, and column names valid and not secret; otherwise nothing is sent
// and the error wraps ErrInvalidArgument.
func (d *Directory) UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error {
	g, err := contactGUID("update contact", id)
	if err != nil {
		return err
	}
	if len(columns) == 0 {
		return invalidArg("directory: update contact %s: no columns", g)
	}
	names := make([]string, 0, len(columns))
	for col, v := range columns {
		switch v.(type) {
		case string, bool, int64, nil:
		default:
			return invalidArg("directory: update contact: column %s: value of type %T; want string, bool, int64 or nil", truncate(col, 64), v)
		}
		names = append(names, col)
	}
	if err := checkColumns(names); err != nil {
		return err
	}
	err = d.client.Update(ctx, SetContacts, ByID(g), columns, etag)
	switch {
	case err == nil:
		return nil
	case IsConflict(err):
		return fmt.Errorf("crmclient: directory: update contact: %w: %w", dataverse.ErrContactChanged, err)
	}
	return directoryError("update contact", err, true)
}

// CreateContact creates contact id (a GUID the caller chose) with columns,
// as a create-only upsert: PATCH /contacts(<id>) with If-None-Match: *,
// which creates the record or, when a record with that id exists, changes
// nothing and answers 412
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api).
// A contact that exists already is success: the caller chose the id, so it
// is the contact an earlier attempt created before its answer was lost,
// and a retry never makes a second one. Values must be strings, bools,
// int64s or nil and column names valid, not secret and not contactid;
// otherwise nothing is sent and the error wraps ErrInvalidArgument.
// Dataverse being unavailable wraps dataverse.ErrUnavailable.
func (d *Directory) CreateContact(ctx context.Context, id string, columns map[string]any) error {
	g, err := contactGUID("create contact", id)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(columns))
	for col, v := range columns {
		switch v.(type) {
		case string, bool, int64, nil:
		default:
			return invalidArg("directory: create contact: column %s: value of type %T; want string, bool, int64 or nil", truncate(col, 64), v)
		}
		if col == "contactid" {
			return invalidArg("directory: create contact: the key is in the URL, not the body")
		}
		names = append(names, col)
	}
	if err := checkColumns(names); err != nil {
		return err
	}
	_, err = d.client.Upsert(ctx, SetContacts, ByID(g), columns, UpsertCreateOnly)
	switch {
	case err == nil, IsConflict(err):
		return nil
	}
	return directoryError("create contact", err, false)
}

// contactFilter builds the $filter of conds with F; it refuses what
// dataverse.Condition does not allow.
func contactFilter(conds []dataverse.Condition) (Filter, error) {
	if len(conds) == 0 {
		return Filter{}, invalidArg("directory: find contacts without conditions")
	}
	terms := make([]Filter, 0, len(conds))
	for _, c := range conds {
		switch c.Value.(type) {
		case string, int64, bool, nil:
		default:
			return Filter{}, invalidArg("directory: condition on %s: value of type %T; want string, int64, bool or nil", truncate(c.Column, 64), c.Value)
		}
		var f Filter
		switch c.Op {
		case "eq":
			f = F.Eq(c.Column, c.Value)
		case "ne":
			f = F.Ne(c.Column, c.Value)
		default:
			return Filter{}, invalidArg("directory: condition on %s: operator %q; want eq or ne", truncate(c.Column, 64), truncate(c.Op, 16))
		}
		if err := f.Err(); err != nil {
			return Filter{}, fmt.Errorf("crmclient: directory: %w: %w", ErrInvalidArgument, err)
		}
		terms = append(terms, f)
	}
	return F.And(terms...), nil
}

// decodeRoles reads the active web roles expanded into a contact row, as
// GetContact does.
func decodeRoles(row json.RawMessage, rs roleSchema, id GUID) ([]WebRole, error) {
	var rel map[string]json.RawMessage
	if err := json.Unmarshal(row, &rel); err != nil {
		return nil, fmt.Errorf("crmclient: decode contact: %w", err)
	}
	if _, paged := rel[rs.relationship+"@odata.nextLink"]; paged {
		// Expanding a collection on an entity set may come back as a
		// nextLink instead of the rows
		// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api); a partial role
		// list must not be taken for the whole.
		return nil, fmt.Errorf("crmclient: %s of contact %s came back paged; roles incomplete", rs.relationship, id)
	}
	var rows []json.RawMessage
	if v, ok := rel[rs.relationship]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &rows); err != nil {
			return nil, fmt.Errorf("crmclient: decode %s: %w", rs.relationship, err)
		}
	}
	roles := []WebRole{}
	for _, raw := range rows {
		r, err := rs.decode(raw)
		if err != nil {
			return nil, err
		}
		if r.StateCode == StateActive {
			roles = append(roles, r)
		}
	}
	return roles, nil
}

// toSnapshot copies ct into an dataverse.Contact with exactly columns in
// Columns (numbers as float64) and, when roles is set, the role names.
// Secrets are not copied.
func toSnapshot(ct *Contact, columns []string, roles bool) (*dataverse.Contact, error) {
	ac := &dataverse.Contact{
		ID:           ct.ID.String(),
		LogicalName:  "contact",
		Name:         ct.FullName,
		Active:       ct.Active(),
		LogonEnabled: ct.LogonEnabled,
		Email:        ct.Email,
		FirstName:    ct.FirstName,
		LastName:     ct.LastName,
		Username:     ct.Username,
		Columns:      make(map[string]any, len(columns)),
		ETag:         ct.ETag,
	}
	for _, col := range columns {
		v, err := plainJSON(ct.Columns[col])
		if err != nil {
			return nil, fmt.Errorf("crmclient: contact %s column %s: %w", ac.ID, col, err)
		}
		ac.Columns[col] = v
	}
	if roles {
		ac.Roles = ct.RoleNames()
	}
	return ac, nil
}

// plainJSON turns the json.Number values of a value decoded with
// UseNumber into float64, as json.Unmarshal would have decoded them.
func plainJSON(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", truncate(x.String(), 32), err)
		}
		return f, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			p, err := plainJSON(e)
			if err != nil {
				return nil, err
			}
			out[k] = p
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			p, err := plainJSON(e)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}
	return v, nil
}
