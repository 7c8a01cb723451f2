package proxy_test

import (
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy/console"
)

var etagRE = regexp.MustCompile(`name="etag" value="([^"]+)"`)

// TestConsoleContacts: the contacts section lists the emulator's contacts
// with who is bound to each, searches them, creates one (a bad email is
// explained with the values kept), edits it with the row version it was
// read at (an edit made meanwhile in Dataverse refuses the stale form and
// shows the current values), refuses to delete a bound contact naming the
// user, and deletes one after a confirmation; Dataverse (the emulator)
// holds each change, and the audit trail names the administrator.
func TestConsoleContacts(t *testing.T) {
	_, client := newContactEmulator(t)
	var admin *contacts.Service
	h := contactHarnessWith(t, client, harnessConfig{console: func(h *harness, o *console.Options) {
		var err error
		admin, err = contacts.New(contacts.Options{Directory: crmclient.NewDirectory(client, crmclient.WebRoleModelStandard),
			Store: h.db, Audit: h.svc.Audit, Onboarding: h.svc.Onboarding, Invitations: h.svc.Invitations, Now: h.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		o.ContactAdmin = admin
	}})
	ctx := t.Context()
	const pw = "correct horse battery"
	root := h.createUser("root", "root@example.test", pw, "admin")
	if err := h.svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	h.createUser("ann", "ann@example.test", pw) // bound by username to Ann Lee
	br := h.browser()
	h.signIn(br, "root", pw)

	body := h.consoleGet(br, "/contacts", 200)
	for _, want := range []string{"Ann Lee", "Bob Gone", "Cara Off", `>ann</a>`, "inactive"} {
		if !strings.Contains(body, want) {
			t.Errorf("contacts list lacks %q:\n%s", want, body)
		}
	}
	if body = h.consoleGet(br, "/contacts?q=car", 200); !strings.Contains(body, "Cara Off") || strings.Contains(body, "Ann Lee") {
		t.Errorf("search car:\n%s", body)
	}

	// Create: a bad email keeps what was typed.
	resp, body := h.consolePost(br, "/contacts", url.Values{"first_name": {"Dee"}, "last_name": {"New"}, "email": {"not an email"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `value="Dee"`) || !strings.Contains(body, `aria-invalid="true"`) {
		t.Fatalf("create with a bad email: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(br, "/contacts", url.Values{"first_name": {"Dee"}, "last_name": {"New"}, "email": {"dee@example.test"}})
	loc := resp.Header.Get("Location")
	m := regexp.MustCompile(`^/\.auth/admin/contacts/([0-9a-f-]{36})\?notice=contact-created$`).FindStringSubmatch(loc)
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		t.Fatalf("create: %d to %q\n%s", resp.StatusCode, loc, body)
	}
	deeID := m[1]
	dv := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	snap, err := dv.ContactByID(ctx, deeID, []string{"emailaddress1"})
	if err != nil || snap.Email != "dee@example.test" || snap.LastName != "New" {
		t.Fatalf("the new contact in Dataverse: %+v, %v", snap, err)
	}

	// Edit with the version read; a change made meanwhile in Dataverse
	// refuses the stale form.
	body = h.consoleGet(br, "/contacts/"+deeID, 200)
	etag := etagRE.FindStringSubmatch(body)
	if etag == nil {
		t.Fatalf("no etag in the form:\n%s", body)
	}
	if err := dv.UpdateContact(ctx, deeID, map[string]any{"firstname": "Dora"}, ""); err != nil {
		t.Fatal(err)
	}
	resp, body = h.consolePost(br, "/contacts/"+deeID, url.Values{"etag": {html.UnescapeString(etag[1])}, "first_name": {"Deb"}, "last_name": {"New"},
		"email": {"dee@example.test"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "Someone changed this contact") || !strings.Contains(body, `value="Dora"`) {
		t.Fatalf("stale edit: %d\n%s", resp.StatusCode, body)
	}
	if snap, _ = dv.ContactByID(ctx, deeID, nil); snap.FirstName != "Dora" {
		t.Errorf("the stale edit was written: %q", snap.FirstName)
	}
	etag = etagRE.FindStringSubmatch(body)
	resp, body = h.consolePost(br, "/contacts/"+deeID, url.Values{"etag": {html.UnescapeString(etag[1])}, "first_name": {"Deb"}, "last_name": {"New"},
		"email": {"deb@example.test"}})
	seeOther(t, resp, body, "/.auth/admin/contacts/"+deeID+"?notice=contact-saved")
	if snap, _ = dv.ContactByID(ctx, deeID, []string{"emailaddress1"}); snap.FirstName != "Deb" || snap.Email != "deb@example.test" {
		t.Errorf("after the edit: %+v", snap)
	}

	// A bound contact is not deleted.
	body = h.consoleGet(br, "/contacts/"+annID, 200)
	etag = etagRE.FindStringSubmatch(body)
	resp, body = h.consolePost(br, "/contacts/"+annID+"/delete", url.Values{"etag": {html.UnescapeString(etag[1])}, "confirmed": {"yes"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "bound to ann") {
		t.Errorf("deleting a bound contact: %d\n%s", resp.StatusCode, body)
	}
	// Deleting asks first.
	body = h.consoleGet(br, "/contacts/"+deeID, 200)
	etag = etagRE.FindStringSubmatch(body)
	resp, body = h.consolePost(br, "/contacts/"+deeID+"/delete", url.Values{"etag": {html.UnescapeString(etag[1])}})
	if resp.StatusCode != 200 || !strings.Contains(body, "Delete the contact Deb New from Dataverse?") || !strings.Contains(body, `name="etag"`) {
		t.Fatalf("delete without confirmation: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.consolePost(br, "/contacts/"+deeID+"/delete", url.Values{"etag": {html.UnescapeString(etag[1])}, "confirmed": {"yes"}})
	seeOther(t, resp, body, "/.auth/admin/contacts?notice=contact-deleted")
	if _, err := dv.ContactByID(ctx, deeID, nil); !errors.Is(err, dataverse.ErrContactNotFound) {
		t.Errorf("the deleted contact: %v", err)
	}

	evs, err := h.svc.Audit.ListAudit(ctx, audit.Filter{Actor: root.ID, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, e := range evs {
		types[e.Type]++
	}
	if types["contact.created"] != 1 || types["contact.updated"] != 1 || types["contact.deleted"] != 1 {
		t.Errorf("contact audit rows by the administrator: %v", types)
	}
}
