package dataversetest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestAlternateKeys covers retrieve (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api)
// and upsert (https://learn.microsoft.com/power-apps/developer/data-platform/use-upsert-insert-update-record) by
// an alternate key defined in Options.AlternateKeys, the documented errors
// for an undefined key and a missing record, and ” escaping in key values.
func TestAlternateKeys(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.AlternateKeys = map[string][][]string{"contact": {{"emailaddress1"}, {"firstname", "lastname"}}}
	})

	resp, body := e.do("GET", "contacts(emailaddress1='ann@example.com')?$select=firstname", nil)
	var row map[string]any
	_ = json.Unmarshal(body, &row)
	if resp.StatusCode != 200 || row["firstname"] != "Ann" || row["contactid"] != contactA {
		t.Fatalf("retrieve by key: %d %s", resp.StatusCode, body)
	}
	// Two-column key, with a quote doubled inside the literal.
	resp, body = e.do("GET", "contacts(firstname='Bob',lastname='O''Brian')?$select=emailaddress1", nil)
	_ = json.Unmarshal(body, &row)
	if resp.StatusCode != 200 || row["emailaddress1"] != "bob@example.com" {
		t.Fatalf("retrieve by two-column key: %d %s", resp.StatusCode, body)
	}
	// Missing record: RecordNotFoundByEntityKey.
	resp, body = e.do("GET", "contacts(emailaddress1='nobody@example.com')", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "0x80060891") {
		t.Fatalf("missing by key: %d %s", resp.StatusCode, body)
	}
	// A key that is not defined is refused.
	resp, body = e.do("GET", "contacts(lastname='Lee')", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "not defined as an alternate key") {
		t.Fatalf("undefined key: %d %s", resp.StatusCode, body)
	}
	// Upsert by key creates, copying the key value from the URL, then updates.
	resp, body = e.do("PATCH", "contacts(emailaddress1='new@example.com')", map[string]any{"firstname": "Nia"})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("OData-EntityId") == "" {
		t.Fatalf("upsert create: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("PATCH", "contacts(emailaddress1='new@example.com')", map[string]any{"lastname": "Ray"})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upsert update: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "contacts(emailaddress1='new@example.com')?$select=firstname,lastname,emailaddress1", nil)
	_ = json.Unmarshal(body, &row)
	if resp.StatusCode != 200 || row["firstname"] != "Nia" || row["lastname"] != "Ray" || row["emailaddress1"] != "new@example.com" {
		t.Fatalf("after upserts: %d %s", resp.StatusCode, body)
	}
}

// TestPrivilegeDenied: a request the application user's role does not allow
// gets 403 PrivilegeDenied with the documented code and message (§6.2).
func TestPrivilegeDenied(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Clients[0].Denied = []string{"POST contacts", "* adx_invitations"} })
	resp, body := e.do("POST", "contacts", map[string]any{"firstname": "X"})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"0x80040220"`) ||
		!strings.Contains(string(body), "The user does not hold the necessary privileges.") {
		t.Fatalf("denied create: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do("GET", "adx_invitations", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied read: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do("GET", "contacts?$select=firstname", nil); resp.StatusCode != 200 {
		t.Fatalf("allowed read: %d %s", resp.StatusCode, body)
	}
}
