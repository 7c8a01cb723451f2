// Package console is the gateway's admin console at <prefix>/admin/: pages
// for the administrators of a site's users (users and their bindings, bulk
// actions, contacts, invitations, the audit log and the state of
// Dataverse), server-rendered in the look of the sign-in pages, usable
// without JavaScript, with small progressive enhancements (console.js).
//
// The console decides nothing about who may use it: every route names the
// permission it needs (Routes), and the proxy, which owns sessions, checks
// it on the server before the handler runs, together with the cross-origin
// check and the CSRF token of every state-changing request (proxy's
// guardedRoutes). A handler receives the Caller the proxy let through.
// Pages hide what the caller's roles may not do (Caller.Can), but hiding is
// a courtesy: the route's check is the rule.
//
// Every action is audited with its actor by the service that performs it
// (authz); the console passes Caller.Actor and never writes audit rows of
// its own for changes.
package console

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy/pages"
)

//go:embed templates/*.html
var templateFiles embed.FS

// AnyPermission is the Permission of a route any console user may open:
// a caller holding at least one permission (the console's start page).
const AnyPermission = "console"

// Caller is the signed-in administrator a handler serves, as the proxy
// authenticated them.
type Caller struct {
	// UserID is the caller's account id, also their audit actor.
	UserID string
	// Username is shown in the header.
	Username string
	// Can reports whether the caller's roles grant a permission (one of
	// permissions.All). Nil grants nothing.
	Can func(perm string) bool
	// CSRFToken is the token every form of the page must carry as
	// csrf_token; the proxy checks it on every state-changing request.
	CSRFToken string
}

// can reports whether c holds perm.
func (c Caller) can(perm string) bool { return c.Can != nil && c.Can(perm) }

// Actor is the caller's audit actor.
func (c Caller) Actor() string { return c.UserID }

// Handler serves one console route for a caller who holds its permission.
type Handler func(w http.ResponseWriter, r *http.Request, c Caller)

// Route is one console page or action.
type Route struct {
	// Method is "GET" or "POST".
	Method string
	// Path is the mux pattern's path under the gateway's prefix, e.g.
	// "/admin/users/{id}".
	Path string
	// Permission is what the caller needs: one of permissions.All, or
	// AnyPermission. Any other name refuses every caller.
	Permission string
	// Handler serves the route.
	Handler Handler
}

// Error is an answer the console gives instead of a page: a user-safe
// title and message with a status, which the proxy renders like its own
// errors (with the request ID). Err is logged, never shown.
type Error struct {
	Status  int
	Code    string
	Title   string
	Message string
	Err     error
}

// Error returns the code and the cause.
func (e *Error) Error() string {
	if e.Err != nil {
		return "console: " + e.Code + ": " + e.Err.Error()
	}
	return "console: " + e.Code
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func errNotFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found", Message: "There is no such " + what + "."}
}

func errBadRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Title: "Bad request", Message: msg}
}

// Options configures New. Every service is the small interface this
// package declares; a nil one leaves its pages and actions out of the
// console (their routes are not served, their buttons not shown).
type Options struct {
	// Prefix is the gateway's prefix, e.g. "/.auth". Required.
	Prefix string
	// Pages gives the console the sign-in pages' look: the branding and
	// the static files (style.css, admin.css, console.js). Required.
	Pages *pages.Renderer
	// RenderError answers a request with an error (the proxy's, which adds
	// the request ID and logs it). Required.
	RenderError func(w http.ResponseWriter, r *http.Request, err error)
	// Log receives the console's own log lines; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Users lists and reads accounts. Required.
	Users Users
	// Accounts changes accounts: status, roles, deletion, lockout.
	Accounts Accounts
	// Sessions ends all of a user's sessions.
	Sessions SessionRevoker
	// Bindings changes users' bindings.
	Bindings Bindings
	// Contacts finds Dataverse contacts for the binding panel's lookup and
	// reads a bound contact.
	Contacts ContactLookup
	// Passwords forces password changes.
	Passwords Passwords
	// SetPasswordLinks mails users links to set a new password.
	SetPasswordLinks SetPasswordLinks
	// Approvals approves and rejects pending registrations.
	Approvals Approvals
	// Audit reads the audit trail.
	Audit AuditReader
	// Jobs runs bulk actions on users as durable jobs.
	Jobs Jobs
	// ContactAdmin lists and edits Dataverse contacts (the contacts
	// section), and its search also serves the binding panel's lookup.
	ContactAdmin ContactAdmin
	// Invitations creates, lists, resends and revokes crmgate's
	// invitations; nil hides the Invitations section.
	Invitations Invitations
	// DataverseInvitations lists Dataverse's invitations on the
	// Invitations page; nil lists crmgate's only.
	DataverseInvitations DataverseInvitations
	// DataverseStatus reports the Dataverse client's state; nil means no
	// Dataverse is configured (the Dataverse page says so).
	DataverseStatus DataverseStatus
	// Outbox shows the outbox backlog and retries and drops failed events.
	Outbox Outbox
	// BreakGlassRole names the role of break-glass administrators, for
	// messages; empty means the admin role.
	BreakGlassRole string
}

// Console serves the admin console. Build it with New.
type Console struct {
	o      Options
	log    *slog.Logger
	now    func() time.Time
	pages  map[string]*template.Template
	prefix string
	// served are the GET paths the configured services serve: a menu
	// entry whose page is not served (its service is nil) is not shown.
	served map[string]bool
}

// New parses the console's templates and checks o.
func New(o Options) (*Console, error) {
	switch {
	case o.Pages == nil:
		return nil, errors.New("console: Options.Pages is required")
	case o.RenderError == nil:
		return nil, errors.New("console: Options.RenderError is required")
	case o.Users == nil:
		return nil, errors.New("console: Options.Users is required")
	}
	c := &Console{o: o, log: cmp.Or(o.Log, slog.New(slog.DiscardHandler)), now: o.Now, prefix: o.Prefix}
	if o.Now == nil {
		c.now = time.Now
	}
	if err := c.parse(); err != nil {
		return nil, err
	}
	if err := c.trialRender(); err != nil {
		return nil, err
	}
	c.served = map[string]bool{}
	for _, r := range c.Routes() {
		if r.Method == http.MethodGet {
			c.served[r.Path] = true
		}
	}
	return c, nil
}

// samples are data every page must render, for New's trial render: it
// catches a template that names a missing field at start-up, not in front
// of an administrator.
func samples() map[string]any {
	u := &authz.User{ID: "u1", Username: "ana", Email: "ana@example.com", Roles: []string{"admin"},
		Binding: authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: "c1", Name: "Ana"}}}
	return map[string]any{
		"index":   nil,
		"confirm": confirmation{Question: "?", Fields: []confirmField{{"a", "b"}}},
		"users": usersPage{Users: []*authz.User{u}, Total: 1, Columns: []sortColumn{{Label: "Username"}},
			Statuses: []option{{}}, Modes: []option{{}}, Bulk: []bulkButton{{Slug: "link", Link: true}, {Slug: "delete", Danger: true}}},
		"bulk_confirm": bulkConfirm{Verb: "Disable", Count: 12, Names: []string{"ana"}, More: 11, Fields: []confirmField{{"user", "u1"}},
			Reason: true, Mode: "username", TooMany: true},
		"contacts": contactsPage{Contacts: []*contacts.Contact{{ID: "c1", Columns: map[string]any{"x": "y"},
			BoundUsers: []contacts.BoundUser{{ID: "u1", Username: "ana"}}}}, Columns: []string{"x"}, Next: "n", Cursor: "c", CanWrite: true},
		"contact": contactForm{Contact: &contacts.Contact{ID: "c1", BoundUsers: []contacts.BoundUser{{ID: "u1"}}},
			Fields: []formField{{Name: "a", Error: "e", Required: true, MaxLen: 5}}, CanWrite: true, CanInvite: true, CanCreate: true},
		"jobs": jobsPage{Jobs: []jobRow{{Job: jobs.Job{ID: "j1", Total: 2}, Verb: "Disable"}}, Older: "j1"},
		"job": jobPage{Job: jobRow{Job: jobs.Job{ID: "j1", Total: 2}}, Failed: []itemRow{{Item: jobs.Item{Seq: 1}}}, MoreAfter: 1,
			CanCancel: true, Running: true},
		"user": userPage{User: u, Contact: &contactView{ID: "c1"}, Modes: []option{{}}, CanBind: true, CanLookup: true,
			CanWrite: true, CanSessions: true, CanForce: true, CanSetLink: true, CanApprove: true,
			Lookup: lookupView{Done: true, Results: []contactView{{ID: "c2", Others: []string{"bob"}}}},
			Audit:  []trailRow{{Event: audit.Event{Type: "x"}, ActorID: "u1", ActorName: "ana"}}},
		"invitations": invitationsPage{Invitations: []invitationView{sampleInvitation}, Next: "x", First: "x", CanWrite: true,
			Dataverse: true, DvError: "x", DvTruncated: true,
			DvList: []dataverseInvitationView{{Invitation: &dataverse.Invitation{ID: "d1"}, State: statePending, Redeemed: sampleInvitation.Redeemed, MoreRedeemed: 1}}},
		"invitation":     invitationPage{Inv: sampleInvitation, CanWrite: true},
		"invitation_new": invitationForm{Errors: map[string]string{"email": "x"}, Kinds: []option{{}}, Contacts: true},
		"audit": auditPage{Types: []option{{Value: "x"}}, Events: []auditRow{{Event: audit.Event{Type: "x"},
			Actor: whoView{Value: "u1", Username: "ana"}, User: whoView{Value: "cli"}}}, Older: "/o", Newest: "/n", Filters: true},
		"dataverse": dataversePage{Status: newStatusView(dataverse.Status{Breaker: dataverse.BreakerOpen, BreakerSince: time.Unix(1, 0),
			ThrottledUntil: time.Unix(60, 0), Recent: []dataverse.StatusEvent{{Status: 429, RetryAfter: time.Second}},
			Cache: []dataverse.CacheStats{{Name: "contact"}}}),
			HasOutbox: true, CanWrite: true, Kinds: []option{{}, {}, {}},
			Backlog: []backlogView{{KindBacklog: outbox.KindBacklog{Kind: "mail", Failed: 1}, Age: "1s"}},
			Failed: []failedView{{FailedItem: outbox.FailedItem{ID: 1, Summary: outbox.Summary{RecipientDomain: "example.com"}},
				User: whoView{Value: "u1", Username: "ana"}}}, Next: "/n", First: "/f", OutboxErr: "x"},
	}
}

// trialRender renders every page with its sample.
func (c *Console) trialRender() error {
	all := samples()
	caller := Caller{UserID: "u1", Username: "ana", Can: func(string) bool { return true }}
	for name, t := range c.pages {
		data, ok := all[name]
		if !ok {
			return fmt.Errorf("console: template %s.html has no sample data", name)
		}
		v := c.view(caller, name, "", "Trial", data, "", "")
		if err := t.ExecuteTemplate(io.Discard, "layout.html", v); err != nil {
			return fmt.Errorf("console: template %s.html: %w", name, err)
		}
	}
	return nil
}

// parse builds one template per page file, each with the layout.
func (c *Console) parse() error {
	funcs := template.FuncMap{
		"static": c.o.Pages.StaticURL,
		"admin":  func(p string) string { return c.prefix + "/admin" + p },
		"auth":   func(p string) string { return c.prefix + p },
		"home":   func() string { return cmp.Or(c.o.Pages.Branding().HomeURL, pages.DefaultHomeURL) },
		"time":   formatTime,
		"ago":    func(t time.Time) string { return ago(c.now(), t) },
		"join":   strings.Join,
		"esc":    url.PathEscape,
		"qesc":   url.QueryEscape,
	}
	layout, err := templateFiles.ReadFile("templates/layout.html")
	if err != nil {
		return err
	}
	base, err := template.New("layout.html").Funcs(funcs).Parse(string(layout))
	if err != nil {
		return fmt.Errorf("console: template layout.html: %w", err)
	}
	entries, err := templateFiles.ReadDir("templates")
	if err != nil {
		return err
	}
	c.pages = map[string]*template.Template{}
	for _, e := range entries {
		name := e.Name()
		if name == "layout.html" {
			continue
		}
		src, err := templateFiles.ReadFile("templates/" + name)
		if err != nil {
			return err
		}
		t, err := base.Clone()
		if err == nil {
			_, err = t.New(name).Parse(string(src))
		}
		if err != nil {
			return fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[strings.TrimSuffix(name, ".html")] = t
	}
	return nil
}

// Routes returns the console's routes that the configured services serve,
// in registration order. The proxy serves each behind its permission.
func (c *Console) Routes() []Route {
	var rs []Route
	add := func(on bool, method, path, perm string, h Handler) {
		if on {
			rs = append(rs, Route{Method: method, Path: "/admin" + path, Permission: perm, Handler: h})
		}
	}
	add(true, "GET", "/{$}", AnyPermission, c.handleIndex)
	rs = append(rs, c.userRoutes()...)
	rs = append(rs, c.bulkRoutes()...)
	rs = append(rs, c.contactRoutes()...)
	rs = append(rs, c.invitationRoutes()...)
	rs = append(rs, c.auditRoutes()...)
	rs = append(rs, c.dataverseRoutes()...)
	return rs
}

// contentSecurityPolicy is sent with every console page: the pages'
// policy, with scripts allowed from the gateway's own origin (console.js)
// and its fetches to the gateway itself.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; " +
	"img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// navItem is one entry of the console's menu.
type navItem struct {
	Label, Path string
	Current     bool
}

// view is what every console template receives.
type view struct {
	Brand   pages.Branding
	Page    string
	Title   string
	Caller  Caller
	Nav     []navItem
	Notice  string
	Error   string
	Data    any
	Section string
}

// sections are the console's menu entries and the permission each needs.
var sections = []struct {
	key, label, path, perm string
}{
	{"users", "Users", "/users", permissions.UsersRead},
	{"jobs", "Bulk actions", "/jobs", permissions.UsersRead},
	{"contacts", "Contacts", "/contacts", permissions.ContactsRead},
	{"invitations", "Invitations", "/invitations", permissions.InvitationsRead},
	{"audit", "Audit log", "/audit", permissions.AuditRead},
	{"dataverse", "Dataverse", "/dataverse", permissions.AuditRead},
}

// render writes page with data for caller, status status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, caller Caller, page, section, title string, data any, notice, errMsg string) {
	t, ok := c.pages[page]
	if !ok {
		c.o.RenderError(w, r, fmt.Errorf("console: no template %q", page))
		return
	}
	v := c.view(caller, page, section, title, data, notice, errMsg)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.o.RenderError(w, r, fmt.Errorf("console: render %s: %w", page, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// view is the data of a page for caller.
func (c *Console) view(caller Caller, page, section, title string, data any, notice, errMsg string) view {
	v := view{Brand: c.o.Pages.Branding(), Page: page, Title: title, Caller: caller, Data: data, Notice: notice, Error: errMsg,
		Section: section}
	for _, s := range sections {
		if caller.can(s.perm) && (c.served == nil || c.served["/admin"+s.path]) { // nil: the trial render
			v.Nav = append(v.Nav, navItem{Label: s.label, Path: s.path, Current: s.key == section})
		}
	}
	return v
}

// handleIndex is the console's start page: the sections the caller may open.
func (c *Console) handleIndex(w http.ResponseWriter, r *http.Request, caller Caller) {
	c.render(w, r, http.StatusOK, caller, "index", "", "Administration", nil, "", "")
}

// redirect answers a finished action with 303 to path under /admin, with
// the notice key (never free text: notices names the messages).
func (c *Console) redirect(w http.ResponseWriter, r *http.Request, path, notice string) {
	u := c.prefix + "/admin" + path
	if notice != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + "notice=" + url.QueryEscape(notice)
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// notices are the messages a redirect may name; an unknown key shows none,
// so that a link cannot make the console say anything else.
var notices = map[string]string{
	"status-active":    "The account is active.",
	"status-disabled":  "The account is disabled; its sessions end at their next request.",
	"roles":            "The roles were saved.",
	"binding":          "The binding was saved.",
	"force-password":   "The user must choose a new password at their next sign-in.",
	"set-password":     "A set-password link is on its way to the user.",
	"sessions":         "Every session of the user was ended.",
	"unlocked":         "The sign-in lockout was cleared.",
	"not-locked":       "The account was not locked out.",
	"approved":         "The registration was approved.",
	"rejected":         "The registration was rejected.",
	"deleted":          "The user was deleted.",
	"nothing-selected": "Select at least one user.",
	"job-cancelled":    "The job stops before its next user.",
	"job-finished":     "The job had already finished.",
	"contact-created":  "The contact was created in Dataverse.",
	"contact-saved":    "The contact was saved in Dataverse.",
	"contact-deleted":  "The contact was deleted from Dataverse.",
	"contact-invited":  "An invitation is on its way to the contact.",
	"user-created":     "The account was created; a set-password link is on its way.",

	"invitation-created": "The invitation was created; its mail is on its way.",
	"invitation-resent":  "The invitation was mailed again with a new code; the previous code no longer works.",
	"invitation-revoked": "The invitation was revoked; its code no longer works.",

	// The Dataverse page's outbox actions.
	"outbox-retried":     "The event is pending again; the outbox delivers it now.",
	"outbox-dropped":     "The event was dropped.",
	"outbox-retried-all": "The failed events of the kind are pending again; the outbox delivers them now.",
	"outbox-dropped-all": "The failed events of the kind were dropped.",
	"outbox-none":        "No failed event of the kind was left: nothing was changed.",
}

// notice returns the message the request's notice key names.
func notice(r *http.Request) string { return notices[r.URL.Query().Get("notice")] }

// confirmation is the page that asks before a destructive action: it shows
// the question and posts the same form again with confirmed=yes.
type confirmation struct {
	Question string
	Detail   string
	Action   string // the form's path under the prefix
	Button   string
	Fields   []confirmField
	Back     string // path under the prefix of the cancel link
}

type confirmField struct{ Name, Value string }

// confirmed reports whether a destructive form was confirmed; when it was
// not, it shows the confirmation page and the handler returns.
func (c *Console) confirmed(w http.ResponseWriter, r *http.Request, caller Caller, section string, q confirmation) bool {
	if r.PostForm.Get("confirmed") == "yes" {
		return true
	}
	for k, vs := range r.PostForm {
		if k == "csrf_token" || k == "confirmed" {
			continue
		}
		for _, v := range vs {
			q.Fields = append(q.Fields, confirmField{Name: k, Value: v})
		}
	}
	c.render(w, r, http.StatusOK, caller, "confirm", section, "Please confirm", q, "", "")
	return false
}

// formField is one input of a console form, with its hint and the message
// of its error. Type empty means "text"; MaxLen zero means no maxlength.
type formField struct {
	Name, Label, Type, Value, Hint, Error, Autocomplete string
	Required                                            bool
	MaxLen                                              int
}

// maxFormBytes bounds a console form (a bulk selection of MaxBulk ids).
const maxFormBytes = 1 << 20

// parseForm reads a POST form of at most maxFormBytes.
func (c *Console) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.o.RenderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return false
	}
	return true
}

// formatTime shows t in UTC to the minute; the zero time is "never".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// ago says how long before now t was, coarsely ("3 min ago").
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " days ago"
}
