package policies

import (
	"slices"
	"strings"
	"testing"
)

func TestConsoleContacts(t *testing.T) {
	p := mustParse(t, dvRoutes+`console:
  contacts:
    filter: adx_organizationname eq 'Acme' and statecode eq 0
    company_column: adx_organizationname
    columns: [jobtitle, telephone1]
`)
	cc := p.Console.Contacts
	if cc.Filter.Text != "adx_organizationname eq 'Acme' and statecode eq 0" || cc.Filter.Line != 7 ||
		cc.CompanyColumn != "adx_organizationname" || cc.CompanyLine != 8 ||
		!slices.Equal(cc.Columns, []string{"jobtitle", "telephone1"}) || cc.ColumnsLine != 9 {
		t.Errorf("console.contacts = %+v", cc)
	}
	if p := mustParse(t, dvRoutes); p.Console.Contacts.Filter.Text != "" || p.Console.Contacts.Columns != nil {
		t.Errorf("no section: %+v", p.Console)
	}
}

func TestConsoleContactsErrors(t *testing.T) {
	_, err := Parse("policy.yaml", []byte(dvRoutes+`console:
  contacts:
    filter: ""
    company_column: "a b"
    columns: [jobtitle, adx_identity_passwordhash, [x]]
    sort: fullname
  other: 1
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{
		"policy.yaml:7: console.contacts.filter: must not be empty",
		"policy.yaml:8: console.contacts.company_column:",
		"policy.yaml:9: console.contacts.columns[1]:",
		"policy.yaml:9: console.contacts.columns[2]: must be a string",
		"policy.yaml:10: console.contacts.sort: unknown field",
		"policy.yaml:11: console.other: unknown field",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}
