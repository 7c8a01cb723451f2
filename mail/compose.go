package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"
)

// The embedded mail templates. Each mail NAME has NAME.txt (the plain-text
// body, with a "subject" template for the subject line) and NAME.html (the
// HTML body: a "body" template that layout.html places). Adding a mail is adding its two
// files: Compose knows every name found here.
//
//go:embed templates
var embedded embed.FS

// OverrideDir is the subdirectory of CRMGATE_TEMPLATES_DIR whose files
// replace the embedded mail templates of the same name ("mail/reset_password.txt").
const OverrideDir = "mail"

// Site is what every mail shows of the site it is sent for.
type Site struct {
	// Name is the site name (CRMGATE_SITE_NAME); empty means "crmgate".
	Name string
	// LogoURL is the logo (CRMGATE_LOGO_URL): an https URL, or a path that
	// is made absolute with the public URL. Empty shows the name only.
	LogoURL string
	// Color is the primary colour, "#RGB" or "#RRGGBB"; empty means the
	// pages' default.
	Color string
}

// ComposerOptions configure NewComposer.
type ComposerOptions struct {
	// PublicURL is the gateway's public origin (CRMGATE_PUBLIC_URL). Every
	// link in a mail is built from it and never from a request's Host or
	// X-Forwarded-* headers, which a client chooses (link poisoning).
	// Required.
	PublicURL string
	// AuthPrefix is the gateway's path prefix ("/.auth"). Required.
	AuthPrefix string
	// Site is shown in every mail.
	Site Site
	// Dir is CRMGATE_TEMPLATES_DIR; files in its OverrideDir replace the
	// embedded templates of the same name. Empty, or a directory without
	// OverrideDir, means the embedded templates only. A file there that
	// matches no embedded template is an error (a misspelt name would
	// otherwise be ignored). Overrides are trusted like code.
	Dir string
}

// Data is what one mail's templates may show. Templates see it as
// .Name, .Link, .Code, .Expires (for example "24 hours"), .Extra and .Site
// (.Site.Name, .Site.LogoURL, .Site.Color, .Site.URL).
type Data struct {
	// Name is the recipient's name; empty greets without one.
	Name string
	// Link is the absolute URL the mail leads to, built with
	// Composer.Link; empty for a mail without one.
	Link string
	// Code is a code to type in (an invitation code); may be empty.
	Code string
	// Expires is how long Link or Code stays valid; zero says nothing.
	Expires time.Duration
	// Extra holds mail-specific values (a reason, a username).
	Extra map[string]string
}

// view is the value the templates execute on.
type view struct {
	Site    siteView
	Name    string
	Link    string
	Code    string
	Expires string
	Extra   map[string]string
}

type siteView struct {
	Name, LogoURL, Color, URL string
}

// Composer builds messages from the mail templates. Build it with
// NewComposer; it is safe for concurrent use.
type Composer struct {
	origin string // scheme://host[:port], no trailing slash
	prefix string
	site   siteView
	text   map[string]*texttemplate.Template
	html   map[string]*htmltemplate.Template
}

// ErrUnknownMail is returned by Compose for a name without templates.
var ErrUnknownMail = errors.New("mail: unknown mail template")

const layoutFile = "layout.html"

// NewComposer parses the embedded templates and the overrides in
// o.Dir/OverrideDir and renders each once with sample data, so that a broken
// override stops start-up rather than a mail.
func NewComposer(o ComposerOptions) (*Composer, error) {
	pub, err := url.Parse(o.PublicURL)
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" || pub.User != nil {
		return nil, fmt.Errorf("mail: public URL %q is not an absolute http(s) URL", o.PublicURL)
	}
	if !strings.HasPrefix(o.AuthPrefix, "/") || strings.HasSuffix(o.AuthPrefix, "/") || path.Clean(o.AuthPrefix) != o.AuthPrefix {
		return nil, fmt.Errorf("mail: auth prefix %q must start with / and not end with one", o.AuthPrefix)
	}
	c := &Composer{origin: pub.Scheme + "://" + pub.Host, prefix: o.AuthPrefix,
		text: map[string]*texttemplate.Template{}, html: map[string]*htmltemplate.Template{}}
	c.site = siteView{Name: strings.TrimSpace(o.Site.Name), LogoURL: o.Site.LogoURL, Color: o.Site.Color, URL: c.origin + "/"}
	if c.site.Name == "" {
		c.site.Name = "crmgate"
	}
	if c.site.Color == "" {
		c.site.Color = "#2563eb"
	}
	if !colorOK(c.site.Color) {
		return nil, fmt.Errorf("mail: colour %q is not #RGB or #RRGGBB", c.site.Color)
	}
	if strings.HasPrefix(c.site.LogoURL, "/") && !strings.HasPrefix(c.site.LogoURL, "//") {
		c.site.LogoURL = c.origin + c.site.LogoURL
	} else if c.site.LogoURL != "" {
		if u, err := url.Parse(c.site.LogoURL); err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("mail: logo URL %q must be an https URL or a path starting with /", c.site.LogoURL)
		}
	}

	files := map[string]string{} // file name -> text
	where := map[string]string{} // file name -> where it came from, for errors
	entries, err := fs.ReadDir(embedded, "templates")
	if err != nil {
		return nil, fmt.Errorf("mail: embedded templates: %w", err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(embedded, "templates/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("mail: embedded templates: %w", err)
		}
		files[e.Name()], where[e.Name()] = string(b), e.Name()
	}
	if o.Dir != "" {
		dir := filepath.Join(o.Dir, OverrideDir)
		entries, err := os.ReadDir(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("mail: template overrides: %w", err)
		default:
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") { // Kubernetes ConfigMap volumes hold "..data"
					continue
				}
				full := filepath.Join(dir, e.Name())
				if _, ok := files[e.Name()]; !ok {
					return nil, fmt.Errorf("mail: template override %s replaces no embedded mail template (known: %s)", full, strings.Join(slices.Sorted(maps.Keys(files)), ", "))
				}
				b, err := os.ReadFile(full)
				if err != nil {
					return nil, fmt.Errorf("mail: template override: %w", err)
				}
				files[e.Name()], where[e.Name()] = string(b), full
			}
		}
	}
	layout, ok := files[layoutFile]
	if !ok {
		return nil, errors.New("mail: no embedded " + layoutFile)
	}
	for file, src := range files {
		name, ok := strings.CutSuffix(file, ".txt")
		if !ok {
			continue
		}
		htmlSrc, ok := files[name+".html"]
		if !ok {
			return nil, fmt.Errorf("mail: template %s has no %s.html", where[file], name)
		}
		tt, err := texttemplate.New(file).Option("missingkey=zero").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("mail: template %s: %w", where[file], err)
		}
		if tt.Lookup("subject") == nil {
			return nil, fmt.Errorf("mail: template %s defines no \"subject\"", where[file])
		}
		ht, err := htmltemplate.New(layoutFile).Option("missingkey=zero").Parse(layout)
		if err != nil {
			return nil, fmt.Errorf("mail: template %s: %w", where[layoutFile], err)
		}
		if ht, err = ht.New(name + ".html").Parse(htmlSrc); err != nil {
			return nil, fmt.Errorf("mail: template %s: %w", where[name+".html"], err)
		}
		if ht.Lookup("body") == nil {
			return nil, fmt.Errorf("mail: template %s defines no \"body\"", where[name+".html"])
		}
		c.text[name], c.html[name] = tt, ht
		sample := Data{Name: "Ana", Link: c.Link("/sample", url.Values{"token": {"sample"}}), Code: "SAMPLE", Expires: time.Hour,
			Extra: map[string]string{}}
		if _, err := c.Compose(name, "sample@example.com", sample); err != nil {
			return nil, fmt.Errorf("mail: template %s: trial render: %w", where[file], err)
		}
	}
	for file := range files {
		if name, ok := strings.CutSuffix(file, ".html"); ok && file != layoutFile && c.text[name] == nil {
			return nil, fmt.Errorf("mail: template %s has no %s.txt", where[file], name)
		}
	}
	return c, nil
}

func colorOK(s string) bool {
	if len(s) != 4 && len(s) != 7 || s[0] != '#' {
		return false
	}
	for _, r := range s[1:] {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

// Names returns the mail names Compose knows, sorted.
func (c *Composer) Names() []string {
	names := make([]string, 0, len(c.text))
	for n := range c.text {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Link returns the absolute URL of the gateway page p (a path under the
// auth prefix, such as "/reset/confirm") with query q, built from the
// public URL alone.
func (c *Composer) Link(p string, q url.Values) string {
	u := c.origin + c.prefix + p
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// Compose renders mail name for the recipient to with d and validates the
// message (Message.Validate). The subject is the text template's "subject"
// with surrounding space trimmed.
func (c *Composer) Compose(name, to string, d Data) (Message, error) {
	tt, ok := c.text[name]
	if !ok {
		return Message{}, fmt.Errorf("%w: %q", ErrUnknownMail, name)
	}
	v := view{Site: c.site, Name: d.Name, Link: d.Link, Code: d.Code, Expires: humanDuration(d.Expires), Extra: d.Extra}
	if v.Extra == nil {
		v.Extra = map[string]string{}
	}
	var subject, text, html bytes.Buffer
	if err := tt.ExecuteTemplate(&subject, "subject", v); err != nil {
		return Message{}, fmt.Errorf("mail: %s subject: %w", name, err)
	}
	if err := tt.Execute(&text, v); err != nil {
		return Message{}, fmt.Errorf("mail: %s text: %w", name, err)
	}
	if err := c.html[name].ExecuteTemplate(&html, layoutFile, v); err != nil {
		return Message{}, fmt.Errorf("mail: %s html: %w", name, err)
	}
	m := Message{To: to, Subject: strings.Join(strings.Fields(subject.String()), " "),
		Text: strings.TrimSpace(text.String()) + "\n", HTML: html.String()}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// humanDuration says d in the largest whole unit: "24 hours", "1 hour",
// "30 minutes", "7 days"; "" for zero.
func humanDuration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	switch {
	case d <= 0:
		return ""
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return unit(int64(d/time.Minute), "minute")
	}
	return unit(int64(d/time.Second), "second")
}
