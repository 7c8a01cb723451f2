package proxy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/dataverse"
)

// TestContactHeadersPerRoute: a bound session forwards X-Current-User-Contact-Id
// and only the columns its route allow-lists, in the headers and in the JWT
// contact claim; roles include the contact's web roles; client copies are
// stripped; an unbound session forwards no contact data.
func TestContactHeadersPerRoute(t *testing.T) {
	var mu sync.Mutex
	var last http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = r.Header.Clone()
		mu.Unlock()
	}))
	defer up.Close()
	srv, _ := testServer(t, `upstreams:
  - name: a
    url: %s
routes:
  - name: orders
    paths: ["/orders/**"]
    access: bound
    contact_columns: [fullname, _parentcustomerid_value, creditlimit, donotemail]
  - name: partners
    paths: ["/partners/**"]
    access: bound
    condition: '"Partners" in user.roles && contact.columns.tier == "gold"'
  - name: plain
    paths: ["/**"]
    access: authenticated
`, up.URL)
	now := time.Unix(1_800_000_000, 0)
	sessions := 0
	cookie := func(c *dataverse.Contact) *http.Cookie {
		sessions++ // a session per cookie, as after each sign-in
		v, err := srv.codec.encode(&Session{ID: "sid-" + strconv.Itoa(sessions), UserID: "u1", Stamp: "st", AuthMethod: "password",
			AuthTime: now.Unix(), LastSeen: now.Unix(), CheckedAt: now.Unix(), Username: "u", Roles: []string{"staff"}, Contact: c})
		if err != nil {
			t.Fatal(err)
		}
		return &http.Cookie{Name: "s", Value: v}
	}
	get := func(path string, ck *http.Cookie, hdr ...string) (int, http.Header) {
		req := httptest.NewRequest("GET", "https://gw.example.com"+path, nil)
		req.AddCookie(ck)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		mu.Lock()
		last = nil
		mu.Unlock()
		srv.ServeHTTP(rec, req)
		mu.Lock()
		defer mu.Unlock()
		return rec.Code, last
	}
	bound := &dataverse.Contact{ID: "c0000000-0000-4000-8000-000000000001", LogicalName: "contact", Name: "Ann Lee",
		Roles: []string{"Partners", "staff"},
		Columns: map[string]any{"fullname": "Ann Lee", "_parentcustomerid_value": "a0000000-0000-4000-8000-000000000001",
			"creditlimit": 1500.5, "donotemail": false, "tier": "gold", "secretnotes": "never forwarded"}}

	code, h := get("/orders/1", cookie(bound), "X-Current-User-Contact-Tier", "forged")
	if code != 200 {
		t.Fatalf("bound on /orders: %d", code)
	}
	want := map[string]string{
		"X-Current-User-Contact-Id":                     bound.ID,
		"X-Current-User-Contact-Fullname":               "Ann Lee",
		"X-Current-User-Contact-Parentcustomerid-Value": "a0000000-0000-4000-8000-000000000001",
		"X-Current-User-Contact-Creditlimit":            "1500.5",
		"X-Current-User-Contact-Donotemail":             "false",
		"X-Current-User-Roles":                          "staff,Partners",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if h.Get("X-Current-User-Contact-Tier") != "" || h.Get("X-Current-User-Contact-Secretnotes") != "" {
		t.Errorf("a column outside the route's allow-list was forwarded: %v", h)
	}
	claims := jwtClaims(t, h.Get("X-Current-User"))
	ct, _ := claims["contact"].(map[string]any)
	cols, _ := ct["columns"].(map[string]any)
	if ct["id"] != bound.ID || ct["logicalname"] != "contact" || ct["name"] != "Ann Lee" || len(cols) != 4 || cols["creditlimit"] != 1500.5 || cols["tier"] != nil {
		t.Errorf("contact claim: %v", claims["contact"])
	}

	// Another route: the condition reads a column the route does not forward.
	code, h = get("/partners/x", cookie(bound))
	if code != 200 || h.Get("X-Current-User-Contact-Id") != bound.ID || h.Get("X-Current-User-Contact-Fullname") != "" {
		t.Fatalf("/partners: %d %v", code, h)
	}
	if cols := jwtClaims(t, h.Get("X-Current-User"))["contact"].(map[string]any)["columns"].(map[string]any); len(cols) != 0 {
		t.Errorf("partners route got columns %v", cols)
	}
	silver := *bound
	silver.Columns = map[string]any{"tier": "silver"}
	if code, _ := get("/partners/x", cookie(&silver)); code != http.StatusForbidden {
		t.Errorf("silver partner: %d", code)
	}

	// Unbound: no contact data at all, and bound routes are forbidden.
	code, h = get("/plain", cookie(nil), "X-Current-User-Contact-Id", "forged")
	if code != 200 || h.Get("X-Current-User-Contact-Id") != "" || jwtClaims(t, h.Get("X-Current-User"))["contact"] != nil {
		t.Errorf("unbound: %d %v", code, h)
	}
	if code, _ := get("/orders/1", cookie(nil)); code != http.StatusForbidden {
		t.Errorf("unbound on a bound route: %d", code)
	}
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
