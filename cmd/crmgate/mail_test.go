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

	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/mailtest"
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
