package proxy_test

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var redirectFieldRE = regexp.MustCompile(`name="redirect_url" value="([^"]*)"`)

// formField returns the value of the hidden redirect_url field of body.
func formField(t *testing.T, body string) string {
	t.Helper()
	m := redirectFieldRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no redirect_url field in:\n%s", body)
	}
	return html.UnescapeString(m[1])
}

// postForm posts form to path as a same-origin browser would.
func postForm(h *harness, c *http.Client, path string, form url.Values) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return h.do(c, req)
}

// TestUnmatchedRouteIsNoPage: a request no route matches gets the "no page
// here" 404 (page and JSON), never the "access denied" of a route that
// refuses, and nothing reaches the upstream.
func TestUnmatchedRouteIsNoPage(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.com", "correct horse battery")
	alice := h.browser()
	h.signIn(alice, "alice", "correct horse battery")
	before := h.up.count()
	for _, c := range []struct {
		name string
		c    *http.Client
	}{{"anonymous", h.browser()}, {"signed in", alice}} {
		for _, p := range []string{"/nowhere", "/nowhere/deeper?x=1", "/publicx", "/adminx", "/.well-known/x"} {
			resp, body := h.get(c.c, p)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", c.name, p, resp.StatusCode)
			}
			if !strings.Contains(body, "<h1>No page here</h1>") || strings.Contains(body, "Access denied") {
				t.Errorf("%s %s: not the no-page page:\n%s", c.name, p, body)
			}
			if !strings.Contains(body, `href="/">Go to the home page`) {
				t.Errorf("%s %s: no home link", c.name, p)
			}
			resp, body = h.get(c.c, p, "Accept", "application/json")
			var e struct{ Error, Message, RequestID string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != 404 || e.Error != "not_found" {
				t.Errorf("%s %s as JSON: %d %q", c.name, p, resp.StatusCode, body)
			}
		}
	}
	// A route that refuses still says "access denied".
	if resp, body := h.get(alice, "/closed/x"); resp.StatusCode != 403 || !strings.Contains(body, "Access denied") {
		t.Errorf("/closed/x: %d, want the 403 page", resp.StatusCode)
	}
	if n := h.up.count(); n != before {
		t.Errorf("the upstream received %d requests", n-before)
	}
}

// TestSignInPageWhileSignedIn: the sign-in page of a signed-in browser says
// who is signed in, continues to the (validated) return address, and offers
// a CSRF-protected switch of account that comes back to sign-in with the
// same return address and then lands there as the other user.
func TestSignInPageWhileSignedIn(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.com", "correct horse battery")
	h.createUser("bob", "bob@example.com", "battery staple horse")
	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")

	resp, body := h.get(c, "/.auth/signin?redirect_url="+url.QueryEscape("/account/orders?id=7"))
	if resp.StatusCode != 200 || !strings.Contains(body, "as <strong>alice</strong>") {
		t.Fatalf("sign-in page while signed in: %d\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, `name="password"`) {
		t.Error("the password form is shown to a signed-in browser")
	}
	if !strings.Contains(body, `href="/account/orders?id=7">Continue as alice`) {
		t.Errorf("no continue link to the return address:\n%s", body)
	}
	switchTo := formField(t, body)
	if want := "/.auth/signin?redirect_url=" + url.QueryEscape("/account/orders?id=7"); switchTo != want {
		t.Errorf("switch returns to %q, want %q", switchTo, want)
	}

	// Hostile return addresses: the continue link goes home instead.
	for _, bad := range []string{"//evil.example/", "https://evil.example/", "javascript:alert(1)", "/\\evil.example", "/%2F%2Fevil.example"} {
		_, body := h.get(c, "/.auth/signin?redirect_url="+url.QueryEscape(bad))
		if !strings.Contains(body, `href="/">Continue as alice`) || strings.Contains(body, "evil") {
			t.Errorf("redirect_url %q: the page links to it:\n%s", bad, body)
		}
	}

	// Switch without a valid token is refused and keeps the session.
	if resp, _ := postForm(h, c, "/.auth/signout", url.Values{"csrf_token": {"forged"}, "redirect_url": {switchTo}}); resp.StatusCode != 403 {
		t.Errorf("switch with a forged token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := h.get(c, "/account/x"); resp.StatusCode != 200 {
		t.Fatalf("the refused switch ended the session: %d", resp.StatusCode)
	}
	// A cross-site switch is refused by the origin check.
	req, _ := http.NewRequest("POST", h.url("/.auth/signout"), strings.NewReader(url.Values{"redirect_url": {switchTo}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := h.do(c, req); resp.StatusCode != 403 {
		t.Errorf("cross-site switch: %d, want 403", resp.StatusCode)
	}

	_, body = h.get(c, "/.auth/signin?redirect_url="+url.QueryEscape("/account/orders?id=7"))
	tok := csrfRE.FindStringSubmatch(body)[1]
	resp, _ = postForm(h, c, "/.auth/signout", url.Values{"csrf_token": {html.UnescapeString(tok)}, "redirect_url": {switchTo}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != switchTo {
		t.Fatalf("switch: %d to %q, want 303 to %q", resp.StatusCode, resp.Header.Get("Location"), switchTo)
	}
	resp, body = h.get(c, switchTo)
	if resp.StatusCode != 200 || !strings.Contains(body, `name="password"`) || formField(t, body) != "/account/orders?id=7" {
		t.Fatalf("after switching, the sign-in form with the return address: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = h.postSignIn(c, "bob", "battery staple horse", url.Values{"redirect_url": {"/account/orders?id=7"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account/orders?id=7" {
		t.Fatalf("sign-in as bob: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := h.get(c, "/.auth/me"); !strings.Contains(body, `"username":"bob"`) {
		t.Errorf("after the switch /me is %s", body)
	}
}

// TestSignOutPage: the confirmation names the user and has a cancel back to
// the return address (or home); without a session it says nobody is signed
// in and offers sign-in and a way back; hostile return addresses never
// become links.
func TestSignOutPage(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.com", "correct horse battery")
	anon := h.browser()
	resp, body := h.get(anon, "/.auth/signout")
	if resp.StatusCode != 200 || !strings.Contains(body, "<h1>You are not signed in</h1>") || strings.Contains(body, ">Sign out</button>") {
		t.Fatalf("sign-out page without a session: %d\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `href="/.auth/signin">Sign in`) || !strings.Contains(body, `href="/">Go back`) {
		t.Errorf("no sign-in or back link:\n%s", body)
	}

	c := h.browser()
	h.signIn(c, "alice", "correct horse battery")
	_, body = h.get(c, "/.auth/signout?redirect_url="+url.QueryEscape("/account/x?y=1"))
	if !strings.Contains(body, "as <strong>alice</strong>") || !strings.Contains(body, `href="/account/x?y=1">Cancel`) {
		t.Errorf("sign-out confirmation lacks the user or the cancel link:\n%s", body)
	}
	if formField(t, body) != "/account/x?y=1" {
		t.Errorf("redirect_url field %q", formField(t, body))
	}
	_, body = h.get(c, "/.auth/signout")
	if !strings.Contains(body, `href="/">Cancel`) {
		t.Errorf("cancel without a return address does not go home:\n%s", body)
	}
	for _, bad := range []string{"//evil.example/", "https://evil.example/x", "javascript:alert(1)", "/\t/evil.example", "\\\\evil.example"} {
		_, body := h.get(c, "/.auth/signout?redirect_url="+url.QueryEscape(bad))
		if strings.Contains(body, "evil") || strings.Contains(body, "javascript") {
			t.Errorf("redirect_url %q is echoed:\n%s", bad, body)
		}
	}
	// Cancel is a plain link: the session is untouched.
	if resp, _ := h.get(c, "/account/x"); resp.StatusCode != 200 {
		t.Errorf("after viewing the sign-out page: %d", resp.StatusCode)
	}
}

// TestReturnAddress8KB: a return address up to 8 KB survives the whole
// round trip (challenge, sign-in page, form, redirect); a longer one is
// refused cleanly: the sign-in page says it will not return there, and the
// sign-in lands on the home page.
func TestReturnAddress8KB(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("alice", "alice@example.com", "correct horse battery")
	const limit = 8 << 10
	for _, tt := range []struct {
		name string
		size int
		kept bool
	}{
		{"short", 40, true}, {"2 KB", 2 << 10, true}, {"just under", limit - 1, true}, {"exactly 8 KB", limit, true},
		{"one over", limit + 1, false}, {"16 KB", 16 << 10, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// /account/?q=aaa…: the request URI is exactly tt.size bytes.
			back := "/account/?q="
			back += strings.Repeat("a", tt.size-len(back))
			c := h.browser()
			resp, _ := h.get(c, back)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("challenge: %d", resp.StatusCode)
			}
			loc := resp.Header.Get("Location")
			resp, body := h.get(c, loc)
			if resp.StatusCode != 200 {
				t.Fatalf("sign-in page: %d", resp.StatusCode)
			}
			field := formField(t, body)
			if tt.kept != (field == back) {
				t.Fatalf("redirect_url field kept = %v (len %d), want %v", field == back, len(field), tt.kept)
			}
			if notice := strings.Contains(body, "too long to return to"); notice == tt.kept {
				t.Errorf("too-long notice shown = %v, want %v", notice, !tt.kept)
			}
			resp, _ = h.postSignIn(c, "alice", "correct horse battery", url.Values{"redirect_url": {field}})
			want := back
			if !tt.kept {
				want = "/"
			}
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
				t.Fatalf("after sign-in: %d to %d bytes, want %d bytes", resp.StatusCode, len(resp.Header.Get("Location")), len(want))
			}
			if tt.kept {
				if resp, _ := h.get(c, want); resp.StatusCode != 200 || h.up.last(t).Query != want[len("/account/?"):] {
					t.Errorf("the return address did not reach the upstream whole: %d", resp.StatusCode)
				}
			}
			// Posting an over-long redirect_url directly is refused the same way.
			resp, _ = h.postSignIn(h.browser(), "alice", "correct horse battery", url.Values{"redirect_url": {"/" + strings.Repeat("b", limit)}})
			if resp.Header.Get("Location") != "/" {
				t.Errorf("over-long posted redirect_url: went to %d bytes", len(resp.Header.Get("Location")))
			}
		})
	}
}
