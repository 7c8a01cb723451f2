package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/proxy/pages"
)

// Registrar is self-registration and email confirmation;
// *registration.Service satisfies it.
type Registrar interface {
	// Mode is the registration mode: off hides the page and its link.
	Mode() registration.Mode
	// Fields are the form's extra contact columns.
	Fields() []registration.Field
	// LastNameRequired reports whether the last name is required.
	LastNameRequired() bool
	// PasswordPolicy is the password rule the form states.
	PasswordPolicy() password.Policy
	// Register creates an account; see registration.Service.Register.
	Register(ctx context.Context, in registration.Input) (registration.Outcome, error)
	// Confirm spends a confirmation link; see registration.Service.Confirm.
	Confirm(ctx context.Context, secret, clientAddr string) (registration.Outcome, error)
	// Resend mails a new link; see registration.Service.Resend.
	Resend(ctx context.Context, email, clientAddr string) error
}

// Registration messages.
const (
	msgRegisterThrottled = "Too many attempts from your network or for this address. Please wait a while and try again."
	msgRegisterExpired   = "This form expired. Please try again."
	msgRegisterFix       = "Please correct the marked fields."
	msgConfirmInvalid    = "This confirmation link is invalid, was already used or has expired. Ask for a new link below; if you already confirmed your address, just sign in."
	msgConfirmExpired    = "This confirmation form expired. Please open the link from the message again."
	msgResendSent        = "If that address has an account waiting for confirmation, we sent it a new link. Older links no longer work."
	msgUnconfirmed       = "Please confirm your email address first: open the link we sent when you registered, or ask for a new one here."
)

// fieldPrefix prefixes the form names of the extra fields, so that a
// contact column can never collide with the form's own names.
const fieldPrefix = "field_"

// registrationOpen reports whether the registration page exists.
func (srv *Server) registrationOpen() bool {
	return srv.registrar != nil && srv.registrar.Mode() != registration.ModeOff
}

// registerURL is the sign-in page's "Create an account" link; "" when
// registration is off.
func (srv *Server) registerURL(redirect string) string {
	if !srv.registrationOpen() {
		return ""
	}
	if redirect == "" {
		return srv.prefix + "/register"
	}
	return srv.prefix + "/register?redirect_url=" + url.QueryEscape(redirect)
}

// registerData is the empty registration form.
func (srv *Server) registerData(redirect string) pages.RegisterData {
	mode := srv.registrar.Mode()
	minLen := srv.registrar.PasswordPolicy().MinLength
	if minLen == 0 {
		minLen = password.DefaultMinLength
	}
	d := pages.RegisterData{RedirectURL: redirect, InvitationOnly: mode == registration.ModeInvitation,
		Approval: mode == registration.ModeApproval, LastNameRequired: srv.registrar.LastNameRequired(),
		MinLength: minLen, SignInURL: srv.signInURL(redirect)}
	for _, f := range srv.registrar.Fields() {
		d.Fields = append(d.Fields, pages.RegisterField{Name: fieldPrefix + f.Column, Label: f.Label, Autocomplete: autocompleteFor(f.Column)})
	}
	return d
}

// autocompleteFor is the autocomplete token of a well-known contact column.
func autocompleteFor(column string) string {
	switch column {
	case "telephone1", "mobilephone", "telephone2":
		return "tel"
	case "jobtitle":
		return "organization-title"
	case "address1_line1":
		return "address-line1"
	case "address1_city":
		return "address-level2"
	case "address1_postalcode":
		return "postal-code"
	}
	return ""
}

// renderPage renders a gateway page, logging a failed render (the
// renderer writes nothing then).
func (srv *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, page pages.Page, data any) {
	w.Header().Set("Cache-Control", "no-store")
	if err := srv.pages.Render(w, status, page, data); err != nil {
		srv.log.Error("render page", "page", string(page), "request_id", requestID(r.Context()), "err", err)
	}
}

// safeRedirect returns raw when it is a safe return address, else "".
func (srv *Server) safeRedirect(raw string) string {
	if v, ok := srv.redirects.validate(raw); ok {
		return v
	}
	return ""
}

// handleRegisterForm shows the registration form (or, by invitation only,
// the invitation-code form).
func (srv *Server) handleRegisterForm(w http.ResponseWriter, r *http.Request) {
	d := srv.registerData(srv.safeRedirect(r.URL.Query().Get("redirect_url")))
	d.CSRFToken = srv.csrf.issue(w, r)
	srv.renderPage(w, r, http.StatusOK, pages.PageRegister, d)
}

// handleRegister creates an account from the form.
func (srv *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	f := r.PostForm
	d := srv.registerData(srv.safeRedirect(f.Get("redirect_url")))
	d.Email, d.FirstName, d.LastName = limit(f.Get("email"), 320), limit(f.Get("first_name"), 400), limit(f.Get("last_name"), 400)
	in := registration.Input{Email: d.Email, Password: f.Get("password"), FirstName: d.FirstName, LastName: d.LastName,
		RedirectURL: d.RedirectURL, Fields: map[string]string{}}
	for i := range d.Fields {
		v := limit(f.Get(d.Fields[i].Name), 400)
		d.Fields[i].Value = v
		in.Fields[strings.TrimPrefix(d.Fields[i].Name, fieldPrefix)] = v
	}
	render := func(status int) {
		d.CSRFToken = srv.csrf.issue(w, r)
		srv.renderPage(w, r, status, pages.PageRegister, d)
	}
	if !srv.csrf.valid(r, f.Get("csrf_token")) {
		d.Error = msgRegisterExpired
		render(http.StatusForbidden)
		return
	}
	client, _ := srv.clients.of(r)
	in.ClientAddr = client.String()
	out, err := srv.registrar.Register(r.Context(), in)
	if err != nil {
		var throttled *registration.ThrottledError
		switch {
		case errors.As(err, &throttled):
			w.Header().Set("Retry-After", retryAfterSeconds(throttled.RetryAfter))
			d.Error = msgRegisterThrottled
			render(http.StatusTooManyRequests)
		case errors.Is(err, registration.ErrOff):
			srv.renderError(w, r, errNoPage())
		case srv.fieldErrors(err, &d):
			render(http.StatusBadRequest)
		default:
			srv.renderError(w, r, err)
		}
		return
	}
	srv.log.Info("registration accepted", "request_id", requestID(r.Context()), "client", in.ClientAddr)
	srv.renderOutcome(w, r, out, false)
}

// fieldErrors fills d's field messages from the validation errors in err
// and reports whether err held only such errors.
func (srv *Server) fieldErrors(err error, d *pages.RegisterData) bool {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var ve *authz.ValidationError
		if !errors.As(e, &ve) {
			return false
		}
		id, msg := ve.Field, ve.Message
		switch ve.Field {
		case "email", "username":
			id, d.EmailError = "email", msg
		case "first_name":
			d.FirstNameError = msg
		case "last_name":
			d.LastNameError = msg
		case "password":
			d.PasswordError = msg
		default:
			id = fieldPrefix + ve.Field
			found := false
			for i := range d.Fields {
				if d.Fields[i].Name == id {
					d.Fields[i].Error, found = msg, true
				}
			}
			if !found {
				id = "email"
			}
		}
		d.Errors = append(d.Errors, pages.FieldError{ID: id, Message: msg})
	}
	if len(d.Errors) == 0 {
		d.Error = msgRegisterFix
	}
	return true
}

// renderOutcome shows what happens next.
func (srv *Server) renderOutcome(w http.ResponseWriter, r *http.Request, out registration.Outcome, confirmed bool) {
	redirect := srv.safeRedirect(out.RedirectURL)
	d := pages.RegisteredData{Email: out.Email, SignInURL: srv.signInURL(redirect), ResendURL: srv.prefix + "/confirm/resend"}
	switch out.Next {
	case registration.NextCheckMail:
		d.Next = pages.NextCheckMail
	case registration.NextPending:
		d.Next = pages.NextPending
	case registration.NextSettingUp:
		d.Next = pages.NextSettingUp
	default:
		d.Next = pages.NextSignIn
		if confirmed {
			d.Next = pages.NextConfirmed
		}
	}
	srv.renderPage(w, r, http.StatusOK, pages.PageRegistered, d)
}

// handleConfirmForm shows a button that confirms the address. It never
// consumes the link: mail scanners and link previews fetch every GET link
// in a message, which would otherwise spend it before its owner clicks.
func (srv *Server) handleConfirmForm(w http.ResponseWriter, r *http.Request) {
	// The secret is in this page's URL; the pages' Referrer-Policy
	// (same-origin) keeps it from reaching another site through a link.
	secret := r.URL.Query().Get("token")
	if secret == "" || len(secret) > 2*tokens.SecretLen {
		srv.renderPage(w, r, http.StatusBadRequest, pages.PageConfirm, pages.ConfirmData{Error: msgConfirmInvalid, ResendURL: srv.prefix + "/confirm/resend"})
		return
	}
	srv.renderPage(w, r, http.StatusOK, pages.PageConfirm, pages.ConfirmData{CSRFToken: srv.csrf.issue(w, r), Token: secret})
}

// handleConfirm spends the link and shows what happens next.
func (srv *Server) handleConfirm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	resend := srv.prefix + "/confirm/resend"
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		srv.renderPage(w, r, http.StatusForbidden, pages.PageConfirm, pages.ConfirmData{Error: msgConfirmExpired, ResendURL: resend})
		return
	}
	client, _ := srv.clients.of(r)
	out, err := srv.registrar.Confirm(r.Context(), r.PostForm.Get("token"), client.String())
	var throttled *registration.ThrottledError
	switch {
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", retryAfterSeconds(throttled.RetryAfter))
		srv.renderPage(w, r, http.StatusTooManyRequests, pages.PageConfirm, pages.ConfirmData{Error: msgRegisterThrottled, ResendURL: resend})
	case errors.Is(err, tokens.ErrInvalidToken):
		srv.renderPage(w, r, http.StatusBadRequest, pages.PageConfirm, pages.ConfirmData{Error: msgConfirmInvalid, ResendURL: resend})
	case err != nil:
		srv.renderError(w, r, err)
	default:
		srv.renderOutcome(w, r, out, true)
	}
}

// handleResendForm asks for the address to send a new link to.
func (srv *Server) handleResendForm(w http.ResponseWriter, r *http.Request) {
	srv.renderPage(w, r, http.StatusOK, pages.PageResend, pages.ResendData{CSRFToken: srv.csrf.issue(w, r),
		Email: limit(r.URL.Query().Get("email"), 320), SignInURL: srv.prefix + "/signin"})
}

// handleResend sends a new link. The answer is the same whether or not an
// account waits for confirmation at that address (the service does the
// lookup after answering).
func (srv *Server) handleResend(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	d := pages.ResendData{Email: limit(r.PostForm.Get("email"), 320), SignInURL: srv.prefix + "/signin"}
	render := func(status int) {
		d.CSRFToken = srv.csrf.issue(w, r)
		srv.renderPage(w, r, status, pages.PageResend, d)
	}
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		d.Error = msgRegisterExpired
		render(http.StatusForbidden)
		return
	}
	client, _ := srv.clients.of(r)
	err := srv.registrar.Resend(r.Context(), d.Email, client.String())
	var throttled *registration.ThrottledError
	var invalid *authz.ValidationError
	switch {
	case err == nil:
		d.Notice = msgResendSent
		render(http.StatusOK)
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", retryAfterSeconds(throttled.RetryAfter))
		d.Error = msgRegisterThrottled
		render(http.StatusTooManyRequests)
	case errors.As(err, &invalid):
		d.Error = invalid.Message
		render(http.StatusBadRequest)
	case errors.Is(err, registration.ErrOff):
		srv.renderError(w, r, errNoPage())
	default:
		srv.renderError(w, r, err)
	}
}

// limit cuts s to at most n bytes (form echoes stay bounded).
func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
