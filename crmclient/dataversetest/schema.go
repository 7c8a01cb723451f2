package dataversetest

import (
	"github.com/crmgate/crmgate/crmclient/dataversetest/odata"
)

// column describes one column of an emulated table in the order the
// emulator writes it when no $select is given.
type column struct {
	name string
	kind odata.Kind
	// readOnly columns are computed by the emulator (fullname, createdon,
	// modifiedon) and ignored when a client writes them.
	readOnly bool
}

// lookup describes a single-valued navigation property that writes the
// lookup column `_<name>_value`. A Customer lookup such as parentcustomerid
// has one lookup per target (parentcustomerid_account, parentcustomerid_contact).
type lookup struct {
	nav     string // navigation property used in "<nav>@odata.bind"
	column  string // _<logical>_value
	logical string // the lookup attribute's logical name (parentcustomerid)
	target  string // target entity logical name
}

// relationship is an N:N relationship; the navigation property has the
// relationship's schema name on both sides
// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact).
type relationship struct {
	name    string
	entity1 string // logical names
	entity2 string
}

// oneToMany is a collection-valued navigation property backed by a lookup
// on the related table (contact → adx_externalidentity).
type oneToMany struct {
	nav          string
	target       string
	lookupColumn string // column on target pointing back
}

// table is the emulator's description of one table.
type table struct {
	typ         *odata.EntityType
	columns     []column
	primaryName string
	lookups     []lookup
	// choices holds the labels for formatted values of choice columns.
	choices map[string]map[int]string
	// defaults are applied on create for columns the client did not send.
	defaults  map[string]any
	oneToMany []oneToMany
}

var (
	stateLabels  = map[int]string{0: "Active", 1: "Inactive"}
	statusLabels = map[int]string{1: "Active", 2: "Inactive"}
)

// builtinTables returns a fresh copy of the emulated schema: contact,
// account, adx_webrole, adx_invitation, adx_externalidentity and (for the
// enhanced data model) powerpagecomponent, with the columns listed in
// their table references (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact
// and sibling pages; adx_webrole: https://github.com/MicrosoftDocs/dynamics-365-customer-engagement/blob/main/ce/field-service/entities/adx_webrole.md).
func builtinTables() map[string]*table {
	contact := &table{
		primaryName: "fullname",
		columns: []column{
			{name: "contactid", kind: odata.KindGuid},
			{name: "fullname", kind: odata.KindString, readOnly: true},
			{name: "firstname", kind: odata.KindString},
			{name: "lastname", kind: odata.KindString},
			{name: "emailaddress1", kind: odata.KindString},
			{name: "telephone1", kind: odata.KindString},
			{name: "mobilephone", kind: odata.KindString},
			{name: "jobtitle", kind: odata.KindString},
			{name: "nickname", kind: odata.KindString},
			{name: "description", kind: odata.KindString}, // a memo: up to 1,048,576 characters
			{name: "address1_line1", kind: odata.KindString},
			{name: "address1_line2", kind: odata.KindString},
			{name: "address1_line3", kind: odata.KindString},
			{name: "address1_city", kind: odata.KindString},
			{name: "_parentcustomerid_value", kind: odata.KindLookup},
			{name: "statecode", kind: odata.KindChoice},
			{name: "statuscode", kind: odata.KindChoice},
			{name: "adx_identity_username", kind: odata.KindString},
			{name: "adx_identity_passwordhash", kind: odata.KindString},
			{name: "adx_identity_securitystamp", kind: odata.KindString},
			{name: "adx_identity_emailaddress1confirmed", kind: odata.KindBool},
			{name: "adx_identity_mobilephoneconfirmed", kind: odata.KindBool},
			{name: "adx_identity_lockoutenabled", kind: odata.KindBool},
			{name: "adx_identity_lockoutenddate", kind: odata.KindDateTime},
			{name: "adx_identity_accessfailedcount", kind: odata.KindInt},
			{name: "adx_identity_logonenabled", kind: odata.KindBool},
			{name: "adx_identity_twofactorenabled", kind: odata.KindBool},
			{name: "adx_identity_lastsuccessfullogin", kind: odata.KindDateTime},
			{name: "adx_identity_locallogindisabled", kind: odata.KindBool},
			{name: "adx_identity_newpassword", kind: odata.KindString},
			{name: "adx_confirmremovepassword", kind: odata.KindBool},
			{name: "adx_profilealert", kind: odata.KindBool},
			{name: "adx_profilealertdate", kind: odata.KindDateTime},
			{name: "adx_profilemodifiedon", kind: odata.KindDateTime},
			{name: "adx_preferredlcid", kind: odata.KindInt},
			{name: "adx_organizationname", kind: odata.KindString},
			{name: "adx_timezone", kind: odata.KindInt},
			// A custom column as an organisation would add one (publisher
			// prefix new_; Dataverse has no standard "must change password"
			// column): a Yes/No that CRMGATE_PASSWORD_CHANGE_COLUMN may name.
			// https://learn.microsoft.com/power-apps/maker/data-platform/create-edit-column-portal
			{name: "new_mustchangepassword", kind: odata.KindBool},
			{name: "createdon", kind: odata.KindDateTime, readOnly: true},
			{name: "modifiedon", kind: odata.KindDateTime, readOnly: true},
		},
		lookups: []lookup{
			{nav: "parentcustomerid_account", column: "_parentcustomerid_value", logical: "parentcustomerid", target: "account"},
			{nav: "parentcustomerid_contact", column: "_parentcustomerid_value", logical: "parentcustomerid", target: "contact"},
		},
		choices: map[string]map[int]string{"statecode": stateLabels, "statuscode": statusLabels},
		defaults: map[string]any{
			"statecode": float64(0), "statuscode": float64(1),
			// "Boolean (default false)": https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact
			"adx_identity_emailaddress1confirmed": false,
		},
		oneToMany: []oneToMany{
			// Relationship adx_contact_externalidentity:
			// https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/adx_externalidentity
			{nav: "adx_contact_externalidentity", target: "adx_externalidentity", lookupColumn: "_adx_contactid_value"},
		},
	}
	account := &table{
		primaryName: "name",
		columns: []column{
			{name: "accountid", kind: odata.KindGuid},
			{name: "name", kind: odata.KindString},
			{name: "emailaddress1", kind: odata.KindString},
			{name: "telephone1", kind: odata.KindString},
			{name: "_primarycontactid_value", kind: odata.KindLookup},
			{name: "statecode", kind: odata.KindChoice},
			{name: "statuscode", kind: odata.KindChoice},
			{name: "createdon", kind: odata.KindDateTime, readOnly: true},
			{name: "modifiedon", kind: odata.KindDateTime, readOnly: true},
		},
		lookups: []lookup{
			{nav: "primarycontactid", column: "_primarycontactid_value", logical: "primarycontactid", target: "contact"},
		},
		choices:  map[string]map[int]string{"statecode": stateLabels, "statuscode": statusLabels},
		defaults: map[string]any{"statecode": float64(0), "statuscode": float64(1)},
	}
	webrole := &table{
		primaryName: "adx_name",
		columns: []column{
			{name: "adx_webroleid", kind: odata.KindGuid},
			{name: "adx_name", kind: odata.KindString},
			{name: "_adx_websiteid_value", kind: odata.KindLookup},
			{name: "adx_authenticatedusersrole", kind: odata.KindBool},
			{name: "adx_anonymoususersrole", kind: odata.KindBool},
			{name: "adx_key", kind: odata.KindString},
			{name: "statecode", kind: odata.KindChoice},
			{name: "statuscode", kind: odata.KindChoice},
			{name: "createdon", kind: odata.KindDateTime, readOnly: true},
			{name: "modifiedon", kind: odata.KindDateTime, readOnly: true},
		},
		lookups: []lookup{
			// Navigation name assumed equal to the logical name (not documented).
			{nav: "adx_websiteid", column: "_adx_websiteid_value", logical: "adx_websiteid", target: "adx_website"},
		},
		choices:  map[string]map[int]string{"statecode": stateLabels, "statuscode": statusLabels},
		defaults: map[string]any{"statecode": float64(0), "statuscode": float64(1)},
	}
	invitation := &table{
		primaryName: "adx_name",
		columns: []column{
			{name: "adx_invitationid", kind: odata.KindGuid},
			{name: "adx_name", kind: odata.KindString},
			{name: "adx_invitationcode", kind: odata.KindString},
			{name: "adx_type", kind: odata.KindChoice},
			{name: "adx_expirydate", kind: odata.KindDateTime},
			{name: "adx_maximumredemptions", kind: odata.KindInt},
			{name: "adx_redemptions", kind: odata.KindInt},
			{name: "_adx_invitecontact_value", kind: odata.KindLookup},
			{name: "_adx_invitercontact_value", kind: odata.KindLookup},
			{name: "_adx_assigntoaccount_value", kind: odata.KindLookup},
			{name: "_adx_redeemedcontact_value", kind: odata.KindLookup},
			{name: "_adx_redemptionworkflow_value", kind: odata.KindLookup},
			{name: "_mspp_websiteid_value", kind: odata.KindLookup},
			{name: "statecode", kind: odata.KindChoice},
			{name: "statuscode", kind: odata.KindChoice},
			{name: "createdon", kind: odata.KindDateTime, readOnly: true},
			{name: "modifiedon", kind: odata.KindDateTime, readOnly: true},
		},
		lookups: []lookup{
			// adx_inviteContact is inferred from the schema name in
			// https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/adx_invitation; the
			// other navigation names are not documented and use the logical name.
			{nav: "adx_inviteContact", column: "_adx_invitecontact_value", logical: "adx_invitecontact", target: "contact"},
			{nav: "adx_invitercontact", column: "_adx_invitercontact_value", logical: "adx_invitercontact", target: "contact"},
			{nav: "adx_assigntoaccount", column: "_adx_assigntoaccount_value", logical: "adx_assigntoaccount", target: "account"},
			{nav: "adx_redeemedcontact", column: "_adx_redeemedcontact_value", logical: "adx_redeemedcontact", target: "contact"},
			{nav: "adx_redemptionworkflow", column: "_adx_redemptionworkflow_value", logical: "adx_redemptionworkflow", target: "workflow"},
			{nav: "mspp_websiteid", column: "_mspp_websiteid_value", logical: "mspp_websiteid", target: "powerpagesite"},
		},
		choices: map[string]map[int]string{
			"adx_type":   {756150000: "Single", 756150001: "Group"},
			"statecode":  stateLabels,
			"statuscode": {1: "New", 756150000: "Sent", 756150001: "Redeemed", 2: "Inactive"},
		},
		defaults: map[string]any{"statecode": float64(0), "statuscode": float64(1)},
	}
	external := &table{
		primaryName: "adx_username",
		columns: []column{
			{name: "adx_externalidentityid", kind: odata.KindGuid},
			{name: "adx_username", kind: odata.KindString},
			{name: "adx_identityprovidername", kind: odata.KindString},
			{name: "_adx_contactid_value", kind: odata.KindLookup},
			{name: "statecode", kind: odata.KindChoice},
			{name: "statuscode", kind: odata.KindChoice},
			{name: "createdon", kind: odata.KindDateTime, readOnly: true},
			{name: "modifiedon", kind: odata.KindDateTime, readOnly: true},
		},
		lookups: []lookup{
			{nav: "adx_contactid", column: "_adx_contactid_value", logical: "adx_contactid", target: "contact"},
		},
		choices:  map[string]map[int]string{"statecode": stateLabels, "statuscode": statusLabels},
		defaults: map[string]any{"statecode": float64(0), "statuscode": float64(1)},
	}
	component := &table{
		primaryName: "name",
		columns: []column{
			{name: "powerpagecomponentid", kind: odata.KindGuid},
			{name: "name", kind: odata.KindString},
			{name: "content", kind: odata.KindString},
			{name: "powerpagecomponenttype", kind: odata.KindChoice},
			{name: "_powerpagesiteid_value", kind: odata.KindLookup},
			{name: "statecode", kind: odata.KindChoice},
			{name: "statuscode", kind: odata.KindChoice},
			{name: "createdon", kind: odata.KindDateTime, readOnly: true},
			{name: "modifiedon", kind: odata.KindDateTime, readOnly: true},
		},
		lookups: []lookup{
			{nav: "powerpagesiteid", column: "_powerpagesiteid_value", logical: "powerpagesiteid", target: "powerpagesite"},
		},
		choices: map[string]map[int]string{
			// https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/powerpagecomponent
			"powerpagecomponenttype": {1: "Publishing State", 2: "Web Page", 3: "Web File", 9: "Site Setting", 11: "Web Role", 12: "Website Access", 17: "List", 18: "Table Permission"},
			"statecode":              stateLabels,
			"statuscode":             statusLabels,
		},
		defaults: map[string]any{"statecode": float64(0), "statuscode": float64(1)},
	}

	tables := map[string]*table{}
	for logical, spec := range map[string]struct {
		t   *table
		set string
	}{
		"contact":              {contact, "contacts"},
		"account":              {account, "accounts"},
		"adx_webrole":          {webrole, "adx_webroles"},
		"adx_invitation":       {invitation, "adx_invitations"},
		"adx_externalidentity": {external, "adx_externalidentities"},
		"powerpagecomponent":   {component, "powerpagecomponents"},
	} {
		t := spec.t
		t.typ = &odata.EntityType{
			LogicalName: logical,
			EntitySet:   spec.set,
			PrimaryKey:  t.columns[0].name,
			Columns:     map[string]odata.Kind{},
			Navigation:  map[string]odata.Nav{},
		}
		for _, c := range t.columns {
			t.typ.Columns[c.name] = c.kind
		}
		tables[logical] = t
	}
	setOf := func(logical string) string {
		if t, ok := tables[logical]; ok {
			return t.typ.EntitySet
		}
		return logical + "s" // tables the emulator does not hold (adx_website, workflow, powerpagesite)
	}
	for _, t := range tables {
		for _, l := range t.lookups {
			t.typ.Navigation[l.nav] = odata.Nav{Target: setOf(l.target), LookupColumn: l.column}
		}
		for _, o := range t.oneToMany {
			t.typ.Navigation[o.nav] = odata.Nav{Target: setOf(o.target), Collection: true}
		}
	}
	for _, r := range relationships {
		tables[r.entity1].typ.Navigation[r.name] = odata.Nav{Target: setOf(r.entity2), Collection: true}
		tables[r.entity2].typ.Navigation[r.name] = odata.Nav{Target: setOf(r.entity1), Collection: true}
	}
	return tables
}

// relationships are the N:N relationships of contact
// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact) and
// adx_invitation (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/adx_invitation).
var relationships = []relationship{
	{name: "adx_webrole_contact", entity1: "contact", entity2: "adx_webrole"},
	{name: "powerpagecomponent_mspp_webrole_contact", entity1: "contact", entity2: "powerpagecomponent"},
	{name: "adx_invitation_invitecontacts", entity1: "adx_invitation", entity2: "contact"},
	{name: "adx_invitation_redeemedcontacts", entity1: "adx_invitation", entity2: "contact"},
	{name: "adx_invitation_webrole", entity1: "adx_invitation", entity2: "adx_webrole"},
	{name: "adx_invitation_mspp_webrole_powerpagecomponent", entity1: "adx_invitation", entity2: "powerpagecomponent"},
}

func relationshipByName(name string) (relationship, bool) {
	for _, r := range relationships {
		if r.name == name {
			return r, true
		}
	}
	return relationship{}, false
}

func (t *table) column(name string) (column, bool) {
	for _, c := range t.columns {
		if c.name == name {
			return c, true
		}
	}
	return column{}, false
}

func (t *table) lookupByNav(nav string) (lookup, bool) {
	for _, l := range t.lookups {
		if l.nav == nav {
			return l, true
		}
	}
	return lookup{}, false
}

func (t *table) oneToManyByNav(nav string) (oneToMany, bool) {
	for _, o := range t.oneToMany {
		if o.nav == nav {
			return o, true
		}
	}
	return oneToMany{}, false
}
