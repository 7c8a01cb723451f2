package binding

import (
	"context"
	"errors"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/dataverse"
)

// ContactSearchField names what SearchContacts matches on.
type ContactSearchField string

// The fields contacts can be searched by, each an exact (case-insensitive)
// match in Dataverse.
const (
	SearchByEmail    ContactSearchField = "email"    // emailaddress1
	SearchByUsername ContactSearchField = "username" // the binding username column
	SearchByName     ContactSearchField = "name"     // fullname
)

// MaxContactSearch caps SearchContacts results.
const MaxContactSearch = 50

// ErrNoDirectory means no Dataverse is configured.
var ErrNoDirectory = errors.New("binding: no Dataverse is configured")

// SearchContacts finds contacts to bind a user to, active or not, by an
// exact match on one field, at most limit (1..MaxContactSearch) of them. The
// value reaches Dataverse only as a filter literal escaped by the client.
func (s *Resolver) SearchContacts(ctx context.Context, field ContactSearchField, value string, limit int) ([]*dataverse.Contact, error) {
	if s.contacts == nil {
		return nil, ErrNoDirectory
	}
	value = strings.TrimSpace(value)
	if value == "" || len(value) > 320 {
		return nil, &authz.ValidationError{Field: "value", Message: "Give a value of 1 to 320 characters."}
	}
	if limit < 1 || limit > MaxContactSearch {
		limit = MaxContactSearch
	}
	var column string
	switch field {
	case SearchByEmail:
		column = "emailaddress1"
	case SearchByUsername:
		column = s.opts.UsernameColumn
	case SearchByName:
		column = "fullname"
	default:
		return nil, &authz.ValidationError{Field: "field", Message: "Search by email, username or name."}
	}
	return s.contacts.FindContacts(ctx, dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: column, Op: "eq", Value: value}}, Limit: limit})
}
