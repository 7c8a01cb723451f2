package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/policies"
)

// The Dataverse client is what authz calls lifecycle actions through.
var _ authz.ActionCaller = (*crmclient.Client)(nil)

// dataverseConn is the gateway's connection to Dataverse; nil when
// CRMGATE_DATAVERSE_URL is unset.
type dataverseConn struct {
	client    *crmclient.Client
	directory *crmclient.Directory // what authz resolves bindings and checks sign-ins with
	model     crmclient.WebRoleModel
	cacheOpts crmclient.CacheOptions // of the revalidation cache
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
	return &dataverseConn{client: client, directory: crmclient.NewDirectory(client, model), model: model,
		cacheOpts: crmclient.CacheOptions{TTL: d.ContactCacheTTL, Now: now, Registerer: reg}}, nil
}

// contactFilters are the policy file's contact filter templates, parsed.
type contactFilters struct {
	binding *authz.FilterTemplate // dataverse.binding_filter; nil when absent
	signIn  *authz.FilterTemplate // dataverse.signin_filter; nil when absent
}

// policyName is how messages name the policy source, as policies does.
func policyName(cfg *config.Config) string {
	if cfg.PolicyFile == "" {
		return "CRMGATE_UPSTREAM_URL"
	}
	return filepath.Base(cfg.PolicyFile)
}

// parseContactFilters parses the policy's binding and sign-in filters with
// authz's grammar, reporting each problem as "file:line: field: reason",
// and checks them against the binding settings: custom as the default mode
// needs a binding filter, and a binding filter must name a user field.
func parseContactFilters(cfg *config.Config, pol *policies.Policy) (contactFilters, error) {
	var (
		f    contactFilters
		errs []error
	)
	file := policyName(cfg)
	parse := func(ft policies.FilterText, field string) *authz.FilterTemplate {
		if ft.Text == "" {
			return nil
		}
		t, err := authz.ParseFilterTemplate(ft.Text)
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
	if f.binding != nil && !f.binding.HasFields() {
		errs = append(errs, fmt.Errorf("%s:%d: dataverse.binding_filter: names no user field such as {email}: every user would be bound to the same contact",
			file, pol.Dataverse.BindingFilter.Line))
	}
	if cfg.Binding.DefaultMode == config.BindingModeCustom && pol.Dataverse.BindingFilter.Text == "" {
		errs = append(errs, fmt.Errorf("%s: CRMGATE_BINDING_DEFAULT_MODE is custom but the policy has no dataverse.binding_filter", file))
	}
	return f, errors.Join(errs...)
}

// contactOptions sets the authz options that read Dataverse contacts: the
// directory, the binding of users, the sign-in check, field sync and the
// revalidation cache, whose columns are the session's (columns) and every
// other one a revalidation reads. Without Dataverse they stay zero apart
// from the custom filter (Validate keeps the other settings at their
// defaults then), so no binding resolves.
func contactOptions(cfg *config.Config, f contactFilters, dv *dataverseConn, columns []string, o *authz.Options) error {
	if dv == nil {
		o.Binding = authz.BindingOptions{Custom: f.binding}
		return nil
	}
	sync, err := cfg.Binding.SyncFieldMap()
	if err != nil {
		return err
	}
	o.Binding = authz.BindingOptions{
		DefaultMode:    authz.BindingMode(cfg.Binding.DefaultMode),
		UsernameColumn: cfg.Binding.UsernameColumn,
		Custom:         f.binding,
		AutoMapEmail:   cfg.Binding.AutoMapEmail,
	}
	o.SignInCheck = authz.SignInCheck{
		Enabled:             cfg.SignIn.DataverseCheck,
		RequireLogonEnabled: cfg.SignIn.RequireLogonEnabled,
		Extra:               f.signIn,
	}
	o.FieldSync = authz.FieldSync{Columns: sync}
	cache, err := crmclient.NewContactCache(dv.client, authz.SnapshotColumns(columns, *o), dv.model, dv.cacheOpts)
	if err != nil {
		return fmt.Errorf("dataverse: %w", err)
	}
	cached := crmclient.NewCachedDirectory(dv.directory, cache)
	o.Contacts, o.Snapshots = cached, cached
	return nil
}

// clientConfig is the crmclient configuration of d.
func clientConfig(d config.DataverseConfig) crmclient.Config {
	return crmclient.Config{
		URL: d.URL, TenantID: d.TenantID, ClientID: d.ClientID,
		ClientSecret: d.ClientSecret, CertificateFile: d.CertificateFile, FederatedTokenFile: d.FederatedTokenFile,
		AuthorityHost: d.AuthorityHost, Timeout: d.Timeout, MaxConcurrency: d.MaxConcurrency,
	}
}

// lifecycleActions converts the policy's dataverse.lifecycle_actions to the
// form authz delivers, and validates it the way authz will.
func lifecycleActions(pol *policies.Policy) (authz.LifecycleActions, error) {
	var a authz.LifecycleActions
	for ev, spec := range pol.Dataverse.LifecycleActions {
		s := authz.ActionSpec{Name: spec.Name, Params: spec.Params}
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
		default:
			return a, fmt.Errorf("policy: dataverse.lifecycle_actions: unknown event %q", ev)
		}
	}
	return a, a.Validate()
}

// newDeliverer returns what the outbox worker hands lifecycle events to:
// the configured Dataverse actions, or NoDeliverer (events are marked done
// unsent) when there is no Dataverse or no action.
func newDeliverer(dv *dataverseConn, pol *policies.Policy, log *slog.Logger) (authz.Deliverer, error) {
	actions, err := lifecycleActions(pol)
	if err != nil {
		return nil, err
	}
	configured := len(pol.Dataverse.LifecycleActions) > 0
	switch {
	case dv == nil && configured:
		log.Warn("the policy names Dataverse lifecycle actions but CRMGATE_DATAVERSE_URL is unset: lifecycle events are not sent")
		return authz.NoDeliverer{}, nil
	case dv == nil:
		return authz.NoDeliverer{}, nil
	case !configured:
		log.Info("Dataverse is configured but the policy names no lifecycle actions (dataverse.lifecycle_actions): lifecycle events are not sent")
		return authz.NoDeliverer{}, nil
	}
	d, err := authz.NewActionDeliverer(dv.client, actions)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// checkDataverse reports the problems of the policy's dataverse section
// that only show next to the configuration, for check-config.
func checkDataverse(cfg *config.Config, pol *policies.Policy) (warnings []string, err error) {
	if _, err := lifecycleActions(pol); err != nil {
		return nil, err
	}
	if _, err := parseContactFilters(cfg, pol); err != nil {
		return nil, err
	}
	if pol.Dataverse.SignInFilter.Text != "" && !cfg.SignIn.DataverseCheck {
		warnings = append(warnings, "the policy has a dataverse.signin_filter but CRMGATE_SIGNIN_DATAVERSE_CHECK is off: it is not applied")
	}
	if len(pol.Dataverse.LifecycleActions) > 0 && !cfg.Dataverse.Configured() {
		warnings = append(warnings, "the policy names Dataverse lifecycle actions but CRMGATE_DATAVERSE_URL is unset: they are not called")
	}
	if cfg.Dataverse.Configured() && cfg.Validate() == nil {
		// New reads the certificate and checks the token file, contacting nothing.
		if _, err := crmclient.New(clientConfig(cfg.Dataverse)); err != nil {
			return warnings, fmt.Errorf("dataverse: %w", err)
		}
	}
	return warnings, nil
}
