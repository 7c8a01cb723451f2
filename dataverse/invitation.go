package dataverse

import (
	"errors"
	"time"
)

// ErrInvitationNotFound means no active Power Pages invitation has the
// code asked for.
var ErrInvitationNotFound = errors.New("dataverse: invitation not found")

// Invitation is a Power Pages invitation (adx_invitation) as a directory
// returns it: what redeeming it needs, and its code only where it must be
// mailed (see Code).
type Invitation struct {
	// ID is adx_invitationid, a lower-case GUID.
	ID string
	// Name is adx_name.
	Name string
	// Group is true for adx_type Group (756150001), false for Single.
	Group bool
	// Expiry is adx_expirydate; zero means it never expires.
	Expiry time.Time
	// MaxRedemptions is adx_maximumredemptions; 0 means no limit, as in
	// the portal source.
	MaxRedemptions int
	// Redemptions is adx_redemptions: how many were counted in Dataverse.
	Redemptions int
	// InviteContactID is the invited contact (adx_invitecontact), a
	// lower-case GUID; empty when the invitation names none.
	InviteContactID string
	// AssignToAccountID is adx_assigntoaccount; empty for none.
	AssignToAccountID string
	// Active is statecode 0.
	Active bool
	// Redeemed is statuscode 756150001 (Redeemed).
	Redeemed bool
	// WebRoleIDs are the web roles the invitation assigns
	// (adx_invitation_webrole, or the enhanced model's relationship).
	WebRoleIDs []string
	// CreatedOn is createdon.
	CreatedOn time.Time
	// Code is adx_invitationcode, set only where the caller must mail it
	// (a directory's NewInvitations); empty otherwise. A bearer secret:
	// never log it.
	Code string
}

// Redeemable reports whether inv can be redeemed at now: active, not
// expired and with redemptions left.
func (inv *Invitation) Redeemable(now time.Time) bool {
	if !inv.Active {
		return false
	}
	if !inv.Expiry.IsZero() && now.After(inv.Expiry) {
		return false
	}
	return inv.MaxRedemptions == 0 || inv.Redemptions < inv.MaxRedemptions
}

// InvitationRedemption is one redemption to write back to Dataverse.
type InvitationRedemption struct {
	// InvitationID is adx_invitationid.
	InvitationID string `json:"invitation_id"`
	// N is the redemption's number: after it, adx_redemptions is at least
	// N. Writing it back twice counts it once.
	N int `json:"n"`
	// ContactID is the redeeming contact; empty when the new user is bound
	// to none.
	ContactID string `json:"contact_id,omitempty"`
	// Group says how the contact is recorded: adx_redeemedcontact for a
	// single invitation, the adx_invitation_redeemedcontacts relationship
	// for a group one.
	Group bool `json:"group"`
	// MaxRedemptions is the invitation's maximum (0 = no limit): when N
	// reaches it the status becomes Redeemed.
	MaxRedemptions int `json:"max"`
	// WebRoleIDs are given to the contact.
	WebRoleIDs []string `json:"web_roles,omitempty"`
	// AssignToAccountID becomes the contact's parent account; empty for none.
	AssignToAccountID string `json:"account_id,omitempty"`
}
