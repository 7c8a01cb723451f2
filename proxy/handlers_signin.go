package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy/pages"
)

// maxFormBytes bounds the body of the gateway's forms.
const maxFormBytes = 64 << 10

// Sign-in messages. One message for every credential failure, so the page
// never tells whether an account exists or is locked. The sign-in service
// returns the disabled, pending and refused errors only when the operator
// opted into explanations (CRMGATE_SIGNIN_EXPLAIN_REFUSALS, see
// signin.Options.ExplainRefusals); otherwise those accounts get
// ErrInvalidCredentials, and so the same status and page, as a wrong
// password.
const (
	msgInvalidCredentials = "The username or password is incorrect, or the account is temporarily locked."
	msgThrottled          = "Too many sign-in attempts from your network. Please wait a moment and try again."
	msgDisabled           = "This account is disabled. Please contact the site's administrator."
	msgPending            = "This account is waiting for approval. You will be able to sign in once it is approved."
	msgFormExpired        = "Your sign-in form expired. Please try again."
	// msgRefused is the one message for every refusal by Dataverse (contact
	// missing, inactive, sign-in disabled, filter): which check failed is
	// in the audit log only.
	msgRefused     = "You cannot sign in to this site right now. If you think this is a mistake, please contact the site's support."
	msgUnavailable = "We cannot check your account right now. Please try again in a few minutes."
)

// PasswordSignIn checks the sign-in form's credentials and, for a user
// bound to a Dataverse contact, checks the contact and returns its snapshot
// with columns (nil for unbound users). *signin.Service satisfies it; see
// signin.Service.SignInWithContact for its errors.
type PasswordSignIn interface {
	SignInWithContact(ctx context.Context, c signin.Credentials, columns []string) (*authz.User, *dataverse.Contact, error)
}

// SessionStore records sign-outs so that every replica refuses the
// session. *signin.Service satisfies it.
type SessionStore interface {
	// EndSession revokes a session at sign-out and audits it.
	EndSession(ctx context.Context, sessionID, userID, clientAddr string, expiresAt time.Time) error
	// SessionRevoked reports whether a session was ended by EndSession (on any replica).
	SessionRevoked(ctx context.Context, sessionID string) (bool, error)
}

// sessionContact turns a contact into the session's snapshot.
func sessionContact(c *dataverse.Contact) *dataverse.Contact {
	if c == nil {
		return nil
	}
	// Only what the cookie carries: the fields its JSON form keeps.
	sc := &dataverse.Contact{ID: c.ID, LogicalName: c.LogicalName, Name: c.Name, Columns: c.Columns, Roles: slices.Clone(c.Roles)}
	if sc.LogicalName == "" {
		sc.LogicalName = dataverse.ContactLogicalName
	}
	return sc
}

// msgReturnTooLong tells the user why the gateway will not return to the
// address they came from.
const msgReturnTooLong = "The address you came from is too long to return to. After signing in you will go to the home page."

// handleSignInForm shows the sign-in page. A browser that is already signed
// in is told who is signed in and offered to continue to the return address
// or to sign in as someone else (a sign-out form that comes back here).
func (srv *Server) handleSignInForm(w http.ResponseWriter, r *http.Request) {
	redirect := r.URL.Query().Get("redirect_url")
	var notice string
	if _, ok := srv.redirects.validate(redirect); !ok {
		if srv.redirects.tooLong(redirect) {
			notice = msgReturnTooLong
		}
		redirect = ""
	}
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return
	}
	if sess != nil {
		// The sign-out handler validates this again; one too long for a
		// return address comes back to the plain sign-in page.
		back := srv.signInURL(redirect)
		if _, ok := srv.redirects.validate(back); !ok {
			back = srv.prefix + "/signin"
		}
		w.Header().Set("Cache-Control", "no-store")
		srv.renderSignIn(w, r, http.StatusOK, pages.SignInData{SignedInAs: sess.Username,
			ContinueURL: srv.redirects.orDefault(redirect), SwitchRedirectURL: back})
		return
	}
	if r.URL.Query().Get(passwordChangedQuery) != "" {
		notice = msgPasswordChanged
	}
	srv.renderSignIn(w, r, http.StatusOK, pages.SignInData{RedirectURL: redirect, Notice: notice, RegisterURL: srv.registerURL(redirect)})
}

func (srv *Server) renderSignIn(w http.ResponseWriter, r *http.Request, status int, data pages.SignInData) {
	data.CSRFToken = srv.csrf.issue(w, r)
	data.ResetURL = srv.resetURL()
	if err := srv.pages.Render(w, status, pages.PageSignIn, data); err != nil {
		srv.log.Error("render sign-in page", "request_id", requestID(r.Context()), "err", err)
	}
}

// handleSignIn checks the credentials and starts a new session.
func (srv *Server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	login := r.PostForm.Get("login")
	if len(login) > 320 {
		login = login[:320]
	}
	redirect := r.PostForm.Get("redirect_url")
	if _, ok := srv.redirects.validate(redirect); !ok {
		redirect = ""
	}
	remember := r.PostForm.Get("remember") != ""
	data := pages.SignInData{Login: login, RedirectURL: redirect, Remember: remember, RegisterURL: srv.registerURL(redirect)}

	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		srv.metrics.signIns.WithLabelValues("password", "csrf").Inc()
		data.Error = msgFormExpired
		srv.renderSignIn(w, r, http.StatusForbidden, data)
		return
	}
	client, _ := srv.clients.of(r)
	u, contact, err := srv.signIns.SignInWithContact(r.Context(), signin.Credentials{Login: login, Password: r.PostForm.Get("password"), ClientAddr: client.String()}, srv.contactColumns)
	if err != nil {
		outcome, status := "invalid", http.StatusUnauthorized
		data.Error = msgInvalidCredentials
		var throttled *signin.ThrottledError
		var held *signin.HeldError
		switch {
		case errors.As(err, &held):
			// The password was right; the registration is not finished.
			srv.metrics.signIns.WithLabelValues("password", "held").Inc()
			if held.Reason == registration.HoldSettingUp {
				srv.renderPage(w, r, http.StatusForbidden, pages.PageRegistered, pages.RegisteredData{Next: pages.NextSettingUp,
					SignInURL: srv.signInURL(redirect)})
				return
			}
			srv.renderPage(w, r, http.StatusForbidden, pages.PageResend, pages.ResendData{CSRFToken: srv.csrf.issue(w, r),
				Email: login, Error: msgUnconfirmed, SignInURL: srv.prefix + "/signin"})
			return
		case errors.As(err, &throttled):
			outcome, status, data.Error = "throttled", http.StatusTooManyRequests, msgThrottled
			w.Header().Set("Retry-After", retryAfterSeconds(throttled.RetryAfter))
		case errors.Is(err, signin.ErrAccountDisabled):
			outcome, status, data.Error = "disabled", http.StatusForbidden, msgDisabled
		case errors.Is(err, signin.ErrAccountPending):
			outcome, status, data.Error = "pending", http.StatusForbidden, msgPending
		case errors.Is(err, signin.ErrRefused):
			outcome, status, data.Error = "refused", http.StatusForbidden, msgRefused
		case errors.Is(err, dataverse.ErrUnavailable):
			// Fail closed for bound users: Dataverse must say yes.
			outcome, status, data.Error = "unavailable", http.StatusServiceUnavailable, msgUnavailable
			w.Header().Set("Retry-After", "30")
			srv.log.Warn("sign-in: Dataverse unavailable", "request_id", requestID(r.Context()), "err", err)
		case errors.Is(err, signin.ErrInvalidCredentials):
		default:
			srv.metrics.signIns.WithLabelValues("password", "error").Inc()
			srv.renderError(w, r, err)
			return
		}
		srv.metrics.signIns.WithLabelValues("password", outcome).Inc()
		srv.renderSignIn(w, r, status, data)
		return
	}

	// A brand-new session ID at every sign-in: a session planted before
	// sign-in (fixation) never becomes authenticated.
	now := srv.now()
	sess := &Session{ID: rand.Text(), UserID: u.ID, Stamp: u.SecurityStamp, AuthMethod: "password",
		AuthTime: now.Unix(), LastSeen: now.Unix(), CheckedAt: now.Unix(), Remember: remember}
	sess.setUser(u)
	sess.setContact(srv.boundedContact(r, u.ID, contact))
	if sess.Rev == 0 {
		sess.bump()
	}
	if contact != nil {
		sess.ContactAt = now.Unix()
	}
	if err := srv.writeSessionFor(w, r, sess); err != nil {
		if tooLarge, ok := errors.AsType[*SessionTooLargeError](err); ok {
			// The user can do nothing about it; the operator can.
			srv.log.Error("sign-in: the session does not fit the session cookies", "request_id", requestID(r.Context()),
				"user_id", u.ID, "bytes", tooLarge.Size, "limit", tooLarge.Limit, "err", tooLarge.Error())
		}
		srv.metrics.signIns.WithLabelValues("password", "error").Inc()
		srv.renderError(w, r, err)
		return
	}
	srv.metrics.signIns.WithLabelValues("password", "success").Inc()
	srv.log.Info("signed in", "request_id", requestID(r.Context()), "user_id", u.ID, "client", client.String())
	w.Header().Set("Cache-Control", "no-store")
	if sess.MustChange {
		// Straight to the change page, which returns to redirect after.
		target := srv.prefix + "/password"
		if redirect != "" {
			target += "?redirect_url=" + url.QueryEscape(redirect)
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, srv.redirects.orDefault(redirect), http.StatusSeeOther)
}

// handleSignOutForm shows a confirmation button: signing out changes state,
// so it is never done by a GET that another site could trigger.
// "Cancel" goes back to the return address (or the home page); with no
// session the page says nobody is signed in.
func (srv *Server) handleSignOutForm(w http.ResponseWriter, r *http.Request) {
	redirect, ok := srv.redirects.validate(r.URL.Query().Get("redirect_url"))
	if !ok {
		redirect = ""
	}
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return
	}
	data := pages.SignOutData{RedirectURL: redirect, CancelURL: redirect}
	if sess != nil {
		data.SignedInAs = sess.Username
	}
	data.CSRFToken = srv.csrf.issue(w, r)
	if err := srv.pages.Render(w, http.StatusOK, pages.PageSignOut, data); err != nil {
		srv.log.Error("render sign-out page", "request_id", requestID(r.Context()), "err", err)
	}
}

// handleSignOut ends the session. The cross-origin check has already run, so
// a plain same-origin form in an upstream page may post here without a
// token; a token, when sent, must be valid.
func (srv *Server) handleSignOut(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	if tok := r.PostForm.Get("csrf_token"); tok != "" && !srv.csrf.valid(r, tok) {
		srv.renderError(w, r, &Error{Status: http.StatusForbidden, Code: "bad_csrf", Title: "Request refused",
			Message: "This sign-out form expired. Please try again."})
		return
	}
	if value, err := sessionValue(r.Header, srv.cookieName); err == nil && value != "" {
		if sess, err := srv.codec.decode(value); err == nil {
			client, _ := srv.clients.of(r)
			until := srv.sessions.expiresAt(sess)
			srv.revoked.add(sess.ID, until, srv.now())
			if err := srv.sessionStore.EndSession(r.Context(), sess.ID, sess.UserID, client.String(), until); err != nil {
				// The browser forgets the cookie and this replica refuses it,
				// but other replicas would accept a copy: say so.
				srv.endSession(w, "signout")
				srv.renderError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Title: "Signed out on this device",
					Message: "You are signed out here, but the sign-out could not be recorded everywhere. Please sign in and out again shortly.",
					Err:     fmt.Errorf("revoke session: %w", err)})
				return
			}
		}
	}
	srv.endSession(w, "signout")
	w.Header().Set("Cache-Control", "no-store")
	if target, ok := srv.redirects.validate(r.PostForm.Get("redirect_url")); ok {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	if err := srv.pages.Render(w, http.StatusOK, pages.PageSignedOut, pages.SignedOutData{SignInURL: srv.prefix + "/signin"}); err != nil {
		srv.log.Error("render signed-out page", "request_id", requestID(r.Context()), "err", err)
	}
}

func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
