// Package bulk holds the bulk actions of the admin console on users, as
// jobs.Actions: link and unlink (binding mode), approve, reject, disable,
// enable, generate credentials (mail a set-password link), force a password
// change, and delete. Each runs one user through the service that does it
// alone (accounts, onboarding), which audits it with the job's actor and
// keeps every rule (the break-glass administrator, the binding checks), so
// a bulk action is exactly its single actions in a row.
//
// A job may run an action twice for one user (the item in flight when its
// worker died, see package jobs): each action is written so that running
// it again does no harm. Where the second run would find its own first
// run's result (a rejected or deleted user is gone, an approved one is no
// longer pending) it counts as done.
package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/onboarding"
)

// The names of the actions, as jobs.Options.Actions registers them.
const (
	Link          = "users.link"           // params {"mode": "username"|"custom"}
	Unlink        = "users.unlink"         // binding mode none
	Approve       = "users.approve"        // a pending registration
	Reject        = "users.reject"         // params {"reason": "..."} (optional)
	Disable       = "users.disable"        // status disabled
	Enable        = "users.enable"         // status active
	Credentials   = "users.credentials"    // mail a set-password link
	ForcePassword = "users.force_password" // must choose a new password at next sign-in
	Delete        = "users.delete"
)

// Accounts changes accounts. *accounts.Service satisfies it.
type Accounts interface {
	SetStatus(ctx context.Context, login string, st authz.Status, actor string) error
	SetBindings(ctx context.Context, changes []accounts.BindingChange, actor string) ([]accounts.BindingResult, error)
	DeleteUser(ctx context.Context, login, actor string) error
	ForcePasswordChange(ctx context.Context, who, actor string) (*authz.User, error)
	UserByID(ctx context.Context, id string) (*authz.User, error)
}

// Approvals decides pending registrations. *onboarding.Service satisfies it.
type Approvals interface {
	Approve(ctx context.Context, who, actor string) (*authz.User, error)
	Reject(ctx context.Context, who, reason, actor string) (*authz.User, error)
}

// SetPasswordLinks mails a user a link to set a new password.
type SetPasswordLinks interface {
	SendSetPasswordLink(ctx context.Context, who, actor string) (*onboarding.LinkSent, error)
}

// Options are the services the actions use. Accounts is required; an
// action whose service is nil is not offered (Actions leaves it out).
type Options struct {
	Accounts  Accounts
	Approvals Approvals
	Links     SetPasswordLinks
}

// Actions returns the bulk actions the services in o can run, by name.
func Actions(o Options) map[string]jobs.Action {
	a := o.Accounts
	out := map[string]jobs.Action{
		Link: jobs.Funcs{Check: checkLink, Do: func(ctx context.Context, id string, p json.RawMessage, actor string) error {
			var lp linkParams
			_ = json.Unmarshal(p, &lp) // checked at submit
			return setMode(ctx, a, id, authz.BindingMode(lp.Mode), actor)
		}},
		Unlink: jobs.Funcs{Do: func(ctx context.Context, id string, _ json.RawMessage, actor string) error {
			return setMode(ctx, a, id, authz.BindingNone, actor)
		}},
		Disable: jobs.Funcs{Do: func(ctx context.Context, id string, _ json.RawMessage, actor string) error {
			return setStatus(ctx, a, id, authz.StatusDisabled, actor)
		}},
		Enable: jobs.Funcs{Do: func(ctx context.Context, id string, _ json.RawMessage, actor string) error {
			return setStatus(ctx, a, id, authz.StatusActive, actor)
		}},
		ForcePassword: jobs.Funcs{Do: func(ctx context.Context, id string, _ json.RawMessage, actor string) error {
			_, err := a.ForcePasswordChange(ctx, id, actor)
			return err
		}},
		Delete: jobs.Funcs{Do: func(ctx context.Context, id string, _ json.RawMessage, actor string) error {
			u, err := a.UserByID(ctx, id)
			if errors.Is(err, authz.ErrNotFound) {
				return nil // gone already: a second run of this item, or deleted meanwhile
			}
			if err != nil {
				return err
			}
			if err := a.DeleteUser(ctx, u.Username, actor); err != nil && !errors.Is(err, authz.ErrNotFound) {
				return err
			}
			return nil
		}},
	}
	if o.Approvals != nil {
		out[Approve] = jobs.Funcs{Do: func(ctx context.Context, id string, _ json.RawMessage, actor string) error {
			_, err := o.Approvals.Approve(ctx, id, actor)
			if errors.Is(err, onboarding.ErrNotPending) {
				if u, uerr := a.UserByID(ctx, id); uerr == nil && u.Status == authz.StatusActive {
					return nil // approved already
				}
				return jobs.Fail("not_pending", "The user does not wait for approval.", err)
			}
			return err
		}}
		out[Reject] = jobs.Funcs{Check: checkReject, Do: func(ctx context.Context, id string, p json.RawMessage, actor string) error {
			var rp rejectParams
			_ = json.Unmarshal(p, &rp)
			_, err := o.Approvals.Reject(ctx, id, rp.Reason, actor)
			switch {
			case errors.Is(err, authz.ErrNotFound):
				return nil // a rejected registration is deleted: gone already
			case errors.Is(err, onboarding.ErrNotPending):
				return jobs.Fail("not_pending", "The user does not wait for approval.", err)
			}
			return err
		}}
	}
	if o.Links != nil {
		out[Credentials] = jobs.Funcs{Do: func(ctx context.Context, id string, _ json.RawMessage, actor string) error {
			_, err := o.Links.SendSetPasswordLink(ctx, id, actor)
			return err
		}}
	}
	return out
}

// linkParams are the params of Link.
type linkParams struct {
	Mode string `json:"mode"`
}

func checkLink(p json.RawMessage) error {
	var lp linkParams
	dec := json.NewDecoder(strings.NewReader(string(p)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lp); err != nil {
		return &authz.ValidationError{Field: "params", Message: `Link takes {"mode": "username"} or {"mode": "custom"}.`}
	}
	if m := authz.BindingMode(lp.Mode); m != authz.BindingUsername && m != authz.BindingCustom {
		return &authz.ValidationError{Field: "mode", Message: "Users are linked in bulk by username or by the custom filter; a lookup names one contact per user."}
	}
	return nil
}

// rejectParams are the params of Reject.
type rejectParams struct {
	Reason string `json:"reason,omitempty"`
}

func checkReject(p json.RawMessage) error {
	var rp rejectParams
	dec := json.NewDecoder(strings.NewReader(string(p)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rp); err != nil {
		return &authz.ValidationError{Field: "params", Message: `Reject takes {"reason": "..."} or no parameters.`}
	}
	_, err := onboarding.ValidateReason(rp.Reason)
	return err
}

// setMode binds user id in mode (none, username or custom).
func setMode(ctx context.Context, a Accounts, id string, mode authz.BindingMode, actor string) error {
	res, err := a.SetBindings(ctx, []accounts.BindingChange{{User: id, Binding: authz.Binding{Mode: mode}}}, actor)
	if err == nil {
		err = res[0].Err
	}
	return err
}

// setStatus sets the status of user id.
func setStatus(ctx context.Context, a Accounts, id string, st authz.Status, actor string) error {
	u, err := a.UserByID(ctx, id)
	if err != nil {
		return err
	}
	if st == authz.StatusActive && u.Status == authz.StatusPending {
		return jobs.Fail("pending", "The user waits for approval: approve the registration instead.", nil)
	}
	return a.SetStatus(ctx, u.Username, st, actor)
}
