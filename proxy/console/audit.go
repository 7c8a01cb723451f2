package console

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/registration"
)

// auditPageSize is how many events a page of the audit log shows.
const auditPageSize = 50

// auditTimeLayouts are the forms a date-time input sends (the browser's
// datetime-local, to the minute or the second), read as UTC.
var auditTimeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05"}

// knownAuditTypes are the event types the action filter offers in its
// select, from the packages that write them; any other type can still be
// typed (the webhooks' types, a newer release's).
func knownAuditTypes() []string {
	ts := []string{
		audit.EventSignIn, audit.EventSignInFailed, audit.EventSessionRevoked, audit.EventSignInThrottled,
		audit.EventAccountLocked, audit.EventAddressLocked, audit.EventSignOut, audit.EventUserCreated,
		audit.EventPasswordSet, audit.EventRolesSet, audit.EventStatusSet, audit.EventBindingSet,
		audit.EventBindingShared, audit.EventUserDeleted, audit.EventProfileUpdated, audit.EventProfileSynced,
		audit.EventAPIKeyCreated, audit.EventAPIKeyRevoked, audit.EventAPIKeyUsed, audit.EventAPIKeyRefused,
		audit.EventAPIRefused, audit.EventAccountUnlocked, audit.EventTokenIssued, audit.EventTokenConsumed,
		audit.EventTokenRefused, audit.EventTokenRevoked,
		audit.EventUserApproved, audit.EventUserRejected, audit.EventCredentialsCreated, audit.EventCredentialsSkipped,
		registration.EventRegistered, registration.EventRegisterDuplicate, registration.EventRegisterThrottled,
		registration.EventEmailConfirmed, registration.EventConfirmResent, registration.EventContactCreated,
		recovery.EventResetRequested, recovery.EventResetThrottled, recovery.EventPasswordReset, recovery.EventPasswordChanged,
		invitations.EventCreated, invitations.EventResent, invitations.EventRevoked, invitations.EventRedeemed,
		invitations.EventRefused, invitations.EventThrottled, invitations.EventLinked, invitations.EventPending,
		invitations.EventMailed,
		outbox.EventRetried, outbox.EventDropped, outbox.EventRetriedAll, outbox.EventDroppedAll,
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}

func (c *Console) auditRoutes() []Route {
	if c.o.Audit == nil {
		return nil
	}
	return []Route{{Method: "GET", Path: "/admin/audit", Permission: permissions.AuditRead, Handler: c.handleAudit}}
}

// auditQuery is the audit log's filter as the query string carries it.
type auditQuery struct {
	Actor, User, Action, Since, Until string
	Before                            int64
}

// values returns q as a query string, with the cursor before (0: none).
func (q auditQuery) values(before int64) string {
	v := url.Values{}
	for _, kv := range [][2]string{{"actor", q.Actor}, {"user", q.User}, {"action", q.Action}, {"since", q.Since}, {"until", q.Until}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	if before > 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	return v.Encode()
}

// parseAuditQuery reads the audit log's query string. The action is the
// free text when given, else the select's choice.
func parseAuditQuery(r *http.Request) auditQuery {
	v := r.URL.Query()
	q := auditQuery{Actor: strings.TrimSpace(v.Get("actor")), User: strings.TrimSpace(v.Get("user")),
		Action: strings.TrimSpace(v.Get("action_other")), Since: strings.TrimSpace(v.Get("since")),
		Until: strings.TrimSpace(v.Get("until"))}
	if q.Action == "" {
		q.Action = strings.TrimSpace(v.Get("action"))
	}
	if n, err := strconv.ParseInt(v.Get("before"), 10, 64); err == nil && n > 0 {
		q.Before = n
	}
	return q
}

// parseAuditTime reads a date-time input in UTC, strictly: one of
// auditTimeLayouts, nothing else. Empty is no bound.
func parseAuditTime(label, s string) (time.Time, string) {
	if s == "" {
		return time.Time{}, ""
	}
	for _, l := range auditTimeLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, ""
		}
	}
	return time.Time{}, "The " + label + " time must be a date and time in UTC such as 2026-03-01T12:00."
}

// auditPage is the data of the audit log.
type auditPage struct {
	Query   auditQuery
	Types   []option // the action select; "" is any
	Other   string   // the action when it is not a known type
	Events  []auditRow
	Older   template.URL // the next page's link; empty when there is none
	Newest  template.URL // the first page's link, on a later page
	Filters bool         // a filter is set
}

// auditRow is one event of the table; the actor and the user are linked
// to their user page when they are accounts.
type auditRow struct {
	audit.Event
	Actor, User whoView
}

// whoView is an actor or a user as the table shows it.
type whoView struct {
	Value    string // as stored
	Username string // set when Value is the id of an account
}

func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request, caller Caller) {
	ctx := r.Context()
	q := parseAuditQuery(r)
	known := knownAuditTypes()
	d := auditPage{Query: q, Types: []option{{Value: "", Label: "Any action", Selected: q.Action == ""}},
		Filters: q.Actor != "" || q.User != "" || q.Action != "" || q.Since != "" || q.Until != ""}
	for _, t := range known {
		d.Types = append(d.Types, option{Value: t, Label: t, Selected: t == q.Action})
	}
	if q.Action != "" && !slices.Contains(known, q.Action) {
		d.Other = q.Action
	}
	if q.Before > 0 {
		d.Newest = c.auditLink(q.values(0))
	}
	f := audit.Filter{Type: q.Action, Before: q.Before, Limit: auditPageSize + 1}
	var msg string
	if f.Since, msg = parseAuditTime("since", q.Since); msg != "" {
		c.render(w, r, http.StatusBadRequest, caller, "audit", "audit", "Audit log", d, "", msg)
		return
	}
	if f.Until, msg = parseAuditTime("until", q.Until); msg != "" {
		c.render(w, r, http.StatusBadRequest, caller, "audit", "audit", "Audit log", d, "", msg)
		return
	}
	var err error
	if f.UserID, msg, err = c.resolveUser(ctx, q.User); err != nil {
		c.o.RenderError(w, r, err)
		return
	} else if msg != "" {
		// Not an error: the filter names nobody, so no event matches.
		c.render(w, r, http.StatusOK, caller, "audit", "audit", "Audit log", d, "", msg)
		return
	}
	if f.Actor, err = c.resolveActor(ctx, q.Actor); err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	evs, err := c.o.Audit.ListAudit(ctx, f)
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		c.render(w, r, http.StatusBadRequest, caller, "audit", "audit", "Audit log", d, "", verr.Message)
		return
	case err != nil:
		c.o.RenderError(w, r, err)
		return
	}
	if len(evs) > auditPageSize {
		evs = evs[:auditPageSize]
		d.Older = c.auditLink(q.values(evs[len(evs)-1].ID))
	}
	d.Events = c.auditRows(ctx, evs)
	c.render(w, r, http.StatusOK, caller, "audit", "audit", "Audit log", d, notice(r), "")
}

// resolveUser turns the user filter (an id, a username or an email
// address) into a user id; msg says, user-safe, that it names nobody.
func (c *Console) resolveUser(ctx context.Context, who string) (id, msg string, err error) {
	if who == "" {
		return "", "", nil
	}
	if len(who) > authz.MaxEmailLen || !authz.Printable(who) {
		return "", "No user has this id, username or email address.", nil
	}
	u, err := c.o.Users.LookupUser(ctx, who)
	switch {
	case errors.Is(err, authz.ErrNotFound) && looksLikeUserID(who):
		return who, "", nil // a deleted account's events stay in the trail
	case errors.Is(err, authz.ErrNotFound):
		return "", "No user has the id, username or email address \u201c" + who + "\u201d, so no event is shown.", nil
	case err != nil:
		return "", "", err
	}
	return u.ID, "", nil
}

// resolveActor turns the actor filter into the actor as stored: the id of
// the user it names (by id, username or email address), else the text as
// it is ("cli", "system", "apikey:<id>", the id of a deleted user).
func (c *Console) resolveActor(ctx context.Context, actor string) (string, error) {
	if actor == "" || len(actor) > authz.MaxEmailLen || !authz.Printable(actor) {
		return actor, nil // Validate explains a bad one
	}
	u, err := c.o.Users.LookupUser(ctx, actor)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		return actor, nil
	case err != nil:
		return "", err
	}
	return u.ID, nil
}

// auditRows resolves the actors and users of evs that are account ids
// to their usernames, with one lookup per distinct value of the page.
func (c *Console) auditRows(ctx context.Context, evs []audit.Event) []auditRow {
	name := c.whoResolver(ctx)
	rows := make([]auditRow, 0, len(evs))
	for _, e := range evs {
		rows = append(rows, auditRow{Event: e, Actor: name(e.Actor), User: name(e.UserID)})
	}
	return rows
}

// looksLikeUserID reports whether v has the form of an account id
// (authz.NewID: 32 lower-case hex digits).
func looksLikeUserID(v string) bool {
	if len(v) != 32 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// auditLink is the audit log's address with the query string query
// (built by url.Values.Encode, so safe as a URL).
func (c *Console) auditLink(query string) template.URL {
	u := c.prefix + "/admin/audit"
	if query != "" {
		u += "?" + query
	}
	return template.URL(u)
}
