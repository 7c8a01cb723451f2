package main

import (
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
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

	_ console.Invitations          = (*invitations.Service)(nil)
	_ console.DataverseInvitations = (*crmclient.Directory)(nil)
)

// consoleOptions connects the admin console to the identity layer: every
// capability the layer built, none that it did not (no typed nils). The
// contact lookup needs Dataverse.
func consoleOptions(s *wiring.Services) *console.Options {
	o := &console.Options{Users: s.Accounts, Accounts: s.Accounts, Bindings: s.Accounts, Passwords: s.Accounts,
		Audit: s.Audit, BreakGlassRole: proxy.AdminRole}
	if s.Binding != nil && s.Binding.Configured() {
		o.Contacts = s.Binding
	}
	if s.Onboarding != nil {
		o.Approvals = s.Onboarding
	}
	if s.Invitations != nil {
		o.Invitations = s.Invitations
	}
	return o
}
