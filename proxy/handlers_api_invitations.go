package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
)

// apiInvitationRoutes are the REST API's routes of crmgate invitations.
func (srv *Server) apiInvitationRoutes() []guardedRoute {
	return []guardedRoute{
		{Method: "POST", Path: "/api/invitations", Permission: permissions.InvitationsWrite, handler: srv.apiCreateInvitation},
		{Method: "GET", Path: "/api/invitations", Permission: permissions.InvitationsRead, handler: srv.apiListInvitations},
		{Method: "GET", Path: "/api/invitations/{id}", Permission: permissions.InvitationsRead, handler: srv.apiGetInvitation},
		{Method: "POST", Path: "/api/invitations/{id}/resend", Permission: permissions.InvitationsWrite, handler: srv.apiResendInvitation},
		{Method: "POST", Path: "/api/invitations/{id}/revoke", Permission: permissions.InvitationsWrite, handler: srv.apiRevokeInvitation},
		{Method: "DELETE", Path: "/api/invitations/{id}", Permission: permissions.InvitationsWrite, handler: srv.apiRevokeInvitation},
	}
}

// apiNewInvitation is the body of POST /api/invitations.
type apiNewInvitation struct {
	invitations.NewInvitation
	// ExpiresInHours is the validity in hours; 0 means the default (14 days).
	ExpiresInHours int `json:"expires_in_hours,omitempty"`
}

// apiInvitationList is the JSON of GET /api/invitations.
type apiInvitationList struct {
	Invitations []*invitations.Invitation `json:"invitations"`
	// Next is the cursor of the next page (?after=); empty on the last.
	Next string `json:"next,omitempty"`
}

func (srv *Server) apiCreateInvitation(w http.ResponseWriter, r *http.Request, c apiCaller) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var body apiNewInvitation
	if err := dec.Decode(&body); err != nil || dec.More() {
		srv.renderAPIError(w, r, apiBadRequest(`the body must be {"email":"...","contact_id":"...","kind":"single|group","max_redemptions":1,"expires_in_hours":336,"roles":[],"redirect_url":"/welcome"}`))
		return
	}
	ttl, err := invitations.TTLHours(body.ExpiresInHours)
	if err != nil {
		srv.renderAPIError(w, r, apiBadRequest("expires_in_hours must be 1 to "+strconv.Itoa(invitations.MaxTTLHours)))
		return
	}
	body.TTL = ttl
	if body.RedirectURL != "" {
		if _, ok := srv.redirects.validate(body.RedirectURL); !ok {
			srv.renderAPIError(w, r, apiBadRequest("redirect_url must be a path on this site, such as /welcome"))
			return
		}
	}
	inv, err := srv.invitations.Create(r.Context(), body.NewInvitation, c.actor())
	if err != nil {
		srv.renderAPIError(w, r, apiInvitationError(err))
		return
	}
	writeJSON(w, http.StatusCreated, inv)
}

// apiInvitationError maps the service's errors to API answers.
func apiInvitationError(err error) error {
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_" + verr.Field, Title: "Bad request", Message: verr.Message, Err: err}
	case errors.Is(err, authz.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
			Message: "No such invitation, or it is revoked, expired or used up.", Err: err}
	case errors.Is(err, dataverse.ErrUnavailable):
		return errDataverseUnavailable(err, "Dataverse cannot be reached to check the contact; nothing was created. Try again later.")
	}
	return err
}

func (srv *Server) apiListInvitations(w http.ResponseWriter, r *http.Request, _ apiCaller) {
	q := r.URL.Query()
	var after int64
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			srv.renderAPIError(w, r, apiBadRequest("after must be an invitation id"))
			return
		}
		after = n
	}
	limit, err := apiLimit(q)
	if err != nil {
		srv.renderAPIError(w, r, err)
		return
	}
	if limit == 0 {
		limit = authz.EffectiveLimit(0)
	}
	list, err := srv.invitations.List(r.Context(), after, limit)
	if err != nil {
		srv.renderAPIError(w, r, err)
		return
	}
	out := apiInvitationList{Invitations: list}
	if len(list) == limit {
		out.Next = strconv.FormatInt(list[len(list)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// apiInvitationID is the {id} of the path, or an answered 404.
func (srv *Server) apiInvitationID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		srv.renderAPIError(w, r, apiInvitationError(authz.ErrNotFound))
		return 0, false
	}
	return id, true
}

func (srv *Server) apiGetInvitation(w http.ResponseWriter, r *http.Request, _ apiCaller) {
	id, ok := srv.apiInvitationID(w, r)
	if !ok {
		return
	}
	inv, err := srv.invitations.Get(r.Context(), id)
	if err != nil {
		srv.renderAPIError(w, r, apiInvitationError(err))
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (srv *Server) apiResendInvitation(w http.ResponseWriter, r *http.Request, c apiCaller) {
	id, ok := srv.apiInvitationID(w, r)
	if !ok {
		return
	}
	inv, err := srv.invitations.Resend(r.Context(), id, c.actor())
	if err != nil {
		srv.renderAPIError(w, r, apiInvitationError(err))
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (srv *Server) apiRevokeInvitation(w http.ResponseWriter, r *http.Request, c apiCaller) {
	id, ok := srv.apiInvitationID(w, r)
	if !ok {
		return
	}
	if err := srv.invitations.Revoke(r.Context(), id, c.actor()); err != nil {
		srv.renderAPIError(w, r, apiInvitationError(err))
		return
	}
	inv, err := srv.invitations.Get(r.Context(), id)
	if err != nil {
		srv.renderAPIError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}
