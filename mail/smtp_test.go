package mail_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/mailtest"
	"github.com/crmgate/crmgate/mail/smtpurl"
)

const (
	from     = "crmgate <noreply@example.com>"
	password = "S3cret-Pass-Word"
)

func msg() mail.Message {
	return mail.Message{To: "Ana <ana@example.org>", Subject: "Confirm your address", Text: "Hello Ana", HTML: "<p>Hello Ana</p>"}
}

// sender returns an SMTP sender to srv with the URL raw (the port
// replaced by srv's), trusting srv's certificate.
func sender(t *testing.T, srv *mailtest.Server, raw string, trust bool) *mail.SMTP {
	t.Helper()
	u, err := smtpurl.Parse(raw)
	if err != nil {
		t.Fatalf("Parse(%q): %v", raw, err)
	}
	u.Port = srv.Port
	o := mail.SMTPOptions{Server: u, From: from}
	if trust {
		o.TLSConfig = &tls.Config{RootCAs: srv.Roots}
	}
	s, err := mail.NewSMTP(o)
	if err != nil {
		t.Fatalf("NewSMTP: %v", err)
	}
	return s
}

// TestSMTPModes sends through a real SMTP server in each protection mode
// and AUTH mechanism, and checks what arrived and that every credential
// came over TLS.
func TestSMTPModes(t *testing.T) {
	users := map[string]string{"ana": password}
	for _, tc := range []struct {
		name    string
		opts    mailtest.Options
		url     string
		wantTLS bool
		user    string
	}{
		{"relay without TLS", mailtest.Options{}, "smtp://127.0.0.1?tls=none", false, ""},
		{"STARTTLS without auth", mailtest.Options{Mode: mailtest.StartTLS}, "smtp://127.0.0.1", true, ""},
		{"STARTTLS AUTH PLAIN", mailtest.Options{Mode: mailtest.StartTLS, Users: users, Mechs: []string{sasl.Plain}}, "smtp://ana:" + password + "@127.0.0.1", true, "ana"},
		{"STARTTLS AUTH LOGIN", mailtest.Options{Mode: mailtest.StartTLS, Users: users, Mechs: []string{sasl.Login}}, "smtp://ana:" + password + "@127.0.0.1", true, "ana"},
		{"implicit TLS AUTH PLAIN", mailtest.Options{Mode: mailtest.Implicit, Users: users, Mechs: []string{sasl.Plain}}, "smtps://ana:" + password + "@127.0.0.1", true, "ana"},
		{"implicit TLS AUTH LOGIN", mailtest.Options{Mode: mailtest.Implicit, Users: users, Mechs: []string{sasl.Login}}, "smtps://ana:" + password + "@127.0.0.1", true, "ana"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mailtest.Start(t, tc.opts)
			if err := sender(t, srv, tc.url, true).Send(t.Context(), msg(), "crmgate.7.abc"); err != nil {
				t.Fatalf("Send: %v", err)
			}
			ms := srv.Messages()
			if len(ms) != 1 {
				t.Fatalf("messages = %d, want 1", len(ms))
			}
			m := ms[0]
			if m.TLS != tc.wantTLS || m.User != tc.user || m.From != "noreply@example.com" ||
				len(m.To) != 1 || m.To[0] != "ana@example.org" {
				t.Errorf("received %+v", m)
			}
			if got := m.Header("Message-ID"); got != "<crmgate.7.abc@example.com>" {
				t.Errorf("Message-ID = %q", got)
			}
			if got := m.Header("Subject"); got != "Confirm your address" {
				t.Errorf("Subject = %q", got)
			}
			body := string(m.Data)
			if !strings.Contains(body, "Hello Ana") || !strings.Contains(body, "text/html") || !strings.Contains(body, "multipart/alternative") {
				t.Errorf("body lacks the text or the HTML alternative:\n%s", body)
			}
			for _, a := range srv.Auths() {
				if !a.TLS {
					t.Errorf("credentials sent before TLS: %+v", a)
				}
			}
			if tc.user != "" && len(srv.Auths()) != 1 {
				t.Errorf("auths = %+v, want one", srv.Auths())
			}
		})
	}
}

// TestSMTPNeverSendsCredentialsInClear shows that smtp:// (STARTTLS
// required) refuses a server that offers AUTH but no STARTTLS, or whose
// certificate is not trusted, before any credential or message goes out,
// and that a refused password is not a permanent failure and not echoed.
func TestSMTPNeverSendsCredentialsInClear(t *testing.T) {
	users := map[string]string{"ana": password}
	t.Run("no STARTTLS offered", func(t *testing.T) {
		srv := mailtest.Start(t, mailtest.Options{Users: users})
		err := sender(t, srv, "smtp://ana:"+password+"@127.0.0.1", true).Send(t.Context(), msg(), "x")
		if err == nil || outbox.IsPermanent(err) {
			t.Fatalf("Send = %v, want a retryable error", err)
		}
		if a, m := srv.Auths(), srv.Messages(); len(a) != 0 || len(m) != 0 {
			t.Fatalf("server saw auths %+v and %d messages", a, len(m))
		}
	})
	for _, mode := range []mailtest.Mode{mailtest.StartTLS, mailtest.Implicit} {
		t.Run("untrusted certificate", func(t *testing.T) {
			srv := mailtest.Start(t, mailtest.Options{Mode: mode, Users: users})
			scheme := map[mailtest.Mode]string{mailtest.StartTLS: "smtp", mailtest.Implicit: "smtps"}[mode]
			err := sender(t, srv, scheme+"://ana:"+password+"@127.0.0.1", false).Send(t.Context(), msg(), "x")
			if err == nil || outbox.IsPermanent(err) {
				t.Fatalf("Send = %v, want a retryable error", err)
			}
			if a, m := srv.Auths(), srv.Messages(); len(a) != 0 || len(m) != 0 {
				t.Fatalf("server saw auths %+v and %d messages", a, len(m))
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		srv := mailtest.Start(t, mailtest.Options{Mode: mailtest.StartTLS, Users: map[string]string{"ana": "other"}})
		err := sender(t, srv, "smtp://ana:"+password+"@127.0.0.1", true).Send(t.Context(), msg(), "x")
		if err == nil || outbox.IsPermanent(err) {
			t.Fatalf("Send = %v, want a retryable error", err)
		}
		if strings.Contains(err.Error(), password) {
			t.Fatalf("error echoes the password: %v", err)
		}
		if len(srv.Messages()) != 0 {
			t.Fatal("a message went through")
		}
	})
}

// TestSMTPAnswers shows how server answers map to outcomes: 4xx is
// retryable, 5xx at RCPT or DATA is permanent, a closed port is retryable.
func TestSMTPAnswers(t *testing.T) {
	for _, tc := range []struct {
		stage     string
		code      int
		permanent bool
	}{
		{"rcpt", 450, false}, {"rcpt", 451, false}, {"data", 452, false},
		{"rcpt", 550, true}, {"rcpt", 553, true}, {"data", 554, true}, {"data", 552, true},
	} {
		srv := mailtest.Start(t, mailtest.Options{Reply: mailtest.Fail(tc.stage, tc.code, 1)})
		err := sender(t, srv, "smtp://127.0.0.1?tls=none", false).Send(t.Context(), msg(), "x")
		if err == nil || outbox.IsPermanent(err) != tc.permanent {
			t.Errorf("%s %d: Send = %v, permanent %v; want permanent %v", tc.stage, tc.code, err, outbox.IsPermanent(err), tc.permanent)
		}
		var re *mail.ReplyError
		if !errors.As(err, &re) || re.Code != tc.code || strings.Contains(err.Error(), "ana@example.org") {
			t.Errorf("%s %d: error %v: want a ReplyError with the code and without the address", tc.stage, tc.code, err)
		}
	}
	srv := mailtest.Start(t, mailtest.Options{})
	s := sender(t, srv, "smtp://127.0.0.1?tls=none", false)
	srv.Close()
	if err := s.Send(t.Context(), msg(), "x"); err == nil || outbox.IsPermanent(err) {
		t.Errorf("server down: Send = %v, want a retryable error", err)
	}
}

// TestNewSMTPRefuses shows that the sender refuses a bad sender address
// (header injection included) and credentials without TLS.
func TestNewSMTPRefuses(t *testing.T) {
	srv := smtpurl.URL{Host: "127.0.0.1", Port: 25, Security: smtpurl.None}
	for _, f := range hostileAddresses {
		if _, err := mail.NewSMTP(mail.SMTPOptions{Server: srv, From: f}); err == nil {
			t.Errorf("From %q accepted", f)
		}
	}
	withCreds := srv
	withCreds.Username, withCreds.Password = "u", password
	if _, err := mail.NewSMTP(mail.SMTPOptions{Server: withCreds, From: "a@example.com"}); err == nil {
		t.Error("credentials without TLS accepted")
	}
	if _, err := mail.NewSMTP(mail.SMTPOptions{From: "a@example.com"}); err == nil {
		t.Error("no server accepted")
	}
	var perm *outbox.PermanentError
	if err := mustSender(t).Send(t.Context(), mail.Message{To: "a@example.com\r\nBcc: x@evil.test", Subject: "s", Text: "t"}, "x"); !errors.As(err, &perm) {
		t.Errorf("Send of an injected recipient = %v, want permanent", err)
	}
}

func mustSender(t *testing.T) *mail.SMTP {
	s, err := mail.NewSMTP(mail.SMTPOptions{Server: smtpurl.URL{Host: "127.0.0.1", Port: 1, Security: smtpurl.None}, From: "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
