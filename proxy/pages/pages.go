// Package pages renders the gateway's own server-rendered HTML pages (sign-in, signed-out, error)
// and serves their static assets.
//
// Templates and static files are embedded in the binary and parsed once by New; an operator can
// replace any of them by putting a file of the same name in Options.Dir. Pages work without
// JavaScript, load nothing from other origins and are sent with a strict Content-Security-Policy.
package pages

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

//go:embed templates/*.html static/*
var embedded embed.FS

// layoutName is the template file that holds the shared page skeleton; every other file in
// templates/ is a page named by its file name without ".html".
const layoutName = "layout.html"

// themeName is the generated stylesheet that carries the colours derived from Branding.PrimaryColor.
const themeName = "theme.css"

// DefaultAuthPrefix is the URL prefix used when Branding.AuthPrefix is empty.
const DefaultAuthPrefix = "/.auth"

// DefaultSiteName is the site name used when Branding.SiteName is empty.
const DefaultSiteName = "crmgate"

// contentSecurityPolicy builds the policy sent with every page. No scripts at all; styles only
// from the gateway. Chrome also applies form-action to the redirect that follows a form
// submission, so the origins a sign-in may redirect to are listed there too.
func contentSecurityPolicy(formActions []string) string {
	fa := "'self'"
	for _, o := range formActions {
		fa += " " + o
	}
	return "default-src 'none'; style-src 'self'; img-src 'self' https: data:; " +
		"form-action " + fa + "; frame-ancestors 'none'; base-uri 'none'"
}

var (
	// ErrInvalidColor is returned by New when Branding.PrimaryColor is neither "#RGB" nor "#RRGGBB".
	ErrInvalidColor = errors.New("pages: invalid colour")
	// ErrInvalidBranding is returned by New when another Branding field is unusable
	// (a logo URL that is neither https nor a same-site path, a malformed AuthPrefix).
	ErrInvalidBranding = errors.New("pages: invalid branding")
	// ErrUnknownPage is returned by Render for a Page that has no template.
	ErrUnknownPage = errors.New("pages: unknown page")
	// ErrUnknownOverride is returned by New when Options.Dir holds an .html file that does not
	// replace an embedded template, which is almost always a misspelt file name.
	ErrUnknownOverride = errors.New("pages: override does not match an embedded template")
)

// TemplateError reports a template that failed to parse, or failed its trial render with
// empty data, in New. File is the embedded name ("signin.html") or the override's full path.
type TemplateError struct {
	File string
	Err  error
}

// Error returns the file name and the template package's message.
func (e *TemplateError) Error() string { return "pages: template " + e.File + ": " + e.Err.Error() }

// Unwrap returns the underlying template error.
func (e *TemplateError) Unwrap() error { return e.Err }

// Branding is what the pages show of the site they protect. The zero value is usable: the
// site name "crmgate", no logo, DefaultPrimaryColor and DefaultAuthPrefix.
type Branding struct {
	// SiteName is shown in the page header and titles, and is the logo's alt text.
	SiteName string
	// LogoURL is an https URL or a same-site path ("/.auth/static/logo.svg" serves a logo put
	// in Options.Dir). Empty shows the site name as text instead.
	LogoURL string
	// PrimaryColor is "#RGB" or "#RRGGBB", used for buttons, links and focus rings. The text
	// colour on buttons and the link shade are derived from it to meet WCAG AA contrast.
	// Empty means DefaultPrimaryColor.
	PrimaryColor string
	// AuthPrefix is the gateway's URL prefix, used for form actions and static URLs.
	// Empty means DefaultAuthPrefix. It must start with "/" and not end with one.
	AuthPrefix string
	// HomeURL is where the site name in the header and the "Back to" link of every page
	// lead: an https URL or a same-site path. Empty means DefaultHomeURL, the site's root.
	HomeURL string
}

// DefaultHomeURL is the home link used when Branding.HomeURL is empty: the root of the site
// the gateway serves.
const DefaultHomeURL = "/"

// Options configures New.
type Options struct {
	// Dir is an optional directory of replacement files. A file whose name matches an embedded
	// template ("signin.html", "layout.html") or static file ("style.css", "favicon.svg")
	// replaces it ("theme.css" replaces the colours generated from Branding.PrimaryColor, and
	// then the contrast guarantee is the operator's); any other non-.html file is served as an
	// extra static file; an unknown .html file is an error. Hidden files and subdirectories
	// are ignored. Empty means embedded files only.
	// Replaced templates are trusted like code: they can show anything in the page's data.
	Dir string
	// Branding is shown on every page.
	Branding Branding
	// FormActionOrigins are absolute origins (https://app.example.com) that the gateway's
	// forms may redirect to after submission, added to the CSP form-action directive.
	// Each must be a bare http(s) origin; empty means same-origin only.
	FormActionOrigins []string
}

// Page names a page template.
type Page string

// The pages handlers render. Each is the name of a template file without ".html".
const (
	// PageSignIn is the sign-in form; its data is SignInData.
	PageSignIn Page = "signin"
	// PageSignedOut confirms a sign-out; its data is SignedOutData.
	PageSignedOut Page = "signedout"
	// PageError explains a failed request; its data is ErrorData.
	PageError Page = "error"
	// PageSignOut asks to confirm signing out (a GET never signs out); its data is SignOutData.
	PageSignOut Page = "signout"
	// PageProfile shows and edits the signed-in user's profile; its data is ProfileData.
	PageProfile Page = "profile"
)

// ProfileData is the data of PageProfile.
type ProfileData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// Username is shown, never edited.
	Username string
	// Fields are the profile's fields in display order.
	Fields []ProfileField
	// Error is a user-safe message shown above the form; empty shows none.
	// Never put internal error text here.
	Error string
	// Notice is an informational message (e.g. "Your profile was saved."); empty shows none.
	Notice string
}

// ProfileField is one field of PageProfile.
type ProfileField struct {
	// Name is the form field name: first_name, last_name, display_name or email.
	Name string
	// Label is the visible label.
	Label string
	// Value is the current or the just-entered value.
	Value string
	// Autocomplete is the input's autocomplete token, e.g. "given-name".
	Autocomplete string
	// ReadOnly shows the value without letting it change; Hint should say why.
	ReadOnly bool
	// Hint is help text tied to the input with aria-describedby; empty shows none.
	Hint string
	// Error is this field's own message (aria-invalid); empty shows none.
	Error string
}

// SignOutData is the data of PageSignOut.
type SignOutData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// RedirectURL is echoed in a hidden field; the handler validates it on POST.
	RedirectURL string
	// SignedInAs is the signed-in user's name as shown ("alice"); empty means nobody is
	// signed in, and the page says so instead of asking to confirm.
	SignedInAs string
	// CancelURL is the "Cancel" link (keep the session and go back); empty means the home URL.
	// The handler must pass a validated address only.
	CancelURL string
}

// SignInData is the data of PageSignIn.
type SignInData struct {
	// Login pre-fills the "Username or email" field (after a failed attempt).
	Login string
	// RedirectURL is echoed in a hidden field; the handler must validate it again on POST.
	RedirectURL string
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// Remember pre-checks "Keep me signed in".
	Remember bool
	// Error is a user-safe message shown above the form and tied to the fields; empty shows none.
	// Never put internal error text here.
	Error string
	// Notice is an informational message (e.g. "Your password was changed"); empty shows none.
	Notice string
	// SignedInAs is set when the browser already has a session: the page then says who is
	// signed in and offers ContinueURL or switching account instead of the form.
	SignedInAs string
	// ContinueURL is the "Continue" link when SignedInAs is set; empty means the home URL.
	// The handler must pass a validated address only.
	ContinueURL string
	// RegisterURL is the "Create an account" link; empty (registration
	// off) shows none.
	RegisterURL string
	// SwitchRedirectURL is where the sign-out form of "Sign in as someone else" returns to
	// (the sign-in page with the same return address); the sign-out handler validates it.
	SwitchRedirectURL string
	// ResetURL is the "Forgot your password?" link (the reset page); empty shows none.
	ResetURL string
}

// SignedOutData is the data of PageSignedOut.
type SignedOutData struct {
	// SignInURL is the "Sign in again" link; empty means AuthPrefix + "/signin".
	SignInURL string
}

// ErrorData is the data of PageError.
type ErrorData struct {
	// Status is the HTTP status shown on the page; Render's status argument is what is sent.
	Status int
	// Title is the heading; empty means the standard status text.
	Title string
	// Message is a user-safe explanation; never internal error text.
	Message string
	// RequestID is shown in small monospace so users can quote it; empty hides the line.
	RequestID string
	// SignInURL adds a "Sign in" link when set.
	SignInURL string
	// HomeURL is the "Go to the home page" link; empty means "/".
	HomeURL string
}

// view is what every template receives: the branding, the page and its data.
type view struct {
	Brand Branding
	Page  Page
	Data  any
}

// asset is one static file with the hash that versions its URL.
type asset struct {
	body []byte
	hash string
}

// Renderer renders the pages and serves their static files. It is created once by New and
// is safe for concurrent use.
type Renderer struct {
	csp    string
	brand  Branding
	pages  map[Page]*template.Template
	static map[string]asset
}

// New validates the branding, reads the embedded files and the overrides in opts.Dir, parses
// every template and renders each known page once with empty data, so that a broken template
// fails start-up instead of a request. Template failures are *TemplateError naming the file.
func New(opts Options) (*Renderer, error) {
	brand, th, err := normalizeBranding(opts.Branding)
	if err != nil {
		return nil, err
	}
	for _, o := range opts.FormActionOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.ContainsAny(o, " ;,'\"") {
			return nil, fmt.Errorf("%w: form action origin %q is not an http(s) origin", ErrInvalidBranding, o)
		}
	}
	r := &Renderer{csp: contentSecurityPolicy(opts.FormActionOrigins), brand: brand, pages: map[Page]*template.Template{}, static: map[string]asset{}}

	type source struct{ file, text string } // file: name in errors
	templates := map[string]source{}
	if err := loadEmbedded("templates", func(name string, b []byte) {
		templates[name] = source{name, string(b)}
	}); err != nil {
		return nil, err
	}
	staticFiles := map[string][]byte{themeName: th.css()}
	if err := loadEmbedded("static", func(name string, b []byte) { staticFiles[name] = b }); err != nil {
		return nil, err
	}
	if opts.Dir != "" {
		entries, err := os.ReadDir(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("pages: override directory: %w", err)
		}
		for _, e := range entries {
			full := filepath.Join(opts.Dir, e.Name())
			// Hidden names are skipped: a Kubernetes ConfigMap volume holds "..data" and
			// timestamped directories next to symlinks to the real files.
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			fi, err := os.Stat(full)
			if err != nil {
				return nil, fmt.Errorf("pages: override: %w", err)
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			b, err := os.ReadFile(full)
			if err != nil {
				return nil, fmt.Errorf("pages: override: %w", err)
			}
			switch _, isTemplate := templates[e.Name()]; {
			case isTemplate:
				templates[e.Name()] = source{full, string(b)}
			case strings.HasSuffix(e.Name(), ".html"):
				return nil, fmt.Errorf("%w: %s", ErrUnknownOverride, full)
			default:
				staticFiles[e.Name()] = b
			}
		}
	}

	for name, b := range staticFiles {
		r.static[name] = asset{body: b, hash: contentHash(b)}
	}

	layout := templates[layoutName]
	base, err := template.New(layoutName).Funcs(r.funcs()).Parse(layout.text)
	if err != nil {
		return nil, &TemplateError{File: layout.file, Err: err}
	}
	for _, name := range slices.Sorted(maps.Keys(templates)) {
		if name == layoutName {
			continue
		}
		src := templates[name]
		t, err := base.Clone()
		if err == nil {
			_, err = t.New(name).Parse(src.text)
		}
		if err != nil {
			return nil, &TemplateError{File: src.file, Err: err}
		}
		page := Page(strings.TrimSuffix(name, ".html"))
		// Trial render: catches references to missing fields and funcs misused at execution.
		if sample, ok := samples[page]; ok {
			var buf bytes.Buffer
			if err := t.ExecuteTemplate(&buf, layoutName, view{Brand: brand, Page: page, Data: sample}); err != nil {
				return nil, &TemplateError{File: src.file, Err: err}
			}
		}
		r.pages[page] = t
	}
	return r, nil
}

// samples are the zero data of the known pages, used for New's trial render.
var samples = map[Page]any{
	PageSignIn:    SignInData{},
	PageSignedOut: SignedOutData{},
	PageError:     ErrorData{},
	PageSignOut:   SignOutData{},
	PageProfile:   ProfileData{Fields: []ProfileField{{Name: "first_name", Label: "First name"}}},
	PageRegister: RegisterData{Fields: []RegisterField{{Name: "field_telephone1", Label: "Phone"}},
		Errors: []FieldError{{ID: "email", Message: "x"}}},
	PageRegistered: RegisteredData{},
	PageConfirm:    ConfirmData{},
	PageResend:     ResendData{},
}

// loadEmbedded calls add for each file in the embedded directory dir.
func loadEmbedded(dir string, add func(name string, b []byte)) error {
	entries, err := embedded.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pages: embedded %s: %w", dir, err)
	}
	for _, e := range entries {
		b, err := embedded.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return fmt.Errorf("pages: embedded %s: %w", e.Name(), err)
		}
		add(e.Name(), b)
	}
	return nil
}

// normalizeBranding fills defaults, validates and derives the colour theme.
func normalizeBranding(b Branding) (Branding, theme, error) {
	if strings.TrimSpace(b.SiteName) == "" {
		b.SiteName = DefaultSiteName
	}
	if b.PrimaryColor == "" {
		b.PrimaryColor = DefaultPrimaryColor
	}
	c, err := parseColor(b.PrimaryColor)
	if err != nil {
		return Branding{}, theme{}, err
	}
	b.PrimaryColor = c.String()
	if b.AuthPrefix == "" {
		b.AuthPrefix = DefaultAuthPrefix
	}
	if b.HomeURL != "" && !sameSiteOrHTTPS(b.HomeURL) {
		return Branding{}, theme{}, fmt.Errorf("%w: home URL %q must be an https URL or a path starting with /", ErrInvalidBranding, b.HomeURL)
	}
	if !strings.HasPrefix(b.AuthPrefix, "/") || strings.HasSuffix(b.AuthPrefix, "/") ||
		path.Clean(b.AuthPrefix) != b.AuthPrefix || strings.ContainsAny(b.AuthPrefix, "?#\\ \"'<>") {
		return Branding{}, theme{}, fmt.Errorf("%w: auth prefix %q must start with / and have no trailing slash", ErrInvalidBranding, b.AuthPrefix)
	}
	if b.LogoURL != "" && !sameSiteOrHTTPS(b.LogoURL) {
		return Branding{}, theme{}, fmt.Errorf("%w: logo URL %q must be an https URL or a path starting with /", ErrInvalidBranding, b.LogoURL)
	}
	return b, newTheme(c), nil
}

// sameSiteOrHTTPS reports whether raw is an absolute https URL with a host, or a path from the
// root that is not protocol-relative (a browser reads "//x" and "/\x" as another host).
func sameSiteOrHTTPS(raw string) bool {
	if strings.ContainsFunc(raw, func(c rune) bool { return c <= 0x20 || c == 0x7f || c == '\\' }) {
		return false
	}
	u, err := url.Parse(raw)
	return err == nil && u.User == nil && (u.Scheme == "https" && u.Host != "" ||
		u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(raw, "//"))
}

// funcs are the template functions: static (a versioned static file URL), auth (a path under
// the auth prefix), home (the site's home URL) and statusText.
func (r *Renderer) funcs() template.FuncMap {
	return template.FuncMap{
		"static":     r.StaticURL,
		"auth":       func(p string) string { return r.brand.AuthPrefix + p },
		"home":       r.homeURL,
		"statusText": http.StatusText,
	}
}

// homeURL is Branding.HomeURL, or DefaultHomeURL when it is empty.
func (r *Renderer) homeURL() string {
	if r.brand.HomeURL == "" {
		return DefaultHomeURL
	}
	return r.brand.HomeURL
}

// Branding returns the normalised branding (defaults filled in, colour as "#rrggbb").
func (r *Renderer) Branding() Branding { return r.brand }

// Render executes page with data into a buffer and only then writes the security headers, the
// status and the body, so a template error never produces half a page: on error nothing has
// been written to w and the caller may still respond (for example with a plain-text 500).
// The error is ErrUnknownPage, the template's execution error, or the error from writing
// the body (a client that went away), after which the response is already committed.
func (r *Renderer) Render(w http.ResponseWriter, status int, page Page, data any) error {
	t, ok := r.pages[page]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownPage, page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, layoutName, view{Brand: r.brand, Page: page, Data: data}); err != nil {
		return fmt.Errorf("pages: render %s: %w", page, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", r.csp)
	h.Set("X-Frame-Options", "DENY")
	if h.Get("Referrer-Policy") != "no-referrer" {
		// A handler may only tighten it (a page whose address holds a
		// secret sends no Referer at all).
		h.Set("Referrer-Policy", "same-origin")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
