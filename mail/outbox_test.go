package mail_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/mailtest"
	"github.com/crmgate/crmgate/mail/smtpurl"
)

// rig is a real store, an outbox worker with an injected clock and the mail
// deliverer sending to a real SMTP server.
type rig struct {
	db    *store.DB
	clock *authztest.Clock
	w     *outbox.Worker
	reg   *prometheus.Registry
	logs  *strings.Builder
}

func newRig(t *testing.T, dbURL string, port int) *rig {
	t.Helper()
	r := &rig{clock: authztest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), reg: prometheus.NewRegistry(), logs: &strings.Builder{}}
	var err error
	if r.db, err = store.Open(t.Context(), dbURL, store.WithNow(r.clock.Now)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.db.Close() })
	s, err := mail.NewSMTP(mail.SMTPOptions{Server: smtpurl.URL{Host: "127.0.0.1", Port: port, Security: smtpurl.None},
		From: "noreply@example.com", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	d, err := mail.NewDeliverer(s, mail.DelivererOptions{Logger: log, Registerer: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	if r.w, err = outbox.NewWorker(r.db, outbox.ByKind{mail.Kind: d}, outbox.Options{
		BatchSize: 10, Lease: time.Minute, MinBackoff: time.Second, MaxBackoff: time.Minute,
		Now: r.clock.Now, Registerer: r.reg, Logger: log}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) enqueue(t *testing.T, userID, to string) {
	t.Helper()
	e, err := mail.NewEvent("confirm", userID, mail.Message{To: to, Subject: "Confirm", Text: "token-SECRET-123"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.db.Enqueue(t.Context(), e); err != nil {
		t.Fatal(err)
	}
}

// run polls, then advances the clock by the longest backoff, rounds times.
func (r *rig) run(t *testing.T, rounds int) {
	for range rounds {
		authztest.Drain(t, r.w)
		r.clock.Advance(time.Minute)
	}
}

func (r *rig) metric(t *testing.T, name string) float64 {
	return max(authztest.Metric(t, r.reg, name, "confirm"), 0)
}

func freePort(t *testing.T) int {
	srv := mailtest.Start(t, mailtest.Options{})
	srv.Close()
	return srv.Port
}

func eachDialect(t *testing.T, f func(t *testing.T, dbURL string)) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) { f(t, d.URL(t)) })
	}
}

// TestOutboxMailTransientThenDelivered: a server answering 4xx twice, then
// accepting, gets the mail exactly once; the attempts are counted deferred.
func TestOutboxMailTransientThenDelivered(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		srv := mailtest.Start(t, mailtest.Options{Reply: mailtest.Fail("rcpt", 451, 2)})
		r := newRig(t, dbURL, srv.Port)
		r.enqueue(t, "", "ana@example.org")
		r.run(t, 5)
		if n := len(srv.Messages()); n != 1 {
			t.Fatalf("messages = %d, want 1", n)
		}
		es, _ := r.db.OutboxEvents(t.Context(), "")
		if e := es[0]; e.DeliveredAt.IsZero() || !e.FailedAt.IsZero() || e.Attempts != 3 {
			t.Fatalf("event = %+v", e)
		}
		if s, d, f := r.metric(t, "crmgate_mail_sent_total"), r.metric(t, "crmgate_mail_deferred_total"), r.metric(t, "crmgate_mail_failed_total"); s != 1 || d != 2 || f != 0 {
			t.Errorf("sent/deferred/failed = %v/%v/%v, want 1/2/0", s, d, f)
		}
		if strings.Contains(r.logs.String(), "token-SECRET-123") || strings.Contains(r.logs.String(), "ana@example.org") {
			t.Errorf("logs show the body or the address:\n%s", r.logs)
		}
	})
}

// TestOutboxMailPermanent: a 5xx answer records the mail failed after one
// attempt, never retried, and the user's next mail still goes out.
func TestOutboxMailPermanent(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		srv := mailtest.Start(t, mailtest.Options{Reply: mailtest.Fail("rcpt", 550, 1)})
		r := newRig(t, dbURL, srv.Port)
		r.enqueue(t, "u1", "nobody@example.org")
		r.enqueue(t, "u1", "ana@example.org")
		r.run(t, 5)
		es, _ := r.db.OutboxEvents(t.Context(), "u1")
		if e := es[0]; e.Attempts != 1 || e.FailedAt.IsZero() || !strings.Contains(e.LastError, "550") {
			t.Fatalf("refused mail = %+v", e)
		}
		if e := es[1]; e.DeliveredAt.IsZero() || !e.FailedAt.IsZero() {
			t.Fatalf("next mail = %+v", e)
		}
		if ms := srv.Messages(); len(ms) != 1 || ms[0].To[0] != "ana@example.org" {
			t.Fatalf("messages = %+v", ms)
		}
		if s, d, f := r.metric(t, "crmgate_mail_sent_total"), r.metric(t, "crmgate_mail_deferred_total"), r.metric(t, "crmgate_mail_failed_total"); s != 1 || d != 0 || f != 1 {
			t.Errorf("sent/deferred/failed = %v/%v/%v, want 1/0/1", s, d, f)
		}
	})
}

// TestOutboxMailServerDownThenUp: mails enqueued while the server is down
// wait, and all arrive, once each, when it comes up on its port.
func TestOutboxMailServerDownThenUp(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		port := freePort(t)
		r := newRig(t, dbURL, port)
		for i, to := range []string{"a@example.org", "b@example.org", "c@example.org"} {
			r.enqueue(t, []string{"u1", "u2", "u1"}[i], to)
		}
		r.run(t, 3)
		es, _ := r.db.OutboxEvents(t.Context(), "")
		for _, e := range es {
			if !e.DeliveredAt.IsZero() || e.Attempts > 0 && e.LastError == "" {
				t.Fatalf("while down: %+v", e)
			}
		}
		srv := mailtest.Start(t, mailtest.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
		r.run(t, 3)
		var got []string
		for _, m := range srv.Messages() {
			got = append(got, m.To...)
		}
		if strings.Join(got, ",") != "a@example.org,b@example.org,c@example.org" {
			t.Fatalf("delivered %v, want each once in order", got)
		}
		if st, _ := r.db.OutboxStats(t.Context()); st.Pending != 0 {
			t.Fatalf("pending = %d", st.Pending)
		}
	})
}

// TestOutboxMailSameTransaction: a mail enqueued with a user change is
// stored with it, and a change that fails stores no mail.
func TestOutboxMailSameTransaction(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		srv := mailtest.Start(t, mailtest.Options{})
		r := newRig(t, dbURL, srv.Port)
		ctx := t.Context()
		u := &authz.User{Username: "ana", Email: "ana@example.org", Roles: []string{"member"}, Status: authz.StatusActive,
			PasswordHash: "$argon2id$x", SecurityStamp: "s"}
		e, err := mail.NewEvent("confirm", "", mail.Message{To: u.Email, Subject: "Welcome", Text: "hi"}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.db.CreateUserAndEnqueue(ctx, u, e); err != nil {
			t.Fatal(err)
		}
		dup := *u
		dup.ID = ""
		if err := r.db.CreateUserAndEnqueue(ctx, &dup, e); err == nil {
			t.Fatal("duplicate user created")
		}
		es, _ := r.db.OutboxEvents(ctx, "")
		if len(es) != 1 || es[0].UserID != u.ID || es[0].Kind != mail.Kind {
			t.Fatalf("events = %+v, want the first user's mail only", es)
		}
		r.run(t, 1)
		if len(srv.Messages()) != 1 {
			t.Fatalf("messages = %d", len(srv.Messages()))
		}
	})
}

// TestDelivererRefusesBadEvents: another kind is retried, an unreadable or
// invalid payload is a permanent failure, and Unconfigured fails for good.
func TestDelivererRefusesBadEvents(t *testing.T) {
	d, err := mail.NewDeliverer(mustSender(t), mail.DelivererOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Deliver(ctx, outbox.Event{Kind: "dataverse.lifecycle", Type: "x"}); err == nil || outbox.IsPermanent(err) {
		t.Errorf("other kind: %v", err)
	}
	for _, p := range []string{"{", `{"to":"a@example.com\r\nBcc: e@evil.test","subject":"s","text":"t"}`, `{}`} {
		if err := d.Deliver(ctx, outbox.Event{Kind: mail.Kind, Type: "x", Payload: []byte(p)}); !outbox.IsPermanent(err) {
			t.Errorf("payload %q: %v, want permanent", p, err)
		}
	}
	if err := (mail.Unconfigured{}).Deliver(ctx, outbox.Event{Kind: mail.Kind}); !outbox.IsPermanent(err) {
		t.Errorf("Unconfigured: %v", err)
	}
	if _, err := mail.NewDeliverer(nil, mail.DelivererOptions{}); err == nil {
		t.Error("nil sender accepted")
	}
}

// recordingSender records the ids it is given and fails as told.
type recordingSender struct {
	ids []string
	err error
}

func (s *recordingSender) Send(_ context.Context, _ mail.Message, id string) error {
	s.ids = append(s.ids, id)
	return s.err
}

// TestMessageIDStablePerEvent: an event claimed again (its lease ran out,
// as after a crash) is sent with the same Message-ID on both dialects
// (the creation time survives the store's precision), and two events have
// different ones.
func TestMessageIDStablePerEvent(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		clock := authztest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC))
		db, err := store.Open(t.Context(), dbURL, store.WithNow(clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, u := range []string{"u1", "u2"} {
			e, err := mail.NewEvent("confirm", u, mail.Message{To: "a@example.org", Subject: "s", Text: "t"}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Enqueue(t.Context(), e); err != nil {
				t.Fatal(err)
			}
		}
		snd := &recordingSender{err: errors.New("connection reset")}
		d, err := mail.NewDeliverer(snd, mail.DelivererOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the first claim's worker dies; the lease ends; claimed again
			evs, err := db.ClaimOutbox(t.Context(), clock.Now(), time.Minute, 10)
			if err != nil || len(evs) != 2 {
				t.Fatalf("claim: %v, %v", evs, err)
			}
			for _, e := range evs {
				_ = d.Deliver(t.Context(), e)
			}
			clock.Advance(2 * time.Minute)
		}
		if len(snd.ids) != 4 || snd.ids[0] != snd.ids[2] || snd.ids[1] != snd.ids[3] || snd.ids[0] == snd.ids[1] ||
			!strings.HasPrefix(snd.ids[0], "crmgate.") {
			t.Errorf("Message-IDs per attempt = %v, want one per event, stable across claims", snd.ids)
		}
	})
}
