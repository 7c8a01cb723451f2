package crmclient

import "github.com/crmgate/crmgate/dataverse"

// GUID is a Dataverse unique identifier (Edm.Guid); see dataverse.GUID,
// where the parsing rule lives for every layer.
type GUID = dataverse.GUID

// ParseGUID parses the canonical 8-4-4-4-12 hexadecimal form, in either
// case, optionally wrapped in braces; see dataverse.ParseGUID.
func ParseGUID(s string) (GUID, error) { return dataverse.ParseGUID(s) }

// MustParseGUID is like ParseGUID but panics on a malformed s. It is meant
// for constants in tests and start-up code, never for input.
func MustParseGUID(s string) GUID { return dataverse.MustParseGUID(s) }
