package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/proxy/pages"
)

// PasswordRecovery runs the password reset, the set-password link and the
// password change; *recovery.Service satisfies it (see its methods for
// the errors).
type PasswordRecovery interface {
	Request(ctx context.Context, login, clientAddr string) error
	Check(ctx context.Context, purpose tokens.Purpose, secret, clientAddr string) (*authz.User, error)
	Complete(ctx context.Context, purpose tokens.Purpose, secret, pw, clientAddr string) (*authz.User, error)
	Change(ctx context.Context, r recovery.ChangeRequest) (*authz.User, error)
	PasswordPolicy() password.Policy
}

// Password page messages.
const (
	msgResetFormExpired    = "This form expired. Please try again."
	msgResetThrottled      = "Too many requests from your network. Please wait a while and try again."
	msgPasswordChanged     = "Your password was changed. Sign in with your new password."
	msgCurrentWrong        = "The current password is incorrect, or the account is temporarily locked."
	msgAccountUnavailable  = "This account cannot sign in at the moment, so its password cannot be set. Please contact the site's administrator."
	msgPasswordMustChange  = "You must choose a new password before you continue."
	msgFieldsInvalid       = "Please correct the marked field."
	passwordChangedQuery   = "password_changed"
	maxTokenField          = 64
	maxPasswordFieldLength = password.MaxBytes + 1
)

// noReferrer keeps the link's secret, which is in the page's URL, out of
// the Referer of anything the page leads to, and the page out of caches.
func noReferrer(w http.ResponseWriter) {
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
}

// resetURL is the "Forgot your password?" link, or "" when reset is off.
func (srv *Server) resetURL() string {
	if srv.recovery == nil || !srv.opts.ResetPages {
		return ""
	}
	return srv.prefix + recovery.ResetPath
}

// parseForm reads a bounded form body, or answers 400.
func (srv *Server) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return false
	}
	return true
}

// handleResetForm shows the reset request form.
func (srv *Server) handleResetForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	srv.renderPage(w, r, http.StatusOK, pages.PageReset, pages.ResetData{CSRFToken: srv.csrf.issue(w, r)})
}

// handleReset asks for a reset link. The answer is the same page whether
// or not an account matched (recovery.Service.Request also takes the same
// time); only a throttled address or an empty field is answered otherwise.
func (srv *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	if !srv.parseForm(w, r) {
		return
	}
	login := r.PostForm.Get("login")
	if len(login) > 320 {
		login = login[:320]
	}
	data := pages.ResetData{Login: login}
	w.Header().Set("Cache-Control", "no-store")
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		data.Error, data.CSRFToken = msgResetFormExpired, srv.csrf.issue(w, r)
		srv.renderPage(w, r, http.StatusForbidden, pages.PageReset, data)
		return
	}
	client, _ := srv.clients.of(r)
	err := srv.recovery.Request(r.Context(), login, client.String())
	var throttled *recovery.ThrottledError
	var verr *authz.ValidationError
	switch {
	case err == nil:
		srv.renderPage(w, r, http.StatusOK, pages.PageReset, pages.ResetData{Sent: true})
		return
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", retryAfterSeconds(throttled.RetryAfter))
		data.Error = msgResetThrottled
		data.CSRFToken = srv.csrf.issue(w, r)
		srv.renderPage(w, r, http.StatusTooManyRequests, pages.PageReset, data)
		return
	case errors.As(err, &verr):
		data.Error = verr.Message
		data.CSRFToken = srv.csrf.issue(w, r)
		srv.renderPage(w, r, http.StatusBadRequest, pages.PageReset, data)
		return
	}
	srv.renderError(w, r, err)
}

// linkPurpose reads the purpose parameter of a confirm link.
func linkPurpose(v string) (tokens.Purpose, string, bool) {
	p, ok := recovery.LinkPurpose(v)
	if !ok {
		return "", "", false
	}
	if p == tokens.PurposeSetPassword {
		return p, string(p), true
	}
	return p, "", true
}

// handleResetConfirmForm shows the new-password form of a reset or
// set-password link without spending the link (mail scanners fetch links
// before the user does): the secret goes into a hidden field.
func (srv *Server) handleResetConfirmForm(w http.ResponseWriter, r *http.Request) {
	noReferrer(w)
	q := r.URL.Query()
	purpose, purposeField, ok := linkPurpose(q.Get(recovery.PurposeParam))
	data := pages.ResetConfirmData{SetPassword: purpose == tokens.PurposeSetPassword, Purpose: purposeField,
		MinLength: srv.recovery.PasswordPolicy().MinLength}
	secret := q.Get(recovery.TokenParam)
	if !ok || secret == "" || len(secret) > maxTokenField {
		data.Invalid = true
		srv.renderPage(w, r, http.StatusNotFound, pages.PageResetConfirm, data)
		return
	}
	client, _ := srv.clients.of(r)
	u, err := srv.recovery.Check(r.Context(), purpose, secret, client.String())
	if !srv.linkRefused(w, r, err, &data) {
		return
	}
	data.Token, data.Username, data.CSRFToken = secret, u.Username, srv.csrf.issue(w, r)
	srv.renderPage(w, r, http.StatusOK, pages.PageResetConfirm, data)
}

// linkRefused renders the answer to a link's refusal; it returns true when
// err is nil and the handler goes on.
func (srv *Server) linkRefused(w http.ResponseWriter, r *http.Request, err error, data *pages.ResetConfirmData) bool {
	var throttled *recovery.ThrottledError
	switch {
	case err == nil:
		return true
	case errors.Is(err, tokens.ErrInvalidToken):
		data.Invalid, data.Token, data.Username = true, "", ""
		srv.renderPage(w, r, http.StatusNotFound, pages.PageResetConfirm, *data)
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", retryAfterSeconds(throttled.RetryAfter))
		srv.renderError(w, r, &Error{Status: http.StatusTooManyRequests, Code: "throttled", Title: "Too many requests",
			Message: msgResetThrottled, RetryAfter: throttled.RetryAfter})
	default:
		srv.renderError(w, r, err)
	}
	return false
}

// handleResetConfirm spends the link and sets the new password. Every
// session of the user ends (the stamp changed), this browser's too: the
// user signs in again with the new password, on a fresh session, and a
// bound user goes through the Dataverse sign-in check like any sign-in.
func (srv *Server) handleResetConfirm(w http.ResponseWriter, r *http.Request) {
	noReferrer(w)
	if !srv.parseForm(w, r) {
		return
	}
	purpose, purposeField, ok := linkPurpose(r.PostForm.Get("purpose"))
	secret := r.PostForm.Get("token")
	data := pages.ResetConfirmData{SetPassword: purpose == tokens.PurposeSetPassword, Purpose: purposeField,
		MinLength: srv.recovery.PasswordPolicy().MinLength}
	if !ok || secret == "" || len(secret) > maxTokenField {
		data.Invalid = true
		srv.renderPage(w, r, http.StatusNotFound, pages.PageResetConfirm, data)
		return
	}
	data.Token = secret
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		data.Error, data.CSRFToken = msgResetFormExpired, srv.csrf.issue(w, r)
		srv.renderPage(w, r, http.StatusForbidden, pages.PageResetConfirm, data)
		return
	}
	pw := r.PostForm.Get("new_password")
	if len(pw) > maxPasswordFieldLength {
		pw = pw[:maxPasswordFieldLength]
	}
	client, _ := srv.clients.of(r)
	u, err := srv.recovery.Complete(r.Context(), purpose, secret, pw, client.String())
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		data.Error, data.CSRFToken = verr.Message, srv.csrf.issue(w, r)
		srv.renderPage(w, r, http.StatusBadRequest, pages.PageResetConfirm, data)
		return
	case errors.Is(err, recovery.ErrAccountUnavailable):
		srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "account_unavailable", Title: "Account unavailable",
			Message: msgAccountUnavailable})
		return
	case !srv.linkRefused(w, r, err, &data):
		return
	}
	// Whatever session this browser had (another user's, or this user's
	// from before) is over: the next one starts at sign-in, with a new ID.
	srv.endCurrentSession(w, r)
	srv.log.Info("password set from a link", "request_id", requestID(r.Context()), "user_id", u.ID, "client", client.String())
	http.Redirect(w, r, srv.prefix+"/signin?"+passwordChangedQuery+"=1", http.StatusSeeOther)
}

// endCurrentSession forgets the browser's session, if any, here and in the
// session cache; the store already refuses it (its stamp changed).
func (srv *Server) endCurrentSession(w http.ResponseWriter, r *http.Request) {
	if value, err := sessionValue(r.Header, srv.cookieName); err == nil && value != "" {
		srv.sessionCache.drop(value)
		if sess, err := srv.codec.decode(value); err == nil {
			srv.revoked.add(sess.ID, srv.sessions.expiresAt(sess), srv.now())
		}
		srv.endSession(w, "password_reset")
	}
}

// passwordUser loads the signed-in session for the password page; it
// answers a redirect to sign in (or 401) itself when there is none.
func (srv *Server) passwordUser(w http.ResponseWriter, r *http.Request) (*Session, bool) {
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return nil, false
	}
	if sess == nil {
		back := srv.prefix + "/password"
		if rd, ok := srv.redirects.validate(r.URL.Query().Get("redirect_url")); ok && rd != "" {
			back += "?redirect_url=" + url.QueryEscape(rd)
		}
		if wantsJSON(r) || r.Method != http.MethodGet {
			srv.renderError(w, r, errUnauthenticated())
			return nil, false
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, srv.prefix+"/signin?redirect_url="+url.QueryEscape(back), http.StatusFound)
		return nil, false
	}
	return sess, true
}

func (srv *Server) passwordData(w http.ResponseWriter, r *http.Request, sess *Session, redirect string) pages.PasswordData {
	return pages.PasswordData{CSRFToken: srv.csrf.issue(w, r), RedirectURL: redirect, Username: sess.Username,
		Forced: sess.MustChange, AskCurrent: true, MinLength: srv.recovery.PasswordPolicy().MinLength, ResetURL: srv.resetURL()}
}

// handlePasswordForm shows the password change form.
func (srv *Server) handlePasswordForm(w http.ResponseWriter, r *http.Request) {
	sess, ok := srv.passwordUser(w, r)
	if !ok {
		return
	}
	redirect, ok := srv.redirects.validate(r.URL.Query().Get("redirect_url"))
	if !ok {
		redirect = ""
	}
	w.Header().Set("Cache-Control", "no-store")
	srv.renderPage(w, r, http.StatusOK, pages.PagePassword, srv.passwordData(w, r, sess, redirect))
}

// handlePassword changes the signed-in user's password: the current one
// is checked (counted against the sign-in lockout), the new one must pass
// the policy. The security stamp changes, so every other session of the
// user ends; this one is re-issued with the new stamp and a new ID.
func (srv *Server) handlePassword(w http.ResponseWriter, r *http.Request) {
	if !srv.parseForm(w, r) {
		return
	}
	sess, ok := srv.passwordUser(w, r)
	if !ok {
		return
	}
	redirect, ok := srv.redirects.validate(r.PostForm.Get("redirect_url"))
	if !ok {
		redirect = ""
	}
	data := srv.passwordData(w, r, sess, redirect)
	w.Header().Set("Cache-Control", "no-store")
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		data.Error = msgResetFormExpired
		srv.renderPage(w, r, http.StatusForbidden, pages.PagePassword, data)
		return
	}
	current, next := r.PostForm.Get("current_password"), r.PostForm.Get("new_password")
	if len(current) > maxPasswordFieldLength {
		current = current[:maxPasswordFieldLength]
	}
	if len(next) > maxPasswordFieldLength {
		next = next[:maxPasswordFieldLength]
	}
	client, _ := srv.clients.of(r)
	req := recovery.ChangeRequest{UserID: sess.UserID, Current: current, New: next, Forced: sess.MustChange, ClientAddr: client.String()}
	if sess.Contact != nil {
		req.ContactID = sess.Contact.ID
	}
	u, err := srv.recovery.Change(r.Context(), req)
	var throttled *signin.ThrottledError
	var verr *authz.ValidationError
	switch {
	case err == nil:
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", retryAfterSeconds(throttled.RetryAfter))
		data.Error = msgThrottled
		srv.renderPage(w, r, http.StatusTooManyRequests, pages.PagePassword, data)
		return
	case errors.Is(err, signin.ErrInvalidCredentials):
		data.Error, data.CurrentError = msgFieldsInvalid, msgCurrentWrong
		srv.renderPage(w, r, http.StatusUnauthorized, pages.PagePassword, data)
		return
	case errors.As(err, &verr):
		data.Error, data.NewError = msgFieldsInvalid, verr.Message
		srv.renderPage(w, r, http.StatusBadRequest, pages.PagePassword, data)
		return
	default:
		srv.renderError(w, r, err)
		return
	}
	// This session goes on under a new ID with the new stamp; the old
	// cookie value is refused from now on, here and (through its stamp)
	// everywhere.
	srv.endCurrentSessionKeepingCookie(r)
	now := srv.now()
	next2 := *sess
	next2.ID, next2.Stamp, next2.MustChange, next2.CheckedAt, next2.LastSeen = rand.Text(), u.SecurityStamp, false, now.Unix(), now.Unix()
	next2.setUser(u)
	next2.MustChange = false
	if err := srv.writeSessionFor(w, r, &next2); err != nil {
		srv.renderError(w, r, err)
		return
	}
	srv.log.Info("password changed", "request_id", requestID(r.Context()), "user_id", u.ID, "forced", sess.MustChange, "client", client.String())
	http.Redirect(w, r, srv.redirects.orDefault(redirect), http.StatusSeeOther)
}

// endCurrentSessionKeepingCookie refuses the request's session ID from now
// on (its cookie is about to be replaced).
func (srv *Server) endCurrentSessionKeepingCookie(r *http.Request) {
	if value, err := sessionValue(r.Header, srv.cookieName); err == nil && value != "" {
		srv.sessionCache.drop(value)
		if sess, err := srv.codec.decode(value); err == nil {
			srv.revoked.add(sess.ID, srv.sessions.expiresAt(sess), srv.now())
		}
	}
}

// forcedChangeExempt reports whether path (under the auth prefix) stays
// reachable while the session must change its password: the change page,
// sign-out, the static assets, /me and the public keys.
func (srv *Server) forcedChangeExempt(path string) bool {
	rest := strings.TrimPrefix(path, srv.prefix)
	switch rest {
	case "/password", "/signout", "/me", "/jwks.json":
		return true
	}
	return strings.HasPrefix(rest, "/static/")
}

// mustChangeSession reports whether the request's session, as its cookie
// says, must change its password. It decodes through the session cache
// and changes nothing (the gateway page's own session steps run later).
func (srv *Server) mustChangeSession(r *http.Request) bool {
	value, err := sessionValue(r.Header, srv.cookieName)
	if err != nil || value == "" {
		return false
	}
	sess, _, err := srv.sessionCache.get(value, srv.codec)
	return err == nil && sess.MustChange && !srv.sessions.expired(sess, srv.now()) && !srv.revoked.has(sess.ID, srv.now())
}

// forcePasswordChange answers any request of a session that must change
// its password first: a browser reading a page is sent to the change page
// (and back afterwards), everything else gets 403 with the reason.
func (srv *Server) forcePasswordChange(w http.ResponseWriter, r *http.Request) {
	srv.metrics.sessions.WithLabelValues("password_change_forced").Inc()
	if !wantsJSON(r) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		target := srv.prefix + "/password"
		back := r.URL.RequestURI()
		if back != "" && back != "/" && !strings.HasPrefix(back, srv.prefix+"/") {
			if _, ok := srv.redirects.validate(back); ok {
				target += "?redirect_url=" + url.QueryEscape(back)
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "password_change_required", Title: "Password change required",
		Message: msgPasswordMustChange + " Go to " + srv.prefix + "/password."})
}

// PasswordAdmin forces password changes for the REST API;
// *accounts.Service satisfies it.
type PasswordAdmin interface {
	// ForcePasswordChange sets the must-change flag of the account named
	// by login and ends its sessions; a missing one gives an error
	// wrapping authz.ErrNotFound.
	ForcePasswordChange(ctx context.Context, login, actor string) (*authz.User, error)
}

// apiForcePasswordChange makes a user choose a new password at the next
// sign-in; it answers the user as changed.
func (srv *Server) apiForcePasswordChange(w http.ResponseWriter, r *http.Request, c apiCaller) {
	u, ok := srv.apiUser(w, r)
	if !ok {
		return
	}
	u, err := srv.opts.Passwords.ForcePasswordChange(r.Context(), u.ID, c.actor())
	if err != nil {
		srv.renderAPIError(w, r, err)
		return
	}
	srv.log.Info("password change forced", "request_id", requestID(r.Context()), "user_id", u.ID, "actor", c.actor())
	writeJSON(w, http.StatusOK, u)
}
