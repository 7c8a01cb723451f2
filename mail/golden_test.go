package mail_test

import (
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crmgate/crmgate/mail"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenLinks are the gateway pages the mails lead to (DESIGN.md section
// 3); a mail not listed gets the sign-in page.
var goldenLinks = map[string]string{
	"confirm_email":         "/confirm",
	"reset_password":        "/reset/confirm",
	"set_password":          "/reset/confirm",
	"invitation":            "/invitation",
	"password_changed":      "/reset",
	"registration_approved": "/signin",
}

// TestMailGolden renders every embedded mail, text and HTML, with one set
// of data (markup in the name and the extra values, to show escaping) and
// compares it with testdata/<name>.golden.txt and .golden.html. go test
// ./mail -run Golden -update rewrites them after an intended change; a new
// mail needs the update to create its files.
func TestMailGolden(t *testing.T) {
	c, err := mail.NewComposer(mail.ComposerOptions{PublicURL: "https://portal.example.com", AuthPrefix: "/.auth",
		Site: mail.Site{Name: "Example Portal", LogoURL: "/.auth/static/logo.svg", Color: "#0a7"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range c.Names() {
		t.Run(name, func(t *testing.T) {
			p, ok := goldenLinks[name]
			if !ok {
				p = "/signin"
			}
			q := url.Values{"token": {"TOKEN_abc-123"}}
			switch name {
			case "invitation":
				q = url.Values{"code": {"K7Q2-9XZP"}}
			case "set_password":
				q.Set("purpose", "set_password")
			}
			m, err := c.Compose(name, "Ana Ünal <ana@example.org>", mail.Data{Name: "Ana <Ünal>", Link: c.Link(p, q), Code: "K7Q2-9XZP",
				Expires: 24 * time.Hour, Extra: map[string]string{"reason": "Duplicate <b>account</b> & co", "username": "ana.unal"}})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".golden.txt", "To: "+m.To+"\nSubject: "+m.Subject+"\n\n"+m.Text)
			golden(t, name+".golden.html", m.HTML)
		})
	}
}

func golden(t *testing.T, file, got string) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./mail -run Golden -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run go test ./mail -run Golden -update if the change is intended)\ngot:\n%s", path, got)
	}
}
