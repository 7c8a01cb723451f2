package console

import (
	"cmp"
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
)

// Users lists and reads accounts. *accounts.Service satisfies it.
type Users interface {
	ListUsers(ctx context.Context, f authz.UserFilter) ([]*authz.User, error)
	CountUsers(ctx context.Context, f authz.UserFilter) (int, error)
	// LookupUser finds a user by id, else by username or email, or returns
	// an error wrapping authz.ErrNotFound.
	LookupUser(ctx context.Context, who string) (*authz.User, error)
}

// Accounts changes accounts. *accounts.Service satisfies it. Each method
// audits the change with actor and refuses (authz.ErrLastBreakGlassAdmin)
// one that would leave no break-glass administrator.
type Accounts interface {
	SetStatus(ctx context.Context, login string, st authz.Status, actor string) error
	SetRoles(ctx context.Context, login string, roles []string, actor string) error
	DeleteUser(ctx context.Context, login, actor string) error
	Unlock(ctx context.Context, login, actor string) (wasLocked bool, err error)
}

// SessionRevoker ends every session of a user, on every replica.
type SessionRevoker interface {
	RevokeSessions(ctx context.Context, who, actor string) (*authz.User, error)
}

// Bindings changes users' bindings. *accounts.Service satisfies it.
type Bindings interface {
	SetBindings(ctx context.Context, changes []accounts.BindingChange, actor string) ([]accounts.BindingResult, error)
}

// ContactLookup reads the bound contact for the binding panel (its lookup
// searches through ContactAdmin). *binding.Resolver satisfies it.
type ContactLookup interface {
	// ResolveBinding returns the contact u's binding names.
	ResolveBinding(ctx context.Context, u *authz.User, columns []string) (*dataverse.Contact, error)
	// BoundTo returns contact id and the users but exceptID bound to it.
	BoundTo(ctx context.Context, id, exceptID string) (*dataverse.Contact, []*authz.User, error)
}

// Passwords forces password changes and mails set-password links.
type Passwords interface {
	ForcePasswordChange(ctx context.Context, who, actor string) (*authz.User, error)
}

// SetPasswordLinks mails a user a link to set a new password.
type SetPasswordLinks interface {
	SendSetPasswordLink(ctx context.Context, who, actor string) (*onboarding.LinkSent, error)
}

// Approvals decides pending registrations. *onboarding.Service satisfies it.
type Approvals interface {
	Approve(ctx context.Context, who, actor string) (*authz.User, error)
	Reject(ctx context.Context, who, reason, actor string) (*authz.User, error)
}

// AuditReader reads the audit trail. *audit.Log satisfies it.
type AuditReader interface {
	ListAudit(ctx context.Context, f audit.Filter) ([]audit.Event, error)
}

// pageSize is how many users a page of the users table shows.
const pageSize = 50

func (c *Console) userRoutes() []Route {
	var rs []Route
	add := func(on bool, method, path, perm string, h Handler) {
		if on {
			rs = append(rs, Route{Method: method, Path: "/admin" + path, Permission: perm, Handler: h})
		}
	}
	o := c.o
	add(true, "GET", "/users", permissions.UsersRead, c.handleUsers)
	add(true, "GET", "/users/{id}", permissions.UsersRead, c.handleUser)
	add(o.Accounts != nil, "POST", "/users/{id}/status", permissions.UsersWrite, c.userHandler(c.setStatus()))
	add(o.Accounts != nil, "POST", "/users/{id}/roles", permissions.UsersWrite, c.userHandler(c.setRoles()))
	add(o.Accounts != nil, "POST", "/users/{id}/unlock", permissions.UsersWrite, c.userHandler(c.unlock()))
	add(o.Accounts != nil, "POST", "/users/{id}/delete", permissions.UsersWrite, c.userHandler(c.deleteUser()))
	add(o.Sessions != nil, "POST", "/users/{id}/revoke-sessions", permissions.UsersWrite, c.userHandler(c.revokeSessions()))
	add(o.Bindings != nil, "POST", "/users/{id}/binding", permissions.BindingsWrite, c.userHandler(c.setBinding()))
	add(o.Passwords != nil, "POST", "/users/{id}/force-password-change", permissions.UsersCredentials, c.userHandler(c.forcePassword()))
	add(o.SetPasswordLinks != nil, "POST", "/users/{id}/send-set-password-link", permissions.UsersCredentials, c.userHandler(c.setPasswordLink()))
	add(o.Approvals != nil, "POST", "/users/{id}/approve", permissions.UsersApprove, c.userHandler(c.approve()))
	add(o.Approvals != nil, "POST", "/users/{id}/reject", permissions.UsersApprove, c.userHandler(c.reject()))
	return rs
}

// usersQuery is the users table's filter as the query string carries it.
type usersQuery struct {
	Q, Status, Mode, Sort, Dir string
	Page                       int
}

// values returns q as a query string, with overrides.
func (q usersQuery) values(over map[string]string) string {
	v := url.Values{}
	set := func(k, val string) {
		if o, ok := over[k]; ok {
			val = o
		}
		if val != "" {
			v.Set(k, val)
		}
	}
	set("q", q.Q)
	set("status", q.Status)
	set("mode", q.Mode)
	set("sort", q.Sort)
	set("dir", q.Dir)
	page := ""
	if q.Page > 1 {
		page = strconv.Itoa(q.Page)
	}
	set("page", page)
	return v.Encode()
}

// filter returns the store filter of q, or a user-safe message.
func (q usersQuery) filter() (authz.UserFilter, string) {
	f := authz.UserFilter{Query: q.Q, Status: authz.Status(q.Status), Mode: authz.BindingMode(q.Mode),
		Sort: authz.UserSort(q.Sort), Desc: q.Dir == "desc", Limit: pageSize, Offset: (q.Page - 1) * pageSize}
	if len(q.Q) > 256 {
		return f, "The search is limited to 256 characters."
	}
	var verr *authz.ValidationError
	if err := f.Check(); errors.As(err, &verr) {
		return f, verr.Message
	}
	return f, ""
}

// parseUsersQuery reads the users table's query string.
func parseUsersQuery(r *http.Request) usersQuery {
	v := r.URL.Query()
	q := usersQuery{Q: strings.TrimSpace(v.Get("q")), Status: v.Get("status"), Mode: v.Get("mode"), Sort: v.Get("sort"), Page: 1}
	if v.Get("dir") == "desc" {
		q.Dir = "desc"
	}
	if n, err := strconv.Atoi(v.Get("page")); err == nil && n > 1 && n <= authz.MaxListOffset/pageSize {
		q.Page = n
	}
	return q
}

// usersPage is the data of the users table.
type usersPage struct {
	Query           usersQuery
	FilterQuery     string // the filter as a query string, for "every user matching"
	Users           []*authz.User
	Total           int
	First, Last     int
	Prev, Next      template.URL // links; empty when there is none
	Columns         []sortColumn
	Statuses, Modes []option
	Bulk            []bulkButton
}

type sortColumn struct {
	Label, Sort   string
	Link          template.URL
	Current, Desc bool
}

type option struct {
	Value, Label string
	Selected     bool
}

func options(cur string, pairs ...string) []option {
	var out []option
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, option{Value: pairs[i], Label: pairs[i+1], Selected: pairs[i] == cur})
	}
	return out
}

func (c *Console) handleUsers(w http.ResponseWriter, r *http.Request, caller Caller) {
	q := parseUsersQuery(r)
	data := usersPage{Query: q, FilterQuery: q.values(map[string]string{"page": "", "sort": "", "dir": ""}),
		Statuses: options(q.Status, "", "Any status", "pending", "Pending approval", "active", "Active", "disabled", "Disabled"),
		Modes:    options(q.Mode, "", "Any binding", "none", "Not bound", "lookup", "Lookup", "username", "Username", "custom", "Custom"),
	}
	for _, col := range []struct{ label, sort string }{{"Username", "username"}, {"Email", "email"}, {"Status", "status"},
		{"Last sign-in", "last_sign_in"}} {
		cur := q.Sort == col.sort || (q.Sort == "" && col.sort == "username")
		dir := ""
		if cur && q.Dir != "desc" {
			dir = "desc"
		}
		data.Columns = append(data.Columns, sortColumn{Label: col.label, Sort: col.sort, Current: cur, Desc: cur && q.Dir == "desc",
			Link: c.usersLink(q.values(map[string]string{"sort": col.sort, "dir": dir, "page": ""}))})
	}
	f, msg := q.filter()
	if msg != "" {
		c.render(w, r, http.StatusBadRequest, caller, "users", "users", "Users", data, "", msg)
		return
	}
	users, err := c.o.Users.ListUsers(r.Context(), f)
	if err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	total, err := c.o.Users.CountUsers(r.Context(), f)
	if err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	data.Users, data.Total = users, total
	if len(users) > 0 {
		data.First, data.Last = f.Offset+1, f.Offset+len(users)
	}
	if q.Page > 1 {
		data.Prev = c.usersLink(q.values(map[string]string{"page": strconv.Itoa(q.Page - 1)}))
	}
	if f.Offset+len(users) < total && q.Page < authz.MaxListOffset/pageSize {
		data.Next = c.usersLink(q.values(map[string]string{"page": strconv.Itoa(q.Page + 1)}))
	}
	data.Bulk = c.bulkButtons(caller)
	c.render(w, r, http.StatusOK, caller, "users", "users", "Users", data, notice(r), "")
}

// usersLink is the users table's address with the query string query
// (built by url.Values.Encode, so safe as a URL).
func (c *Console) usersLink(query string) template.URL {
	u := c.prefix + "/admin/users"
	if query != "" {
		u += "?" + query
	}
	return template.URL(u)
}

// userPage is the data of a user's page.
type userPage struct {
	User        *authz.User
	Locked      bool
	BreakGlass  bool
	Roles       string
	Modes       []option
	Contact     *contactView
	ContactErr  string
	Lookup      lookupView
	Audit       []trailRow
	AuditErr    string
	CanBind     bool
	CanLookup   bool
	CanSessions bool
	CanSetLink  bool
	CanApprove  bool
	CanForce    bool
	CanWrite    bool
}

// contactView is a contact as the binding panel shows it.
type contactView struct {
	ID, Name, Email, FirstName, LastName, Username string
	Active                                         bool
	Others                                         []string // other users bound to it
}

// lookupView is the binding panel's contact search.
type lookupView struct {
	Q       string
	Results []contactView
	Error   string
	Done    bool // a search ran
}

func newContactView(ct *dataverse.Contact) *contactView {
	return &contactView{ID: ct.ID, Name: ct.Name, Email: ct.Email, FirstName: ct.FirstName, LastName: ct.LastName,
		Username: ct.Username, Active: ct.Active}
}

// loadUser finds the {id} user, answering the error itself.
func (c *Console) loadUser(w http.ResponseWriter, r *http.Request) (*authz.User, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > authz.MaxEmailLen || !authz.Printable(id) {
		c.o.RenderError(w, r, errNotFound("user"))
		return nil, false
	}
	u, err := c.o.Users.LookupUser(r.Context(), id)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		c.o.RenderError(w, r, errNotFound("user"))
		return nil, false
	case err != nil:
		c.o.RenderError(w, r, err)
		return nil, false
	}
	return u, true
}

func (c *Console) handleUser(w http.ResponseWriter, r *http.Request, caller Caller) {
	u, ok := c.loadUser(w, r)
	if !ok {
		return
	}
	c.renderUser(w, r, http.StatusOK, caller, u, notice(r), "")
}

// renderUser shows u's page with a notice or an error.
func (c *Console) renderUser(w http.ResponseWriter, r *http.Request, status int, caller Caller, u *authz.User, notice, errMsg string) {
	ctx := r.Context()
	d := userPage{User: u, Locked: u.LockoutUntil.After(c.now()), BreakGlass: authz.IsBreakGlass(u, c.breakGlassRole()),
		Roles:       strings.Join(u.Roles, ", "),
		Modes:       options(string(modeOf(u)), "none", "Not bound", "lookup", "A chosen contact (lookup)", "username", "The contact whose username matches", "custom", "The contact the custom filter finds"),
		CanWrite:    c.o.Accounts != nil && caller.can(permissions.UsersWrite),
		CanBind:     c.o.Bindings != nil && caller.can(permissions.BindingsWrite),
		CanLookup:   c.o.ContactAdmin != nil && caller.can(permissions.ContactsRead),
		CanSessions: c.o.Sessions != nil && caller.can(permissions.UsersWrite),
		CanForce:    c.o.Passwords != nil && caller.can(permissions.UsersCredentials),
		CanSetLink:  c.o.SetPasswordLinks != nil && caller.can(permissions.UsersCredentials),
		CanApprove:  c.o.Approvals != nil && caller.can(permissions.UsersApprove) && u.Status == authz.StatusPending,
	}
	if c.o.Contacts != nil && modeOf(u) != authz.BindingNone {
		d.Contact, d.ContactErr = c.boundContact(ctx, u)
	}
	if d.CanLookup {
		d.Lookup = c.lookup(r)
	}
	if c.o.Audit != nil && caller.can(permissions.AuditRead) {
		evs, err := c.o.Audit.ListAudit(ctx, audit.Filter{UserID: u.ID, Limit: 20})
		if err != nil {
			c.log.WarnContext(ctx, "console: audit trail not read", "user_id", u.ID, "err", err)
			d.AuditErr = "The audit trail cannot be read just now."
		}
		d.Audit = c.trailRows(ctx, evs)
	}
	c.render(w, r, status, caller, "user", "users", u.Username, d, notice, errMsg)
}

// trailRow is an audit event as a table shows it: the actor by username
// when it is a user, with a link to their page.
type trailRow struct {
	audit.Event
	ActorName string
	ActorID   string // the actor's user id when the actor is a user
}

// trailRows names the actors of evs, reading each distinct user once.
func (c *Console) trailRows(ctx context.Context, evs []audit.Event) []trailRow {
	names := map[string]string{}
	rows := make([]trailRow, len(evs))
	for i, e := range evs {
		rows[i] = trailRow{Event: e, ActorName: e.Actor}
		if !isUserID(e.Actor) {
			continue
		}
		name, seen := names[e.Actor]
		if !seen {
			if u, err := c.o.Users.LookupUser(ctx, e.Actor); err == nil && u.ID == e.Actor {
				name = u.Username
			}
			names[e.Actor] = name
		}
		if name != "" {
			rows[i].ActorName, rows[i].ActorID = name, e.Actor
		}
	}
	return rows
}

// isUserID reports whether s looks like a user id (authz.NewID: 32 hex
// digits), as opposed to "cli", "apikey:…" or "dataverse".
func isUserID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

func modeOf(u *authz.User) authz.BindingMode {
	if u.Binding.Mode == "" {
		return authz.BindingNone
	}
	return u.Binding.Mode
}

func (c *Console) breakGlassRole() string {
	if c.o.BreakGlassRole != "" {
		return c.o.BreakGlassRole
	}
	return permissions.AdminRole
}

// boundContact resolves u's binding and the other users bound to the same
// contact; a failure is a message for the panel, not an error page.
func (c *Console) boundContact(ctx context.Context, u *authz.User) (*contactView, string) {
	ct, err := c.o.Contacts.ResolveBinding(ctx, u, nil)
	switch {
	case errors.Is(err, dataverse.ErrUnavailable):
		return nil, "Dataverse cannot be reached just now, so the bound contact cannot be shown."
	case err != nil:
		c.log.InfoContext(ctx, "console: binding does not resolve", "user_id", u.ID, "err", err)
		return nil, "The binding does not resolve to one active contact: " + bindingProblem(err)
	}
	v := newContactView(ct)
	if _, others, err := c.o.Contacts.BoundTo(ctx, ct.ID, u.ID); err == nil {
		for _, o := range others {
			v.Others = append(v.Others, o.Username)
		}
	}
	return v, ""
}

// bindingProblem says in a few words why a binding does not resolve.
func bindingProblem(err error) string {
	var berr *binding.Error
	if errors.As(err, &berr) {
		return berr.Detail
	}
	switch {
	case errors.Is(err, dataverse.ErrContactNotFound):
		return "Dataverse has no such contact."
	case errors.Is(err, binding.ErrNoDirectory):
		return "no Dataverse is configured."
	}
	return "it could not be checked."
}

// maxLookupLen bounds a lookup term; Dataverse's emailaddress1 holds 100.
const maxLookupLen = 160

// lookup runs the binding panel's search named by the query string
// (lookup_field, lookup_q), if any.
func (c *Console) lookup(r *http.Request) lookupView {
	l := lookupView{Q: strings.TrimSpace(r.URL.Query().Get("lookup_q"))}
	if l.Q == "" {
		return l
	}
	l.Done = true
	if len(l.Q) > maxLookupLen || !authz.Printable(l.Q) {
		l.Error = "The search is too long or holds characters that cannot be searched."
		return l
	}
	return c.lookupAdmin(r, l)
}

// lookupAdmin is the lookup through the contacts section's search: names
// and email addresses that start with the term, within the configured
// contact filter, with the users bound to each, in one Dataverse request
// and one store query.
func (c *Console) lookupAdmin(r *http.Request, l lookupView) lookupView {
	page, err := c.o.ContactAdmin.List(r.Context(), contacts.ListRequest{Search: l.Q, Limit: 20})
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		l.Error = verr.Message
		return l
	case errors.Is(err, dataverse.ErrUnavailable):
		l.Error = "Dataverse cannot be reached just now. Please try again shortly."
		return l
	case err != nil:
		c.log.WarnContext(r.Context(), "console: contact lookup failed", "err", err)
		l.Error = "The contacts could not be searched."
		return l
	}
	for _, ct := range page.Contacts {
		cv := contactView{ID: ct.ID, Name: contactTitle(ct), Email: ct.Email, FirstName: ct.FirstName, LastName: ct.LastName, Active: ct.Active}
		for _, b := range ct.BoundUsers {
			cv.Others = append(cv.Others, b.Username)
		}
		l.Results = append(l.Results, cv)
	}
	return l
}

// actionError renders u's page with the user-safe message of an action's
// error, or the error page for an unexpected one.
func (c *Console) actionError(w http.ResponseWriter, r *http.Request, caller Caller, u *authz.User, err error) {
	status, msg := http.StatusConflict, ""
	var verr *authz.ValidationError
	var refused *accounts.BindingRefusedError
	var throttled *onboarding.ThrottledError
	switch {
	case errors.Is(err, authz.ErrLastBreakGlassAdmin):
		msg = "Refused: " + u.Username + " is the last active administrator who is not bound to a contact " +
			"(the break-glass account that can sign in when Dataverse cannot be reached). " +
			"Make another administrator unbound and active first."
	case errors.As(err, &verr):
		status, msg = http.StatusBadRequest, verr.Message
	case errors.As(err, &refused) && refused.Reason == accounts.RefusedContactBound:
		msg = "The contact is already bound to " + strings.Join(refused.Others, ", ") +
			". Tick \u201cbind it to this user as well\u201d to share it."
	case errors.As(err, &refused) && refused.Reason == accounts.RefusedContactNotFound:
		status, msg = http.StatusUnprocessableEntity, "Dataverse has no contact with this id."
	case errors.As(err, &refused):
		status, msg = http.StatusNotImplemented, "No Dataverse is configured, so a lookup binding cannot be checked."
	case errors.Is(err, dataverse.ErrUnavailable):
		status, msg = http.StatusServiceUnavailable, "Dataverse cannot be reached just now, so nothing was changed. Please try again shortly."
	case errors.Is(err, authz.ErrStale):
		msg = "The user changed while this was saved; nothing was changed. Please try again."
	case errors.Is(err, onboarding.ErrAccountDisabled):
		msg = "The account is disabled: enable it before sending a set-password link."
	case errors.Is(err, onboarding.ErrAccountPending):
		msg = "The registration waits for approval: approve it instead (the approval mail lets them in)."
	case errors.As(err, &throttled):
		status, msg = http.StatusTooManyRequests, "This account was sent too many mails in the last hour; try again in "+
			throttled.RetryAfter.Round(time.Minute).String()+"."
	case errors.Is(err, authz.ErrNotFound):
		c.o.RenderError(w, r, errNotFound("user"))
		return
	default:
		var cerr *Error
		if errors.As(err, &cerr) {
			c.o.RenderError(w, r, err)
			return
		}
		if msg = userMessage(err); msg == "" {
			c.o.RenderError(w, r, err)
			return
		}
	}
	c.renderUser(w, r, status, caller, u, "", msg)
}

// UserMessage is implemented by errors whose text is safe to show.
type UserMessage interface{ UserMessage() string }

func userMessage(err error) string {
	var um UserMessage
	if errors.As(err, &um) {
		return um.UserMessage()
	}
	return ""
}

// userChange is the shape of every action of a user's page: read the form
// and the {id} user, ask first when confirm says so, do the change (the
// service audits it with the caller as actor), then go back with a notice.
type userChange struct {
	// confirm returns the question to ask before the change, or nil to
	// ask nothing; nil confirm asks nothing either.
	confirm func(u *authz.User, form url.Values) *confirmation
	// do makes the change and returns the notice key of the page it goes
	// back to; an error is shown on the user's page (actionError).
	do func(ctx context.Context, u *authz.User, form url.Values, actor string) (notice string, err error)
	// back is the console path it goes back to; empty means the user's page.
	back string
}

// userHandler serves ch.
func (c *Console) userHandler(ch userChange) Handler {
	return func(w http.ResponseWriter, r *http.Request, caller Caller) {
		if !c.parseForm(w, r) {
			return
		}
		u, ok := c.loadUser(w, r)
		if !ok {
			return
		}
		if ch.confirm != nil {
			if q := ch.confirm(u, r.PostForm); q != nil && !c.confirmed(w, r, caller, "users", *q) {
				return
			}
		}
		notice, err := ch.do(r.Context(), u, r.PostForm, caller.Actor())
		if err != nil {
			c.actionError(w, r, caller, u, err)
			return
		}
		c.redirect(w, r, cmp.Or(ch.back, "/users/"+u.ID), notice)
	}
}

// ask is the confirmation of action on u's page, posted to path.
func ask(u *authz.User, path, question, detail, button string) *confirmation {
	return &confirmation{Question: question, Detail: detail, Action: "/admin/users/" + u.ID + "/" + path, Button: button,
		Back: "/admin/users/" + u.ID}
}

// errBadStatus refuses a status form that is neither active nor disabled.
var errBadStatus = &authz.ValidationError{Field: "status", Message: "The status must be active or disabled."}

// The actions of a user's page.

func (c *Console) setStatus() userChange {
	return userChange{
		confirm: func(u *authz.User, f url.Values) *confirmation {
			if authz.Status(f.Get("status")) != authz.StatusDisabled {
				return nil
			}
			return ask(u, "status", "Disable "+u.Username+"?", "They cannot sign in until enabled again, and their sessions end.", "Disable")
		},
		do: func(ctx context.Context, u *authz.User, f url.Values, actor string) (string, error) {
			st := authz.Status(f.Get("status"))
			if st != authz.StatusActive && st != authz.StatusDisabled {
				return "", errBadStatus
			}
			return "status-" + string(st), c.o.Accounts.SetStatus(ctx, u.Username, st, actor)
		},
	}
}

func (c *Console) setRoles() userChange {
	return userChange{do: func(ctx context.Context, u *authz.User, f url.Values, actor string) (string, error) {
		roles := strings.FieldsFunc(f.Get("roles"), func(r rune) bool { return r == ',' || r == ' ' })
		return "roles", c.o.Accounts.SetRoles(ctx, u.Username, roles, actor)
	}}
}

func (c *Console) unlock() userChange {
	return userChange{do: func(ctx context.Context, u *authz.User, _ url.Values, actor string) (string, error) {
		was, err := c.o.Accounts.Unlock(ctx, u.Username, actor)
		if !was {
			return "not-locked", err
		}
		return "unlocked", err
	}}
}

func (c *Console) deleteUser() userChange {
	return userChange{back: "/users",
		confirm: func(u *authz.User, _ url.Values) *confirmation {
			return ask(u, "delete", "Delete "+u.Username+"?",
				"The account and its sessions end for good; the audit trail keeps its events. This cannot be undone.", "Delete")
		},
		do: func(ctx context.Context, u *authz.User, _ url.Values, actor string) (string, error) {
			return "deleted", c.o.Accounts.DeleteUser(ctx, u.Username, actor)
		}}
}

func (c *Console) revokeSessions() userChange {
	return userChange{
		confirm: func(u *authz.User, _ url.Values) *confirmation {
			return ask(u, "revoke-sessions", "End every session of "+u.Username+"?",
				"They are signed out on every device and must sign in again.", "End sessions")
		},
		do: func(ctx context.Context, u *authz.User, _ url.Values, actor string) (string, error) {
			_, err := c.o.Sessions.RevokeSessions(ctx, u.ID, actor)
			return "sessions", err
		}}
}

func (c *Console) setBinding() userChange {
	return userChange{do: func(ctx context.Context, u *authz.User, f url.Values, actor string) (string, error) {
		b := authz.Binding{Mode: authz.BindingMode(f.Get("mode"))}
		if b.Mode == authz.BindingLookup {
			id := strings.ToLower(strings.TrimSpace(f.Get("contact_id")))
			b.Ref = &dataverse.EntityReference{ID: id, LogicalName: dataverse.ContactLogicalName, Name: f.Get("contact_name")}
		}
		res, err := c.o.Bindings.SetBindings(ctx, []accounts.BindingChange{{User: u.ID, Binding: b,
			AllowShared: f.Get("allow_shared") == "yes"}}, actor)
		if err == nil {
			err = res[0].Err
		}
		return "binding", err
	}}
}

func (c *Console) forcePassword() userChange {
	return userChange{do: func(ctx context.Context, u *authz.User, _ url.Values, actor string) (string, error) {
		_, err := c.o.Passwords.ForcePasswordChange(ctx, u.ID, actor)
		return "force-password", err
	}}
}

func (c *Console) setPasswordLink() userChange {
	return userChange{do: func(ctx context.Context, u *authz.User, _ url.Values, actor string) (string, error) {
		_, err := c.o.SetPasswordLinks.SendSetPasswordLink(ctx, u.ID, actor)
		return "set-password", err
	}}
}

func (c *Console) approve() userChange {
	return userChange{do: func(ctx context.Context, u *authz.User, _ url.Values, actor string) (string, error) {
		_, err := c.o.Approvals.Approve(ctx, u.ID, actor)
		return "approved", err
	}}
}

func (c *Console) reject() userChange {
	return userChange{
		confirm: func(u *authz.User, _ url.Values) *confirmation {
			return ask(u, "reject", "Reject the registration of "+u.Username+"?", "They are told by email and cannot sign in.", "Reject")
		},
		do: func(ctx context.Context, u *authz.User, f url.Values, actor string) (string, error) {
			_, err := c.o.Approvals.Reject(ctx, u.ID, strings.TrimSpace(f.Get("reason")), actor)
			return "rejected", err
		}}
}
