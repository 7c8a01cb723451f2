package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
)

// Invitations creates, reads, resends and revokes crmgate's invitations;
// *invitations.Service satisfies it. Each change is audited by the
// service with actor.
type Invitations interface {
	Create(ctx context.Context, ni invitations.NewInvitation, actor string) (*invitations.Invitation, error)
	// List returns up to limit invitations with an id above after, in id
	// order.
	List(ctx context.Context, after int64, limit int) ([]*invitations.Invitation, error)
	// Get returns invitation id or an error wrapping authz.ErrNotFound.
	Get(ctx context.Context, id int64) (*invitations.Invitation, error)
	// Resend mails an outstanding invitation again with a new code; one
	// revoked, expired or used up gives authz.ErrNotFound.
	Resend(ctx context.Context, id int64, actor string) (*invitations.Invitation, error)
	// Revoke revokes invitation id; one revoked before (or missing) gives
	// authz.ErrNotFound.
	Revoke(ctx context.Context, id int64, actor string) error
	// Redemptions returns who redeemed the invitations keys names
	// (invitations.Key, DataverseKey), oldest first, at most perKey each.
	Redemptions(ctx context.Context, keys []string, perKey int) (map[string][]invitations.Redemption, error)
}

// DataverseInvitations lists the Power Pages invitations (adx_invitation)
// of Dataverse; *crmclient.Directory satisfies it.
type DataverseInvitations interface {
	// RecentInvitations returns up to limit invitations, active or not,
	// newest first, without their codes.
	RecentInvitations(ctx context.Context, limit int) ([]*dataverse.Invitation, error)
}

// dataverseInvitationsShown is how many Dataverse invitations the list
// shows: the newest ones.
const dataverseInvitationsShown = 50

func (c *Console) invitationRoutes() []Route {
	if c.o.Invitations == nil {
		return nil
	}
	route := func(method, path, perm string, h Handler) Route {
		return Route{Method: method, Path: "/admin" + path, Permission: perm, Handler: h}
	}
	return []Route{
		route("GET", "/invitations", permissions.InvitationsRead, c.handleInvitations),
		route("GET", "/invitations/new", permissions.InvitationsWrite, c.handleInvitationForm),
		route("POST", "/invitations", permissions.InvitationsWrite, c.handleCreateInvitation),
		route("GET", "/invitations/{id}", permissions.InvitationsRead, c.handleInvitation),
		route("POST", "/invitations/{id}/resend", permissions.InvitationsWrite, c.handleResendInvitation),
		route("POST", "/invitations/{id}/revoke", permissions.InvitationsWrite, c.handleRevokeInvitation),
	}
}

// The states of an invitation as the console shows them.
const (
	statePending  = "pending"
	stateRedeemed = "redeemed"
	stateRevoked  = "revoked"
	stateExpired  = "expired"
)

// invitationState is the state of inv at now: revoked, redeemed (used
// up), expired or pending, in that order of precedence.
func invitationState(inv *invitations.Invitation, now time.Time) string {
	switch {
	case !inv.RevokedAt.IsZero():
		return stateRevoked
	case inv.Redemptions >= inv.MaxRedemptions:
		return stateRedeemed
	case !now.Before(inv.ExpiresAt):
		return stateExpired
	}
	return statePending
}

// redemptionView is one redemption of an invitation.
type redemptionView struct {
	N int
	// UserID is the account that redeemed (a new one, or one that linked
	// the invitation); Username is empty when the account no longer exists.
	UserID, Username string
	At               time.Time
}

// invitationView is a crmgate invitation with its state and redemptions.
type invitationView struct {
	*invitations.Invitation
	State string
	// Redeemed are the first redemptions, oldest first, at most a page's
	// share; MoreRedeemed counts those left out.
	Redeemed     []redemptionView
	MoreRedeemed int
	// Outstanding reports that the code still works (resend and revoke
	// apply).
	Outstanding bool
	// Creator is the username of CreatedBy when it is an account; empty
	// for another actor ("cli", "apikey:<id>") or a deleted account.
	Creator string
}

// dataverseInvitationView is a Power Pages invitation for the list.
type dataverseInvitationView struct {
	*dataverse.Invitation
	State        string
	Redeemed     []redemptionView
	MoreRedeemed int
}

// invitationsPage is the data of the invitations list.
type invitationsPage struct {
	Invitations []invitationView
	After       int64
	Next, First template.URL // links; empty when there is none
	CanWrite    bool
	// Dataverse is whether Dataverse's invitations are listed; DvError
	// says why they could not be read.
	Dataverse   bool
	DvList      []dataverseInvitationView
	DvError     string
	DvTruncated bool
}

func (c *Console) handleInvitations(w http.ResponseWriter, r *http.Request, caller Caller) {
	ctx := r.Context()
	var after int64
	if a := r.URL.Query().Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			c.o.RenderError(w, r, errBadRequest("The page cursor (after) must be an invitation number."))
			return
		}
		after = n
	}
	list, err := c.o.Invitations.List(ctx, after, pageSize)
	if err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	now := c.now()
	data := invitationsPage{After: after, CanWrite: caller.can(permissions.InvitationsWrite)}
	names := usernames{}
	keys := make([]string, len(list))
	for i, inv := range list {
		keys[i] = invitations.Key(inv.ID)
	}
	redeemed := c.redemptions(ctx, keys, redeemersListed)
	for _, inv := range list {
		data.Invitations = append(data.Invitations, c.invitationView(ctx, inv, now, redeemed, names))
	}
	if len(list) == pageSize {
		data.Next = template.URL(c.prefix + "/admin/invitations?after=" + strconv.FormatInt(list[len(list)-1].ID, 10))
	}
	if after > 0 {
		data.First = template.URL(c.prefix + "/admin/invitations")
	}
	if dv := c.o.DataverseInvitations; dv != nil {
		data.Dataverse = true
		dvs, err := dv.RecentInvitations(ctx, dataverseInvitationsShown)
		switch {
		case errors.Is(err, dataverse.ErrUnavailable):
			data.DvError = "Dataverse cannot be reached just now, so its invitations are not shown. Please try again shortly."
		case err != nil:
			c.log.WarnContext(ctx, "console: Dataverse invitations not read", "err", err)
			data.DvError = "Dataverse's invitations could not be read."
		default:
			data.DvTruncated = len(dvs) == dataverseInvitationsShown
			dvKeys := make([]string, len(dvs))
			for i, d := range dvs {
				dvKeys[i] = invitations.DataverseKey(d.ID)
			}
			dvRedeemed := c.redemptions(ctx, dvKeys, redeemersListed)
			for _, d := range dvs {
				v := dataverseInvitationView{Invitation: d, State: dataverseState(d, now)}
				v.Redeemed = names.named(ctx, c.o.Users, dvRedeemed[invitations.DataverseKey(d.ID)])
				v.MoreRedeemed = max(d.Redemptions-len(v.Redeemed), 0)
				data.DvList = append(data.DvList, v)
			}
		}
	}
	c.render(w, r, http.StatusOK, caller, "invitations", "invitations", "Invitations", data, notice(r), "")
}

// dataverseState is the state of a Power Pages invitation at now.
func dataverseState(d *dataverse.Invitation, now time.Time) string {
	switch {
	case d.Redeemed || (d.MaxRedemptions > 0 && d.Redemptions >= d.MaxRedemptions):
		return stateRedeemed
	case !d.Active:
		return "inactive"
	case !d.Expiry.IsZero() && now.After(d.Expiry):
		return stateExpired
	}
	return statePending
}

// How many redemptions of one invitation a page names: a few per row of
// the list, more on the invitation's page; each costs an account read.
const (
	redeemersListed = 3
	redeemersShown  = 200
)

// invitationView is inv's view at now, naming at most max of its
// redemptions.
func (c *Console) invitationView(ctx context.Context, inv *invitations.Invitation, now time.Time, redeemed map[string][]redemptionView, names usernames) invitationView {
	v := invitationView{Invitation: inv, State: invitationState(inv, now), Outstanding: inv.Outstanding(now),
		Creator: names.of(ctx, c.o.Users, inv.CreatedBy)}
	v.Redeemed = names.named(ctx, c.o.Users, redeemed[invitations.Key(inv.ID)])
	v.MoreRedeemed = max(inv.Redemptions-len(v.Redeemed), 0)
	return v
}

// named returns rs with their accounts' usernames.
func (n usernames) named(ctx context.Context, users Users, rs []redemptionView) []redemptionView {
	out := make([]redemptionView, len(rs))
	for i, r := range rs {
		r.Username = n.of(ctx, users, r.UserID)
		out[i] = r
	}
	return out
}

// usernames caches the usernames of the accounts a page names.
type usernames map[string]string

// of returns the username of account id; empty when id is not an
// account's (another actor) or the account is gone.
func (n usernames) of(ctx context.Context, users Users, id string) string {
	if id == "" {
		return ""
	}
	name, seen := n[id]
	if !seen {
		// LookupUser also finds by username and email: only an account
		// whose id is id counts.
		if u, err := users.LookupUser(ctx, id); err == nil && u.ID == id {
			name = u.Username
		}
		n[id] = name
	}
	return name
}

// redemptions reads who redeemed the invitations keys names, at most
// perKey each, from the store, without the usernames (usernames.named adds
// them). A failure is logged and shows none: the counts stay on the page.
func (c *Console) redemptions(ctx context.Context, keys []string, perKey int) map[string][]redemptionView {
	out := map[string][]redemptionView{}
	if len(keys) == 0 {
		return out
	}
	rs, err := c.o.Invitations.Redemptions(ctx, keys, perKey)
	if err != nil {
		c.log.WarnContext(ctx, "console: invitation redemptions not read", "err", err)
		return out
	}
	for k, list := range rs {
		for _, r := range list {
			out[k] = append(out[k], redemptionView{N: r.N, UserID: r.UserID, At: r.At})
		}
	}
	return out
}

// invitationPage is the data of one invitation's page.
type invitationPage struct {
	Inv      invitationView
	CanWrite bool
}

// loadInvitation reads the {id} invitation, or answers 404.
func (c *Console) loadInvitation(w http.ResponseWriter, r *http.Request) (*invitations.Invitation, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		c.o.RenderError(w, r, errNotFound("invitation"))
		return nil, false
	}
	inv, err := c.o.Invitations.Get(r.Context(), id)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		c.o.RenderError(w, r, errNotFound("invitation"))
		return nil, false
	case err != nil:
		c.o.RenderError(w, r, err)
		return nil, false
	}
	return inv, true
}

func (c *Console) handleInvitation(w http.ResponseWriter, r *http.Request, caller Caller) {
	inv, ok := c.loadInvitation(w, r)
	if !ok {
		return
	}
	c.renderInvitation(w, r, http.StatusOK, caller, inv, notice(r), "")
}

func (c *Console) renderInvitation(w http.ResponseWriter, r *http.Request, status int, caller Caller, inv *invitations.Invitation, notice, errMsg string) {
	v := c.invitationView(r.Context(), inv, c.now(), c.redemptions(r.Context(), []string{invitations.Key(inv.ID)}, redeemersShown), usernames{})
	c.render(w, r, status, caller, "invitation", "invitations", "Invitation "+strconv.FormatInt(inv.ID, 10),
		invitationPage{Inv: v, CanWrite: caller.can(permissions.InvitationsWrite)}, notice, errMsg)
}

// notOutstanding is the user-safe message of an action on an invitation
// whose code no longer works.
func notOutstanding(inv *invitations.Invitation, now time.Time, action string) string {
	switch invitationState(inv, now) {
	case stateRevoked:
		return "This invitation was revoked on " + formatTime(inv.RevokedAt) + ", so it cannot be " + action + ". Create a new invitation instead."
	case stateRedeemed:
		return "This invitation was already redeemed, so it cannot be " + action + ". Create a new invitation to invite someone else."
	case stateExpired:
		return "This invitation expired on " + formatTime(inv.ExpiresAt) + ", so it cannot be " + action + ". Create a new invitation instead."
	}
	return ""
}

func (c *Console) handleResendInvitation(w http.ResponseWriter, r *http.Request, caller Caller) {
	inv, ok := c.loadInvitation(w, r)
	if !ok {
		return
	}
	if msg := notOutstanding(inv, c.now(), "sent again"); msg != "" {
		c.renderInvitation(w, r, http.StatusConflict, caller, inv, "", msg)
		return
	}
	_, err := c.o.Invitations.Resend(r.Context(), inv.ID, caller.Actor())
	if errors.Is(err, authz.ErrNotFound) {
		// It ran out (or was revoked) since it was read: say how.
		if cur, gerr := c.o.Invitations.Get(r.Context(), inv.ID); gerr == nil {
			if msg := notOutstanding(cur, c.now(), "sent again"); msg != "" {
				c.renderInvitation(w, r, http.StatusConflict, caller, cur, "", msg)
				return
			}
		}
		c.o.RenderError(w, r, errNotFound("invitation"))
		return
	}
	if err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	c.redirect(w, r, "/invitations/"+strconv.FormatInt(inv.ID, 10), "invitation-resent")
}

func (c *Console) handleRevokeInvitation(w http.ResponseWriter, r *http.Request, caller Caller) {
	inv, ok := c.loadInvitation(w, r)
	if !ok {
		return
	}
	if msg := notOutstanding(inv, c.now(), "revoked"); msg != "" {
		c.renderInvitation(w, r, http.StatusConflict, caller, inv, "", msg)
		return
	}
	id := strconv.FormatInt(inv.ID, 10)
	if !c.confirmed(w, r, caller, "invitations", confirmation{
		Question: "Revoke the invitation of " + inv.Email + "?",
		Detail:   "Its code stops working at once; accounts already made with it stay. This cannot be undone.",
		Action:   "/admin/invitations/" + id + "/revoke", Button: "Revoke", Back: "/admin/invitations/" + id}) {
		return
	}
	err := c.o.Invitations.Revoke(r.Context(), inv.ID, caller.Actor())
	if errors.Is(err, authz.ErrNotFound) {
		if cur, gerr := c.o.Invitations.Get(r.Context(), inv.ID); gerr == nil {
			c.renderInvitation(w, r, http.StatusConflict, caller, cur, "", cmp.Or(notOutstanding(cur, c.now(), "revoked"), "This invitation was already revoked."))
			return
		}
		c.o.RenderError(w, r, errNotFound("invitation"))
		return
	}
	if err != nil {
		c.o.RenderError(w, r, err)
		return
	}
	c.redirect(w, r, "/invitations/"+id, "invitation-revoked")
}

// invitationForm is the create form's values, as entered, and its
// messages per field.
type invitationForm struct {
	Email, ContactID, Kind, MaxRedemptions, ExpiresInHours, Roles, RedirectURL string
	// Errors holds a message per field name (the form's input names).
	Errors map[string]string
	// Kinds are the kind select's options.
	Kinds []option
	// MaxHours is the longest validity in hours; DefaultHours the default.
	MaxHours, DefaultHours int
	// Contacts reports that an invitation may name a contact (Dataverse
	// is configured).
	Contacts bool
	// Head and Tail are the text fields before and after the kind.
	Head, Tail []formField
}

func (c *Console) newInvitationForm(f invitationForm) invitationForm {
	f.Kinds = options(f.Kind, string(invitations.Single), "Single: one person, once", string(invitations.Group), "Group: several people")
	f.MaxHours, f.DefaultHours = invitations.MaxTTLHours, int(invitations.DefaultTTL/time.Hour)
	f.Contacts = c.o.Contacts != nil
	if f.Errors == nil {
		f.Errors = map[string]string{}
	}
	field := func(name, label, typ, value, hint string) formField {
		return formField{Name: name, Label: label, Type: typ, Value: value, Hint: hint, Error: f.Errors[name]}
	}
	f.Head = []formField{field("email", "Email address", "email", f.Email, "The code is mailed here.")}
	if f.Contacts {
		f.Head = append(f.Head, field("contact_id", "Contact id (optional)", "text", f.ContactID,
			"A Dataverse contact the new account is bound to (single invitations). With no email address, the contact's is used."))
	}
	f.Tail = []formField{
		field("max_redemptions", "Maximum redemptions (group)", "text", f.MaxRedemptions,
			fmt.Sprintf("How many people may use a group invitation's code, 1 to %d; empty means 1.", invitations.MaxRedemptionsLimit)),
		field("expires_in_hours", "Valid for (hours)", "text", f.ExpiresInHours,
			fmt.Sprintf("Empty means %d hours (%d days); at most %d.", f.DefaultHours, f.DefaultHours/24, f.MaxHours)),
		field("roles", "Roles (optional)", "text", f.Roles, "Local roles the new account gets, separated by commas."),
		field("redirect_url", "After redeeming, go to (optional)", "text", f.RedirectURL,
			"A path on this site, such as /welcome; empty means the home page."),
	}
	// A message for a field the form does not show (contact_id without
	// Dataverse) goes with the email address.
	for name, msg := range f.Errors {
		shown := false
		for _, ff := range append(append([]formField{}, f.Head...), f.Tail...) {
			shown = shown || ff.Name == name
		}
		if !shown && name != "kind" && len(f.Head) > 0 {
			f.Head[0].Error = cmp.Or(f.Head[0].Error, msg)
		}
	}
	return f
}

func (c *Console) handleInvitationForm(w http.ResponseWriter, r *http.Request, caller Caller) {
	c.render(w, r, http.StatusOK, caller, "invitation_new", "invitations", "New invitation",
		c.newInvitationForm(invitationForm{Kind: string(invitations.Single)}), "", "")
}

// formFields maps a validation error's field to the form's input.
var formFields = map[string]string{"expires_in": "expires_in_hours"}

func (c *Console) handleCreateInvitation(w http.ResponseWriter, r *http.Request, caller Caller) {
	if !c.parseForm(w, r) {
		return
	}
	pf := r.PostForm
	f := invitationForm{Email: strings.TrimSpace(pf.Get("email")), ContactID: strings.TrimSpace(pf.Get("contact_id")),
		Kind: pf.Get("kind"), MaxRedemptions: strings.TrimSpace(pf.Get("max_redemptions")),
		ExpiresInHours: strings.TrimSpace(pf.Get("expires_in_hours")), Roles: pf.Get("roles"),
		RedirectURL: strings.TrimSpace(pf.Get("redirect_url")), Errors: map[string]string{}}
	ni := invitations.NewInvitation{Email: f.Email, ContactID: f.ContactID, Kind: invitations.Kind(f.Kind),
		Roles:       strings.FieldsFunc(f.Roles, func(r rune) bool { return r == ',' || r == ' ' }),
		RedirectURL: f.RedirectURL}
	if f.MaxRedemptions != "" {
		n, err := strconv.Atoi(f.MaxRedemptions)
		if err != nil {
			f.Errors["max_redemptions"] = "The maximum must be a whole number."
		}
		ni.MaxRedemptions = n
	}
	if f.ExpiresInHours != "" {
		h, err := strconv.Atoi(f.ExpiresInHours)
		if err == nil {
			ni.TTL, err = invitations.TTLHours(h)
		}
		if err != nil {
			f.Errors["expires_in_hours"] = fmt.Sprintf("The validity must be 1 to %d hours (%d days).", invitations.MaxTTLHours, invitations.MaxTTLHours/24)
		}
	}
	if len(f.Errors) > 0 {
		c.invitationFormError(w, r, caller, f, "")
		return
	}
	inv, err := c.o.Invitations.Create(r.Context(), ni, caller.Actor())
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		field := verr.Field
		if to, ok := formFields[field]; ok {
			field = to
		}
		f.Errors[field] = verr.Message
		c.invitationFormError(w, r, caller, f, "")
		return
	case errors.Is(err, dataverse.ErrUnavailable):
		c.invitationFormError(w, r, caller, f, "Dataverse cannot be reached to check the contact, so nothing was created. Please try again shortly.")
		return
	case err != nil:
		c.o.RenderError(w, r, err)
		return
	}
	c.redirect(w, r, "/invitations/"+strconv.FormatInt(inv.ID, 10), "invitation-created")
}

// invitationFormError shows the create form again with the entered values
// and the messages.
func (c *Console) invitationFormError(w http.ResponseWriter, r *http.Request, caller Caller, f invitationForm, msg string) {
	status := http.StatusBadRequest
	if msg == "" {
		msg = "The invitation was not created: please correct the fields marked below."
	} else {
		status = http.StatusServiceUnavailable
	}
	c.render(w, r, status, caller, "invitation_new", "invitations", "New invitation", c.newInvitationForm(f), "", msg)
}

// sampleInvitation is an invitation for the trial render.
var sampleInvitation = invitationView{Invitation: &invitations.Invitation{ID: 1, Email: "ana@example.com", ContactID: "c1",
	Kind: invitations.Group, MaxRedemptions: 2, Redemptions: 1, Roles: []string{"member"}, CreatedBy: "u1"},
	State: statePending, Outstanding: true, Creator: "ana", MoreRedeemed: 1,
	Redeemed: []redemptionView{{N: 1, UserID: "u1", Username: "ana"}, {N: 2, UserID: "u2"}}}
