package dataverse

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest logical name or identifier accepted, in bytes.
const MaxNameLen = 128

// odataKeywords are words a column name must not be, so that a name can
// never read as an operator or a literal inside a $filter (the OData 4.0
// URL conventions, http://docs.oasis-open.org/odata/odata/v4.01/odata-v4.01-part2-url-conventions.html
// section 5.1.1).
var odataKeywords = []string{"and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "has", "in",
	"add", "sub", "mul", "div", "mod", "null", "true", "false", "inf", "nan"}

// SecretContactColumns are contact columns that hold credentials of the
// Power Pages local identity (the password hash, the security stamp and the
// password typed into a form):
// https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact.
// No snapshot, header, filter or synced field may name them: a filter on a
// password hash would be an oracle for it.
var SecretContactColumns = []string{"adx_identity_passwordhash", "adx_identity_securitystamp", "adx_identity_newpassword"}

// ValidColumn checks a logical column name, as $select, $filter, $orderby
// and alternate keys take it: 1 to MaxNameLen ASCII lower-case letters,
// digits and underscores, not starting with a digit, holding at least one
// letter or digit (lookup values such as _parentcustomerid_value pass), and
// not an OData keyword. Logical names are the lower-case form of a column's
// schema name
// (https://learn.microsoft.com/power-apps/developer/data-platform/entity-attribute-metadata),
// and names are case sensitive in the Web API
// (https://learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors),
// so an upper-case letter is refused rather than sent to fail there.
func ValidColumn(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("must be a Dataverse column name of 1 to %d characters, got %q", MaxNameLen, truncate(name, 64))
	}
	alnum := false
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9' && i > 0:
			alnum = true
		case c == '_':
		default:
			return fmt.Errorf("must be a Dataverse column name (letters, digits and _ in lower case, not starting with a digit), got %q", truncate(name, 64))
		}
	}
	if !alnum {
		return fmt.Errorf("must be a Dataverse column name holding a letter or digit, got %q", name)
	}
	if slices.Contains(odataKeywords, name) {
		return fmt.Errorf("must be a Dataverse column name, not the OData keyword %q", name)
	}
	return nil
}

// ValidContactColumn is ValidColumn for a column of the contact table that
// crmgate reads, filters on, forwards or syncs: it also refuses the
// SecretContactColumns.
func ValidContactColumn(name string) error {
	if err := ValidColumn(name); err != nil {
		return err
	}
	if IsSecretContactColumn(name) {
		return fmt.Errorf("must not be %s: that column holds a credential and is never read", name)
	}
	return nil
}

// IsSecretContactColumn reports whether name is one of SecretContactColumns,
// ignoring case.
func IsSecretContactColumn(name string) bool {
	return slices.ContainsFunc(SecretContactColumns, func(s string) bool { return strings.EqualFold(s, name) })
}

// ValidIdentifier checks the name of an entity set, a navigation property,
// a relationship, an action or an action parameter: 1 to MaxNameLen ASCII
// letters, digits and underscores, not starting with a digit. Unlike
// columns these may hold upper-case letters (alex_WPUserCreated, schema
// names of navigation properties); nothing that reaches a URL path through
// such a name can add a segment, a key or a query.
func ValidIdentifier(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("must be a name of 1 to %d characters, got %q", MaxNameLen, truncate(name, 64))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("must be a name of letters, digits and _, not starting with a digit, got %q", truncate(name, 64))
		}
	}
	return nil
}

// truncate shortens s to at most n bytes plus an ellipsis, without splitting
// a UTF-8 sequence, for names quoted in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
