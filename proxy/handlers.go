package proxy

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/crmgate/crmgate/authz/registration"
)

// gatewayMux routes the gateway's own namespace. Every state-changing
// handler is wrapped by the cross-origin check.
func (srv *Server) gatewayMux() http.Handler {
	p := srv.prefix
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+p+"/signin", srv.handleSignInForm)
	mux.Handle("POST "+p+"/signin", srv.sameOrigin(srv.handleSignIn))
	mux.HandleFunc("GET "+p+"/signout", srv.handleSignOutForm)
	mux.Handle("POST "+p+"/signout", srv.sameOrigin(srv.handleSignOut))
	if srv.profiles != nil {
		mux.HandleFunc("GET "+p+"/profile", srv.handleProfileForm)
		mux.Handle("POST "+p+"/profile", srv.sameOrigin(srv.handleProfile))
	}
	if srv.registrationOpen() {
		mux.HandleFunc("GET "+p+"/register", srv.handleRegisterForm)
		if srv.registrar.Mode() != registration.ModeInvitation {
			mux.Handle("POST "+p+"/register", srv.sameOrigin(srv.handleRegister))
		}
	}
	if srv.registrar != nil {
		mux.HandleFunc("GET "+p+"/confirm", srv.handleConfirmForm)
		mux.Handle("POST "+p+"/confirm", srv.sameOrigin(srv.handleConfirm))
		mux.HandleFunc("GET "+p+"/confirm/resend", srv.handleResendForm)
		mux.Handle("POST "+p+"/confirm/resend", srv.sameOrigin(srv.handleResend))
	}
	if srv.recovery != nil {
		mux.HandleFunc("GET "+p+"/password", srv.handlePasswordForm)
		mux.Handle("POST "+p+"/password", srv.sameOrigin(srv.handlePassword))
		if srv.opts.ResetPages {
			mux.HandleFunc("GET "+p+"/reset", srv.handleResetForm)
			mux.Handle("POST "+p+"/reset", srv.sameOrigin(srv.handleReset))
			mux.HandleFunc("GET "+p+"/reset/confirm", srv.handleResetConfirmForm)
			mux.Handle("POST "+p+"/reset/confirm", srv.sameOrigin(srv.handleResetConfirm))
		}
	}
	if srv.invitations != nil {
		mux.HandleFunc("GET "+p+"/invitation", srv.handleInvitationForm)
		mux.Handle("POST "+p+"/invitation", srv.sameOrigin(srv.handleInvitation))
		mux.HandleFunc("GET "+p+"/invitation/confirm", srv.handleInvitationConfirmForm)
		mux.Handle("POST "+p+"/invitation/confirm", srv.sameOrigin(srv.handleInvitationConfirm))
	}
	mux.HandleFunc("GET "+p+"/me", srv.handleMe)
	mux.HandleFunc("GET "+p+"/jwks.json", srv.handleJWKS)
	mux.Handle("GET "+p+"/static/", http.StripPrefix(p+"/static", srv.pages.StaticHandler()))
	if srv.hook != nil {
		// No cross-origin check: Dataverse is no browser, and the key
		// authenticates it (handlers_hooks.go).
		mux.HandleFunc(p+hookPath, srv.handleDataverseHook)
	}
	srv.apiMux(mux)
	srv.consoleMux(mux)
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		srv.renderError(w, r, errNoPage())
	})
	return mux
}

// errNoPage is the 404 for an address that neither the gateway nor any
// policy route serves (an unknown gateway page, a request no route matches).
func errNoPage() *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Title: "No page here",
		Message: "There is no page at this address. Check the address, or go to the home page."}
}

// sameOrigin refuses cross-origin state-changing requests before h runs.
func (srv *Server) sameOrigin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := srv.cop.Check(r); err != nil {
			srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "cross_origin", Title: "Request refused",
				Message: "This request came from another site and was refused.", Err: err})
			return
		}
		h(w, r)
	})
}

// meResponse is the JSON of /.auth/me.
type meResponse struct {
	User    meUser     `json:"user"`
	Contact *meContact `json:"contact,omitempty"`
	Session meSession  `json:"session"`
}

// meContact is the bound contact as /.auth/me shows it. Columns are left
// out: which ones a page may see is decided per route.
type meContact struct {
	ID          string   `json:"id"`
	LogicalName string   `json:"logicalname"`
	Name        string   `json:"name,omitempty"`
	Roles       []string `json:"web_roles"`
}

type meUser struct {
	ID         string   `json:"id"`
	Username   string   `json:"username"`
	Email      string   `json:"email,omitempty"`
	Name       string   `json:"name,omitempty"`
	Roles      []string `json:"roles"`
	AuthMethod string   `json:"auth_method"`
}

type meSession struct {
	AuthTime  time.Time `json:"auth_time"`
	ExpiresAt time.Time `json:"expires_at"`
	Remember  bool      `json:"remember"`
	// MustChangePassword says every other page answers with the change
	// page (or 403 password_change_required) until the password changes.
	MustChangePassword bool `json:"must_change_password,omitempty"`
}

// handleMe returns the signed-in user as JSON, or 401.
func (srv *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return
	}
	if sess == nil {
		r.Header.Set("Accept", "application/json") // /me is an API: always answer JSON
		srv.renderError(w, r, errUnauthenticated())
		return
	}
	roles := sess.roles()
	if roles == nil {
		roles = []string{}
	}
	var contact *meContact
	if c := sess.Contact; c != nil {
		contact = &meContact{ID: c.ID, LogicalName: c.LogicalName, Name: c.Name, Roles: append([]string{}, c.Roles...)}
	}
	writeJSON(w, http.StatusOK, meResponse{Contact: contact,
		User: meUser{ID: sess.UserID, Username: sess.Username, Email: sess.Email, Name: sess.Name, Roles: roles, AuthMethod: sess.AuthMethod},
		Session: meSession{AuthTime: time.Unix(sess.AuthTime, 0).UTC(), ExpiresAt: srv.sessions.expiresAt(sess).UTC(),
			Remember: sess.Remember, MustChangePassword: sess.MustChange},
	})
}

// handleJWKS publishes the public keys that verify X-Current-User.
func (srv *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(srv.signer.jwks)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
