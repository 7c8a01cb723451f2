package main

import (
	"log/slog"
	"time"

	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/console"
)

// The services the admin console needs, checked at compile time.
var (
	_ console.Users         = (*accounts.Service)(nil)
	_ console.Accounts      = (*accounts.Service)(nil)
	_ console.Bindings      = (*accounts.Service)(nil)
	_ console.Passwords     = (*accounts.Service)(nil)
	_ console.ContactLookup = (*binding.Resolver)(nil)
	_ console.Approvals     = (*onboarding.Service)(nil)
	_ console.AuditReader   = (*audit.Log)(nil)
	_ console.Outbox        = (*outbox.Admin)(nil)
	_ outbox.AdminStore     = (*store.DB)(nil)
	_ outbox.Auditor        = (*audit.Log)(nil)
)

// consoleOptions connects the admin console to the identity layer: every
// capability the layer built, none that it did not (no typed nils). The
// contact lookup needs Dataverse, and so does the Dataverse page's status
// part (dv's client, with the statistics of caches); its outbox part is
// the outbox in db, whose retries wake the worker (notify).
func consoleOptions(s *wiring.Services, dv *dataverseConn, db *store.DB, notify func(), now func() time.Time, log *slog.Logger,
	caches ...crmclient.CacheReporter) (*console.Options, error) {
	o := &console.Options{Users: s.Accounts, Accounts: s.Accounts, Bindings: s.Accounts, Passwords: s.Accounts,
		Audit: s.Audit, BreakGlassRole: proxy.AdminRole}
	if s.Binding != nil && s.Binding.Configured() {
		o.Contacts = s.Binding
	}
	if s.Onboarding != nil {
		o.Approvals = s.Onboarding
	}
	if dv != nil {
		client := dv.client
		o.DataverseStatus = func() dataverse.Status { return client.Status(caches...) }
	}
	admin, err := outbox.NewAdmin(db, s.Audit, outbox.AdminOptions{Now: now, Logger: log, Notify: notify})
	if err != nil {
		return nil, err
	}
	o.Outbox = admin
	return o, nil
}
