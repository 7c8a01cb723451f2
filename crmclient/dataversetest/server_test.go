package dataversetest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// clock is an injectable clock tests advance by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sequentialIDs returns a deterministic GUID generator.
func sequentialIDs() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("00000000-0000-0000-0000-%012d", n)
	}
}

const (
	testTenant = "11111111-1111-1111-1111-111111111111"
	testClient = "22222222-2222-2222-2222-222222222222"
	testSecret = "s3cret~value"
	contactA   = "c0000000-0000-0000-0000-00000000000a"
	contactB   = "c0000000-0000-0000-0000-00000000000b"
	accountA   = "a0000000-0000-0000-0000-00000000000a"
	roleA      = "e0000000-0000-0000-0000-00000000000a"
	roleB      = "e0000000-0000-0000-0000-00000000000b"
)

const testSeed = `{
 "accounts": [{"accountid": "` + accountA + `", "name": "Contoso"}],
 "contacts": [
  {"contactid": "` + contactA + `", "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.com",
   "adx_identity_username": "ann", "adx_identity_logonenabled": true,
   "parentcustomerid_account@odata.bind": "/accounts(` + accountA + `)"},
  {"contactid": "` + contactB + `", "firstname": "Bob", "lastname": "O'Brian", "emailaddress1": "bob@example.com", "statecode": 1, "statuscode": 2}
 ],
 "adx_webroles": [
  {"adx_webroleid": "` + roleA + `", "adx_name": "Administrators"},
  {"adx_webroleid": "` + roleB + `", "adx_name": "Authenticated Users", "adx_authenticatedusersrole": true}
 ],
 "associations": [{"relationship": "adx_webrole_contact", "contactid": "` + contactA + `", "adx_webroleid": "` + roleA + `"}]
}`

type env struct {
	t     *testing.T
	srv   *Server
	clock *clock
	token string
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	opts := Options{
		TenantID:       testTenant,
		Clients:        []Client{{ID: testClient, Secret: testSecret, UserID: "55555555-5555-5555-5555-555555555555"}},
		Now:            c.Now,
		NewID:          sequentialIDs(),
		OrganizationID: "33333333-3333-3333-3333-333333333333",
		BusinessUnitID: "44444444-4444-4444-4444-444444444444",
	}
	if mod != nil {
		mod(&opts)
	}
	s := NewServer(opts)
	t.Cleanup(s.Close)
	if err := s.LoadSeed(strings.NewReader(testSeed)); err != nil {
		t.Fatalf("LoadSeed: %v", err)
	}
	e := &env{t: t, srv: s, clock: c}
	e.token = e.getToken()
	return e
}

func (e *env) tokenForm(extra url.Values) url.Values {
	f := url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient}, "scope": {e.srv.URL + "/.default"}}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

func (e *env) postToken(f url.Values) (*http.Response, map[string]any) {
	e.t.Helper()
	resp, err := http.PostForm(e.srv.URL+"/"+testTenant+"/oauth2/v2.0/token", f)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatalf("token body: %v", err)
	}
	return resp, body
}

func (e *env) getToken() string {
	e.t.Helper()
	resp, body := e.postToken(e.tokenForm(url.Values{"client_secret": {testSecret}}))
	if resp.StatusCode != 200 {
		e.t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	return body["access_token"].(string)
}

// do sends a Web API request; path is relative to /api/data/v9.2/.
func (e *env) do(method, path string, body any, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.srv.URL+APIPrefix+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// golden compares status, selected headers and the indented body with
// testdata/<name>.golden.
func golden(t *testing.T, name string, resp *http.Response, body []byte, base string) {
	t.Helper()
	var out bytes.Buffer
	fmt.Fprintf(&out, "%d\n", resp.StatusCode)
	var names []string
	for k := range resp.Header {
		switch k {
		case "Date", "Content-Length", "X-Ms-Ratelimit-Burst-Remaining-Xrm-Requests":
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&out, "%s: %s\n", k, strings.ReplaceAll(strings.Join(resp.Header[k], ", "), base, "{base}"))
	}
	out.WriteString("\n")
	if len(body) > 0 {
		var ind bytes.Buffer
		if err := json.Indent(&ind, body, "", "  "); err != nil {
			ind.Write(body)
		}
		out.WriteString(strings.ReplaceAll(ind.String(), base, "{base}"))
		out.WriteString("\n")
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("%s mismatch\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestGolden(t *testing.T) {
	e := newEnv(t, nil)
	ann := `odata.include-annotations="*"`
	tests := []struct {
		name, method, path string
		body               any
		hdr                []string
	}{
		{"service_document", "GET", "", nil, nil},
		{"whoami", "GET", "WhoAmI()", nil, nil},
		{"whoami_post", "POST", "WhoAmI", nil, nil},
		{"contacts_select", "GET", "contacts?$select=fullname,emailaddress1&$orderby=lastname", nil, nil},
		{"contacts_filter_count", "GET", "contacts?$select=fullname&$filter=lastname%20eq%20'O''Brian'&$count=true", nil, nil},
		{"contact_annotations", "GET", "contacts(" + contactA + ")?$select=fullname,_parentcustomerid_value,statecode", nil, []string{"Prefer", ann}},
		{"contact_expand_roles", "GET", "contacts(" + contactA + ")?$select=contactid&$expand=adx_webrole_contact($select=adx_name,adx_webroleid)", nil, nil},
		{"contact_not_found", "GET", "contacts(00000000-0000-0000-0000-0000000000ff)", nil, nil},
		{"skip_rejected", "GET", "contacts?$skip=1", nil, nil},
		{"unknown_property", "GET", "contacts?$select=Name", nil, nil},
		{"unknown_set", "GET", "Contacts", nil, nil},
		{"unknown_action", "POST", "new_DoIt", map[string]any{}, nil},
		{"page1", "GET", "contacts?$select=firstname", nil, []string{"Prefer", "odata.maxpagesize=1"}},
		{"refs", "GET", "contacts(" + contactA + ")/adx_webrole_contact/$ref", nil, nil},
		{"role_contacts", "GET", "adx_webroles(" + roleA + ")/adx_webrole_contact?$select=fullname", nil, nil},
		{"patch_collection", "PATCH", "contacts", map[string]any{}, nil},
		{"bind_customer_wrong", "POST", "contacts", map[string]any{"lastname": "X", "parentcustomerid@odata.bind": "/accounts(" + accountA + ")"}, nil},
		{"invalid_property", "POST", "accounts", map[string]any{"Name": "X"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(tc.method, tc.path, tc.body, tc.hdr...)
			golden(t, tc.name, resp, body, e.srv.URL)
		})
	}
}

func TestPagingFollowsNextLink(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 5 {
		if resp, b := e.do("POST", "contacts", map[string]any{"lastname": fmt.Sprintf("P%d", i)}); resp.StatusCode != 204 {
			t.Fatalf("create: %d %s", resp.StatusCode, b)
		}
	}
	next := APIPrefix + "contacts?$select=lastname&$top=1"
	var got []string
	pages := 0
	for next != "" {
		resp, b := e.do("GET", strings.TrimPrefix(strings.TrimPrefix(next, e.srv.URL), APIPrefix), nil, "Prefer", "odata.maxpagesize=3")
		if resp.StatusCode != 200 {
			t.Fatalf("page: %d %s", resp.StatusCode, b)
		}
		if pa := resp.Header.Get("Preference-Applied"); pa != "odata.maxpagesize=3" {
			t.Errorf("Preference-Applied = %q", pa)
		}
		var body struct {
			Value []map[string]any `json:"value"`
			Next  string           `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatal(err)
		}
		for _, v := range body.Value {
			got = append(got, v["lastname"].(string))
		}
		next = body.Next
		pages++
	}
	// $top is ignored with maxpagesize: all 7 contacts in pages of 3.
	if len(got) != 7 || pages != 3 {
		t.Errorf("got %d rows in %d pages: %v", len(got), pages, got)
	}
}
