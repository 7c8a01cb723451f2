package dataversetest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/crmclient/dataversetest/odata"
)

// pid is the contactid of test row n; ids sort as n does.
func pid(n int) string { return fmt.Sprintf("10000000-0000-0000-0000-%012x", n) }

// with returns a copy of e that reports to t, for use in subtests.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// create POSTs body to set and fails the test unless it gets 204.
func (e *env) create(set string, body map[string]any) {
	e.t.Helper()
	if resp, b := e.do("POST", set, body); resp.StatusCode != 204 {
		e.t.Fatalf("create %s %v: %d %s", set, body, resp.StatusCode, b)
	}
}

// remove DELETEs set(id) and fails the test unless it gets 204.
func (e *env) remove(set, id string) {
	e.t.Helper()
	if resp, b := e.do("DELETE", set+"("+id+")", nil); resp.StatusCode != 204 {
		e.t.Fatalf("delete %s(%s): %d %s", set, id, resp.StatusCode, b)
	}
}

// page GETs path (relative to the API root) with Prefer:
// odata.maxpagesize=size (none when size is 0). It returns the rows, the
// @odata.count (-1 if absent) and the nextLink relative to the API root
// ("" on the last page).
func (e *env) page(path string, size int) (rows []map[string]any, count int, next string) {
	e.t.Helper()
	var hdr []string
	if size > 0 {
		hdr = []string{"Prefer", "odata.maxpagesize=" + strconv.Itoa(size)}
	}
	resp, b := e.do("GET", path, nil, hdr...)
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if want := "odata.maxpagesize=" + strconv.Itoa(size); size > 0 && resp.Header.Get("Preference-Applied") != want {
		e.t.Errorf("GET %s: Preference-Applied = %q, want %q", path, resp.Header.Get("Preference-Applied"), want)
	}
	var body struct {
		Value []map[string]any `json:"value"`
		Count *int             `json:"@odata.count"`
		Next  string           `json:"@odata.nextLink"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		e.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
	count = -1
	if body.Count != nil {
		count = *body.Count
	}
	if body.Next != "" {
		var ok bool
		if next, ok = strings.CutPrefix(body.Next, e.srv.URL+APIPrefix); !ok {
			e.t.Fatalf("GET %s: nextLink %q is not under %s", path, body.Next, e.srv.URL+APIPrefix)
		}
	}
	return body.Value, count, next
}

// pageAll follows every nextLink from path and returns the pk column of
// every row, in order, failing if a page but the last is not full.
func (e *env) pageAll(path, pk string, size int) []string {
	e.t.Helper()
	var ids []string
	for pages := 0; path != ""; pages++ {
		if pages > 10000 {
			e.t.Fatalf("more than 10000 pages")
		}
		rows, _, next := e.page(path, size)
		if next != "" && len(rows) != size {
			e.t.Errorf("page %d has %d rows, want %d", pages+1, len(rows), size)
		}
		for _, r := range rows {
			ids = append(ids, r[pk].(string))
		}
		path = next
	}
	return ids
}

// skipTokenOf returns the decoded $skiptoken of a nextLink.
func skipTokenOf(t *testing.T, next string) string {
	t.Helper()
	_, q, _ := strings.Cut(next, "?")
	vals, err := url.ParseQuery(q)
	if err != nil || len(vals["$skiptoken"]) != 1 {
		t.Fatalf("nextLink %q: no $skiptoken (%v)", next, err)
	}
	return vals["$skiptoken"][0]
}

// TestPagingReturnsEveryRowOnce pages through contacts with several page
// sizes, with and without $filter, $select and $count: every row comes
// exactly once, in primary key order, in full pages.
func TestPagingReturnsEveryRowOnce(t *testing.T) {
	e := newEnv(t, nil)
	const n = 23
	for _, k := range rand.New(rand.NewPCG(1, 2)).Perm(n) {
		e.create("contacts", map[string]any{"contactid": pid(16 * (k + 1)), "lastname": "K" + strconv.Itoa(k+1)})
	}
	var mine []string
	for k := 1; k <= n; k++ {
		mine = append(mine, pid(16*k))
	}
	all := append(slices.Clone(mine), contactA, contactB) // seeded ids sort last
	queries := []struct {
		path string
		want []string
	}{
		{"contacts?$select=lastname", all},
		{"contacts", all},
		{"contacts?$select=lastname&$filter=startswith(lastname,'K')&$count=true", mine},
		{"contacts?$select=contactid&$filter=startswith(lastname,'K')&$top=3", mine}, // $top is ignored
	}
	for _, q := range queries {
		for _, size := range []int{1, 2, 4, n - 1, n, n + 1, 5000} {
			t.Run(fmt.Sprintf("%s/%d", q.path, size), func(t *testing.T) {
				if got := e.with(t).pageAll(q.path, "contactid", size); !slices.Equal(got, q.want) {
					t.Errorf("got  %v\nwant %v", got, q.want)
				}
			})
		}
	}
	t.Run("count on every page", func(t *testing.T) {
		e := e.with(t)
		path := "contacts?$select=lastname&$filter=startswith(lastname,'K')&$count=true"
		for path != "" {
			var count int
			_, count, path = e.page(path, 5)
			if count != n {
				t.Errorf("@odata.count = %d, want %d", count, n)
			}
		}
	})
	t.Run("no maxpagesize", func(t *testing.T) {
		e := e.with(t)
		rows, _, next := e.page("contacts?$select=lastname", 0)
		if len(rows) != n+2 || next != "" {
			t.Errorf("%d rows, nextLink %q; want %d rows and none", len(rows), next, n+2)
		}
		rows, _, next = e.page("contacts?$select=lastname&$top=3", 0)
		if len(rows) != 3 || next != "" {
			t.Errorf("$top=3: %d rows, nextLink %q; want 3 rows and none", len(rows), next)
		}
	})
}

// TestPagingEveryEntitySet pages through every entity set the emulator
// serves, in primary key order and ordered by a column every row shares,
// and through a collection-valued navigation property: paged results
// equal the unpaged result.
func TestPagingEveryEntitySet(t *testing.T) {
	e := newEnv(t, nil)
	for set, tab := range e.srv.bySet {
		pk := tab.typ.PrimaryKey
		for k := 1; k <= 7; k++ {
			e.create(set, map[string]any{pk: pid(k)})
		}
		// createdon is the same for every row (the test clock stands still),
		// so the second order is all ties.
		for _, q := range []string{"?$select=" + pk, "?$orderby=createdon desc", "?$orderby=statecode,createdon&$select=createdon"} {
			path := set + strings.ReplaceAll(q, " ", "%20")
			t.Run(path, func(t *testing.T) {
				e := e.with(t)
				want := e.pageAll(path, pk, 0)
				if len(want) < 7 {
					t.Fatalf("unpaged: %d rows, want at least 7", len(want))
				}
				for _, size := range []int{1, 3} {
					if got := e.pageAll(path, pk, size); !slices.Equal(got, want) {
						t.Errorf("size %d: got %v\nwant %v", size, got, want)
					}
				}
			})
		}
	}
	t.Run("navigation property", func(t *testing.T) {
		e := e.with(t)
		for k := 1; k <= 7; k++ {
			ref := map[string]any{"@odata.id": "adx_webroles(" + pid(k) + ")"}
			if resp, b := e.do("POST", "contacts("+contactB+")/adx_webrole_contact/$ref", ref); resp.StatusCode != 204 {
				t.Fatalf("associate: %d %s", resp.StatusCode, b)
			}
		}
		path := "contacts(" + contactB + ")/adx_webrole_contact?$select=adx_name"
		want := []string{pid(1), pid(2), pid(3), pid(4), pid(5), pid(6), pid(7)}
		for _, size := range []int{1, 2, 7, 8} {
			if got := e.pageAll(path, "adx_webroleid", size); !slices.Equal(got, want) {
				t.Errorf("size %d: got %v\nwant %v", size, got, want)
			}
		}
	})
}

// TestPagingSurvivesDeletesAndInserts deletes rows on the page just
// returned (including its last row, the cursor), rows already returned and
// rows not yet returned, and adds rows before and after the cursor, between
// page requests. Nothing still present is skipped, nothing is repeated, rows
// added after the cursor come, rows added before it do not.
func TestPagingSurvivesDeletesAndInserts(t *testing.T) {
	for _, order := range []string{"", "&$orderby=lastname%20desc", "&$orderby=statecode,lastname", "&$orderby=contactid"} {
		t.Run(order, func(t *testing.T) {
			e := newEnv(t, nil)
			for k := 1; k <= 20; k++ {
				e.create("contacts", map[string]any{"contactid": pid(16 * k), "lastname": "K"})
			}
			add := func(n int) { e.create("contacts", map[string]any{"contactid": pid(n), "lastname": "K"}) }
			del := func(ks ...int) {
				for _, k := range ks {
					e.remove("contacts", pid(16*k))
				}
			}
			path := "contacts?$select=lastname&$filter=lastname%20eq%20'K'" + order
			var got []string
			step := func(want ...int) {
				t.Helper()
				rows, _, next := e.page(path, 3)
				var ids, wantIDs []string
				for _, r := range rows {
					ids = append(ids, r["contactid"].(string))
				}
				for _, n := range want {
					wantIDs = append(wantIDs, pid(n))
				}
				if !slices.Equal(ids, wantIDs) {
					t.Fatalf("page after %v:\ngot  %v\nwant %v", got, ids, wantIDs)
				}
				got = append(got, ids...)
				path = next
			}
			step(16, 32, 48)
			del(2, 3, 6)  // two rows of the page just returned, one ahead
			add(16 + 8)   // before the cursor: must not come
			add(16*4 + 8) // after it: must come
			step(16*4, 16*4+8, 16*5)
			del(5, 1) // the cursor again, and a row long returned
			add(16 * 25)
			step(16*7, 16*8, 16*9)
			step(16*10, 16*11, 16*12)
			del(13, 14, 15) // the whole next page
			step(16*16, 16*17, 16*18)
			step(16*19, 16*20, 16*25)
			if path != "" {
				t.Fatalf("nextLink after the last row: %s", path)
			}
		})
	}
}

// orderRef is an independent statement of the emulator's order for
// lastname, with ties broken by contactid ascending: nulls first when
// ascending, strings without regard to case.
func orderRef(desc bool) func(a, b refRow) int {
	return func(a, b refRow) int {
		c := 0
		switch {
		case a.last == nil && b.last == nil:
		case a.last == nil:
			c = -1
		case b.last == nil:
			c = 1
		default:
			c = strings.Compare(strings.ToLower(*a.last), strings.ToLower(*b.last))
		}
		if desc {
			c = -c
		}
		if c == 0 {
			c = strings.Compare(a.id, b.id)
		}
		return c
	}
}

type refRow struct {
	id   string
	last *string
}

func (r refRow) body() map[string]any {
	b := map[string]any{"contactid": r.id}
	if r.last != nil {
		b["lastname"] = *r.last
	}
	return b
}

// TestPagingOrderByTies orders by columns most rows share, and by names
// holding markup, percent signs, control characters and non-ASCII text:
// paged results are the reference order (ties by contactid ascending),
// each row exactly once.
func TestPagingOrderByTies(t *testing.T) {
	e := newEnv(t, nil)
	names := []any{"Ames", "ames", "AMES", "Baker", nil, "Cole", `Q"uote`, "a&b<c>", "100%25 sure+", "tab\there", "ctl\x01\x7f", "Zoë", "😀", " lead", "", "ames"}
	var rows []refRow
	for i, k := range rand.New(rand.NewPCG(3, 4)).Perm(48) {
		r := refRow{id: pid(k + 1)}
		if s, ok := names[i%len(names)].(string); ok {
			r.last = &s
		}
		e.create("contacts", r.body())
		rows = append(rows, r)
	}
	seeded := []refRow{{id: contactA, last: ptr("Lee")}, {id: contactB, last: ptr("O'Brian")}}
	rows = append(rows, seeded...)
	for _, desc := range []bool{false, true} {
		want := slices.Clone(rows)
		slices.SortFunc(want, orderRef(desc))
		var wantIDs []string
		for _, r := range want {
			wantIDs = append(wantIDs, r.id)
		}
		path := "contacts?$select=lastname&$orderby=lastname"
		if desc {
			path += "%20desc"
		}
		for _, size := range []int{1, 2, 3, 5, 50} {
			t.Run(fmt.Sprintf("desc=%v/%d", desc, size), func(t *testing.T) {
				if got := e.with(t).pageAll(path, "contactid", size); !slices.Equal(got, wantIDs) {
					t.Errorf("got  %v\nwant %v", got, wantIDs)
				}
			})
		}
	}
	t.Run("pk named in $orderby", func(t *testing.T) {
		e := e.with(t)
		want := e.pageAll("contacts?$select=lastname&$orderby=lastname,contactid%20desc", "contactid", 0)
		byID := map[string]refRow{}
		for _, r := range rows {
			byID[r.id] = r
		}
		for i := 1; i < len(want); i++ {
			a, b := byID[want[i-1]], byID[want[i]]
			if orderRef(false)(refRow{last: a.last}, refRow{last: b.last}) == 0 && a.id < b.id {
				t.Fatalf("ties on lastname not by contactid desc: %s before %s", a.id, b.id)
			}
		}
		if got := e.pageAll("contacts?$select=lastname&$orderby=lastname,contactid%20desc", "contactid", 4); !slices.Equal(got, want) {
			t.Errorf("got  %v\nwant %v", got, want)
		}
	})
}

func ptr(s string) *string { return &s }

// TestPagingRandomMutations pages ordered by a column with many ties while
// rows are deleted and added at random between page requests. Checked: no
// row comes twice; rows come in the reference order; every row present from
// the first request to the last comes; a row added after the cursor and
// kept comes, a row added before the cursor does not.
func TestPagingRandomMutations(t *testing.T) {
	lastnames := []any{"a", "A", "b", nil, "c", "B"}
	for seed := uint64(1); seed <= 6; seed++ {
		desc := seed%2 == 0
		t.Run(fmt.Sprintf("seed=%d/desc=%v", seed, desc), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			e := newEnv(t, nil)
			cmp := orderRef(desc)
			live := map[string]refRow{contactA: {id: contactA, last: ptr("Lee")}, contactB: {id: contactB, last: ptr("O'Brian")}}
			newRow := func() refRow {
				r := refRow{id: pid(1 + rng.IntN(1<<40))}
				if s, ok := lastnames[rng.IntN(len(lastnames))].(string); ok {
					r.last = &s
				}
				return r
			}
			for len(live) < 62 {
				if r := newRow(); live[r.id].id == "" {
					e.create("contacts", r.body())
					live[r.id] = r
				}
			}
			stable := map[string]bool{} // present from start to end
			for id := range live {
				stable[id] = true
			}
			mustCome, mustNot := map[string]bool{}, map[string]bool{}
			seen := map[string]bool{}
			var cursor *refRow
			path := "contacts?$select=lastname&$orderby=lastname"
			if desc {
				path += "%20desc"
			}
			for pages := 0; path != ""; pages++ {
				if pages > 200 {
					t.Fatal("more than 200 pages")
				}
				var page []map[string]any
				page, _, path = e.page(path, 1+rng.IntN(7))
				for _, p := range page {
					id := p["contactid"].(string)
					r, ok := live[id]
					if !ok {
						t.Fatalf("deleted row %s came", id)
					}
					if seen[id] {
						t.Fatalf("row %s came twice", id)
					}
					if mustNot[id] {
						t.Fatalf("row %s, added before the cursor, came", id)
					}
					if cursor != nil && cmp(*cursor, r) >= 0 {
						t.Fatalf("row %s came after %s, out of order", id, cursor.id)
					}
					seen[id] = true
					cursor = &r
				}
				if path == "" {
					break
				}
				for range rng.IntN(4) {
					if rng.IntN(2) == 0 && len(live) > 0 {
						ids := make([]string, 0, len(live))
						for id := range live {
							ids = append(ids, id)
						}
						slices.Sort(ids)
						id := ids[rng.IntN(len(ids))]
						e.remove("contacts", id)
						delete(live, id)
						delete(stable, id)
						delete(mustCome, id)
						continue
					}
					r := newRow()
					if _, dup := live[r.id]; dup {
						continue
					}
					e.create("contacts", r.body())
					live[r.id] = r
					if cursor != nil && cmp(*cursor, r) > 0 {
						mustNot[r.id] = true
					} else {
						mustCome[r.id] = true
					}
				}
			}
			for id := range stable {
				if !seen[id] {
					t.Errorf("row %s, present throughout, was skipped", id)
				}
			}
			for id := range mustCome {
				if !seen[id] {
					t.Errorf("row %s, added after the cursor, was skipped", id)
				}
			}
		})
	}
}

// TestPagingRejectsBadSkipToken sends garbled and tampered $skiptoken
// values: each gets a 400 OData error naming the problem, and the server
// goes on serving.
func TestPagingRejectsBadSkipToken(t *testing.T) {
	e := newEnv(t, nil)
	const query = "contacts?$select=lastname&$orderby=lastname"
	_, _, next := e.page(query, 1)
	tok := skipTokenOf(t, next)
	// The documented form: the pagingcookie attribute holds the URL-encoded
	// cookie with the order column, then the primary key, in braces.
	if want := `<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e%3clastname%20last%3d%22Lee%22%20first%3d%22Lee%22%20%2f%3e%3ccontactid%20last%3d%22%7bC0000000-0000-0000-0000-00000000000A%7d%22%20first%3d%22%7bC0000000-0000-0000-0000-00000000000A%7d%22%20%2f%3e%3c%2fcookie%3e" istracking="False" />`; tok != want {
		t.Fatalf("skiptoken\ngot  %s\nwant %s", tok, want)
	}
	pc := func(inner string) string {
		return `<cookie pagenumber="2" pagingcookie="` + cookieEscape(inner) + `" istracking="False" />`
	}
	const pkEl = `<contactid last="{C0000000-0000-0000-0000-00000000000A}" first="{C0000000-0000-0000-0000-00000000000A}" />`
	tests := []struct {
		name, query, tok, reason string
	}{
		{"garbage", query, "garbage", "want '<' at offset 0"},
		{"empty", query, "", "want '<' at offset 0"},
		{"truncated", query, tok[:len(tok)/2], "not terminated"},
		{"page number not a number", query, strings.Replace(tok, `pagenumber="2"`, `pagenumber="two"`, 1), `pagenumber "two"`},
		{"page number 1", query, strings.Replace(tok, `pagenumber="2"`, `pagenumber="1"`, 1), `pagenumber "1"`},
		{"page number overflows", query, strings.Replace(tok, `pagenumber="2"`, `pagenumber="99999999999999999999"`, 1), "pagenumber"},
		{"page number and cookie page disagree", query, strings.Replace(tok, `pagenumber="2"`, `pagenumber="3"`, 1), `page "1" does not precede pagenumber 3`},
		{"no paging cookie", query, `<cookie pagenumber="2" istracking="False" />`, "no pagingcookie"},
		{"bad percent encoding", query, strings.Replace(tok, "%3ccookie", "%zzcookie", 1), "not URL-encoded"},
		{"paging cookie not XML", query, pc("hello"), "want '<'"},
		{"tampered GUID", query, strings.Replace(tok, "%7bC0000000-0000-0000-0000-00000000000A%7d", "%7bC0000000-0000-XXXX-0000-00000000000A%7d", 1), "not a GUID in braces"},
		{"GUID without braces", query, pc(`<cookie page="1"><lastname last="Lee" first="Lee" /><contactid last="c0000000-0000-0000-0000-00000000000a" first="{C0000000-0000-0000-0000-00000000000A}" /></cookie>`), "not a GUID in braces"},
		{"another query's order", "contacts?$select=lastname", tok, "does not match the query's order (contactid)"},
		{"order column missing", query, pc(`<cookie page="1">` + pkEl + `</cookie>`), "does not match the query's order (lastname,contactid)"},
		{"primary key missing", query, pc(`<cookie page="1"><lastname last="Lee" first="Lee" /></cookie>`), "has 1 of the query's 2 order columns"},
		{"extra attribute", query, strings.Replace(tok, ` />`, ` hacked="1" />`, 1), "unexpected attribute hacked"},
		{"repeated attribute", query, strings.Replace(tok, `istracking="False"`, `istracking="False" istracking="False"`, 1), "attribute istracking repeated"},
		{"change tracking", query, strings.Replace(tok, `istracking="False"`, `istracking="True"`, 1), `istracking "True"`},
		{"last and lastnull", query, pc(`<cookie page="1"><lastname last="Lee" lastnull="1" first="Lee" />` + pkEl + `</cookie>`), "exactly one of last and lastnull"},
		{"no first", query, pc(`<cookie page="1"><lastname last="Lee" />` + pkEl + `</cookie>`), "exactly one of first and firstnull"},
		{"unknown entity", query, pc(`<cookie page="1"><lastname last="L&bogus;" first="Lee" />` + pkEl + `</cookie>`), "unknown entity &bogus;"},
		{"text after cookie", query, pc(`<cookie page="1"><lastname last="Lee" first="Lee" />` + pkEl + `</cookie>junk`), "text after </cookie>"},
		{"not a number", "contacts?$select=lastname&$orderby=statecode", pc(`<cookie page="1"><statecode last="zero" first="0" />` + pkEl + `</cookie>`), `"zero" is not a number`},
		{"not a date", "contacts?$select=lastname&$orderby=createdon", pc(`<cookie page="1"><createdon last="yesterday" first="yesterday" />` + pkEl + `</cookie>`), "createdon"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := e.with(t).do("GET", tc.query+"&$skiptoken="+url.QueryEscape(tc.tok), nil, "Prefer", "odata.maxpagesize=1")
			if resp.StatusCode != 400 {
				t.Fatalf("status %d %s, want 400", resp.StatusCode, b)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("%v in %s", err, b)
			}
			const prefix = "The $skiptoken query option value is not a valid paging cookie: "
			if body.Error.Code != "0x0" || !strings.HasPrefix(body.Error.Message, prefix) || !strings.Contains(body.Error.Message, tc.reason) ||
				!strings.HasSuffix(body.Error.Message, ". Send the @odata.nextLink URL unchanged.") {
				t.Errorf("error %s %q, want code 0x0 and a message naming %q", body.Error.Code, body.Error.Message, tc.reason)
			}
		})
	}
	if rows, _, _ := e.page(next, 1); len(rows) != 1 {
		t.Errorf("the genuine nextLink gave %d rows after the bad ones, want 1", len(rows))
	}
}

// TestSkipTokenRoundTrip encodes and decodes the cursor for every column
// kind, with nulls and with text XML and URL encoding must carry.
func TestSkipTokenRoundTrip(t *testing.T) {
	typ := builtinTables()["contact"].typ
	order := pageOrder(odata.OrderBy{
		{Column: "lastname"}, {Column: "adx_identity_logonenabled", Desc: true}, {Column: "adx_identity_accessfailedcount"},
		{Column: "statecode"}, {Column: "adx_identity_lockoutenddate"}, {Column: "_parentcustomerid_value"},
	}, typ.PrimaryKey)
	rows := []odata.Row{
		{"contactid": contactA},
		{"contactid": contactB, "lastname": "a\"b&c<d>e'f%20g+h i\t\n\r\x00\x01\x7fé😀", "adx_identity_logonenabled": true,
			"adx_identity_accessfailedcount": float64(-3.5), "statecode": float64(1), "adx_identity_lockoutenddate": "2025-03-01T12:00:00.123Z",
			"_parentcustomerid_value": accountA},
		{"contactid": pid(1), "lastname": "", "adx_identity_logonenabled": false, "adx_identity_accessfailedcount": float64(1e21),
			"adx_identity_lockoutenddate": "2025-03-01", "statecode": 7}, // an int, and a date-only value
		{"contactid": pid(2), "adx_identity_lockoutenddate": "not a date", "statecode": "wrong type"}, // sort as nulls
	}
	for i, last := range rows {
		first := rows[(i+1)%len(rows)]
		enc := encodeSkipToken(7, typ, order, first, last)
		vals, err := url.ParseQuery("$skiptoken=" + skipTokenEscape(enc))
		if err != nil || vals.Get("$skiptoken") != enc {
			t.Fatalf("row %d: the URL encoding does not round-trip: %v\n%q\n%q", i, err, vals.Get("$skiptoken"), enc)
		}
		tok, err := decodeSkipToken(enc, typ, order)
		if err != nil {
			t.Fatalf("row %d: %v\n%s", i, err, enc)
		}
		if tok.page != 7 {
			t.Errorf("row %d: page %d, want 7", i, tok.page)
		}
		if c := order.Compare(tok.last, last, typ); c != 0 {
			t.Errorf("row %d: decoded cursor %v compares %d to %v", i, tok.last, c, last)
		}
		if s, _ := last["lastname"].(string); s != "" && tok.last["lastname"] != s {
			t.Errorf("row %d: lastname %q, want %q exactly", i, tok.last["lastname"], s)
		}
	}
}

// FuzzDecodeSkipToken checks that no $skiptoken makes the decoder panic,
// and that one it accepts names a position in the query's order.
func FuzzDecodeSkipToken(f *testing.F) {
	typ := builtinTables()["contact"].typ
	order := pageOrder(odata.OrderBy{{Column: "lastname", Desc: true}, {Column: "statecode"}}, typ.PrimaryKey)
	f.Add(encodeSkipToken(2, typ, order, odata.Row{"contactid": contactA}, odata.Row{"contactid": contactB, "lastname": "x&y", "statecode": float64(1)}))
	f.Add(encodeSkipToken(9, typ, order, odata.Row{}, odata.Row{"contactid": pid(3)}))
	f.Add(`<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e%3c%2fcookie%3e" />`)
	f.Add(`<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e%3clastname%20last%3d%22%26%23x1%3b%22 firstnull%3d%221%22%20%2f%3e" />`)
	f.Add("<")
	f.Add(`<cookie pagenumber="`)
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeSkipToken(s, typ, order)
		if err != nil {
			return
		}
		if tok.page < 2 || len(tok.last) != len(order) {
			t.Fatalf("accepted %q as page %d with %d of %d order values", s, tok.page, len(tok.last), len(order))
		}
	})
}
