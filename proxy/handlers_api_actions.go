package proxy

import (
	"context"
	"errors"
	"net/http"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/authz/throttle"
)

// AccountActions locks, unlocks and signs out accounts for the REST API's
// action routes (what a CRM flow or command-bar button calls, see
// docs/crm-actions.md). *accounts.Service satisfies it.
type AccountActions interface {
	// SetStatus sets the status of the account named by login (username
	// or email) and rotates its security stamp; taking the last
	// break-glass administrator out of service gives an error wrapping
	// authz.ErrLastBreakGlassAdmin.
	SetStatus(ctx context.Context, login string, st authz.Status, actor string) error
	// Unlock clears the sign-in failures and lockouts of the account
	// named by login and reports whether a lockout was running.
	Unlock(ctx context.Context, login, actor string) (wasLocked bool, err error)
	// RevokeSessions rotates the security stamp of the account named by
	// who (id, username or email), ending its sessions on every replica.
	RevokeSessions(ctx context.Context, who, actor string) (*authz.User, error)
}

// SetPasswordLinks mails existing accounts a set-password link for the
// REST API. *onboarding.Service satisfies it.
type SetPasswordLinks interface {
	SendSetPasswordLink(ctx context.Context, who, actor string) (*onboarding.LinkSent, error)
}

// actionRoutes are the REST API's account actions, none without the
// capability (Options.AccountActions, Options.SetPasswordLinks).
//
// Permissions, the narrowest of the vocabulary that fits each:
//   - lock and unlock change the account's status (and clear a lockout,
//     which is state, not a credential): users:write, "changing users'
//     details, roles and status".
//   - revoke-sessions is the sign-out half of a lock, changing no
//     credential (the password stays and works): users:write too, so that
//     the key of a flow that may lock may also sign out without locking.
//   - send-set-password-link acts on the account's credential (the link
//     sets a password), as generating credentials and forcing a password
//     change do: users:credentials.
func (srv *Server) actionRoutes() []guardedRoute {
	var rs []guardedRoute
	if srv.opts.AccountActions != nil {
		rs = append(rs,
			guardedRoute{Method: "POST", Path: "/api/users/{id}/lock", Permission: permissions.UsersWrite, handler: srv.apiLock},
			guardedRoute{Method: "POST", Path: "/api/users/{id}/unlock", Permission: permissions.UsersWrite, handler: srv.apiUnlock},
			guardedRoute{Method: "POST", Path: "/api/users/{id}/revoke-sessions", Permission: permissions.UsersWrite, handler: srv.apiRevokeSessions})
	}
	if srv.opts.SetPasswordLinks != nil {
		rs = append(rs, guardedRoute{Method: "POST", Path: "/api/users/{id}/send-set-password-link", Permission: permissions.UsersCredentials,
			handler: srv.apiSendSetPasswordLink})
	}
	return rs
}

// noBody accepts an empty body or {} (what Power Automate's HTTP action
// and most clients send for a POST without input), answering anything
// else with a 400.
func (srv *Server) noBody(w http.ResponseWriter, r *http.Request) bool {
	return srv.decodeAPIBody(w, r, maxFormBytes, &struct{}{}, true, "the body must be empty or {}")
}

// apiLock disables the account: its sessions end at their next stamp
// check on every replica, and it cannot sign in until unlocked. Locking a
// disabled account again is allowed (and ends sessions again).
func (srv *Server) apiLock(w http.ResponseWriter, r *http.Request, c apiCaller) {
	u, ok := srv.apiUser(w, r)
	if !ok || !srv.noBody(w, r) {
		return
	}
	if err := srv.opts.AccountActions.SetStatus(r.Context(), u.Username, authz.StatusDisabled, c.actor()); err != nil {
		srv.renderAPIError(w, r, srv.apiActionError(r, u.ID, "lock", err))
		return
	}
	srv.log.InfoContext(r.Context(), "account locked", "request_id", requestID(r.Context()), "user_id", u.ID, "actor", c.actor())
	if u, ok = srv.apiUser(w, r); ok {
		writeJSON(w, http.StatusOK, u)
	}
}

// apiUnlocked is the answer of POST /api/users/{id}/unlock: the account
// and what the call changed.
type apiUnlocked struct {
	User *authz.User `json:"user"`
	// Reenabled: the account was disabled and is active now.
	Reenabled bool `json:"reenabled"`
	// LockoutCleared: a sign-in lockout (the account's or a client
	// address's on it) was running and is cleared.
	LockoutCleared bool `json:"lockout_cleared"`
}

// apiUnlock lets a person in again: it re-enables a disabled account and
// clears any sign-in lockout. A pending account stays pending (approval
// is its own decision, POST /api/users/{id}/approve).
func (srv *Server) apiUnlock(w http.ResponseWriter, r *http.Request, c apiCaller) {
	u, ok := srv.apiUser(w, r)
	if !ok || !srv.noBody(w, r) {
		return
	}
	// The lockout is cleared first: if re-enabling then fails, the error
	// answer is true (the account is still disabled) and repeating the
	// call does the rest.
	var out apiUnlocked
	was, err := srv.opts.AccountActions.Unlock(r.Context(), u.Username, c.actor())
	if err != nil {
		srv.renderAPIError(w, r, srv.apiActionError(r, u.ID, "unlock", err))
		return
	}
	out.LockoutCleared = was
	if u.Status == authz.StatusDisabled {
		if err := srv.opts.AccountActions.SetStatus(r.Context(), u.Username, authz.StatusActive, c.actor()); err != nil {
			srv.renderAPIError(w, r, srv.apiActionError(r, u.ID, "unlock", err))
			return
		}
		out.Reenabled = true
	}
	srv.log.InfoContext(r.Context(), "account unlocked", "request_id", requestID(r.Context()), "user_id", u.ID, "actor", c.actor(),
		"reenabled", out.Reenabled, "lockout_cleared", out.LockoutCleared)
	if out.User, ok = srv.apiUser(w, r); ok {
		writeJSON(w, http.StatusOK, out)
	}
}

// apiRevokeSessions ends every session of the user on every replica; the
// user may sign in again at once.
func (srv *Server) apiRevokeSessions(w http.ResponseWriter, r *http.Request, c apiCaller) {
	u, ok := srv.apiUser(w, r)
	if !ok || !srv.noBody(w, r) {
		return
	}
	saved, err := srv.opts.AccountActions.RevokeSessions(r.Context(), u.ID, c.actor())
	if err != nil {
		srv.renderAPIError(w, r, srv.apiActionError(r, u.ID, "revoke sessions", err))
		return
	}
	writeJSON(w, http.StatusOK, saved)
}

// apiSendSetPasswordLink mails the user a set-password link.
func (srv *Server) apiSendSetPasswordLink(w http.ResponseWriter, r *http.Request, c apiCaller) {
	u, ok := srv.apiUser(w, r)
	if !ok || !srv.noBody(w, r) {
		return
	}
	sent, err := srv.opts.SetPasswordLinks.SendSetPasswordLink(r.Context(), u.ID, c.actor())
	if err != nil {
		srv.renderAPIError(w, r, srv.apiActionError(r, u.ID, "send set-password link", err))
		return
	}
	writeJSON(w, http.StatusOK, sent)
}

// apiActionError maps the error of action what on user id to the API's
// answer, logging what is not the caller's fault.
func (srv *Server) apiActionError(r *http.Request, id, what string, err error) *Error {
	var verr *authz.ValidationError
	var thr *onboarding.ThrottledError
	switch {
	case errors.As(err, &verr):
		return apiBadRequest(verr.Message)
	case errors.Is(err, authz.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found", Message: "There is no user with this id, username or email."}
	case errors.Is(err, authz.ErrLastBreakGlassAdmin):
		return &Error{Status: http.StatusConflict, Code: "last_break_glass_admin", Title: "Refused",
			Message: "This is the last active administrator who can sign in without Dataverse (the break-glass account); " +
				"disabling it would leave no one able to sign in while Dataverse is down. Make another unbound user an active admin first."}
	case errors.Is(err, onboarding.ErrAccountDisabled):
		return &Error{Status: http.StatusConflict, Code: "account_disabled", Title: "Account disabled",
			Message: "This account is disabled, so a set-password link would not let it in; unlock it first (POST /api/users/{id}/unlock)."}
	case errors.Is(err, onboarding.ErrAccountPending):
		return &Error{Status: http.StatusConflict, Code: "not_active", Title: "Waiting for approval",
			Message: "This account is waiting for approval; approve it first (POST /api/users/{id}/approve)."}
	case errors.As(err, &thr):
		return &Error{Status: http.StatusTooManyRequests, Code: "too_many_mails", Title: "Too many mails",
			Message:    "This account has received as many password mails as the hourly limit allows; nothing was sent. Try again later.",
			RetryAfter: thr.RetryAfter}
	case errors.Is(err, throttle.ErrUnavailable):
		return errThrottleUnavailable(err)
	case errors.Is(err, authz.ErrStale):
		return &Error{Status: http.StatusConflict, Code: "conflict", Title: "Conflict", Message: "The user kept changing while this was saved; please try again."}
	default:
		srv.log.ErrorContext(r.Context(), what+" failed", "request_id", requestID(r.Context()), "user_id", id, "err", err)
		return &Error{Status: http.StatusInternalServerError, Code: "internal", Title: "Error",
			Message: "The gateway could not do this. Please try again.", Err: err}
	}
}
