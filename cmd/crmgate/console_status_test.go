package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/mail"
)

// TestServeConsoleOutbox: serve wires the console's Dataverse page to the
// outbox in its store and to its worker. Without SMTP a mail fails for
// good; the page says no Dataverse is configured and lists the mail; a
// confirmed retry wakes the worker at once (the poll interval is an hour),
// which fails it again; a confirmed drop deletes it.
func TestServeConsoleOutbox(t *testing.T) {
	dir := t.TempDir()
	pub, ops := freeAddr(t), freeAddr(t)
	env := baseEnv(t, dir, "CRMGATE_LISTEN="+pub, "CRMGATE_OPS_LISTEN="+ops, "CRMGATE_SHUTDOWN_DELAY=0s",
		"CRMGATE_OUTBOX_POLL_INTERVAL=1h")
	for i, kv := range env {
		if strings.HasPrefix(kv, "CRMGATE_PUBLIC_URL=") {
			env[i] = "CRMGATE_PUBLIC_URL=http://" + pub
		}
	}
	const password = "correct horse battery staple"
	if err := run(context.Background(), []string{"users", "create", "--username", "root", "--email", "root@example.test",
		"--roles", "admin", "--password-stdin"}, env, strings.NewReader(password+"\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, _ := json.Marshal(mail.Message{To: "ann@example.test", Subject: "Hello", Text: "hello"})
	if err := db.Enqueue(t.Context(), outbox.Event{Kind: mail.Kind, Type: "welcome", Payload: p}); err != nil {
		t.Fatal(err)
	}
	failed := func() []outbox.Event {
		t.Helper()
		evs, err := db.FailedOutbox(t.Context(), mail.Kind, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env, nil, io.Discard, logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	wait("the mail failed", func() bool { return len(failed()) == 1 })
	id := strconv.FormatInt(failed()[0].ID, 10)

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	base := "http://" + pub
	status, page, _ := httpSignIn(t, c, base, "/.auth/admin/dataverse", "root", password)
	if status != 200 || !strings.Contains(page, "No Dataverse is configured") || !strings.Contains(page, `<tr id="event-`+id+`">`) ||
		!strings.Contains(page, "CRMGATE_SMTP_URL is unset") {
		t.Fatalf("Dataverse page: %d\n%s", status, page)
	}
	token := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(page)[1]
	post := func(path string) int {
		t.Helper()
		form := url.Values{"csrf_token": {token}, "confirmed": {"yes"}}
		req, _ := http.NewRequest(http.MethodPost, base+"/.auth/admin/dataverse/outbox/"+id+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		noRedirect := *c
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	before := failed()[0].FailedAt
	if s := post("/retry"); s != http.StatusSeeOther {
		t.Fatalf("retry: %d\n%s", s, logs.String())
	}
	// Requeued, then failed again by the woken worker: a new FailedAt.
	wait("the retried mail failed again", func() bool {
		evs := failed()
		return len(evs) == 1 && evs[0].FailedAt.After(before)
	})
	if s := post("/drop"); s != http.StatusSeeOther {
		t.Fatalf("drop: %d", s)
	}
	if evs := failed(); len(evs) != 0 {
		t.Errorf("failed events after the drop: %+v", evs)
	}
	if !strings.Contains(logs.String(), "outbox admin: outbox.retried") || !strings.Contains(logs.String(), "outbox admin: outbox.dropped") {
		t.Errorf("the outbox admin did not log its changes:\n%s", logs.String())
	}
}
