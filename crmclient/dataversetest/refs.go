package dataversetest

import (
	"net/http"
	"strings"
)

// ref serves /<set>(<id>)/<nav>[(<rid>)]/$ref
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api): POST to
// associate, DELETE to disassociate, PUT/DELETE for a single-valued
// navigation property, GET to list references.
func (q *apiRequest) ref(t *table, id string, nav segment) error {
	h := q.h
	tt, err := h.navTarget(t, nav.name)
	if err != nil {
		return segmentNotFound(nav.name)
	}
	l, single := t.lookupByNav(nav.name)
	_, isRel := relationshipByName(nav.name)
	var body map[string]any
	if q.r.Method == http.MethodPost || q.r.Method == http.MethodPut {
		if body, err = q.readBody(); err != nil {
			return err
		}
	}
	vals, err := queryOptions(q.r)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.records[t.typ.LogicalName][id]
	if rec == nil {
		return recordNotFound(t.typ.LogicalName, id)
	}
	// target resolves an @odata.id (or $id) to a record id of tt.
	target := func(ref string) (string, error) {
		set, rid, ok := parseEntityRef(ref)
		if !ok || tt == nil || set != tt.typ.EntitySet {
			return "", payloadError(t, "The entity reference '%s' is not valid for '%s'.", ref, nav.name)
		}
		if h.records[tt.typ.LogicalName][rid] == nil {
			return "", recordNotFound(tt.typ.LogicalName, rid)
		}
		return rid, nil
	}
	noContent := func() error {
		q.w.Header().Set("OData-Version", "4.0")
		q.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	switch {
	case q.r.Method == http.MethodGet && !nav.hasKey:
		value := []any{}
		if tt != nil {
			for _, rid := range h.relatedIDs(t, id, nav.name) {
				value = append(value, orderedObject{{"@odata.id", q.entityURL(tt, rid)}})
			}
		}
		writeJSON(q.w, http.StatusOK, orderedObject{{"@odata.context", q.apiURL() + "/$metadata#Collection($ref)"}, {"value", value}})
		return nil
	case q.r.Method == http.MethodPost && isRel && !nav.hasKey:
		s, _ := body["@odata.id"].(string)
		rid, err := target(s)
		if err != nil {
			return err
		}
		// Associating an existing pair again succeeds here; the real
		// service's behaviour is not documented (unconfirmed).
		h.link(t, id, nav.name, rid)
		q.emitAssociation("Associate", t, id, tt, nav.name, rid)
		return noContent()
	case q.r.Method == http.MethodDelete && isRel:
		var ref string
		if nav.hasKey {
			ref = tt.typ.EntitySet + "(" + strings.Trim(nav.key, "'") + ")"
		} else if v, ok := vals["$id"]; ok {
			ref = v[0]
		} else {
			return errf(http.StatusBadRequest, "0x0", "The $id query option is required to remove a reference from '%s'.", nav.name)
		}
		rid, err := target(ref)
		if err != nil {
			return err
		}
		h.unlink(t, id, nav.name, rid)
		q.emitAssociation("Disassociate", t, id, tt, nav.name, rid)
		return noContent()
	case q.r.Method == http.MethodPut && single && !nav.hasKey:
		s, _ := body["@odata.id"].(string)
		if err := q.checkIfMatch(rec); err != nil {
			return err
		}
		if err := h.bindLookup(t, rec, l, s); err != nil {
			return err
		}
		h.touch(t, rec)
		return noContent()
	case q.r.Method == http.MethodDelete && single && !nav.hasKey:
		if rec.targets[l.column] == l.target {
			rec.row[l.column] = nil
			delete(rec.targets, l.column)
			h.touch(t, rec)
		}
		return noContent()
	}
	return methodNotAllowed(q.r.Method)
}
