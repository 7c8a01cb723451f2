package crmclient

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/crmgate/crmgate/dataverse"
)

// invitationRoleRelationship is the N:N relationship from adx_invitation
// to the web roles it assigns, per model
// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/adx_invitation):
// adx_invitation_webrole ("Assign To Web Roles", standard model) and
// adx_invitation_mspp_webrole_powerpagecomponent (enhanced model).
func invitationRoleRelationship(m WebRoleModel) (nav, id string, err error) {
	switch m {
	case WebRoleModelStandard:
		return "adx_invitation_webrole", "adx_webroleid", nil
	case WebRoleModelEnhanced:
		return "adx_invitation_mspp_webrole_powerpagecomponent", "powerpagecomponentid", nil
	}
	return "", "", invalidArg("web role model %d", int(m))
}

// invitationRow is an adx_invitation row with its expanded web roles.
type invitationRow struct {
	Invitation
	CreatedOn *time.Time `json:"createdon"`
}

var invitationListColumns = append(append([]string{}, invitationColumns...), "createdon")

// toDataverseInvitation turns a row (with the role relationship nav
// expanded) into the directory's form.
func toDataverseInvitation(raw json.RawMessage, nav, idCol string) (*dataverse.Invitation, error) {
	var row invitationRow
	if err := json.Unmarshal(raw, &row); err != nil {
		return nil, fmt.Errorf("crmclient: decode invitation: %w", err)
	}
	var rel map[string]json.RawMessage
	if err := json.Unmarshal(raw, &rel); err != nil {
		return nil, fmt.Errorf("crmclient: decode invitation: %w", err)
	}
	if _, paged := rel[nav+"@odata.nextLink"]; paged {
		// A partial role list must not be taken for the whole
		// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-entity-using-web-api).
		return nil, fmt.Errorf("crmclient: %s of invitation %s came back paged; roles incomplete", nav, row.ID)
	}
	inv := &dataverse.Invitation{
		ID: row.ID.String(), Name: row.Name, Group: row.Type == InvitationGroup,
		MaxRedemptions: row.MaxRedemptions, Redemptions: row.Redemptions,
		Active: row.StateCode == StateActive, Redeemed: row.StatusCode == InvitationStatusRedeemed,
		WebRoleIDs: []string{},
	}
	if row.Expiry != nil {
		inv.Expiry = row.Expiry.UTC()
	}
	if row.CreatedOn != nil {
		inv.CreatedOn = row.CreatedOn.UTC()
	}
	if row.InviteContactID != nil && !row.InviteContactID.IsZero() {
		inv.InviteContactID = row.InviteContactID.String()
	}
	if row.AssignToAccountID != nil && !row.AssignToAccountID.IsZero() {
		inv.AssignToAccountID = row.AssignToAccountID.String()
	}
	var roles []map[string]json.RawMessage
	if v, ok := rel[nav]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &roles); err != nil {
			return nil, fmt.Errorf("crmclient: decode %s: %w", nav, err)
		}
	}
	for _, r := range roles {
		var g GUID
		if err := json.Unmarshal(r[idCol], &g); err != nil || g.IsZero() {
			return nil, fmt.Errorf("crmclient: decode %s: bad %s", nav, idCol)
		}
		inv.WebRoleIDs = append(inv.WebRoleIDs, g.String())
	}
	return inv, nil
}

// InvitationByCode returns the active invitation whose adx_invitationcode
// is exactly code, with the web roles it assigns, in one request. No
// match wraps dataverse.ErrInvitationNotFound; Dataverse being unavailable
// wraps dataverse.ErrUnavailable. It checks neither expiry nor
// redemptions (dataverse.Invitation.Redeemable does).
func (d *Directory) InvitationByCode(ctx context.Context, code string) (*dataverse.Invitation, error) {
	if code == "" {
		return nil, fmt.Errorf("crmclient: directory: invitation by code: %w", dataverse.ErrInvitationNotFound)
	}
	if err := validText("invitation code", code); err != nil {
		return nil, fmt.Errorf("crmclient: directory: invitation by code: %w: %w", dataverse.ErrInvitationNotFound, err)
	}
	nav, idCol, err := invitationRoleRelationship(d.model)
	if err != nil {
		return nil, err
	}
	var found []*dataverse.Invitation
	var codes []string
	_, err = d.client.List(ctx, SetInvitations, ListOptions{
		Query: Query{Select: invitationListColumns,
			Filter: F.And(F.Eq("adx_invitationcode", code), F.Eq("statecode", StateActive)), Top: lookupLimit},
		Expand: []Expand{{Nav: nav, Select: []string{idCol}}},
	}, func(raw json.RawMessage) error {
		inv, err := toDataverseInvitation(raw, nav, idCol)
		if err != nil {
			return err
		}
		var c struct {
			Code string `json:"adx_invitationcode"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		found, codes = append(found, inv), append(codes, c.Code)
		return nil
	})
	if err != nil {
		return nil, directoryError("invitation by code", err, false)
	}
	// Dataverse compares strings without case; a code is a secret, so
	// only an exact match counts.
	var exact []*dataverse.Invitation
	for i, inv := range found {
		if codes[i] == code {
			exact = append(exact, inv)
		}
	}
	switch len(exact) {
	case 1:
		return exact[0], nil
	case 0:
		return nil, fmt.Errorf("crmclient: directory: invitation by code: %w", dataverse.ErrInvitationNotFound)
	}
	return nil, fmt.Errorf("crmclient: directory: invitation by code: %w: %d invitations have this code", ErrAmbiguous, len(exact))
}

// NewInvitations returns up to limit active invitations created at or
// after since (zero: any time), ordered by createdon and id (keyset paging: pass the last
// one's CreatedOn again and skip the ids already seen), each with its web
// roles and its code (Invitation.Code), for mailing.
func (d *Directory) NewInvitations(ctx context.Context, since time.Time, limit int) ([]*dataverse.Invitation, error) {
	if limit < 1 || limit > 5000 {
		return nil, invalidArg("limit %d (want 1 to 5,000)", limit)
	}
	nav, idCol, err := invitationRoleRelationship(d.model)
	if err != nil {
		return nil, err
	}
	filter := F.Eq("statecode", StateActive)
	if !since.IsZero() {
		filter = F.And(F.Ge("createdon", since.UTC()), filter)
	}
	var out []*dataverse.Invitation
	_, err = d.client.List(ctx, SetInvitations, ListOptions{
		Query: Query{Select: invitationListColumns,
			Filter:  filter,
			OrderBy: []string{"createdon asc", "adx_invitationid asc"}, Top: limit},
		Expand: []Expand{{Nav: nav, Select: []string{idCol}}},
	}, func(raw json.RawMessage) error {
		inv, err := toDataverseInvitation(raw, nav, idCol)
		if err != nil {
			return err
		}
		var c struct {
			Code string `json:"adx_invitationcode"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("crmclient: decode invitation: %w", err)
		}
		inv.Code = c.Code
		out = append(out, inv)
		return nil
	})
	if err != nil {
		return nil, directoryError("new invitations", err, false)
	}
	return out, nil
}

// RecordInvitationRedemption writes redemption r back to Dataverse as the
// portal does (https://github.com/Adoxio/xRM-Portals-Community-Edition,
// InvitationManager.cs; the web roles and account as the Power Pages
// invitation's "Assign to" settings describe,
// https://learn.microsoft.com/power-pages/security/invite-contacts): the
// web roles and the parent account are given to the contact, a group
// invitation's contact is associated through
// adx_invitation_redeemedcontacts, and then, only while adx_redemptions is
// below r.N, adx_redemptions becomes r.N, a single invitation's
// adx_redeemedcontact the contact, and the status Redeemed (756150001)
// once r.N reaches the maximum, in one PATCH with If-Match. Every step can
// be repeated: a redemption written twice is counted once, and one
// written after a later one leaves the count alone. A concurrent change of
// the invitation fails with a 412 (retry).
func (d *Directory) RecordInvitationRedemption(ctx context.Context, r dataverse.InvitationRedemption) error {
	id, err := ParseGUID(r.InvitationID)
	if err != nil || id.IsZero() || r.N < 1 {
		return invalidArg("invitation redemption: bad invitation id or number")
	}
	var contact GUID
	if r.ContactID != "" {
		if contact, err = ParseGUID(r.ContactID); err != nil || contact.IsZero() {
			return invalidArg("invitation redemption: bad contact id")
		}
		for _, role := range r.WebRoleIDs {
			g, err := ParseGUID(role)
			if err != nil {
				return invalidArg("invitation redemption: bad web role id")
			}
			if err := d.client.AddContactToWebRole(ctx, d.model, contact, g); err != nil {
				return directoryError("invitation redemption: web role", err, false)
			}
		}
		if r.AssignToAccountID != "" {
			acc, err := ParseGUID(r.AssignToAccountID)
			if err != nil {
				return invalidArg("invitation redemption: bad account id")
			}
			if err := d.client.Update(ctx, SetContacts, ByID(contact),
				map[string]any{"parentcustomerid_account@odata.bind": "/" + SetAccounts + "(" + acc.String() + ")"}, ""); err != nil {
				return directoryError("invitation redemption: account", err, false)
			}
		}
		if r.Group {
			if err := d.client.Associate(ctx, SetInvitations, id, "adx_invitation_redeemedcontacts", SetContacts, contact); err != nil {
				return directoryError("invitation redemption: redeemed contacts", err, false)
			}
		}
	}
	var cur Invitation
	etag, err := d.client.Retrieve(ctx, SetInvitations, ByID(id), RetrieveOptions{Select: []string{"adx_redemptions", "statuscode"}}, &cur)
	if err != nil {
		return directoryError("invitation redemption: read", err, false)
	}
	if cur.Redemptions >= r.N {
		return nil // counted already
	}
	body := map[string]any{"adx_redemptions": r.N}
	if !r.Group && r.ContactID != "" {
		body["adx_redeemedcontact@odata.bind"] = "/" + SetContacts + "(" + contact.String() + ")"
	}
	if r.MaxRedemptions > 0 && r.N >= r.MaxRedemptions {
		body["statuscode"] = InvitationStatusRedeemed
	}
	if err := d.client.Update(ctx, SetInvitations, ByID(id), body, etag); err != nil {
		if IsConflict(err) {
			return fmt.Errorf("crmclient: directory: invitation redemption: changed meanwhile, retry: %w", err)
		}
		return directoryError("invitation redemption: count", err, false)
	}
	return nil
}

// InvitationByID returns invitation id, active or not, with the web roles
// it assigns. A missing one wraps dataverse.ErrInvitationNotFound.
func (d *Directory) InvitationByID(ctx context.Context, id string) (*dataverse.Invitation, error) {
	g, err := ParseGUID(id)
	if err != nil || g.IsZero() {
		return nil, fmt.Errorf("crmclient: directory: invitation by id: %w", dataverse.ErrInvitationNotFound)
	}
	nav, idCol, err := invitationRoleRelationship(d.model)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	_, err = d.client.Retrieve(ctx, SetInvitations, ByID(g), RetrieveOptions{Select: invitationListColumns,
		Expand: []Expand{{Nav: nav, Select: []string{idCol}}}}, &raw)
	if IsNotFound(err) {
		return nil, fmt.Errorf("crmclient: directory: invitation by id: %w: %w", dataverse.ErrInvitationNotFound, err)
	}
	if err != nil {
		return nil, directoryError("invitation by id", err, false)
	}
	return toDataverseInvitation(raw, nav, idCol)
}

// recentInvitationColumns are the list's columns without the code, a
// secret the console has no use for.
var recentInvitationColumns = slices.DeleteFunc(slices.Clone(invitationListColumns), func(c string) bool { return c == "adx_invitationcode" })

// RecentInvitations returns up to limit invitations, active or not, newest
// first (createdon, then id, descending), each with the web roles it
// assigns and without its code, for the admin console.
func (d *Directory) RecentInvitations(ctx context.Context, limit int) ([]*dataverse.Invitation, error) {
	if limit < 1 || limit > 5000 {
		return nil, invalidArg("limit %d (want 1 to 5,000)", limit)
	}
	nav, idCol, err := invitationRoleRelationship(d.model)
	if err != nil {
		return nil, err
	}
	var out []*dataverse.Invitation
	_, err = d.client.List(ctx, SetInvitations, ListOptions{
		Query:  Query{Select: recentInvitationColumns, OrderBy: []string{"createdon desc", "adx_invitationid desc"}, Top: limit},
		Expand: []Expand{{Nav: nav, Select: []string{idCol}}},
	}, func(raw json.RawMessage) error {
		inv, err := toDataverseInvitation(raw, nav, idCol)
		if err != nil {
			return err
		}
		out = append(out, inv)
		return nil
	})
	if err != nil {
		return nil, directoryError("recent invitations", err, false)
	}
	return out, nil
}
