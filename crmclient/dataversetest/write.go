package dataversetest

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/crmgate/crmgate/crmclient/dataversetest/odata"
)

// pendingLink is an N:N association requested by a collection-valued
// @odata.bind in a create body, applied after the record exists.
type pendingLink struct {
	nav string
	id  string
}

// payloadError is the 400 ODataClientPayloadError
// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes); the
// text after "Entity :'<set>'" is the emulator's own (unconfirmed).
func payloadError(t *table, format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, codePayloadError, "Error identified in Payload provided by the user for Entity :'%s' ----> %s", t.typ.EntitySet, fmt.Sprintf(format, args...))
}

func invalidProperty(t *table, name string) *apiError {
	return errf(http.StatusBadRequest, "0x0", "Invalid property '%s' was found in entity 'Microsoft.Dynamics.CRM.%s'.", name, t.typ.LogicalName)
}

// applyBody writes a JSON body onto rec. The caller holds h.mu.
func (h *Handler) applyBody(t *table, rec *record, body map[string]any) ([]pendingLink, error) {
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var links []pendingLink
	for _, k := range keys {
		v := body[k]
		if nav, ok := strings.CutSuffix(k, "@odata.bind"); ok {
			l, isLookup := t.lookupByNav(nav)
			if isLookup {
				if err := h.bindLookup(t, rec, l, v); err != nil {
					return nil, err
				}
				continue
			}
			if _, isRel := relationshipByName(nav); isRel {
				refs, ok := v.([]any)
				if !ok {
					return nil, payloadError(t, "A collection-valued navigation property '%s' must be bound to an array of entity references.", nav)
				}
				tt, err := h.navTarget(t, nav)
				if err != nil {
					return nil, err
				}
				for _, ref := range refs {
					s, _ := ref.(string)
					set, id, ok := parseEntityRef(s)
					if !ok || tt == nil || set != tt.typ.EntitySet {
						return nil, payloadError(t, "The entity reference '%v' is not valid for '%s'.", ref, nav)
					}
					if h.records[tt.typ.LogicalName][id] == nil {
						return nil, recordNotFound(tt.typ.LogicalName, id)
					}
					links = append(links, pendingLink{nav: nav, id: id})
				}
				continue
			}
			for _, l := range t.lookups {
				if l.logical == nav {
					// https://learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors
					return nil, payloadError(t, "An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload.", nav)
				}
			}
			return nil, invalidProperty(t, nav)
		}
		if strings.Contains(k, "@") {
			continue // instance annotations such as @odata.type
		}
		if l, ok := t.lookupByNav(k); ok {
			if v != nil {
				return nil, payloadError(t, "Deep insert through '%s' is not emulated.", k)
			}
			rec.row[l.column] = nil
			delete(rec.targets, l.column)
			continue
		}
		c, ok := t.column(k)
		if !ok || c.kind == odata.KindLookup {
			return nil, invalidProperty(t, k)
		}
		if c.readOnly {
			continue
		}
		if k == t.typ.PrimaryKey {
			continue // the id comes from the URL or the create path
		}
		cv, err := convert(c.kind, v)
		if err != nil {
			return nil, payloadError(t, "Cannot convert the literal '%v' to the expected type '%s'.", v, edmName(c.kind))
		}
		rec.row[k] = cv
	}
	return links, nil
}

// bindLookup sets a single-valued lookup from "<nav>@odata.bind".
func (h *Handler) bindLookup(t *table, rec *record, l lookup, v any) error {
	if v == nil {
		rec.row[l.column] = nil
		delete(rec.targets, l.column)
		return nil
	}
	s, _ := v.(string)
	set, id, ok := parseEntityRef(s)
	if !ok {
		return payloadError(t, "The value '%v' of '%s@odata.bind' is not an entity reference.", v, l.nav)
	}
	if tt := h.tables[l.target]; tt != nil {
		if set != tt.typ.EntitySet {
			return payloadError(t, "The entity set '%s' does not match navigation property '%s'.", set, l.nav)
		}
		if h.records[l.target][id] == nil {
			return recordNotFound(l.target, id)
		}
	}
	rec.row[l.column] = id
	rec.targets[l.column] = l.target
	return nil
}

func edmName(k odata.Kind) string {
	switch k {
	case odata.KindString:
		return "Edm.String"
	case odata.KindGuid, odata.KindLookup:
		return "Edm.Guid"
	case odata.KindInt, odata.KindChoice:
		return "Edm.Int32"
	case odata.KindDecimal:
		return "Edm.Decimal"
	case odata.KindBool:
		return "Edm.Boolean"
	case odata.KindDateTime:
		return "Edm.DateTimeOffset"
	}
	return "Edm.Untyped"
}

// convert checks and normalises a JSON value for a column kind.
func convert(k odata.Kind, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	bad := fmt.Errorf("dataversetest: bad value %v", v)
	switch k {
	case odata.KindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case odata.KindGuid:
		if s, ok := v.(string); ok && guidPattern.MatchString(s) {
			return strings.ToLower(s), nil
		}
	case odata.KindInt, odata.KindChoice:
		if f, ok := v.(float64); ok && f == math.Trunc(f) {
			return f, nil
		}
	case odata.KindDecimal:
		if f, ok := v.(float64); ok {
			return f, nil
		}
	case odata.KindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case odata.KindDateTime:
		if s, ok := v.(string); ok {
			if tm, err := time.Parse(time.RFC3339, s); err == nil {
				return tm.UTC().Format(time.RFC3339), nil
			}
			if tm, err := time.Parse(time.DateOnly, s); err == nil {
				return tm.UTC().Format(time.RFC3339), nil
			}
		}
	}
	return nil, bad
}

// newRecord returns an empty record of t with the defaults applied. The
// caller holds h.mu.
func (h *Handler) newRecord(t *table, id string) *record {
	rec := &record{row: map[string]any{}, targets: map[string]string{}}
	for _, c := range t.columns {
		rec.row[c.name] = nil
	}
	for k, v := range t.defaults {
		rec.row[k] = v
	}
	rec.row[t.typ.PrimaryKey] = id
	now := h.now().UTC().Format(time.RFC3339)
	rec.row["createdon"] = now
	return rec
}

// touch recomputes derived columns and gives rec a new version. The caller
// holds h.mu.
func (h *Handler) touch(t *table, rec *record) {
	if t.typ.LogicalName == "contact" {
		first, _ := rec.row["firstname"].(string)
		last, _ := rec.row["lastname"].(string)
		if full := strings.TrimSpace(first + " " + last); full != "" {
			rec.row["fullname"] = full
		} else {
			rec.row["fullname"] = nil
		}
	}
	rec.row["modifiedon"] = h.now().UTC().Format(time.RFC3339)
	h.version++
	rec.version = h.version
}

// insert creates a record from body. The caller holds h.mu.
func (h *Handler) insert(t *table, id string, body map[string]any) (*record, error) {
	if pk, ok := body[t.typ.PrimaryKey].(string); ok && id == "" {
		if !guidPattern.MatchString(pk) {
			return nil, payloadError(t, "Cannot convert the literal '%v' to the expected type 'Edm.Guid'.", pk)
		}
		id = strings.ToLower(pk)
	}
	if id == "" {
		id = h.newID()
	}
	if h.records[t.typ.LogicalName][id] != nil {
		return nil, errf(http.StatusPreconditionFailed, codeDuplicateRecord, "A record with matching key values already exists.")
	}
	rec := h.newRecord(t, id)
	links, err := h.applyBody(t, rec, body)
	if err != nil {
		return nil, err
	}
	h.touch(t, rec)
	h.records[t.typ.LogicalName][id] = rec
	for _, l := range links {
		h.link(t, id, l.nav, l.id)
	}
	return rec, nil
}

// link associates two records through an N:N relationship (idempotent).
// The caller holds h.mu.
func (h *Handler) link(t *table, id, nav, other string) {
	r, _ := relationshipByName(nav)
	if r.entity1 == t.typ.LogicalName {
		h.links[nav][[2]string{id, other}] = true
	} else {
		h.links[nav][[2]string{other, id}] = true
	}
}

func (h *Handler) unlink(t *table, id, nav, other string) {
	r, _ := relationshipByName(nav)
	if r.entity1 == t.typ.LogicalName {
		delete(h.links[nav], [2]string{id, other})
	} else {
		delete(h.links[nav], [2]string{other, id})
	}
}

// create serves POST /<set>
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/create-entity-web-api).
func (q *apiRequest) create(t *table) error {
	body, err := q.readBody()
	if err != nil {
		return err
	}
	pq, err := q.query(t)
	if err != nil {
		return err
	}
	h := q.h
	h.mu.Lock()
	defer h.mu.Unlock()
	rec, err := h.insert(t, "", body)
	if err != nil {
		return err
	}
	id := rec.row[t.typ.PrimaryKey].(string)
	if q.prefer.representation {
		q.w.Header().Set("Preference-Applied", "return=representation")
		return q.writeEntity(http.StatusCreated, t, rec, pq)
	}
	q.w.Header().Set("OData-EntityId", q.entityURL(t, id))
	q.w.Header().Set("OData-Version", "4.0")
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkIfMatch applies If-Match to an existing record
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api).
func (q *apiRequest) checkIfMatch(rec *record) error {
	im := q.r.Header.Get("If-Match")
	if im == "" || im == "*" || rec == nil {
		return nil
	}
	if im != etag(rec) {
		return errf(http.StatusPreconditionFailed, codeConcurrencyMismatch, "The version of the existing record doesn't match the RowVersion property provided.")
	}
	return nil
}

// update serves PATCH /<set>(<key>): update, or upsert without If-Match,
// create-only with If-None-Match: *
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api,
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api).
func (q *apiRequest) update(t *table, id, key string) error {
	body, err := q.readBody()
	if err != nil {
		return err
	}
	h := q.h
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.records[t.typ.LogicalName][id]
	created := false
	switch {
	case rec == nil && q.r.Header.Get("If-Match") != "":
		return recordNotFound(t.typ.LogicalName, id)
	case rec != nil && q.r.Header.Get("If-None-Match") == "*":
		// The text is documented (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api);
		// the code 0x80040237 is inferred.
		return errf(http.StatusPreconditionFailed, codeDuplicateRecord, "A record with matching key values already exists.")
	case rec == nil:
		// Upsert by alternate key copies key values from the URL
		// (https://learn.microsoft.com/power-apps/developer/data-platform/use-upsert-insert-update-record).
		if parts, ok := parseAltKey(key); ok && !guidPattern.MatchString(strings.Trim(key, "'")) {
			for k, v := range parts {
				if _, present := body[k]; !present {
					body[k] = v
				}
			}
		}
		if rec, err = h.insert(t, id, body); err != nil {
			return err
		}
		created = true
	default:
		if err := q.checkIfMatch(rec); err != nil {
			return err
		}
		scratch := &record{row: cloneMap(rec.row), targets: cloneStrings(rec.targets), version: rec.version}
		if _, err := h.applyBody(t, scratch, body); err != nil {
			return err
		}
		rec.row, rec.targets = scratch.row, scratch.targets
		h.touch(t, rec)
		if t.typ.LogicalName == "contact" {
			ev := contactUpdated(id, body)
			ev.user = q.user.userID
			h.emitWebhook(ev)
		}
	}
	if q.prefer.representation {
		// $expand is ignored on update
		// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api).
		pq, err := q.query(t)
		if err != nil {
			return err
		}
		pq.expand, pq.expTabs, pq.expSel = nil, nil, nil
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		q.w.Header().Set("ETag", etag(rec))
		q.w.Header().Set("Preference-Applied", "return=representation")
		return q.writeEntity(status, t, rec, pq)
	}
	q.w.Header().Set("OData-EntityId", q.entityURL(t, id))
	q.w.Header().Set("OData-Version", "4.0")
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cloneStrings(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// delete serves DELETE /<set>(<id>)
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api).
func (q *apiRequest) delete(t *table, id string) error {
	h := q.h
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.records[t.typ.LogicalName][id]
	if rec == nil {
		return recordNotFound(t.typ.LogicalName, id)
	}
	if err := q.checkIfMatch(rec); err != nil {
		return err
	}
	delete(h.records[t.typ.LogicalName], id)
	if t.typ.LogicalName == "contact" {
		h.emitWebhook(hookEvent{message: "Delete", entity: "contact", id: id, target: entityReference("contact", id), user: q.user.userID})
	}
	for _, r := range relationships {
		for pair := range h.links[r.name] {
			if (r.entity1 == t.typ.LogicalName && pair[0] == id) || (r.entity2 == t.typ.LogicalName && pair[1] == id) {
				delete(h.links[r.name], pair)
			}
		}
	}
	// adx_externalidentity deletion cascades from contact
	// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/adx_externalidentity).
	if t.typ.LogicalName == "contact" {
		for eid, e := range h.records["adx_externalidentity"] {
			if e.row["_adx_contactid_value"] == id {
				delete(h.records["adx_externalidentity"], eid)
			}
		}
	}
	q.w.Header().Set("OData-Version", "4.0")
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// property serves /<set>(<id>)/<property or navigation property>.
func (q *apiRequest) property(t *table, id string, seg segment) error {
	h := q.h
	if tt, err := h.navTarget(t, seg.name); err == nil && !seg.hasKey {
		if q.r.Method != http.MethodGet {
			return methodNotAllowed(q.r.Method)
		}
		h.mu.Lock()
		exists := h.records[t.typ.LogicalName][id] != nil
		ids := h.relatedIDs(t, id, seg.name)
		h.mu.Unlock()
		if !exists {
			return recordNotFound(t.typ.LogicalName, id)
		}
		if tt == nil {
			return segmentNotFound(seg.name)
		}
		if _, single := t.lookupByNav(seg.name); single {
			if len(ids) == 0 {
				q.w.WriteHeader(http.StatusNoContent)
				return nil
			}
			return q.retrieve(tt, ids[0])
		}
		if ids == nil {
			ids = []string{}
		}
		return q.collection(tt, ids, tt.typ.EntitySet)
	}
	c, ok := t.column(seg.name)
	if !ok || seg.hasKey {
		return segmentNotFound(seg.name)
	}
	var put map[string]any
	if q.r.Method == http.MethodPut {
		var err error
		if put, err = q.readBody(); err != nil {
			return err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.records[t.typ.LogicalName][id]
	if rec == nil {
		return recordNotFound(t.typ.LogicalName, id)
	}
	switch q.r.Method {
	case http.MethodGet:
		v := rec.row[c.name]
		if v == nil {
			q.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		writeJSON(q.w, http.StatusOK, orderedObject{
			{"@odata.context", q.apiURL() + "/$metadata#" + t.typ.EntitySet + "(" + id + ")/" + c.name},
			{"value", v},
		})
		return nil
	case http.MethodPut, http.MethodDelete:
		if c.readOnly || c.kind == odata.KindLookup || c.name == t.typ.PrimaryKey {
			return invalidProperty(t, c.name)
		}
		if err := q.checkIfMatch(rec); err != nil {
			return err
		}
		var v any
		if put != nil {
			var err error
			if v, err = convert(c.kind, put["value"]); err != nil {
				return payloadError(t, "Cannot convert the literal '%v' to the expected type '%s'.", put["value"], edmName(c.kind))
			}
		}
		rec.row[c.name] = v
		h.touch(t, rec)
		q.w.Header().Set("OData-Version", "4.0")
		q.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodNotAllowed(q.r.Method)
}
