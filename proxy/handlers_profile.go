package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/profile"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy/pages"
)

// ProfileEditor shows and changes a user's own profile, synced to the
// bound contact. *profile.Service satisfies it; see
// profile.Service.UpdateProfile.
type ProfileEditor interface {
	ProfileFields(u *authz.User) []profile.Field
	UpdateProfile(ctx context.Context, userID string, p profile.Profile, actor string) (*profile.Result, error)
}

// Profile page messages.
const (
	msgProfileSaved       = "Your profile was saved."
	msgProfileUnchanged   = "Nothing to save: your profile is unchanged."
	msgProfileInvalid     = "Please correct the marked field."
	msgProfileUnavailable = "Your profile cannot be saved right now because your customer record cannot be reached. Your changes have not been saved; please try again in a few minutes."
	msgProfileFormExpired = "This form expired. Please review your changes and save again."
)

// profileLabels are the visible labels and autocomplete tokens of the
// profile's fields.
var profileLabels = map[string]struct{ label, autocomplete string }{
	authz.FieldFirstName:   {"First name", "given-name"},
	authz.FieldLastName:    {"Last name", "family-name"},
	authz.FieldDisplayName: {"Display name", "nickname"},
	authz.FieldEmail:       {"Email address", "email"},
}

// handleProfileForm shows the signed-in user's profile.
func (srv *Server) handleProfileForm(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := srv.profileUser(w, r)
	if !ok {
		return
	}
	srv.renderProfile(w, r, http.StatusOK, sess, srv.profileData(u, nil, nil, ""))
}

// handleProfile saves the signed-in user's profile. The form carries only
// the editable fields; a missing one keeps its value.
func (srv *Server) handleProfile(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Bad request",
			Message: "The form could not be read.", Err: err})
		return
	}
	sess, u, ok := srv.profileUser(w, r)
	if !ok {
		return
	}
	entered := map[string]string{}
	for _, f := range []string{authz.FieldFirstName, authz.FieldLastName, authz.FieldDisplayName} {
		if vs, ok := r.PostForm[f]; ok && len(vs) > 0 {
			entered[f] = vs[0]
		}
	}
	if !srv.csrf.valid(r, r.PostForm.Get("csrf_token")) {
		data := srv.profileData(u, entered, nil, "")
		data.Error = msgProfileFormExpired
		srv.renderProfile(w, r, http.StatusForbidden, sess, data)
		return
	}
	// A field the form does not carry (a read-only one) keeps its value.
	p := profile.Profile{FirstName: u.FirstName, LastName: u.LastName, DisplayName: u.DisplayName}
	for f, v := range entered {
		switch f {
		case authz.FieldFirstName:
			p.FirstName = v
		case authz.FieldLastName:
			p.LastName = v
		case authz.FieldDisplayName:
			p.DisplayName = v
		}
	}
	res, err := srv.profiles.UpdateProfile(r.Context(), u.ID, p, u.ID)
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		data := srv.profileData(u, entered, map[string]string{verr.Field: verr.Message}, "")
		data.Error = msgProfileInvalid
		srv.renderProfile(w, r, http.StatusBadRequest, sess, data)
		return
	case errors.Is(err, dataverse.ErrUnavailable):
		srv.log.Warn("profile not saved: Dataverse unavailable", "request_id", requestID(r.Context()), "user_id", u.ID, "err", err)
		w.Header().Set("Retry-After", "30")
		data := srv.profileData(u, entered, nil, "")
		data.Error = msgProfileUnavailable
		srv.renderProfile(w, r, http.StatusServiceUnavailable, sess, data)
		return
	case err != nil:
		srv.renderError(w, r, err)
		return
	}
	notice := msgProfileSaved
	if res.User.UpdatedAt.Equal(u.UpdatedAt) {
		notice = msgProfileUnchanged
	}
	if len(res.Kept) > 0 {
		names := make([]string, 0, len(res.Kept))
		for _, f := range res.Kept {
			names = append(names, strings.ToLower(profileLabels[f].label))
		}
		notice += " These fields had been changed in your customer record in the meantime, so the record's values were kept: " +
			strings.Join(names, ", ") + ". Please review them."
	}
	// The session shows the new names at once rather than at its next
	// security-stamp check, with a new revision, so the next proxied request
	// carries them in a freshly signed token.
	sess.setUser(res.User)
	if err := srv.writeSessionFor(w, r, sess); err != nil {
		srv.renderError(w, r, err)
		return
	}
	srv.renderProfile(w, r, http.StatusOK, sess, srv.profileData(res.User, nil, nil, notice))
}

// profileUser returns the request's session and its user. When there is
// none it answers the request (a redirect to sign-in, or an error) and ok
// is false.
func (srv *Server) profileUser(w http.ResponseWriter, r *http.Request) (*Session, *authz.User, bool) {
	sess, err := srv.loadSession(w, r)
	if err != nil {
		srv.renderError(w, r, err)
		return nil, nil, false
	}
	if sess == nil {
		if r.Method != http.MethodGet {
			srv.renderError(w, r, errUnauthenticated())
			return nil, nil, false
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, srv.prefix+"/signin?redirect_url="+url.QueryEscape(srv.prefix+"/profile"), http.StatusFound)
		return nil, nil, false
	}
	u, err := srv.users.UserByID(r.Context(), sess.UserID)
	if err != nil {
		srv.renderError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Title: "Temporarily unavailable",
			Message: "Your profile cannot be shown just now. Please try again shortly.", RetryAfter: 5 * time.Second, Err: err})
		return nil, nil, false
	}
	return sess, u, true
}

// profileData builds the page of u's profile; entered overrides the values
// shown (after a failed save), fieldErrs are messages by field name.
func (srv *Server) profileData(u *authz.User, entered, fieldErrs map[string]string, notice string) pages.ProfileData {
	data := pages.ProfileData{Username: u.Username, Notice: notice}
	for _, pf := range srv.profiles.ProfileFields(u) {
		l := profileLabels[pf.Name]
		f := pages.ProfileField{Name: pf.Name, Label: l.label, Value: pf.Value, Autocomplete: l.autocomplete,
			ReadOnly: !pf.Editable, Error: fieldErrs[pf.Name]}
		if v, ok := entered[pf.Name]; ok && pf.Editable {
			f.Value = v
		}
		switch {
		case pf.Name == authz.FieldEmail:
			f.Hint = "Your email address is also how you sign in, so it cannot be changed here. Please contact the site's support to change it."
		case !pf.Editable:
			f.Hint = "Kept in step with your customer record, where it is managed."
		case pf.Column != "":
			f.Hint = "Also saved to your customer record."
		}
		data.Fields = append(data.Fields, f)
	}
	return data
}

func (srv *Server) renderProfile(w http.ResponseWriter, r *http.Request, status int, sess *Session, data pages.ProfileData) {
	data.CSRFToken = srv.csrf.issue(w, r)
	w.Header().Set("Cache-Control", "no-store")
	if err := srv.pages.Render(w, status, pages.PageProfile, data); err != nil {
		srv.log.Error("render profile page", "request_id", requestID(r.Context()), "user_id", sess.UserID, "err", err)
	}
}
