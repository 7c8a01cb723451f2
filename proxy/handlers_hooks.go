package proxy

// The receiver of Dataverse service-endpoint webhooks,
// POST <prefix>/hooks/dataverse. Dataverse posts the execution context of
// a registered step (a contact's Update, Delete, SetState, or the
// Associate/Disassociate of its web roles) and the sessions of the users
// bound to that contact revalidate it at their next request, on every
// replica within a session-feed poll, instead of after
// ContactRevalidateInterval; a deleted contact's sessions end.
//
// The public facts this follows:
//   - https://learn.microsoft.com/en-us/power-apps/developer/data-platform/register-web-hook
//     (registration in the Plug-in Registration tool; the three
//     authentication types: HttpHeader, key/value headers; WebhookKey, a
//     "code" query-string parameter; HttpQueryString, key/value query
//     parameters; "requests to the configured endpoint will fail if the
//     authentication options passed in the request do not match", which
//     is the endpoint's job).
//   - https://learn.microsoft.com/en-us/power-apps/developer/data-platform/use-webhooks
//     (a POST with the RemoteExecutionContext serialized as JSON; the
//     headers x-request-id, x-ms-dynamics-organization,
//     x-ms-dynamics-entity-name, x-ms-dynamics-request-name,
//     x-ms-correlation-request-id; asynchronous steps are retried when the
//     endpoint fails, and show in System Jobs; synchronous ones are not).
//
// Where the documentation is silent, the safe choice is made and said so:
//   - Freshness. Dataverse signs nothing, so a captured delivery (with its
//     key) could be replayed. OperationCreatedOn is required, and a
//     delivery older than MaxAge (or as far in the future) is refused.
//   - Idempotency. A delivery is identified by the hash of its message,
//     entity, ids (OperationId, RequestId, CorrelationId), Depth and
//     OperationCreatedOn: what a retry of one asynchronous operation
//     resends unchanged. The first one is acted on; a second within MaxAge
//     (on any replica: the keys are in the store) answers 200 without
//     acting again, since a 4xx would make Dataverse's retries fail the
//     system job. After MaxAge the key is forgotten, and the same body is
//     stale by then, so it is refused: a replay is either harmless (within
//     MaxAge: nothing happens twice) or refused (after it).
//   - Acting on a delivery never trusts its content beyond "this contact
//     changed": the sessions ask Dataverse again (revalidateSessionContact)
//     and Dataverse's answer decides. Only a Delete ends the sessions at
//     once, without asking: a deleted contact can allow nothing, and
//     ending a session is the safe direction.
//   - Content type: application/json (any parameters) is required; the
//     documentation shows JSON bodies but names no media type.
//   - The body's OperationCreatedOn is read in the WCF form "/Date(ms)/"
//     (with an optional +hhmm offset, which does not change the instant)
//     or as RFC 3339.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/throttle"
)

// The authentication types of a Dataverse webhook registration.
const (
	HookAuthWebhookKey  = "webhookkey"  // WebhookKey: the secret as the query parameter code
	HookAuthHeader      = "header"      // HttpHeader: a header Name: secret
	HookAuthQueryString = "querystring" // HttpQueryString: a query parameter Name=secret
)

// DataverseHook configures the Dataverse webhook receiver. Options with a
// nil DataverseHook have none (404).
type DataverseHook struct {
	// Auth is one of the HookAuth* types; Name is the header or query
	// parameter that carries Secret (ignored for HookAuthWebhookKey, whose
	// parameter is code). Secret must be at least 32 bytes.
	Auth   string
	Name   string
	Secret []byte
	// MaxAge bounds how old (or how far in the future) a delivery's
	// OperationCreatedOn may be, and how long its key is remembered; 1m
	// to 1h.
	MaxAge time.Duration
	// MaxBody is the largest body read, in bytes; larger is refused (413).
	MaxBody int64
	// Store remembers the deliveries across replicas and reports the
	// contacts to the session feed. Required.
	Store WebhookStore
	// Audit records every refused delivery and every accepted contact
	// change. Required.
	Audit HookAuditor
}

// WebhookStore records webhook deliveries. *store.DB satisfies it; see
// store.DB.AcceptWebhook.
type WebhookStore interface {
	AcceptWebhook(ctx context.Context, keyHash, contactID string, deleted bool, keep time.Duration) (duplicate bool, err error)
}

// HookAuditor writes audit events. *audit.Log satisfies it.
type HookAuditor interface {
	Record(ctx context.Context, e audit.Event)
}

// ContactInvalidator drops a contact's cached snapshot, so the next
// revalidation reads Dataverse. *crmclient.CachedDirectory satisfies it.
type ContactInvalidator interface {
	InvalidateContact(id string)
}

// The audit event types of the webhook receiver.
const (
	EventHookRefused        = "webhook.refused"         // Detail is the reason (no_key, wrong_key, stale, bad_json, ...)
	EventHookDuplicate      = "webhook.duplicate"       // a delivery accepted before arrived again (a retry or a replay); nothing was done
	EventHookContactChanged = "webhook.contact_changed" // Detail is the message and the contact id
	eventHookSessionEnded   = audit.EventSessionRevoked // a session of a deleted contact ended; Detail contact_deleted
	hookActor               = "dataverse"               // the Actor of the events above
	hookPath                = "/hooks/dataverse"        // under the auth prefix
	hookMinSecret           = 32                        // bytes
	hookDateForm            = `^/Date\((-?\d{1,15})([+-]\d{4})?\)/$`
)

var hookDate = regexp.MustCompile(hookDateForm)

// validate checks h for New.
func (h *DataverseHook) validate() error {
	var errs []error
	switch h.Auth {
	case HookAuthWebhookKey:
	case HookAuthHeader, HookAuthQueryString:
		if h.Name == "" {
			errs = append(errs, fmt.Errorf("proxy: dataverse hook: auth %s needs a header or parameter name", h.Auth))
		}
	default:
		errs = append(errs, fmt.Errorf("proxy: dataverse hook: unknown auth %q", h.Auth))
	}
	if len(h.Secret) < hookMinSecret {
		errs = append(errs, fmt.Errorf("proxy: dataverse hook: secret must be at least %d bytes", hookMinSecret))
	}
	if h.MaxAge < time.Minute || h.MaxAge > time.Hour {
		errs = append(errs, fmt.Errorf("proxy: dataverse hook: max age %s: want 1m to 1h", h.MaxAge))
	}
	if h.MaxBody < 1024 {
		errs = append(errs, fmt.Errorf("proxy: dataverse hook: max body %d: want at least 1024", h.MaxBody))
	}
	if h.Store == nil || h.Audit == nil {
		errs = append(errs, errors.New("proxy: dataverse hook: a store and an audit trail are required"))
	}
	return errors.Join(errs...)
}

// remoteContext is the part of the RemoteExecutionContext JSON the receiver
// reads.
type remoteContext struct {
	MessageName        string
	PrimaryEntityName  string
	PrimaryEntityId    string
	OperationCreatedOn string
	OperationId        string
	RequestId          *string
	CorrelationId      string
	Depth              int
	InputParameters    []struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
}

// entityRef is an Entity or EntityReference of InputParameters.
type entityRef struct {
	Id          string
	LogicalName string
}

// hookFail is one refused delivery.
type hookFail struct {
	status int
	reason string // audit detail and the JSON error code
	msg    string
	err    error // internal detail for the log
}

// handleDataverseHook serves POST <prefix>/hooks/dataverse.
func (srv *Server) handleDataverseHook(w http.ResponseWriter, r *http.Request) {
	h := srv.hook
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		srv.refuseHook(w, r, hookFail{status: http.StatusMethodNotAllowed, reason: "method", msg: "Only POST is accepted."})
		return
	}
	if f := h.authenticate(r); f != nil {
		srv.refuseHook(w, r, *f)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		srv.refuseHook(w, r, hookFail{status: http.StatusUnsupportedMediaType, reason: "content_type", msg: "The body must be application/json."})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			srv.refuseHook(w, r, hookFail{status: http.StatusRequestEntityTooLarge, reason: "too_large", msg: fmt.Sprintf("The body exceeds %d bytes.", h.MaxBody)})
			return
		}
		srv.refuseHook(w, r, hookFail{status: http.StatusBadRequest, reason: "body", msg: "The body could not be read.", err: err})
		return
	}
	var rc remoteContext
	if err := json.Unmarshal(body, &rc); err != nil {
		srv.refuseHook(w, r, hookFail{status: http.StatusBadRequest, reason: "bad_json", msg: "The body is not a RemoteExecutionContext JSON object.", err: err})
		return
	}
	at, err := parseHookDate(rc.OperationCreatedOn)
	if err != nil {
		srv.refuseHook(w, r, hookFail{status: http.StatusBadRequest, reason: "bad_json", msg: "OperationCreatedOn is missing or not a date.", err: err})
		return
	}
	now := srv.now()
	if age := now.Sub(at); age > h.MaxAge || age < -h.MaxAge {
		srv.refuseHook(w, r, hookFail{status: http.StatusBadRequest, reason: "stale", msg: "The delivery is too old (or its time is too far off).",
			err: fmt.Errorf("OperationCreatedOn %s is %s from now", at.UTC().Format(time.RFC3339), age)})
		return
	}
	contacts, deleted, err := rc.contacts()
	if err != nil {
		srv.refuseHook(w, r, hookFail{status: http.StatusBadRequest, reason: "bad_json", msg: "The execution context names no valid contact.", err: err})
		return
	}
	rid := requestID(r.Context())
	if len(contacts) == 0 {
		// A step this receiver has no use for (another table or
		// message): answered 200 so that Dataverse does not retry it.
		srv.log.Info("dataverse webhook ignored: no contact change", "request_id", rid, "message", rc.MessageName, "entity", rc.PrimaryEntityName)
		writeJSON(w, http.StatusOK, map[string]any{"status": "ignored"})
		return
	}
	key := rc.deliveryKey()
	acted := 0
	for _, id := range contacts {
		sum := sha256.Sum256([]byte(key + "\x00" + id))
		dup, err := h.Store.AcceptWebhook(r.Context(), hex.EncodeToString(sum[:]), id, deleted, h.MaxAge)
		if err != nil {
			// Dataverse retries an asynchronous step that failed.
			srv.log.Error("dataverse webhook: the store could not record it", "request_id", rid, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, jsonError{Error: "unavailable", Message: "Try again later.", RequestID: rid})
			return
		}
		if dup {
			srv.log.Info("dataverse webhook: repeated delivery ignored", "request_id", rid, "message", rc.MessageName, "contact_id", id)
			h.Audit.Record(r.Context(), audit.Event{Type: EventHookDuplicate, Actor: hookActor, ClientAddr: srv.clientString(r),
				Detail: rc.MessageName + " " + id})
			continue
		}
		acted++
		// This replica at once; the others at their next feed poll.
		if srv.contactCache != nil {
			srv.contactCache.InvalidateContact(id)
		}
		srv.changedContacts.mark(id, now, deleted)
		srv.log.Info("dataverse webhook: contact changed", "request_id", rid, "message", rc.MessageName, "contact_id", id, "deleted", deleted)
		h.Audit.Record(r.Context(), audit.Event{Type: EventHookContactChanged, Actor: hookActor, ClientAddr: srv.clientString(r),
			Detail: rc.MessageName + " " + id})
	}
	status := "accepted"
	if acted == 0 {
		status = "duplicate"
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": status})
}

// authenticate checks the registration's key, in constant time (of the
// SHA-256 of both values, so that lengths do not show either). A key
// given more than once is refused.
func (h *DataverseHook) authenticate(r *http.Request) *hookFail {
	var got []string
	switch h.Auth {
	case HookAuthHeader:
		got = r.Header.Values(h.Name)
	case HookAuthWebhookKey:
		got = r.URL.Query()["code"]
	default:
		got = r.URL.Query()[h.Name]
	}
	if len(got) == 0 || got[0] == "" {
		return &hookFail{status: http.StatusUnauthorized, reason: "no_key", msg: "The webhook key is missing."}
	}
	want := sha256.Sum256(h.Secret)
	have := sha256.Sum256([]byte(got[0]))
	if subtle.ConstantTimeCompare(want[:], have[:]) != 1 || len(got) != 1 {
		return &hookFail{status: http.StatusUnauthorized, reason: "wrong_key", msg: "The webhook key is wrong."}
	}
	return nil
}

// refuseHook answers a refused delivery as JSON, with a log line and an
// audit row (never the key). Anyone can post to the endpoint, so the audit
// row is written at most once per client address and reason per
// refusalAuditInterval (on each replica): a flood of bad deliveries cannot
// fill the table; every refusal is logged.
func (srv *Server) refuseHook(w http.ResponseWriter, r *http.Request, f hookFail) {
	rid := requestID(r.Context())
	attrs := []any{"request_id", rid, "status", f.status, "reason", f.reason,
		"organization", r.Header.Get("x-ms-dynamics-organization"), "request_name", r.Header.Get("x-ms-dynamics-request-name")}
	if f.err != nil {
		attrs = append(attrs, "err", f.err.Error())
	}
	srv.log.Warn("dataverse webhook refused", attrs...)
	client := srv.clientString(r)
	if srv.refusalsAudited.Add("hook "+throttle.ClientKey(client)+" "+f.reason, struct{}{}, refusalAuditInterval) == nil {
		srv.hook.Audit.Record(r.Context(), audit.Event{Type: EventHookRefused, Actor: hookActor, ClientAddr: client, Detail: f.reason})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, f.status, jsonError{Error: f.reason, Message: f.msg, RequestID: rid})
}

func (srv *Server) clientString(r *http.Request) string {
	a, _ := srv.clients.of(r)
	return a.String()
}

// parseHookDate reads OperationCreatedOn.
func parseHookDate(s string) (time.Time, error) {
	if m := hookDate.FindStringSubmatch(s); m != nil {
		ms, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("OperationCreatedOn %q: want /Date(ms)/ or RFC 3339", s)
	}
	return t, nil
}

// contacts returns the contacts a delivery reports changed (lower-case
// GUIDs), and whether they were deleted. Update, Delete, SetState and
// SetStateDynamicEntity of a contact name it as the primary entity;
// Associate and Disassociate (web roles: adx_webrole_contact or
// powerpagecomponent_mspp_webrole_contact) name contacts as the Target or
// among RelatedEntities, whichever side the step was registered on. Other
// messages and tables give none.
func (rc *remoteContext) contacts() ([]string, bool, error) {
	switch rc.MessageName {
	case "Update", "Delete", "SetState", "SetStateDynamicEntity":
		if !strings.EqualFold(rc.PrimaryEntityName, "contact") {
			return nil, false, nil
		}
		id, err := hookGUID(rc.PrimaryEntityId)
		if err != nil {
			return nil, false, err
		}
		return []string{id}, rc.MessageName == "Delete", nil
	case "Associate", "Disassociate":
		var ids []string
		add := func(e entityRef) error {
			if !strings.EqualFold(e.LogicalName, "contact") {
				return nil
			}
			id, err := hookGUID(e.Id)
			if err == nil && !containsString(ids, id) {
				ids = append(ids, id)
			}
			return err
		}
		for _, p := range rc.InputParameters {
			switch p.Key {
			case "Target":
				var e entityRef
				if err := json.Unmarshal(p.Value, &e); err != nil {
					return nil, false, fmt.Errorf("input parameter Target: %w", err)
				}
				if err := add(e); err != nil {
					return nil, false, err
				}
			case "RelatedEntities":
				var es []entityRef
				if err := json.Unmarshal(p.Value, &es); err != nil {
					return nil, false, fmt.Errorf("input parameter RelatedEntities: %w", err)
				}
				if len(es) > 1000 {
					return nil, false, errors.New("input parameter RelatedEntities: more than 1000")
				}
				for _, e := range es {
					if err := add(e); err != nil {
						return nil, false, err
					}
				}
			}
		}
		return ids, false, nil
	}
	return nil, false, nil
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

var guidForm = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// hookGUID checks a GUID of the body and returns it in lower case.
func hookGUID(s string) (string, error) {
	if !guidForm.MatchString(s) {
		return "", fmt.Errorf("%q is not a GUID", s)
	}
	return strings.ToLower(s), nil
}

// deliveryKey identifies one delivery: what a retry of the same operation
// resends unchanged.
func (rc *remoteContext) deliveryKey() string {
	req := ""
	if rc.RequestId != nil {
		req = *rc.RequestId
	}
	return strings.Join([]string{rc.MessageName, strings.ToLower(rc.PrimaryEntityName), strings.ToLower(rc.PrimaryEntityId),
		strings.ToLower(rc.OperationId), strings.ToLower(req), strings.ToLower(rc.CorrelationId),
		strconv.Itoa(rc.Depth), rc.OperationCreatedOn}, "\x00")
}
