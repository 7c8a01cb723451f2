package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/registration"
)

const (
	regSMTP = "CRMGATE_SMTP_URL=smtp://localhost:25?tls=none"
	regFrom = "CRMGATE_SMTP_FROM=noreply@example.com"
	regDV   = "CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com"
)

// TestRegistrationSettings shows the registration block: the defaults
// (off, confirmation required, 24 h), accepted settings, and every bad
// value reported under its name.
func TestRegistrationSettings(t *testing.T) {
	cfg, err := Load(validEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Registration
	if r.RegistrationMode() != registration.ModeOff || !r.ConfirmEmail || r.ConfirmTTL != 24*time.Hour || r.CreateContact {
		t.Fatalf("defaults = %+v", r)
	}
	for _, env := range [][]string{
		{"CRMGATE_REGISTRATION_MODE=open", regSMTP, regFrom},
		{"CRMGATE_REGISTRATION_MODE=approval", regSMTP, regFrom, "CRMGATE_REGISTRATION_FIELDS=telephone1:Phone, jobtitle : Job title"},
		{"CRMGATE_REGISTRATION_MODE=open", "CRMGATE_REGISTRATION_CONFIRM_EMAIL=false"},
		{"CRMGATE_REGISTRATION_MODE=invitation"},
	} {
		cfg, err := Load(append(validEnv(t), env...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
	cfg, _ = Load(append(validEnv(t), "CRMGATE_REGISTRATION_FIELDS=telephone1:Phone,jobtitle"))
	fields, err := cfg.Registration.RegistrationFields()
	if want := []registration.Field{{Column: "telephone1", Label: "Phone"}, {Column: "jobtitle", Label: "jobtitle"}}; err != nil || !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %v, %v", fields, err)
	}

	for _, tc := range []struct {
		env  []string
		name string
	}{
		{[]string{"CRMGATE_REGISTRATION_MODE=public"}, "CRMGATE_REGISTRATION_MODE"},
		{[]string{"CRMGATE_REGISTRATION_MODE=open", "CRMGATE_REGISTRATION_CONFIRM_EMAIL=false", "CRMGATE_BINDING_AUTO_MAP_EMAIL=true", regDV}, "CRMGATE_REGISTRATION_CONFIRM_EMAIL"},
		{[]string{"CRMGATE_REGISTRATION_MODE=open"}, "CRMGATE_REGISTRATION_CONFIRM_EMAIL"},
		{[]string{"CRMGATE_REGISTRATION_MODE=open", regSMTP, regFrom, "CRMGATE_REGISTRATION_CREATE_CONTACT=true"}, "CRMGATE_REGISTRATION_CREATE_CONTACT"},
		{[]string{"CRMGATE_REGISTRATION_CONFIRM_TTL=1m"}, "CRMGATE_REGISTRATION_CONFIRM_TTL"},
		{[]string{"CRMGATE_REGISTRATION_CONFIRM_TTL=200h"}, "CRMGATE_REGISTRATION_CONFIRM_TTL"},
		{[]string{"CRMGATE_REGISTRATION_CLIENT_RATE=0"}, "CRMGATE_REGISTRATION_CLIENT_RATE"},
		{[]string{"CRMGATE_REGISTRATION_EMAIL_RATE=0"}, "CRMGATE_REGISTRATION_EMAIL_RATE"},
		{[]string{"CRMGATE_REGISTRATION_FIELDS=adx_identity_passwordhash:Hash"}, "CRMGATE_REGISTRATION_FIELDS"},
		{[]string{"CRMGATE_REGISTRATION_FIELDS=parentcustomerid_account@odata.bind:Company"}, "CRMGATE_REGISTRATION_FIELDS"},
		{[]string{"CRMGATE_REGISTRATION_FIELDS=emailaddress1:Email"}, "CRMGATE_REGISTRATION_FIELDS"},
		{[]string{"CRMGATE_REGISTRATION_FIELDS=telephone1:A,telephone1:B"}, "CRMGATE_REGISTRATION_FIELDS"},
		{[]string{"CRMGATE_REGISTRATION_FIELDS=telephone1:<b>Phone</b>"}, "CRMGATE_REGISTRATION_FIELDS"},
		{[]string{"CRMGATE_REGISTRATION_FIELDS=a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11"}, "CRMGATE_REGISTRATION_FIELDS"},
	} {
		cfg, err := Load(append(validEnv(t), tc.env...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%q: Validate = %v, want a problem with %s", tc.env, err, tc.name)
		}
	}
	// With Dataverse, contact creation is accepted.
	cfg, _ = Load(append(validEnv(t), "CRMGATE_REGISTRATION_MODE=open", regSMTP, regFrom, "CRMGATE_REGISTRATION_CREATE_CONTACT=true", regDV,
		"CRMGATE_DATAVERSE_TENANT_ID=t", "CRMGATE_DATAVERSE_CLIENT_ID=c", "CRMGATE_DATAVERSE_CLIENT_SECRET=s"))
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "REGISTRATION") {
		t.Errorf("create contact with Dataverse: %v", err)
	}
}
