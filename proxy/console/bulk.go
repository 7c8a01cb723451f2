package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/bulk"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/permissions"
)

// Jobs runs bulk actions as durable jobs. *jobs.Service satisfies it.
type Jobs interface {
	Submit(ctx context.Context, action, label string, targets []string, params json.RawMessage, actor string) (*jobs.Job, error)
	Get(ctx context.Context, id string) (*jobs.Job, error)
	List(ctx context.Context, f jobs.Filter) ([]jobs.Job, error)
	Items(ctx context.Context, id string, f jobs.ItemFilter) ([]jobs.Item, error)
	Cancel(ctx context.Context, id, actor string) (*jobs.Job, error)
	// Actions names the actions the service runs.
	Actions() []string
}

// bulkAction is one bulk action the users table offers: the route
// (POST /admin/users/bulk/<Slug>), the job action it submits and the
// permission it needs, which is the one its single action needs.
type bulkAction struct {
	Slug, Action, Perm string
	Label              string // the button
	Verb               string // "Disable", for the confirmation and the job's label
	Danger             bool
}

var bulkActions = []bulkAction{
	{"link", bulk.Link, permissions.BindingsWrite, "Link to contacts", "Link", false},
	{"unlink", bulk.Unlink, permissions.BindingsWrite, "Unlink", "Unlink", true},
	{"approve", bulk.Approve, permissions.UsersApprove, "Approve", "Approve", false},
	{"reject", bulk.Reject, permissions.UsersApprove, "Reject", "Reject", true},
	{"enable", bulk.Enable, permissions.UsersWrite, "Enable", "Enable", false},
	{"disable", bulk.Disable, permissions.UsersWrite, "Disable", "Disable", true},
	{"credentials", bulk.Credentials, permissions.UsersCredentials, "Send set-password links", "Send a set-password link to", false},
	{"force-password", bulk.ForcePassword, permissions.UsersCredentials, "Force a password change", "Force a password change for", false},
	{"delete", bulk.Delete, permissions.UsersWrite, "Delete", "Delete", true},
}

// actionPerm is the permission a job's action needs (to cancel it).
func actionPerm(action string) string {
	for _, b := range bulkActions {
		if b.Action == action {
			return b.Perm
		}
	}
	return permissions.UsersWrite
}

// actionVerb names a job's action for people.
func actionVerb(action string) string {
	for _, b := range bulkActions {
		if b.Action == action {
			return b.Label
		}
	}
	return action
}

// offered are the bulk actions the jobs service runs.
func (c *Console) offered() []bulkAction {
	if c.o.Jobs == nil {
		return nil
	}
	runs := c.o.Jobs.Actions()
	var out []bulkAction
	for _, b := range bulkActions {
		if slices.Contains(runs, b.Action) {
			out = append(out, b)
		}
	}
	return out
}

func (c *Console) bulkRoutes() []Route {
	if c.o.Jobs == nil {
		return nil
	}
	var rs []Route
	for _, b := range c.offered() {
		rs = append(rs, Route{Method: "POST", Path: "/admin/users/bulk/" + b.Slug, Permission: b.Perm, Handler: c.handleBulk(b)})
	}
	return append(rs,
		Route{Method: "GET", Path: "/admin/jobs", Permission: permissions.UsersRead, Handler: c.handleJobs},
		Route{Method: "GET", Path: "/admin/jobs/{id}", Permission: permissions.UsersRead, Handler: c.handleJob},
		// The job's own action decides who may cancel it (checked in the handler).
		Route{Method: "POST", Path: "/admin/jobs/{id}/cancel", Permission: permissions.UsersRead, Handler: c.handleCancelJob},
	)
}

// bulkButton is a bulk action the caller may start, for the users table.
type bulkButton struct {
	Slug, Label string
	Danger      bool
	Link        bool // asks for the binding mode
}

// bulkButtons are the bulk actions the caller's permissions allow.
func (c *Console) bulkButtons(caller Caller) []bulkButton {
	var out []bulkButton
	for _, b := range c.offered() {
		if caller.can(b.Perm) {
			out = append(out, bulkButton{Slug: b.Slug, Label: b.Label, Danger: b.Danger, Link: b.Action == bulk.Link})
		}
	}
	return out
}

// bulkConfirm is the confirmation page of a bulk action.
type bulkConfirm struct {
	Verb      string
	Count     int
	Names     []string // the first few usernames
	More      int      // how many beyond Names
	Action    string   // form path under the prefix
	Fields    []confirmField
	Back      string
	Danger    bool
	Mode      string
	Reason    bool // the form asks for a reason (reject)
	TooMany   bool
	MaxItems  int
	MaxReason int
}

// maxNamesShown bounds the usernames a bulk confirmation lists.
const maxNamesShown = 10

func (c *Console) handleBulk(b bulkAction) Handler {
	return func(w http.ResponseWriter, r *http.Request, caller Caller) {
		if !c.parseForm(w, r) {
			return
		}
		back := "/admin/users"
		filter := r.PostForm.Get("filter")
		q := usersQueryFrom(filter)
		if f := q.values(nil); f != "" {
			back += "?" + f
		}
		targets, names, total, err := c.bulkTargets(r, q)
		if err != nil {
			c.o.RenderError(w, r, err)
			return
		}
		if total == 0 {
			c.redirect(w, r, strings.TrimPrefix(back, "/admin"), "nothing-selected")
			return
		}
		params := map[string]string{}
		if b.Action == bulk.Link {
			params["mode"] = r.PostForm.Get("mode")
		}
		if b.Action == bulk.Reject && strings.TrimSpace(r.PostForm.Get("reason")) != "" {
			params["reason"] = strings.TrimSpace(r.PostForm.Get("reason"))
		}
		if r.PostForm.Get("confirmed") != "yes" || total > jobs.MaxItems {
			d := bulkConfirm{Verb: b.Verb, Count: total, Action: "/admin/users/bulk/" + b.Slug, Back: back, Danger: b.Danger,
				Mode: params["mode"], Reason: b.Action == bulk.Reject, TooMany: total > jobs.MaxItems, MaxItems: jobs.MaxItems,
				MaxReason: onboarding.MaxReasonLen}
			d.Names = names[:min(len(names), maxNamesShown)]
			d.More = total - len(d.Names)
			for _, k := range []string{"filter", "all", "mode"} {
				if v := r.PostForm.Get(k); v != "" {
					d.Fields = append(d.Fields, confirmField{Name: k, Value: v})
				}
			}
			for _, id := range r.PostForm["user"] {
				d.Fields = append(d.Fields, confirmField{Name: "user", Value: id})
			}
			status := http.StatusOK
			if d.TooMany {
				status = http.StatusRequestEntityTooLarge
			}
			c.render(w, r, status, caller, "bulk_confirm", "users", "Please confirm", d, "", "")
			return
		}
		raw, _ := json.Marshal(params)
		label := b.Verb + " " + strconv.Itoa(total) + " users"
		if r.PostForm.Get("all") == "yes" {
			label += " matching " + describeQuery(q)
		}
		j, err := c.o.Jobs.Submit(r.Context(), b.Action, label, targets, raw, caller.Actor())
		var verr *authz.ValidationError
		switch {
		case errors.As(err, &verr):
			c.render(w, r, http.StatusBadRequest, caller, "bulk_confirm", "users", "Please confirm",
				bulkConfirm{Verb: b.Verb, Count: total, Names: names[:min(len(names), maxNamesShown)], Action: "/admin/users/bulk/" + b.Slug,
					Back: back, Danger: b.Danger, Mode: params["mode"], Reason: b.Action == bulk.Reject, MaxReason: onboarding.MaxReasonLen,
					Fields: confirmFieldsOf(r.PostForm, "confirmed", "csrf_token", "reason")}, "", verr.Message)
			return
		case err != nil:
			c.o.RenderError(w, r, err)
			return
		}
		c.log.InfoContext(r.Context(), "console: bulk job submitted", "job_id", j.ID, "action", b.Action, "items", j.Total, "actor", caller.Actor())
		c.redirect(w, r, "/jobs/"+j.ID, "")
	}
}

// confirmFieldsOf copies a form's fields but the named ones.
func confirmFieldsOf(form url.Values, skip ...string) []confirmField {
	var out []confirmField
	for k, vs := range form {
		if slices.Contains(skip, k) {
			continue
		}
		for _, v := range vs {
			out = append(out, confirmField{Name: k, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b confirmField) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// usersQueryFrom reads the users table's filter from its query string, as
// the bulk form carries it.
func usersQueryFrom(raw string) usersQuery {
	v, _ := url.ParseQuery(raw)
	r := &http.Request{URL: &url.URL{RawQuery: v.Encode()}}
	q := parseUsersQuery(r)
	q.Sort, q.Dir, q.Page = "", "", 1
	return q
}

// describeQuery says in words which users a filter selects.
func describeQuery(q usersQuery) string {
	var parts []string
	if q.Q != "" {
		parts = append(parts, strconv.Quote(q.Q))
	}
	if q.Status != "" {
		parts = append(parts, "status "+q.Status)
	}
	if q.Mode != "" {
		parts = append(parts, "binding "+q.Mode)
	}
	if len(parts) == 0 {
		return "no filter"
	}
	return strings.Join(parts, ", ")
}

// bulkTargets resolves the users a bulk form names: the ticked ones, or
// with all=yes every user the filter selects (at most jobs.MaxItems of
// them are read; total says how many there are). names are the first
// usernames, for the confirmation.
func (c *Console) bulkTargets(r *http.Request, q usersQuery) (ids, names []string, total int, err error) {
	ctx := r.Context()
	if r.PostForm.Get("all") == "yes" {
		f, msg := q.filter()
		if msg != "" {
			return nil, nil, 0, errBadRequest(msg)
		}
		f.Offset = 0
		if total, err = c.o.Users.CountUsers(ctx, f); err != nil {
			return nil, nil, 0, err
		}
		if total > jobs.MaxItems { // too many for one job: only the names, for the page that says so
			f.Limit = maxNamesShown
			us, err := c.o.Users.ListUsers(ctx, f)
			for _, u := range us {
				names = append(names, u.Username)
			}
			return nil, names, total, err
		}
		f.Limit = authz.MaxListLimit
		for len(ids) < total {
			us, err := c.o.Users.ListUsers(ctx, f)
			if err != nil {
				return nil, nil, 0, err
			}
			if len(us) == 0 {
				break
			}
			for _, u := range us {
				ids = append(ids, u.ID)
				names = append(names, u.Username)
			}
			f.Offset += len(us)
			if f.Offset > authz.MaxListOffset {
				break
			}
		}
		return ids, names, len(ids), nil
	}
	seen := map[string]bool{}
	for _, id := range r.PostForm["user"] {
		if seen[id] {
			continue
		}
		seen[id] = true
		if len(seen) > jobs.MaxItems {
			return nil, nil, 0, errBadRequest("Select at most " + strconv.Itoa(jobs.MaxItems) + " users at once.")
		}
		if !isUserID(id) {
			return nil, nil, 0, errBadRequest("The selection names a user that does not exist.")
		}
		if len(names) < maxNamesShown {
			u, err := c.o.Users.LookupUser(ctx, id)
			switch {
			case errors.Is(err, authz.ErrNotFound):
				continue // deleted since the page was shown
			case err != nil:
				return nil, nil, 0, err
			}
			names = append(names, u.Username)
		}
		ids = append(ids, id)
	}
	return ids, names, len(ids), nil
}

// jobsPage is the data of the jobs list.
type jobsPage struct {
	Jobs  []jobRow
	Older string // the Before cursor of the next page
}

type jobRow struct {
	jobs.Job
	Verb      string
	ActorName string
	Percent   int
	Left      int // items not run yet
}

func (c *Console) jobRow(ctx context.Context, j jobs.Job, names map[string]string) jobRow {
	row := jobRow{Job: j, Verb: actionVerb(j.Action), ActorName: j.Actor, Left: j.Pending()}
	if j.Total > 0 {
		row.Percent = (j.Total - j.Pending()) * 100 / j.Total
	}
	if isUserID(j.Actor) {
		name, ok := names[j.Actor]
		if !ok {
			if u, err := c.o.Users.LookupUser(ctx, j.Actor); err == nil {
				name = u.Username
			}
			names[j.Actor] = name
		}
		if name != "" {
			row.ActorName = name
		}
	}
	return row
}

func (c *Console) handleJobs(w http.ResponseWriter, r *http.Request, caller Caller) {
	before := r.URL.Query().Get("before")
	if before != "" && !isUserID(before) {
		c.o.RenderError(w, r, errBadRequest("The page cursor is not valid."))
		return
	}
	js, err := c.o.Jobs.List(r.Context(), jobs.Filter{Before: before, Limit: pageSize})
	if err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	d := jobsPage{}
	names := map[string]string{}
	for _, j := range js {
		d.Jobs = append(d.Jobs, c.jobRow(r.Context(), j, names))
	}
	if len(js) == pageSize {
		d.Older = js[len(js)-1].ID
	}
	c.render(w, r, http.StatusOK, caller, "jobs", "jobs", "Bulk actions", d, notice(r), "")
}

// jobPage is the data of one job's page.
type jobPage struct {
	Job       jobRow
	Failed    []itemRow
	MoreAfter int // the After cursor of more failed items; 0 when none
	CanCancel bool
	Running   bool
}

type itemRow struct {
	jobs.Item
	Username string
}

func (c *Console) loadJob(w http.ResponseWriter, r *http.Request) (*jobs.Job, bool) {
	id := r.PathValue("id")
	if !isUserID(id) {
		c.o.RenderError(w, r, errNotFound("job"))
		return nil, false
	}
	j, err := c.o.Jobs.Get(r.Context(), id)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		c.o.RenderError(w, r, errNotFound("job"))
		return nil, false
	case err != nil:
		c.o.RenderError(w, r, err)
		return nil, false
	}
	return j, true
}

func (c *Console) handleJob(w http.ResponseWriter, r *http.Request, caller Caller) {
	j, ok := c.loadJob(w, r)
	if !ok {
		return
	}
	after, _ := strconv.Atoi(r.URL.Query().Get("after"))
	items, err := c.o.Jobs.Items(r.Context(), j.ID, jobs.ItemFilter{Status: jobs.ItemFailed, After: max(after, 0), Limit: pageSize})
	if err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	d := jobPage{Job: c.jobRow(r.Context(), *j, map[string]string{}), Running: !j.Status.Finished(),
		CanCancel: !j.Status.Finished() && !j.CancelRequested && caller.can(actionPerm(j.Action))}
	for _, it := range items {
		row := itemRow{Item: it, Username: it.Target}
		if u, err := c.o.Users.LookupUser(r.Context(), it.Target); err == nil {
			row.Username = u.Username
		}
		d.Failed = append(d.Failed, row)
	}
	if len(items) == pageSize {
		d.MoreAfter = items[len(items)-1].Seq
	}
	c.render(w, r, http.StatusOK, caller, "job", "jobs", j.Label, d, notice(r), "")
}

func (c *Console) handleCancelJob(w http.ResponseWriter, r *http.Request, caller Caller) {
	if !c.parseForm(w, r) {
		return
	}
	j, ok := c.loadJob(w, r)
	if !ok {
		return
	}
	if perm := actionPerm(j.Action); !caller.can(perm) {
		c.log.WarnContext(r.Context(), "console: job cancel refused: permission missing", "job_id", j.ID, "user_id", caller.UserID, "permission", perm)
		c.o.RenderError(w, r, &Error{Status: http.StatusForbidden, Code: "forbidden", Title: "Access denied",
			Message: "Cancelling this job needs the permission " + perm + ", which your roles do not grant."})
		return
	}
	if !c.confirmed(w, r, caller, "jobs", confirmation{Question: "Cancel \u201c" + j.Label + "\u201d?",
		Detail: "The users done so far stay done; the others are left as they are.",
		Action: "/admin/jobs/" + j.ID + "/cancel", Button: "Cancel the job", Back: "/admin/jobs/" + j.ID}) {
		return
	}
	_, err := c.o.Jobs.Cancel(r.Context(), j.ID, caller.Actor())
	switch {
	case errors.Is(err, jobs.ErrFinished):
		c.redirect(w, r, "/jobs/"+j.ID, "job-finished")
	case err != nil:
		c.o.RenderError(w, r, err)
	default:
		c.redirect(w, r, "/jobs/"+j.ID, "job-cancelled")
	}
}
