package dataversetest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestWebhooks: an Update, a Delete and an Associate of a contact through
// the Web API are posted as RemoteExecutionContext JSON with the
// registration's authentication and Dataverse's headers, and a failed
// delivery is retried until it succeeds.
func TestWebhooks(t *testing.T) {
	e := newEnv(t, nil)
	type got struct {
		header http.Header
		query  string
		ctx    map[string]any
	}
	var mu sync.Mutex
	var deliveries []got
	fails := 1
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		mu.Lock()
		defer mu.Unlock()
		deliveries = append(deliveries, got{r.Header.Clone(), r.URL.RawQuery, m})
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rcv.Close)
	for _, bad := range []Webhook{{URL: rcv.URL, Auth: "Basic"}, {URL: rcv.URL, Auth: WebhookKey}, {URL: "ftp://x", Auth: WebhookKey, Key: "k"},
		{URL: rcv.URL, Auth: WebhookHTTPHeader}} {
		if _, err := e.srv.RegisterWebhook(bad); err == nil {
			t.Errorf("RegisterWebhook(%+v) accepted", bad)
		}
	}
	remove, err := e.srv.RegisterWebhook(Webhook{URL: rcv.URL + "/hook?x=1", Auth: WebhookKey, Key: "the-key", RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.RegisterWebhook(Webhook{URL: rcv.URL, Auth: WebhookHTTPHeader, Values: map[string]string{"X-Hook-Key": "hv"}, Messages: []string{"Delete"}}); err != nil {
		t.Fatal(err)
	}
	wait := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.WaitWebhooks(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if resp, b := e.do("PATCH", "contacts("+contactA+")", map[string]any{"statecode": 1, "statuscode": 2}); resp.StatusCode != 204 {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, b)
	}
	wait()
	mu.Lock()
	if len(deliveries) != 2 {
		t.Fatalf("%d deliveries of the update, want 2 (one failed, one retried)", len(deliveries))
	}
	d := deliveries[1]
	if d.query != "code=the-key&x=1" || d.header.Get("Content-Type") != "application/json" ||
		d.header.Get("x-ms-dynamics-request-name") != "Update" || d.header.Get("x-ms-dynamics-entity-name") != "contact" ||
		d.header.Get("x-ms-dynamics-organization") == "" || d.header.Get("x-ms-correlation-request-id") != d.ctx["CorrelationId"] ||
		d.header.Get("x-request-id") != d.ctx["RequestId"] {
		t.Errorf("query %q, headers %v", d.query, d.header)
	}
	if d.ctx["MessageName"] != "Update" || d.ctx["PrimaryEntityName"] != "contact" || d.ctx["PrimaryEntityId"] != contactA ||
		d.ctx["OperationCreatedOn"] != "/Date(1740830400000)/" || d.ctx["OrganizationId"] != "33333333-3333-3333-3333-333333333333" ||
		d.ctx["UserId"] != "55555555-5555-5555-5555-555555555555" {
		t.Errorf("context = %v", d.ctx)
	}
	if d.ctx["OperationId"] != deliveries[0].ctx["OperationId"] {
		t.Error("a retry is not the same operation")
	}
	deliveries = nil
	mu.Unlock()

	if resp, b := e.do("POST", "contacts("+contactA+")/adx_webrole_contact/$ref", map[string]any{"@odata.id": e.srv.URL + APIPrefix + "adx_webroles(" + roleB + ")"}); resp.StatusCode != 204 {
		t.Fatalf("associate: %d %s", resp.StatusCode, b)
	}
	wait()
	mu.Lock()
	if len(deliveries) != 1 || deliveries[0].ctx["MessageName"] != "Associate" {
		t.Fatalf("associate deliveries = %+v", deliveries)
	}
	in, _ := json.Marshal(deliveries[0].ctx["InputParameters"])
	var params []struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	_ = json.Unmarshal(in, &params)
	if len(params) != 3 || params[0].Key != "Target" || params[1].Key != "Relationship" || params[2].Key != "RelatedEntities" {
		t.Errorf("InputParameters = %s", in)
	}
	deliveries = nil
	mu.Unlock()

	remove()
	if resp, b := e.do("DELETE", "contacts("+contactA+")", nil); resp.StatusCode != 204 {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, b)
	}
	wait()
	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 1 || deliveries[0].ctx["MessageName"] != "Delete" || deliveries[0].header.Get("X-Hook-Key") != "hv" || deliveries[0].query != "" {
		t.Fatalf("delete deliveries = %+v (the removed registration must not get it)", deliveries)
	}
	if n := len(e.srv.WebhookDeliveries()); n != 4 {
		t.Errorf("WebhookDeliveries: %d attempts, want 4", n)
	}
}
