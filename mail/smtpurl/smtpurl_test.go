package smtpurl_test

import (
	"strings"
	"testing"

	"github.com/crmgate/crmgate/mail/smtpurl"
)

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want smtpurl.URL
	}{
		{"smtps://u:p@mail.example.com:465", smtpurl.URL{Host: "mail.example.com", Port: 465, Security: smtpurl.Implicit, Username: "u", Password: "p"}},
		{"smtps://u:p@mail.example.com", smtpurl.URL{Host: "mail.example.com", Port: 465, Security: smtpurl.Implicit, Username: "u", Password: "p"}},
		{"smtp://u:p%40%3A%2F@mail.example.com:587", smtpurl.URL{Host: "mail.example.com", Port: 587, Security: smtpurl.StartTLS, Username: "u", Password: "p@:/"}},
		{"smtp://mail.example.com", smtpurl.URL{Host: "mail.example.com", Port: 587, Security: smtpurl.StartTLS}},
		{"smtp://localhost:25?tls=none", smtpurl.URL{Host: "localhost", Port: 25, Security: smtpurl.None}},
		{"smtp://127.0.0.1?tls=none", smtpurl.URL{Host: "127.0.0.1", Port: 25, Security: smtpurl.None}},
		{"smtp://[::1]:2525?tls=none", smtpurl.URL{Host: "::1", Port: 2525, Security: smtpurl.None}},
		{"smtps://apikey:s3cr%20et@smtp.sendgrid.net:465/", smtpurl.URL{Host: "smtp.sendgrid.net", Port: 465, Security: smtpurl.Implicit, Username: "apikey", Password: "s3cr et"}},
	} {
		got, err := smtpurl.Parse(tc.raw)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.raw, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.raw, got, tc.want)
		}
		if s := got.String(); len(got.Password) >= 5 && strings.Contains(s, got.Password) {
			t.Errorf("String() = %q shows the password", s)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	const secret = "Hunter2Secret"
	for _, raw := range []string{
		"",
		" smtp://host",
		"smtp://host ",
		"http://host",
		"smtpx://host",
		"SMTP//host",
		"mailto:a@b",
		"smtp:host",
		"smtp://",
		"smtp://:25",
		"smtp://u:" + secret + "@",
		"smtp://u:" + secret + "@:587",
		"smtp://host:0",
		"smtp://host:65536",
		"smtp://host:-1",
		"smtp://host:abc",
		"smtp://host:0025",
		"smtp://host:",
		"smtp://u:" + secret + "@host:99999",
		"smtp://u:" + secret + "@host:25?tls=none",
		"smtp://u@host:25?tls=none",
		"smtp://u:" + secret + "@host?tls=none",
		"smtps://host?tls=none",
		"smtp://host?tls=yes",
		"smtp://host?tls=none&tls=none",
		"smtp://host?tls=",
		"smtp://host?insecure=1",
		"smtp://host?",
		"smtp://host/path",
		"smtp://host#frag",
		"smtp://:" + secret + "@host",
		"smtp://u:@host",
		"smtp://u@host",
		"smtp://u:" + secret + "%0d%0a@host",
		"smtp://u%0a:" + secret + "@host",
		"smtp://ho st",
		"smtp://host\r\nRCPT TO:<x@y>",
		"smtp://host%0d%0a",
		"smtp://u:" + secret + "%zz@host",
		"smtp://u:" + secret + "@ho%2Fst",
		"smtp://[1.2.3.4]",
		"smtp://[::1",
		"smtp://a..b",
		"smtp://.a",
		"smtp://h\x00st",
		"smtp://u:" + secret + "@host:587\x7f",
	} {
		_, err := smtpurl.Parse(raw)
		if err == nil {
			t.Errorf("Parse(%q) accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Parse(%q) error %q echoes the password", raw, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"smtps://u:p@h:465", "smtp://h?tls=none", "smtp://u:p@[::1]:587"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := smtpurl.Parse(raw)
		if err != nil {
			if u != (smtpurl.URL{}) {
				t.Fatalf("error with non-zero URL")
			}
			return
		}
		if u.Host == "" || u.Port < 1 || u.Port > 65535 || u.Security == smtpurl.None && u.Username != "" {
			t.Fatalf("Parse(%q) = %+v", raw, u)
		}
		if strings.ContainsAny(u.Host+u.Username+u.Password, "\r\n\x00") {
			t.Fatalf("control characters pass in %+v", u)
		}
	})
}
