package invitations_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/mail"
)

// TestMailDataverseInvitations: the first run only records where mailing
// starts; an invitation created in Dataverse after it is mailed exactly
// once to the invited contact's address, with a link from the public
// URL, even when two replicas run at the same moment; one without an
// invited contact is skipped; a later run mails nothing again.
func TestMailDataverseInvitations(t *testing.T) {
	var clock *authztest.Clock
	emu := dataversetest.NewServer(dataversetest.Options{TenantID: "t", Clients: []dataversetest.Client{{ID: "0c000000-0000-4000-8000-0000000000c1", Secret: "s"}},
		Now: func() time.Time { return clock.Now() }})
	t.Cleanup(emu.Close)
	client, err := crmclient.New(crmclient.Config{URL: emu.URL, AuthorityHost: emu.URL, TenantID: "t", ClientID: "0c000000-0000-4000-8000-0000000000c1", ClientSecret: "s", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	f := authztest.NewFixture(t, wiring.Options{Invitations: dir})
	clock = f.Clock
	other, err := wiring.New(f.DB, authztest.Options(wiring.Options{Invitations: dir, Now: f.Clock.Now}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := f.Svc.Invitations.MailDataverseInvitations(ctx, dir); err != nil || n != 0 {
		t.Fatalf("first run = %d, %v", n, err)
	}
	// Created before the first run would have been mailed by nobody; this
	// one is created after it.
	f.Clock.Advance(time.Minute)
	contact, err := client.Create(ctx, crmclient.SetContacts, map[string]any{"lastname": "Vu", "firstname": "Dana", "emailaddress1": "dana@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := client.Create(ctx, crmclient.SetInvitations, map[string]any{"adx_name": "Dana", "adx_invitationcode": "code-1",
		"adx_type": crmclient.InvitationSingle, "adx_maximumredemptions": 1, "adx_inviteContact@odata.bind": "/contacts(" + contact.String() + ")"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, crmclient.SetInvitations, map[string]any{"adx_name": "Nobody", "adx_invitationcode": "code-2",
		"adx_type": crmclient.InvitationGroup, "adx_maximumredemptions": 5}); err != nil {
		t.Fatal(err)
	}
	f.Clock.Advance(time.Minute)
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, s := range []*wiring.Services{f.Svc, other} {
		wg.Go(func() {
			n, err := s.Invitations.MailDataverseInvitations(ctx, dir)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		})
	}
	wg.Wait()
	if counts[0]+counts[1] != 1 {
		t.Fatalf("mailed %v, want exactly one mail in all", counts)
	}
	evs := f.Events(t, "invitation:"+inv.String())
	if len(evs) != 1 || evs[0].Kind != mail.Kind {
		t.Fatalf("mail events = %+v", evs)
	}
	var m mail.Message
	if err := json.Unmarshal(evs[0].Payload, &m); err != nil {
		t.Fatal(err)
	}
	if m.To != "dana@example.com" || !strings.Contains(m.Text, "https://portal.example.com/.auth/invitation?code=code-1") {
		t.Fatalf("mail to %s:\n%s", m.To, m.Text)
	}
	if n, err := f.Svc.Invitations.MailDataverseInvitations(ctx, dir); err != nil || n != 0 {
		t.Fatalf("a later run = %d, %v", n, err)
	}
	if ev := f.LastAudit(t, "invitation.mailed"); ev.Detail != "dataverse:"+inv.String() {
		t.Fatalf("mailed audit = %+v", ev)
	}
}
