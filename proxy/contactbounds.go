package proxy

import (
	"cmp"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/dataverse"
)

// Contact data in a session is bounded, so that one large column (a memo
// field of a megabyte, say) can never make a session too large for its
// cookies, which would refuse every sign-in of that user, nor an upstream
// request too large for the upstream's header limits:
//
//   - a column whose value is longer than MaxContactValueBytes, as its
//     plain header or its JSON form (whichever is longer) shows it, is left
//     out of the snapshot;
//   - when the columns left (names and values) are longer than
//     MaxContactColumnsBytes together, the longest are left out (ties: by
//     name) until the rest fit.
//
// A column left out is absent from X-Current-User and its plain header, as
// a null column is; each time, one warning names the user, the columns and
// their sizes (never their values), so the operator can shorten the
// route's contact_columns.
const (
	// MaxContactValueBytes bounds one contact column in a session.
	MaxContactValueBytes = 6144
	// MaxContactColumnsBytes bounds all of a session's contact columns:
	// with the rest of a session they fit the session's cookies
	// (maxSessionChunks of maxCookieBytes, about 9 KB of JSON).
	MaxContactColumnsBytes = 7168
)

// boundedContact is the session's snapshot of c (sessionContact) within the
// bounds above; userID is for the log line.
func (srv *Server) boundedContact(r *http.Request, userID string, c *dataverse.Contact) *dataverse.Contact {
	sc := sessionContact(c)
	if sc == nil || len(sc.Columns) == 0 {
		return sc
	}
	type col struct {
		name string
		size int
	}
	var kept, dropped []col
	total := 0
	for name, v := range sc.Columns {
		s, ok := columnHeaderValue(v)
		if !ok {
			continue // null: nothing to carry
		}
		// The JSON form is what the cookie and the token carry (escapes
		// can make it several times longer), the plain value what the
		// header does: the longer counts.
		j, _ := json.Marshal(v)
		n := max(len(s), len(j))
		if n > MaxContactValueBytes {
			dropped = append(dropped, col{name, n})
			continue
		}
		size := len(name) + n
		kept = append(kept, col{name, size})
		total += size
	}
	if total > MaxContactColumnsBytes {
		slices.SortFunc(kept, func(a, b col) int {
			return cmp.Or(cmp.Compare(b.size, a.size), strings.Compare(a.name, b.name))
		})
		for len(kept) > 0 && total > MaxContactColumnsBytes {
			dropped = append(dropped, kept[0])
			total -= kept[0].size
			kept = kept[1:]
		}
	}
	if len(dropped) == 0 {
		return sc
	}
	cols := make(map[string]any, len(kept))
	for _, k := range kept {
		cols[k.name] = sc.Columns[k.name]
	}
	sc.Columns = cols
	attrs := make([]slog.Attr, 0, len(dropped))
	slices.SortFunc(dropped, func(a, b col) int { return strings.Compare(a.name, b.name) })
	for _, d := range dropped {
		attrs = append(attrs, slog.Int(d.name, d.size))
	}
	srv.log.Warn("contact columns left out of the session: too large for the identity headers",
		"request_id", requestID(r.Context()), "user_id", userID, "contact_id", sc.ID,
		"max_value_bytes", MaxContactValueBytes, "max_total_bytes", MaxContactColumnsBytes,
		slog.GroupAttrs("bytes", attrs...))
	return sc
}

// joinRoles joins roles for the X-Current-User-Roles plain header: a comma
// separates them, and a comma or percent sign inside a role (a Dataverse
// web role may be called "Partners, EU") is percent-encoded (%2C, %25), so
// that splitting on commas and percent-decoding each part gives back the
// roles exactly. Roles without those characters appear as they are.
func joinRoles(roles []string) string {
	var b strings.Builder
	for i, r := range roles {
		if i > 0 {
			b.WriteByte(',')
		}
		if !strings.ContainsAny(r, ",%") {
			b.WriteString(r)
			continue
		}
		for j := 0; j < len(r); j++ {
			switch r[j] {
			case ',':
				b.WriteString("%2C")
			case '%':
				b.WriteString("%25")
			default:
				b.WriteByte(r[j])
			}
		}
	}
	return b.String()
}
