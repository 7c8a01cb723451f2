package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/mailtest"
)

// mailEnv is a gateway's environment for the mail kill tests: SMTP to
// port, a fast outbox (a crash costs at most the 3s lease, a failure at
// most 1s), a 2s SMTP timeout that fits in the lease.
func mailEnv(t *testing.T, dbURL string, port int, ops string) []string {
	return baseEnv(t, t.TempDir(), "CRMGATE_DATABASE_URL="+dbURL, "CRMGATE_LISTEN="+freeAddr(t), "CRMGATE_OPS_LISTEN="+ops, "CRMGATE_SHUTDOWN_DELAY=0s",
		"CRMGATE_SMTP_URL=smtp://127.0.0.1:"+strconv.Itoa(port)+"?tls=none", "CRMGATE_SMTP_FROM=noreply@example.test",
		"CRMGATE_SMTP_TIMEOUT=2s", "CRMGATE_OUTBOX_POLL_INTERVAL=100ms", "CRMGATE_OUTBOX_MAX_BACKOFF=1s", "CRMGATE_OUTBOX_LEASE=3s")
}

// mailWaitUntil polls cond every 20ms until it holds or deadline passes.
func mailWaitUntil(t *testing.T, deadline time.Time, what string, cond func() bool, logs fmt.Stringer) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s; gateway logs:\n%s", what, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// enqueueMails stores one mail per user in the gateway's database from
// this process, as another replica or a command would, in one
// transaction, so that one claim sees them all.
func enqueueMails(t *testing.T, db *store.DB, users []string) {
	t.Helper()
	var events []outbox.Event
	for _, u := range users {
		e, err := mail.NewEvent("confirm_email", u, mail.Message{To: u + "@example.test", Subject: "Mail for " + u,
			Text: "Hello " + u + ", https://portal.example.test/.auth/confirm?token=T-" + u}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if err := db.Enqueue(t.Context(), events...); err != nil {
		t.Fatal(err)
	}
}

// wantMessageID is the Message-ID header of event e (mail/deliver.go
// messageID, with the sender's domain).
func wantMessageID(e outbox.Event) string {
	return "<crmgate." + strconv.FormatInt(e.ID, 10) + "." + strconv.FormatInt(e.CreatedAt.UnixMilli(), 36) + "@example.test>"
}

// serveMailGateway runs `crmgate serve` with env until the test ends.
func serveMailGateway(t *testing.T, env []string) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env, nil, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	return logs
}

// TestMailSurvivesKill kills the gateway (a real process, SIGKILL) while
// it is in the middle of sending a mail: the server has the whole message
// (DATA) and has not answered yet. Three more mails were claimed in the
// same batch and never attempted. The server then answers the dead
// connection: it accepts the held message, as a real one may once it has
// the data, or refuses it for now (451). A new gateway on the same
// database delivers everything once the dead one's lease ends.
//
// What happens, precisely (at least once), on SQLite and PostgreSQL:
// nothing is lost and nothing is recorded failed; every event is claimed
// twice (once by the dead gateway); the mail in flight at the kill arrives
// twice when the server had accepted it, both copies with the same
// Message-ID (the outbox event's), so that a mail client or a person
// recognises the duplicate, and once when it had not; every other mail
// arrives exactly once.
func TestMailSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	for _, d := range storetest.Dialects {
		t.Run(d.Name+"/server accepts the held mail", func(t *testing.T) { testMailSurvivesKill(t, d.URL(t), true) })
		t.Run(d.Name+"/server drops the held mail", func(t *testing.T) { testMailSurvivesKill(t, d.URL(t), false) })
	}
}

// testMailSurvivesKill is TestMailSurvivesKill on dbURL; accept says
// whether the server accepts the held message once the gateway is dead
// (then it arrives twice) or answers 451 to nobody (then it arrives once,
// from the new gateway).
func testMailSurvivesKill(t *testing.T, dbURL string, accept bool) {
	held, release := make(chan struct{}), make(chan struct{})
	var holding atomic.Bool // only the first DATA is held
	srv := mailtest.Start(t, mailtest.Options{Reply: func(_ int, stage string) *smtp.SMTPError {
		if stage == "data" && holding.CompareAndSwap(false, true) {
			close(held)
			<-release
			if !accept {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
			}
		}
		return nil
	}})
	ops := freeAddr(t)
	env := mailEnv(t, dbURL, srv.Port, ops)
	deadline := time.Now().Add(50 * time.Second)

	logs := &syncBuffer{}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(env, serveHelperEnv+"=1")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	mailWaitUntil(t, deadline, "the gateway is ready", func() bool {
		r, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}, logs)

	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	users := []string{"u1", "u2", "u3", "u4"}
	enqueueMails(t, db, users)

	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatalf("no mail reached DATA; gateway logs:\n%s", logs)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	before, err := db.OutboxEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range before {
		if !e.DeliveredAt.IsZero() || e.Attempts != 1 || e.LockedUntil.IsZero() {
			t.Errorf("at the kill, event %d (%s) = delivered %v, attempts %d, lease %v; want claimed once, pending",
				e.ID, e.UserID, e.DeliveredAt, e.Attempts, e.LockedUntil)
		}
	}
	// The server now answers the message it holds, to a dead connection:
	// it accepts it (the 250 goes nowhere) or refuses it for now.
	close(release)
	held1 := wantMessageID(before[0]) // the batch is sent in id order
	if accept {
		mailWaitUntil(t, deadline, "the held message is stored", func() bool { return len(srv.Messages()) == 1 }, logs)
		if got := srv.Messages()[0].Header("Message-Id"); got != held1 {
			t.Fatalf("held message %s, want the first event's %s", got, held1)
		}
	} else {
		time.Sleep(200 * time.Millisecond)
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("%d messages stored after a 451", n)
		}
	}

	// A new gateway on the same database.
	logs2 := serveMailGateway(t, env)
	mailWaitUntil(t, deadline, "every mail is delivered", func() bool {
		es, err := db.OutboxEvents(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.DeliveredAt.IsZero() {
				return false
			}
		}
		return len(es) == len(users)
	}, logs2)

	es, _ := db.OutboxEvents(t.Context(), "")
	copies := map[string]int{}
	for _, m := range srv.Messages() {
		copies[m.Header("Message-Id")]++
	}
	var report []string
	for _, e := range es {
		id := wantMessageID(e)
		n := copies[id]
		report = append(report, fmt.Sprintf("event %d (%s): attempts %d, %d cop%s, Message-ID %s", e.ID, e.UserID, e.Attempts, n,
			map[bool]string{true: "y", false: "ies"}[n == 1], id))
		if !e.FailedAt.IsZero() {
			t.Errorf("event %d recorded failed: %s", e.ID, e.LastError)
		}
		switch {
		case id == held1 && accept:
			if n != 2 || e.Attempts != 2 {
				t.Errorf("the mail in flight at the kill: %d copies after %d attempts, want 2 and 2", n, e.Attempts)
			}
		case n != 1:
			t.Errorf("event %d: %d copies, want exactly 1", e.ID, n)
		}
		delete(copies, id)
	}
	if len(copies) != 0 {
		t.Errorf("mails with unexpected Message-IDs: %v", copies)
	}
	t.Logf("after SIGKILL mid-DATA and a restart:\n  %s", strings.Join(report, "\n  "))
}

// TestMailServerDownThenBack runs the whole gateway with its mail server
// down: mails wait in the outbox, deferred (counted on /metrics, the
// reason in the outbox), and when the server comes up on its address
// every mail arrives, each exactly once.
func TestMailServerDownThenBack(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) { testMailServerDownThenBack(t, d.URL(t)) })
	}
}

func testMailServerDownThenBack(t *testing.T, dbURL string) {
	port := freeSMTPPort(t)
	ops := freeAddr(t)
	env := mailEnv(t, dbURL, port, ops)
	logs := serveMailGateway(t, env)
	deadline := time.Now().Add(40 * time.Second)
	mailWaitUntil(t, deadline, "the gateway is ready", func() bool {
		r, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}, logs)
	db, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	users := []string{"u1", "u2", "u1"}
	enqueueMails(t, db, users)
	mailWaitUntil(t, deadline, "each user's first mail was tried and deferred twice", func() bool {
		es, _ := db.OutboxEvents(t.Context(), "")
		return len(es) == 3 && es[0].Attempts >= 2 && es[1].Attempts >= 2 && es[0].LastError != ""
	}, logs)
	es, _ := db.OutboxEvents(t.Context(), "")
	if es[2].Attempts != 0 || strings.Contains(es[0].LastError, "@") {
		t.Errorf("while down: u1's second mail tried %d times (want 0: it waits behind the first); last error %q", es[2].Attempts, es[0].LastError)
	}
	r, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(metrics), `crmgate_mail_deferred_total{type="confirm_email"}`) ||
		strings.Contains(string(metrics), `crmgate_mail_sent_total{type="confirm_email"}`) {
		t.Errorf("/metrics while down lacks deferred mail or shows sent mail")
	}

	srv := mailtest.Start(t, mailtest.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	mailWaitUntil(t, deadline, "every mail arrived", func() bool { return len(srv.Messages()) >= 3 }, logs)
	time.Sleep(300 * time.Millisecond) // a few more polls: nothing more may arrive
	es, _ = db.OutboxEvents(t.Context(), "")
	pos := map[string]int{}
	for i, m := range srv.Messages() {
		if _, dup := pos[m.Header("Message-Id")]; dup {
			t.Errorf("%s arrived twice", m.Header("Message-Id"))
		}
		pos[m.Header("Message-Id")] = i
	}
	for _, e := range es {
		if _, ok := pos[wantMessageID(e)]; !ok || e.DeliveredAt.IsZero() || !e.FailedAt.IsZero() {
			t.Errorf("event %d (%s): arrived %v, delivered %v, failed %v", e.ID, e.UserID, ok, e.DeliveredAt, e.FailedAt)
		}
	}
	if len(pos) != 3 || pos[wantMessageID(es[0])] > pos[wantMessageID(es[2])] {
		t.Errorf("arrivals %v: want 3 mails, u1's first before its second", pos)
	}
}

// freeSMTPPort is a loopback port with nothing listening (for a while).
func freeSMTPPort(t *testing.T) int {
	t.Helper()
	srv := mailtest.Start(t, mailtest.Options{})
	srv.Close()
	return srv.Port
}
