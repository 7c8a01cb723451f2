package config

import (
	"strings"
	"testing"
)

// TestDataverseDefaults keeps dataverseDefaults (used to tell which
// settings were changed) equal to what Load applies.
func TestDataverseDefaults(t *testing.T) {
	cfg, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dataverse != dataverseDefaults {
		t.Fatalf("Load defaults %+v, dataverseDefaults %+v", cfg.Dataverse, dataverseDefaults)
	}
	if cfg.Dataverse.Configured() {
		t.Fatal("Dataverse configured by default")
	}
}

func TestValidateDataverse(t *testing.T) {
	const (
		url    = "CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com"
		tenant = "CRMGATE_DATAVERSE_TENANT_ID=contoso.onmicrosoft.com"
		client = "CRMGATE_DATAVERSE_CLIENT_ID=00000000-0000-4000-8000-00000000c0de"
		secret = "CRMGATE_DATAVERSE_CLIENT_SECRET=s3cr3t-value"
	)
	tests := []struct {
		name string
		env  []string
		want []string // substrings of the error; none means valid
	}{
		{"none", nil, nil},
		{"complete with a secret", []string{url, tenant, client, secret}, nil},
		{"certificate", []string{url, tenant, client, "CRMGATE_DATAVERSE_CERTIFICATE_FILE=/etc/crmgate/dv.pem"}, nil},
		{"federated token, enhanced roles, no stale", []string{url, tenant, client, "CRMGATE_DATAVERSE_FEDERATED_TOKEN_FILE=/var/run/token",
			"CRMGATE_DATAVERSE_WEB_ROLE_MODEL=enhanced", "CRMGATE_BINDING_SYNC_FIELDS= first_name=firstname, last_name = lastname,email=emailaddress1,display_name=fullname", "CRMGATE_SIGNIN_DATAVERSE_CHECK=true"}, nil},
		{"sync fields without the check", []string{url, tenant, client, secret, "CRMGATE_BINDING_SYNC_FIELDS=first_name=firstname"},
			[]string{"CRMGATE_BINDING_SYNC_FIELDS: needs CRMGATE_SIGNIN_DATAVERSE_CHECK=true"}},
		{"loopback emulator over http", []string{"CRMGATE_DATAVERSE_URL=http://127.0.0.1:8090", "CRMGATE_DATAVERSE_AUTHORITY_HOST=http://localhost:8090",
			tenant, client, secret}, nil},
		{"http on a real host", []string{"CRMGATE_DATAVERSE_URL=http://org.crm.dynamics.com", tenant, client, secret},
			[]string{"CRMGATE_DATAVERSE_URL: must be https"}},
		{"url with a path", []string{"CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com/api/data/v9.2", tenant, client, secret},
			[]string{"CRMGATE_DATAVERSE_URL: must be scheme://host"}},
		{"authority over http", []string{url, "CRMGATE_DATAVERSE_AUTHORITY_HOST=http://login.example.com", tenant, client, secret},
			[]string{"CRMGATE_DATAVERSE_AUTHORITY_HOST: must be https"}},
		{"missing ids and credential", []string{url},
			[]string{"CRMGATE_DATAVERSE_TENANT_ID: required", "CRMGATE_DATAVERSE_CLIENT_ID: required", "exactly one credential", "(0 set)"}},
		{"two credentials", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_CERTIFICATE_FILE=/x.pem"},
			[]string{"exactly one credential", "(2 set)"}},
		{"bad ids", []string{url, "CRMGATE_DATAVERSE_TENANT_ID=not a tenant", "CRMGATE_DATAVERSE_CLIENT_ID=my-app", secret},
			[]string{"CRMGATE_DATAVERSE_TENANT_ID: must be a tenant GUID", "CRMGATE_DATAVERSE_CLIENT_ID: must be the application (client) id"}},
		{"bad tuning", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_TIMEOUT=0s", "CRMGATE_DATAVERSE_MAX_CONCURRENCY=0",
			"CRMGATE_DATAVERSE_CONTACT_CACHE_TTL=0s", "CRMGATE_DATAVERSE_WEB_ROLE_MODEL=classic"},
			[]string{"DATAVERSE_TIMEOUT", "DATAVERSE_MAX_CONCURRENCY", "DATAVERSE_CONTACT_CACHE_TTL", "DATAVERSE_WEB_ROLE_MODEL"}},
		{"interactive budget too short", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=99ms"},
			[]string{"CRMGATE_DATAVERSE_INTERACTIVE_BUDGET: must be between 100ms and 1m"}},
		{"interactive budget zero", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=0s"},
			[]string{"CRMGATE_DATAVERSE_INTERACTIVE_BUDGET: must be between 100ms and 1m"}},
		{"interactive budget negative", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=-5s"},
			[]string{"CRMGATE_DATAVERSE_INTERACTIVE_BUDGET: must be between 100ms and 1m"}},
		{"interactive budget too long", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=61s"},
			[]string{"CRMGATE_DATAVERSE_INTERACTIVE_BUDGET: must be between 100ms and 1m"}},
		{"interactive budget bounds", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=1m"}, nil},
		{"interactive budget short", []string{url, tenant, client, secret, "CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=100ms"}, nil},
		{"interactive budget without a url", []string{"CRMGATE_DATAVERSE_INTERACTIVE_BUDGET=2s"},
			[]string{"CRMGATE_DATAVERSE_URL: required because CRMGATE_DATAVERSE_INTERACTIVE_BUDGET set"}},
		{"bad sync fields", []string{url, tenant, client, secret, "CRMGATE_BINDING_SYNC_FIELDS=first_name=firstname,nickname=nick,last_name,email=1bad,display_name=firstname,first_name=x,last_name=adx_identity_passwordhash"},
			[]string{`unknown user field "nickname"`, `"last_name" is not user_field=contact_column`, "email: column must be a Dataverse column name", "first_name and display_name both map to column firstname", "first_name is mapped twice", "last_name: column must not be adx_identity_passwordhash"}},
		{"sync fields without a url", []string{"CRMGATE_BINDING_SYNC_FIELDS=first_name=firstname"},
			[]string{"CRMGATE_DATAVERSE_URL: required because CRMGATE_BINDING_SYNC_FIELDS set"}},
		{"settings without a url", []string{tenant, secret, "CRMGATE_DATAVERSE_TIMEOUT=5s"},
			[]string{"CRMGATE_DATAVERSE_URL: required because CRMGATE_DATAVERSE_TENANT_ID, CRMGATE_DATAVERSE_CLIENT_SECRET, CRMGATE_DATAVERSE_TIMEOUT set"}},
		{"lease shorter than the timeout", []string{url, tenant, client, secret, "CRMGATE_OUTBOX_LEASE=20s"},
			[]string{"CRMGATE_OUTBOX_LEASE: must exceed CRMGATE_DATAVERSE_TIMEOUT"}},
		{"outbox tuning", []string{"CRMGATE_OUTBOX_POLL_INTERVAL=1ms", "CRMGATE_OUTBOX_MAX_BACKOFF=100ms", "CRMGATE_OUTBOX_LEASE=0s"},
			[]string{"CRMGATE_OUTBOX_POLL_INTERVAL", "CRMGATE_OUTBOX_MAX_BACKOFF", "CRMGATE_OUTBOX_LEASE: must be at least 1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidate(t, tt.env, tt.want) })
	}
}

// checkValidate loads validEnv plus env and checks Validate: no error when
// want is empty, else an error containing every string of want, and never
// the client secret's value.
func checkValidate(t *testing.T, env, want []string) {
	t.Helper()
	cfg, err := Load(append(validEnv(t), env...))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("valid configuration rejected: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "s3cr3t-value") {
		t.Errorf("client secret echoed in validation errors: %v", err)
	}
}
