package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/throttle"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy/pages"
)

// Invitations redeems invitation codes, and creates, lists, resends and
// revokes crmgate invitations for the REST API. *invitations.Service
// satisfies it; see its methods for the errors.
type Invitations interface {
	Lookup(ctx context.Context, code, client string) (*invitations.Offer, error)
	Redeem(ctx context.Context, code string, reg invitations.Registration, client string) (*invitations.Result, error)
	Link(ctx context.Context, code string, u *authz.User, client string) (*invitations.Result, error)
	Confirm(ctx context.Context, secret, client string) (*invitations.Result, error)
	Create(ctx context.Context, ni invitations.NewInvitation, actor string) (*invitations.Invitation, error)
	Get(ctx context.Context, id int64) (*invitations.Invitation, error)
	List(ctx context.Context, after int64, limit int) ([]*invitations.Invitation, error)
	Resend(ctx context.Context, id int64, actor string) (*invitations.Invitation, error)
	Revoke(ctx context.Context, id int64, actor string) error
	RecordThrottled(ctx context.Context, client string)
}

// Invitation page messages. One message for every refused code, so that
// the page is no oracle for which codes exist.
const (
	msgInvitationInvalid            = "This invitation is invalid or has expired. Check the link in your email, or ask for a new invitation."
	msgInvitationThrottled          = "Too many invitation codes were tried from your network. Please wait a while and try again."
	msgInvitationUnavailable        = "We cannot check your invitation right now. Nothing was changed; please try again in a few minutes."
	msgInvitationFormExpired        = "This form expired. Please try again."
	msgInvitationTaken              = "This username or email address is already in use. Choose another username, or sign in if this is your account."
	msgInvitationBound              = "This invitation can no longer create an account: the person it is for already has one. Sign in with that account instead."
	msgInvitationLinkRefused        = "This invitation cannot be added to the account you are signed in with. Sign in with the account of the invited email address."
	msgInvitationInvalidForm        = "Please correct the marked fields."
	msgInvitationConfirmUnavailable = "We cannot check your invitation right now, so no account was made. Open the link of your invitation again in a few minutes to get a new confirmation."
	msgInvitationConfirmInvalid     = "This confirmation link is invalid, was already used or has expired. Redeem your invitation again to get a new one."
)

// invitationCode is the code of a request: the query's on GET, the form's on POST.
func invitationCode(r *http.Request) string {
	if r.Method == http.MethodPost {
		return strings.TrimSpace(r.PostForm.Get("code"))
	}
	return strings.TrimSpace(r.URL.Query().Get("code"))
}

// handleInvitationForm shows the invitation of ?code=, or asks for a code.
func (srv *Server) handleInvitationForm(w http.ResponseWriter, r *http.Request) {
	code := invitationCode(r)
	if code == "" {
		srv.renderInvitation(w, r, http.StatusOK, pages.InvitationData{State: pages.InvitationEnterCode})
		return
	}
	offer, ok := srv.lookupInvitation(w, r, code)
	if !ok {
		return
	}
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return
	}
	srv.renderInvitation(w, r, http.StatusOK, srv.offerData(r, offer, code, sess))
}

// offerData is the page of a valid invitation for the request's person.
func (srv *Server) offerData(r *http.Request, o *invitations.Offer, code string, sess *Session) pages.InvitationData {
	data := pages.InvitationData{Code: code, Name: o.Name}
	switch {
	case sess != nil:
		data.State, data.SignedInAs = pages.InvitationLink, sess.Username
	case o.Existing != nil:
		data.State, data.SignInURL = pages.InvitationExisting, srv.existingUserURL(code)
	default:
		data.State, data.NeedsProof, data.AskEmail = pages.InvitationRegister, o.NeedsProof, o.AskEmail
		data.Email = o.Email
		if o.Source == invitations.SourceDataverse {
			// The code holder is not yet known to be the contact: show
			// no more of its address than needed to recognise it.
			data.Email = maskEmail(o.Email)
		}
		data.PasswordHint = srv.passwordHint()
	}
	return data
}

// existingUserURL is where a person with an account goes to sign in and
// come back to take the invitation: Options.InvitationExistingUserURL, or
// the sign-in page.
func (srv *Server) existingUserURL(code string) string {
	back := srv.prefix + "/invitation?code=" + url.QueryEscape(code)
	if u := srv.opts.InvitationExistingUserURL; u != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		return u + sep + "redirect_url=" + url.QueryEscape(back)
	}
	return srv.prefix + "/signin?redirect_url=" + url.QueryEscape(back)
}

func (srv *Server) passwordHint() string {
	return "A long passphrase of several words is best. It must not be your username or email address."
}

// maskEmail shows the first character of the local part and the domain.
func maskEmail(e string) string {
	at := strings.LastIndexByte(e, '@')
	if at < 1 {
		return ""
	}
	return e[:1] + "•••" + e[at:]
}

// lookupInvitation checks code under the guessing throttle. When the
// code is refused (or the check cannot run) it answers the request and ok
// is false.
func (srv *Server) lookupInvitation(w http.ResponseWriter, r *http.Request, code string) (*invitations.Offer, bool) {
	client, _ := srv.clients.of(r)
	key := throttle.ClientKey(client.String())
	if srv.guessesBlocked(w, r, key, client.String()) {
		return nil, false
	}
	offer, err := srv.invitations.Lookup(r.Context(), code, client.String())
	if err != nil {
		srv.invitationLookupFailed(w, r, err, key, client.String())
		return nil, false
	}
	return offer, true
}

// guessesBlocked answers a client that has no refused guess left and
// reports true; otherwise it takes nothing. When the guess limiter cannot
// tell (its store failed) it answers with the error page and reports true:
// no code is checked unthrottled.
func (srv *Server) guessesBlocked(w http.ResponseWriter, r *http.Request, key, client string) bool {
	now := srv.now()
	blocked, _, err := srv.inviteGuesses.Blocked(r.Context(), key, now)
	if err != nil {
		srv.renderError(w, r, err)
		return true
	}
	if !blocked {
		return false
	}
	// Allow refuses too and takes nothing; it says whether this is the
	// first refusal of a run, which is audited.
	ok, retry, first, err := srv.inviteGuesses.Allow(r.Context(), key, now)
	switch {
	case err != nil:
		srv.renderError(w, r, err)
		return true
	case ok:
		// The bucket refilled between the two looks: this event took the
		// guess the next refusal would have.
		return false
	}
	srv.invitationThrottled(w, r, client, retry, first)
	return true
}

// countGuess counts a refused code or link against the client's guesses.
// It reports true when it answered the request: the client has no guess
// left (429), or the limiter's store failed (the error page).
func (srv *Server) countGuess(w http.ResponseWriter, r *http.Request, key, client string) bool {
	ok, retry, first, err := srv.inviteGuesses.Allow(r.Context(), key, srv.now())
	switch {
	case err != nil:
		srv.renderError(w, r, err)
		return true
	case !ok:
		srv.invitationThrottled(w, r, client, retry, first)
		return true
	}
	return false
}

// invitationLookupFailed answers a refused or failed code check; a refusal
// counts against the client's guesses.
func (srv *Server) invitationLookupFailed(w http.ResponseWriter, r *http.Request, err error, key, client string) {
	switch {
	case errors.Is(err, invitations.ErrInvalidCode):
		if srv.countGuess(w, r, key, client) {
			return
		}
		srv.renderInvitation(w, r, http.StatusNotFound, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationInvalid})
	case errors.Is(err, dataverse.ErrUnavailable):
		srv.log.Warn("invitation not checked: Dataverse unavailable", "request_id", requestID(r.Context()), "err", err)
		w.Header().Set("Retry-After", "30")
		srv.renderInvitation(w, r, http.StatusServiceUnavailable, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationUnavailable})
	default:
		srv.renderError(w, r, err)
	}
}

// invitationThrottled answers a client that guessed too many codes; the
// first refusal of a run is audited and logged.
func (srv *Server) invitationThrottled(w http.ResponseWriter, r *http.Request, client string, retry time.Duration, first bool) {
	if first {
		srv.log.Warn("invitation code guessing throttled", "request_id", requestID(r.Context()), "client", client, "retry_after", retry.String())
		srv.invitations.RecordThrottled(r.Context(), client)
	}
	w.Header().Set("Retry-After", retryAfterSeconds(retry))
	srv.renderInvitation(w, r, http.StatusTooManyRequests, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationThrottled})
}

// handleInvitation redeems (action=register) or links (action=link) the
// invitation of the form's code.
func (srv *Server) handleInvitation(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	code := invitationCode(r)
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		srv.renderInvitation(w, r, http.StatusForbidden, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationFormExpired})
		return
	}
	if code == "" {
		srv.renderInvitation(w, r, http.StatusBadRequest, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationInvalid})
		return
	}
	client, _ := srv.clients.of(r)
	key := throttle.ClientKey(client.String())
	if srv.guessesBlocked(w, r, key, client.String()) {
		return
	}
	if r.PostForm.Get("action") == "link" {
		srv.linkInvitation(w, r, code, key, client.String())
		return
	}
	username, pw := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	entered := pages.InvitationData{State: pages.InvitationRegister, Code: code, Username: username,
		EnteredEmail: strings.TrimSpace(r.PostForm.Get("email")), PasswordHint: srv.passwordHint()}
	if pw != r.PostForm.Get("password_confirm") {
		offer, ok := srv.lookupInvitation(w, r, code)
		if !ok {
			return
		}
		data := srv.offerData(r, offer, code, nil)
		data.Username, data.EnteredEmail = username, entered.EnteredEmail
		data.Error, data.FieldErrors = msgInvitationInvalidForm, map[string]string{"password_confirm": "The two passwords differ."}
		srv.renderInvitation(w, r, http.StatusBadRequest, data)
		return
	}
	res, err := srv.invitations.Redeem(r.Context(), code, invitations.Registration{Username: username, Password: pw, Email: entered.EnteredEmail}, client.String())
	var verr *authz.ValidationError
	var rerr *password.RuleError
	switch {
	case err == nil:
	case errors.As(err, &rerr) || errors.As(err, &verr):
		field, msg := "username", ""
		if rerr != nil {
			field, msg = "password", rerr.Error()
			if errors.As(err, &verr) {
				msg = verr.Message
			}
		} else {
			field, msg = verr.Field, verr.Message
			if field != "email" && field != "username" {
				field = "username"
			}
		}
		offer, ok := srv.lookupInvitation(w, r, code)
		if !ok {
			return
		}
		data := srv.offerData(r, offer, code, nil)
		data.Username, data.EnteredEmail = username, entered.EnteredEmail
		data.Error, data.FieldErrors = msgInvitationInvalidForm, map[string]string{field: msg}
		srv.renderInvitation(w, r, http.StatusBadRequest, data)
		return
	case errors.Is(err, authz.ErrConflict):
		offer, ok := srv.lookupInvitation(w, r, code)
		if !ok {
			return
		}
		data := srv.offerData(r, offer, code, nil)
		data.Username, data.EnteredEmail, data.Error = username, entered.EnteredEmail, msgInvitationTaken
		srv.renderInvitation(w, r, http.StatusConflict, data)
		return
	case errors.Is(err, invitations.ErrExistingAccount):
		srv.renderInvitation(w, r, http.StatusConflict, pages.InvitationData{State: pages.InvitationExisting, SignInURL: srv.existingUserURL(code)})
		return
	case errors.Is(err, invitations.ErrContactBound):
		srv.renderInvitation(w, r, http.StatusConflict, pages.InvitationData{State: pages.InvitationExisting, SignInURL: srv.existingUserURL(code), Error: msgInvitationBound})
		return
	default:
		srv.invitationLookupFailed(w, r, err, key, client.String())
		return
	}
	if res.PendingEmail != "" {
		srv.renderInvitation(w, r, http.StatusOK, pages.InvitationData{State: pages.InvitationPending, Email: maskEmail(res.PendingEmail)})
		return
	}
	srv.renderInvitation(w, r, http.StatusOK, srv.doneData(res, ""))
}

// doneData is the page after a redemption: sign in, then go to the
// invitation's redirect when it is safe.
func (srv *Server) doneData(res *invitations.Result, signedInAs string) pages.InvitationData {
	data := pages.InvitationData{State: pages.InvitationDone, SignedInAs: signedInAs, SignInURL: srv.prefix + "/signin"}
	if target, ok := srv.redirects.validate(res.RedirectURL); ok {
		data.ContinueURL = target
		data.SignInURL = srv.prefix + "/signin?redirect_url=" + url.QueryEscape(target)
	}
	return data
}

// linkInvitation gives the invitation to the signed-in account.
func (srv *Server) linkInvitation(w http.ResponseWriter, r *http.Request, code, key, client string) {
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return
	}
	if sess == nil {
		srv.renderError(w, r, errUnauthenticated())
		return
	}
	u, err := srv.users.UserByID(r.Context(), sess.UserID)
	if err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Title: "Temporarily unavailable",
			Message: "Your account cannot be read just now. Please try again shortly.", RetryAfter: 5 * time.Second, Err: err})
		return
	}
	res, err := srv.invitations.Link(r.Context(), code, u, client)
	switch {
	case err == nil:
	case errors.Is(err, invitations.ErrLinkRefused), errors.Is(err, invitations.ErrContactBound):
		srv.renderInvitation(w, r, http.StatusForbidden, pages.InvitationData{State: pages.InvitationLink, Code: code,
			SignedInAs: sess.Username, Error: msgInvitationLinkRefused})
		return
	default:
		srv.invitationLookupFailed(w, r, err, key, client)
		return
	}
	srv.renderInvitation(w, r, http.StatusOK, srv.doneData(res, sess.Username))
}

// handleInvitationConfirmForm shows the button that completes a
// redemption from the mailed link; a GET changes nothing (mail scanners
// open links).
func (srv *Server) handleInvitationConfirmForm(w http.ResponseWriter, r *http.Request) {
	srv.renderInvitation(w, r, http.StatusOK, pages.InvitationData{State: pages.InvitationConfirm, Token: r.URL.Query().Get("token")})
}

// handleInvitationConfirm completes a redemption whose address the
// mailed link proved.
func (srv *Server) handleInvitationConfirm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	token := r.PostForm.Get("token")
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		srv.renderInvitation(w, r, http.StatusForbidden, pages.InvitationData{State: pages.InvitationConfirm, Token: token, Error: msgInvitationFormExpired})
		return
	}
	client, _ := srv.clients.of(r)
	key := throttle.ClientKey(client.String())
	if srv.guessesBlocked(w, r, key, client.String()) {
		return
	}
	res, err := srv.invitations.Confirm(r.Context(), token, client.String())
	switch {
	case err == nil:
	case errors.Is(err, tokens.ErrInvalidToken):
		if srv.countGuess(w, r, key, client.String()) {
			return
		}
		srv.renderInvitation(w, r, http.StatusNotFound, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationConfirmInvalid})
		return
	case errors.Is(err, invitations.ErrExistingAccount), errors.Is(err, invitations.ErrContactBound):
		srv.renderInvitation(w, r, http.StatusConflict, pages.InvitationData{State: pages.InvitationExisting,
			SignInURL: srv.prefix + "/signin", Error: msgInvitationBound})
		return
	case errors.Is(err, authz.ErrConflict):
		srv.renderInvitation(w, r, http.StatusConflict, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationTaken})
		return
	case errors.Is(err, dataverse.ErrUnavailable):
		srv.log.Warn("invitation not confirmed: Dataverse unavailable", "request_id", requestID(r.Context()), "err", err)
		w.Header().Set("Retry-After", "30")
		srv.renderInvitation(w, r, http.StatusServiceUnavailable, pages.InvitationData{State: pages.InvitationEnterCode, Error: msgInvitationConfirmUnavailable})
		return
	default:
		srv.invitationLookupFailed(w, r, err, key, client.String())
		return
	}
	srv.renderInvitation(w, r, http.StatusOK, srv.doneData(res, ""))
}

func (srv *Server) renderInvitation(w http.ResponseWriter, r *http.Request, status int, data pages.InvitationData) {
	data.CSRFToken = srv.csrf.issue(w, r)
	w.Header().Set("Cache-Control", "no-store")
	// The code and token are in this page's address: send no Referer
	// with them to the logo, the site or anything linked.
	w.Header().Set("Referrer-Policy", "no-referrer")
	if err := srv.pages.Render(w, status, pages.PageInvitation, data); err != nil {
		srv.log.Error("render invitation page", "request_id", requestID(r.Context()), "err", err)
	}
}
