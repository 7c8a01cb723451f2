package dataversetest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// segment is one path segment: a name with an optional key in parentheses.
type segment struct {
	name   string
	key    string
	hasKey bool
}

// splitPath splits the resource path on '/' outside quotes and parentheses.
func splitPath(p string) []segment {
	var segs []segment
	depth, quoted, start := 0, false, 0
	flush := func(s string) {
		if s == "" {
			return
		}
		seg := segment{name: s}
		if i := strings.IndexByte(s, '('); i >= 0 && strings.HasSuffix(s, ")") {
			seg = segment{name: s[:i], key: s[i+1 : len(s)-1], hasKey: true}
		}
		segs = append(segs, seg)
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '/' && depth == 0:
			flush(p[start:i])
			start = i + 1
		}
	}
	flush(p[start:])
	return segs
}

// opName is the operation name counted by Requests.
func opName(method string, segs []segment) string {
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = s.name
		if s.hasKey {
			parts[i] += "()"
		}
	}
	return method + " " + strings.Join(parts, "/")
}

func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(APIPrefix, "/")), "/")
	segs := splitPath(rest)
	h.count(opName(r.Method, segs))
	hint := h.enter()
	defer h.leave()
	if hint != "" {
		// Sent on every answer, refusals included: the recommendation
		// describes the environment, not the request
		// (https://learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests).
		w.Header().Set("x-ms-dop-hint", hint)
	}
	info, err := h.authenticate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	remaining, err := h.limiter.acquire(info.userID, h.now())
	if err != nil {
		writeError(w, err)
		return
	}
	defer h.limiter.release(info.userID)
	w.Header().Set("x-ms-ratelimit-burst-remaining-xrm-requests", strconv.Itoa(remaining))
	if h.applyFaults(w, r) {
		return
	}
	req := &apiRequest{h: h, w: w, r: r, segs: segs, user: info, base: h.baseURL(r), prefer: parsePrefer(r.Header.Values("Prefer"))}
	if err := req.route(); err != nil {
		writeError(w, err)
	}
}

// apiRequest carries one Web API request through routing.
type apiRequest struct {
	h      *Handler
	w      http.ResponseWriter
	r      *http.Request
	segs   []segment
	user   tokenInfo
	base   string
	prefer preferences
}

func (q *apiRequest) apiURL() string { return q.base + strings.TrimSuffix(APIPrefix, "/") }

func (q *apiRequest) route() error {
	h, segs, method := q.h, q.segs, q.r.Method
	if len(segs) == 0 {
		if method != http.MethodGet {
			return methodNotAllowed(method)
		}
		return q.serviceDocument()
	}
	first := segs[0]
	if first.name == "WhoAmI" && (!first.hasKey || first.key == "") && len(segs) == 1 {
		if method != http.MethodGet {
			return noResource(q.base + q.r.URL.RequestURI())
		}
		return q.whoAmI()
	}
	t, ok := h.bySet[first.name]
	if ok && h.denied(q.user.clientID, method, first.name) {
		return errf(http.StatusForbidden, codePrivilegeDenied, "The user does not hold the necessary privileges.")
	}
	if !ok {
		if _, isAction := h.opts.Actions[first.name]; isAction && !first.hasKey && len(segs) == 1 {
			if method != http.MethodPost {
				return noResource(q.base + q.r.URL.RequestURI())
			}
			return q.action(first.name)
		}
		return segmentNotFound(first.name)
	}
	if !first.hasKey {
		switch {
		case len(segs) == 1 && method == http.MethodGet:
			return q.collection(t, nil, t.typ.EntitySet)
		case len(segs) == 1 && method == http.MethodPost:
			return q.create(t)
		case len(segs) == 2 && segs[1].name == "$count" && method == http.MethodGet:
			return q.countOnly(t)
		case len(segs) == 1:
			return methodNotAllowed(method)
		}
		return segmentNotFound(segs[1].name)
	}
	id, err := q.resolveKey(t, first.key, method == http.MethodPatch)
	if err != nil {
		return err
	}
	switch len(segs) {
	case 1:
		switch method {
		case http.MethodGet:
			return q.retrieve(t, id)
		case http.MethodPatch:
			return q.update(t, id, first.key)
		case http.MethodDelete:
			return q.delete(t, id)
		}
		return methodNotAllowed(method)
	case 2:
		return q.property(t, id, segs[1])
	case 3:
		if segs[2].name == "$ref" {
			return q.ref(t, id, segs[1])
		}
	}
	return segmentNotFound(segs[len(segs)-1].name)
}

func (q *apiRequest) serviceDocument() error {
	var sets []string
	for name := range q.h.bySet {
		sets = append(sets, name)
	}
	sort.Strings(sets)
	value := make([]any, 0, len(sets))
	for _, s := range sets {
		value = append(value, orderedObject{{"name", s}, {"kind", "EntitySet"}, {"url", s}})
	}
	writeJSON(q.w, http.StatusOK, orderedObject{{"@odata.context", q.apiURL() + "/$metadata"}, {"value", value}})
	return nil
}

func (q *apiRequest) whoAmI() error {
	writeJSON(q.w, http.StatusOK, orderedObject{
		{"@odata.context", q.apiURL() + "/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"},
		{"BusinessUnitId", q.h.opts.BusinessUnitID},
		{"UserId", q.user.userID},
		{"OrganizationId", q.h.opts.OrganizationID},
	})
	return nil
}

func (q *apiRequest) action(name string) error {
	params := map[string]any{}
	body, err := io.ReadAll(q.r.Body)
	if err != nil {
		return errf(http.StatusBadRequest, codePayloadError, "%s", err.Error())
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &params); err != nil {
			return errf(http.StatusBadRequest, codePayloadError, "Error identified in Payload provided by the user for action '%s': %s", name, err.Error())
		}
	}
	q.h.mu.Lock()
	q.h.calls[name] = append(q.h.calls[name], params)
	q.h.mu.Unlock()
	a := q.h.opts.Actions[name]
	if a.Response == nil {
		q.w.Header().Set("OData-Version", "4.0")
		q.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	keys := make([]string, 0, len(a.Response))
	for k := range a.Response {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := orderedObject{{"@odata.context", q.apiURL() + "/$metadata#Microsoft.Dynamics.CRM." + name + "Response"}}
	for _, k := range keys {
		out = append(out, kv{k, a.Response[k]})
	}
	writeJSON(q.w, http.StatusOK, out)
	return nil
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// resolveKey turns the key of `set(<key>)` into a record id. A GUID key is
// returned as is (lower-cased) even when no record exists, so that upsert
// can create it. An alternate key (`col='v',col2=1`) must be defined in
// Options.AlternateKeys; a missing record gives RecordNotFoundByEntityKey
// unless forUpsert, in which case a fresh id is returned.
func (q *apiRequest) resolveKey(t *table, key string, forUpsert bool) (string, error) {
	k := strings.Trim(key, "'")
	if guidPattern.MatchString(k) {
		return strings.ToLower(k), nil
	}
	parts, ok := parseAltKey(key)
	if !ok {
		// Not documented; the OData URI parser's wording (unconfirmed).
		return "", errf(http.StatusBadRequest, "0x80060888", "Bad Request - Error in query syntax.")
	}
	if !q.h.hasAltKey(t, parts) {
		// Not documented; the message is the emulator's own (unconfirmed).
		return "", errf(http.StatusBadRequest, codeInvalidArgument, "The key specified in the request (%s) is not defined as an alternate key on entity '%s'.", key, t.typ.LogicalName)
	}
	q.h.mu.Lock()
	defer q.h.mu.Unlock()
	for id, rec := range q.h.records[t.typ.LogicalName] {
		match := true
		for col, v := range parts {
			if !valueEquals(rec.row[col], v) {
				match = false
				break
			}
		}
		if match {
			return id, nil
		}
	}
	if forUpsert {
		return q.h.newID(), nil
	}
	return "", errf(http.StatusNotFound, codeRecordNotFoundByKey, "A record with the specified key values does not exist in %s entity", t.typ.LogicalName)
}

// parseAltKey parses `a='x',b=2` into column → value (string or float64).
func parseAltKey(key string) (map[string]any, bool) {
	out := map[string]any{}
	for len(key) > 0 {
		eq := strings.IndexByte(key, '=')
		if eq <= 0 {
			return nil, false
		}
		name := strings.TrimSpace(key[:eq])
		key = key[eq+1:]
		if strings.HasPrefix(key, "'") {
			var b strings.Builder
			i := 1
			for ; i < len(key); i++ {
				if key[i] == '\'' {
					if i+1 < len(key) && key[i+1] == '\'' {
						b.WriteByte('\'')
						i++
						continue
					}
					break
				}
				b.WriteByte(key[i])
			}
			if i >= len(key) {
				return nil, false
			}
			out[name] = b.String()
			key = key[i+1:]
		} else {
			end := strings.IndexByte(key, ',')
			if end < 0 {
				end = len(key)
			}
			lit := key[:end]
			if guidPattern.MatchString(lit) {
				out[name] = strings.ToLower(lit)
			} else if f, err := strconv.ParseFloat(lit, 64); err == nil {
				out[name] = f
			} else {
				return nil, false
			}
			key = key[end:]
		}
		if strings.HasPrefix(key, ",") {
			key = key[1:]
		} else if key != "" {
			return nil, false
		}
	}
	return out, len(out) > 0
}

func (h *Handler) hasAltKey(t *table, parts map[string]any) bool {
	for _, cols := range h.opts.AlternateKeys[t.typ.LogicalName] {
		if len(cols) != len(parts) {
			continue
		}
		all := true
		for _, c := range cols {
			if _, ok := parts[c]; !ok {
				all = false
			}
		}
		if all {
			return true
		}
	}
	return false
}

func valueEquals(a, b any) bool {
	as, aok := a.(string)
	bs, bok := b.(string)
	if aok && bok {
		return strings.EqualFold(as, bs)
	}
	return a == b
}

// entityURL is the canonical URL of a record.
func (q *apiRequest) entityURL(t *table, id string) string {
	return q.apiURL() + "/" + t.typ.EntitySet + "(" + id + ")"
}

// parseEntityRef parses "/accounts(<id>)", "accounts(<id>)" or an absolute
// URL into an entity set and a lower-case id.
func parseEntityRef(ref string) (set, id string, ok bool) {
	if i := strings.Index(ref, APIPrefix); i >= 0 {
		ref = ref[i+len(APIPrefix):]
	}
	ref = strings.TrimPrefix(ref, "/")
	open := strings.IndexByte(ref, '(')
	if open <= 0 || !strings.HasSuffix(ref, ")") {
		return "", "", false
	}
	id = strings.Trim(ref[open+1:len(ref)-1], "'")
	if !guidPattern.MatchString(id) {
		return "", "", false
	}
	return ref[:open], strings.ToLower(id), true
}

// preferences are the parsed Prefer headers: one comma-joined header, as
// DynamicsWebApi sends
// (https://github.com/AleksandrRogov/DynamicsWebApi/blob/9cf728d/src/utils/Request.ts),
// or several (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/count-rows).
type preferences struct {
	representation bool
	annotations    []string
	annotationsRaw string
	maxPageSize    int
}

func parsePrefer(values []string) preferences {
	var p preferences
	for _, v := range values {
		for _, item := range splitOutsideQuotes(v, ',') {
			name, val, _ := strings.Cut(strings.TrimSpace(item), "=")
			name = strings.TrimSpace(name)
			val = strings.TrimSpace(val)
			switch strings.ToLower(name) {
			case "return":
				p.representation = val == "representation"
			case "odata.include-annotations":
				p.annotationsRaw = val
				for _, a := range strings.Split(strings.Trim(val, `"`), ",") {
					if a = strings.TrimSpace(a); a != "" {
						p.annotations = append(p.annotations, a)
					}
				}
			case "odata.maxpagesize":
				if n, err := strconv.Atoi(val); err == nil && n > 0 {
					p.maxPageSize = min(n, 5000)
				}
			}
		}
	}
	return p
}

func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// wants reports whether the annotation name was requested.
func (p preferences) wants(name string) bool {
	for _, a := range p.annotations {
		if a == "*" || a == name || (strings.HasSuffix(a, ".*") && strings.HasPrefix(name, strings.TrimSuffix(a, "*"))) {
			return true
		}
	}
	return false
}

func (q *apiRequest) readBody() (map[string]any, error) {
	body := map[string]any{}
	b, err := io.ReadAll(q.r.Body)
	if err != nil {
		return nil, errf(http.StatusBadRequest, codePayloadError, "%s", err.Error())
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, errf(http.StatusBadRequest, codePayloadError, "Error identified in Payload provided by the user: %s", err.Error())
	}
	return body, nil
}

// queryOptions validates the system query options: names are
// case-sensitive and $skip, $search and $format are not supported
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview).
// The exact message for an unsupported option is not documented; this uses
// the ASP.NET OData wording (unconfirmed).
func queryOptions(r *http.Request) (url.Values, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "0x0", "The query string is malformed: %s", err.Error())
	}
	for name := range vals {
		if name == "fetchXml" {
			return nil, errf(http.StatusNotImplemented, "0x0", "dataversetest: fetchXml queries are not emulated")
		}
		if !strings.HasPrefix(name, "$") {
			continue
		}
		switch name {
		case "$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken", "$id":
		case "$apply":
			// Supported by Dataverse (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview)
			// but not by the emulator.
			return nil, errf(http.StatusNotImplemented, "0x0", "dataversetest: $apply is not emulated")
		default:
			return nil, errf(http.StatusBadRequest, "0x0", "The query parameter '%s' is not supported.", name)
		}
	}
	return vals, nil
}

// denied reports whether the client's security role forbids method on set
// (Client.Denied).
func (h *Handler) denied(clientID, method, set string) bool {
	for _, c := range h.opts.Clients {
		if c.ID != clientID {
			continue
		}
		for _, d := range c.Denied {
			m, s, _ := strings.Cut(d, " ")
			if s == set && (m == "*" || m == method) {
				return true
			}
		}
	}
	return false
}
