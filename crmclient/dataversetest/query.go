package dataversetest

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/crmgate/crmgate/crmclient/dataversetest/odata"
)

// maxRows is the most rows a page (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results)
// or $count (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/count-rows) carries.
const maxRows = 5000

const (
	annFormatted   = "OData.Community.Display.V1.FormattedValue"
	annNavProperty = "Microsoft.Dynamics.CRM.associatednavigationproperty"
	annLogicalName = "Microsoft.Dynamics.CRM.lookuplogicalname"
	annTotal       = "Microsoft.Dynamics.CRM.totalrecordcount"
	annTotalLimit  = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"
)

type parsedQuery struct {
	sel     []string // nil: all columns
	filter  odata.Filter
	order   odata.OrderBy
	top     int
	count   bool
	expand  []odata.Expand
	expTabs []*table
	expSel  [][]string
}

// query reads the request's query options and parses them for table t.
func (q *apiRequest) query(t *table) (*parsedQuery, error) {
	vals, err := queryOptions(q.r)
	if err != nil {
		return nil, err
	}
	return q.parseQuery(t, vals)
}

// parseQuery parses the query options vals for table t.
func (q *apiRequest) parseQuery(t *table, vals url.Values) (*parsedQuery, error) {
	pq := &parsedQuery{}
	if v, ok := vals["$select"]; ok {
		sel, err := odata.ParseSelect(v[0], t.typ)
		if err != nil {
			return nil, err
		}
		pq.sel = sel
	}
	if v, ok := vals["$filter"]; ok {
		f, err := odata.ParseFilter(substituteAliases(v[0], vals), t.typ)
		if err != nil {
			return nil, err
		}
		pq.filter = f
	}
	if v, ok := vals["$orderby"]; ok {
		o, err := odata.ParseOrderBy(substituteAliases(v[0], vals), t.typ)
		if err != nil {
			return nil, err
		}
		pq.order = o
	}
	if v, ok := vals["$top"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			// Message not documented (unconfirmed).
			return nil, errf(http.StatusBadRequest, "0x0", "Invalid value '%s' for $top query option found. The $top query option requires a non-negative integer value.", v[0])
		}
		pq.top = n
	}
	if v, ok := vals["$count"]; ok {
		switch v[0] {
		case "true":
			pq.count = true
		case "false":
		default:
			return nil, errf(http.StatusBadRequest, "0x0", "'%s' is not a valid count option.", v[0])
		}
	}
	if v, ok := vals["$expand"]; ok {
		exps, err := odata.ParseExpand(v[0])
		if err != nil {
			return nil, err
		}
		for _, e := range exps {
			tt, err := q.h.navTarget(t, e.Nav)
			if err != nil {
				return nil, err
			}
			var sel []string
			if len(e.Select) > 0 && tt != nil {
				if sel, err = odata.ParseSelect(strings.Join(e.Select, ","), tt.typ); err != nil {
					return nil, err
				}
			}
			pq.expand = append(pq.expand, e)
			pq.expTabs = append(pq.expTabs, tt)
			pq.expSel = append(pq.expSel, sel)
		}
	}
	return pq, nil
}

// substituteAliases replaces parameter aliases (@p1) outside string literals
// with their values; an alias with no value is null
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview).
func substituteAliases(src string, vals url.Values) string {
	if !strings.Contains(src, "@") {
		return src
	}
	var b strings.Builder
	quoted := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\'' {
			quoted = !quoted
		}
		if c != '@' || quoted {
			b.WriteByte(c)
			continue
		}
		j := i + 1
		for j < len(src) && (src[j] == '_' || src[j] >= '0' && src[j] <= '9' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z') {
			j++
		}
		if v, ok := vals[src[i:j]]; ok && v[0] != "" {
			b.WriteString(v[0])
		} else {
			b.WriteString("null")
		}
		i = j - 1
	}
	return b.String()
}

// navTarget returns the table a navigation property of t leads to (nil for
// tables the emulator does not hold) or the unknown-property error.
func (h *Handler) navTarget(t *table, nav string) (*table, error) {
	if l, ok := t.lookupByNav(nav); ok {
		return h.tables[l.target], nil
	}
	if o, ok := t.oneToManyByNav(nav); ok {
		return h.tables[o.target], nil
	}
	if r, ok := relationshipByName(nav); ok && (r.entity1 == t.typ.LogicalName || r.entity2 == t.typ.LogicalName) {
		other := r.entity2
		if r.entity2 == t.typ.LogicalName {
			other = r.entity1
		}
		return h.tables[other], nil
	}
	return nil, errf(http.StatusBadRequest, "0x0", "Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.", nav, t.typ.LogicalName)
}

// relatedIDs returns the ids of the records nav leads to from record id of
// t. The caller holds h.mu.
func (h *Handler) relatedIDs(t *table, id, nav string) []string {
	rec := h.records[t.typ.LogicalName][id]
	if l, ok := t.lookupByNav(nav); ok {
		if rec == nil || rec.row[l.column] == nil || rec.targets[l.column] != l.target {
			return nil
		}
		return []string{rec.row[l.column].(string)}
	}
	if o, ok := t.oneToManyByNav(nav); ok {
		var ids []string
		for rid, r := range h.records[o.target] {
			if r.row[o.lookupColumn] == id {
				ids = append(ids, rid)
			}
		}
		sort.Strings(ids)
		return ids
	}
	r, ok := relationshipByName(nav)
	if !ok {
		return nil
	}
	var ids []string
	for pair := range h.links[nav] {
		if r.entity1 == t.typ.LogicalName && pair[0] == id {
			ids = append(ids, pair[1])
		} else if r.entity2 == t.typ.LogicalName && pair[1] == id {
			ids = append(ids, pair[0])
		}
	}
	sort.Strings(ids)
	return ids
}

func etag(rec *record) string { return fmt.Sprintf(`W/"%d"`, rec.version) }

// contextSelect renders "(cols,nav(cols))" for @odata.context.
func contextSelect(pq *parsedQuery) string {
	if pq == nil || (pq.sel == nil && len(pq.expand) == 0) {
		return ""
	}
	parts := append([]string(nil), pq.sel...)
	for i, e := range pq.expand {
		parts = append(parts, e.Nav+"("+strings.Join(pq.expSel[i], ",")+")")
	}
	return "(" + strings.Join(parts, ",") + ")"
}

// renderRow renders one record: @odata.etag, then each column preceded by
// its requested annotations, then expansions. The primary key is always
// present (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/select-columns).
// The caller holds h.mu.
func (q *apiRequest) renderRow(t *table, rec *record, sel []string, pq *parsedQuery) (orderedObject, error) {
	out := orderedObject{{"@odata.etag", etag(rec)}}
	cols := sel
	if cols == nil {
		for _, c := range t.columns {
			cols = append(cols, c.name)
		}
	} else if !contains(cols, t.typ.PrimaryKey) {
		cols = append(append([]string(nil), cols...), t.typ.PrimaryKey)
	}
	for _, c := range cols {
		v := rec.row[c]
		out = append(out, q.annotations(t, rec, c, v)...)
		out = append(out, kv{c, v})
	}
	if pq == nil {
		return out, nil
	}
	for i, e := range pq.expand {
		val, err := q.expandValue(t, rec, e, pq.expTabs[i], pq.expSel[i])
		if err != nil {
			return nil, err
		}
		out = append(out, kv{e.Nav, val})
	}
	return out, nil
}

// annotations returns the requested annotations of column c
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/select-columns):
// formatted values of choices and lookups, and the lookup's logical name
// and navigation property.
func (q *apiRequest) annotations(t *table, rec *record, c string, v any) orderedObject {
	if len(q.prefer.annotations) == 0 || v == nil {
		return nil
	}
	var out orderedObject
	if labels, ok := t.choices[c]; ok && q.prefer.wants(annFormatted) {
		if f, ok := v.(float64); ok {
			if label, ok := labels[int(f)]; ok {
				out = append(out, kv{c + "@" + annFormatted, label})
			}
		}
	}
	target := rec.targets[c]
	if target == "" {
		return out
	}
	var nav string
	for _, l := range t.lookups {
		if l.column == c && l.target == target {
			nav = l.nav
		}
	}
	if q.prefer.wants(annFormatted) {
		if tt := q.h.tables[target]; tt != nil {
			if trec := q.h.records[target][v.(string)]; trec != nil && trec.row[tt.primaryName] != nil {
				out = append(out, kv{c + "@" + annFormatted, trec.row[tt.primaryName]})
			}
		}
	}
	if q.prefer.wants(annNavProperty) && nav != "" {
		out = append(out, kv{c + "@" + annNavProperty, nav})
	}
	if q.prefer.wants(annLogicalName) {
		out = append(out, kv{c + "@" + annLogicalName, target})
	}
	return out
}

// expandValue renders one $expand: an object (or null) for a single-valued
// navigation property, an array for a collection, @odata.id objects for
// /$ref. The caller holds h.mu.
func (q *apiRequest) expandValue(t *table, rec *record, e odata.Expand, tt *table, sel []string) (any, error) {
	ids := q.h.relatedIDs(t, rec.row[t.typ.PrimaryKey].(string), e.Nav)
	_, single := t.lookupByNav(e.Nav)
	if tt == nil {
		if single {
			return nil, nil
		}
		return []any{}, nil
	}
	var rows []odata.Row
	for _, id := range ids {
		if r := q.h.records[tt.typ.LogicalName][id]; r != nil {
			rows = append(rows, odata.Row(r.row))
		}
	}
	if e.Filter != "" {
		f, err := odata.ParseFilter(e.Filter, tt.typ)
		if err != nil {
			return nil, err
		}
		kept := rows[:0]
		for _, r := range rows {
			if f.Match(r) {
				kept = append(kept, r)
			}
		}
		rows = kept
	}
	if e.OrderBy != "" {
		o, err := odata.ParseOrderBy(e.OrderBy, tt.typ)
		if err != nil {
			return nil, err
		}
		o.Sort(rows, tt.typ)
	}
	if e.Top > 0 && len(rows) > e.Top {
		rows = rows[:e.Top]
	}
	out := make([]any, 0, len(rows))
	for _, r := range rows {
		id := r[tt.typ.PrimaryKey].(string)
		if e.Ref {
			out = append(out, orderedObject{{"@odata.id", q.entityURL(tt, id)}})
			continue
		}
		obj, err := q.renderRow(tt, q.h.records[tt.typ.LogicalName][id], sel, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	if single {
		if len(out) == 0 {
			return nil, nil
		}
		return out[0], nil
	}
	return out, nil
}

// collection serves GET of an entity set, or of a collection-valued
// navigation property when only is non-nil (the allowed ids).
func (q *apiRequest) collection(t *table, only []string, ctxSet string) error {
	vals, err := queryOptions(q.r)
	if err != nil {
		return err
	}
	pq, err := q.parseQuery(t, vals)
	if err != nil {
		return err
	}
	size := maxRows
	var applied []string
	if q.prefer.maxPageSize > 0 {
		size = q.prefer.maxPageSize
		applied = append(applied, "odata.maxpagesize="+strconv.Itoa(size))
	}
	order := pageOrder(pq.order, t.typ.PrimaryKey)
	page, after := 1, odata.Row(nil)
	if v, ok := vals["$skiptoken"]; ok {
		tok, err := decodeSkipToken(v[0], t.typ, order)
		if err != nil {
			return badSkipToken(err)
		}
		page, after = tok.page, tok.last
	}
	h := q.h
	h.mu.Lock()
	defer h.mu.Unlock()
	var rows []odata.Row
	var ids []string
	if only != nil {
		ids = only
	} else {
		for id := range h.records[t.typ.LogicalName] {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		rec := h.records[t.typ.LogicalName][id]
		if rec == nil {
			continue
		}
		if pq.filter == nil || pq.filter.Match(odata.Row(rec.row)) {
			rows = append(rows, odata.Row(rec.row))
		}
	}
	order.Sort(rows, t.typ)
	total := len(rows)
	// The page starts after the previous page's last row (keyset paging,
	// paging.go), wherever rows were added or deleted since.
	start := 0
	if after != nil {
		start = sort.Search(len(rows), func(i int) bool { return order.Compare(rows[i], after, t.typ) > 0 })
	}
	limit := len(rows)
	if q.prefer.maxPageSize == 0 && pq.top > 0 {
		// $top is ignored when odata.maxpagesize is present
		// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results).
		// Without it every page before this one had maxRows rows of the
		// $top. Whether Dataverse pages a $top above 5,000 at all is not
		// documented.
		limit = min(limit, start+max(pq.top-(page-1)*maxRows, 0))
	}
	end := min(start+size, limit)
	var next string
	if end < limit {
		next = q.nextLink(encodeSkipToken(page+1, t.typ, order, rows[start], rows[end-1]))
	}
	rows = rows[start:end]
	value := make([]any, 0, len(rows))
	for _, r := range rows {
		obj, err := q.renderRow(t, h.records[t.typ.LogicalName][r[t.typ.PrimaryKey].(string)], pq.sel, pq)
		if err != nil {
			return err
		}
		value = append(value, obj)
	}
	body := orderedObject{{"@odata.context", q.apiURL() + "/$metadata#" + ctxSet + contextSelect(pq)}}
	if q.prefer.wants(annTotal) {
		n := -1
		if pq.count {
			n = min(total, maxRows)
		}
		body = append(body, kv{"@" + annTotal, n})
	}
	if q.prefer.wants(annTotalLimit) {
		body = append(body, kv{"@" + annTotalLimit, pq.count && total > maxRows})
	}
	if pq.count {
		body = append(body, kv{"@odata.count", min(total, maxRows)})
	}
	body = append(body, kv{"value", value})
	if next != "" {
		body = append(body, kv{"@odata.nextLink", next})
	}
	if len(q.prefer.annotations) > 0 {
		applied = append(applied, "odata.include-annotations="+q.prefer.annotationsRaw)
	}
	if len(applied) > 0 {
		q.w.Header().Set("Preference-Applied", strings.Join(applied, ","))
	}
	writeJSON(q.w, http.StatusOK, body)
	return nil
}

// nextLink is the request URL with its $skiptoken, if any, replaced by
// skiptoken. The other query options are kept as the client sent them.
func (q *apiRequest) nextLink(skiptoken string) string {
	var kept []string
	for _, p := range strings.Split(q.r.URL.RawQuery, "&") {
		if p == "" || strings.HasPrefix(p, "$skiptoken=") || strings.HasPrefix(p, "%24skiptoken=") {
			continue
		}
		kept = append(kept, p)
	}
	kept = append(kept, "$skiptoken="+skipTokenEscape(skiptoken))
	return q.base + q.r.URL.Path + "?" + strings.Join(kept, "&")
}

// countOnly serves GET /<set>/$count: 200 text/plain with a bare number
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/count-rows), capped at 5000.
func (q *apiRequest) countOnly(t *table) error {
	pq, err := q.query(t)
	if err != nil {
		return err
	}
	q.h.mu.Lock()
	n := 0
	for _, rec := range q.h.records[t.typ.LogicalName] {
		if pq.filter == nil || pq.filter.Match(odata.Row(rec.row)) {
			n++
		}
	}
	q.h.mu.Unlock()
	q.w.Header().Set("Content-Type", "text/plain")
	q.w.Header().Set("OData-Version", "4.0")
	q.w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(q.w, min(n, maxRows))
	return nil
}

// retrieve serves GET /<set>(<id>)
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api),
// with conditional GET (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api).
func (q *apiRequest) retrieve(t *table, id string) error {
	pq, err := q.query(t)
	if err != nil {
		return err
	}
	h := q.h
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.records[t.typ.LogicalName][id]
	if rec == nil {
		return recordNotFound(t.typ.LogicalName, id)
	}
	// A 304 is never returned with $expand or odata.include-annotations.
	if inm := q.r.Header.Get("If-None-Match"); inm == etag(rec) && len(pq.expand) == 0 && q.prefer.annotationsRaw == "" {
		q.w.Header().Set("OData-Version", "4.0")
		q.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	return q.writeEntity(http.StatusOK, t, rec, pq)
}

// writeEntity writes a single-entity body. The caller holds h.mu.
func (q *apiRequest) writeEntity(status int, t *table, rec *record, pq *parsedQuery) error {
	obj, err := q.renderRow(t, rec, pq.sel, pq)
	if err != nil {
		return err
	}
	body := append(orderedObject{{"@odata.context", q.apiURL() + "/$metadata#" + t.typ.EntitySet + contextSelect(pq) + "/$entity"}}, obj...)
	if len(q.prefer.annotations) > 0 {
		q.w.Header().Add("Preference-Applied", "odata.include-annotations="+q.prefer.annotationsRaw)
	}
	writeJSON(q.w, status, body)
	return nil
}
