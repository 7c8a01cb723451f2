package crmclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/crmgate/crmgate/dataverse"
)

// ErrNotFound is wrapped by the typed lookups of entities.go when no
// record matches (a lookup by id also wraps the 404 *APIError, so
// IsNotFound holds for it too).
var ErrNotFound = errors.New("crmclient: no matching record")

// ErrAmbiguous is wrapped when a lookup that must find at most one record
// (a user name, an invitation code, an external identity) matches several,
// or matches too many rows to be checked. Callers must treat it as a
// failure, never pick one of the rows.
var ErrAmbiguous = errors.New("crmclient: more than one record matches")

// ErrInvalidArgument is wrapped when a call is refused before anything is
// sent: a malformed entity set, column, navigation property or action
// name, an invalid key, ETag or page size, or a nextLink that does not
// point at this client's environment.
var ErrInvalidArgument = errors.New("crmclient: invalid argument")

func invalidArg(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)
}

// validName checks an entity set, navigation property, relationship or
// action name with dataverse.ValidIdentifier, so nothing that reaches a URL
// path through it can add a segment, a key or a query.
func validName(kind, name string) error {
	if err := dataverse.ValidIdentifier(name); err != nil {
		return invalidArg("%s %q: want letters, digits and _ only", kind, truncate(name, 64))
	}
	return nil
}

// Key identifies one record in a URL: its primary key (ByID) or an
// alternate key (ByAlternateKey). The zero Key is invalid and refused by
// every operation.
type Key struct {
	segment string // "(<guid>)" or "(col='v',col2=1)", already escaped for a path
	err     error
}

// ByID is the Key of the record whose primary key is id. A zero id is
// refused: Dataverse never assigns it.
func ByID(id GUID) Key {
	if id.IsZero() {
		return Key{err: invalidArg("nil GUID as a record id")}
	}
	return Key{segment: "(" + id.String() + ")"}
}

// ByAlternateKey is the Key made of the columns of an alternate key and
// their values, such as {"emailaddress1": "a@b.c"}
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api).
// Values are encoded like filter literals (strings single-quoted with
// embedded quotes doubled, GUIDs bare, numbers plain) and percent-encoded
// for the path. The key must be defined in the environment; by default
// contact has none, and an undefined key is a 400.
func ByAlternateKey(values map[string]any) Key {
	if len(values) == 0 {
		return Key{err: invalidArg("alternate key without columns")}
	}
	cols := make([]string, 0, len(values))
	for c := range values {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	parts := make([]string, 0, len(cols))
	for _, c := range cols {
		if err := validColumn(c); err != nil {
			return Key{err: invalidArg("alternate key: %v", err)}
		}
		v := values[c]
		if v == nil {
			return Key{err: invalidArg("alternate key column %s: null value", c)}
		}
		lit, err := literal(v)
		if err != nil {
			return Key{err: invalidArg("alternate key column %s: %v", c, err)}
		}
		parts = append(parts, c+"="+escapeKeyLiteral(lit))
	}
	return Key{segment: "(" + strings.Join(parts, ",") + ")"}
}

// escapeKeyLiteral percent-encodes every byte of an OData literal except
// unreserved characters and the quote, so that '/', '?', '#', '%', '(',
// ')', ',' and '=' in a value cannot change the path; Dataverse decodes
// the path before it parses the key.
func escapeKeyLiteral(lit string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(lit); i++ {
		c := lit[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '\'' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// String returns the key as it appears in a URL path, such as
// "(9f3162f6-804a-e611-80d1-00155d4333fa)", or "" for an invalid Key.
func (k Key) String() string {
	if k.err != nil {
		return ""
	}
	return k.segment
}

func (k Key) check() error {
	if k.err != nil {
		return k.err
	}
	if k.segment == "" {
		return invalidArg("zero Key")
	}
	return nil
}

// recordPath returns "set(key)" after validating both.
func recordPath(set string, key Key) (string, error) {
	if err := validName("entity set", set); err != nil {
		return "", err
	}
	if err := key.check(); err != nil {
		return "", err
	}
	return set + key.segment, nil
}

// Expand is one $expand item: a navigation property and the columns of
// the related rows
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api).
// An empty Select returns every column of the related rows.
type Expand struct {
	// Nav is the navigation property, such as adx_webrole_contact or
	// parentcustomerid_account. Case-sensitive.
	Nav string
	// Select lists the related rows' columns.
	Select []string
}

// encodeExpand renders "nav($select=a,b),nav2" after validating names.
func encodeExpand(exps []Expand) (string, error) {
	items := make([]string, 0, len(exps))
	for _, e := range exps {
		if err := validName("$expand navigation property", e.Nav); err != nil {
			return "", err
		}
		item := e.Nav
		if len(e.Select) > 0 {
			for _, c := range e.Select {
				if err := validColumn(c); err != nil {
					return "", fmt.Errorf("$expand %s: %w", e.Nav, err)
				}
			}
			item += "($select=" + strings.Join(e.Select, ",") + ")"
		}
		items = append(items, item)
	}
	return strings.Join(items, ","), nil
}

// validAnnotations checks an odata.include-annotations value: a comma list
// of annotation names or patterns such as "*" or
// "Microsoft.Dynamics.CRM.lookuplogicalname". It goes into a quoted
// header parameter, so quotes, commas outside names and controls are out.
func validAnnotations(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return invalidArg("empty annotation name in %q", truncate(s, 64))
		}
		for i := 0; i < len(item); i++ {
			c := item[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '*' || c == '_') {
				return invalidArg("annotation %q: want letters, digits, '.', '_' and '*'", truncate(item, 64))
			}
		}
	}
	return nil
}

// validETag accepts "*" or an entity tag as Dataverse sends it (W/"123"
// or "123"); the value is opaque but must be a legal header value.
func validETag(s string) error {
	if s == "*" {
		return nil
	}
	t := strings.TrimPrefix(s, "W/")
	if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' || strings.ContainsAny(t[1:len(t)-1], "\"\r\n") {
		return invalidArg("ETag %q: want * or W/\"...\"", truncate(s, 64))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return invalidArg("ETag with a control character")
		}
	}
	return nil
}

// RetrieveOptions are the query options of a single-record GET. The zero
// value returns every column (costly: name the columns you need).
type RetrieveOptions struct {
	// Select lists the columns to return; the primary key always comes
	// back.
	Select []string
	// Expand lists related rows to return in the same request.
	Expand []Expand
	// IncludeAnnotations is sent as Prefer: odata.include-annotations
	// ("*", or a comma list such as
	// "Microsoft.Dynamics.CRM.lookuplogicalname"); empty sends none.
	IncludeAnnotations string
}

func (o RetrieveOptions) encode() (string, error) {
	v := url.Values{}
	if len(o.Select) > 0 {
		for _, c := range o.Select {
			if err := validColumn(c); err != nil {
				return "", fmt.Errorf("$select: %w", err)
			}
		}
		v.Set("$select", strings.Join(o.Select, ","))
	}
	if len(o.Expand) > 0 {
		e, err := encodeExpand(o.Expand)
		if err != nil {
			return "", err
		}
		v.Set("$expand", e)
	}
	return encodeQuery(v), nil
}

// preferHeader joins preferences into one Prefer header, the form the
// third-party DynamicsWebApi client sends
// (https://github.com/AleksandrRogov/DynamicsWebApi, src/utils/Request.ts).
func preferHeader(h http.Header, annotations string, pageSize int) error {
	var prefs []string
	if annotations != "" {
		if err := validAnnotations(annotations); err != nil {
			return err
		}
		prefs = append(prefs, `odata.include-annotations="`+annotations+`"`)
	}
	if pageSize > 0 {
		prefs = append(prefs, "odata.maxpagesize="+strconv.Itoa(pageSize))
	}
	if len(prefs) > 0 {
		h.Set("Prefer", strings.Join(prefs, ","))
	}
	return nil
}

// Retrieve gets one record of set
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api),
// decodes it into out (a pointer, as for json.Unmarshal; nil discards the
// body) and returns
// its @odata.etag for a later conditional Update or Delete. A missing
// record is a 404 *APIError (IsNotFound).
func (c *Client) Retrieve(ctx context.Context, set string, key Key, opts RetrieveOptions, out any) (etag string, err error) {
	path, err := recordPath(set, key)
	if err != nil {
		return "", err
	}
	q, err := opts.encode()
	if err != nil {
		return "", err
	}
	h := http.Header{}
	if err := preferHeader(h, opts.IncludeAnnotations, 0); err != nil {
		return "", err
	}
	resp, err := c.do(ctx, &request{op: "Retrieve " + set, method: http.MethodGet, path: path, query: q, header: h})
	if err != nil {
		return "", err
	}
	var meta struct {
		ETag string `json:"@odata.etag"`
	}
	if err := resp.decode(&meta); err != nil {
		return "", err
	}
	if out != nil {
		if err := resp.decode(out); err != nil {
			return "", err
		}
	}
	return meta.ETag, nil
}

// ListOptions are the query options of a collection GET
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview).
// The zero value returns every column of every row, 5,000 rows a page.
type ListOptions struct {
	// Query holds $select, $filter, $orderby and $top. Dataverse ignores
	// $top when a page size is sent
	// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results),
	// so List and ListAll also stop on their own after Top rows.
	Query
	// Expand lists related rows to return with each row.
	Expand []Expand
	// Count asks for @odata.count (capped at 5,000 by Dataverse) on the
	// first page.
	Count bool
	// PageSize is sent as Prefer: odata.maxpagesize (1 to 5,000); 0
	// sends none and Dataverse pages at 5,000 rows.
	PageSize int
	// IncludeAnnotations is sent as Prefer: odata.include-annotations;
	// empty sends none.
	IncludeAnnotations string
}

func (o ListOptions) encode() (string, error) {
	base, err := o.Query.Encode()
	if err != nil {
		return "", err
	}
	// Query.Encode is the one encoder of $select/$filter/$orderby/$top;
	// its output is decoded here only to add $count and $expand and to
	// encode everything again in the same fixed form.
	v, err := url.ParseQuery(base)
	if err != nil {
		return "", fmt.Errorf("crmclient: re-read query: %w", err)
	}
	if o.Count {
		v.Set("$count", "true")
	}
	if len(o.Expand) > 0 {
		e, err := encodeExpand(o.Expand)
		if err != nil {
			return "", err
		}
		v.Set("$expand", e)
	}
	return encodeQuery(v), nil
}

// Page is one page of a collection GET.
type Page struct {
	// Rows are the rows of the page, each a JSON object as Dataverse sent
	// it (annotations included).
	Rows []json.RawMessage
	// Count is @odata.count, or -1 when the answer had none (only the
	// first page of a ListOptions.Count query has it).
	Count int
}

// Pages runs the collection GET of set and yields its pages, following
// @odata.nextLink
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results):
// each link is sent unchanged, its $skiptoken never decoded or
// re-encoded, with the same Prefer header. A
// nextLink that does not point at this client's environment under the
// Web API path is refused with ErrInvalidArgument (the bearer token must
// not go to another host), and so is a nextLink that repeats the previous
// one. When opts.Top is positive, the rows after the first Top are
// dropped and paging stops. Iteration stops at the first error, which is
// yielded with a nil Page.
func (c *Client) Pages(ctx context.Context, set string, opts ListOptions) iter.Seq2[*Page, error] {
	return func(yield func(*Page, error) bool) {
		if err := validName("entity set", set); err != nil {
			yield(nil, err)
			return
		}
		if opts.PageSize < 0 || opts.PageSize > 5000 {
			yield(nil, invalidArg("page size %d: want 1 to 5000, or 0", opts.PageSize))
			return
		}
		q, err := opts.encode()
		if err != nil {
			yield(nil, err)
			return
		}
		h := http.Header{}
		if err := preferHeader(h, opts.IncludeAnnotations, opts.PageSize); err != nil {
			yield(nil, err)
			return
		}
		r := &request{op: "List " + set, method: http.MethodGet, path: set, query: q, header: h}
		rows := 0
		prev := ""
		for {
			resp, err := c.do(ctx, r)
			if err != nil {
				yield(nil, err)
				return
			}
			var body struct {
				Value    []json.RawMessage `json:"value"`
				Count    *int              `json:"@odata.count"`
				NextLink string            `json:"@odata.nextLink"`
			}
			if err := resp.decode(&body); err != nil {
				yield(nil, err)
				return
			}
			p := &Page{Rows: body.Value, Count: -1}
			if body.Count != nil {
				p.Count = *body.Count
			}
			if opts.Top > 0 && rows+len(p.Rows) >= opts.Top {
				p.Rows = p.Rows[:opts.Top-rows]
				body.NextLink = ""
			}
			rows += len(p.Rows)
			if !yield(p, nil) || body.NextLink == "" {
				return
			}
			if body.NextLink == prev {
				yield(nil, invalidArg("nextLink repeats the previous page's link"))
				return
			}
			prev = body.NextLink
			path, query, err := c.splitNextLink(body.NextLink)
			if err != nil {
				yield(nil, err)
				return
			}
			r = &request{op: r.op, method: http.MethodGet, path: path, query: query, header: h}
		}
	}
}

// splitNextLink checks that link is under this client's Web API root and
// returns its path and raw query, byte for byte as received.
func (c *Client) splitNextLink(link string) (path, query string, err error) {
	refuse := func(why string) (string, string, error) {
		return "", "", invalidArg("nextLink %q refused: %s", truncate(link, 128), why)
	}
	u, err := url.Parse(link)
	if err != nil {
		return refuse(err.Error())
	}
	base, _ := url.Parse(c.base) // built by New from a parsed URL
	if u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) || u.User != nil {
		return refuse("not this client's environment")
	}
	if u.Fragment != "" || strings.Contains(link, "#") {
		return refuse("has a fragment")
	}
	prefix := u.Scheme + "://" + u.Host + apiPath
	if len(link) < len(prefix) || !strings.EqualFold(link[:len(prefix)], prefix) {
		return refuse("not under " + apiPath)
	}
	path, query, _ = strings.Cut(link[len(prefix):], "?")
	if path == "" || strings.Contains(path, "..") {
		return refuse("bad path")
	}
	for i := 0; i < len(link); i++ {
		if link[i] <= 0x20 || link[i] == 0x7f {
			return refuse("has a space or control character")
		}
	}
	return path, query, nil
}

// List runs the collection GET of set and calls fn with each row, in
// order, following every nextLink (see Pages). It returns the first page's
// @odata.count (-1 if absent). fn's error stops the listing and is
// returned as is.
func (c *Client) List(ctx context.Context, set string, opts ListOptions, fn func(row json.RawMessage) error) (count int, err error) {
	count = -1
	first := true
	for p, err := range c.Pages(ctx, set, opts) {
		if err != nil {
			return count, err
		}
		if first {
			count, first = p.Count, false
		}
		for _, row := range p.Rows {
			if err := fn(row); err != nil {
				return count, err
			}
		}
	}
	return count, nil
}

// ListAll runs the collection GET of set, follows every nextLink and
// decodes all rows into a []T. It holds every row in memory: bound the
// result with opts.Top or a selective filter.
func ListAll[T any](ctx context.Context, c *Client, set string, opts ListOptions) ([]T, error) {
	var out []T
	_, err := c.List(ctx, set, opts, func(row json.RawMessage) error {
		var v T
		if err := json.Unmarshal(row, &v); err != nil {
			return fmt.Errorf("crmclient: decode %s row: %w", set, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// marshalBody encodes a request body; a nil body is "{}".
func marshalBody(body any) ([]byte, error) {
	if body == nil {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("crmclient: encode body: %w", err)
	}
	return b, nil
}

// entityIDFromHeader reads the GUID at the end of an OData-EntityId
// header: .../contacts(<guid>).
func entityIDFromHeader(h http.Header) (GUID, error) {
	v := h.Get("OData-EntityId")
	open := strings.LastIndexByte(v, '(')
	if open < 0 || !strings.HasSuffix(v, ")") {
		return GUID{}, fmt.Errorf("crmclient: answer without a usable OData-EntityId header (%q)", truncate(v, 128))
	}
	id, err := ParseGUID(strings.Trim(v[open+1:len(v)-1], "'"))
	if err != nil {
		return GUID{}, fmt.Errorf("crmclient: OData-EntityId: %w", err)
	}
	return id, nil
}

// Create creates a record of set from body (columns by logical name,
// lookups as "<nav>@odata.bind": "/<set>(<id>)") and returns the new
// record's id, read from the OData-EntityId header
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/create-entity-web-api).
// A POST is never retried after a failure that may have reached Dataverse,
// so an ErrUnavailable from Create may hide a record that was created.
func (c *Client) Create(ctx context.Context, set string, body any) (GUID, error) {
	if err := validName("entity set", set); err != nil {
		return GUID{}, err
	}
	b, err := marshalBody(body)
	if err != nil {
		return GUID{}, err
	}
	resp, err := c.do(ctx, &request{op: "Create " + set, method: http.MethodPost, path: set, body: b})
	if err != nil {
		return GUID{}, err
	}
	return entityIDFromHeader(resp.header)
}

// Update changes the columns in body of an existing record (PATCH with
// If-Match,
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api).
// ifMatch is the record's ETag from Retrieve: a stale one fails with a 412 (IsConflict) and changes nothing. An empty
// ifMatch sends If-Match: * — update whatever version is there, but never
// create: a missing record is a 404 (IsNotFound).
func (c *Client) Update(ctx context.Context, set string, key Key, body any, ifMatch string) error {
	if ifMatch == "" {
		ifMatch = "*"
	}
	if err := validETag(ifMatch); err != nil {
		return err
	}
	_, err := c.patch(ctx, "Update "+set, set, key, body, http.Header{"If-Match": {ifMatch}})
	return err
}

// UpsertMode chooses the precondition of an Upsert
// (https://learn.microsoft.com/power-apps/developer/data-platform/use-upsert-insert-update-record).
// The zero value is UpsertCreateOrUpdate.
type UpsertMode int

const (
	// UpsertCreateOrUpdate sends no precondition: the record is created
	// if missing, otherwise updated.
	UpsertCreateOrUpdate UpsertMode = iota
	// UpsertCreateOnly sends If-None-Match: *: the record is created, or
	// the call fails with a 412 (IsConflict) if it exists.
	UpsertCreateOnly
)

// Upsert creates or updates the record with key (a chosen GUID or an
// alternate key; key values must not be repeated in body) and returns its
// id from OData-EntityId. Without If-Match a PATCH can create and run
// plug-ins again, so a failure after the request may have reached
// Dataverse is not retried. For an update that must never create, use
// Update.
func (c *Client) Upsert(ctx context.Context, set string, key Key, body any, mode UpsertMode) (GUID, error) {
	h := http.Header{}
	switch mode {
	case UpsertCreateOrUpdate:
	case UpsertCreateOnly:
		h.Set("If-None-Match", "*")
	default:
		return GUID{}, invalidArg("upsert mode %d", mode)
	}
	resp, err := c.patch(ctx, "Upsert "+set, set, key, body, h)
	if err != nil {
		return GUID{}, err
	}
	return entityIDFromHeader(resp.header)
}

func (c *Client) patch(ctx context.Context, op, set string, key Key, body any, h http.Header) (*response, error) {
	path, err := recordPath(set, key)
	if err != nil {
		return nil, err
	}
	b, err := marshalBody(body)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(b, []byte("null")) {
		return nil, invalidArg("null body")
	}
	return c.do(ctx, &request{op: op, method: http.MethodPatch, path: path, body: b, header: h})
}

// Delete deletes the record with key
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api).
// A non-empty ifMatch (an ETag from Retrieve) makes it conditional: a
// stale ETag is a 412 (IsConflict). A missing record is a 404
// (IsNotFound), also when a retried DELETE had in fact succeeded.
func (c *Client) Delete(ctx context.Context, set string, key Key, ifMatch string) error {
	path, err := recordPath(set, key)
	if err != nil {
		return err
	}
	h := http.Header{}
	if ifMatch != "" {
		if err := validETag(ifMatch); err != nil {
			return err
		}
		h.Set("If-Match", ifMatch)
	}
	_, err = c.do(ctx, &request{op: "Delete " + set, method: http.MethodDelete, path: path, header: h})
	return err
}

// Associate adds the record targetSet(targetID) to the collection-valued
// navigation property (an N:N relationship such as adx_webrole_contact)
// of set(id): POST .../<relationship>/$ref with an absolute @odata.id
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api).
func (c *Client) Associate(ctx context.Context, set string, id GUID, relationship, targetSet string, targetID GUID) error {
	path, err := recordPath(set, ByID(id))
	if err != nil {
		return err
	}
	if err := validName("relationship", relationship); err != nil {
		return err
	}
	target, err := recordPath(targetSet, ByID(targetID))
	if err != nil {
		return err
	}
	b, err := json.Marshal(map[string]string{"@odata.id": c.base + target})
	if err != nil {
		return fmt.Errorf("crmclient: encode reference: %w", err)
	}
	_, err = c.do(ctx, &request{op: "Associate " + relationship, method: http.MethodPost, path: path + "/" + relationship + "/$ref", body: b})
	return err
}

// Disassociate removes targetID from the N:N relationship of set(id):
// DELETE .../<relationship>(<targetID>)/$ref
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api).
func (c *Client) Disassociate(ctx context.Context, set string, id GUID, relationship string, targetID GUID) error {
	path, err := recordPath(set, ByID(id))
	if err != nil {
		return err
	}
	if err := validName("relationship", relationship); err != nil {
		return err
	}
	if targetID.IsZero() {
		return invalidArg("nil GUID as a target id")
	}
	_, err = c.do(ctx, &request{op: "Disassociate " + relationship, method: http.MethodDelete, path: path + "/" + relationship + "(" + targetID.String() + ")/$ref"})
	return err
}

// CallAction calls the unbound action (custom API) name with params
// marshalled as its JSON body (nil sends {}), and decodes the answer's
// response properties into out
// (https://learn.microsoft.com/power-apps/developer/data-platform/custom-api).
// A 204 answer, or a nil out, leaves out untouched. name has no namespace,
// as unbound actions are called. Actions are POSTs and are not retried after a failure that may
// have reached Dataverse.
func (c *Client) CallAction(ctx context.Context, name string, params, out any) error {
	if err := validName("action", name); err != nil {
		return err
	}
	b, err := marshalBody(params)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, &request{op: "Action " + name, method: http.MethodPost, path: name, body: b})
	if err != nil {
		return err
	}
	if out == nil || resp.status == http.StatusNoContent || len(bytes.TrimSpace(resp.body)) == 0 {
		return nil
	}
	return resp.decode(out)
}

// validText refuses a lookup value that is not valid UTF-8.
func validText(what, s string) error {
	if !utf8.ValidString(s) {
		return invalidArg("%s is not valid UTF-8", what)
	}
	return nil
}
