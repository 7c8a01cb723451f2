package dataverse

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
)

// Errors a contact directory returns; match them with errors.Is. A
// directory wraps them around its own, more detailed, errors.
var (
	// ErrContactNotFound means the contact does not exist.
	ErrContactNotFound = errors.New("dataverse: contact not found")
	// ErrUnavailable means Dataverse cannot answer now: the client's breaker
	// is open, or its retries were exhausted. Sign-in of a bound user fails
	// closed with it, so the caller can show "try again shortly"; unbound
	// users never meet it.
	ErrUnavailable = errors.New("dataverse: unavailable")
	// ErrContactChanged means a conditional update was refused because the
	// contact changed in Dataverse since it was read (its ETag no longer
	// matches; HTTP 412,
	// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api).
	// Nothing was written.
	ErrContactChanged = errors.New("dataverse: contact changed since it was read")
)

// ContactLogicalName is the logical name of the contact table.
const ContactLogicalName = "contact"

// EntityReference names a Dataverse row the way the Dataverse tooling does
// (Microsoft.Xrm.Sdk.EntityReference,
// https://learn.microsoft.com/dotnet/api/microsoft.xrm.sdk.entityreference):
// the same JSON field names, so a reference copied from a flow or a plug-in
// reads as it is.
type EntityReference struct {
	ID            string            `json:"Id"`
	LogicalName   string            `json:"LogicalName"`
	Name          string            `json:"Name,omitempty"`
	KeyAttributes map[string]string `json:"KeyAttributes,omitempty"`
}

// Contact is the snapshot of a Dataverse contact that a directory returns,
// sign-in checks, a session carries, and policies and identity headers
// read. It holds no secret: a directory never copies the
// SecretContactColumns into it.
//
// Its JSON form is the compact snapshot a session cookie carries: the id,
// logical name, name, columns and web roles, under short keys. The other
// fields (state, logon flag, typed names, ETag) are not serialised; they
// matter only while the contact is checked, and a session asks Dataverse
// again when its snapshot is due.
type Contact struct {
	// ID is contactid, a lower-case GUID.
	ID string `json:"id"`
	// LogicalName is ContactLogicalName.
	LogicalName string `json:"ln"`
	// Name is fullname.
	Name string `json:"n,omitempty"`
	// Columns holds every column the caller asked for, by logical name,
	// as Dataverse sent it: a string, a bool, nil for null, or a number
	// (float64, json.Number or an integer type). A missing column was not
	// asked for, or the directory did not return it; it never matches a
	// Condition.
	Columns map[string]any `json:"c,omitempty"`
	// Roles are the names of the contact's active web roles; nil when the
	// request did not ask for them.
	Roles []string `json:"r,omitempty"`

	// Active reports statecode 0
	// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact).
	Active bool `json:"-"`
	// LogonEnabled is adx_identity_logonenabled: Power Pages refuses a
	// sign-in when it is false
	// (https://github.com/Adoxio/xRM-Portals-Community-Edition, CrmSignInManager).
	LogonEnabled bool `json:"-"`
	// Email, FirstName, LastName and Username are emailaddress1,
	// firstname, lastname and adx_identity_username.
	Email     string `json:"-"`
	FirstName string `json:"-"`
	LastName  string `json:"-"`
	Username  string `json:"-"`
	// ETag is the row version Dataverse sent (@odata.etag, e.g. W/"5012"),
	// for a conditional update; empty when it sent none.
	ETag string `json:"-"`
}

// Value returns the contact's column col: from Columns, else from the typed
// fields for the columns they hold. ok is false when the contact does not
// carry the column.
func (c *Contact) Value(col string) (v any, ok bool) {
	if v, ok := c.Columns[col]; ok {
		return v, true
	}
	switch col {
	case "contactid":
		return c.ID, true
	case "fullname":
		return c.Name, true
	case "emailaddress1":
		return c.Email, true
	case "firstname":
		return c.FirstName, true
	case "lastname":
		return c.LastName, true
	case "adx_identity_username":
		return c.Username, true
	case "adx_identity_logonenabled":
		return c.LogonEnabled, true
	case "statecode":
		if c.Active {
			return int64(0), true
		}
		return int64(1), true
	}
	return nil, false
}

// Text returns the contact's column col as text: ok is false when the
// contact does not carry it or it is not text; a null is "".
func (c *Contact) Text(col string) (string, bool) {
	v, ok := c.Value(col)
	if !ok {
		return "", false
	}
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	}
	return "", false
}

// Clone returns a deep copy of c's maps and slices, for a snapshot shared
// through a cache. Column values are JSON scalars and are shared.
func (c *Contact) Clone() *Contact {
	if c == nil {
		return nil
	}
	cp := *c
	cp.Columns = maps.Clone(c.Columns)
	cp.Roles = slices.Clone(c.Roles)
	return &cp
}

// KeepColumns drops from c.Columns every column not in columns, so that a
// snapshot holds only what was asked for.
func (c *Contact) KeepColumns(columns []string) {
	for k := range c.Columns {
		if !slices.Contains(columns, k) {
			delete(c.Columns, k)
		}
	}
}

// Condition is one "Column Op Value" term of a contact query. Values are
// data, never query text: a directory encodes them with its filter builder,
// which escapes them.
type Condition struct {
	// Column is a contact column's logical name (ValidContactColumn).
	Column string
	// Op is "eq" or "ne".
	Op string
	// Value is a string, an int64, a bool, or nil for null.
	Value any
}

// Matches reports whether the contact satisfies cond, compared the way
// Dataverse would but never more loosely: strings equal ignoring case (no
// wildcards, no accent folding), numbers and booleans by value, null only
// with nil. A column missing from the contact never matches, not even with
// "ne".
func (cond Condition) Matches(c *Contact) bool {
	got, ok := c.Value(cond.Column)
	if !ok {
		return false
	}
	eq := valueEqual(got, cond.Value)
	switch cond.Op {
	case "eq":
		return eq
	case "ne":
		return !eq
	}
	return false
}

// MatchesAll reports whether c satisfies every condition; true for none.
func MatchesAll(c *Contact, conds []Condition) bool {
	for _, cond := range conds {
		if !cond.Matches(c) {
			return false
		}
	}
	return true
}

// ConditionColumns returns the columns conds read, each once, in order.
func ConditionColumns(conds []Condition) []string {
	cols := make([]string, 0, len(conds))
	for _, c := range conds {
		if !slices.Contains(cols, c.Column) {
			cols = append(cols, c.Column)
		}
	}
	return cols
}

// valueEqual compares a column value as decoded from JSON with a
// condition value.
func valueEqual(got, want any) bool {
	switch w := want.(type) {
	case nil:
		return got == nil
	case string:
		g, ok := got.(string)
		return ok && strings.EqualFold(g, w)
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case int64:
		switch g := got.(type) {
		case json.Number:
			n, err := g.Int64()
			return err == nil && n == w
		case float64:
			return g == math.Trunc(g) && g == float64(w)
		case int:
			return int64(g) == w
		case int32:
			return int64(g) == w
		case int64:
			return g == w
		}
	}
	return false
}

// ContactQuery asks for the contacts that satisfy every condition.
type ContactQuery struct {
	// Conditions are joined with "and"; never empty. Strings compare as
	// Dataverse compares them: case-insensitively, and with %, _ and [ ]
	// possibly acting as wildcards
	// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows).
	// So a caller checks every returned row again with MatchesAll, and
	// takes the columns the conditions name from Contact.Columns.
	Conditions []Condition
	// Columns are the columns to return in Contact.Columns; the conditions'
	// columns are returned as well.
	Columns []string
	// Roles asks for the active web roles in the same request ($expand).
	Roles bool
	// Limit caps the rows returned, 1 to 5000.
	Limit int
}
