package crmclient_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/dataverse"
)

// seedAcme creates n contacts of "Acme" (Acme01 … AcmeNN, acmeNN@example.com)
// through CreateContact and returns their ids.
func seedAcme(t *testing.T, d *crmclient.Directory, n int) []string {
	t.Helper()
	var ids []string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("aaaaaaaa-0000-0000-0000-%012d", i)
		err := d.CreateContact(context.Background(), id, map[string]any{
			"firstname": "Acme", "lastname": fmt.Sprintf("%02d", i), "emailaddress1": fmt.Sprintf("acme%02d@example.com", i),
			"adx_organizationname": "Acme",
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestDirectoryListContactPage: pages of a base filter and a search, one
// request each, every row with its ETag; a cursor of another query is
// refused before anything is sent.
func TestDirectoryListContactPage(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	ids := seedAcme(t, d, 7)
	base := []dataverse.Condition{{Column: "adx_organizationname", Op: "eq", Value: "Acme"}, {Column: "statecode", Op: "eq", Value: int64(0)}}
	q := dataverse.ContactPageQuery{Conditions: base, Columns: []string{"telephone1"}, PageSize: 3}
	var got []string
	pages := 0
	for {
		before := apiRequests(h)
		p, err := d.ListContactPage(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if n := apiRequests(h) - before; n != 1 {
			t.Fatalf("page %d: %d requests, want 1", pages, n)
		}
		pages++
		for _, ct := range p.Contacts {
			if ct.ETag == "" {
				t.Errorf("%s: no ETag", ct.ID)
			}
			if _, ok := ct.Columns["telephone1"]; !ok || len(ct.Columns) != 1 {
				t.Errorf("%s: columns %v, want telephone1 only", ct.ID, ct.Columns)
			}
			got = append(got, ct.ID)
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || !slices.Equal(got, ids) {
		t.Fatalf("%d pages, ids %v; want 3 pages of %v", pages, got, ids)
	}

	// A search narrows the base filter.
	p, err := d.ListContactPage(ctx, dataverse.ContactPageQuery{Conditions: base, Search: "acme0", PageSize: 50})
	if err != nil || len(p.Contacts) != 7 {
		t.Fatalf("search acme0: %d contacts, %v", len(p.Contacts), err)
	}
	p, err = d.ListContactPage(ctx, dataverse.ContactPageQuery{Conditions: base, Search: "05", PageSize: 50})
	if err != nil || len(p.Contacts) != 1 || p.Contacts[0].ID != ids[4] {
		t.Fatalf("search 05: %+v, %v", p, err)
	}
	// Without a base filter: Ann by her first name, Bob by his email
	// address (the seed gives him ann@example.com).
	p, err = d.ListContactPage(ctx, dataverse.ContactPageQuery{Search: "ANN", PageSize: 50})
	if err != nil || len(p.Contacts) != 2 || p.Contacts[0].ID != annID || p.Contacts[1].ID != bobID {
		t.Fatalf("search ANN without a base filter: %+v, %v", p, err)
	}

	// The cursor of the first query must not page a wider one.
	first, err := d.ListContactPage(ctx, dataverse.ContactPageQuery{Conditions: base, PageSize: 3})
	if err != nil || first.Next == "" {
		t.Fatal(first, err)
	}
	before := apiRequests(h)
	for name, q := range map[string]dataverse.ContactPageQuery{
		"no filter":    {PageSize: 3, Cursor: first.Next},
		"other search": {Conditions: base, Search: "x", PageSize: 3, Cursor: first.Next},
		"garbage":      {Conditions: base, PageSize: 3, Cursor: "!!"},
		"foreign path": {Conditions: base, PageSize: 3, Cursor: "YWNjb3VudHM_JHNraXB0b2tlbj14"},
	} {
		if _, err := d.ListContactPage(ctx, q); !errors.Is(err, crmclient.ErrInvalidArgument) || !errors.Is(err, dataverse.ErrInvalidCursor) {
			t.Errorf("%s: %v, want ErrInvalidArgument and ErrInvalidCursor", name, err)
		}
	}
	for _, q := range []dataverse.ContactPageQuery{
		{PageSize: 0}, {PageSize: 5001},
		{PageSize: 3, Columns: []string{"adx_identity_passwordhash"}},
		{PageSize: 3, Conditions: []dataverse.Condition{{Column: "statecode", Op: "gt", Value: int64(0)}}},
		{PageSize: 3, Search: string(make([]byte, 201))},
	} {
		if _, err := d.ListContactPage(ctx, q); !errors.Is(err, crmclient.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want ErrInvalidArgument", q, err)
		}
	}
	if n := apiRequests(h) - before; n != 0 {
		t.Errorf("refused queries sent %d requests", n)
	}
}

// TestDirectoryDeleteContact: a delete names the row version; a stale one
// is refused with ErrContactChanged and deletes nothing, an empty one is
// never sent, a missing contact is ErrContactNotFound. UpdateContact's
// 412 is the same error.
func TestDirectoryDeleteContact(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	id := seedAcme(t, d, 1)[0]
	old, err := d.ContactByID(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.UpdateContact(ctx, id, map[string]any{"firstname": "Acne"}, old.ETag); err != nil {
		t.Fatal(err)
	}
	if err := d.UpdateContact(ctx, id, map[string]any{"firstname": "Stale"}, old.ETag); !errors.Is(err, dataverse.ErrContactChanged) {
		t.Fatalf("stale update: %v, want ErrContactChanged", err)
	}
	before := apiRequests(h)
	for _, etag := range []string{"", "*"} {
		if err := d.DeleteContact(ctx, id, etag); !errors.Is(err, crmclient.ErrInvalidArgument) {
			t.Errorf("delete with etag %q: %v, want ErrInvalidArgument", etag, err)
		}
	}
	if n := apiRequests(h) - before; n != 0 {
		t.Errorf("blind deletes sent %d requests", n)
	}
	if err := d.DeleteContact(ctx, id, old.ETag); !errors.Is(err, dataverse.ErrContactChanged) {
		t.Fatalf("stale delete: %v, want ErrContactChanged", err)
	}
	if row, ok := h.Row("contacts", id); !ok || row["firstname"] != "Acne" {
		t.Fatalf("after stale writes: %v %v", row, ok)
	}
	cur, err := d.ContactByID(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteContact(ctx, id, cur.ETag); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Row("contacts", id); ok {
		t.Fatal("contact still there")
	}
	if err := d.DeleteContact(ctx, id, cur.ETag); !errors.Is(err, dataverse.ErrContactNotFound) {
		t.Fatalf("delete again: %v, want ErrContactNotFound", err)
	}
	if err := d.DeleteContact(ctx, "not-a-guid", cur.ETag); !errors.Is(err, dataverse.ErrContactNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}
