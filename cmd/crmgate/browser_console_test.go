package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/store"
)

// demoAlice is alice's demo contact.
const demoAlice = "c0000000-0000-4000-8000-000000000002"

// devUser reads an account from the store of `crmgate dev`, as the console
// left it.
func devUser(t *testing.T, g *devGateway, login string) *authz.User {
	t.Helper()
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(devDataDir(t, g), "crmgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.UserByLogin(t.Context(), login)
	if err != nil {
		t.Fatalf("user %s: %v", login, err)
	}
	return u
}

// signInConsole opens the admin console as a visitor: it sends them to the
// sign-in page, and back to the console once signed in as account.
func signInConsole(t *testing.T, ctx context.Context, g *devGateway, account string) {
	t.Helper()
	a := g.accounts[account]
	open(t, ctx, "open the console", g.url+"/.auth/admin/users")
	checkSignInPage(t, ctx, "/.auth/admin/users")
	navigation(t, ctx, "sign in", chromedp.SendKeys(chromedp.ID("login"), a.username), chromedp.SendKeys(chromedp.ID("password"), a.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/.auth/admin/users" {
		t.Fatalf("after sign-in at %s, want the console's users", loc)
	}
}

// consoleText is the text of the console page's main element.
func consoleText(t *testing.T, ctx context.Context) string {
	t.Helper()
	return get(t, ctx, "main", chromedp.Text(chromedp.CSS("main")))
}

// TestBrowserConsoleUsers: in `crmgate dev`, the admin opens the console
// (signing in on the way), finds alice in the users table, and on her page
// binds her to Bea's contact with the lookup that searches as one types
// (console.js), then, in a browser without JavaScript, the same lookup as
// a search form binds her back to her own contact: the store holds each
// binding, shown on the page.
func TestBrowserConsoleUsers(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	signInConsole(t, ctx, g, "admin")
	if text := consoleText(t, ctx); !strings.Contains(text, "alice@demo.crmgate.test") || !strings.Contains(text, "breakglass") {
		t.Fatalf("users table:\n%s", text)
	}
	screenshot(t, ctx, "console-users")

	// Search, then open alice's page.
	navigation(t, ctx, "search", chromedp.SendKeys(chromedp.ID("q"), "alice"+kb.Enter))
	if text := consoleText(t, ctx); !strings.Contains(text, "Users 1–1 of 1") {
		t.Fatalf("search for alice:\n%s", text)
	}
	navigation(t, ctx, "open alice", chromedp.Click(chromedp.CSS("table.users tbody a")))
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "alice" {
		t.Fatalf("user page h1 %q", h1)
	}
	if text := consoleText(t, ctx); !strings.Contains(text, "Alice Example") || !strings.Contains(text, demoAlice) {
		t.Errorf("alice's page does not show her contact:\n%s", text)
	}
	alicePage := location(t, ctx).String()

	// The lookup as one types: results arrive without a page load.
	do(t, ctx, "type in the lookup", chromedp.SendKeys(chromedp.ID("lookup_q"), "bea@demo.crmgate.test"))
	do(t, ctx, "results", chromedp.WaitVisible(chromedp.CSS("#lookup-results table.contacts")))
	if loc := location(t, ctx).String(); loc != alicePage {
		t.Errorf("the lookup loaded a page: %s", loc)
	}
	screenshot(t, ctx, "console-user-lookup")
	navigation(t, ctx, "bind to Bea", chromedp.Click(chromedp.CSS("#lookup-results button")))
	if text := consoleText(t, ctx); !strings.Contains(text, "The binding was saved.") || !strings.Contains(text, demoBea) {
		t.Fatalf("after binding to Bea:\n%s", text)
	}
	screenshot(t, ctx, "console-user")
	if b := devUser(t, g, "alice").Binding; b.Mode != authz.BindingLookup || b.Ref == nil || b.Ref.ID != demoBea {
		t.Errorf("alice's binding in the store: %+v", b)
	}

	// Without JavaScript: the lookup is a search form.
	noJS := newBrowser(t, browser)
	disableScripts(t, noJS)
	signInConsole(t, noJS, g, "admin")
	open(t, noJS, "alice's page", alicePage)
	navigation(t, noJS, "search by name", chromedp.SendKeys(chromedp.ID("lookup_q"), "Alice"+kb.Enter))
	if text := consoleText(t, noJS); !strings.Contains(text, "Alice Example") || !strings.Contains(text, "Bind") {
		t.Fatalf("lookup without JavaScript:\n%s", text)
	}
	navigation(t, noJS, "bind back", chromedp.Click(chromedp.CSS("#lookup-results button")))
	deadline := time.Now().Add(5 * time.Second)
	for {
		text := consoleText(t, noJS)
		if strings.Contains(text, "The binding was saved.") && strings.Contains(text, demoAlice) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after binding back without JavaScript:\n%s", text)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b := devUser(t, g, "alice").Binding; b.Mode != authz.BindingLookup || b.Ref == nil || b.Ref.ID != demoAlice {
		t.Errorf("alice's binding in the store: %+v", b)
	}

	// The audit log names both changes, by the admin, about alice.
	open(t, ctx, "alice's events", g.url+"/.auth/admin/audit?user=alice")
	if text := consoleText(t, ctx); strings.Count(text, "user.binding_set\tadmin\talice") != 2 {
		t.Errorf("audit log filtered by alice:\n%s", text)
	}
	screenshot(t, ctx, "console-audit")
	// The Dataverse page: the breaker closed, the contact cache, the outbox.
	open(t, ctx, "Dataverse", g.url+"/.auth/admin/dataverse")
	if text := consoleText(t, ctx); !strings.Contains(text, "closed") || !strings.Contains(strings.ToLower(text), "outbox") {
		t.Errorf("Dataverse page:\n%s", text)
	}
	screenshot(t, ctx, "console-dataverse")
}
