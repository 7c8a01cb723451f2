package pages

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// element is a start tag found in a rendered page.
type element struct {
	name  string
	attrs map[string]string
	text  string // character data directly up to the next tag (for labels and headings)
}

// parseHTML tokenises a rendered page with encoding/xml in its lenient HTML mode (void elements
// auto-closed, HTML entities known) and returns every start tag with its attributes.
func parseHTML(t *testing.T, page []byte) []element {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	var els []element
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return els
		}
		if err != nil {
			t.Fatalf("page does not tokenise: %v\n%s", err, page)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := element{name: strings.ToLower(tok.Name.Local), attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[strings.ToLower(a.Name.Local)] = a.Value
			}
			els = append(els, e)
		case xml.CharData:
			if len(els) > 0 {
				els[len(els)-1].text += string(tok)
			}
		}
	}
}

// checkAccessible fails the test for every accessibility problem in page.
func checkAccessible(t *testing.T, page []byte) {
	t.Helper()
	for _, p := range accessibilityProblems(t, page) {
		t.Error(p)
	}
}

// accessibilityProblems lists the mechanical accessibility rules page breaks: every visible
// <input> has a <label for>, one <h1>, a lang attribute, alt on images, unique ids,
// aria-describedby pointing at an element, no scripts and no inline styles (the CSP blocks them).
func accessibilityProblems(t *testing.T, page []byte) []string {
	t.Helper()
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	els := parseHTML(t, page)
	ids := map[string]int{}
	labels := map[string]bool{}
	h1, lang := 0, false
	for _, e := range els {
		if id, ok := e.attrs["id"]; ok {
			ids[id]++
		}
		switch e.name {
		case "label":
			labels[e.attrs["for"]] = true
		case "h1":
			h1++
		case "html":
			lang = e.attrs["lang"] != ""
		case "img":
			if _, ok := e.attrs["alt"]; !ok {
				add("<img src=%q> has no alt", e.attrs["src"])
			}
		case "script":
			add("page contains a <script>")
		}
		if _, ok := e.attrs["style"]; ok {
			add("<%s> has an inline style", e.name)
		}
	}
	if !lang {
		add("<html> has no lang attribute")
	}
	if h1 != 1 {
		add("page has %d <h1>, want exactly 1", h1)
	}
	for id, n := range ids {
		if n > 1 {
			add("id %q used %d times", id, n)
		}
	}
	for _, e := range els {
		if e.name == "input" && e.attrs["type"] != "hidden" {
			if id := e.attrs["id"]; id == "" || !labels[id] {
				add("<input name=%q> has no <label for=%q>", e.attrs["name"], id)
			}
		}
		if ref, ok := e.attrs["aria-describedby"]; ok {
			for _, id := range strings.Fields(ref) {
				if ids[id] == 0 {
					add("aria-describedby=%q points to no element", id)
				}
			}
		}
	}
	return problems
}

// TestAccessibilityChecker shows the checker used on every golden page catches each problem.
func TestAccessibilityChecker(t *testing.T) {
	const good = `<html lang="en"><body><h1>T</h1><label for="a">A</label><input id="a" name="a"><input type="hidden" name="h"></body></html>`
	tests := []struct {
		name, page, want string
	}{
		{"good", good, ""},
		{"unlabelled input", `<html lang="en"><h1>T</h1><input id="a" name="a"></html>`, "no <label"},
		{"label for another id", `<html lang="en"><h1>T</h1><label for="b">B</label><input id="a" name="a"></html>`, "no <label"},
		{"input without id", `<html lang="en"><h1>T</h1><label>A <input name="a"></label></html>`, "no <label"},
		{"no lang", `<html><h1>T</h1></html>`, "no lang"},
		{"two h1", `<html lang="en"><h1>T</h1><h1>U</h1></html>`, "2 <h1>"},
		{"no h1", `<html lang="en"><p>T</p></html>`, "0 <h1>"},
		{"dangling describedby", `<html lang="en"><h1>T</h1><label for="a">A</label><input id="a" aria-describedby="err"></html>`, "points to no element"},
		{"duplicate id", `<html lang="en"><h1 id="x">T</h1><p id="x"></p></html>`, "used 2 times"},
		{"img without alt", `<html lang="en"><h1>T</h1><img src="l.png"></html>`, "no alt"},
		{"inline style", `<html lang="en"><h1 style="color:red">T</h1></html>`, "inline style"},
		{"script", `<html lang="en"><h1>T</h1><script>x()</script></html>`, "<script>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := accessibilityProblems(t, []byte(tt.page))
			if tt.want == "" {
				if len(problems) != 0 {
					t.Errorf("problems in a good page: %v", problems)
				}
				return
			}
			if !strings.Contains(strings.Join(problems, "\n"), tt.want) {
				t.Errorf("problems %v, want one containing %q", problems, tt.want)
			}
		})
	}
}

func newRenderer(t *testing.T, opts Options) *Renderer {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func TestRenderGolden(t *testing.T) {
	r := newRenderer(t, Options{Branding: Branding{SiteName: "Contoso Partners", PrimaryColor: "#0F766E"}})
	logo := newRenderer(t, Options{Branding: Branding{SiteName: "Fabrikam", LogoURL: "https://cdn.fabrikam.example/logo.svg", AuthPrefix: "/_gate"}})
	tests := []struct {
		name   string
		r      *Renderer
		status int
		page   Page
		data   any
	}{
		{"signin", r, http.StatusOK, PageSignIn, SignInData{RedirectURL: "/orders?id=7", CSRFToken: "csrf-123"}},
		{"signin_error", r, http.StatusUnauthorized, PageSignIn, SignInData{
			Login: "ana@contoso.example", RedirectURL: "/", CSRFToken: "csrf-456", Remember: true,
			Error: "The username or password is incorrect.", Notice: "Your password was changed. Sign in with the new one.",
		}},
		{"signin_logo_prefix", logo, http.StatusOK, PageSignIn, &SignInData{CSRFToken: "t"}},
		{"signedout", r, http.StatusOK, PageSignedOut, SignedOutData{}},
		{"signedout_custom_link", r, http.StatusOK, PageSignedOut, SignedOutData{SignInURL: "/.auth/signin?redirect_url=%2Forders"}},
		{"signout", r, http.StatusOK, PageSignOut, SignOutData{CSRFToken: "tok", RedirectURL: "/after", SignedInAs: "ana", CancelURL: "/after"}},
		{"signout_anonymous", r, http.StatusOK, PageSignOut, SignOutData{CSRFToken: "tok"}},
		{"signin_signed_in", r, http.StatusOK, PageSignIn, SignInData{CSRFToken: "tok", SignedInAs: "ana", ContinueURL: "/orders?id=7",
			SwitchRedirectURL: "/.auth/signin?redirect_url=%2Forders%3Fid%3D7"}},
		{"signin_home_url", newRenderer(t, Options{Branding: Branding{SiteName: "Northwind", LogoURL: "/logo.svg", HomeURL: "https://www.northwind.example/"}}),
			http.StatusOK, PageSignIn, SignInData{CSRFToken: "t"}},
		{"error", r, http.StatusServiceUnavailable, PageError, ErrorData{
			Status: 503, Title: "Sign-in is temporarily unavailable",
			Message:   "We cannot reach the customer directory right now. Please try again in a few minutes.",
			RequestID: "01J9Z6Q7XKQ4T8D2M5N0P3R6S9", SignInURL: "/.auth/signin", HomeURL: "https://contoso.example/",
		}},
		{"error_minimal", r, http.StatusNotFound, PageError, ErrorData{Status: 404}},
		{"profile", r, http.StatusOK, PageProfile, ProfileData{CSRFToken: "tok", Username: "ana",
			Notice: "Your profile was saved.", Fields: []ProfileField{
				{Name: "first_name", Label: "First name", Value: "Ana", Autocomplete: "given-name", Hint: "Also saved to your customer record."},
				{Name: "last_name", Label: "Last name", Value: "Lima", Autocomplete: "family-name"},
				{Name: "display_name", Label: "Display name", Value: "Ana Lima", ReadOnly: true, Hint: "Managed in your customer record."},
				{Name: "email", Label: "Email address", Value: "ana@contoso.example", Autocomplete: "email", ReadOnly: true, Hint: "Your email address cannot be changed here."},
			}}},
		{"signin_register", r, http.StatusOK, PageSignIn, SignInData{CSRFToken: "t", RegisterURL: "/.auth/register?redirect_url=%2Forders"}},
		{"register", r, http.StatusOK, PageRegister, RegisterData{CSRFToken: "tok", RedirectURL: "/orders", MinLength: 12,
			Approval: true, SignInURL: "/.auth/signin?redirect_url=%2Forders",
			Fields: []RegisterField{{Name: "field_telephone1", Label: "Phone", Autocomplete: "tel"}, {Name: "field_jobtitle", Label: "Job title"}}}},
		{"register_errors", r, http.StatusBadRequest, PageRegister, RegisterData{CSRFToken: "tok", MinLength: 12, LastNameRequired: true,
			Email: "ana@", LastName: "", SignInURL: "/.auth/signin",
			Errors: []FieldError{{ID: "email", Message: "Enter a valid email address."}, {ID: "password", Message: "The password is too short."},
				{ID: "field_telephone1", Message: "Too long."}},
			EmailError: "Enter a valid email address.", PasswordError: "The password is too short.",
			Fields: []RegisterField{{Name: "field_telephone1", Label: "Phone", Value: "123", Error: "Too long."}}}},
		{"register_invitation", r, http.StatusOK, PageRegister, RegisterData{InvitationOnly: true, SignInURL: "/.auth/signin"}},
		{"registered_check_mail", r, http.StatusOK, PageRegistered, RegisteredData{Next: NextCheckMail, Email: "ana@contoso.example", ResendURL: "/.auth/confirm/resend"}},
		{"registered_pending", r, http.StatusOK, PageRegistered, RegisteredData{Next: NextPending}},
		{"registered_setting_up", r, http.StatusOK, PageRegistered, RegisteredData{Next: NextSettingUp, SignInURL: "/.auth/signin"}},
		{"registered_confirmed", r, http.StatusOK, PageRegistered, RegisteredData{Next: NextConfirmed, SignInURL: "/.auth/signin?redirect_url=%2Forders"}},
		{"confirm", r, http.StatusOK, PageConfirm, ConfirmData{CSRFToken: "tok", Token: "secret-value"}},
		{"confirm_error", r, http.StatusBadRequest, PageConfirm, ConfirmData{Error: "This link is invalid or has expired.", ResendURL: "/.auth/confirm/resend"}},
		{"resend", r, http.StatusOK, PageResend, ResendData{CSRFToken: "tok", Email: "ana@contoso.example",
			Notice: "If that address has an account waiting for confirmation, we sent it a new link.", SignInURL: "/.auth/signin"}},
		{"profile_error", r, http.StatusBadRequest, PageProfile, ProfileData{CSRFToken: "tok", Username: "ana",
			Error: "Please correct the marked field.", Fields: []ProfileField{
				{Name: "first_name", Label: "First name", Value: "A<b>", Error: "Names must be plain text.", Hint: "Also saved to your customer record."},
				{Name: "last_name", Label: "Last name", Value: "Lima", Error: "Too long."},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := tt.r.Render(rec, tt.status, tt.page, tt.data); err != nil {
				t.Fatalf("Render: %v", err)
			}
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			got := rec.Body.Bytes()
			checkAccessible(t, got)
			golden := filepath.Join("testdata", tt.name+".golden.html")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update if the change is intended)\ngot:\n%s", golden, got)
			}
		})
	}
}

func TestRenderHeaders(t *testing.T) {
	r := newRenderer(t, Options{})
	rec := httptest.NewRecorder()
	if err := r.Render(rec, http.StatusTeapot, PageSignIn, SignInData{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-store",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "same-origin",
		"X-Content-Type-Options":  "nosniff",
	}
	for k, v := range want {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if rec.Code != http.StatusTeapot {
		t.Errorf("status = %d", rec.Code)
	}
	if got, want := rec.Header().Get("Content-Length"), strconv.Itoa(rec.Body.Len()); got != want {
		t.Errorf("Content-Length = %s, body %s bytes", got, want)
	}
}

func TestRenderEscapesHostileData(t *testing.T) {
	r := newRenderer(t, Options{Branding: Branding{SiteName: `Evil <b>"Corp"</b>`}})
	const (
		login    = `"><script>alert(1)</script>`
		redirect = `/x" onmouseover="alert(1)" data-x='`
		csrf     = `'"<>&`
		message  = `<img src=x onerror=alert(1)>`
	)
	tests := []struct {
		name  string
		page  Page
		data  any
		check func(t *testing.T, els []element)
	}{
		{"signin", PageSignIn, SignInData{Login: login, RedirectURL: redirect, CSRFToken: csrf, Error: message, Notice: message}, func(t *testing.T, els []element) {
			values := map[string]string{}
			for _, e := range els {
				if e.name == "input" {
					values[e.attrs["name"]] = e.attrs["value"]
				}
			}
			// The hostile strings survive as attribute values, not as markup.
			for name, want := range map[string]string{"login": login, "redirect_url": redirect, "csrf_token": csrf} {
				if values[name] != want {
					t.Errorf("input %s value = %q, want %q", name, values[name], want)
				}
			}
		}},
		{"error", PageError, ErrorData{Status: 400, Title: message, Message: message, RequestID: login, SignInURL: "javascript:alert(1)", HomeURL: `/" onclick="x`}, func(t *testing.T, els []element) {
			for _, e := range els {
				if e.name == "a" && strings.HasPrefix(strings.ToLower(e.attrs["href"]), "javascript:") {
					t.Errorf("javascript: URL kept in href %q", e.attrs["href"])
				}
				if _, ok := e.attrs["onclick"]; ok {
					t.Error("attribute injection: onclick present")
				}
			}
		}},
		{"profile", PageProfile, ProfileData{CSRFToken: csrf, Username: message, Error: message, Notice: message,
			Fields: []ProfileField{{Name: "first_name", Label: message, Value: login, Hint: message, Error: message}}}, func(t *testing.T, els []element) {
			for _, e := range els {
				if e.name == "input" && e.attrs["name"] == "first_name" && e.attrs["value"] != login {
					t.Errorf("first_name value = %q, want %q", e.attrs["value"], login)
				}
				if e.name == "img" || e.name == "script" {
					t.Errorf("markup injected: <%s>", e.name)
				}
			}
		}},
		{"signedout", PageSignedOut, SignedOutData{SignInURL: `" autofocus onfocus="alert(1)`}, func(t *testing.T, els []element) {
			for _, e := range els {
				if _, ok := e.attrs["onfocus"]; ok {
					t.Error("attribute injection: onfocus present")
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := r.Render(rec, http.StatusOK, tt.page, tt.data); err != nil {
				t.Fatal(err)
			}
			body := rec.Body.String()
			for _, bad := range []string{"<script", "<img src=x", "<b>"} {
				if strings.Contains(body, bad) {
					t.Errorf("unescaped %q in page:\n%s", bad, body)
				}
			}
			els := parseHTML(t, rec.Body.Bytes())
			for _, e := range els {
				if e.name == "script" || e.name == "b" || (e.name == "img" && e.attrs["src"] == "x") {
					t.Errorf("injected element <%s>", e.name)
				}
			}
			tt.check(t, els)
		})
	}
}

// writeFiles creates a directory holding files.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOverrideDir(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"signin.html": `{{define "title"}}Custom{{end}}{{define "content"}}<h1>Welcome to {{.Brand.SiteName}}</h1><p>custom-signin-marker {{.Data.Login}}</p>{{end}}`,
		"style.css":   "body { color: #000000; } /* custom-style */",
		"logo.svg":    `<svg xmlns="http://www.w3.org/2000/svg"/>`,
		"README":      "extra files are served as static files",
	})
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRenderer(t, Options{Dir: dir, Branding: Branding{SiteName: "Northwind", LogoURL: "/.auth/static/logo.svg"}})

	rec := httptest.NewRecorder()
	if err := r.Render(rec, http.StatusOK, PageSignIn, SignInData{Login: "ana"}); err != nil {
		t.Fatal(err)
	}
	if body := rec.Body.String(); !strings.Contains(body, "custom-signin-marker ana") || !strings.Contains(body, "<title>Custom</title>") {
		t.Errorf("override not used:\n%s", body)
	}
	rec = httptest.NewRecorder()
	if err := r.Render(rec, http.StatusNotFound, PageError, ErrorData{Status: 404, RequestID: "rid"}); err != nil {
		t.Fatal(err)
	}
	if body := rec.Body.String(); !strings.Contains(body, "Request ID: <code>rid</code>") {
		t.Errorf("embedded error page not used:\n%s", body)
	}

	for name, want := range map[string]string{"style.css": "custom-style", "logo.svg": "<svg", "favicon.svg": "<svg"} {
		rec := httptest.NewRecorder()
		r.StaticHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, r.StaticURL(name), nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s = %d %q, want %q", r.StaticURL(name), rec.Code, rec.Body.String(), want)
		}
	}
}

func TestNewRejectsBrokenTemplates(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		file  string // the file the error must name
	}{
		{"parse error", map[string]string{"signin.html": `{{define "content"}}{{if}}{{end}}`}, "signin.html"},
		{"unclosed action", map[string]string{"error.html": `{{define "content"}}{{.Data.Message{{end}}`}, "error.html"},
		{"broken layout", map[string]string{"layout.html": `<html>{{template "content" .}`}, "layout.html"},
		{"missing field at trial render", map[string]string{"signedout.html": `{{define "content"}}<h1>{{.Data.NoSuchField}}</h1>{{end}}`}, "signedout.html"},
		{"undefined function", map[string]string{"signin.html": `{{define "content"}}{{nosuchfunc}}{{end}}`}, "signin.html"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			_, err := New(Options{Dir: dir})
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("New error = %v, want *TemplateError", err)
			}
			if want := filepath.Join(dir, tt.file); te.File != want || !strings.Contains(err.Error(), want) {
				t.Errorf("error %q names %q, want %q", err, te.File, want)
			}
		})
	}

	t.Run("unknown html file", func(t *testing.T) {
		_, err := New(Options{Dir: writeFiles(t, map[string]string{"sigin.html": "typo"})})
		if !errors.Is(err, ErrUnknownOverride) || !strings.Contains(err.Error(), "sigin.html") {
			t.Errorf("New error = %v, want ErrUnknownOverride naming sigin.html", err)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		if _, err := New(Options{Dir: filepath.Join(t.TempDir(), "nope")}); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("New error = %v, want os.ErrNotExist", err)
		}
	})
}

func TestNewValidatesBranding(t *testing.T) {
	tests := []struct {
		name  string
		brand Branding
		want  error // nil: accepted
	}{
		{"zero value", Branding{}, nil},
		{"short colour", Branding{PrimaryColor: "#0af"}, nil},
		{"upper-case colour", Branding{PrimaryColor: "#0A7F3B"}, nil},
		{"colour name", Branding{PrimaryColor: "red"}, ErrInvalidColor},
		{"no hash", Branding{PrimaryColor: "2563eb"}, ErrInvalidColor},
		{"two digits", Branding{PrimaryColor: "#12"}, ErrInvalidColor},
		{"four digits", Branding{PrimaryColor: "#1234"}, ErrInvalidColor},
		{"eight digits", Branding{PrimaryColor: "#11223344"}, ErrInvalidColor},
		{"not hex", Branding{PrimaryColor: "#GG0000"}, ErrInvalidColor},
		{"sign", Branding{PrimaryColor: "#+12345"}, ErrInvalidColor},
		{"css injection", Branding{PrimaryColor: "#fff;}"}, ErrInvalidColor},
		{"https logo", Branding{LogoURL: "https://cdn.example/logo.png"}, nil},
		{"path logo", Branding{LogoURL: "/assets/logo.png"}, nil},
		{"http logo", Branding{LogoURL: "http://cdn.example/logo.png"}, ErrInvalidBranding},
		{"javascript logo", Branding{LogoURL: "javascript:alert(1)"}, ErrInvalidBranding},
		{"protocol-relative logo", Branding{LogoURL: "//evil.example/logo.png"}, ErrInvalidBranding},
		{"relative logo", Branding{LogoURL: "logo.png"}, ErrInvalidBranding},
		{"https home", Branding{HomeURL: "https://www.example.com/"}, nil},
		{"path home", Branding{HomeURL: "/portal/"}, nil},
		{"http home", Branding{HomeURL: "http://www.example.com/"}, ErrInvalidBranding},
		{"javascript home", Branding{HomeURL: "javascript:alert(1)"}, ErrInvalidBranding},
		{"data home", Branding{HomeURL: "data:text/html,x"}, ErrInvalidBranding},
		{"protocol-relative home", Branding{HomeURL: "//evil.example/"}, ErrInvalidBranding},
		{"backslash home", Branding{HomeURL: "/\\evil.example/"}, ErrInvalidBranding},
		{"tab home", Branding{HomeURL: "/\t/evil.example/"}, ErrInvalidBranding},
		{"user info home", Branding{HomeURL: "https://a@evil.example/"}, ErrInvalidBranding},
		{"relative home", Branding{HomeURL: "home"}, ErrInvalidBranding},
		{"quote home", Branding{HomeURL: "/\" onclick=\"x"}, ErrInvalidBranding},
		{"custom prefix", Branding{AuthPrefix: "/_auth"}, nil},
		{"prefix with slash", Branding{AuthPrefix: "/.auth/"}, ErrInvalidBranding},
		{"prefix without slash", Branding{AuthPrefix: ".auth"}, ErrInvalidBranding},
		{"prefix with dots", Branding{AuthPrefix: "/a/../b"}, ErrInvalidBranding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Branding: tt.brand})
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Errorf("New error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNormalizedBranding(t *testing.T) {
	r := newRenderer(t, Options{Branding: Branding{PrimaryColor: "#0AF"}})
	got := r.Branding()
	want := Branding{SiteName: DefaultSiteName, PrimaryColor: "#00aaff", AuthPrefix: DefaultAuthPrefix}
	if got != want {
		t.Errorf("Branding() = %+v, want %+v", got, want)
	}
}

// recordingWriter records every call so a test can prove nothing was written.
type recordingWriter struct {
	header http.Header
	calls  []string
}

func (w *recordingWriter) Header() http.Header {
	return w.header
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.calls = append(w.calls, "Write("+string(b)+")")
	return len(b), nil
}

func (w *recordingWriter) WriteHeader(status int) {
	w.calls = append(w.calls, "WriteHeader("+strconv.Itoa(status)+")")
}

func TestRenderNeverWritesPartialPage(t *testing.T) {
	// The template passes New's trial render (Login is empty there) but fails at execution
	// once Login is set, after it has already produced output.
	dir := writeFiles(t, map[string]string{
		"signin.html": `{{define "content"}}<h1>partial output</h1>{{if .Data.Login}}{{.Data.Login.Nope}}{{end}}{{end}}`,
	})
	r := newRenderer(t, Options{Dir: dir})
	w := &recordingWriter{header: http.Header{}}
	err := r.Render(w, http.StatusOK, PageSignIn, SignInData{Login: "ana"})
	if err == nil {
		t.Fatal("Render succeeded, want an execution error")
	}
	if len(w.calls) != 0 || len(w.header) != 0 {
		t.Errorf("Render wrote %v with headers %v after failing", w.calls, w.header)
	}

	// The caller can still answer, which proves nothing was committed.
	rec := httptest.NewRecorder()
	if err := r.Render(rec, http.StatusInternalServerError, PageError, ErrorData{Status: 500}); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("fallback status = %d", rec.Code)
	}
}

func TestRenderUnknownPage(t *testing.T) {
	r := newRenderer(t, Options{})
	w := &recordingWriter{header: http.Header{}}
	if err := r.Render(w, http.StatusOK, Page("layout"), nil); !errors.Is(err, ErrUnknownPage) {
		t.Errorf("Render(layout) = %v, want ErrUnknownPage", err)
	}
	if err := r.Render(w, http.StatusOK, Page("nope"), nil); !errors.Is(err, ErrUnknownPage) {
		t.Errorf("Render(nope) = %v, want ErrUnknownPage", err)
	}
	if len(w.calls) != 0 {
		t.Errorf("wrote %v", w.calls)
	}
}

func TestFormActionOrigins(t *testing.T) {
	r, err := New(Options{FormActionOrigins: []string{"https://app.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := r.Render(w, 200, PageSignIn, SignInData{}); err != nil {
		t.Fatal(err)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://app.example.com;") {
		t.Fatalf("CSP %q", csp)
	}
	for _, bad := range []string{"https://x.example.com; script-src *", "javascript:alert(1)", "https://x/path", "x.example.com"} {
		if _, err := New(Options{FormActionOrigins: []string{bad}}); !errors.Is(err, ErrInvalidBranding) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// TestRegistrationPagesEscapeHostileData: what a visitor typed comes back
// escaped on every registration page.
func TestRegistrationPagesEscapeHostileData(t *testing.T) {
	r := newRenderer(t, Options{})
	const evil = `"><script>alert(1)</script>`
	for _, tc := range []struct {
		page Page
		data any
	}{
		{PageRegister, RegisterData{CSRFToken: evil, RedirectURL: evil, Email: evil, FirstName: evil, LastName: evil, Error: evil,
			EmailError: evil, PasswordError: evil, Errors: []FieldError{{ID: evil, Message: evil}},
			Fields: []RegisterField{{Name: "field_x", Label: evil, Value: evil, Error: evil}}}},
		{PageRegistered, RegisteredData{Next: NextCheckMail, Email: evil, ResendURL: "/x"}},
		{PageConfirm, ConfirmData{CSRFToken: evil, Token: evil}},
		{PageConfirm, ConfirmData{Error: evil, ResendURL: "/x"}},
		{PageResend, ResendData{CSRFToken: evil, Email: evil, Notice: evil, Error: evil}},
	} {
		rec := httptest.NewRecorder()
		if err := r.Render(rec, 200, tc.page, tc.data); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(rec.Body.String(), "<script>") {
			t.Errorf("%s: unescaped input:\n%s", tc.page, rec.Body.String())
		}
	}
}
