package dataversetest

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// seedOrder creates tables so that most lookups point at existing rows;
// lookups are applied in a second pass anyway.
var seedOrder = []string{"accounts", "contacts", "adx_webroles", "powerpagecomponents", "adx_invitations", "adx_externalidentities"}

// LoadSeed adds records and N:N memberships from a JSON document:
//
//	{
//	  "accounts":  [{"accountid": "<guid>", "name": "Contoso"}],
//	  "contacts":  [{"contactid": "<guid>", "firstname": "Ann", "lastname": "Lee",
//	                 "parentcustomerid_account@odata.bind": "/accounts(<guid>)"}],
//	  "adx_webroles": [...], "adx_invitations": [...],
//	  "adx_externalidentities": [...], "powerpagecomponents": [...],
//	  "associations": [{"relationship": "adx_webrole_contact",
//	                    "contactid": "<guid>", "adx_webroleid": "<guid>"}]
//	}
//
// Each record is written as a Web API create body (columns by logical name,
// lookups with <nav>@odata.bind), with its primary key; a record without a
// primary key gets one from NewID. An association names the relationship
// and both records by their primary key column. Unknown members and
// invalid records are errors; on error the records loaded so far remain.
func (h *Handler) LoadSeed(r io.Reader) error {
	var doc map[string]json.RawMessage
	dec := json.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("dataversetest: seed: %w", err)
	}
	for name := range doc {
		if _, ok := h.bySet[name]; !ok && name != "associations" {
			return fmt.Errorf("dataversetest: seed: unknown member %q", name)
		}
	}
	type pending struct {
		t     *table
		id    string
		binds map[string]any
	}
	var later []pending
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range seedOrder {
		raw, ok := doc[set]
		if !ok {
			continue
		}
		t := h.bySet[set]
		var rows []map[string]any
		if err := json.Unmarshal(raw, &rows); err != nil {
			return fmt.Errorf("dataversetest: seed: %s: %w", set, err)
		}
		for i, row := range rows {
			binds := map[string]any{}
			for k, v := range row {
				if strings.HasSuffix(k, "@odata.bind") {
					binds[k] = v
					delete(row, k)
				}
			}
			rec, err := h.insert(t, "", row)
			if err != nil {
				return fmt.Errorf("dataversetest: seed: %s[%d]: %w", set, i, err)
			}
			later = append(later, pending{t: t, id: rec.row[t.typ.PrimaryKey].(string), binds: binds})
		}
	}
	for _, p := range later {
		if len(p.binds) == 0 {
			continue
		}
		rec := h.records[p.t.typ.LogicalName][p.id]
		links, err := h.applyBody(p.t, rec, p.binds)
		if err != nil {
			return fmt.Errorf("dataversetest: seed: %s(%s): %w", p.t.typ.EntitySet, p.id, err)
		}
		for _, l := range links {
			h.link(p.t, p.id, l.nav, l.id)
		}
		h.touch(p.t, rec)
	}
	if raw, ok := doc["associations"]; ok {
		var assocs []map[string]string
		if err := json.Unmarshal(raw, &assocs); err != nil {
			return fmt.Errorf("dataversetest: seed: associations: %w", err)
		}
		for i, a := range assocs {
			rel, ok := relationshipByName(a["relationship"])
			if !ok {
				return fmt.Errorf("dataversetest: seed: associations[%d]: unknown relationship %q", i, a["relationship"])
			}
			t1, t2 := h.tables[rel.entity1], h.tables[rel.entity2]
			id1, id2 := strings.ToLower(a[t1.typ.PrimaryKey]), strings.ToLower(a[t2.typ.PrimaryKey])
			if h.records[rel.entity1][id1] == nil || h.records[rel.entity2][id2] == nil {
				return fmt.Errorf("dataversetest: seed: associations[%d]: %s %q or %s %q does not exist", i, t1.typ.PrimaryKey, id1, t2.typ.PrimaryKey, id2)
			}
			h.links[rel.name][[2]string{id1, id2}] = true
		}
	}
	return nil
}

// Row returns a copy of the record with primary key id in entitySet, for
// tests that check what a client wrote.
func (h *Handler) Row(entitySet, id string) (map[string]any, bool) {
	t, ok := h.bySet[entitySet]
	if !ok {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.records[t.typ.LogicalName][strings.ToLower(id)]
	if rec == nil {
		return nil, false
	}
	return cloneMap(rec.row), true
}

// Associated returns the primary keys of the records related to id of
// entitySet through the N:N relationship, sorted.
func (h *Handler) Associated(entitySet, id, relationship string) []string {
	t, ok := h.bySet[entitySet]
	if !ok {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := h.relatedIDs(t, strings.ToLower(id), relationship)
	sort.Strings(ids)
	return ids
}
