package crmclient_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/dataverse"
)

// TestDirectoryInvitations reads an invitation by its code (exact match
// only) with the web roles it assigns, and writes a redemption back in the
// emulator: the roles and account reach the contact, the count, the
// redeemed contact and the Redeemed status reach the invitation, and a
// repeated write-back counts once.
func TestDirectoryInvitations(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	if err := h.LoadSeed(strings.NewReader(`{"associations": [
	  {"relationship": "adx_invitation_webrole", "adx_invitationid": "` + inviteID + `", "adx_webroleid": "` + staffRole + `"}]}`)); err != nil {
		t.Fatal(err)
	}
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	inv, err := d.InvitationByCode(ctx, "Xy7-secret")
	if err != nil {
		t.Fatal(err)
	}
	if inv.ID != inviteID || inv.Group || inv.MaxRedemptions != 1 || inv.Redemptions != 0 || inv.InviteContactID != annID ||
		!inv.Active || inv.Redeemed || !slices.Equal(inv.WebRoleIDs, []string{staffRole}) || inv.Code != "" {
		t.Fatalf("InvitationByCode = %+v", inv)
	}
	if !inv.Redeemable(opsNow) {
		t.Fatal("not redeemable")
	}
	for _, code := range []string{"xy7-SECRET", "Xy7-secre", "", "Xy7-secret%"} {
		if _, err := d.InvitationByCode(ctx, code); !errors.Is(err, dataverse.ErrInvitationNotFound) {
			t.Errorf("code %q: %v, want ErrInvitationNotFound", code, err)
		}
	}
	byID, err := d.InvitationByID(ctx, inviteID)
	if err != nil || byID.ID != inviteID || len(byID.WebRoleIDs) != 1 {
		t.Fatalf("InvitationByID = %+v, %v", byID, err)
	}
	r := dataverse.InvitationRedemption{InvitationID: inviteID, N: 1, ContactID: bobID, MaxRedemptions: 1,
		WebRoleIDs: []string{staffRole}, AssignToAccountID: accountID}
	for range 2 {
		if err := d.RecordInvitationRedemption(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	row, _ := h.Row("adx_invitations", inviteID)
	if row["adx_redemptions"] != float64(1) || row["statuscode"] != float64(crmclient.InvitationStatusRedeemed) ||
		row["_adx_redeemedcontact_value"] != bobID || row["statecode"] != float64(0) {
		t.Fatalf("invitation after write-back: %v", row)
	}
	if roles := h.Associated("contacts", bobID, "adx_webrole_contact"); !slices.Contains(roles, staffRole) {
		t.Fatalf("contact roles = %v", roles)
	}
	if ct, _ := h.Row("contacts", bobID); ct["_parentcustomerid_value"] != accountID {
		t.Fatalf("contact account = %v", ct["_parentcustomerid_value"])
	}
	// An earlier number written after a later one leaves the count.
	if err := d.RecordInvitationRedemption(ctx, dataverse.InvitationRedemption{InvitationID: inviteID, N: 1, MaxRedemptions: 1}); err != nil {
		t.Fatal(err)
	}
	if row, _ := h.Row("adx_invitations", inviteID); row["adx_redemptions"] != float64(1) {
		t.Fatalf("count after a repeated write-back: %v", row["adx_redemptions"])
	}
	// A group invitation: contacts are associated, the status stays until the maximum.
	if err := d.RecordInvitationRedemption(ctx, dataverse.InvitationRedemption{InvitationID: expiredInv, N: 8, ContactID: annID, Group: true}); err != nil {
		t.Fatal(err)
	}
	if got := h.Associated("adx_invitations", expiredInv, "adx_invitation_redeemedcontacts"); !slices.Equal(got, []string{annID}) {
		t.Fatalf("redeemed contacts = %v", got)
	}
	if row, _ := h.Row("adx_invitations", expiredInv); row["adx_redemptions"] != float64(8) || row["statuscode"] != float64(1) {
		t.Fatalf("group invitation: %v", row)
	}
	// New invitations in createdon order, with their codes.
	news, err := d.NewInvitations(ctx, time.Time{}, 10)
	if err != nil || len(news) != 2 {
		t.Fatalf("NewInvitations = %v, %v", news, err)
	}
	for _, n := range news {
		if n.Code == "" || n.CreatedOn.IsZero() {
			t.Fatalf("new invitation without code or createdon: %+v", n)
		}
	}
	if later, err := d.NewInvitations(ctx, news[1].CreatedOn.Add(time.Second), 10); err != nil || len(later) != 0 {
		t.Fatalf("NewInvitations after the last = %v, %v", later, err)
	}
}

// TestDirectoryRecentInvitations lists invitations newest first, active
// or not, with their roles and counts and without their codes, at most
// the limit.
func TestDirectoryRecentInvitations(t *testing.T) {
	ctx := context.Background()
	c, h, _ := newOps(t, nil, nil)
	if err := h.LoadSeed(strings.NewReader(`{"associations": [
	  {"relationship": "adx_invitation_webrole", "adx_invitationid": "` + inviteID + `", "adx_webroleid": "` + staffRole + `"}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, "adx_invitations", crmclient.ByID(id(expiredInv)), map[string]any{"statecode": 1, "statuscode": 2}, ""); err != nil {
		t.Fatal(err)
	}
	d := crmclient.NewDirectory(c, crmclient.WebRoleModelStandard)
	list, err := d.RecentInvitations(ctx, 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("RecentInvitations = %v, %v", list, err)
	}
	byID := map[string]*dataverse.Invitation{}
	for i, inv := range list {
		byID[inv.ID] = inv
		if inv.Code != "" || inv.CreatedOn.IsZero() {
			t.Errorf("listed with a code or without createdon: %+v", inv)
		}
		if i > 0 {
			prev := list[i-1]
			if prev.CreatedOn.Before(inv.CreatedOn) || prev.CreatedOn.Equal(inv.CreatedOn) && prev.ID < inv.ID {
				t.Errorf("not newest first: %s (%v) before %s (%v)", prev.ID, prev.CreatedOn, inv.ID, inv.CreatedOn)
			}
		}
	}
	if a := byID[inviteID]; a == nil || !a.Active || a.InviteContactID != annID || !slices.Equal(a.WebRoleIDs, []string{staffRole}) {
		t.Errorf("Ann's invitation = %+v", a)
	}
	if o := byID[expiredInv]; o == nil || o.Active || !o.Group || o.Redemptions != 7 {
		t.Errorf("the inactive group invitation = %+v", o)
	}
	if one, err := d.RecentInvitations(ctx, 1); err != nil || len(one) != 1 || one[0].ID != list[0].ID {
		t.Errorf("RecentInvitations(1) = %v, %v", one, err)
	}
	if _, err := d.RecentInvitations(ctx, 0); err == nil {
		t.Error("a limit of 0 was accepted")
	}
}
