package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// me reads /.auth/me in the tab.
func me(t *testing.T, ctx context.Context) (username string, bound bool) {
	t.Helper()
	raw := meBody(t, ctx, location(t, ctx).Scheme+"://"+location(t, ctx).Host)
	var m struct {
		User    struct{ Username string }
		Contact *struct{ ID string }
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("/.auth/me %q: %v", raw, err)
	}
	return m.User.Username, m.Contact != nil
}

// TestBrowserPagesWayBack follows the gateway's own pages in Chromium: an
// address no route serves is a "no page here" 404 whose site name leads
// home; sign-out without a session says so; a return address of 8 KB
// survives sign-in; a signed-in sign-in page offers to continue or to
// switch account (here to the demo's unbound break-glass admin); sign-out
// can be cancelled.
func TestBrowserPagesWayBack(t *testing.T) {
	browser := requireBrowser(t)
	g := startDev(t)
	ctx := newBrowser(t, browser)
	disableScripts(t, ctx)

	resp := open(t, ctx, "open /nowhere", g.url+"/nowhere")
	if resp.Status != http.StatusNotFound {
		t.Errorf("/nowhere: status %d, want 404", resp.Status)
	}
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "No page here" {
		t.Errorf("/nowhere h1 = %q, want %q", h1, "No page here")
	}
	screenshot(t, ctx, "nopage")
	navigation(t, ctx, "site name link", chromedp.Click(chromedp.CSS(`header a[rel="home"]`)))
	if loc := location(t, ctx); loc.Path != "/" {
		t.Errorf("the site name leads to %s, want /", loc)
	}

	open(t, ctx, "open sign-out", g.url+"/.auth/signout")
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "You are not signed in" {
		t.Errorf("sign-out without a session: h1 %q", h1)
	}
	screenshot(t, ctx, "signout-anonymous")

	// An 8 KB return address, through the challenge, the form and the redirect.
	back := "/account/?q="
	back += strings.Repeat("x", 8<<10-len(back))
	open(t, ctx, "open long address", g.url+back)
	checkSignInPage(t, ctx, back)
	alice := g.accounts["alice"]
	navigation(t, ctx, "sign in as alice",
		chromedp.SendKeys(chromedp.ID("login"), alice.username),
		chromedp.SendKeys(chromedp.ID("password"), alice.password+kb.Enter))
	if loc := location(t, ctx); loc.RequestURI() != back {
		t.Fatalf("after sign-in at %d bytes %q…, want the 8 KB return address", len(loc.RequestURI()), loc.RequestURI()[:min(60, len(loc.RequestURI()))])
	}

	open(t, ctx, "open sign-in while signed in", g.url+"/.auth/signin?redirect_url=%2Fadmin")
	if h1 := get(t, ctx, "h1", chromedp.Text(chromedp.CSS("main h1"))); h1 != "You are signed in" {
		t.Errorf("sign-in page while signed in: h1 %q", h1)
	}
	if lead := get(t, ctx, "lead", chromedp.Text(chromedp.CSS("main .lead"))); !strings.Contains(lead, "as alice") {
		t.Errorf("the page does not say who is signed in: %q", lead)
	}
	screenshot(t, ctx, "signin-signed-in")
	navigation(t, ctx, "switch account", chromedp.Click(chromedp.Search(`//button[normalize-space()="Sign in as someone else"]`)))
	checkSignInPage(t, ctx, "/admin")
	bg := g.accounts["breakglass"]
	resp = navigation(t, ctx, "sign in as breakglass",
		chromedp.SendKeys(chromedp.ID("login"), bg.username),
		chromedp.SendKeys(chromedp.ID("password"), bg.password+kb.Enter))
	if loc := location(t, ctx); loc.Path != "/admin" || resp.Status != http.StatusOK {
		t.Fatalf("break-glass admin at %s (status %d), want /admin (200)", loc, resp.Status)
	}
	if user, bound := me(t, ctx); user != "breakglass" || bound {
		t.Errorf("after the switch /me is %q bound=%v, want the unbound breakglass", user, bound)
	}

	open(t, ctx, "open sign-out", g.url+"/.auth/signout?redirect_url=%2Faccount%2F")
	if lead := get(t, ctx, "lead", chromedp.Text(chromedp.CSS("main .lead"))); !strings.Contains(lead, "as breakglass") {
		t.Errorf("sign-out confirmation: %q", lead)
	}
	screenshot(t, ctx, "signout-confirm")
	navigation(t, ctx, "cancel", chromedp.Click(chromedp.Search(`//main//a[normalize-space()="Cancel"]`)))
	if loc := location(t, ctx); loc.Path != "/account/" {
		t.Errorf("cancel went to %s, want /account/", loc)
	}
	if user, _ := me(t, ctx); user != "breakglass" {
		t.Errorf("cancel ended the session: /me user %q", user)
	}
}

// TestBrowserSVGLogo: an SVG logo with neither width nor height (only a
// viewBox, or nothing at all) is drawn at the text's height beside the site
// name, not at the 300×150 fallback size of an unsized image.
func TestBrowserSVGLogo(t *testing.T) {
	browser := requireBrowser(t)
	dir := t.TempDir()
	for name, svg := range map[string]string{
		"wide.svg": `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 100"><rect width="400" height="100" rx="20" fill="#0f766e"/></svg>`,
		"bare.svg": `<svg xmlns="http://www.w3.org/2000/svg"><circle cx="75" cy="75" r="70" fill="#b45309"/></svg>`,
		"tall.svg": `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 50 200"><rect width="50" height="200" fill="#1d4ed8"/></svg>`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		file       string
		minW, maxW float64
		minH, maxH float64
	}{
		{"wide.svg", 150, 161, 39, 41}, // 4:1 at 40 px high would be 160 wide: the 10rem cap
		{"bare.svg", 30, 161, 39, 41},  // no intrinsic size or ratio: bounded by the height and the cap
		{"tall.svg", 8, 12, 39, 41},    // 1:4 at 40 px high
	} {
		t.Run(tt.file, func(t *testing.T) {
			g := startDevEnv(t, []string{"CRMGATE_TEMPLATES_DIR=" + dir, "CRMGATE_LOGO_URL=/.auth/static/" + tt.file, "CRMGATE_SITE_NAME=Northwind Traders"})
			ctx := newBrowser(t, browser)
			open(t, ctx, "open sign-in", g.url+"/.auth/signin")
			do(t, ctx, "logo loaded", chromedp.WaitVisible(chromedp.CSS("img.brand-logo")))
			type box struct{ X, Y, W, H float64 }
			rects := get(t, ctx, "boxes", chromedp.Evaluate[map[string]box](`(() => {
				const r = e => { const b = e.getBoundingClientRect(); return {X: b.x, Y: b.y, W: b.width, H: b.height}; };
				return {logo: r(document.querySelector("img.brand-logo")), name: r(document.querySelector(".brand-name"))};
			})()`))
			logo, name := rects["logo"], rects["name"]
			if logo.W < tt.minW || logo.W > tt.maxW || logo.H < tt.minH || logo.H > tt.maxH {
				t.Errorf("logo is %.0f×%.0f, want %.0f–%.0f × %.0f–%.0f", logo.W, logo.H, tt.minW, tt.maxW, tt.minH, tt.maxH)
			}
			if name.X < logo.X+logo.W || name.Y+name.H < logo.Y || name.Y > logo.Y+logo.H {
				t.Errorf("site name %+v is not beside the logo %+v", name, logo)
			}
			if txt := get(t, ctx, "name", chromedp.Text(chromedp.CSS(".brand-name"))); txt != "Northwind Traders" {
				t.Errorf("site name %q", txt)
			}
			screenshot(t, ctx, "logo-"+strings.TrimSuffix(tt.file, ".svg"))
		})
	}
}
