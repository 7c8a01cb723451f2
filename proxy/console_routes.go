package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/proxy/console"
)

// consoleRoutes returns the admin console's routes as guarded routes, so
// that the one table (guardedRoutes) holds every route that needs a
// permission; none without a console.
func (srv *Server) consoleRoutes() []guardedRoute {
	if srv.console == nil {
		return nil
	}
	var rs []guardedRoute
	for _, cr := range srv.console.Routes() {
		rs = append(rs, guardedRoute{Method: cr.Method, Path: cr.Path, Permission: cr.Permission, page: cr.Handler})
	}
	return rs
}

// consoleMux serves the console's routes, each behind permitPage, and a
// 404 page for any other address under prefix/admin/.
func (srv *Server) consoleMux(mux *http.ServeMux) {
	if srv.console == nil {
		return
	}
	for _, rt := range srv.consoleRoutes() {
		mux.HandleFunc(rt.Method+" "+srv.prefix+rt.Path, srv.permitPage(rt.Permission, rt.page))
	}
	mux.HandleFunc(srv.prefix+"/admin", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.prefix+"/admin/", http.StatusMovedPermanently)
	})
}

// errConsoleKey refuses an API key on a console page: the console is used
// from a browser session; the REST API takes keys.
var errConsoleKey = &Error{Status: http.StatusUnauthorized, Code: "console_session_required", Title: "Sign-in required",
	Message: "The admin console is used from a signed-in browser. API keys work with the REST API under /api/."}

// errConsoleFormExpired is the answer to a console form without a valid
// CSRF token: nothing was changed.
var errConsoleFormExpired = &Error{Status: http.StatusForbidden, Code: "form_expired", Title: "Form expired",
	Message: "This form has expired or did not come from this console, and nothing was changed. Go back, reload the page and try again."}

// permitPage runs h for a signed-in user whose local roles grant perm
// (console.AnyPermission: any permission at all). Before that, in this
// order: a request with an Authorization header is refused (the console
// takes sessions, never keys); a state-changing request must pass the
// cross-origin check and carry the form's CSRF token; a visitor without a
// session is sent to sign in (GET) or refused (401); a session that must
// change its password goes to the change page. A caller lacking perm gets
// a 403 page, logged and audited (at most once a minute per caller and
// permission).
func (srv *Server) permitPage(perm string, h console.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			srv.renderError(w, r, errConsoleKey)
			return
		}
		post := r.Method != http.MethodGet && r.Method != http.MethodHead
		if post {
			if err := srv.cop.Check(r); err != nil {
				srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "cross_origin", Title: "Request refused",
					Message: "This request came from another site and was refused.", Err: err})
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxConsoleFormBytes)
			if err := r.ParseForm(); err != nil {
				srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
					Message: "The form could not be read.", Err: err})
				return
			}
			if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
				srv.log.WarnContext(r.Context(), "console form refused: CSRF token missing or wrong", "request_id", requestID(r.Context()),
					"path", r.URL.Path)
				srv.renderError(w, r, errConsoleFormExpired)
				return
			}
		}
		sess, err := srv.loadSession(w, r)
		switch {
		case err != nil:
			srv.renderError(w, r, err)
			return
		case sess == nil && !post:
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, srv.prefix+"/signin?redirect_url="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
			return
		case sess == nil:
			srv.renderError(w, r, errUnauthenticated())
			return
		case sess.MustChange:
			srv.forcePasswordChange(w, r)
			return
		}
		can := func(p string) bool { return srv.policy.Permissions.Allows(sess.Roles, p) }
		allowed := can(perm)
		if perm == console.AnyPermission {
			allowed = slices.ContainsFunc(permissions.All(), can)
		}
		if !allowed {
			srv.log.WarnContext(r.Context(), "console request refused: permission missing", "request_id", requestID(r.Context()),
				"user_id", sess.UserID, "permission", perm, "path", r.URL.Path)
			srv.auditRefusal(r, sess.UserID, sess.UserID, perm)
			msg := "This page needs the permission " + perm + ", which your roles do not grant."
			if perm == console.AnyPermission {
				msg = "Your roles grant no part of the admin console."
			}
			srv.renderError(w, r, errForbidden(msg))
			return
		}
		h(w, r, console.Caller{UserID: sess.UserID, Username: sess.Username, Can: can, CSRFToken: srv.csrf.issue(w, r)})
	}
}

// maxConsoleFormBytes bounds a console form: a bulk selection of a page
// of user ids with room to spare.
const maxConsoleFormBytes = 1 << 20

// consoleError renders an error of the console: its own *console.Error as
// an *Error, anything else as renderError does.
func (srv *Server) consoleError(w http.ResponseWriter, r *http.Request, err error) {
	var ce *console.Error
	if errors.As(err, &ce) {
		err = &Error{Status: ce.Status, Code: ce.Code, Title: ce.Title, Message: ce.Message, Err: ce.Err}
	}
	srv.renderError(w, r, err)
}

// isConsolePath reports whether back is a page of the admin console, where
// a sign-in may return although it is under the gateway's prefix.
func (srv *Server) isConsolePath(back string) bool {
	return strings.HasPrefix(back, srv.prefix+"/admin/")
}
