package crmclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

const (
	opsTenant = "11111111-1111-1111-1111-111111111111"
	opsClient = "22222222-2222-2222-2222-222222222222"
	opsSecret = "s3cret"

	accountID  = "a0000000-0000-0000-0000-000000000001"
	annID      = "c0000000-0000-0000-0000-000000000001"
	bobID      = "c0000000-0000-0000-0000-000000000002"
	hostileID  = "c0000000-0000-0000-0000-000000000003"
	decoyID    = "c0000000-0000-0000-0000-000000000004"
	adminRole  = "e0000000-0000-0000-0000-000000000001"
	staffRole  = "e0000000-0000-0000-0000-000000000002"
	oldRole    = "e0000000-0000-0000-0000-000000000003"
	authRole   = "e0000000-0000-0000-0000-000000000004"
	compAdmin  = "f0000000-0000-0000-0000-000000000001"
	compStaff  = "f0000000-0000-0000-0000-000000000002"
	compPage   = "f0000000-0000-0000-0000-000000000003"
	inviteID   = "d0000000-0000-0000-0000-000000000001"
	expiredInv = "d0000000-0000-0000-0000-000000000002"
	extID      = "b0000000-0000-0000-0000-000000000001"
)

// hostile is a value with a quote, &, %, +, #, / and non-ASCII text: each
// would break a naively built URL or filter.
const hostile = "O'Brien & Sons 100% + #1/2 “naïve” 日本"

var opsSeed = `{
 "accounts": [{"accountid": "` + accountID + `", "name": "Contoso"}],
 "contacts": [
  {"contactid": "` + annID + `", "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.com",
   "adx_identity_username": "ann", "adx_identity_logonenabled": true, "adx_identity_passwordhash": "hash",
   "adx_identity_accessfailedcount": 2, "adx_identity_lockoutenddate": "2025-03-02T10:00:00Z", "adx_organizationname": "Contoso Ltd",
   "parentcustomerid_account@odata.bind": "/accounts(` + accountID + `)"},
  {"contactid": "` + bobID + `", "firstname": "Bob", "lastname": "Inactive", "emailaddress1": "ann@example.com",
   "adx_identity_username": "ann", "statecode": 1, "statuscode": 2},
  {"contactid": "` + hostileID + `", "firstname": "Hostile", "lastname": ` + jsonString(hostile) + `,
   "adx_identity_username": ` + jsonString(hostile) + `, "emailaddress1": "o'neil+a/b?c#d%e@example.com"},
  {"contactid": "` + decoyID + `", "firstname": "Decoy", "lastname": "O'Brien & Sons 100",
   "adx_identity_username": "O'Brien & Sons 100"}
 ],
 "adx_webroles": [
  {"adx_webroleid": "` + adminRole + `", "adx_name": "Administrators"},
  {"adx_webroleid": "` + staffRole + `", "adx_name": "Staff"},
  {"adx_webroleid": "` + oldRole + `", "adx_name": "Retired", "statecode": 1, "statuscode": 2},
  {"adx_webroleid": "` + authRole + `", "adx_name": "Authenticated Users", "adx_authenticatedusersrole": true}
 ],
 "powerpagecomponents": [
  {"powerpagecomponentid": "` + compAdmin + `", "name": "Administrators", "powerpagecomponenttype": 11},
  {"powerpagecomponentid": "` + compStaff + `", "name": "Staff", "powerpagecomponenttype": 11},
  {"powerpagecomponentid": "` + compPage + `", "name": "Home", "powerpagecomponenttype": 2}
 ],
 "adx_invitations": [
  {"adx_invitationid": "` + inviteID + `", "adx_name": "Invite Ann", "adx_invitationcode": "Xy7-secret", "adx_type": 756150000,
   "adx_maximumredemptions": 1, "adx_redemptions": 0, "adx_inviteContact@odata.bind": "/contacts(` + annID + `)"},
  {"adx_invitationid": "` + expiredInv + `", "adx_name": "Old", "adx_invitationcode": "old-code", "adx_type": 756150001,
   "adx_expirydate": "2025-01-01T00:00:00Z", "adx_maximumredemptions": 0, "adx_redemptions": 7}
 ],
 "adx_externalidentities": [
  {"adx_externalidentityid": "` + extID + `", "adx_username": "sub-123", "adx_identityprovidername": "https://login.example.com/",
   "adx_contactid@odata.bind": "/contacts(` + annID + `)"}
 ],
 "associations": [
  {"relationship": "adx_webrole_contact", "contactid": "` + annID + `", "adx_webroleid": "` + adminRole + `"},
  {"relationship": "adx_webrole_contact", "contactid": "` + annID + `", "adx_webroleid": "` + oldRole + `"},
  {"relationship": "powerpagecomponent_mspp_webrole_contact", "contactid": "` + annID + `", "powerpagecomponentid": "` + compAdmin + `"}
 ]
}`

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var opsNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newOps starts an emulator loaded with opsSeed and a client of it. wrap,
// when set, puts a handler in front of the emulator.
func newOps(t *testing.T, mod func(*dataversetest.Options), wrap func(base string, h http.Handler) http.Handler) (*crmclient.Client, *dataversetest.Handler, string) {
	t.Helper()
	opts := dataversetest.Options{
		TenantID: opsTenant,
		Clients:  []dataversetest.Client{{ID: opsClient, Secret: opsSecret}},
		Now:      func() time.Time { return opsNow },
	}
	if mod != nil {
		mod(&opts)
	}
	var h *dataversetest.Handler
	var url string
	if wrap == nil {
		srv := dataversetest.NewServer(opts)
		t.Cleanup(srv.Close)
		h, url = srv.Handler, srv.URL
	} else {
		var front http.Handler
		ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { front.ServeHTTP(w, r) }))
		url = "http://" + ts.Listener.Addr().String()
		opts.BaseURL = url
		h = dataversetest.NewHandler(opts)
		front = wrap(url, h)
		ts.Start()
		t.Cleanup(ts.Close)
	}
	if err := h.LoadSeed(strings.NewReader(opsSeed)); err != nil {
		t.Fatalf("LoadSeed: %v", err)
	}
	c, err := crmclient.New(crmclient.Config{URL: url, AuthorityHost: url, TenantID: opsTenant, ClientID: opsClient, ClientSecret: opsSecret,
		MaxRetries: -1, Now: func() time.Time { return opsNow }})
	if err != nil {
		t.Fatal(err)
	}
	return c, h, url
}

// apiRequests counts Web API requests, the token endpoint left out.
func apiRequests(h *dataversetest.Handler) int { return h.Requests("") - h.Requests("POST token") }

func id(s string) crmclient.GUID { return crmclient.MustParseGUID(s) }

type contactRow struct {
	ID       crmclient.GUID `json:"contactid"`
	LastName string         `json:"lastname"`
	Email    string         `json:"emailaddress1"`
	Parent   *struct {
		Name string `json:"name"`
	} `json:"parentcustomerid_account"`
}

func TestRetrieve(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, func(o *dataversetest.Options) {
		o.AlternateKeys = map[string][][]string{"contact": {{"emailaddress1"}}}
	}, nil)

	t.Run("by id with select and expand", func(t *testing.T) {
		var row contactRow
		etag, err := c.Retrieve(ctx, "contacts", crmclient.ByID(id(annID)), crmclient.RetrieveOptions{
			Select: []string{"lastname", "emailaddress1"},
			Expand: []crmclient.Expand{{Nav: "parentcustomerid_account", Select: []string{"name"}}},
		}, &row)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(etag, `W/"`) || row.ID != id(annID) || row.LastName != "Lee" || row.Parent == nil || row.Parent.Name != "Contoso" {
			t.Fatalf("etag %q row %+v", etag, row)
		}
	})
	t.Run("by alternate key with hostile characters", func(t *testing.T) {
		var row contactRow
		_, err := c.Retrieve(ctx, "contacts", crmclient.ByAlternateKey(map[string]any{"emailaddress1": "O'Neil+a/b?c#d%e@example.com"}),
			crmclient.RetrieveOptions{Select: []string{"lastname"}}, &row)
		if err != nil || row.ID != id(hostileID) || row.LastName != hostile {
			t.Fatalf("row %+v, err %v", row, err)
		}
	})
	t.Run("missing record", func(t *testing.T) {
		_, err := c.Retrieve(ctx, "contacts", crmclient.ByID(id("c0000000-0000-0000-0000-0000000000ff")), crmclient.RetrieveOptions{}, nil)
		if !crmclient.IsNotFound(err) {
			t.Fatalf("err = %v, want not found", err)
		}
		_, err = c.GetContact(ctx, id("c0000000-0000-0000-0000-0000000000ff"), nil, crmclient.WebRoleModelStandard)
		if !errors.Is(err, crmclient.ErrNotFound) || !crmclient.IsNotFound(err) {
			t.Fatalf("GetContact err = %v, want ErrNotFound and a 404", err)
		}
	})
	t.Run("undefined alternate key is a 400", func(t *testing.T) {
		_, err := c.Retrieve(ctx, "accounts", crmclient.ByAlternateKey(map[string]any{"name": "Contoso"}), crmclient.RetrieveOptions{}, nil)
		var ae *crmclient.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Fatalf("err = %v, want a 400", err)
		}
	})
	_ = h
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	// Seven more contacts: eleven in all, 3 a page → 4 pages; filtered to
	// the seven → 3 pages.
	for i := range 7 {
		if _, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Page", "firstname": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	opts := crmclient.ListOptions{
		Query:    crmclient.Query{Select: []string{"firstname", "lastname"}, Filter: crmclient.F.Eq("lastname", "Page"), OrderBy: []string{"firstname"}},
		Count:    true,
		PageSize: 3,
	}
	t.Run("pages follow nextLink", func(t *testing.T) {
		before := h.Requests("GET contacts")
		var sizes []int
		var names []string
		first := true
		for p, err := range c.Pages(ctx, "contacts", opts) {
			if err != nil {
				t.Fatal(err)
			}
			if first && p.Count != 7 {
				t.Errorf("first page count = %d, want 7", p.Count)
			}
			first = false
			sizes = append(sizes, len(p.Rows))
			for _, r := range p.Rows {
				var v struct{ FirstName string }
				_ = json.Unmarshal(r, &v)
				names = append(names, v.FirstName)
			}
		}
		if !slices.Equal(sizes, []int{3, 3, 1}) || strings.Join(names, "") != "0123456" {
			t.Fatalf("page sizes %v, names %v", sizes, names)
		}
		if n := h.Requests("GET contacts") - before; n != 3 {
			t.Fatalf("requests = %d, want 3", n)
		}
	})
	t.Run("ListAll", func(t *testing.T) {
		rows, err := crmclient.ListAll[contactRow](ctx, c, "contacts", opts)
		if err != nil || len(rows) != 7 {
			t.Fatalf("%d rows, err %v", len(rows), err)
		}
	})
	t.Run("Top is enforced although maxpagesize makes Dataverse ignore it", func(t *testing.T) {
		o := opts
		o.Top = 4
		before := h.Requests("GET contacts")
		rows, err := crmclient.ListAll[contactRow](ctx, c, "contacts", o)
		if err != nil || len(rows) != 4 {
			t.Fatalf("%d rows, err %v", len(rows), err)
		}
		if n := h.Requests("GET contacts") - before; n != 2 {
			t.Fatalf("requests = %d, want 2 (stop after Top rows)", n)
		}
	})
	t.Run("List reports count and stops on fn error", func(t *testing.T) {
		stop := errors.New("stop")
		seen := 0
		count, err := c.List(ctx, "contacts", opts, func(json.RawMessage) error {
			seen++
			if seen == 4 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || count != 7 || seen != 4 {
			t.Fatalf("count %d seen %d err %v", count, seen, err)
		}
	})
}

// TestNextLinkRefused rewrites the emulator's nextLink into links that
// must not be followed, and checks that the client stops without sending
// anything there (the "other host" is a real listener that counts hits).
func TestNextLinkRefused(t *testing.T) {
	var mu sync.Mutex
	otherHits := 0
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		otherHits++
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer other.Close()
	otherHost := strings.TrimPrefix(other.URL, "http://")

	cases := []struct {
		name    string
		rewrite func(base, link string) string
	}{
		{"other host", func(base, link string) string { return strings.Replace(link, base, other.URL, 1) }},
		{"user info pointing elsewhere", func(base, link string) string {
			return strings.Replace(link, base, "http://"+strings.TrimPrefix(base, "http://")+"@"+otherHost, 1)
		}},
		{"other scheme", func(base, link string) string { return strings.Replace(link, "http://", "https://", 1) }},
		{"outside the Web API path", func(base, link string) string {
			return strings.Replace(link, "/api/data/v9.2/", "/api/data/v9.1/", 1)
		}},
		{"path traversal", func(base, link string) string {
			return strings.Replace(link, "/api/data/v9.2/contacts", "/api/data/v9.2/../../x/contacts", 1)
		}},
		{"same link again", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var first string
			c, h, _ := newOps(t, nil, func(base string, h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					var body map[string]any
					if r.Method == http.MethodGet && json.Unmarshal(rec.Body.Bytes(), &body) == nil {
						if link, ok := body["@odata.nextLink"].(string); ok {
							if tc.rewrite != nil {
								body["@odata.nextLink"] = tc.rewrite(base, link)
							} else if first == "" {
								first = link
							} else {
								body["@odata.nextLink"] = first // page 2 links to itself
							}
						}
						b, _ := json.Marshal(body)
						rec.Body = bytes.NewBuffer(b)
					}
					for k, v := range rec.Header() {
						if k != "Content-Length" {
							w.Header()[k] = v
						}
					}
					w.WriteHeader(rec.Code)
					_, _ = w.Write(rec.Body.Bytes())
				})
			})
			_, err := crmclient.ListAll[contactRow](context.Background(), c, "contacts", crmclient.ListOptions{PageSize: 1})
			if !errors.Is(err, crmclient.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			want := 1
			if tc.rewrite == nil {
				want = 2 // page 1, then page 2 names itself as the next page: refused
			}
			if n := h.Requests("GET contacts"); n != want {
				t.Fatalf("requests to the emulator = %d, want %d", n, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if otherHits != 0 {
				t.Fatalf("other host got %d requests", otherHits)
			}
		})
	}
}

func TestCreateRetrieveUpdateConflict(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	newID, err := c.Create(ctx, "contacts", map[string]any{
		"firstname": "Cy", "lastname": "New", "emailaddress1": "cy@example.com",
		"parentcustomerid_account@odata.bind": "/accounts(" + accountID + ")",
	})
	if err != nil || newID.IsZero() {
		t.Fatalf("Create = %v, %v", newID, err)
	}
	var row contactRow
	etag, err := c.Retrieve(ctx, "contacts", crmclient.ByID(newID), crmclient.RetrieveOptions{Select: []string{"lastname"}}, &row)
	if err != nil || row.LastName != "New" {
		t.Fatalf("Retrieve: %+v %v", row, err)
	}
	if err := c.Update(ctx, "contacts", crmclient.ByID(newID), map[string]any{"lastname": "Newer"}, etag); err != nil {
		t.Fatalf("Update with current ETag: %v", err)
	}
	err = c.Update(ctx, "contacts", crmclient.ByID(newID), map[string]any{"lastname": "Stale"}, etag)
	if !crmclient.IsConflict(err) {
		t.Fatalf("Update with stale ETag: %v, want a conflict", err)
	}
	if got, _ := h.Row("contacts", newID.String()); got["lastname"] != "Newer" {
		t.Fatalf("stale update changed the row: %v", got["lastname"])
	}
	// An empty ifMatch is If-Match: *: it never creates.
	missing := id("c0000000-0000-0000-0000-0000000000fe")
	if err := c.Update(ctx, "contacts", crmclient.ByID(missing), map[string]any{"lastname": "X"}, ""); !crmclient.IsNotFound(err) {
		t.Fatalf("Update of a missing record: %v, want not found", err)
	}
	if _, ok := h.Row("contacts", missing.String()); ok {
		t.Fatal("Update created a record")
	}
}

func TestUpsert(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, func(o *dataversetest.Options) {
		o.AlternateKeys = map[string][][]string{"contact": {{"emailaddress1"}}}
	}, nil)
	fresh := id("c0000000-0000-0000-0000-0000000000aa")
	tests := []struct {
		name     string
		key      crmclient.Key
		body     map[string]any
		mode     crmclient.UpsertMode
		conflict bool
		wantID   crmclient.GUID
		wantLast string
	}{
		{"create or update creates", crmclient.ByID(fresh), map[string]any{"lastname": "One"}, crmclient.UpsertCreateOrUpdate, false, fresh, "One"},
		{"create or update updates", crmclient.ByID(fresh), map[string]any{"lastname": "Two"}, crmclient.UpsertCreateOrUpdate, false, fresh, "Two"},
		{"create only on existing is a conflict", crmclient.ByID(fresh), map[string]any{"lastname": "Three"}, crmclient.UpsertCreateOnly, true, fresh, "Two"},
		{"create only creates", crmclient.ByID(id("c0000000-0000-0000-0000-0000000000ab")), map[string]any{"lastname": "Four"}, crmclient.UpsertCreateOnly, false, id("c0000000-0000-0000-0000-0000000000ab"), "Four"},
		{"by alternate key updates", crmclient.ByAlternateKey(map[string]any{"emailaddress1": "ann@example.com"}), map[string]any{"telephone1": "555"}, crmclient.UpsertCreateOrUpdate, true, crmclient.GUID{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Upsert(ctx, "contacts", tc.key, tc.body, tc.mode)
			if tc.wantID.IsZero() {
				// Two contacts share ann@example.com, so this alternate
				// key is not unique; the emulator updates the first match.
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if tc.conflict {
				if !crmclient.IsConflict(err) {
					t.Fatalf("err = %v, want a conflict", err)
				}
			} else if err != nil || got != tc.wantID {
				t.Fatalf("Upsert = %v, %v; want %v", got, err, tc.wantID)
			}
			row, ok := h.Row("contacts", tc.wantID.String())
			if !ok || row["lastname"] != tc.wantLast {
				t.Fatalf("row lastname = %v, want %q", row["lastname"], tc.wantLast)
			}
		})
	}
	t.Run("by new alternate key creates with the key copied", func(t *testing.T) {
		got, err := c.Upsert(ctx, "contacts", crmclient.ByAlternateKey(map[string]any{"emailaddress1": "new'one@example.com"}), map[string]any{"lastname": "Keyed"}, crmclient.UpsertCreateOrUpdate)
		if err != nil {
			t.Fatal(err)
		}
		row, ok := h.Row("contacts", got.String())
		if !ok || row["emailaddress1"] != "new'one@example.com" || row["lastname"] != "Keyed" {
			t.Fatalf("row %v", row)
		}
	})
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	c, _, _ := newOps(t, nil, nil)
	newID, err := c.Create(ctx, "accounts", map[string]any{"name": "Gone"})
	if err != nil {
		t.Fatal(err)
	}
	etag, err := c.Retrieve(ctx, "accounts", crmclient.ByID(newID), crmclient.RetrieveOptions{Select: []string{"name"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, "accounts", crmclient.ByID(newID), map[string]any{"name": "Going"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "accounts", crmclient.ByID(newID), etag); !crmclient.IsConflict(err) {
		t.Fatalf("Delete with stale ETag: %v, want a conflict", err)
	}
	if err := c.Delete(ctx, "accounts", crmclient.ByID(newID), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAccount(ctx, newID); !errors.Is(err, crmclient.ErrNotFound) || !crmclient.IsNotFound(err) {
		t.Fatalf("GetAccount after delete: %v", err)
	}
	if err := c.Delete(ctx, "accounts", crmclient.ByID(newID), ""); !crmclient.IsNotFound(err) {
		t.Fatalf("second Delete: %v, want not found", err)
	}
	a, err := c.GetAccount(ctx, id(accountID))
	if err != nil || a.Name != "Contoso" {
		t.Fatalf("GetAccount = %+v, %v", a, err)
	}
}

func TestWebRoles(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		model      crmclient.WebRoleModel
		initial    []string // role names of Ann
		all        []string // ListWebRoles
		add, other string   // role ids
		addName    string
	}{
		{crmclient.WebRoleModelStandard, []string{"Administrators"}, []string{"Administrators", "Authenticated Users", "Staff"}, staffRole, adminRole, "Staff"},
		{crmclient.WebRoleModelEnhanced, []string{"Administrators"}, []string{"Administrators", "Staff"}, compStaff, compAdmin, "Staff"},
	}
	for _, tc := range tests {
		t.Run(tc.model.String(), func(t *testing.T) {
			c, h, _ := newOps(t, nil, nil)
			// Warm the token so the count below holds Web API calls only.
			if _, err := c.WhoAmI(ctx); err != nil {
				t.Fatal(err)
			}
			before, beforeGet := apiRequests(h), h.Requests("GET contacts()")
			ct, err := c.GetContact(ctx, id(annID), []string{"adx_organizationname", "adx_identity_accessfailedcount"}, tc.model)
			if err != nil {
				t.Fatal(err)
			}
			if n := apiRequests(h) - before; n != 1 || h.Requests("GET contacts()")-beforeGet != 1 {
				t.Fatalf("GetContact made %d requests, want exactly 1 GET contacts()", n)
			}
			if !slices.Equal(ct.RoleNames(), tc.initial) {
				t.Fatalf("roles = %v, want %v (inactive roles left out)", ct.RoleNames(), tc.initial)
			}
			if ct.Username != "ann" || !ct.LogonEnabled || ct.PasswordHash != "hash" || ct.AccessFailedCount != 2 ||
				ct.LockoutEnd == nil || !ct.LockoutEnd.Equal(time.Date(2025, 3, 2, 10, 0, 0, 0, time.UTC)) ||
				ct.ParentCustomerID == nil || *ct.ParentCustomerID != id(accountID) || ct.ParentCustomerType != "account" ||
				ct.FullName != "Ann Lee" || !ct.Active() || ct.ETag == "" {
				t.Fatalf("contact = %+v", ct)
			}
			if ct.Columns["adx_organizationname"] != "Contoso Ltd" || ct.Columns["adx_identity_accessfailedcount"] != json.Number("2") || len(ct.Columns) != 2 {
				t.Fatalf("Columns = %#v", ct.Columns)
			}

			roles, err := c.ListWebRoles(ctx, tc.model, crmclient.GUID{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range roles {
				names = append(names, r.Name)
			}
			if !slices.Equal(names, tc.all) {
				t.Fatalf("ListWebRoles = %v, want %v", names, tc.all)
			}

			if err := c.AddContactToWebRole(ctx, tc.model, id(annID), id(tc.add)); err != nil {
				t.Fatal(err)
			}
			ct, err = c.GetContact(ctx, id(annID), nil, tc.model)
			if err != nil || !slices.Contains(ct.RoleNames(), tc.addName) || ct.Columns != nil {
				t.Fatalf("after add: %v, %v", ct.RoleNames(), err)
			}
			if err := c.RemoveContactFromWebRole(ctx, tc.model, id(annID), id(tc.other)); err != nil {
				t.Fatal(err)
			}
			ct, err = c.GetContact(ctx, id(annID), nil, tc.model)
			if err != nil || !slices.Equal(ct.RoleNames(), []string{tc.addName}) {
				t.Fatalf("after remove: %v, %v", ct.RoleNames(), err)
			}
			rel := "adx_webrole_contact"
			if tc.model == crmclient.WebRoleModelEnhanced {
				rel = "powerpagecomponent_mspp_webrole_contact"
			}
			if got := h.Associated("contacts", annID, rel); slices.Contains(got, tc.other) || !slices.Contains(got, tc.add) {
				t.Fatalf("emulator links %v", got)
			}
		})
	}
}

func TestCallAction(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, func(o *dataversetest.Options) {
		o.Actions = map[string]dataversetest.Action{
			"adx_SendEmailConfirmationToContact": {},
			"new_Echo":                           {Response: map[string]any{"Accepted": true, "Ticket": "T-1"}},
		}
	}, nil)
	params := map[string]any{"ContactId": annID, "Note": hostile, "Count": 3}
	if err := c.CallAction(ctx, "adx_SendEmailConfirmationToContact", params, nil); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Accepted bool
		Ticket   string
	}
	if err := c.CallAction(ctx, "new_Echo", nil, &out); err != nil || !out.Accepted || out.Ticket != "T-1" {
		t.Fatalf("new_Echo = %+v, %v", out, err)
	}
	calls := h.ActionCalls("adx_SendEmailConfirmationToContact")
	if len(calls) != 1 || calls[0]["ContactId"] != annID || calls[0]["Note"] != hostile || calls[0]["Count"] != float64(3) {
		t.Fatalf("recorded calls %v", calls)
	}
	if got := h.ActionCalls("new_Echo"); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("new_Echo calls %v", got)
	}
	if err := c.CallAction(ctx, "new_Unknown", nil, nil); !crmclient.IsNotFound(err) {
		t.Fatalf("unknown action: %v, want not found", err)
	}
}

func TestHostileValues(t *testing.T) {
	ctx := context.Background()
	c, _, _ := newOps(t, nil, nil)
	t.Run("FindContacts", func(t *testing.T) {
		got, err := c.FindContacts(ctx, crmclient.F.Eq("lastname", hostile), nil, 10)
		if err != nil || len(got) != 1 || got[0].ID != id(hostileID) || got[0].LastName != hostile {
			t.Fatalf("got %v, err %v", got, err)
		}
		got, err = c.FindContacts(ctx, crmclient.F.StartsWith("lastname", "O'Brien & Sons 100"), nil, 10)
		if err != nil || len(got) != 2 {
			t.Fatalf("startswith: %d rows, err %v", len(got), err)
		}
	})
	t.Run("ContactByUsername", func(t *testing.T) {
		ct, err := c.ContactByUsername(ctx, "adx_identity_username", strings.ToUpper(hostile), nil)
		if err != nil || ct.ID != id(hostileID) {
			t.Fatalf("got %v, err %v", ct, err)
		}
	})
}

func TestContactLookups(t *testing.T) {
	ctx := context.Background()
	c, _, _ := newOps(t, nil, nil)
	tests := []struct {
		name    string
		column  string
		value   string
		columns []string
		wantID  string
		wantErr error
	}{
		{"active contact only", "adx_identity_username", "ann", nil, annID, nil},
		{"case-insensitive", "adx_identity_username", "ANN", nil, annID, nil},
		{"by e-mail", "emailaddress1", "ann@example.com", []string{"adx_organizationname"}, annID, nil},
		{"by an extra column", "adx_organizationname", "contoso ltd", nil, annID, nil},
		{"unknown", "adx_identity_username", "nobody", nil, "", crmclient.ErrNotFound},
		{"prefix does not match", "adx_identity_username", "an", nil, "", crmclient.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct, err := c.ContactByUsername(ctx, tc.column, tc.value, tc.columns)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || ct.ID != id(tc.wantID) {
				t.Fatalf("got %v, err %v", ct, err)
			}
			if len(ct.Columns) != len(tc.columns) {
				t.Fatalf("Columns = %v, want only %v", ct.Columns, tc.columns)
			}
		})
	}
	t.Run("duplicate active user names are ambiguous", func(t *testing.T) {
		if _, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Twin", "adx_identity_username": "Ann"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ContactByUsername(ctx, "adx_identity_username", "ann", nil); !errors.Is(err, crmclient.ErrAmbiguous) {
			t.Fatalf("err = %v, want ErrAmbiguous", err)
		}
	})
	t.Run("ContactsByEmail includes inactive contacts", func(t *testing.T) {
		got, err := c.ContactsByEmail(ctx, "Ann@Example.com", nil)
		if err != nil || len(got) != 2 || got[0].ID != id(annID) || got[1].ID != id(bobID) || got[1].Active() {
			t.Fatalf("got %v, err %v", got, err)
		}
	})
}

func TestInvitationsAndExternalIdentities(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	inv, err := c.InvitationByCode(ctx, "Xy7-secret")
	if err != nil || inv.ID != id(inviteID) || inv.Type != crmclient.InvitationSingle || inv.InviteContactID == nil || *inv.InviteContactID != id(annID) {
		t.Fatalf("InvitationByCode = %+v, %v", inv, err)
	}
	if !inv.Redeemable(opsNow) {
		t.Fatal("fresh invitation not redeemable")
	}
	// Dataverse matches case-insensitively; a code is a secret and must
	// match exactly.
	if _, err := c.InvitationByCode(ctx, "xy7-SECRET"); !errors.Is(err, crmclient.ErrNotFound) {
		t.Fatalf("wrong-case code: %v, want ErrNotFound", err)
	}
	old, err := c.InvitationByCode(ctx, "old-code")
	if err != nil || old.Redeemable(opsNow) || old.Expiry == nil || old.Redemptions != 7 {
		t.Fatalf("expired invitation = %+v, %v", old, err)
	}
	if err := c.Update(ctx, "adx_invitations", crmclient.ByID(inv.ID), map[string]any{"adx_redemptions": 1}, inv.ETag); err != nil {
		t.Fatal(err)
	}
	if inv, err = c.InvitationByCode(ctx, "Xy7-secret"); err != nil || inv.Redeemable(opsNow) {
		t.Fatalf("used-up invitation = %+v, %v", inv, err)
	}

	ext, err := c.ExternalIdentityByLogin(ctx, "https://login.example.com/", "sub-123")
	if err != nil || ext.ID != id(extID) || ext.ContactID != id(annID) {
		t.Fatalf("ExternalIdentityByLogin = %+v, %v", ext, err)
	}
	if _, err := c.ExternalIdentityByLogin(ctx, "https://other.example.com/", "sub-123"); !errors.Is(err, crmclient.ErrNotFound) {
		t.Fatalf("other provider: %v, want ErrNotFound", err)
	}
	newID, err := c.CreateExternalIdentity(ctx, id(bobID), "https://other.example.com/", "sub-123")
	if err != nil {
		t.Fatal(err)
	}
	if row, _ := h.Row("adx_externalidentities", newID.String()); row["_adx_contactid_value"] != bobID {
		t.Fatalf("created row %v", row)
	}
	ext, err = c.ExternalIdentityByLogin(ctx, "https://other.example.com/", "sub-123")
	if err != nil || ext.ContactID != id(bobID) {
		t.Fatalf("after create: %+v, %v", ext, err)
	}
}

// TestInvalidArgumentsSendNothing shows that names and keys that could
// alter the URL are refused before any request.
func TestInvalidArgumentsSendNothing(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	zero := crmclient.GUID{}
	ann := id(annID)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"set with a key", func() error {
			_, err := c.Retrieve(ctx, "contacts(x)", crmclient.ByID(ann), crmclient.RetrieveOptions{}, nil)
			return err
		}, crmclient.ErrInvalidArgument},
		{"set with a query", func() error { _, err := c.Create(ctx, "contacts?$x=1", nil); return err }, crmclient.ErrInvalidArgument},
		{"set with a slash", func() error { return c.Delete(ctx, "contacts/x", crmclient.ByID(ann), "") }, crmclient.ErrInvalidArgument},
		{"zero Key", func() error { return c.Delete(ctx, "contacts", crmclient.Key{}, "") }, crmclient.ErrInvalidArgument},
		{"nil GUID", func() error { return c.Delete(ctx, "contacts", crmclient.ByID(zero), "") }, crmclient.ErrInvalidArgument},
		{"empty alternate key", func() error {
			return c.Update(ctx, "contacts", crmclient.ByAlternateKey(nil), map[string]any{}, "")
		}, crmclient.ErrInvalidArgument},
		{"alternate key column injection", func() error {
			return c.Update(ctx, "contacts", crmclient.ByAlternateKey(map[string]any{"a)/x(": "v"}), map[string]any{}, "")
		}, crmclient.ErrInvalidArgument},
		{"ETag with CRLF", func() error {
			return c.Update(ctx, "contacts", crmclient.ByID(ann), map[string]any{}, "W/\"1\"\r\nX-Evil: 1")
		}, crmclient.ErrInvalidArgument},
		{"relationship with a key", func() error {
			return c.Associate(ctx, "contacts", ann, "adx_webrole_contact(x)", "adx_webroles", id(adminRole))
		}, crmclient.ErrInvalidArgument},
		{"action with a path", func() error { return c.CallAction(ctx, "WhoAmI/../x", nil, nil) }, crmclient.ErrInvalidArgument},
		{"bad annotation", func() error {
			_, err := c.Retrieve(ctx, "contacts", crmclient.ByID(ann), crmclient.RetrieveOptions{IncludeAnnotations: `*",x="`}, nil)
			return err
		}, crmclient.ErrInvalidArgument},
		{"bad page size", func() error {
			_, err := crmclient.ListAll[contactRow](ctx, c, "contacts", crmclient.ListOptions{PageSize: 5001})
			return err
		}, crmclient.ErrInvalidArgument},
		{"bad expand", func() error {
			_, err := c.Retrieve(ctx, "contacts", crmclient.ByID(ann), crmclient.RetrieveOptions{Expand: []crmclient.Expand{{Nav: "x($filter=1)"}}}, nil)
			return err
		}, crmclient.ErrInvalidArgument},
		{"bad select column", func() error {
			_, err := c.GetContact(ctx, ann, []string{"x,y"}, crmclient.WebRoleModelStandard)
			return err
		}, crmclient.ErrInvalidFilter},
		{"unknown web role model", func() error { _, err := c.GetContact(ctx, ann, nil, crmclient.WebRoleModel(7)); return err }, crmclient.ErrInvalidArgument},
		{"FindContacts without filter", func() error { _, err := c.FindContacts(ctx, crmclient.Filter{}, nil, 5); return err }, crmclient.ErrInvalidArgument},
		{"invalid UTF-8 user name", func() error {
			_, err := c.ContactByUsername(ctx, "adx_identity_username", "a\xff", nil)
			return err
		}, crmclient.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.Requests("")
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := h.Requests("") - before; n != 0 {
				t.Fatalf("%d requests sent", n)
			}
		})
	}
}

func TestKeyString(t *testing.T) {
	tests := []struct {
		key  crmclient.Key
		want string
	}{
		{crmclient.ByID(id(annID)), "(" + annID + ")"},
		{crmclient.ByAlternateKey(map[string]any{"emailaddress1": "o'neil+a/b?c#d%e@x"}), "(emailaddress1='o''neil%2Ba%2Fb%3Fc%23d%25e%40x')"},
		{crmclient.ByAlternateKey(map[string]any{"b": 2, "a": id(annID)}), "(a=" + annID + ",b=2)"},
		{crmclient.ByAlternateKey(map[string]any{"a": "日"}), "(a='%E6%97%A5')"},
		{crmclient.ByAlternateKey(map[string]any{"a": nil}), ""},
	}
	for _, tc := range tests {
		if got := tc.key.String(); got != tc.want {
			t.Errorf("Key = %q, want %q", got, tc.want)
		}
	}
}

func TestParseWebRoleModel(t *testing.T) {
	for _, m := range []crmclient.WebRoleModel{crmclient.WebRoleModelStandard, crmclient.WebRoleModelEnhanced} {
		got, err := crmclient.ParseWebRoleModel(m.String())
		if err != nil || got != m {
			t.Errorf("ParseWebRoleModel(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := crmclient.ParseWebRoleModel("Standard"); !errors.Is(err, crmclient.ErrInvalidArgument) {
		t.Errorf("ParseWebRoleModel(Standard) err = %v", err)
	}
}
