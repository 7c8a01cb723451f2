package mail_test

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/mail"
)

func composer(t *testing.T, dir string) *mail.Composer {
	t.Helper()
	c, err := mail.NewComposer(mail.ComposerOptions{PublicURL: "https://portal.example.com", AuthPrefix: "/.auth",
		Site: mail.Site{Name: "Example <Portal>", LogoURL: "/.auth/static/logo.svg", Color: "#0a7"}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every embedded mail renders, with its link from the public URL, both
// bodies, the site's name (escaped in HTML) and its logo made absolute.
func TestComposeEveryMail(t *testing.T) {
	c := composer(t, "")
	if len(c.Names()) < 8 {
		t.Fatalf("names = %v", c.Names())
	}
	for _, name := range c.Names() {
		link := c.Link("/confirm", url.Values{"token": {"abc"}})
		m, err := c.Compose(name, "Ana <ana@example.com>", mail.Data{Name: "Ana", Link: link, Expires: 24 * time.Hour, Code: "CODE1"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Subject == "" || strings.Contains(m.Subject, "\n") || !strings.Contains(m.Text, "Ana") || !strings.Contains(m.HTML, "Example &lt;Portal&gt;") ||
			!strings.Contains(m.HTML, `src="https://portal.example.com/.auth/static/logo.svg"`) || !strings.Contains(m.HTML, "#0a7") {
			t.Errorf("%s: %+v", name, m)
		}
		if strings.Contains(m.Text, "{{") || strings.Contains(m.HTML, "{{") {
			t.Errorf("%s: unexpanded template", name)
		}
	}
	m, _ := c.Compose("confirm_email", "ana@example.com", mail.Data{Link: c.Link("/confirm", url.Values{"token": {"a b"}}), Expires: 24 * time.Hour})
	if !strings.Contains(m.Text, "https://portal.example.com/.auth/confirm?token=a+b") || !strings.Contains(m.Text, "expires in 24 hours") ||
		!strings.Contains(m.Text, "Hello,") {
		t.Errorf("confirm_email text:\n%s", m.Text)
	}
	if _, err := c.Compose("nope", "ana@example.com", mail.Data{}); !errors.Is(err, mail.ErrUnknownMail) {
		t.Errorf("unknown mail: %v", err)
	}
	if _, err := c.Compose("confirm_email", "a@b, c@d", mail.Data{}); !errors.Is(err, mail.ErrInvalid) {
		t.Errorf("two recipients: %v", err)
	}
}

// An override in TEMPLATES_DIR/mail replaces the embedded file; a
// misspelt or broken one stops NewComposer.
func TestComposerOverrides(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, mail.OverrideDir)
	if err := os.Mkdir(md, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(md, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("reset_password.txt", `{{define "subject"}}Custom reset{{end}}Go to {{.Link}}`)
	write("..data", "ignored")
	c := composer(t, dir)
	m, err := c.Compose("reset_password", "ana@example.com", mail.Data{Link: "https://portal.example.com/.auth/reset/confirm?token=x"})
	if err != nil || m.Subject != "Custom reset" || m.Text != "Go to https://portal.example.com/.auth/reset/confirm?token=x\n" {
		t.Fatalf("override: %+v %v", m, err)
	}
	for _, tc := range []struct{ file, text, want string }{
		{"reset_pasword.txt", "x", "replaces no embedded"},
		{"reset_password.txt", `no subject`, `defines no "subject"`},
		{"reset_password.txt", `{{define "subject"}}x{{end}}{{.Nope}}`, "trial render"},
		{"reset_password.html", `{{define "body"}}{{end`, "reset_password.html"},
	} {
		d := t.TempDir()
		md = filepath.Join(d, mail.OverrideDir)
		_ = os.Mkdir(md, 0o755)
		write(tc.file, tc.text)
		_, err := mail.NewComposer(mail.ComposerOptions{PublicURL: "https://portal.example.com", AuthPrefix: "/.auth", Dir: d})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: err = %v, want %q", tc.file, tc.text, err, tc.want)
		}
	}
	for _, o := range []mail.ComposerOptions{
		{PublicURL: "portal.example.com", AuthPrefix: "/.auth"},
		{PublicURL: "https://portal.example.com", AuthPrefix: ".auth/"},
		{PublicURL: "https://portal.example.com", AuthPrefix: "/.auth", Site: mail.Site{LogoURL: "http://x/logo.png"}},
		{PublicURL: "https://portal.example.com", AuthPrefix: "/.auth", Site: mail.Site{Color: "red"}},
	} {
		if _, err := mail.NewComposer(o); err == nil {
			t.Errorf("NewComposer(%+v) accepted", o)
		}
	}
}
