package console

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
)

// DataverseStatus reports the state of the gateway's Dataverse client
// (crmclient's Client.Status with the caches to show). It sends nothing to
// Dataverse.
type DataverseStatus func() dataverse.Status

// Outbox is the administration of the outbox: the backlog, the failed
// events, and retrying or dropping them, each audited with actor by the
// implementation. *outbox.Admin satisfies it.
type Outbox interface {
	Backlog(ctx context.Context) ([]outbox.KindBacklog, error)
	Failed(ctx context.Context, kind string, after int64, limit int) ([]outbox.FailedItem, error)
	Retry(ctx context.Context, id int64, actor string) (outbox.FailedItem, error)
	Drop(ctx context.Context, id int64, actor string) (outbox.FailedItem, error)
	RetryAll(ctx context.Context, kind, actor string) (int, error)
	DropAll(ctx context.Context, kind, actor string) (int, error)
}

// failedPageSize is how many failed events a page of the Dataverse page
// lists.
const failedPageSize = 50

// dataverseRoutes: the page is served when either part is configured (it
// needs audit:read: like the audit log, it names users and what failed
// for them); retrying and dropping need outbox:write, a permission of its
// own, because no other one covers every kind of event (mail with
// credentials links, Dataverse lifecycle actions, contact writes).
func (c *Console) dataverseRoutes() []Route {
	var rs []Route
	add := func(on bool, method, path, perm string, h Handler) {
		if on {
			rs = append(rs, Route{Method: method, Path: "/admin" + path, Permission: perm, Handler: h})
		}
	}
	ob := c.o.Outbox != nil
	add(ob || c.o.DataverseStatus != nil, "GET", "/dataverse", permissions.AuditRead, c.handleDataverse)
	add(ob, "POST", "/dataverse/outbox/{id}/retry", permissions.OutboxWrite, c.handleOutboxRetry)
	add(ob, "POST", "/dataverse/outbox/{id}/drop", permissions.OutboxWrite, c.handleOutboxDrop)
	add(ob, "POST", "/dataverse/outbox/retry-all", permissions.OutboxWrite, c.handleOutboxRetryAll)
	add(ob, "POST", "/dataverse/outbox/drop-all", permissions.OutboxWrite, c.handleOutboxDropAll)
	return rs
}

// dataversePage is the data of the Dataverse page.
type dataversePage struct {
	Status    *statusView // nil: no Dataverse configured
	HasOutbox bool
	Backlog   []backlogView
	Failed    []failedView
	Kind      string       // the failed list's kind filter
	Kinds     []option     // the kind filter's select
	Next      template.URL // the next page of failed events
	First     template.URL // the first page, on a later one
	OutboxErr string
	CanWrite  bool // the caller may retry and drop
}

// statusView is dataverse.Status with its durations and times written
// out for the page.
type statusView struct {
	dataverse.Status
	Since          string // when the breaker entered its state, or ""
	Window         string
	ThrottledUntil string // "" when not throttled
	Recent         []statusEventView
}

type statusEventView struct {
	dataverse.StatusEvent
	Status     string // "429", or "no answer"
	RetryAfter string // "" when none
}

// backlogView is one kind's backlog.
type backlogView struct {
	outbox.KindBacklog
	Age string // of the oldest pending event, or ""
}

// failedView is one failed event.
type failedView struct {
	outbox.FailedItem
	User whoView
}

func (c *Console) handleDataverse(w http.ResponseWriter, r *http.Request, caller Caller) {
	c.renderDataverse(w, r, http.StatusOK, caller, notice(r), "")
}

// renderDataverse shows the Dataverse page with a notice or an error.
func (c *Console) renderDataverse(w http.ResponseWriter, r *http.Request, status int, caller Caller, notice, errMsg string) {
	ctx := r.Context()
	d := dataversePage{HasOutbox: c.o.Outbox != nil, CanWrite: c.o.Outbox != nil && caller.can(permissions.OutboxWrite)}
	if c.o.DataverseStatus != nil {
		d.Status = newStatusView(c.o.DataverseStatus())
	}
	if d.HasOutbox {
		c.loadOutbox(ctx, r.URL.Query(), &d)
	}
	c.render(w, r, status, caller, "dataverse", "dataverse", "Dataverse", d, notice, errMsg)
}

// loadOutbox fills the outbox part of d; a failure is a message for the
// panel, not an error page.
func (c *Console) loadOutbox(ctx context.Context, q url.Values, d *dataversePage) {
	bs, err := c.o.Outbox.Backlog(ctx)
	if err != nil {
		c.log.WarnContext(ctx, "console: outbox backlog not read", "err", err)
		d.OutboxErr = "The outbox cannot be read just now."
		return
	}
	d.Kind = strings.TrimSpace(q.Get("kind"))
	d.Kinds = []option{{Value: "", Label: "Every kind", Selected: d.Kind == ""}}
	for _, b := range bs {
		v := backlogView{KindBacklog: b}
		if !b.OldestPending.IsZero() {
			v.Age = duration(b.OldestPendingAge)
		}
		d.Backlog = append(d.Backlog, v)
		if b.Failed > 0 {
			d.Kinds = append(d.Kinds, option{Value: b.Kind, Label: b.Kind, Selected: b.Kind == d.Kind})
		}
	}
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	after = max(after, 0)
	items, err := c.o.Outbox.Failed(ctx, d.Kind, after, failedPageSize+1)
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		d.OutboxErr = verr.Message
		return
	case err != nil:
		c.log.WarnContext(ctx, "console: failed outbox events not read", "err", err)
		d.OutboxErr = "The failed events cannot be read just now."
		return
	}
	link := func(after int64) template.URL {
		v := url.Values{}
		if d.Kind != "" {
			v.Set("kind", d.Kind)
		}
		if after > 0 {
			v.Set("after", strconv.FormatInt(after, 10))
		}
		u := c.prefix + "/admin/dataverse"
		if len(v) > 0 {
			u += "?" + v.Encode()
		}
		return template.URL(u + "#failed")
	}
	if len(items) > failedPageSize {
		items = items[:failedPageSize]
		d.Next = link(items[len(items)-1].ID)
	}
	if after > 0 {
		d.First = link(0)
	}
	name := c.whoResolver(ctx)
	for _, it := range items {
		d.Failed = append(d.Failed, failedView{FailedItem: it, User: name(it.UserID)})
	}
}

func newStatusView(st dataverse.Status) *statusView {
	v := &statusView{Status: st, Window: duration(st.Window)}
	if !st.BreakerSince.IsZero() {
		v.Since = formatTime(st.BreakerSince) + " (" + ago(st.At, st.BreakerSince) + ")"
	}
	if !st.ThrottledUntil.IsZero() {
		v.ThrottledUntil = st.ThrottledUntil.UTC().Format("2006-01-02 15:04:05 UTC") + " (in " + duration(st.ThrottledUntil.Sub(st.At)) + ")"
	}
	for _, e := range st.Recent {
		ev := statusEventView{StatusEvent: e, Status: strconv.Itoa(e.Status)}
		if e.Status == 0 {
			ev.Status = "no answer"
		}
		if e.RetryAfter > 0 {
			ev.RetryAfter = duration(e.RetryAfter)
		}
		v.Recent = append(v.Recent, ev)
	}
	return v
}

// duration writes d to the second ("1m30s"), "0s" for less.
func duration(d time.Duration) string {
	return max(d, 0).Round(time.Second).String()
}

// eventID reads the {id} of an outbox action, answering a bad one itself.
func (c *Console) eventID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	if !c.parseForm(w, r) {
		return 0, false
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		c.o.RenderError(w, r, errNotFound("failed event"))
		return 0, false
	}
	return id, true
}

func (c *Console) handleOutboxRetry(w http.ResponseWriter, r *http.Request, caller Caller) {
	id, ok := c.eventID(w, r)
	if !ok {
		return
	}
	if !c.confirmed(w, r, caller, "dataverse", confirmation{
		Question: fmt.Sprintf("Retry failed event %d?", id),
		Detail: "It goes back to pending and is delivered again at once. Careful: an old event can arrive after later events " +
			"of the same user that were delivered meanwhile (an \u201cupdated\u201d after a \u201cdeleted\u201d), " +
			"and while it is pending, that user's later events wait for it.",
		Action: fmt.Sprintf("/admin/dataverse/outbox/%d/retry", id), Button: "Retry", Back: "/admin/dataverse#failed"}) {
		return
	}
	if _, err := c.o.Outbox.Retry(r.Context(), id, caller.Actor()); err != nil {
		c.outboxError(w, r, caller, err)
		return
	}
	c.redirect(w, r, "/dataverse", "outbox-retried")
}

func (c *Console) handleOutboxDrop(w http.ResponseWriter, r *http.Request, caller Caller) {
	id, ok := c.eventID(w, r)
	if !ok {
		return
	}
	if !c.confirmed(w, r, caller, "dataverse", confirmation{
		Question: fmt.Sprintf("Drop failed event %d?", id),
		Detail:   "It is deleted: its mail is never sent, its Dataverse change never made. This cannot be undone.",
		Action:   fmt.Sprintf("/admin/dataverse/outbox/%d/drop", id), Button: "Drop", Back: "/admin/dataverse#failed"}) {
		return
	}
	if _, err := c.o.Outbox.Drop(r.Context(), id, caller.Actor()); err != nil {
		c.outboxError(w, r, caller, err)
		return
	}
	c.redirect(w, r, "/dataverse", "outbox-dropped")
}

func (c *Console) handleOutboxRetryAll(w http.ResponseWriter, r *http.Request, caller Caller) {
	if !c.parseForm(w, r) {
		return
	}
	kind := r.PostForm.Get("kind")
	if !c.confirmed(w, r, caller, "dataverse", confirmation{
		Question: "Retry every failed event of the kind " + kind + "?",
		Detail: "They go back to pending and are delivered again at once. Careful: old events can arrive after later events " +
			"of the same users that were delivered meanwhile, and while they are pending, those users' later events wait for them.",
		Action: "/admin/dataverse/outbox/retry-all", Button: "Retry all", Back: "/admin/dataverse"}) {
		return
	}
	n, err := c.o.Outbox.RetryAll(r.Context(), kind, caller.Actor())
	if err != nil {
		c.outboxError(w, r, caller, err)
		return
	}
	c.redirect(w, r, "/dataverse", noticeCount("outbox-retried-all", n))
}

func (c *Console) handleOutboxDropAll(w http.ResponseWriter, r *http.Request, caller Caller) {
	if !c.parseForm(w, r) {
		return
	}
	kind := r.PostForm.Get("kind")
	if !c.confirmed(w, r, caller, "dataverse", confirmation{
		Question: "Drop every failed event of the kind " + kind + "?",
		Detail:   "They are deleted: their mail is never sent, their Dataverse changes never made. This cannot be undone.",
		Action:   "/admin/dataverse/outbox/drop-all", Button: "Drop all", Back: "/admin/dataverse"}) {
		return
	}
	n, err := c.o.Outbox.DropAll(r.Context(), kind, caller.Actor())
	if err != nil {
		c.outboxError(w, r, caller, err)
		return
	}
	c.redirect(w, r, "/dataverse", noticeCount("outbox-dropped-all", n))
}

// noticeCount is key, or "outbox-none" when n events changed.
func noticeCount(key string, n int) string {
	if n == 0 {
		return "outbox-none"
	}
	return key
}

// outboxError shows the Dataverse page with the user-safe message of an
// outbox action's error, or the error page for an unexpected one.
func (c *Console) outboxError(w http.ResponseWriter, r *http.Request, caller Caller, err error) {
	var nf *outbox.NotFailedError
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &nf) && nf.State == outbox.StateUnknown:
		c.renderDataverse(w, r, http.StatusNotFound, caller, "", fmt.Sprintf("There is no failed event %d: it was dropped or purged.", nf.ID))
	case errors.As(err, &nf):
		c.renderDataverse(w, r, http.StatusConflict, caller, "",
			fmt.Sprintf("Event %d is no longer failed (it is %s): someone retried it already. Nothing was changed.", nf.ID, nf.State))
	case errors.As(err, &verr):
		c.renderDataverse(w, r, http.StatusBadRequest, caller, "", verr.Message)
	default:
		c.o.RenderError(w, r, err)
	}
}

// whoResolver returns a function that shows an actor or a user id,
// linked to the user page when it is the id of an account; it looks each
// distinct value up once.
func (c *Console) whoResolver(ctx context.Context) func(string) whoView {
	names := map[string]string{}
	return func(v string) whoView {
		if !looksLikeUserID(v) {
			return whoView{Value: v}
		}
		n, done := names[v]
		if !done {
			// LookupUser also matches usernames and emails: only an
			// account whose id is v counts.
			if u, err := c.o.Users.LookupUser(ctx, v); err == nil && u.ID == v {
				n = u.Username
			} else if err != nil && !errors.Is(err, authz.ErrNotFound) {
				c.log.WarnContext(ctx, "console: user not read", "user_id", v, "err", err)
			}
			names[v] = n
		}
		return whoView{Value: v, Username: n}
	}
}
