package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"github.com/crmgate/crmgate/mail/mailtest"
)

// TestBrowserConsoleApprovalAndOutbox: in `crmgate dev` with a real SMTP
// server that refuses the first mail for good (550), the admin approves a
// pending registration from its console page; the approval mail is
// refused and shows on the console's Dataverse page as a failed outbox
// event, which the admin retries after a confirmation: the worker delivers
// it at once, and the server holds it.
func TestBrowserConsoleApprovalAndOutbox(t *testing.T) {
	browser := requireBrowser(t)
	var refused atomic.Bool
	smtpSrv := mailtest.Start(t, mailtest.Options{Reply: func(_ int, stage string) *smtp.SMTPError {
		if stage == "rcpt" && refused.CompareAndSwap(false, true) {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox today"}
		}
		return nil
	}})
	g := startDevEnv(t, []string{"CRMGATE_SMTP_URL=smtp://" + smtpSrv.Addr() + "?tls=none", "CRMGATE_SMTP_FROM=noreply@demo.crmgate.test"})
	dbEnv := []string{"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(devDataDir(t, g), "crmgate.db"), "CRMGATE_PUBLIC_URL=" + g.url}
	if err := run(context.Background(), []string{"users", "create", "--username", "dora", "--email", "dora@demo.crmgate.test",
		"--name", "Dora Newcomer", "--status", "pending", "--password-stdin"}, dbEnv, strings.NewReader("sunrise over a quiet harbour\n"),
		io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx := newBrowser(t, browser)
	signInConsole(t, ctx, g, "admin")
	open(t, ctx, "dora's page", g.url+"/.auth/admin/users/"+devUser(t, g, "dora").ID)
	navigation(t, ctx, "approve", chromedp.Click(chromedp.CSS(`form[action$="/approve"] button`)))
	if text := consoleText(t, ctx); !strings.Contains(text, "The registration was approved.") {
		t.Fatalf("after approving:\n%s", text)
	}
	if st := devUser(t, g, "dora").Status; st != "active" {
		t.Errorf("dora is %s in the store", st)
	}

	// The refused mail is a failed outbox event on the Dataverse page.
	deadline := time.Now().Add(15 * time.Second)
	for {
		open(t, ctx, "the Dataverse page", g.url+"/.auth/admin/dataverse")
		if strings.Contains(consoleText(t, ctx), "demo.crmgate.test") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed event on the Dataverse page:\n%s", consoleText(t, ctx))
		}
		time.Sleep(200 * time.Millisecond)
	}
	screenshot(t, ctx, "console-outbox-failed")
	navigation(t, ctx, "retry", chromedp.Click(chromedp.CSS(`form[action$="/retry"] button`)))
	if text := consoleText(t, ctx); !strings.Contains(strings.ToLower(text), "retry") {
		t.Fatalf("retry confirmation:\n%s", text)
	}
	navigation(t, ctx, "confirm", chromedp.Click(chromedp.CSS("form.confirm button[type=submit]")))
	if text := consoleText(t, ctx); !strings.Contains(text, "pending again") {
		t.Fatalf("after retrying:\n%s", text)
	}
	m := waitMails(t, smtpSrv, 1)[0]
	if m.To != "dora@demo.crmgate.test" || !strings.Contains(m.Subject, "approved") {
		t.Errorf("the retried mail: %+v", m)
	}
}
