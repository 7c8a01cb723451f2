package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/dataverse"
)

// TestBrowserConsoleContacts: in `crmgate dev`, the admin adds a contact
// in the console's Contacts section, edits it, creates a user for it
// (which mails a set-password link, caught by the dev mail page), and
// deletes another contact after a confirmation; the emulator holds each
// change, and the new user is bound to the contact in the store.
func TestBrowserConsoleContacts(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	signInConsole(t, ctx, g, "admin")
	dv := crmclient.NewDirectory(devDataverse(t, g), crmclient.WebRoleModelStandard)

	open(t, ctx, "contacts", g.url+"/.auth/admin/contacts")
	if text := consoleText(t, ctx); !strings.Contains(text, "Bea Buyer") || !strings.Contains(text, "Alice Example") {
		t.Fatalf("contacts list:\n%s", text)
	}
	screenshot(t, ctx, "console-contacts")

	// Add.
	navigation(t, ctx, "add a contact", chromedp.Click(chromedp.CSS(`a[href="/.auth/admin/contacts/new"]`)))
	do(t, ctx, "fill in", chromedp.SendKeys(chromedp.ID("first_name"), "Erin"), chromedp.SendKeys(chromedp.ID("last_name"), "Early"),
		chromedp.SendKeys(chromedp.ID("email"), "erin@demo.crmgate.test"))
	navigation(t, ctx, "create", chromedp.SendKeys(chromedp.ID("company"), "Contoso"+kb.Enter))
	if text := consoleText(t, ctx); !strings.Contains(text, "The contact was created in Dataverse.") {
		t.Fatalf("after creating:\n%s", text)
	}
	id := strings.TrimPrefix(location(t, ctx).Path, "/.auth/admin/contacts/")
	c, err := dv.ContactByID(t.Context(), id, []string{"emailaddress1", "adx_organizationname"})
	if err != nil || c.FirstName != "Erin" || c.Email != "erin@demo.crmgate.test" || c.Columns["adx_organizationname"] != "Contoso" {
		t.Fatalf("the new contact in the emulator: %+v %v", c, err)
	}

	// Edit.
	do(t, ctx, "change the first name", chromedp.Clear(chromedp.ID("first_name")))
	navigation(t, ctx, "save", chromedp.SendKeys(chromedp.ID("first_name"), "Erina"+kb.Enter))
	if text := consoleText(t, ctx); !strings.Contains(text, "The contact was saved in Dataverse.") {
		t.Fatalf("after saving:\n%s", text)
	}
	if c, _ = dv.ContactByID(t.Context(), id, nil); c.FirstName != "Erina" {
		t.Errorf("first name in the emulator %q", c.FirstName)
	}
	screenshot(t, ctx, "console-contact")

	// A user for it, with a set-password link.
	navigation(t, ctx, "create a user", chromedp.Click(chromedp.CSS(`form[action$="/create-user"] button`)))
	if text := consoleText(t, ctx); !strings.Contains(text, "The account was created") || !strings.Contains(text, id) {
		t.Fatalf("after creating the user:\n%s", text)
	}
	u := devUser(t, g, "erin@demo.crmgate.test")
	if u.Binding.Ref == nil || u.Binding.Ref.ID != id {
		t.Errorf("the new user's binding: %+v", u.Binding)
	}

	// Invite Bea from her contact; the invitation is listed.
	open(t, ctx, "Bea", g.url+"/.auth/admin/contacts/"+demoBea)
	navigation(t, ctx, "invite", chromedp.Click(chromedp.CSS(`form[action$="/invite"] button`)))
	if text := consoleText(t, ctx); !strings.Contains(text, "An invitation is on its way") {
		t.Fatalf("after inviting Bea:\n%s", text)
	}
	open(t, ctx, "invitations", g.url+"/.auth/admin/invitations")
	if text := consoleText(t, ctx); !strings.Contains(text, "bea@demo.crmgate.test") || !strings.Contains(text, "pending") {
		t.Errorf("invitations list:\n%s", text)
	}
	screenshot(t, ctx, "console-invitations")

	// Delete Carl (bound to nobody), after a confirmation.
	open(t, ctx, "Carl", g.url+"/.auth/admin/contacts/"+demoCarl)
	navigation(t, ctx, "delete", chromedp.Click(chromedp.CSS(`form[action$="/delete"] button`)))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); !strings.Contains(h1, "Delete the contact Carl Client") {
		t.Fatalf("confirmation h1 %q", h1)
	}
	screenshot(t, ctx, "console-confirm")
	navigation(t, ctx, "confirm", chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")))
	if text := consoleText(t, ctx); !strings.Contains(text, "The contact was deleted from Dataverse.") {
		t.Fatalf("after deleting:\n%s", text)
	}
	if _, err := dv.ContactByID(t.Context(), demoCarl, nil); err == nil || !strings.Contains(err.Error(), "not found") && !isContactNotFound(err) {
		t.Errorf("Carl in the emulator after the delete: %v", err)
	}
}

func isContactNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), dataverse.ErrContactNotFound.Error())
}
