package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/capture"
	"github.com/crmgate/crmgate/mail/smtpurl"
)

// The dev mail capture of `crmgate dev`.
const (
	// devMailPath is where the capture's page is served, under the auth
	// prefix of the dev gateway only: `crmgate serve` never mounts it.
	devMailPath = "/dev/mail"
	// devMailKept is how many captured messages dev keeps in memory.
	devMailKept = 200
	// devMailFrom is the sender address of the dev gateway's mail.
	devMailFrom = "crmgate demo <noreply@demo.crmgate.test>"
	// devTestMail is the mail the page's "Send a test mail" button sends
	// to the demo user alice: the approval notice, with a link to sign in.
	devTestMail = "registration_approved"
)

// devMailPage is the dev gateway's public handler: the capture's page at
// the auth prefix + devMailPath, everything else to the gateway. Its
// button composes a mail with the gateway's composer and enqueues it in
// the outbox, so that it takes the production path (outbox worker, SMTP
// sender) to the capture.
func devMailPage(cfg *config.Config, g *gateway, capt *capture.Server, log *slog.Logger) (http.Handler, error) {
	prefix := cfg.AuthPrefix + devMailPath
	composer := g.auth.Mail
	send := func(ctx context.Context) error {
		if composer == nil {
			return errors.New("no mail composer")
		}
		m, err := composer.Compose(devTestMail, "Alice Example <alice@demo.crmgate.test>", mail.Data{Name: "Alice",
			Link: composer.Link("/signin", url.Values{"redirect_url": {"/account"}})})
		if err != nil {
			return err
		}
		e, err := mail.NewEvent(devTestMail, "", m, time.Time{})
		if err != nil {
			return err
		}
		if err := g.store.Enqueue(ctx, e); err != nil {
			return err
		}
		g.outbox.Notify()
		return nil
	}
	page, err := capt.Handler(capture.HandlerOptions{Prefix: prefix, SiteName: cfg.Branding.SiteName, Send: send, Logger: log,
		Stylesheets: []string{g.pages.StaticURL("theme.css"), g.pages.StaticURL("style.css")}})
	if err != nil {
		return nil, fmt.Errorf("dev mail page: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == prefix || strings.HasPrefix(r.URL.Path, prefix+"/") {
			page.ServeHTTP(w, r)
			return
		}
		g.handler.ServeHTTP(w, r)
	}), nil
}

// redactedSMTP is the mail server URL without its password.
func redactedSMTP(raw string) string {
	u, err := smtpurl.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.String()
}
