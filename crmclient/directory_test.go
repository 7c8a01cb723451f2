package crmclient_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
)

// directoryModels are both web-role data models; the seed links Ann to
// an active "Administrators" role in each.
var directoryModels = []struct {
	name  string
	model crmclient.WebRoleModel
}{
	{"standard", crmclient.WebRoleModelStandard},
	{"enhanced", crmclient.WebRoleModelEnhanced},
}

func TestDirectoryContactByID(t *testing.T) {
	ctx := context.Background()
	cols := []string{"adx_organizationname", "adx_identity_accessfailedcount", "adx_identity_emailaddress1confirmed", "telephone1", "statecode"}
	for _, m := range directoryModels {
		t.Run(m.name, func(t *testing.T) {
			c, h, _ := newOps(t, nil, nil)
			d := crmclient.NewDirectory(c, m.model)

			before := apiRequests(h)
			got, err := d.ContactByID(ctx, annID, cols)
			if err != nil {
				t.Fatal(err)
			}
			if n := apiRequests(h) - before; n != 1 {
				t.Fatalf("requests = %d, want 1", n)
			}
			want := &dataverse.Contact{
				ID: annID, LogicalName: "contact", Name: "Ann Lee", Active: true, LogonEnabled: true,
				Email: "ann@example.com", FirstName: "Ann", LastName: "Lee", Username: "ann",
				Columns: map[string]any{
					"adx_organizationname":                "Contoso Ltd",
					"adx_identity_accessfailedcount":      float64(2),
					"adx_identity_emailaddress1confirmed": false,
					"telephone1":                          nil,
					"statecode":                           float64(0),
				},
				// The seed links Ann to an inactive role in the standard
				// model; only the active one is returned.
				Roles: []string{"Administrators"},
			}
			if !strings.HasPrefix(got.ETag, `W/"`) {
				t.Errorf("ETag = %q, want the row version", got.ETag)
			}
			want.ETag = got.ETag
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ContactByID =\n%#v\nwant\n%#v", got, want)
			}

			inactive, err := d.ContactByID(ctx, bobID, nil)
			if err != nil {
				t.Fatal(err)
			}
			if inactive.Active || inactive.LogonEnabled || inactive.Roles == nil || len(inactive.Roles) != 0 ||
				inactive.Columns == nil || len(inactive.Columns) != 0 {
				t.Fatalf("inactive contact = %#v; want inactive, no roles (non-nil), no columns", inactive)
			}
		})
	}
}

func TestDirectoryContactByIDErrors(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	tests := []struct {
		name     string
		id       string
		cols     []string
		want     []error
		requests int
	}{
		{name: "unknown id", id: "c0000000-0000-0000-0000-0000000000ff", want: []error{dataverse.ErrContactNotFound, crmclient.ErrNotFound}, requests: 1},
		{name: "not a GUID", id: "ann') or true", want: []error{dataverse.ErrContactNotFound, crmclient.ErrInvalidArgument}},
		{name: "nil GUID", id: "00000000-0000-0000-0000-000000000000", want: []error{dataverse.ErrContactNotFound, crmclient.ErrInvalidArgument}},
		{name: "malformed column", id: annID, cols: []string{"fullname,adx_identity_passwordhash"}, want: []error{crmclient.ErrInvalidArgument, crmclient.ErrInvalidFilter}},
		{name: "keyword column", id: annID, cols: []string{"eq"}, want: []error{crmclient.ErrInvalidArgument}},
		{name: "secret column", id: annID, cols: []string{"adx_identity_PasswordHash"}, want: []error{crmclient.ErrInvalidArgument}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := apiRequests(h)
			got, err := d.ContactByID(ctx, tt.id, tt.cols)
			if got != nil {
				t.Fatalf("contact = %#v, want nil", got)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Fatalf("err = %v, want it to wrap %v", err, w)
				}
			}
			if errors.Is(err, dataverse.ErrUnavailable) {
				t.Fatalf("err = %v wraps ErrDirectoryUnavailable", err)
			}
			if n := apiRequests(h) - before; n != tt.requests {
				t.Fatalf("requests = %d, want %d", n, tt.requests)
			}
		})
	}
}

func TestDirectoryFindContacts(t *testing.T) {
	ctx := context.Background()
	eq := func(col string, v any) dataverse.Condition {
		return dataverse.Condition{Column: col, Op: "eq", Value: v}
	}
	ne := func(col string, v any) dataverse.Condition {
		return dataverse.Condition{Column: col, Op: "ne", Value: v}
	}
	tests := []struct {
		name    string
		q       dataverse.ContactQuery
		wantIDs []string
	}{
		{name: "eq string ignores case, active or not, ordered by id",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("adx_identity_username", "ANN")}}, wantIDs: []string{annID, bobID}},
		{name: "eq and ne int64",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("adx_identity_username", "ann"), ne("statecode", int64(1))}}, wantIDs: []string{annID}},
		{name: "eq bool",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("adx_identity_logonenabled", true)}}, wantIDs: []string{annID}},
		{name: "eq null",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("telephone1", nil)}}, wantIDs: []string{annID, bobID, hostileID, decoyID}},
		{name: "ne null",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{ne("adx_organizationname", nil)}}, wantIDs: []string{annID}},
		{name: "hostile value with quote, %, & and #",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("adx_identity_username", hostile)}}, wantIDs: []string{hostileID}},
		{name: "hostile e-mail with quote, +, /, ?, # and %",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("emailaddress1", "O'Neil+a/b?c#d%e@example.com")}}, wantIDs: []string{hostileID}},
		{name: "quote that would close the literal",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("adx_identity_username", "x' or contactid ne null or 'a' eq 'a")}}},
		{name: "underscore and percent are data",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("adx_identity_username", "_nn"), eq("firstname", "%")}}},
		{name: "limit",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("adx_identity_username", "ann")}, Limit: 1}, wantIDs: []string{annID}},
		{name: "no match is an empty slice",
			q: dataverse.ContactQuery{Conditions: []dataverse.Condition{eq("lastname", "Nobody")}}},
	}
	for _, m := range directoryModels {
		t.Run(m.name, func(t *testing.T) {
			c, h, _ := newOps(t, nil, nil)
			d := crmclient.NewDirectory(c, m.model)
			for _, tt := range tests {
				for _, roles := range []bool{false, true} {
					name := tt.name
					if roles {
						name += " with roles"
					}
					t.Run(name, func(t *testing.T) {
						q := tt.q
						q.Roles = roles
						q.Columns = []string{"adx_organizationname", "adx_identity_accessfailedcount"}
						if q.Limit == 0 {
							q.Limit = 50
						}
						before := apiRequests(h)
						rows, err := d.FindContacts(ctx, q)
						if err != nil {
							t.Fatal(err)
						}
						if n := apiRequests(h) - before; n != 1 {
							t.Fatalf("requests = %d, want 1", n)
						}
						if rows == nil {
							t.Fatal("rows = nil, want a non-nil slice")
						}
						var ids []string
						for _, r := range rows {
							ids = append(ids, r.ID)
							// Exactly the asked columns plus the conditions' ones.
							wantCols := slices.Clone(q.Columns)
							for _, c := range q.Conditions {
								if !slices.Contains(wantCols, c.Column) {
									wantCols = append(wantCols, c.Column)
								}
							}
							var gotCols []string
							for k := range r.Columns {
								gotCols = append(gotCols, k)
							}
							slices.Sort(wantCols)
							slices.Sort(gotCols)
							if !slices.Equal(gotCols, wantCols) {
								t.Fatalf("%s columns = %v, want %v", r.ID, gotCols, wantCols)
							}
							for _, c := range q.Conditions {
								if !c.Matches(r) {
									t.Fatalf("%s does not match %+v: %#v", r.ID, c, r)
								}
							}
							if r.LogicalName != "contact" {
								t.Fatalf("LogicalName = %q", r.LogicalName)
							}
							switch {
							case !roles && r.Roles != nil:
								t.Fatalf("%s roles = %v without Roles, want nil", r.ID, r.Roles)
							case roles && r.ID == annID && !slices.Equal(r.Roles, []string{"Administrators"}):
								t.Fatalf("Ann's roles = %v, want [Administrators]", r.Roles)
							case roles && r.ID != annID && (r.Roles == nil || len(r.Roles) != 0):
								t.Fatalf("%s roles = %#v, want empty and non-nil", r.ID, r.Roles)
							}
						}
						if !slices.Equal(ids, tt.wantIDs) {
							t.Fatalf("ids = %v, want %v", ids, tt.wantIDs)
						}
					})
				}
			}
		})
	}
}

func TestDirectoryFindContactsMapsAnn(t *testing.T) {
	c, _, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	rows, err := d.FindContacts(context.Background(), dataverse.ContactQuery{
		Conditions: []dataverse.Condition{{Column: "contactid", Op: "eq", Value: annID}},
		Columns:    []string{"adx_identity_accessfailedcount"}, Roles: true, Limit: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []*dataverse.Contact{{
		ID: annID, LogicalName: "contact", Name: "Ann Lee", Active: true, LogonEnabled: true,
		Email: "ann@example.com", FirstName: "Ann", LastName: "Lee", Username: "ann",
		Columns: map[string]any{"adx_identity_accessfailedcount": float64(2), "contactid": annID},
		Roles:   []string{"Administrators"},
	}}
	if len(rows) == 1 {
		want[0].ETag = rows[0].ETag
	}
	if !reflect.DeepEqual(rows, want) || want[0].ETag == "" {
		t.Fatalf("FindContacts =\n%#v\nwant\n%#v", rows[0], want[0])
	}
}

func TestDirectoryFindContactsInvalid(t *testing.T) {
	c, h, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	ok := dataverse.Condition{Column: "adx_identity_username", Op: "eq", Value: "ann"}
	tests := []struct {
		name string
		q    dataverse.ContactQuery
	}{
		{"no conditions", dataverse.ContactQuery{Limit: 5}},
		{"operator gt", dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: "statecode", Op: "gt", Value: int64(0)}}, Limit: 5}},
		{"int rather than int64", dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: "statecode", Op: "eq", Value: 0}}, Limit: 5}},
		{"float value", dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: "statecode", Op: "eq", Value: 0.5}}, Limit: 5}},
		{"injected column", dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: "statecode eq 0 or contactid", Op: "ne", Value: nil}}, Limit: 5}},
		{"invalid UTF-8 value", dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: "lastname", Op: "eq", Value: "\xff"}}, Limit: 5}},
		{"secret condition column", dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: "adx_identity_passwordhash", Op: "eq", Value: "hash"}}, Limit: 5}},
		{"secret column", dataverse.ContactQuery{Conditions: []dataverse.Condition{ok}, Columns: []string{"adx_identity_securitystamp"}, Limit: 5}},
		{"bad column", dataverse.ContactQuery{Conditions: []dataverse.Condition{ok}, Columns: []string{"a b"}, Limit: 5}},
		{"limit 0", dataverse.ContactQuery{Conditions: []dataverse.Condition{ok}}},
		{"limit 5001", dataverse.ContactQuery{Conditions: []dataverse.Condition{ok}, Limit: 5001}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := apiRequests(h)
			rows, err := d.FindContacts(context.Background(), tt.q)
			if !errors.Is(err, crmclient.ErrInvalidArgument) || errors.Is(err, dataverse.ErrUnavailable) || rows != nil {
				t.Fatalf("FindContacts = %v, %v; want ErrInvalidArgument", rows, err)
			}
			if !strings.HasPrefix(err.Error(), "crmclient: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			if n := apiRequests(h) - before; n != 0 {
				t.Fatalf("requests = %d, want none", n)
			}
		})
	}
}

func TestDirectoryUnavailable(t *testing.T) {
	ctx := context.Background()
	for _, m := range directoryModels {
		t.Run(m.name, func(t *testing.T) {
			c, h, _ := newOps(t, nil, nil)
			d := crmclient.NewDirectory(c, m.model)
			h.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
			calls := []struct {
				name string
				call func() error
			}{
				{"ContactByID", func() error { _, err := d.ContactByID(ctx, annID, []string{"adx_organizationname"}); return err }},
				{"FindContacts", func() error {
					_, err := d.FindContacts(ctx, dataverse.ContactQuery{
						Conditions: []dataverse.Condition{{Column: "adx_identity_username", Op: "eq", Value: "ann"}}, Roles: true, Limit: 50})
					return err
				}},
			}
			for _, tc := range calls {
				t.Run(tc.name, func(t *testing.T) {
					err := tc.call()
					if !errors.Is(err, dataverse.ErrUnavailable) || !errors.Is(err, crmclient.ErrUnavailable) {
						t.Fatalf("err = %v; want ErrDirectoryUnavailable wrapping ErrUnavailable", err)
					}
					var ae *crmclient.APIError
					if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
						t.Fatalf("err = %v; want the 503 kept in the chain", err)
					}
					if errors.Is(err, dataverse.ErrContactNotFound) {
						t.Fatalf("err = %v wraps ErrContactNotFound", err)
					}
				})
			}
		})
	}
}

// TestDirectoryNotCached shows that every call asks Dataverse: a change
// made in Dataverse is seen by the next call, and an outage after a
// success is an error, never the earlier answer.
func TestDirectoryNotCached(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	if _, err := d.ContactByID(ctx, annID, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, crmclient.SetContacts, crmclient.ByID(id(annID)), map[string]any{"adx_identity_logonenabled": false}, ""); err != nil {
		t.Fatal(err)
	}
	got, err := d.ContactByID(ctx, annID, nil)
	if err != nil || got.LogonEnabled {
		t.Fatalf("after disabling logon: %#v, %v; want LogonEnabled false", got, err)
	}
	h.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable, Count: 1})
	if got, err := d.ContactByID(ctx, annID, nil); !errors.Is(err, dataverse.ErrUnavailable) || got != nil {
		t.Fatalf("during an outage: %#v, %v; want ErrDirectoryUnavailable", got, err)
	}
}

// TestDirectoryBusinessErrors shows that Dataverse refusing a query (a
// column it does not know) is neither "unavailable" nor "not found".
func TestDirectoryBusinessErrors(t *testing.T) {
	ctx := context.Background()
	c, _, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	_, err1 := d.ContactByID(ctx, annID, []string{"new_tier"})
	_, err2 := d.FindContacts(ctx, dataverse.ContactQuery{Conditions: []dataverse.Condition{{Column: "new_tier", Op: "eq", Value: "gold"}}, Limit: 5})
	for _, err := range []error{err1, err2} {
		var ae *crmclient.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest ||
			errors.Is(err, dataverse.ErrUnavailable) || errors.Is(err, dataverse.ErrContactNotFound) {
			t.Fatalf("err = %v; want the 400 only", err)
		}
	}
}

// TestDirectoryPagedRoles shows that a role expansion Dataverse answers
// with a nested nextLink (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api) is an error, not a contact with
// fewer roles.
func TestDirectoryPagedRoles(t *testing.T) {
	c, _, _ := newOps(t, nil, func(base string, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/contacts") && r.URL.Query().Get("$expand") != "" {
				w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
				w.Header().Set("OData-Version", "4.0")
				_, _ = w.Write([]byte(`{"value":[{"contactid":"` + annID + `","statecode":0,"adx_webrole_contact":[],` +
					`"adx_webrole_contact@odata.nextLink":"` + base + `/api/data/v9.2/contacts(` + annID + `)/adx_webrole_contact"}]}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	rows, err := d.FindContacts(context.Background(), dataverse.ContactQuery{
		Conditions: []dataverse.Condition{{Column: "adx_identity_username", Op: "eq", Value: "ann"}}, Roles: true, Limit: 5})
	if err == nil || !strings.Contains(err.Error(), "roles incomplete") || errors.Is(err, dataverse.ErrUnavailable) || rows != nil {
		t.Fatalf("FindContacts = %v, %v; want a roles-incomplete error", rows, err)
	}
}

// TestDirectoryCreateContact creates a contact under a chosen id, and a
// second attempt with that id (a retry after a lost answer) succeeds
// without a second contact or a change to the first.
func TestDirectoryCreateContact(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	const newID = "5a1f7d2e-8c3b-4e6a-9f10-2b3c4d5e6f70"
	cols := map[string]any{"firstname": "Eve", "lastname": "Ng", "emailaddress1": "eve@example.com", "telephone1": "+1 555"}
	if err := d.CreateContact(ctx, newID, cols); err != nil {
		t.Fatal(err)
	}
	row, ok := h.Row("contacts", newID)
	if !ok || row["lastname"] != "Ng" || row["telephone1"] != "+1 555" || row["emailaddress1"] != "eve@example.com" {
		t.Fatalf("row = %v, %v", row, ok)
	}
	if err := d.CreateContact(ctx, newID, map[string]any{"lastname": "Other"}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if row, _ := h.Row("contacts", newID); row["lastname"] != "Ng" {
		t.Errorf("retry changed the contact: %v", row["lastname"])
	}
	for name, bad := range map[string]map[string]any{
		"key in body": {"contactid": newID},
		"secret":      {"adx_identity_passwordhash": "x"},
		"bad value":   {"lastname": 1.5},
	} {
		if err := d.CreateContact(ctx, "6a1f7d2e-8c3b-4e6a-9f10-2b3c4d5e6f70", bad); !errors.Is(err, crmclient.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", name, err)
		}
	}
	h.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	if err := d.CreateContact(ctx, "7a1f7d2e-8c3b-4e6a-9f10-2b3c4d5e6f70", cols); !errors.Is(err, dataverse.ErrUnavailable) {
		t.Errorf("down: err = %v, want ErrUnavailable", err)
	}
}
