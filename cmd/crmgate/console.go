package main

import (
	"log/slog"
	"time"

	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/policies"
	"github.com/crmgate/crmgate/proxy"
	"github.com/crmgate/crmgate/proxy/console"
)

// The services the admin console needs, checked at compile time.
var (
	_ console.Users            = (*accounts.Service)(nil)
	_ console.Accounts         = (*accounts.Service)(nil)
	_ console.Bindings         = (*accounts.Service)(nil)
	_ console.Passwords        = (*accounts.Service)(nil)
	_ console.ContactLookup    = (*binding.Resolver)(nil)
	_ console.Approvals        = (*onboarding.Service)(nil)
	_ console.SetPasswordLinks = (*onboarding.Service)(nil)
	_ console.SessionRevoker   = (*accounts.Service)(nil)
	_ console.AuditReader      = (*audit.Log)(nil)
	_ console.Jobs             = (*jobs.Service)(nil)
	_ console.ContactAdmin     = (*contacts.Service)(nil)

	_ console.Invitations          = (*invitations.Service)(nil)
	_ console.DataverseInvitations = (*crmclient.Directory)(nil)
	_ console.Outbox               = (*outbox.Admin)(nil)
	_ outbox.AdminStore            = (*store.DB)(nil)
	_ outbox.Auditor               = (*audit.Log)(nil)
	_ crmclient.CacheReporter      = (*crmclient.CachedDirectory)(nil)
)

// consoleOptions connects the admin console to the identity layer: every
// capability the layer built, none that it did not (no typed nils). The
// contact lookup needs Dataverse, and so does the Dataverse page's status
// part (dv's client, with the statistics of caches); its outbox part is
// the outbox in db, whose retries wake the worker (notify).
func consoleOptions(s *wiring.Services, admin *contacts.Service, dv *dataverseConn, db *store.DB, notify func(), now func() time.Time,
	log *slog.Logger, caches ...crmclient.CacheReporter) (*console.Options, error) {
	o := &console.Options{Users: s.Accounts, Accounts: s.Accounts, Bindings: s.Accounts, Passwords: s.Accounts,
		Audit: s.Audit, Jobs: s.Jobs, BreakGlassRole: proxy.AdminRole}
	if s.Binding != nil && s.Binding.Configured() {
		o.Contacts = s.Binding
	}
	o.Sessions = s.Accounts
	if s.Onboarding != nil {
		o.Approvals, o.SetPasswordLinks = s.Onboarding, s.Onboarding
	}
	if admin != nil {
		o.ContactAdmin = admin
	}
	if s.Invitations != nil {
		o.Invitations = s.Invitations
	}
	if dv != nil {
		o.DataverseInvitations = dv.directory
		client := dv.client
		o.DataverseStatus = func() dataverse.Status { return client.Status(caches...) }
	}
	ob, err := outbox.NewAdmin(db, s.Audit, outbox.AdminOptions{Now: now, Logger: log, Notify: notify})
	if err != nil {
		return nil, err
	}
	o.Outbox = ob
	return o, nil
}

// contactAdmin is the console's contacts service over the interactive
// Dataverse client (a person waits for it), scoped by the policy file's
// console.contacts; nil without Dataverse.
func contactAdmin(dv *dataverseConn, db contacts.Store, pol *policies.Policy, filters contactFilters, wo wiring.Options, s *wiring.Services,
	now func() time.Time, log *slog.Logger) (*contacts.Service, error) {
	if dv == nil {
		return nil, nil
	}
	o := contacts.Options{Directory: dv.interactive, Store: db, Audit: s.Audit, Filter: filters.console,
		CompanyColumn: pol.Console.Contacts.CompanyColumn, Columns: pol.Console.Contacts.Columns,
		BindingUsernameColumn: wo.Binding.UsernameColumn, Now: now, Logger: log}
	if s.Invitations != nil {
		o.Invitations = s.Invitations
	}
	if s.Onboarding != nil {
		o.Onboarding = s.Onboarding
	}
	if c, ok := wo.Snapshots.(contacts.Cache); ok {
		o.Cache = c
	}
	return contacts.New(o)
}
