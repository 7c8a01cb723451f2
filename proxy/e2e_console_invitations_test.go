package proxy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/proxy"
)

// invitationRow is the row of the invitations table whose email (or, for
// Dataverse's table, name) is key; it fails the test when there is none.
func invitationRow(t *testing.T, body, key string) string {
	t.Helper()
	for _, row := range strings.Split(body, "<tr>")[1:] {
		row = row[:strings.Index(row, "</tr>")]
		if strings.Contains(row, "<td>"+key+"</td>") || strings.Contains(row, "<td>"+key+"<br>") {
			return row
		}
	}
	t.Fatalf("no row of %s in the invitations table:\n%s", key, body)
	return ""
}

// rowState is the state badge of a row.
func rowState(row string) string {
	m := regexp.MustCompile(`class="badge badge-invitation-([a-z]+)"`).FindStringSubmatch(row)
	if m == nil {
		return ""
	}
	return m[1]
}

var createdRE = regexp.MustCompile(`^/\.auth/admin/invitations/([0-9]+)\?notice=invitation-created$`)

// consoleInvite creates an invitation through the console's form as
// admin and returns its id and the code of its mail.
func (h *harness) consoleInvite(admin *http.Client, form url.Values) (int64, string) {
	h.t.Helper()
	resp, body := h.consolePost(admin, "/invitations", form)
	m := createdRE.FindStringSubmatch(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		h.t.Fatalf("create invitation: %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	ms := h.invMails(fmt.Sprintf("invitation:%d", id))
	if len(ms) != 1 || ms[0].To != form.Get("email") {
		h.t.Fatalf("mails of invitation %d: %+v", id, ms)
	}
	_, code := linkSecret(h.t, ms[0])
	return id, code
}

// TestConsoleInvitations: an administrator creates invitations from the
// form (a bad address or validity is explained by its field, with every
// entered value kept), each one mailed; the list shows each state
// (pending, redeemed by whom, linking to the account, revoked, expired);
// resending mails a new code and kills the old one, and is refused with a
// clear message for a redeemed, revoked or expired invitation; revoking
// asks first and then the code no longer redeems. A user with only
// invitations:read sees the list and the pages without a button to
// change anything. Every change is audited with the administrator.
func TestConsoleInvitations(t *testing.T) {
	h := inviteHarness(t, harnessConfig{policy: authzPolicy()})
	ctx := t.Context()
	root := h.createUser("root", "root@example.test", invitePassword, "admin")
	h.createUser("reader", "reader@example.test", invitePassword, "only-"+"invitations:read")
	admin, reader := h.browser(), h.browser()
	h.signIn(admin, "root", invitePassword)
	h.signIn(reader, "reader", invitePassword)

	if body := h.consoleGet(admin, "/users", 200); !strings.Contains(body, `href="/.auth/admin/invitations">Invitations</a>`) {
		t.Errorf("the console's menu has no Invitations entry:\n%s", body)
	}
	if body := h.consoleGet(admin, "/invitations", 200); !strings.Contains(body, "No invitation yet.") {
		t.Errorf("empty list:\n%s", body)
	}
	body := h.consoleGet(admin, "/invitations/new", 200)
	if !strings.Contains(body, `name="email"`) || !strings.Contains(body, `name="csrf_token"`) {
		t.Fatalf("the create form:\n%s", body)
	}

	// Bad input: the field's message, the entered values kept, nothing made.
	entered := url.Values{"email": {"not-an-address"}, "roles": {"member, staff"}, "redirect_url": {"/welcome"},
		"expires_in_hours": {"48"}, "kind": {"single"}}
	resp, body := h.consolePost(admin, "/invitations", entered)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `<p class="field-error" id="email-error">The email address is not valid.</p>`) ||
		!strings.Contains(body, `value="not-an-address"`) || !strings.Contains(body, `value="member, staff"`) ||
		!strings.Contains(body, `value="/welcome"`) || !strings.Contains(body, `value="48"`) {
		t.Fatalf("a bad address: %d\n%s", resp.StatusCode, body)
	}
	entered.Set("email", "ok@example.test")
	entered.Set("expires_in_hours", "99999")
	resp, body = h.consolePost(admin, "/invitations", entered)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="expires_in_hours-error">The validity must be 1 to 8784 hours`) ||
		!strings.Contains(body, `value="ok@example.test"`) || !strings.Contains(body, `value="99999"`) {
		t.Fatalf("a bad validity: %d\n%s", resp.StatusCode, body)
	}
	entered.Set("expires_in_hours", "48")
	entered.Set("kind", "group")
	entered.Set("max_redemptions", "100001")
	resp, body = h.consolePost(admin, "/invitations", entered)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="max_redemptions-error">The maximum must be 1 to 100000.`) ||
		!strings.Contains(body, `<option value="group" selected>`) {
		t.Fatalf("a bad maximum: %d\n%s", resp.StatusCode, body)
	}
	if list, err := h.svc.Invitations.List(ctx, 0, 10); err != nil || len(list) != 0 {
		t.Fatalf("refused forms made invitations: %v, %v", list, err)
	}

	// Four invitations: one to redeem, one to revoke, one to expire, one
	// to resend.
	redeemID, redeemCode := h.consoleInvite(admin, url.Values{"email": {"rita@example.test"}, "roles": {"member"}})
	revokeID, revokeCode := h.consoleInvite(admin, url.Values{"email": {"rob@example.test"}})
	expireID, _ := h.consoleInvite(admin, url.Values{"email": {"eve@example.test"}, "expires_in_hours": {"1"}})
	resendID, oldCode := h.consoleInvite(admin, url.Values{"email": {"sam@example.test"}})
	if inv, err := h.svc.Invitations.Get(ctx, redeemID); err != nil || len(inv.Roles) != 1 || inv.Roles[0] != "member" || inv.CreatedBy != root.ID {
		t.Fatalf("created invitation = %+v, %v", inv, err)
	}
	body = h.consoleGet(admin, fmt.Sprintf("/invitations/%d?notice=invitation-created", redeemID), 200)
	if !strings.Contains(body, "The invitation was created; its mail is on its way.") || !strings.Contains(body, "Not redeemed yet.") {
		t.Errorf("the new invitation's page:\n%s", body)
	}
	if resp, body := h.redeemForm(h.browser(), redeemCode, "rita"); resp.StatusCode != 200 || !strings.Contains(body, "Your account is ready") {
		t.Fatalf("redeem: %d\n%s", resp.StatusCode, body)
	}
	rita, err := h.svc.Accounts.LookupUser(ctx, "rita")
	if err != nil {
		t.Fatal(err)
	}

	// Resend: a new code in a new mail, the old one dead.
	resp, body = h.consolePost(admin, fmt.Sprintf("/invitations/%d/resend", resendID), nil)
	seeOther(t, resp, body, fmt.Sprintf("/.auth/admin/invitations/%d?notice=invitation-resent", resendID))
	ms := h.invMails(fmt.Sprintf("invitation:%d", resendID))
	if len(ms) != 2 || ms[1].To != "sam@example.test" {
		t.Fatalf("mails after the resend: %+v", ms)
	}
	if _, fresh := linkSecret(t, ms[1]); fresh == oldCode {
		t.Fatal("the resent mail carries the old code")
	} else if resp, _ := h.get(h.browser(), "/.auth/invitation?code="+url.QueryEscape(fresh)); resp.StatusCode != 200 {
		t.Errorf("the resent code: %d", resp.StatusCode)
	}
	if resp, _ := h.get(h.browser(), "/.auth/invitation?code="+url.QueryEscape(oldCode)); resp.StatusCode != 404 {
		t.Errorf("the replaced code: %d, want 404", resp.StatusCode)
	}

	// Revoke asks first; the unconfirmed post changes nothing.
	revokePath := fmt.Sprintf("/invitations/%d/revoke", revokeID)
	resp, body = h.consolePost(admin, revokePath, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Revoke the invitation of rob@example.test?") || !strings.Contains(body, `name="confirmed" value="yes"`) {
		t.Fatalf("revoke without confirmation: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := h.get(h.browser(), "/.auth/invitation?code="+url.QueryEscape(revokeCode)); resp.StatusCode != 200 {
		t.Fatalf("the unconfirmed revoke killed the code: %d", resp.StatusCode)
	}
	resp, body = h.consolePost(admin, revokePath, url.Values{"confirmed": {"yes"}})
	seeOther(t, resp, body, fmt.Sprintf("/.auth/admin/invitations/%d?notice=invitation-revoked", revokeID))
	resp, body = h.redeemForm(h.browser(), revokeCode, "rob")
	if resp.StatusCode != 404 || !strings.Contains(body, "invalid or has expired") {
		t.Fatalf("redeeming the revoked code: %d\n%s", resp.StatusCode, body)
	}
	if _, err := h.svc.Accounts.LookupUser(ctx, "rob"); err == nil {
		t.Fatal("the revoked code made an account")
	}

	h.clock.Advance(2 * time.Hour) // past the 1-hour invitation (and the sessions' idle time)
	h.signIn(admin, "root", invitePassword)
	h.signIn(reader, "reader", invitePassword)

	// Each state in the list; the redeemed one names rita, linking to her.
	body = h.consoleGet(admin, "/invitations", 200)
	for email, want := range map[string]string{"rita@example.test": "redeemed", "rob@example.test": "revoked",
		"eve@example.test": "expired", "sam@example.test": "pending"} {
		if got := rowState(invitationRow(t, body, email)); got != want {
			t.Errorf("%s: state %q, want %q", email, got, want)
		}
	}
	ritaLink := `<a href="/.auth/admin/users/` + rita.ID + `">rita</a>`
	if row := invitationRow(t, body, "rita@example.test"); !strings.Contains(row, ritaLink) || !strings.Contains(row, "roles member") {
		t.Errorf("the redeemed row does not name rita with a link, or the roles:\n%s", row)
	}
	if row := invitationRow(t, body, "sam@example.test"); !strings.Contains(row, "/resend") || !strings.Contains(row, "/revoke") ||
		!strings.Contains(row, `by <a href="/.auth/admin/users/`+root.ID+`">root</a>`) {
		t.Errorf("the pending row has no resend and revoke buttons, or does not name its creator:\n%s", row)
	}
	if row := invitationRow(t, body, "rita@example.test"); strings.Contains(row, "/resend") {
		t.Errorf("the redeemed row offers a resend:\n%s", row)
	}
	body = h.consoleGet(admin, fmt.Sprintf("/invitations/%d", redeemID), 200)
	if !strings.Contains(body, "<td>1</td><td>"+ritaLink+"</td>") {
		t.Errorf("the redeemed invitation's page does not list rita's redemption:\n%s", body)
	}

	// Resending or revoking what no longer works: a clear refusal.
	for _, tt := range []struct {
		id           int64
		action, want string
	}{
		{redeemID, "resend", "This invitation was already redeemed, so it cannot be sent again."},
		{revokeID, "resend", "This invitation was revoked on"},
		{expireID, "resend", "This invitation expired on"},
		{revokeID, "revoke", "This invitation was revoked on"},
	} {
		resp, body := h.consolePost(admin, fmt.Sprintf("/invitations/%d/%s", tt.id, tt.action), url.Values{"confirmed": {"yes"}})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, tt.want) {
			t.Errorf("%s %d: %d, want 409 with %q\n%s", tt.action, tt.id, resp.StatusCode, tt.want, body)
		}
	}
	if ms := h.invMails(fmt.Sprintf("invitation:%d", expireID)); len(ms) != 1 {
		t.Errorf("the refused resend mailed: %d mails", len(ms))
	}
	h.consoleGet(admin, "/invitations/999", 404)

	// A reader sees the same list and pages, without the buttons.
	body = h.consoleGet(reader, "/invitations", 200)
	if rowState(invitationRow(t, body, "sam@example.test")) != "pending" || strings.Contains(body, "New invitation") ||
		strings.Contains(body, "/resend") || strings.Contains(body, "/revoke") {
		t.Errorf("the reader's list:\n%s", body)
	}
	body = h.consoleGet(reader, fmt.Sprintf("/invitations/%d", resendID), 200)
	if !strings.Contains(body, "sam@example.test") || strings.Contains(body, "<form") {
		t.Errorf("the reader's invitation page has a form:\n%s", body)
	}

	for _, typ := range []string{invitations.EventCreated, invitations.EventResent, invitations.EventRevoked} {
		evs := invAuditTypes(t, h.svc, typ)
		if len(evs) == 0 {
			t.Errorf("no %s audit row", typ)
		}
		for _, e := range evs {
			if e.Actor != root.ID {
				t.Errorf("%s by %q, want the administrator", typ, e.Actor)
			}
		}
	}
}

// TestConsoleInvitationsPages: the list pages with the service's cursor.
func TestConsoleInvitationsPages(t *testing.T) {
	h := inviteHarness(t, harnessConfig{})
	h.createUser("root", "root@example.test", invitePassword, "admin")
	admin := h.browser()
	h.signIn(admin, "root", invitePassword)
	var last int64
	for i := range 51 {
		inv, err := h.svc.Invitations.Create(t.Context(), invitations.NewInvitation{Email: fmt.Sprintf("p%02d@example.test", i)}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if i == 49 {
			last = inv.ID
		}
	}
	body := h.consoleGet(admin, "/invitations", 200)
	next := fmt.Sprintf(`href="/.auth/admin/invitations?after=%d" rel="next"`, last)
	if strings.Count(body, "badge-invitation-pending") != 50 || !strings.Contains(body, next) || strings.Contains(body, "p50@example.test") {
		t.Fatalf("page 1 of 51 invitations:\n%s", body)
	}
	body = h.consoleGet(admin, fmt.Sprintf("/invitations?after=%d", last), 200)
	if strings.Count(body, "badge-invitation-pending") != 1 || !strings.Contains(body, "p50@example.test") ||
		strings.Contains(body, `rel="next"`) || !strings.Contains(body, `rel="first"`) {
		t.Fatalf("page 2 of 51 invitations:\n%s", body)
	}
	h.consoleGet(admin, "/invitations?after=x", 400)
}

// TestConsoleInvitationsDataverse: with Dataverse configured the list
// shows its invitations too, with their state; a redeemed one names the
// account that redeemed it once the redemption is written back; a
// contact id the form names is checked in Dataverse; a Dataverse outage
// leaves crmgate's invitations listed with a message.
func TestConsoleInvitationsDataverse(t *testing.T) {
	emu, client := seededContactEmulator(t, dvInviteSeed)
	dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	h := contactHarnessWith(t, client, harnessConfig{mutate: func(o *proxy.Options) { o.Console.DataverseInvitations = dir }},
		func(o *wiring.Options) { o.Invitations = dir; o.Mail = authztest.Composer })
	h.createUser("root", "root@example.test", invitePassword, "admin")
	if err := h.svc.Accounts.SetBinding(t.Context(), "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	admin := h.browser()
	h.signIn(admin, "root", invitePassword)

	body := h.consoleGet(admin, "/invitations", 200)
	row := invitationRow(t, body, "Invite Dana")
	if rowState(row) != "pending" || !strings.Contains(row, dvInvitee) || strings.Contains(body, dvCode) {
		t.Fatalf("Dana's Dataverse invitation (pending, naming her contact, without its code):\n%s", row)
	}

	// The form checks a contact in Dataverse; the other values are kept.
	resp, body := h.consolePost(admin, "/invitations", url.Values{"email": {"x@example.test"},
		"contact_id": {"c0000000-0000-4000-8000-0000000000ff"}, "roles": {"member"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="contact_id-error">No such contact.`) || !strings.Contains(body, `value="member"`) {
		t.Fatalf("an unknown contact: %d\n%s", resp.StatusCode, body)
	}

	// Dana redeems (with the address confirmation); the write-back marks
	// it redeemed in Dataverse.
	if resp, _ := h.redeemForm(h.browser(), dvCode, "dana"); resp.StatusCode != 200 {
		t.Fatalf("redeem: %d", resp.StatusCode)
	}
	p := h.browser()
	if resp, body := h.invPostForm(p, "/.auth/invitation/confirm", h.confirmForm(p, h.confirmations()["dana@example.test"])); resp.StatusCode != 200 {
		t.Fatalf("confirm: %d\n%s", resp.StatusCode, body)
	}
	dana, err := h.svc.Accounts.LookupUser(t.Context(), "dana")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.deliverWriteBacks(dana.ID, invitations.WriteBack{Dataverse: dir}); err != nil {
		t.Fatal(err)
	}
	row = invitationRow(t, h.consoleGet(admin, "/invitations", 200), "Invite Dana")
	if rowState(row) != "redeemed" || !strings.Contains(row, `<a href="/.auth/admin/users/`+dana.ID+`">dana</a>`) {
		t.Fatalf("Dana's redeemed invitation does not name her:\n%s", row)
	}

	// Dataverse down: crmgate's invitations are still listed.
	if _, err := h.svc.Invitations.Create(t.Context(), invitations.NewInvitation{Email: "local@example.test"}, "test"); err != nil {
		t.Fatal(err)
	}
	emu.SetFaults(dataversetest.Faults{Status: http.StatusServiceUnavailable})
	body = h.consoleGet(admin, "/invitations", 200)
	if rowState(invitationRow(t, body, "local@example.test")) != "pending" || !strings.Contains(body, "Dataverse cannot be reached just now") {
		t.Fatalf("the list with Dataverse down:\n%s", body)
	}
}
