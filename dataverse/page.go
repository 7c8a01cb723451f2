package dataverse

import "errors"

// ErrInvalidCursor is wrapped when ContactPageQuery.Cursor is not a page
// of the same query (another filter, search or columns, or not a cursor at
// all). Nothing was sent; start again from the first page.
var ErrInvalidCursor = errors.New("dataverse: page cursor of another query")

// ContactPageQuery asks a contact directory for one page of contacts
// (crmclient.Directory.ListContactPage): the admin console's contact list.
type ContactPageQuery struct {
	// Conditions are the base filter, joined with "and" (Op "eq" or "ne",
	// values as Condition); none lists every contact. Dataverse
	// matches strings loosely, so the rows are checked again with
	// MatchesAll and those that fail are dropped from the page.
	Conditions []Condition
	// Search, when not empty, keeps the contacts whose firstname, lastname,
	// fullname or emailaddress1 starts with it (startswith, which
	// Dataverse can answer from an index, unlike contains;
	// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows).
	// %, _ and [ ] in it act as wildcards in Dataverse, so it can match
	// more than its text; it is a search, never an access rule.
	Search string
	// Columns are extra columns returned in Contact.Columns.
	Columns []string
	// PageSize is sent as Prefer: odata.maxpagesize, 1 to 5,000
	// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results).
	PageSize int
	// Cursor is ContactPage.Next of the previous page of the same query;
	// empty asks for the first page. A cursor of another query (another
	// filter, search or columns) is refused with ErrInvalidCursor, so a
	// cursor from a client can never widen the base filter; the page size
	// is a header, not part of the cursor, and may change between pages.
	Cursor string
}

// ContactPage is one page of a ContactPageQuery.
type ContactPage struct {
	// Contacts are the page's rows, ordered by fullname then contactid,
	// each with its ETag.
	Contacts []*Contact
	// Next is the cursor of the next page; empty on the last page. It is
	// opaque: the @odata.nextLink Dataverse sent, without this client's
	// environment URL, base64url-encoded.
	Next string
}
