package proxy

import (
	"encoding/json"
	"testing"
	"time"
)

// TestParseHookDate: the WCF form with and without an offset, RFC 3339,
// and nothing else.
func TestParseHookDate(t *testing.T) {
	want := time.UnixMilli(1525300000123)
	for _, s := range []string{"/Date(1525300000123)/", "/Date(1525300000123+0200)/", "/Date(1525300000123-0530)/", want.UTC().Format(time.RFC3339Nano)} {
		if got, err := parseHookDate(s); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "/Date()/", "/Date(abc)/", "Date(1)", "/Date(1234567890123456)/", "yesterday"} {
		if _, err := parseHookDate(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestHookContacts: which contacts a context names, by message.
func TestHookContacts(t *testing.T) {
	const c1, c2 = "C0000000-0000-4000-8000-00000000000A", "c0000000-0000-4000-8000-00000000000b"
	const role = "d0000000-0000-4000-8000-00000000000a"
	for _, tt := range []struct {
		body    string
		want    []string
		deleted bool
		bad     bool
	}{
		{`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"` + c1 + `"}`, []string{"c0000000-0000-4000-8000-00000000000a"}, false, false},
		{`{"MessageName":"SetStateDynamicEntity","PrimaryEntityName":"contact","PrimaryEntityId":"` + c2 + `"}`, []string{c2}, false, false},
		{`{"MessageName":"Delete","PrimaryEntityName":"contact","PrimaryEntityId":"` + c2 + `"}`, []string{c2}, true, false},
		{`{"MessageName":"Update","PrimaryEntityName":"account","PrimaryEntityId":"` + c2 + `"}`, nil, false, false},
		{`{"MessageName":"Create","PrimaryEntityName":"contact","PrimaryEntityId":"` + c2 + `"}`, nil, false, false},
		{`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"nope"}`, nil, false, true},
		{`{"MessageName":"Associate","PrimaryEntityName":"none","InputParameters":[{"key":"Target","value":{"Id":"` + role + `","LogicalName":"adx_webrole"}},` +
			`{"key":"Relationship","value":{"SchemaName":"adx_webrole_contact"}},{"key":"RelatedEntities","value":[{"Id":"` + c2 + `","LogicalName":"contact"},{"Id":"` + c2 + `","LogicalName":"contact"}]}]}`,
			[]string{c2}, false, false},
		{`{"MessageName":"Disassociate","InputParameters":[{"key":"Target","value":{"Id":"` + c2 + `","LogicalName":"contact"}},{"key":"RelatedEntities","value":[{"Id":"` + role + `","LogicalName":"adx_webrole"}]}]}`,
			[]string{c2}, false, false},
		{`{"MessageName":"Associate","InputParameters":[{"key":"RelatedEntities","value":"x"}]}`, nil, false, true},
	} {
		var rc remoteContext
		if err := json.Unmarshal([]byte(tt.body), &rc); err != nil {
			t.Fatal(err)
		}
		got, deleted, err := rc.contacts()
		if (err != nil) != tt.bad || deleted != tt.deleted || len(got) != len(tt.want) {
			t.Errorf("%s: %v %v %v", tt.body, got, deleted, err)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: %v, want %v", tt.body, got, tt.want)
			}
		}
	}
}
