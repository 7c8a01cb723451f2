package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/policies"
)

// The Dataverse client is what authz calls lifecycle actions through.
var _ authz.ActionCaller = (*crmclient.Client)(nil)

// dataverse is the gateway's connection to Dataverse; nil when
// CRMGATE_DATAVERSE_URL is unset.
type dataverse struct {
	client   *crmclient.Client
	contacts *crmclient.ContactCache
}

// newDataverse builds the Dataverse client and the contact cache from a
// validated configuration; it returns nil, nil when no Dataverse is
// configured. It contacts nothing.
func newDataverse(cfg *config.Config, pol *policies.Policy, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*dataverse, error) {
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
	contacts, err := crmclient.NewContactCache(client, pol.ContactColumns(), model, crmclient.CacheOptions{
		TTL: d.ContactCacheTTL, MaxStale: d.ContactCacheMaxStale, Now: now, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("dataverse: %w", err)
	}
	return &dataverse{client: client, contacts: contacts}, nil
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
func newDeliverer(dv *dataverse, pol *policies.Policy, log *slog.Logger) (authz.Deliverer, error) {
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
