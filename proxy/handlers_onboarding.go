package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
)

// Onboarding approves and rejects registrations that wait for approval
// and generates credentials for Dataverse contacts, for the REST API.
// *onboarding.Service satisfies it.
type Onboarding interface {
	Approve(ctx context.Context, who, actor string) (*authz.User, error)
	Reject(ctx context.Context, who, reason, actor string) (*authz.User, error)
	ApproveMany(ctx context.Context, who []string, actor string) ([]onboarding.Decision, error)
	RejectMany(ctx context.Context, who []string, reason, actor string) ([]onboarding.Decision, error)
	InviteContacts(ctx context.Context, req onboarding.InviteRequest, actor string) ([]onboarding.InviteResult, error)
}

// onboardingRoutes are the REST API's approval and credentials routes,
// none when the capability is not configured.
func (srv *Server) onboardingRoutes() []guardedRoute {
	if srv.onboarding == nil {
		return nil
	}
	return []guardedRoute{
		{Method: "POST", Path: "/api/users/{id}/approve", Permission: permissions.UsersApprove, handler: srv.apiApprove},
		{Method: "POST", Path: "/api/users/{id}/reject", Permission: permissions.UsersApprove, handler: srv.apiReject},
		{Method: "POST", Path: "/api/users/approve", Permission: permissions.UsersApprove, handler: srv.apiDecideMany(false)},
		{Method: "POST", Path: "/api/users/reject", Permission: permissions.UsersApprove, handler: srv.apiDecideMany(true)},
		{Method: "POST", Path: "/api/users/invite-contacts", Permission: permissions.UsersCredentials, handler: srv.apiInviteContacts},
	}
}

// decodeAPIBody decodes exactly one JSON object of at most limit bytes
// into v, refusing unknown fields; an empty body leaves v as it is when
// emptyOK. It answers the error itself and reports whether to go on.
func (srv *Server) decodeAPIBody(w http.ResponseWriter, r *http.Request, limit int64, v any, emptyOK bool, shape string) bool {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	raw, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		srv.renderAPIError(w, r, &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Title: "Request too large",
			Message: "The body is larger than " + strconv.FormatInt(limit, 10) + " bytes; split the list."})
		return false
	case err != nil:
		srv.renderAPIError(w, r, err)
		return false
	case len(raw) == 0 && emptyOK:
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = cmp.Or(terr, errors.New("data after the JSON body"))
		}
	}
	if err != nil {
		srv.renderAPIError(w, r, apiBadRequest(shape))
		return false
	}
	return true
}

// apiRejectBody is the optional body of POST /api/users/{id}/reject.
type apiRejectBody struct {
	Reason string `json:"reason"`
}

func (srv *Server) apiApprove(w http.ResponseWriter, r *http.Request, c apiCaller) {
	if !srv.decodeAPIBody(w, r, maxFormBytes, &struct{}{}, true, "the body must be empty or {}") {
		return
	}
	u, err := srv.onboarding.Approve(r.Context(), r.PathValue("id"), c.actor())
	if err != nil {
		srv.renderAPIError(w, r, srv.apiDecisionError(r, err))
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// apiRejected is the answer of a rejection: the account is gone.
type apiRejected struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
	Rejected bool   `json:"rejected"`
}

func (srv *Server) apiReject(w http.ResponseWriter, r *http.Request, c apiCaller) {
	var body apiRejectBody
	if !srv.decodeAPIBody(w, r, maxFormBytes, &body, true, `the body must be empty or {"reason":"..."}`) {
		return
	}
	u, err := srv.onboarding.Reject(r.Context(), r.PathValue("id"), body.Reason, c.actor())
	if err != nil {
		srv.renderAPIError(w, r, srv.apiDecisionError(r, err))
		return
	}
	writeJSON(w, http.StatusOK, apiRejected{ID: u.ID, Username: u.Username, Email: u.Email, Rejected: true})
}

// apiDecisionsBody is the body of POST /api/users/approve and /reject.
type apiDecisionsBody struct {
	Users  []string `json:"users"`
	Reason string   `json:"reason,omitempty"`
}

// apiDecisionResult is the outcome of one user, at its index.
type apiDecisionResult struct {
	User  string        `json:"user"`
	ID    string        `json:"id,omitempty"`
	OK    bool          `json:"ok"`
	Error *apiItemError `json:"error,omitempty"`
}

// apiDecideMany approves (or, with reject, rejects) many users, each on
// its own, and answers 200 with one result per user.
func (srv *Server) apiDecideMany(reject bool) func(w http.ResponseWriter, r *http.Request, c apiCaller) {
	shape := `the body must be {"users":["<id, username or email>", ...]}`
	if reject {
		shape = `the body must be {"users":["<id, username or email>", ...], "reason":"optional text for the mail"}`
	}
	return func(w http.ResponseWriter, r *http.Request, c apiCaller) {
		var body apiDecisionsBody
		if !srv.decodeAPIBody(w, r, maxBulkBodyBytes, &body, false, shape) {
			return
		}
		if !reject && body.Reason != "" {
			srv.renderAPIError(w, r, apiBadRequest("an approval takes no reason"))
			return
		}
		if len(body.Users) == 0 || len(body.Users) > onboarding.MaxDecisions {
			srv.renderAPIError(w, r, apiBadRequest("users must list 1 to "+strconv.Itoa(onboarding.MaxDecisions)+" users; split longer lists"))
			return
		}
		var res []onboarding.Decision
		var err error
		if reject {
			res, err = srv.onboarding.RejectMany(r.Context(), body.Users, body.Reason, c.actor())
		} else {
			res, err = srv.onboarding.ApproveMany(r.Context(), body.Users, c.actor())
		}
		if err != nil {
			srv.renderAPIError(w, r, apiValidation(err))
			return
		}
		out := struct {
			Results []apiDecisionResult `json:"results"`
		}{Results: make([]apiDecisionResult, len(res))}
		for i, d := range res {
			out.Results[i] = apiDecisionResult{User: d.User, ID: d.ID, OK: d.Err == nil}
			if d.Err != nil {
				e := srv.apiDecisionError(r, d.Err)
				out.Results[i].Error = &apiItemError{Code: e.Code, Message: e.Message}
			}
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// apiDecisionError maps the error of an approval or rejection.
func (srv *Server) apiDecisionError(r *http.Request, err error) *Error {
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		return apiBadRequest(verr.Message)
	case errors.Is(err, onboarding.ErrNotPending):
		return &Error{Status: http.StatusConflict, Code: "not_pending", Title: "Not waiting for approval",
			Message: "This user is not waiting for approval (already active or disabled, or decided a moment ago)."}
	case errors.Is(err, authz.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found", Message: "There is no user with this id, username or email."}
	case errors.Is(err, authz.ErrStale):
		return &Error{Status: http.StatusConflict, Code: "conflict", Title: "Conflict", Message: "The user kept changing while this decision was saved; please try again."}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: "canceled", Title: "Not done", Message: "The request ended before this user was handled.", Err: err}
	default:
		srv.log.ErrorContext(r.Context(), "approval decision failed", "request_id", requestID(r.Context()), "err", err)
		return &Error{Status: http.StatusInternalServerError, Code: "internal", Title: "Error",
			Message: "The gateway could not save this decision. Please try again.", Err: err}
	}
}

// apiInviteBody is the body of POST /api/users/invite-contacts.
type apiInviteBody struct {
	ContactIDs []string `json:"contact_ids,omitempty"`
	Filter     string   `json:"filter,omitempty"`
	DryRun     bool     `json:"dry_run,omitempty"`
}

const inviteShape = `the body must be {"contact_ids":["<GUID>", ...]} or {"filter":"statecode eq 0 and ..."}, with an optional "dry_run": true`

// apiInviteSummary counts the results by outcome.
type apiInviteSummary struct {
	Created     int `json:"created"`
	WouldCreate int `json:"would_create"`
	Skipped     int `json:"skipped"`
	Failed      int `json:"failed"`
}

func (srv *Server) apiInviteContacts(w http.ResponseWriter, r *http.Request, c apiCaller) {
	var body apiInviteBody
	if !srv.decodeAPIBody(w, r, maxBulkBodyBytes, &body, false, inviteShape) {
		return
	}
	res, err := srv.onboarding.InviteContacts(r.Context(), onboarding.InviteRequest{ContactIDs: body.ContactIDs,
		Filter: body.Filter, DryRun: body.DryRun}, c.actor())
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		srv.renderAPIError(w, r, apiBadRequest(verr.Message))
		return
	case errors.Is(err, onboarding.ErrNoDirectory):
		srv.renderAPIError(w, r, &Error{Status: http.StatusNotImplemented, Code: "no_dataverse", Title: "Not available",
			Message: "No Dataverse is configured, so there are no contacts to generate credentials for."})
		return
	case errors.Is(err, dataverse.ErrUnavailable):
		srv.renderAPIError(w, r, errDataverseUnavailable(err, msgDataverseUnavailable))
		return
	case err != nil:
		srv.log.ErrorContext(r.Context(), "invite contacts failed", "request_id", requestID(r.Context()), "err", err)
		srv.renderAPIError(w, r, &Error{Status: http.StatusBadGateway, Code: "dataverse_error", Title: "Error",
			Message: "Dataverse refused the contact query.", Err: err})
		return
	}
	out := struct {
		Summary apiInviteSummary          `json:"summary"`
		Results []onboarding.InviteResult `json:"results"`
	}{Results: res}
	if out.Results == nil {
		out.Results = []onboarding.InviteResult{}
	}
	for _, x := range res {
		switch x.Outcome {
		case onboarding.Created:
			out.Summary.Created++
		case onboarding.WouldCreate:
			out.Summary.WouldCreate++
		case onboarding.Skipped:
			out.Summary.Skipped++
		case onboarding.Failed:
			out.Summary.Failed++
		}
	}
	writeJSON(w, http.StatusOK, out)
}
