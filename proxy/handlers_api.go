package proxy

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/crmgate/crmgate/authz"
)

// AdminRole is the local role that may use the admin console and the REST API.
const AdminRole = "admin"

// UserDirectory is what the REST API needs to read accounts.
// *authz.Service satisfies it.
type UserDirectory interface {
	ListUsers(ctx context.Context, f authz.UserFilter) ([]*authz.User, error)
	UserByID(ctx context.Context, id string) (*authz.User, error)
}

//go:embed openapi.json
var openAPIDocument []byte

// apiMux serves the REST API under prefix/api. Every endpoint needs an
// admin session; state-changing ones also pass the cross-origin check.
func (srv *Server) apiMux(mux *http.ServeMux) {
	p := srv.prefix + "/api"
	mux.HandleFunc("GET "+p+"/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(openAPIDocument)
	})
	mux.HandleFunc("GET "+p+"/users", srv.admin(srv.apiListUsers))
	mux.HandleFunc("GET "+p+"/users/{id}", srv.admin(srv.apiGetUser))
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		srv.renderAPIError(w, r, &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
			Message: "There is no API endpoint at this address."})
	})
}

// admin runs h only for a signed-in admin; anything else is a JSON 401/403.
func (srv *Server) admin(h func(w http.ResponseWriter, r *http.Request, sess *Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := srv.loadSession(w, r)
		switch {
		case err != nil:
			srv.renderAPIError(w, r, err)
		case sess == nil:
			srv.renderAPIError(w, r, errUnauthenticated())
		case !sessionHasRole(sess, AdminRole):
			srv.renderAPIError(w, r, errForbidden("This API needs the admin role."))
		default:
			h(w, r, sess)
		}
	}
}

func sessionHasRole(s *Session, role string) bool {
	for _, r := range s.Roles { // local roles only: web roles never grant gateway administration
		if r == role {
			return true
		}
	}
	return false
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

func (srv *Server) apiListUsers(w http.ResponseWriter, r *http.Request, _ *Session) {
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
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > authz.MaxListLimit {
			srv.renderAPIError(w, r, apiBadRequest("limit must be a whole number from 1 to "+strconv.Itoa(authz.MaxListLimit)))
			return
		}
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

func (srv *Server) apiGetUser(w http.ResponseWriter, r *http.Request, _ *Session) {
	id := r.PathValue("id")
	if id == "" || len(id) > 64 || strings.ContainsAny(id, " /\\") {
		srv.renderAPIError(w, r, apiBadRequest("the user id is not valid"))
		return
	}
	u, err := srv.users.UserByID(r.Context(), id)
	if errors.Is(err, authz.ErrNotFound) {
		srv.renderAPIError(w, r, &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found", Message: "There is no user with this id."})
		return
	}
	if err != nil {
		srv.renderAPIError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func apiBadRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Title: "Bad request", Message: msg}
}
