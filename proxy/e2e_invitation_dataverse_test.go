package proxy_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
)

const (
	dvInviteID   = "e0000000-0000-4000-8000-0000000000e1"
	dvInvitee    = "c0000000-0000-4000-8000-0000000000d1"
	dvInviteRole = "d0000000-0000-4000-8000-0000000000d1"
	dvCode       = "PP-Invite-7731"
)

const dvInviteSeed = `{
 "contacts": [
  {"contactid": "` + dvInvitee + `", "firstname": "Dana", "lastname": "Vu", "emailaddress1": "dana@example.test",
   "adx_identity_logonenabled": true},
  {"contactid": "` + annID + `", "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.test",
   "adx_identity_username": "ann", "adx_identity_logonenabled": true}
 ],
 "adx_webroles": [{"adx_webroleid": "` + dvInviteRole + `", "adx_name": "Customers"}],
 "adx_invitations": [
  {"adx_invitationid": "` + dvInviteID + `", "adx_name": "Invite Dana", "adx_invitationcode": "` + dvCode + `", "adx_type": 756150000,
   "adx_maximumredemptions": 1, "adx_redemptions": 0, "adx_inviteContact@odata.bind": "/contacts(` + dvInvitee + `)"}
 ],
 "associations": [{"relationship": "adx_invitation_webrole", "adx_invitationid": "` + dvInviteID + `", "adx_webroleid": "` + dvInviteRole + `"}]
}`

// dvInviteHarness is a gateway over an emulator seeded with a Power Pages
// invitation for Dana.
func dvInviteHarness(t *testing.T, mods ...func(*wiring.Options)) (*harness, *dataversetest.Server, *crmclient.Client) {
	t.Helper()
	emu, client := seededContactEmulator(t, dvInviteSeed)
	all := append([]func(*wiring.Options){func(o *wiring.Options) {
		o.Invitations = crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
		o.Mail = authztest.Composer
	}}, mods...)
	return contactHarnessWith(t, client, harnessConfig{}, all...), emu, client
}

// deliverWriteBacks hands the pending write-backs of user to d, as the
// outbox worker does, and returns the first error.
func (h *harness) deliverWriteBacks(userID string, d outbox.Deliverer) error {
	h.t.Helper()
	evs, err := h.db.OutboxEvents(context.Background(), userID)
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Kind != invitations.OutboxKind {
			continue
		}
		n++
		if err := d.Deliver(context.Background(), e); err != nil {
			return err
		}
	}
	if n == 0 {
		h.t.Fatalf("no write-back enqueued for %s", userID)
	}
	return nil
}

// TestInvitationDataverseRedeem: a Power Pages invitation's code opens the
// page with the invited address masked; redeeming mails a confirmation to
// the contact's address and makes nothing until it is followed (a GET of
// the link changes nothing); then the account is bound to the contact and
// the redemption is written back to Dataverse (count, redeemed contact,
// status Redeemed, the invitation's web role), once however often the
// write-back is delivered. A Dataverse outage during a redemption gets a
// clear answer and changes nothing; an outage during the write-back is
// retried.
func TestInvitationDataverseRedeem(t *testing.T) {
	h, emu, client := dvInviteHarness(t)
	p := h.browser()
	resp, body := h.get(p, "/.auth/invitation?code="+url.QueryEscape(dvCode))
	if resp.StatusCode != 200 || !strings.Contains(body, "d•••@example.test") || strings.Contains(body, "dana@example.test") ||
		!strings.Contains(body, "We will send a link there") {
		t.Fatalf("invitation page: %d\n%s", resp.StatusCode, body)
	}
	// The code is compared exactly: another case is refused.
	if resp, _ := h.get(h.browser(), "/.auth/invitation?code="+url.QueryEscape(strings.ToLower(dvCode))); resp.StatusCode != 404 {
		t.Fatalf("code in another case: %d", resp.StatusCode)
	}
	resp, body = h.invPostForm(p, "/.auth/invitation", url.Values{"csrf_token": {pageCSRF(t, body)}, "code": {dvCode}, "action": {"register"},
		"username": {"dana"}, "password": {invitePassword}, "password_confirm": {invitePassword}})
	if resp.StatusCode != 200 || !strings.Contains(body, "Check your email") {
		t.Fatalf("redeem: %d\n%s", resp.StatusCode, body)
	}
	if _, err := h.svc.Accounts.LookupUser(context.Background(), "dana"); err == nil {
		t.Fatal("the account exists before the address is confirmed")
	}
	tok := h.confirmations()["dana@example.test"]
	if tok == "" {
		t.Fatal("no confirmation mailed to the contact's address")
	}
	// Opening the link (a mail scanner does) changes nothing.
	form := h.confirmForm(p, tok)
	h.confirmForm(p, tok)
	if _, err := h.svc.Accounts.LookupUser(context.Background(), "dana"); err == nil {
		t.Fatal("a GET of the confirmation link made the account")
	}

	// Dataverse down at the confirmation: a clear answer, nothing made, the
	// link spent (the person redeems again).
	emu.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	resp, body = h.invPostForm(p, "/.auth/invitation/confirm", form)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "no account was made") {
		t.Fatalf("confirm with Dataverse down: %d\n%s", resp.StatusCode, body)
	}
	if _, err := h.svc.Accounts.LookupUser(context.Background(), "dana"); err == nil {
		t.Fatal("the account was made while Dataverse was down")
	}
	resp, body = h.get(h.browser(), "/.auth/invitation?code="+url.QueryEscape(dvCode))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Nothing was changed") {
		t.Fatalf("lookup with Dataverse down: %d\n%s", resp.StatusCode, body)
	}
	emu.SetFaults(dataversetest.Faults{})

	// Again, with Dataverse up.
	resp, _ = h.redeemForm(p, dvCode, "dana")
	if resp.StatusCode != 200 {
		t.Fatalf("redeem again: %d", resp.StatusCode)
	}
	tok = h.confirmations()["dana@example.test"]
	resp, body = h.invPostForm(p, "/.auth/invitation/confirm", h.confirmForm(p, tok))
	if resp.StatusCode != 200 || !strings.Contains(body, "Your account is ready") {
		t.Fatalf("confirm: %d\n%s", resp.StatusCode, body)
	}
	u, err := h.svc.Accounts.LookupUser(context.Background(), "dana")
	if err != nil || u.Binding.Mode != authz.BindingLookup || u.Binding.Ref.ID != dvInvitee || !u.EmailConfirmed || u.Email != "dana@example.test" {
		t.Fatalf("new user = %+v, %v", u, err)
	}
	// The link is dead now.
	if resp, _ := h.invPostForm(p, "/.auth/invitation/confirm", h.confirmForm(p, tok)); resp.StatusCode != 404 {
		t.Fatalf("confirmation reused: %d", resp.StatusCode)
	}

	dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	// The write-back while Dataverse is down fails (the worker retries)...
	emu.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	if err := h.deliverWriteBacks(u.ID, invitations.WriteBack{Dataverse: dir}); err == nil {
		t.Fatal("write-back succeeded with Dataverse down")
	}
	if row, _ := emu.Handler.Row("adx_invitations", dvInviteID); row["adx_redemptions"] != float64(0) {
		t.Fatalf("half a write-back: %v", row["adx_redemptions"])
	}
	emu.SetFaults(dataversetest.Faults{})
	// ... and then succeeds, once however often it is delivered.
	for range 2 {
		if err := h.deliverWriteBacks(u.ID, invitations.WriteBack{Dataverse: dir}); err != nil {
			t.Fatal(err)
		}
	}
	row, _ := emu.Handler.Row("adx_invitations", dvInviteID)
	if row["adx_redemptions"] != float64(1) || row["statuscode"] != float64(crmclient.InvitationStatusRedeemed) || row["_adx_redeemedcontact_value"] != dvInvitee {
		t.Fatalf("invitation after the write-back: %v", row)
	}
	if roles := emu.Handler.Associated("contacts", dvInvitee, "adx_webrole_contact"); !slices.Equal(roles, []string{dvInviteRole}) {
		t.Fatalf("contact web roles = %v", roles)
	}
	// Dana signs in, with the web role from Dataverse.
	dana := h.browser()
	h.signIn(dana, "dana", invitePassword)
	if _, body := h.get(dana, "/.auth/me"); !strings.Contains(body, "Customers") {
		t.Fatalf("me after the write-back: %s", body)
	}
	// Redeemed: the code is refused now.
	if resp, _ := h.get(h.browser(), "/.auth/invitation?code="+url.QueryEscape(dvCode)); resp.StatusCode != 404 {
		t.Fatalf("redeemed code: %d", resp.StatusCode)
	}
}

// TestInvitationExistingAccount: an invitation whose contact already has
// an account never makes a second one nor rebinds the contact: the person
// is sent to sign in (the configured existing-user page) and, signed in,
// confirms taking the invitation with that account; another account is
// refused.
func TestInvitationExistingAccount(t *testing.T) {
	h, _, _ := dvInviteHarness(t)
	ctx := context.Background()
	h.createUser("dana", "dana@example.test", invitePassword)
	if err := h.svc.Accounts.SetBinding(ctx, "dana", authz.Binding{Mode: authz.BindingLookup,
		Ref: &dataverse.EntityReference{ID: dvInvitee, LogicalName: "contact"}}, "test"); err != nil {
		t.Fatal(err)
	}
	p := h.browser()
	resp, body := h.get(p, "/.auth/invitation?code="+url.QueryEscape(dvCode))
	want := "/.auth/signin?redirect_url=" + url.QueryEscape("/.auth/invitation?code="+dvCode)
	if resp.StatusCode != 200 || !strings.Contains(body, "You already have an account") || !strings.Contains(body, html.EscapeString(want)) {
		t.Fatalf("existing account page: %d\n%s", resp.StatusCode, body)
	}
	// Posting a registration anyway changes nothing.
	resp, _ = h.invPostForm(p, "/.auth/invitation", url.Values{"csrf_token": {h.csrfToken(p)}, "code": {dvCode}, "action": {"register"},
		"username": {"dana2"}, "email": {"other@example.test"}, "password": {invitePassword}, "password_confirm": {invitePassword}})
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("register for a bound contact: %d", resp.StatusCode)
	}
	if _, err := h.svc.Accounts.LookupUser(ctx, "dana2"); err == nil {
		t.Fatal("a second account was made for the contact")
	}
	// Another signed-in account cannot take it.
	h.createUser("mallory", "mallory@example.test", invitePassword)
	if err := h.svc.Accounts.SetBinding(ctx, "mallory", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	m := h.browser()
	h.signIn(m, "mallory", invitePassword)
	_, body = h.get(m, "/.auth/invitation?code="+url.QueryEscape(dvCode))
	resp, body = h.invPostForm(m, "/.auth/invitation", url.Values{"csrf_token": {pageCSRF(t, body)}, "code": {dvCode}, "action": {"link"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cannot be added") {
		t.Fatalf("link by another account: %d\n%s", resp.StatusCode, body)
	}
	// Dana signs in and takes it.
	h.signIn(p, "dana", invitePassword)
	resp, body = h.get(p, "/.auth/invitation?code="+url.QueryEscape(dvCode))
	if resp.StatusCode != 200 || !strings.Contains(body, "Accept as dana") {
		t.Fatalf("link page: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.invPostForm(p, "/.auth/invitation", url.Values{"csrf_token": {pageCSRF(t, body)}, "code": {dvCode}, "action": {"link"}})
	if resp.StatusCode != 200 || !strings.Contains(body, "added to your account dana") {
		t.Fatalf("link: %d\n%s", resp.StatusCode, body)
	}
	if evs := invAuditTypes(t, h.svc, invitations.EventLinked); len(evs) != 1 {
		t.Fatalf("linked audit = %+v", evs)
	}
	u, _ := h.svc.Accounts.LookupUser(ctx, "dana")
	if err := h.deliverWriteBacks(u.ID, invitations.WriteBack{Dataverse: nil}); err == nil {
		t.Fatal("a write-back without Dataverse succeeded")
	}
}
