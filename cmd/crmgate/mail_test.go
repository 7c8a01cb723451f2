package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/mailtest"
	"github.com/crmgate/crmgate/proxy"
)

// TestGatewayDeliversMail shows the wiring: with CRMGATE_SMTP_URL the
// gateway's outbox worker sends mail events to the server and still hands
// lifecycle events to their deliverer; without it, mail events are
// recorded failed and hold nothing back.
func TestGatewayDeliversMail(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	for _, tc := range []struct {
		name string
		env  []string
		sent int
	}{
		{"configured", []string{"CRMGATE_SMTP_URL=smtp://127.0.0.1:" + strconv.Itoa(srv.Port) + "?tls=none", "CRMGATE_SMTP_FROM=noreply@example.test"}, 1},
		{"unconfigured", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.Messages())
			cfg, err := loadConfig(baseEnv(t, t.TempDir(), tc.env...))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			g, err := buildGateway(ctx, cfg, io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if err := g.start(ctx); err != nil {
				t.Fatal(err)
			}
			e, err := mail.NewEvent("confirm", "u1", mail.Message{To: "ana@example.test", Subject: "Hi", Text: "hello"}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if err := g.store.Enqueue(ctx, e, lifecycleEvent()); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := g.outbox.Poll(ctx); err != nil {
					t.Fatal(err)
				}
			}
			es, err := g.store.OutboxEvents(ctx, "u1")
			if err != nil || len(es) != 2 {
				t.Fatalf("events %+v, %v", es, err)
			}
			if got := len(srv.Messages()) - before; got != tc.sent {
				t.Errorf("mails sent = %d, want %d", got, tc.sent)
			}
			if m := es[0]; m.DeliveredAt.IsZero() || m.FailedAt.IsZero() != (tc.sent == 1) {
				t.Errorf("mail event = %+v", m)
			}
			if l := es[1]; l.DeliveredAt.IsZero() || !l.FailedAt.IsZero() {
				t.Errorf("lifecycle event after the mail = %+v", l)
			}
		})
	}
}

func lifecycleEvent() outbox.Event {
	return outbox.Event{Kind: lifecycle.Kind, Type: lifecycle.Created, UserID: "u1"}
}

// TestServeHasNoDevMailPage: the gateway that serve builds has no dev mail
// page; /.auth/dev/mail is an unknown gateway path (404), never proxied.
func TestServeHasNoDevMailPage(t *testing.T) {
	cfg, err := loadConfig(baseEnv(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	g, err := buildGateway(context.Background(), cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/.auth/dev/mail", "/.auth/dev/mail/1", "/.auth/dev/mail/1/html"} {
		rec := httptest.NewRecorder()
		g.publicHandler().ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1"+p, nil))
		if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "Captured mail") {
			t.Errorf("serve: GET %s = %d, want 404", p, rec.Code)
		}
	}
}

// TestGatewayMailMetricsAndLogs shows sent, deferred and failed mail as
// an operator sees them: on the ops listener's /metrics by mail type
// (no address anywhere in the exposition) and in the gateway's log
// (event id, type, attempts, Message-ID and the server's reply code;
// never the address, the subject or a token from the body).
func TestGatewayMailMetricsAndLogs(t *testing.T) {
	// The first mail is deferred once (451) and then accepted; the second
	// is refused for good (550).
	srv := mailtest.Start(t, mailtest.Options{Reply: func(n int, stage string) *smtp.SMTPError {
		switch {
		case stage == "rcpt" && n == 0:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "ana@example.test try later"}
		case stage == "rcpt" && n == 2:
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user bob@example.test"}
		}
		return nil
	}})
	// The store stamps events with the real clock; the worker's runs from now.
	clock := authztest.NewClock(time.Now())
	cfg, err := loadConfig(baseEnv(t, t.TempDir(), "CRMGATE_SMTP_URL=smtp://127.0.0.1:"+strconv.Itoa(srv.Port)+"?tls=none",
		"CRMGATE_SMTP_FROM=noreply@example.test", "CRMGATE_LOG_FORMAT=json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	logs := &syncBuffer{}
	g, err := buildGateway(ctx, cfg, logs, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	const secret = "tok_SECRET_4f1b9c"
	for _, to := range []string{"Ana <ana@example.test>", "bob@example.test"} {
		e, err := mail.NewEvent("reset_password", "", mail.Message{To: to, Subject: "Reset for " + to,
			Text: "https://portal.example.test/.auth/reset/confirm?token=" + secret}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.store.Enqueue(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if _, err := g.outbox.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("mails accepted = %d, want 1\n%s", n, logs)
	}

	rec := httptest.NewRecorder()
	proxy.OpsHandler(&proxy.Readiness{}, g.registry).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	exposition := rec.Body.String()
	for _, want := range []string{
		`crmgate_mail_sent_total{type="reset_password"} 1`,
		`crmgate_mail_deferred_total{type="reset_password"} 1`,
		`crmgate_mail_failed_total{type="reset_password"} 1`,
		`crmgate_outbox_permanent_failures_total{type="reset_password"} 1`,
		`crmgate_outbox_pending_events 0`,
	} {
		if !strings.Contains(exposition, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(exposition, "@") || strings.Contains(exposition, secret) {
		t.Error("/metrics shows an address or a token")
	}

	out := logs.String()
	for _, want := range []string{`"msg":"mail deferred; retried"`, `"msg":"mail sent"`, `"msg":"mail refused by the mail server; not retried"`,
		`451 4.3.0`, `550 5.1.1`, `"message_id":"crmgate.1.`, `"message_id":"crmgate.2.`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
	for _, leak := range []string{"ana@example.test", "bob@example.test", "Reset for", secret} {
		if strings.Contains(out, leak) {
			t.Errorf("logs show %q:\n%s", leak, out)
		}
	}
	// The outbox keeps the outcome, also without the address.
	es, err := g.store.OutboxEvents(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.Contains(e.LastError, "@") {
			t.Errorf("event %d last error %q shows an address", e.ID, e.LastError)
		}
	}
}
