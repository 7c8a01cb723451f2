package dataversetest

import (
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return m
}

func errorCode(t *testing.T, b []byte) string {
	t.Helper()
	m := decode(t, b)
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestCreate(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("204 with OData-EntityId", func(t *testing.T) {
		resp, b := e.do("POST", "contacts", map[string]any{"firstname": "Cy", "lastname": "Doe", "parentcustomerid_account@odata.bind": "/accounts(" + accountA + ")"})
		if resp.StatusCode != 204 || len(b) != 0 {
			t.Fatalf("status %d body %s", resp.StatusCode, b)
		}
		loc := resp.Header.Get("OData-EntityId")
		if !strings.HasPrefix(loc, e.srv.URL+APIPrefix+"contacts(") {
			t.Fatalf("OData-EntityId = %q", loc)
		}
		_, id, _ := parseEntityRef(loc)
		row, ok := e.srv.Row("contacts", id)
		if !ok || row["fullname"] != "Cy Doe" || row["_parentcustomerid_value"] != accountA || row["statecode"] != float64(0) {
			t.Errorf("row = %v", row)
		}
	})
	t.Run("201 with representation", func(t *testing.T) {
		resp, b := e.do("POST", "contacts?$select=fullname", map[string]any{"firstname": "Di", "lastname": "Roe"}, "Prefer", "return=representation")
		if resp.StatusCode != 201 || resp.Header.Get("OData-EntityId") != "" || resp.Header.Get("Preference-Applied") != "return=representation" {
			t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
		}
		m := decode(t, b)
		if m["fullname"] != "Di Roe" || m["contactid"] == nil || !strings.HasPrefix(m["@odata.etag"].(string), `W/"`) ||
			!strings.HasSuffix(m["@odata.context"].(string), "$metadata#contacts(fullname)/$entity") {
			t.Errorf("body = %v", m)
		}
	})
	t.Run("wrong type", func(t *testing.T) {
		resp, b := e.do("POST", "contacts", map[string]any{"lastname": 7})
		if resp.StatusCode != 400 || errorCode(t, b) != codePayloadError {
			t.Errorf("status %d body %s", resp.StatusCode, b)
		}
	})
	t.Run("bind missing account", func(t *testing.T) {
		resp, b := e.do("POST", "contacts", map[string]any{"lastname": "X", "parentcustomerid_account@odata.bind": "accounts(00000000-0000-0000-0000-0000000000ff)"})
		if resp.StatusCode != 404 || errorCode(t, b) != codeObjectDoesNotExist {
			t.Errorf("status %d body %s", resp.StatusCode, b)
		}
	})
}

func TestUpdateUpsertDelete(t *testing.T) {
	e := newEnv(t, nil)
	const fresh = "f0000000-0000-0000-0000-00000000000f"
	etagOf := func() string {
		resp, b := e.do("GET", "contacts("+contactA+")?$select=contactid", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("get: %d %s", resp.StatusCode, b)
		}
		return decode(t, b)["@odata.etag"].(string)
	}
	first := etagOf()
	tests := []struct {
		name     string
		method   string
		path     string
		body     any
		hdr      []string
		want     int
		wantCode string
	}{
		{"If-Match * on missing is 404", "PATCH", "contacts(" + fresh + ")", map[string]any{"lastname": "N"}, []string{"If-Match", "*"}, 404, codeObjectDoesNotExist},
		{"update with current etag", "PATCH", "contacts(" + contactA + ")", map[string]any{"telephone1": "1"}, []string{"If-Match", first}, 204, ""},
		{"stale etag is 412", "PATCH", "contacts(" + contactA + ")", map[string]any{"telephone1": "2"}, []string{"If-Match", first}, 412, codeConcurrencyMismatch},
		{"If-None-Match * on existing is 412", "PATCH", "contacts(" + contactA + ")", map[string]any{"telephone1": "3"}, []string{"If-None-Match", "*"}, 412, codeDuplicateRecord},
		{"upsert creates", "PATCH", "contacts(" + fresh + ")", map[string]any{"lastname": "New"}, nil, 204, ""},
		{"upsert updates with representation", "PATCH", "contacts(" + fresh + ")?$select=lastname", map[string]any{"lastname": "Newer"}, []string{"Prefer", "return=representation"}, 200, ""},
		{"If-None-Match * creates", "PATCH", "contacts(f0000000-0000-0000-0000-0000000000f1)", map[string]any{"lastname": "C"}, []string{"If-None-Match", "*", "Prefer", "return=representation"}, 201, ""},
		{"stale delete is 412", "DELETE", "contacts(" + contactA + ")", nil, []string{"If-Match", first}, 412, codeConcurrencyMismatch},
		{"delete", "DELETE", "contacts(" + fresh + ")", nil, nil, 204, ""},
		{"delete again is 404", "DELETE", "contacts(" + fresh + ")", nil, nil, 404, codeObjectDoesNotExist},
		{"put property", "PUT", "contacts(" + contactA + ")/firstname", map[string]any{"value": "Anne"}, nil, 204, ""},
		{"delete property", "DELETE", "contacts(" + contactA + ")/telephone1", nil, nil, 204, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := e.do(tc.method, tc.path, tc.body, tc.hdr...)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.wantCode != "" && errorCode(t, b) != tc.wantCode {
				t.Errorf("code = %s, want %s", errorCode(t, b), tc.wantCode)
			}
			if tc.method == "PATCH" && tc.want == 204 && resp.Header.Get("OData-EntityId") == "" {
				t.Error("PATCH 204 without OData-EntityId")
			}
			if tc.want == 200 || tc.want == 201 {
				if resp.Header.Get("ETag") != decode(t, b)["@odata.etag"] {
					t.Errorf("ETag %q vs body %s", resp.Header.Get("ETag"), b)
				}
			}
		})
	}
	row, _ := e.srv.Row("contacts", contactA)
	if row["firstname"] != "Anne" || row["fullname"] != "Anne Lee" || row["telephone1"] != nil {
		t.Errorf("row = %v", row)
	}
	if etagOf() == first {
		t.Error("etag did not change on write")
	}
	t.Run("conditional GET", func(t *testing.T) {
		cur := etagOf()
		resp, _ := e.do("GET", "contacts("+contactA+")?$select=contactid", nil, "If-None-Match", cur)
		if resp.StatusCode != 304 {
			t.Errorf("status %d, want 304", resp.StatusCode)
		}
		resp, _ = e.do("GET", "contacts("+contactA+")?$select=contactid", nil, "If-None-Match", cur, "Prefer", `odata.include-annotations="*"`)
		if resp.StatusCode != 200 {
			t.Errorf("with annotations: status %d, want 200", resp.StatusCode)
		}
	})
}

func TestAssociate(t *testing.T) {
	e := newEnv(t, nil)
	roleURL := e.srv.URL + APIPrefix + "adx_webroles(" + roleB + ")"
	steps := []struct {
		name   string
		method string
		path   string
		body   any
		want   int
		roles  []string
	}{
		{"associate", "POST", "contacts(" + contactA + ")/adx_webrole_contact/$ref", map[string]any{"@odata.id": roleURL}, 204, []string{roleA, roleB}},
		{"associate missing role", "POST", "contacts(" + contactA + ")/adx_webrole_contact/$ref", map[string]any{"@odata.id": "adx_webroles(00000000-0000-0000-0000-0000000000ff)"}, 404, []string{roleA, roleB}},
		{"disassociate by key", "DELETE", "contacts(" + contactA + ")/adx_webrole_contact(" + roleA + ")/$ref", nil, 204, []string{roleB}},
		{"disassociate by $id", "DELETE", "contacts(" + contactA + ")/adx_webrole_contact/$ref?$id=" + roleURL, nil, 204, nil},
		{"associate with a relative @odata.id", "POST", "contacts(" + contactA + ")/adx_webrole_contact/$ref", map[string]any{"@odata.id": "/adx_webroles(" + roleA + ")"}, 204, []string{roleA}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			resp, b := e.do(s.method, s.path, s.body)
			if resp.StatusCode != s.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, s.want, b)
			}
			if got := e.srv.Associated("contacts", contactA, "adx_webrole_contact"); strings.Join(got, ",") != strings.Join(s.roles, ",") {
				t.Errorf("roles = %v, want %v", got, s.roles)
			}
		})
	}
	t.Run("expand from the role side", func(t *testing.T) {
		resp, b := e.do("GET", "adx_webroles?$select=adx_name&$filter=adx_name%20eq%20'Administrators'&$expand=adx_webrole_contact($select=fullname)", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if !strings.Contains(string(b), `"adx_webrole_contact":[{"@odata.etag":`) || !strings.Contains(string(b), `"fullname":"Ann Lee"`) {
			t.Errorf("body = %s", b)
		}
	})
	t.Run("power pages component N:N", func(t *testing.T) {
		resp, b := e.do("POST", "powerpagecomponents", map[string]any{"powerpagecomponentid": "d0000000-0000-0000-0000-00000000000d", "name": "Members", "powerpagecomponenttype": 11})
		if resp.StatusCode != 204 {
			t.Fatalf("create: %d %s", resp.StatusCode, b)
		}
		resp, b = e.do("POST", "contacts("+contactA+")/powerpagecomponent_mspp_webrole_contact/$ref", map[string]any{"@odata.id": "powerpagecomponents(d0000000-0000-0000-0000-00000000000d)"})
		if resp.StatusCode != 204 {
			t.Fatalf("associate: %d %s", resp.StatusCode, b)
		}
		resp, b = e.do("GET", "contacts("+contactA+")/powerpagecomponent_mspp_webrole_contact?$select=name,powerpagecomponentid", nil)
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"name":"Members"`) {
			t.Errorf("list: %d %s", resp.StatusCode, b)
		}
	})
}

func TestActions(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Actions = map[string]Action{
			"adx_SendEmailConfirmationToContact": {},
			"new_Lookup":                         {Response: map[string]any{"Found": true}},
		}
	})
	resp, b := e.do("POST", "adx_SendEmailConfirmationToContact", map[string]any{"ContactId": contactA})
	if resp.StatusCode != 204 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	resp, b = e.do("POST", "new_Lookup", map[string]any{"Q": "x"})
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"@odata.context":"`+e.srv.URL+`/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.new_LookupResponse","Found":true`) {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	resp, b = e.do("GET", "new_Lookup", nil)
	if resp.StatusCode != 404 || errorCode(t, b) != "" {
		t.Errorf("GET action: %d %s", resp.StatusCode, b)
	}
	calls := e.srv.ActionCalls("adx_SendEmailConfirmationToContact")
	if len(calls) != 1 || calls[0]["ContactId"] != contactA {
		t.Errorf("calls = %v", calls)
	}
}

func TestServiceProtectionLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{Requests: 3, Window: 10 * time.Second} })
	for i := range 3 {
		if resp, b := e.do("GET", "WhoAmI()", nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
		e.clock.Advance(time.Second)
	}
	resp, b := e.do("GET", "WhoAmI()", nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || errorCode(t, b) != codeRequestsLimit ||
		!strings.Contains(string(b), "Number of requests exceeded the limit of 3 over time window of 10 seconds.") {
		t.Fatalf("got %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	e.clock.Advance(7 * time.Second)
	if resp, b := e.do("GET", "WhoAmI()", nil); resp.StatusCode != 200 {
		t.Errorf("after the window: %d %s", resp.StatusCode, b)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{Concurrent: 1} })
	// Hold one request in flight with injected latency, then send another.
	e.srv.SetFaults(Faults{Latency: time.Hour})
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest("GET", e.srv.URL+APIPrefix+"WhoAmI()", nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	for e.srv.Requests("GET WhoAmI()") == 0 {
		runtime.Gosched() // until the first request has arrived
	}
	var resp *http.Response
	var b []byte
	for {
		resp, b = e.do("GET", "WhoAmI()", nil)
		if resp.StatusCode == 429 {
			break
		}
	}
	if errorCode(t, b) != codeConcurrentRequestLimit || !strings.Contains(string(b), "limit of 1.") {
		t.Errorf("body = %s", b)
	}
	e.srv.Close() // ends the held request
	<-done
}

func TestFaultsAndRequestCounts(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.SetFaults(Faults{Status: 503, Count: 2})
	for i, want := range []int{503, 503, 200} {
		if resp, b := e.do("GET", "contacts("+contactA+")", nil); resp.StatusCode != want {
			t.Errorf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	e.srv.SetFaults(Faults{MalformedJSON: true, Count: 1})
	_, b := e.do("GET", "contacts("+contactA+")", nil)
	if json.Valid(b) {
		t.Errorf("body is valid JSON: %s", b)
	}
	e.srv.SetFaults(Faults{DropConnection: true, Count: 1})
	req, _ := http.NewRequest("GET", e.srv.URL+APIPrefix+"contacts("+contactA+")", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	// A fresh connection: net/http retries an idempotent request once when a
	// reused keep-alive connection closes without an answer.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := fresh.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("dropped connection answered %d", resp.StatusCode)
	}
	if n := e.srv.Requests("GET contacts()"); n != 5 {
		t.Errorf("Requests(GET contacts()) = %d, want 5", n)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.do("GET", "contacts?$select=fullname", nil)
		}()
	}
	wg.Wait()
	if n := e.srv.Requests("GET contacts"); n != 10 {
		t.Errorf("Requests(GET contacts) = %d, want 10", n)
	}
}
