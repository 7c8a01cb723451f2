package dataversetest

// Webhooks: the emulator sends service-endpoint webhooks the way Dataverse
// does for a step registered on a table's message, as documented in
// https://learn.microsoft.com/en-us/power-apps/developer/data-platform/use-webhooks
// and https://learn.microsoft.com/en-us/power-apps/developer/data-platform/register-web-hook:
// a POST of the RemoteExecutionContext serialized as JSON, with the
// headers x-request-id, x-ms-dynamics-organization,
// x-ms-dynamics-entity-name, x-ms-dynamics-request-name and
// x-ms-correlation-request-id, authenticated by one of the three types
// (HttpHeader: headers; WebhookKey: the code query parameter;
// HttpQueryString: query parameters). Steps run asynchronously (after the
// operation, stage 40), and a failed delivery (no answer, or a status
// outside 2xx) is retried. The retry schedule of the real asynchronous
// service is not documented; the emulator retries MaxAttempts times with a
// doubling delay from RetryDelay.
//
// What triggers a delivery: a contact's Update (PATCH of an existing row,
// statecode changes included: current Dataverse deactivates by Update),
// Delete, and the Associate and Disassociate of the N:N relationships of
// web roles (POST or DELETE of .../$ref), through the Web API.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// The authentication types of a webhook registration (the authtype of
// the serviceendpoint row).
const (
	WebhookHTTPHeader      = "HttpHeader"
	WebhookKey             = "WebhookKey"
	WebhookHTTPQueryString = "HttpQueryString"
)

// Webhook is one webhook registration and its steps.
type Webhook struct {
	// URL is the endpoint URL the context is posted to.
	URL string
	// Auth is WebhookHTTPHeader, WebhookKey or WebhookHTTPQueryString.
	// Values are the key/value pairs of HttpHeader and HttpQueryString;
	// Key is the value of WebhookKey (sent as ?code=).
	Auth   string
	Values map[string]string
	Key    string
	// Messages are the messages with a step on contact (for Associate and
	// Disassociate: on the web-role relationships); nil means Update,
	// Delete, Associate and Disassociate.
	Messages []string
	// MaxAttempts is how often a delivery is tried; zero means 5.
	// RetryDelay is the first wait between attempts, doubled each time;
	// zero means 200ms.
	MaxAttempts int
	RetryDelay  time.Duration
	// Client posts the deliveries; nil means a client with a 10s timeout.
	Client *http.Client
}

// WebhookDelivery is one attempt at a delivery, as WebhookDeliveries
// reports it.
type WebhookDelivery struct {
	URL     string
	Message string
	Entity  string
	ID      string // PrimaryEntityId, or the Target's id of Associate/Disassociate
	Attempt int
	Status  int // 0: no answer
	Body    []byte
}

// webhooks is the Handler's webhook state. Its own lock, never held with
// Handler.mu across a request: deliveries start after the write.
type webhooks struct {
	mu       sync.Mutex
	regs     []*Webhook
	attempts []WebhookDelivery
	pending  sync.WaitGroup
}

// RegisterWebhook registers wh; its deliveries start with the next change.
// It returns a function that removes the registration.
func (h *Handler) RegisterWebhook(wh Webhook) (remove func(), err error) {
	switch wh.Auth {
	case WebhookHTTPHeader, WebhookHTTPQueryString:
		if len(wh.Values) == 0 {
			return nil, fmt.Errorf("dataversetest: webhook: %s needs at least one key/value pair", wh.Auth)
		}
	case WebhookKey:
		if wh.Key == "" {
			return nil, fmt.Errorf("dataversetest: webhook: WebhookKey needs a key")
		}
	default:
		return nil, fmt.Errorf("dataversetest: webhook: unknown authentication type %q", wh.Auth)
	}
	u, err := url.Parse(wh.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("dataversetest: webhook: endpoint URL %q is not an absolute http(s) URL", wh.URL)
	}
	if wh.Messages == nil {
		wh.Messages = []string{"Update", "Delete", "Associate", "Disassociate"}
	}
	if wh.MaxAttempts <= 0 {
		wh.MaxAttempts = 5
	}
	if wh.RetryDelay <= 0 {
		wh.RetryDelay = 200 * time.Millisecond
	}
	if wh.Client == nil {
		wh.Client = &http.Client{Timeout: 10 * time.Second}
	}
	reg := &wh
	h.hooks.mu.Lock()
	h.hooks.regs = append(h.hooks.regs, reg)
	h.hooks.mu.Unlock()
	return func() {
		h.hooks.mu.Lock()
		h.hooks.regs = slices.DeleteFunc(h.hooks.regs, func(r *Webhook) bool { return r == reg })
		h.hooks.mu.Unlock()
	}, nil
}

// WebhookDeliveries returns every delivery attempt so far, in order.
func (h *Handler) WebhookDeliveries() []WebhookDelivery {
	h.hooks.mu.Lock()
	defer h.hooks.mu.Unlock()
	return slices.Clone(h.hooks.attempts)
}

// WaitWebhooks waits until every delivery started so far succeeded or ran
// out of attempts, or ctx ends.
func (h *Handler) WaitWebhooks(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.hooks.pending.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hookEvent is one change to report, captured under Handler.mu.
type hookEvent struct {
	message      string
	entity       string // PrimaryEntityName
	id           string // PrimaryEntityId
	target       map[string]any
	relationship string
	related      []map[string]any
	user         string // the calling user (the application user of the token)
}

const xrmContracts = "http://schemas.microsoft.com/xrm/2011/Contracts"

func entityReference(logical, id string) map[string]any {
	return map[string]any{"__type": "EntityReference:" + xrmContracts, "Id": id, "KeyAttributes": []any{},
		"LogicalName": logical, "Name": nil, "RowVersion": nil}
}

// contactUpdated reports the Update of a contact with the columns body set.
func contactUpdated(id string, body map[string]any) hookEvent {
	attrs := []any{}
	for k, v := range body {
		attrs = append(attrs, map[string]any{"key": k, "value": v})
	}
	return hookEvent{message: "Update", entity: "contact", id: id, target: map[string]any{
		"__type": "Entity:" + xrmContracts, "Attributes": attrs, "EntityState": nil, "FormattedValues": []any{},
		"Id": id, "KeyAttributes": []any{}, "LogicalName": "contact", "RelatedEntities": []any{}, "RowVersion": nil}}
}

// associated reports an Associate or Disassociate of the relationship
// between the record (logical, id) and (otherLogical, other).
func associated(message, relationship, logical, id, otherLogical, other string) hookEvent {
	return hookEvent{message: message, entity: logical, id: id, target: entityReference(logical, id),
		relationship: relationship, related: []map[string]any{entityReference(otherLogical, other)}}
}

// emitWebhook starts the deliveries of ev to the registrations with a
// step for it. Call it with Handler.mu held (it reads only the handler's
// fixed options) or not; the deliveries run on their own goroutines.
func (h *Handler) emitWebhook(ev hookEvent) {
	h.hooks.mu.Lock()
	var regs []*Webhook
	for _, r := range h.hooks.regs {
		if slices.Contains(r.Messages, ev.message) {
			regs = append(regs, r)
		}
	}
	if len(regs) == 0 {
		h.hooks.mu.Unlock()
		return
	}
	h.hooks.pending.Add(len(regs))
	h.hooks.mu.Unlock()
	inputs := []any{map[string]any{"key": "Target", "value": ev.target}}
	if ev.relationship != "" {
		inputs = append(inputs,
			map[string]any{"key": "Relationship", "value": map[string]any{"__type": "Relationship:" + xrmContracts,
				"PrimaryEntityRole": nil, "SchemaName": ev.relationship}},
			map[string]any{"key": "RelatedEntities", "value": ev.related})
	}
	correlation, request, operation := h.newID(), h.newID(), h.newID()
	ctx := map[string]any{
		"BusinessUnitId": h.opts.BusinessUnitID, "CorrelationId": correlation, "Depth": 1,
		"InitiatingUserId": ev.user, "InputParameters": inputs, "IsExecutingOffline": false,
		"IsInTransaction": false, "IsOfflinePlayback": false, "IsolationMode": 1, "MessageName": ev.message,
		"Mode": 1, "OperationCreatedOn": fmt.Sprintf("/Date(%d)/", h.now().UnixMilli()), "OperationId": operation,
		"OrganizationId": h.opts.OrganizationID, "OrganizationName": "emulator", "OutputParameters": []any{},
		"OwningExtension": entityReference("sdkmessageprocessingstep", h.newID()), "ParentContext": nil,
		"PostEntityImages": []any{}, "PreEntityImages": []any{}, "PrimaryEntityId": ev.id,
		"PrimaryEntityName": ev.entity, "RequestId": request, "SecondaryEntityName": "none",
		"SharedVariables": []any{}, "Stage": 40, "UserId": ev.user,
	}
	body, _ := json.Marshal(ctx) // plain maps and strings: cannot fail
	for _, r := range regs {
		go h.deliver(r, ev, body, correlation, request)
	}
}

// deliver posts one delivery until it succeeds or runs out of attempts.
func (h *Handler) deliver(r *Webhook, ev hookEvent, body []byte, correlation, request string) {
	defer h.hooks.pending.Done()
	u, _ := url.Parse(r.URL) // checked by RegisterWebhook
	q := u.Query()
	switch r.Auth {
	case WebhookKey:
		q.Set("code", r.Key)
	case WebhookHTTPQueryString:
		for k, v := range r.Values {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	delay := r.RetryDelay
	for attempt := 1; attempt <= r.MaxAttempts; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-request-id", request)
		req.Header.Set("x-ms-dynamics-organization", "emulator")
		req.Header.Set("x-ms-dynamics-entity-name", ev.entity)
		req.Header.Set("x-ms-dynamics-request-name", ev.message)
		req.Header.Set("x-ms-correlation-request-id", correlation)
		if r.Auth == WebhookHTTPHeader {
			for k, v := range r.Values {
				req.Header.Set(k, v)
			}
		}
		status := 0
		if resp, err := r.Client.Do(req); err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		h.hooks.mu.Lock()
		h.hooks.attempts = append(h.hooks.attempts, WebhookDelivery{URL: r.URL, Message: ev.message, Entity: ev.entity,
			ID: ev.id, Attempt: attempt, Status: status, Body: body})
		h.hooks.mu.Unlock()
		if status >= 200 && status < 300 {
			return
		}
		if attempt < r.MaxAttempts {
			time.Sleep(delay)
			delay *= 2
		}
	}
}

// emitAssociation reports an Associate or Disassociate through the Web
// API of the relationship nav between (t, id) and (tt, rid), when one side
// is a contact.
func (q *apiRequest) emitAssociation(message string, t *table, id string, tt *table, nav, rid string) {
	if t.typ.LogicalName != "contact" && tt.typ.LogicalName != "contact" {
		return
	}
	ev := associated(message, nav, t.typ.LogicalName, id, tt.typ.LogicalName, rid)
	ev.user = q.user.userID
	q.h.emitWebhook(ev)
}
