package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/dataverse"
)

// The audit event types of the outbox administration (Admin). Actor is
// the operator, UserID the account the event is about, Detail
// "event <id> kind <kind> type <type>" (or "kind <kind> count <n>" for
// the bulk forms).
const (
	EventRetried    = "outbox.retried"     // a failed event was put back to pending
	EventDropped    = "outbox.dropped"     // a failed event was deleted
	EventRetriedAll = "outbox.retried_all" // every failed event of a kind was put back to pending
	EventDroppedAll = "outbox.dropped_all" // every failed event of a kind was deleted
)

// State is where an outbox event is in its life, as the administration
// sees it.
type State string

// The states of an outbox event.
const (
	StatePending   State = "pending"   // not delivered yet, claimed or not
	StateDelivered State = "delivered" // delivered (or skipped): done with
	StateFailed    State = "failed"    // given up after a permanent failure
	StateUnknown   State = "unknown"   // no such event (never was, or purged)
)

// ErrNotFailed is matched (errors.Is) by every *NotFailedError.
var ErrNotFailed = errors.New("outbox: event is not failed")

// NotFailedError is the error of Retry and Drop for an event that is not
// failed: still pending, delivered, or unknown. An unknown one also
// matches authz.ErrNotFound.
type NotFailedError struct {
	ID    int64
	State State // StatePending, StateDelivered or StateUnknown
}

// Error implements error.
func (e *NotFailedError) Error() string {
	if e.State == StateUnknown {
		return fmt.Sprintf("outbox: event %d does not exist (or was purged)", e.ID)
	}
	return fmt.Sprintf("outbox: event %d is %s, not failed: only failed events can be retried or dropped", e.ID, e.State)
}

// Is matches ErrNotFailed, and authz.ErrNotFound for an unknown event.
func (e *NotFailedError) Is(target error) bool {
	return target == ErrNotFailed || target == authz.ErrNotFound && e.State == StateUnknown
}

// KindBacklog is the backlog of one kind of outbox event.
type KindBacklog struct {
	// Kind is the event kind, such as "mail" or "dataverse.lifecycle".
	Kind string
	// Pending counts the events not delivered yet, claimed or not.
	Pending int
	// Retrying counts the pending events whose last attempt failed (they
	// wait for their backoff, and hold back their user's later events).
	Retrying int
	// OldestPending is the CreatedAt of the oldest pending event; zero
	// when none.
	OldestPending time.Time
	// OldestPendingAge is how old that event is, by the Admin's clock;
	// zero when none.
	OldestPendingAge time.Duration
	// Failed counts the events given up after a permanent failure that
	// are still kept (they are purged with the delivered ones after the
	// worker's Retention).
	Failed int
}

// FailedItem is one failed outbox event as the administration shows it:
// no payload, only a summary of it that holds no secret (see Summary).
type FailedItem struct {
	ID        int64
	Kind      string
	Type      string
	UserID    string // the account the event is about; empty for none
	Attempts  int
	LastError string // the stored error of the last attempt, through dataverse.SafeMessage
	FailedAt  time.Time
	CreatedAt time.Time
	Summary   Summary
}

// Summary describes a payload without its content. Mail payloads carry
// set-password and invitation links (secrets), lifecycle payloads a
// user's name and email address, so nothing of the payload is shown but
// its size and, for a payload with a top-level "to" address (a mail
// message), the recipient's domain.
type Summary struct {
	// Bytes is the size of the payload.
	Bytes int
	// RecipientDomain is the lower-case domain of the "to" address of a
	// mail payload ("example.com"); empty for other payloads or an
	// address without a readable domain.
	RecipientDomain string
}

// maxLastErrorShown bounds FailedItem.LastError: the whole stored text.
const maxLastErrorShown = maxLastError

// AdminStore is what Admin needs from the store; *store.DB satisfies it.
type AdminStore interface {
	// OutboxBacklog returns, per kind with pending or failed events, in
	// kind order, the counts and the oldest pending CreatedAt.
	OutboxBacklog(ctx context.Context) ([]KindBacklog, error)
	// FailedOutbox returns failed events of kind (empty: every kind) with
	// an ID above after, in ID order, at most limit.
	FailedOutbox(ctx context.Context, kind string, after int64, limit int) ([]Event, error)
	// RequeueOutbox puts the failed event id back to pending: Attempts 0,
	// NextAttemptAt now, no lease, FailedAt and DeliveredAt cleared,
	// LastError kept. It returns the event as it was before, or a
	// *NotFailedError.
	RequeueOutbox(ctx context.Context, id int64, now time.Time) (Event, error)
	// DeleteFailedOutbox deletes the failed event id and returns it, or
	// returns a *NotFailedError.
	DeleteFailedOutbox(ctx context.Context, id int64) (Event, error)
	// RequeueFailedOutboxKind and DeleteFailedOutboxKind do the same for
	// every failed event of kind and return how many.
	RequeueFailedOutboxKind(ctx context.Context, kind string, now time.Time) (int, error)
	DeleteFailedOutboxKind(ctx context.Context, kind string) (int, error)
}

// Auditor records admin events; *audit.Log satisfies it.
type Auditor interface {
	Record(ctx context.Context, e audit.Event)
}

// AdminOptions configure an Admin; the zero value is usable.
type AdminOptions struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per change; nil discards them.
	Logger *slog.Logger
	// Notify wakes the worker after a retry so the event goes out at once
	// (Worker.Notify); nil means it is picked up at the next poll.
	Notify func()
}

// Admin is the operators' view of the outbox: the backlog per kind, the
// failed events, and putting a failed event back to pending or deleting
// it, each audited and logged. Build it with NewAdmin; it is safe for
// concurrent use.
//
// Dangerous: a retried event is delivered again, at least once, possibly
// after later events of the same user that were delivered while it was
// failed (a lifecycle "updated" after "deleted"), and while it is pending
// its user's later pending events wait for it. A dropped event is gone:
// its mail is never sent, its Dataverse change never made.
type Admin struct {
	store  AdminStore
	audit  Auditor
	now    func() time.Time
	log    *slog.Logger
	notify func()
}

// NewAdmin returns the administration of the outbox in store; every
// change is recorded by auditor. Both are required.
func NewAdmin(store AdminStore, auditor Auditor, opts AdminOptions) (*Admin, error) {
	if store == nil || auditor == nil {
		return nil, errors.New("outbox: admin needs a store and an auditor")
	}
	a := &Admin{store: store, audit: auditor, now: opts.Now, log: opts.Logger, notify: opts.Notify}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.notify == nil {
		a.notify = func() {}
	}
	return a, nil
}

// Backlog returns the backlog of every kind with pending or failed
// events, in kind order; an empty outbox gives none.
func (a *Admin) Backlog(ctx context.Context) ([]KindBacklog, error) {
	bs, err := a.store.OutboxBacklog(ctx)
	if err != nil {
		return nil, err
	}
	now := a.now()
	for i := range bs {
		if !bs[i].OldestPending.IsZero() {
			bs[i].OldestPendingAge = max(now.Sub(bs[i].OldestPending), 0)
		}
	}
	return bs, nil
}

// maxKindLen is the longest kind a filter may hold: longer than any kind
// the gateway writes.
const maxKindLen = 128

func validKind(kind string, required bool) error {
	if required && kind == "" || len(kind) > maxKindLen || !authz.Printable(kind) {
		return &authz.ValidationError{Field: "kind",
			Message: fmt.Sprintf("The kind must be 1 to %d printable characters.", maxKindLen)}
	}
	return nil
}

// Failed lists failed events of kind (empty: every kind) with an ID above
// after (0: from the first), in ID order, at most limit (0:
// authz.DefaultListLimit); pass the last ID of a page as after to get the
// next. A bad kind, a negative after or a limit outside 0 to
// authz.MaxListLimit is a *authz.ValidationError.
func (a *Admin) Failed(ctx context.Context, kind string, after int64, limit int) ([]FailedItem, error) {
	if err := validKind(kind, false); err != nil {
		return nil, err
	}
	switch {
	case after < 0:
		return nil, &authz.ValidationError{Field: "after", Message: "The after cursor must be an event id, or 0 for the first page."}
	case limit < 0 || limit > authz.MaxListLimit:
		return nil, &authz.ValidationError{Field: "limit", Message: fmt.Sprintf("The limit must be from 1 to %d.", authz.MaxListLimit)}
	case limit == 0:
		limit = authz.DefaultListLimit
	}
	es, err := a.store.FailedOutbox(ctx, kind, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]FailedItem, 0, len(es))
	for _, e := range es {
		out = append(out, failedItem(e))
	}
	return out, nil
}

// Retry puts the failed event id back to pending with its attempts reset
// and its next attempt now, and wakes the worker. It returns the event as
// it was. An event that is not failed is a *NotFailedError; a non-positive
// id a *authz.ValidationError.
func (a *Admin) Retry(ctx context.Context, id int64, actor string) (FailedItem, error) {
	if err := validID(id); err != nil {
		return FailedItem{}, err
	}
	e, err := a.store.RequeueOutbox(ctx, id, a.now())
	if err != nil {
		return FailedItem{}, err
	}
	a.notify()
	a.record(ctx, EventRetried, actor, e)
	return failedItem(e), nil
}

// Drop deletes the failed event id; its work is never done. It returns
// the event as it was. An event that is not failed is a *NotFailedError; a
// non-positive id a *authz.ValidationError.
func (a *Admin) Drop(ctx context.Context, id int64, actor string) (FailedItem, error) {
	if err := validID(id); err != nil {
		return FailedItem{}, err
	}
	e, err := a.store.DeleteFailedOutbox(ctx, id)
	if err != nil {
		return FailedItem{}, err
	}
	a.record(ctx, EventDropped, actor, e)
	return failedItem(e), nil
}

// RetryAll puts every failed event of kind (required) back to pending,
// like Retry, and returns how many. It is audited once, with the count.
func (a *Admin) RetryAll(ctx context.Context, kind, actor string) (int, error) {
	if err := validKind(kind, true); err != nil {
		return 0, err
	}
	n, err := a.store.RequeueFailedOutboxKind(ctx, kind, a.now())
	if err != nil {
		return 0, err
	}
	if n > 0 {
		a.notify()
	}
	a.recordAll(ctx, EventRetriedAll, actor, kind, n)
	return n, nil
}

// DropAll deletes every failed event of kind (required), like Drop, and
// returns how many. It is audited once, with the count.
func (a *Admin) DropAll(ctx context.Context, kind, actor string) (int, error) {
	if err := validKind(kind, true); err != nil {
		return 0, err
	}
	n, err := a.store.DeleteFailedOutboxKind(ctx, kind)
	if err != nil {
		return 0, err
	}
	a.recordAll(ctx, EventDroppedAll, actor, kind, n)
	return n, nil
}

func validID(id int64) error {
	if id <= 0 {
		return &authz.ValidationError{Field: "id", Message: "The event id must be a positive number."}
	}
	return nil
}

// record audits and logs a change of one event. The change is made:
// an audit row that cannot be stored is logged as lost, not returned.
func (a *Admin) record(ctx context.Context, typ, actor string, e Event) {
	detail := fmt.Sprintf("event %d kind %s type %s", e.ID, e.Kind, e.Type)
	a.log.InfoContext(ctx, "outbox admin: "+typ, "actor", actor, "id", e.ID, "kind", e.Kind, "type", e.Type, "user_id", e.UserID)
	a.audit.Record(ctx, audit.Event{Type: typ, Actor: actor, UserID: e.UserID, Detail: detail})
}

func (a *Admin) recordAll(ctx context.Context, typ, actor, kind string, n int) {
	a.log.InfoContext(ctx, "outbox admin: "+typ, "actor", actor, "kind", kind, "count", n)
	a.audit.Record(ctx, audit.Event{Type: typ, Actor: actor, Detail: fmt.Sprintf("kind %s count %d", kind, n)})
}

func failedItem(e Event) FailedItem {
	return FailedItem{
		ID: e.ID, Kind: e.Kind, Type: e.Type, UserID: e.UserID, Attempts: e.Attempts,
		LastError: dataverse.SafeMessage(e.LastError, maxLastErrorShown),
		FailedAt:  e.FailedAt, CreatedAt: e.CreatedAt,
		Summary: summarize(e.Payload),
	}
}

// summarize describes payload without its content (see Summary).
func summarize(payload json.RawMessage) Summary {
	s := Summary{Bytes: len(payload)}
	var doc struct {
		To string `json:"to"`
	}
	if json.Unmarshal(payload, &doc) != nil || doc.To == "" {
		return s
	}
	to := strings.TrimSpace(doc.To)
	to = strings.TrimSuffix(to, ">")
	at := strings.LastIndexByte(to, '@')
	if at < 0 {
		return s
	}
	domain := strings.ToLower(to[at+1:])
	if domain == "" || len(domain) > 253 {
		return s
	}
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return s
		}
	}
	s.RecipientDomain = domain
	return s
}
