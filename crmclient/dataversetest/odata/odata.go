// Package odata is the query engine of the Dataverse emulator: it parses and
// evaluates the OData query options the Dataverse Web API accepts ($filter,
// $select, $orderby, $expand) against rows held in memory. It does no HTTP;
// the emulator's server turns an *Error into the Dataverse error body.
//
// The behaviour follows Microsoft's documentation of Web API queries,
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview
// and the pages it links to. Where the documentation gives no text for an error, the
// message used here is the one Microsoft.OData (the library behind the Web
// API) is believed to produce, or a plain one; each such place says that it
// is not confirmed.
package odata

import (
	"fmt"
	"net/http"
	"unicode/utf8"
)

// Kind is the type of a column. The zero Kind is not a type: a column whose
// Kind is zero is treated as absent from the table.
type Kind int

// Column kinds.
const (
	// KindString is a text column; comparisons ignore case.
	KindString Kind = iota + 1
	// KindGuid is a uniqueidentifier column such as a primary key.
	KindGuid
	// KindInt is a whole-number column.
	KindInt
	// KindDecimal is a decimal, float or money column.
	KindDecimal
	// KindBool is a two-option (yes/no) column.
	KindBool
	// KindDateTime is a date and time column, held as RFC 3339 UTC text.
	KindDateTime
	// KindLookup is the _x_value GUID of a lookup column.
	KindLookup
	// KindChoice is a choice (option set) column, compared and sorted by its
	// integer value.
	KindChoice
)

// edm returns the OData type name used in error messages.
func (k Kind) edm() string {
	switch k {
	case KindString:
		return "Edm.String"
	case KindGuid, KindLookup:
		return "Edm.Guid"
	case KindInt, KindChoice:
		return "Edm.Int32"
	case KindDecimal:
		return "Edm.Decimal"
	case KindBool:
		return "Edm.Boolean"
	case KindDateTime:
		return "Edm.DateTimeOffset"
	}
	return "Edm.Untyped"
}

// EntityType describes one table for validation and typing. A nil
// *EntityType is accepted everywhere and behaves as a table with no columns,
// so every column name is then reported as unknown.
type EntityType struct {
	// LogicalName is the table's logical name, e.g. "contact"; it appears in
	// "Could not find a property" messages.
	LogicalName string
	// EntitySet is the entity set name, e.g. "contacts".
	EntitySet string
	// PrimaryKey is the primary key column, e.g. "contactid". Project always
	// keeps it.
	PrimaryKey string
	// Columns maps every column name, including the primary key and the
	// _x_value lookup columns, to its Kind. Names are case sensitive.
	Columns map[string]Kind
	// Navigation maps navigation property names to their targets. The
	// filter engine only uses it to tell "not supported" from "unknown".
	Navigation map[string]Nav
}

// Nav describes a navigation property.
type Nav struct {
	// Target is the entity set the property leads to.
	Target string
	// Collection is true for collection-valued (one-to-many or many-to-many)
	// properties.
	Collection bool
	// LookupColumn is, for single-valued properties, the lookup column that
	// holds the target's id, e.g. "_parentcustomerid_value".
	LookupColumn string
}

// Row is one record as decoded JSON values: string (GUIDs in lower case,
// date-times as RFC 3339 UTC), float64 for numbers, bool, or nil. A missing
// key reads as nil. A value of the wrong Go type for its column's Kind is
// treated as null: it matches no comparison and sorts with the nulls.
type Row map[string]any

// Error is a Dataverse-shaped error: the HTTP status, the error "code" (a
// hex HRESULT string such as "0x80060888", or "0x0") and the message text.
// Message is meant to be sent to the client as is.
type Error struct {
	Status  int
	Code    string
	Message string
}

// Error returns the status, code and message prefixed with "odata:".
func (e *Error) Error() string {
	return fmt.Sprintf("odata: %d %s: %s", e.Status, e.Code, e.Message)
}

// codeUnspecified is the code of every 400 this package returns.
// https://learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors
// gives "0x0" for the unknown-property error (some live responses carry
// 0x80060888); no code is documented for the others, so "0x0" is used for
// them too. Not confirmed for any error other than the unknown property.
const codeUnspecified = "0x0"

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: codeUnspecified, Message: fmt.Sprintf(format, args...)}
}

// errUnknownProperty is the documented error for an unknown column
// (https://learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors).
func errUnknownProperty(name string, t *EntityType) *Error {
	return badRequest("Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.", name, t.LogicalName)
}

// errUnsupported reports a feature Dataverse has but the emulator does not.
func errUnsupported(what string) *Error {
	return badRequest("%s is not supported by the emulator.", what)
}

// pos16 converts a byte offset in s into the position Microsoft.OData
// reports: an index in UTF-16 code units, counted from 0.
func pos16(s string, off int) int {
	n := 0
	for _, r := range s[:min(off, len(s))] {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// quoteRune is the text of one character for an error message.
func quoteRune(s string, off int) string {
	r, _ := utf8.DecodeRuneInString(s[off:])
	return string(r)
}

// column looks name up in t, which may be nil.
func (t *EntityType) column(name string) (Kind, bool) {
	if t == nil {
		return 0, false
	}
	k, ok := t.Columns[name]
	return k, ok && k >= KindString && k <= KindChoice
}

func (t *EntityType) navigation(name string) bool {
	if t == nil {
		return false
	}
	_, ok := t.Navigation[name]
	return ok
}

func (t *EntityType) orEmpty() *EntityType {
	if t == nil {
		return &EntityType{}
	}
	return t
}
