package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/profile"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/policies"
)

// dataverseConn is the gateway's connection to Dataverse; nil when
// CRMGATE_DATAVERSE_URL is unset. It has two views of one client (one
// token, breaker, concurrency limit and Retry-After wait): the background
// one, whose calls may take CRMGATE_DATAVERSE_TIMEOUT per attempt and the
// client's retry budget, and the interactive one, whose calls a person
// waits for and which CRMGATE_DATAVERSE_INTERACTIVE_BUDGET bounds.
type dataverseConn struct {
	client      *crmclient.Client    // background: the outbox deliverer
	directory   *crmclient.Directory // background: CLI commands (users set-binding)
	interactive *crmclient.Directory // the gateway's sign-ins, revalidations and contact edits
	model       crmclient.WebRoleModel
	cacheOpts   crmclient.CacheOptions // of the revalidation cache
}

// newDataverse builds the Dataverse client from a validated
// configuration; it returns nil, nil when no Dataverse is configured. It
// contacts nothing.
func newDataverse(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*dataverseConn, error) {
	d := cfg.Dataverse
	if !d.Configured() {
		return nil, nil
	}
	model, err := crmclient.ParseWebRoleModel(d.WebRoleModel)
	if err != nil {
		return nil, err
	}
	cc := clientConfig(d)
	cc.Now, cc.Logger, cc.Registerer = now, log, reg
	client, err := crmclient.New(cc)
	if err != nil {
		return nil, fmt.Errorf("dataverse: %w", err)
	}
	// MaxStale 0: a session's own grace period (CRMGATE_SESSION_CONTACT_GRACE)
	// is what rides out an outage, counted from the last confirmed snapshot.
	return &dataverseConn{client: client, directory: crmclient.NewDirectory(client, model),
		interactive: crmclient.NewDirectory(client.Interactive(), model), model: model,
		cacheOpts: crmclient.CacheOptions{TTL: d.ContactCacheTTL, Now: now, Registerer: reg}}, nil
}

// contactFilters are the policy file's contact filter templates, parsed.
type contactFilters struct {
	binding *binding.FilterTemplate // dataverse.binding_filter; nil when absent
	signIn  *binding.FilterTemplate // dataverse.signin_filter; nil when absent
	console *binding.FilterTemplate // console.contacts.filter; nil when absent
}

// policyName is how messages name the policy source, as policies does.
func policyName(cfg *config.Config) string {
	if cfg.PolicyFile == "" {
		return "CRMGATE_UPSTREAM_URL"
	}
	return filepath.Base(cfg.PolicyFile)
}

// parseContactFilters parses the policy's binding and sign-in filters with
// the binding package's grammar, reporting each problem as "file:line: field: reason",
// and checks them against the binding settings: custom as the default mode
// needs a binding filter, and a binding filter must name a user field. It
// also parses the admin console's contact list filter
// (console.contacts.filter) and checks that section with
// contacts.CheckOptions, so that check-config refuses what serve would.
func parseContactFilters(cfg *config.Config, pol *policies.Policy) (contactFilters, error) {
	var (
		f    contactFilters
		errs []error
	)
	file := policyName(cfg)
	parse := func(ft policies.FilterText, field string) *binding.FilterTemplate {
		if ft.Text == "" {
			return nil
		}
		t, err := binding.ParseFilterTemplate(ft.Text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: dataverse.%s: %w", file, ft.Line, field, err))
			return nil
		}
		return t
	}
	if route, ok := pol.ContactRoute(); ok && !cfg.SignIn.DataverseCheck {
		errs = append(errs, fmt.Errorf("%s: route %q uses the signed-in user's contact (access bound, contact_columns or contact.columns in a condition), but sessions carry a contact only with CRMGATE_SIGNIN_DATAVERSE_CHECK=true (and CRMGATE_DATAVERSE_URL): the route would never see one", file, route))
	}
	f.binding = parse(pol.Dataverse.BindingFilter, "binding_filter")
	f.signIn = parse(pol.Dataverse.SignInFilter, "signin_filter")
	if cc := pol.Console.Contacts; cc.Filter.Text != "" || cc.CompanyColumn != "" || len(cc.Columns) > 0 {
		ok := true
		if cc.Filter.Text != "" {
			var err error
			if f.console, err = binding.ParseFilterTemplate(cc.Filter.Text); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: console.contacts.filter: %w", file, cc.Filter.Line, err))
				ok = false
			}
		}
		if ok {
			if err := contacts.CheckOptions(f.console, cc.CompanyColumn, cc.Columns); err != nil {
				errs = append(errs, fmt.Errorf("%s: console.contacts: %w", file, err))
			}
		}
	}
	if f.binding != nil && !f.binding.HasFields() {
		errs = append(errs, fmt.Errorf("%s:%d: dataverse.binding_filter: names no user field such as {email}: every user would be bound to the same contact",
			file, pol.Dataverse.BindingFilter.Line))
	}
	if cfg.Binding.DefaultMode == config.BindingModeCustom && pol.Dataverse.BindingFilter.Text == "" {
		errs = append(errs, fmt.Errorf("%s: CRMGATE_BINDING_DEFAULT_MODE is custom but the policy has no dataverse.binding_filter", file))
	}
	return f, errors.Join(errs...)
}

// contactOptions sets the identity layer's options that read Dataverse
// contacts: the directory, the binding of users, the sign-in check, field
// sync and the revalidation cache, whose columns are the session's
// (columns) and every other one a revalidation reads. The directory and
// the cache read through the interactive view: every one of their calls
// in the gateway has a person waiting (a sign-in, a proxied request that
// revalidates its session, an admin or profile edit). Without Dataverse
// they stay zero apart from the custom filter (Validate keeps the other
// settings at their defaults then), so no binding resolves.
func contactOptions(cfg *config.Config, f contactFilters, dv *dataverseConn, columns []string, o *wiring.Options) error {
	if dv == nil {
		o.Binding = binding.Options{Custom: f.binding}
		return nil
	}
	sync, err := cfg.Binding.SyncFieldMap()
	if err != nil {
		return err
	}
	o.Binding = binding.Options{
		DefaultMode:    authz.BindingMode(cfg.Binding.DefaultMode),
		UsernameColumn: cfg.Binding.UsernameColumn,
		Custom:         f.binding,
		AutoMapEmail:   cfg.Binding.AutoMapEmail,
	}
	o.SignInCheck = signin.Check{
		Enabled:             cfg.SignIn.DataverseCheck,
		RequireLogonEnabled: cfg.SignIn.RequireLogonEnabled,
		Extra:               f.signIn,
		// Read in the check's one request (authz/recovery clears it).
		PasswordChangeColumn: cfg.Recovery.ChangeColumn,
	}
	o.FieldSync = profile.FieldSync{Columns: sync}
	cache, err := crmclient.NewContactCache(dv.client.Interactive(), wiring.SnapshotColumns(columns, *o), dv.model, dv.cacheOpts)
	if err != nil {
		return fmt.Errorf("dataverse: %w", err)
	}
	cached := crmclient.NewCachedDirectory(dv.interactive, cache)
	o.Contacts, o.Snapshots = cached, cached
	return nil
}

// clientConfig is the crmclient configuration of d.
func clientConfig(d config.DataverseConfig) crmclient.Config {
	return crmclient.Config{
		URL: d.URL, TenantID: d.TenantID, ClientID: d.ClientID,
		ClientSecret: d.ClientSecret, CertificateFile: d.CertificateFile, FederatedTokenFile: d.FederatedTokenFile,
		AuthorityHost: d.AuthorityHost, Timeout: d.Timeout, MaxConcurrency: d.MaxConcurrency,
		InteractiveBudget: d.InteractiveBudget,
	}
}

// lifecycleActions converts the policy's dataverse.lifecycle_actions to the
// form the lifecycle package delivers, and validates it the way it will.
func lifecycleActions(pol *policies.Policy) (lifecycle.Actions, error) {
	var a lifecycle.Actions
	for ev, spec := range pol.Dataverse.LifecycleActions {
		s := lifecycle.ActionSpec{Name: spec.Name, Params: spec.Params}
		switch ev {
		case policies.LifecycleCreated:
			a.Created = s
		case policies.LifecycleUpdated:
			a.Updated = s
		case policies.LifecycleDeleted:
			a.Deleted = s
		case policies.LifecycleBound:
			a.Bound = s
		case policies.LifecycleUnbound:
			a.Unbound = s
		case policies.LifecycleApproved:
			a.Approved = s
		case policies.LifecycleRejected:
			a.Rejected = s
		case policies.LifecycleRegistered:
			a.Registered = s
		default:
			return a, fmt.Errorf("policy: dataverse.lifecycle_actions: unknown event %q", ev)
		}
	}
	return a, a.Validate()
}

// newDeliverer returns what the outbox worker hands lifecycle events to:
// the configured Dataverse actions, called through the background view
// (no person waits for them; the worker retries with its own backoff), or outbox.NoDeliverer (events are
// marked done unsent) when there is no Dataverse or no action.
func newDeliverer(dv *dataverseConn, actions lifecycle.Actions, configured bool, log *slog.Logger) (outbox.Deliverer, error) {
	switch {
	case dv == nil && configured:
		log.Warn("the policy names Dataverse lifecycle actions but CRMGATE_DATAVERSE_URL is unset: lifecycle events are not sent")
		return outbox.NoDeliverer{}, nil
	case dv == nil:
		return outbox.NoDeliverer{}, nil
	case !configured:
		log.Info("Dataverse is configured but the policy names no lifecycle actions (dataverse.lifecycle_actions): lifecycle events are not sent")
		return outbox.NoDeliverer{}, nil
	}
	return lifecycle.NewActionDeliverer(dv.client, actions)
}

// dataverseWarnings are the settings of the policy's dataverse section
// that are valid but have no effect next to the configuration.
func dataverseWarnings(cfg *config.Config, pol *policies.Policy) []string {
	var warnings []string
	if pol.Dataverse.SignInFilter.Text != "" && !cfg.SignIn.DataverseCheck {
		warnings = append(warnings, "the policy has a dataverse.signin_filter but CRMGATE_SIGNIN_DATAVERSE_CHECK is off: it is not applied")
	}
	if len(pol.Dataverse.LifecycleActions) > 0 && !cfg.Dataverse.Configured() {
		warnings = append(warnings, "the policy names Dataverse lifecycle actions but CRMGATE_DATAVERSE_URL is unset: they are not called")
	}
	return warnings
}
