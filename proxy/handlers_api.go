package proxy

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy/console"
)

// AdminRole is the local role that holds every permission of the admin
// console and the REST API (permissions.AdminRole); the policy file's
// permissions section grants other roles narrower sets.
const AdminRole = permissions.AdminRole

// APIKeys authenticates REST API keys. *apikeys.Service satisfies it.
type APIKeys interface {
	AuthenticateAPIKey(ctx context.Context, presented string) (*apikeys.Key, error)
}

// BindingEditor changes users' bindings for the REST API.
// *accounts.Service satisfies it.
type BindingEditor interface {
	SetBinding(ctx context.Context, login string, b authz.Binding, actor string) error
	SetBindings(ctx context.Context, changes []accounts.BindingChange, actor string) ([]accounts.BindingResult, error)
}

// ContactSearch finds Dataverse contacts to bind users to, for the REST
// API. *binding.Resolver satisfies it.
type ContactSearch interface {
	SearchContacts(ctx context.Context, field binding.ContactSearchField, value string, limit int) ([]*dataverse.Contact, error)
}

// UserDirectory reads accounts and their audit trail: the security-stamp
// check of sessions, the profile page and the REST API.
// *accounts.Service satisfies it.
type UserDirectory interface {
	ListUsers(ctx context.Context, f authz.UserFilter) ([]*authz.User, error)
	UserByID(ctx context.Context, id string) (*authz.User, error)
	// LookupUser finds a user by id, else by username or email, or
	// returns an error wrapping authz.ErrNotFound.
	LookupUser(ctx context.Context, who string) (*authz.User, error)
}

// AuditRecorder records security events the gateway itself decides (an
// API call refused for a missing permission). *audit.Log satisfies it.
type AuditRecorder interface {
	Record(ctx context.Context, e audit.Event)
}

// AuditReader reads the audit trail for GET /api/audit. *audit.Log
// satisfies it.
type AuditReader interface {
	// ListAudit returns audit events newest first; a bad filter gives a
	// *authz.ValidationError.
	ListAudit(ctx context.Context, f audit.Filter) ([]audit.Event, error)
}

//go:embed openapi.json
var openAPIDocument []byte

// apiHandler serves one guarded route for caller c, who holds its permission.
type apiHandler func(w http.ResponseWriter, r *http.Request, c apiCaller)

// guardedRoute is one route of the gateway that needs a permission: every
// route of the REST API, and the admin console's when it comes. The mux is
// built from a table of them (apiRoutes), so that no such route exists
// without a permission, and the authorization tests walk the same table.
type guardedRoute struct {
	// Method is the HTTP method, e.g. "GET".
	Method string
	// Path is the mux pattern's path under the gateway's prefix, e.g.
	// "/api/users/{id}".
	Path string
	// Permission is the permission the caller needs, one of
	// permissions.All. A name that is not one refuses every caller, the
	// admin role and every API key included (TestGuardedRoutes fails on
	// it).
	Permission string
	// handler serves a REST API route; page an admin console route (one of
	// the two is set).
	handler apiHandler
	page    console.Handler
}

// guardedRoutes returns every permission-guarded route the server serves,
// in registration order: the REST API's (apiRoutes) and the admin
// console's (consoleRoutes). The authorization tests walk this list.
func (srv *Server) guardedRoutes() []guardedRoute {
	return append(srv.apiRoutes(), srv.consoleRoutes()...)
}

// apiRoutes returns the REST API's routes that the configured capabilities
// serve, in registration order.
func (srv *Server) apiRoutes() []guardedRoute {
	var rs []guardedRoute
	add := func(on bool, method, path, perm string, h apiHandler) {
		if on {
			rs = append(rs, guardedRoute{Method: method, Path: "/api" + path, Permission: perm, handler: h})
		}
	}
	add(true, "GET", "/users", permissions.UsersRead, srv.apiListUsers)
	add(true, "GET", "/users/{id}", permissions.UsersRead, srv.apiGetUser)
	add(srv.audit != nil, "GET", "/audit", permissions.AuditRead, srv.apiListAudit)
	add(srv.bindings != nil, "PUT", "/users/{id}/binding", permissions.BindingsWrite, srv.apiSetBinding)
	add(srv.bindings != nil, "POST", "/users/bindings", permissions.BindingsWrite, srv.apiSetBindings)
	add(srv.opts.Passwords != nil, "POST", "/users/{id}/force-password-change", permissions.UsersCredentials, srv.apiForcePasswordChange)
	add(srv.contactSearch != nil, "GET", "/contacts", permissions.ContactsRead, srv.apiSearchContacts)
	rs = append(rs, srv.onboardingRoutes()...)
	rs = append(rs, srv.actionRoutes()...)
	if srv.invitations != nil {
		rs = append(rs, srv.apiInvitationRoutes()...)
	}
	return rs
}

// apiMux serves the REST API under prefix/api: its OpenAPI document to
// anyone, each route of apiRoutes to a caller holding the route's
// permission (see permit), and a JSON 404 for any other address.
func (srv *Server) apiMux(mux *http.ServeMux) {
	p := srv.prefix + "/api"
	mux.HandleFunc("GET "+p+"/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(openAPIDocument)
	})
	for _, rt := range srv.apiRoutes() {
		mux.HandleFunc(rt.Method+" "+srv.prefix+rt.Path, srv.permit(rt.Permission, rt.handler))
	}
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		srv.renderAPIError(w, r, &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
			Message: "There is no API endpoint at this address."})
	})
}

// apiCaller is who calls the REST API: a session or an API key.
type apiCaller struct {
	sess *Session     // nil for an API key
	key  *apikeys.Key // nil for a session
}

// actor names the caller in the audit log.
func (c apiCaller) actor() string {
	if c.key != nil {
		return "apikey:" + c.key.ID
	}
	return c.sess.UserID
}

// permit runs h for a caller holding the permission perm: a signed-in
// user whose local roles grant it (the policy file's permissions section;
// the admin role has every permission), or an API key (Authorization:
// Bearer) holding it as a scope. Anything else is a JSON 401 (no or a bad
// credential) or 403 (a credential without the permission). A request
// with an Authorization header is judged by the key alone, never by a
// cookie; a session's state-changing request must pass the cross-origin
// check first.
func (srv *Server) permit(perm string, h apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if authzHeader := r.Header.Get("Authorization"); authzHeader != "" {
			presented, ok := strings.CutPrefix(authzHeader, "Bearer ")
			if !ok || srv.apiKeys == nil {
				srv.renderAPIError(w, r, errUnauthenticated())
				return
			}
			key, err := srv.apiKeys.AuthenticateAPIKey(r.Context(), presented)
			switch {
			case errors.Is(err, apikeys.ErrInvalidAPIKey):
				srv.renderAPIError(w, r, &Error{Status: http.StatusUnauthorized, Code: "invalid_api_key", Title: "Sign-in required",
					Message: "The API key is not valid."})
			case err != nil:
				srv.renderAPIError(w, r, err)
			case !key.HasScope(perm):
				srv.log.WarnContext(r.Context(), "API request refused: permission missing", "request_id", requestID(r.Context()),
					"api_key_id", key.ID, "permission", perm, "path", r.URL.Path)
				srv.auditRefusal(r, "apikey:"+key.ID, "", perm)
				srv.renderAPIError(w, r, errForbidden("This API key lacks the scope "+perm+"."))
			default:
				h(w, r, apiCaller{key: key})
			}
			return
		}
		// A cookie is sent by browsers whatever site asks: state-changing
		// calls made with one must come from the gateway's own origin.
		if err := srv.cop.Check(r); err != nil {
			srv.renderAPIError(w, r, &Error{Status: http.StatusForbidden, Code: "cross_origin", Title: "Request refused",
				Message: "This request came from another site and was refused.", Err: err})
			return
		}
		sess, err := srv.loadSession(w, r)
		switch {
		case err != nil:
			srv.renderAPIError(w, r, err)
		case sess == nil:
			srv.renderAPIError(w, r, errUnauthenticated())
		case !srv.policy.Permissions.Allows(sess.Roles, perm): // local roles only: web roles never grant gateway administration
			srv.log.WarnContext(r.Context(), "API request refused: permission missing", "request_id", requestID(r.Context()),
				"user_id", sess.UserID, "permission", perm, "path", r.URL.Path)
			srv.auditRefusal(r, sess.UserID, sess.UserID, perm)
			srv.renderAPIError(w, r, errForbidden("This needs the permission "+perm+", which your roles do not grant."))
		default:
			h(w, r, apiCaller{sess: sess})
		}
	}
}

// renderAPIError renders err as JSON whatever the client accepts.
func (srv *Server) renderAPIError(w http.ResponseWriter, r *http.Request, err error) {
	r.Header.Set("Accept", "application/json")
	srv.renderError(w, r, err)
}

// apiUserList is the JSON of GET /api/users.
type apiUserList struct {
	Users []*authz.User `json:"users"`
	// Next is the cursor for the next page (pass it as ?after=); empty on the last page.
	Next string `json:"next,omitempty"`
}

func (srv *Server) apiListUsers(w http.ResponseWriter, r *http.Request, _ apiCaller) {
	q := r.URL.Query()
	f := authz.UserFilter{Query: q.Get("query"), Status: authz.Status(q.Get("status")), After: q.Get("after")}
	if f.Status != "" && !f.Status.Valid() {
		srv.renderAPIError(w, r, apiBadRequest("status must be pending, active or disabled"))
		return
	}
	if len(f.Query) > 256 || len(f.After) > 256 {
		srv.renderAPIError(w, r, apiBadRequest("query and after are limited to 256 bytes"))
		return
	}
	if n, err := apiLimit(q); err != nil {
		srv.renderAPIError(w, r, err)
		return
	} else if n > 0 {
		f.Limit = n
	}
	users, err := srv.users.ListUsers(r.Context(), f)
	if err != nil {
		srv.renderAPIError(w, r, err)
		return
	}
	out := apiUserList{Users: users}
	if out.Users == nil {
		out.Users = []*authz.User{}
	}
	if len(users) == authz.EffectiveLimit(f.Limit) {
		out.Next = authz.NormalizeLogin(users[len(users)-1].Username)
	}
	writeJSON(w, http.StatusOK, out)
}

func (srv *Server) apiGetUser(w http.ResponseWriter, r *http.Request, _ apiCaller) {
	if u, ok := srv.apiUser(w, r); ok {
		writeJSON(w, http.StatusOK, u)
	}
}

func apiBadRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Title: "Bad request", Message: msg}
}

// apiBindingBody is the body of PUT /api/users/{id}/binding.
type apiBindingBody struct {
	Binding *authz.Binding `json:"binding"`
	// AllowShared binds a lookup's contact even when other users are bound
	// to it (audited, naming them).
	AllowShared bool `json:"allow_shared,omitempty"`
}

func (srv *Server) apiSetBinding(w http.ResponseWriter, r *http.Request, c apiCaller) {
	u, ok := srv.apiUser(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var body apiBindingBody
	if err := dec.Decode(&body); err != nil || body.Binding == nil || dec.More() {
		srv.renderAPIError(w, r, apiBadRequest(`the body must be {"binding":{"mode":"lookup","ref":{"Id":"...","LogicalName":"contact","Name":"..."}}}`))
		return
	}
	results, err := srv.bindings.SetBindings(r.Context(), []accounts.BindingChange{{User: u.ID, Binding: *body.Binding,
		AllowShared: body.AllowShared}}, c.actor())
	if err == nil {
		err = results[0].Err
	}
	if err != nil {
		srv.renderAPIError(w, r, srv.apiBindingError(r, u.ID, err))
		return
	}
	if u, ok = srv.apiUser(w, r); ok {
		writeJSON(w, http.StatusOK, u)
	}
}

// maxBulkBodyBytes bounds the body of POST /api/users/bindings: room for
// accounts.MaxBindingChanges lookup bindings with names and key attributes.
const maxBulkBodyBytes = 1 << 20

// apiBindingsBody is the body of POST /api/users/bindings.
type apiBindingsBody struct {
	Items []apiBindingItem `json:"items"`
}

// apiBindingItem is one change: the user (id, username or email) and the
// binding, in the shape PUT /api/users/{id}/binding takes.
type apiBindingItem struct {
	User        string         `json:"user"`
	Binding     *authz.Binding `json:"binding"`
	AllowShared bool           `json:"allow_shared,omitempty"`
}

// apiBindingResult is the outcome of one item, at the item's index.
type apiBindingResult struct {
	User  string        `json:"user"`
	ID    string        `json:"id,omitempty"` // the user's id, when one was found
	OK    bool          `json:"ok"`
	Error *apiItemError `json:"error,omitempty"`
}

// apiItemError says why one item of a batch failed; Message is user-safe.
type apiItemError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

const bulkBindingsShape = `the body must be {"items":[{"user":"<id, username or email>","binding":{"mode":"lookup","ref":{"Id":"...","LogicalName":"contact","Name":"..."}}}, ...]}`

// apiSetBindings changes the bindings of many users, each as
// apiSetBinding would, and answers 200 with one result per item: a bad
// item fails alone. A malformed body, or more than
// accounts.MaxBindingChanges items, is refused whole (400) and changes
// nothing.
func (srv *Server) apiSetBindings(w http.ResponseWriter, r *http.Request, c apiCaller) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBulkBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var body apiBindingsBody
	err := dec.Decode(&body)
	if err == nil {
		// Exactly one JSON value: anything after it is malformed.
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = cmp.Or(terr, errors.New("data after the JSON body"))
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		srv.renderAPIError(w, r, &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Title: "Request too large",
			Message: "The body is larger than " + strconv.Itoa(maxBulkBodyBytes) + " bytes; split the list."})
		return
	case err != nil || body.Items == nil:
		srv.renderAPIError(w, r, apiBadRequest(bulkBindingsShape))
		return
	case len(body.Items) == 0 || len(body.Items) > accounts.MaxBindingChanges:
		srv.renderAPIError(w, r, apiBadRequest("items must list 1 to "+strconv.Itoa(accounts.MaxBindingChanges)+" changes; split longer lists"))
		return
	}
	changes := make([]accounts.BindingChange, len(body.Items))
	for i, it := range body.Items {
		if it.User == "" || it.Binding == nil {
			srv.renderAPIError(w, r, apiBadRequest("item "+strconv.Itoa(i)+" needs a user and a binding; "+bulkBindingsShape))
			return
		}
		changes[i] = accounts.BindingChange{User: it.User, Binding: *it.Binding, AllowShared: it.AllowShared}
	}
	results, err := srv.bindings.SetBindings(r.Context(), changes, c.actor())
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		srv.renderAPIError(w, r, apiBadRequest(verr.Message))
		return
	case err != nil:
		srv.renderAPIError(w, r, err)
		return
	}
	out := struct {
		Results []apiBindingResult `json:"results"`
	}{Results: make([]apiBindingResult, len(results))}
	for i, res := range results {
		out.Results[i] = apiBindingResult{User: res.User, ID: res.ID, OK: res.Err == nil}
		if res.Err != nil {
			out.Results[i].Error = srv.apiItemError(r, res)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// apiItemError maps the error of one item of a batch to its code and a
// user-safe message.
func (srv *Server) apiItemError(r *http.Request, res accounts.BindingResult) *apiItemError {
	e := srv.apiBindingError(r, res.ID, res.Err)
	return &apiItemError{Code: e.Code, Message: e.Message}
}

// apiBindingError maps the error of a binding change of user id to the
// API's answer, logging what is not the caller's fault.
func (srv *Server) apiBindingError(r *http.Request, id string, err error) *Error {
	var verr *authz.ValidationError
	var refused *accounts.BindingRefusedError
	switch {
	case errors.As(err, &verr):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_binding", Title: "Bad request", Message: verr.Message}
	case errors.As(err, &refused) && refused.Reason == accounts.RefusedContactNotFound:
		return &Error{Status: http.StatusUnprocessableEntity, Code: "contact_not_found", Title: "No such contact",
			Message: "There is no contact with the id " + refused.ContactID + " in Dataverse."}
	case errors.As(err, &refused) && refused.Reason == accounts.RefusedContactBound:
		return &Error{Status: http.StatusConflict, Code: "contact_bound", Title: "Contact already bound",
			Message: "The contact " + refused.ContactID + " is already bound to " + strings.Join(refused.Others, ", ") +
				`. Send "allow_shared": true to bind it to this user as well.`}
	case errors.As(err, &refused) && refused.Reason == accounts.RefusedNoDirectory:
		return &Error{Status: http.StatusNotImplemented, Code: "no_dataverse", Title: "Not available",
			Message: "No Dataverse is configured, so a lookup binding cannot be checked."}
	case errors.Is(err, dataverse.ErrUnavailable):
		return errDataverseUnavailable(err, "Dataverse cannot be reached just now, so the contact cannot be checked. Please try again shortly.")
	case errors.Is(err, authz.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found", Message: "There is no user with this id, username or email."}
	case errors.Is(err, authz.ErrLastBreakGlassAdmin):
		return &Error{Status: http.StatusConflict, Code: "last_break_glass_admin", Title: "Refused",
			Message: "This change would leave no active administrator who can sign in without Dataverse."}
	case errors.Is(err, authz.ErrStale):
		return &Error{Status: http.StatusConflict, Code: "conflict", Title: "Conflict", Message: "The user kept changing while this change was saved; please try again."}
	default:
		srv.log.ErrorContext(r.Context(), "binding change failed", "request_id", requestID(r.Context()), "user_id", id, "err", err)
		return &Error{Status: http.StatusInternalServerError, Code: "internal", Title: "Error",
			Message: "The gateway could not save this change. Please try again.", Err: err}
	}
}

// apiUser loads the user named by the {id} path value (an id, else a
// username or email, as the bulk endpoint names users), answering the
// error itself.
func (srv *Server) apiUser(w http.ResponseWriter, r *http.Request) (*authz.User, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > authz.MaxEmailLen || strings.ContainsAny(id, " /\\") || !authz.Printable(id) {
		srv.renderAPIError(w, r, apiBadRequest("the user id, username or email is not valid"))
		return nil, false
	}
	u, err := srv.users.LookupUser(r.Context(), id)
	if errors.Is(err, authz.ErrNotFound) {
		srv.renderAPIError(w, r, &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
			Message: "There is no user with this id, username or email."})
		return nil, false
	}
	if err != nil {
		srv.renderAPIError(w, r, err)
		return nil, false
	}
	return u, true
}

// apiAuditList is the JSON of GET /api/audit.
type apiAuditList struct {
	Events []audit.Event `json:"events"`
	// Next is the cursor for the next, older page (pass it as ?before=);
	// empty on the last page.
	Next string `json:"next,omitempty"`
}

// auditParams are the query parameters GET /api/audit takes; any other is
// refused, so that a misspelt filter never silently lists everything.
var auditParams = []string{"user", "actor", "type", "since", "until", "before", "limit"}

// apiListAudit lists audit events newest first, filtered by the query:
// user (an id, username or email; the id of a deleted user works too),
// actor, type, since and until (RFC 3339 or a duration ago, see
// audit.ParseTime), before (the cursor of the previous page) and limit.
func (srv *Server) apiListAudit(w http.ResponseWriter, r *http.Request, _ apiCaller) {
	q := r.URL.Query()
	for name, vs := range q {
		if !slices.Contains(auditParams, name) {
			srv.renderAPIError(w, r, apiBadRequest("unknown query parameter "+strconv.Quote(truncate(name, 64))+
				"; the audit list takes "+strings.Join(auditParams, ", ")))
			return
		}
		if len(vs) > 1 {
			srv.renderAPIError(w, r, apiBadRequest("the query parameter "+name+" is given more than once"))
			return
		}
	}
	f := audit.Filter{Actor: q.Get("actor"), Type: q.Get("type")}
	now := srv.now()
	for _, b := range []struct {
		name string
		into *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(b.name); v != "" {
			t, err := audit.ParseTime(b.name, v, now)
			if err != nil {
				srv.renderAPIError(w, r, apiValidation(err))
				return
			}
			*b.into = t
		}
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			srv.renderAPIError(w, r, apiBadRequest("before must be the next cursor of a previous page (a positive whole number)"))
			return
		}
		f.Before = n
	}
	if n, err := apiLimit(q); err != nil {
		srv.renderAPIError(w, r, err)
		return
	} else if n > 0 {
		f.Limit = n
	}
	if who := q.Get("user"); who != "" {
		f.UserID = who // an id no account has any more (a deleted user) filters as given
		if len(who) <= audit.MaxFilterLen && authz.Printable(who) {
			u, err := srv.users.LookupUser(r.Context(), who)
			switch {
			case err == nil:
				f.UserID = u.ID
			case !errors.Is(err, authz.ErrNotFound):
				srv.renderAPIError(w, r, err)
				return
			}
		}
	}
	events, err := srv.audit.ListAudit(r.Context(), f)
	if err != nil {
		srv.renderAPIError(w, r, apiValidation(err))
		return
	}
	out := apiAuditList{Events: events}
	if out.Events == nil {
		out.Events = []audit.Event{}
	}
	if len(events) == authz.EffectiveLimit(f.Limit) {
		out.Next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// apiValidation is a 400 carrying the message of a *authz.ValidationError,
// or err itself for any other error.
func apiValidation(err error) error {
	var verr *authz.ValidationError
	if errors.As(err, &verr) {
		return apiBadRequest(verr.Message)
	}
	return err
}

// truncate cuts s to at most n bytes, for echoing client input in errors.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// apiContact is one contact found for binding.
type apiContact struct {
	Ref      dataverse.EntityReference `json:"ref"`
	Email    string                    `json:"email,omitempty"`
	Username string                    `json:"username,omitempty"`
	Active   bool                      `json:"active"`
}

func (srv *Server) apiSearchContacts(w http.ResponseWriter, r *http.Request, _ apiCaller) {
	q := r.URL.Query()
	var field binding.ContactSearchField
	var value string
	for _, f := range []binding.ContactSearchField{binding.SearchByEmail, binding.SearchByUsername, binding.SearchByName} {
		if v := q.Get(string(f)); v != "" {
			if field != "" {
				srv.renderAPIError(w, r, apiBadRequest("search by one of email, username or name"))
				return
			}
			field, value = f, v
		}
	}
	if field == "" {
		srv.renderAPIError(w, r, apiBadRequest("search by one of email, username or name"))
		return
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > binding.MaxContactSearch {
			srv.renderAPIError(w, r, apiBadRequest("limit must be a whole number from 1 to "+strconv.Itoa(binding.MaxContactSearch)))
			return
		}
		limit = n
	}
	found, err := srv.contactSearch.SearchContacts(r.Context(), field, value, limit)
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		srv.renderAPIError(w, r, apiBadRequest(verr.Message))
		return
	case errors.Is(err, binding.ErrNoDirectory):
		srv.renderAPIError(w, r, &Error{Status: http.StatusNotImplemented, Code: "no_dataverse", Title: "Not available",
			Message: "No Dataverse is configured."})
		return
	case errors.Is(err, dataverse.ErrUnavailable):
		srv.renderAPIError(w, r, errDataverseUnavailable(err, msgDataverseUnavailable))
		return
	case err != nil:
		srv.renderAPIError(w, r, err)
		return
	}
	out := struct {
		Contacts []apiContact `json:"contacts"`
	}{Contacts: []apiContact{}}
	for _, c := range found {
		out.Contacts = append(out.Contacts, apiContact{Ref: dataverse.EntityReference{ID: c.ID, LogicalName: "contact", Name: c.Name},
			Email: c.Email, Username: c.Username, Active: c.Active})
	}
	writeJSON(w, http.StatusOK, out)
}

// apiLimit reads the limit query parameter of a listing: 0 when absent,
// else a whole number from 1 to authz.MaxListLimit, or a 400.
func apiLimit(q url.Values) (int, error) {
	l := q.Get("limit")
	if l == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > authz.MaxListLimit {
		return 0, apiBadRequest("limit must be a whole number from 1 to " + strconv.Itoa(authz.MaxListLimit))
	}
	return n, nil
}

// refusalAuditInterval is how often one caller's refusals for one
// permission make an audit row (on each replica); every refusal is logged.
// Signed-in users and key holders cannot fill the table.
const refusalAuditInterval = time.Minute

// auditRefusal records an API call refused for a missing permission, when
// an AuditRecorder is configured, at most once per refusalAuditInterval
// per caller and permission.
func (srv *Server) auditRefusal(r *http.Request, actor, userID, perm string) {
	if srv.auditLog == nil || srv.refusalsAudited.Add(actor+" "+perm, struct{}{}, refusalAuditInterval) != nil {
		return
	}
	client, _ := srv.clients.of(r)
	srv.auditLog.Record(r.Context(), audit.Event{Time: srv.now(), Type: audit.EventAPIRefused, Actor: actor, UserID: userID,
		ClientAddr: client.String(), Detail: perm + " " + r.Method + " " + r.URL.Path})
}
