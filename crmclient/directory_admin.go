package crmclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/dataverse"
)

// maxSearchLen bounds dataverse.ContactPageQuery.Search.
const maxSearchLen = 200

// searchColumns are the columns dataverse.ContactPageQuery.Search looks at.
var searchColumns = []string{"firstname", "lastname", "fullname", "emailaddress1"}

// ListContactPage returns one page of the contacts that match q, in one
// request: the first page of the collection GET, or the page q.Cursor
// names, whose nextLink is sent unchanged after checking that its query
// (all but $skiptoken) is exactly the one q gives. Every row carries its
// @odata.etag for a later UpdateContact or DeleteContact. A bad query
// (condition, column, page size, search of more than 200 bytes or not
// valid text, foreign cursor) wraps ErrInvalidArgument and sends nothing;
// Dataverse being unavailable wraps dataverse.ErrUnavailable.
func (d *Directory) ListContactPage(ctx context.Context, q dataverse.ContactPageQuery) (*dataverse.ContactPage, error) {
	if q.PageSize < 1 || q.PageSize > 5000 {
		return nil, invalidArg("directory: list contacts: page size %d: want 1 to 5000", q.PageSize)
	}
	var terms []Filter
	if len(q.Conditions) > 0 {
		f, err := contactFilter(q.Conditions)
		if err != nil {
			return nil, err
		}
		terms = append(terms, f)
	}
	if s := strings.TrimSpace(q.Search); s != "" {
		if len(s) > maxSearchLen {
			return nil, invalidArg("directory: list contacts: search longer than %d bytes", maxSearchLen)
		}
		if err := validText("search", s); err != nil {
			return nil, err
		}
		or := make([]Filter, 0, len(searchColumns))
		for _, c := range searchColumns {
			or = append(or, F.StartsWith(c, s))
		}
		terms = append(terms, F.Or(or...))
	}
	var filter Filter
	switch len(terms) {
	case 0:
	case 1:
		filter = terms[0]
	default:
		filter = F.And(terms...)
	}
	if err := filter.Err(); err != nil {
		return nil, fmt.Errorf("crmclient: directory: list contacts: %w: %w", ErrInvalidArgument, err)
	}
	extra := slices.Clone(q.Columns)
	for _, c := range dataverse.ConditionColumns(q.Conditions) {
		if !slices.Contains(extra, c) {
			extra = append(extra, c)
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
	opts := ListOptions{Query: Query{Select: cols, Filter: filter, OrderBy: []string{"fullname", "contactid"}}, PageSize: q.PageSize}
	query, err := opts.encode()
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	if err := preferHeader(h, "", q.PageSize); err != nil {
		return nil, err
	}
	r := &request{op: "List " + SetContacts, method: http.MethodGet, path: SetContacts, query: query, header: h}
	if q.Cursor != "" {
		if r.path, r.query, err = d.cursorRequest(q.Cursor, query); err != nil {
			return nil, err
		}
	}
	resp, err := d.client.do(ctx, r)
	if err != nil {
		return nil, directoryError("list contacts", err, false)
	}
	var body struct {
		Value    []json.RawMessage `json:"value"`
		NextLink string            `json:"@odata.nextLink"`
	}
	if err := resp.decode(&body); err != nil {
		return nil, directoryError("list contacts", err, false)
	}
	page := &dataverse.ContactPage{Contacts: []*dataverse.Contact{}}
	for _, row := range body.Value {
		ct, err := decodeContact(row, extra)
		if err != nil {
			return nil, err
		}
		ac, err := toSnapshot(ct, extra, false)
		if err != nil {
			return nil, err
		}
		if !dataverse.MatchesAll(ac, q.Conditions) {
			continue
		}
		if len(q.Columns) < len(extra) {
			ac.KeepColumns(q.Columns)
		}
		page.Contacts = append(page.Contacts, ac)
	}
	if body.NextLink != "" {
		path, rawQuery, err := d.client.splitNextLink(body.NextLink)
		if err != nil {
			return nil, err
		}
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(path + "?" + rawQuery))
	}
	return page, nil
}

// cursorRequest decodes a dataverse.ContactPage.Next cursor into the path and query
// of its nextLink, and checks that the link's query without $skiptoken is
// want, the query of the page asked for.
func (d *Directory) cursorRequest(cursor, want string) (path, query string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("crmclient: directory: list contacts: %w: %w: %s", ErrInvalidArgument, dataverse.ErrInvalidCursor, why)
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) > 16<<10 {
		return bad("not a cursor of this list")
	}
	path, query, err = d.client.splitNextLink(d.client.base + string(raw))
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", dataverse.ErrInvalidCursor, err)
	}
	if path != SetContacts {
		return bad("not a contact list")
	}
	got, err := url.ParseQuery(query)
	if err != nil || len(got["$skiptoken"]) != 1 {
		return bad("no $skiptoken")
	}
	delete(got, "$skiptoken")
	exp, err := url.ParseQuery(want)
	if err != nil {
		return "", "", fmt.Errorf("crmclient: re-read query: %w", err)
	}
	if !maps.EqualFunc(got, exp, slices.Equal) {
		return bad("it belongs to another filter, search or column list")
	}
	return path, query, nil
}

// DeleteContact deletes contact id with one DELETE whose If-Match is etag,
// the row version read with it
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api):
// a contact changed since then is not deleted, and the error wraps
// dataverse.ErrContactChanged. etag must be an entity tag as Dataverse
// sends it; an empty one or "*" wraps ErrInvalidArgument and sends
// nothing, so that a delete is never blind. A missing contact wraps
// dataverse.ErrContactNotFound, Dataverse being unavailable
// dataverse.ErrUnavailable.
func (d *Directory) DeleteContact(ctx context.Context, id, etag string) error {
	g, err := contactGUID("delete contact", id)
	if err != nil {
		return err
	}
	if etag == "" || etag == "*" {
		return invalidArg("directory: delete contact %s: no row version (ETag); a delete must name the version it deletes", g)
	}
	if err := validETag(etag); err != nil {
		return err
	}
	err = d.client.Delete(ctx, SetContacts, ByID(g), etag)
	switch {
	case err == nil:
		return nil
	case IsConflict(err):
		return fmt.Errorf("crmclient: directory: delete contact: %w: %w", dataverse.ErrContactChanged, err)
	}
	return directoryError("delete contact", err, true)
}
