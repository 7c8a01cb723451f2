package policies

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/dataverse"
)

const contactPolicy = `
routes:
  - {name: bound, paths: [/bound], access: bound}
  - {name: bound-roles, paths: [/bound-roles], access: bound, roles: [Partners]}
  - name: partner-account
    paths: [/partner]
    access: bound
    condition: 'contact.columns.parentcustomerid == "acc-1" && "Partners" in user.roles'
  - name: lookup-value
    paths: [/lookup]
    access: authenticated
    condition: 'has(contact.columns._parentcustomerid_value) && contact.columns["_parentcustomerid_value"] == "acc-1"'
  - name: column-unbound
    paths: [/column]
    access: authenticated
    condition: 'contact.columns.parentcustomerid == "acc-1"'
  - name: has-guard
    paths: [/guard]
    access: authenticated
    condition: '!user.bound || (has(contact.columns.emailaddress1) && contact.columns.emailaddress1.endsWith("@partner.example"))'
  - name: identity
    paths: [/identity]
    access: authenticated
    condition: 'user.bound && contact.id == "c1" && contact.logicalname == "contact" && contact.name == "Ann A" && contact.columns.size() == 6'
  - name: unbound-identity
    paths: [/unbound]
    access: authenticated
    condition: '!user.bound && contact.id == "" && contact.name == "" && contact.logicalname == "" && contact.columns.size() == 0 && !("x" in contact.columns)'
  - name: types
    paths: [/types]
    access: bound
    condition: 'contact.columns.creditlimit > 1000.0 && contact.columns.donotemail == false && contact.columns.fax == null'
  - name: wrong-type
    paths: [/wrong-type]
    access: bound
    condition: 'contact.columns.creditlimit.startsWith("1")'
  - name: headers
    paths: [/headers]
    access: authenticated
    contact_columns: [fullname, emailaddress1, _parentcustomerid_value, new_tier2]
  - name: public-columns
    paths: [/public]
    access: public
    contact_columns: [fullname]
`

func boundSubject() *Subject {
	return &Subject{
		ID: "u1", Email: "ann@partner.example", Roles: []string{"Partners"},
		Contact: &dataverse.Contact{ID: "c1", LogicalName: "contact", Name: "Ann A", Columns: map[string]any{
			"parentcustomerid":        "acc-1",
			"_parentcustomerid_value": "acc-1",
			"emailaddress1":           "ann@partner.example",
			"creditlimit":             1500.0,
			"donotemail":              false,
			"fax":                     nil,
		}},
	}
}

func TestDecideContact(t *testing.T) {
	p := mustParse(t, contactPolicy)
	bound := boundSubject()
	unbound := &Subject{ID: "u2", Email: "bob@partner.example", Roles: []string{"Partners"}}
	otherAccount := boundSubject()
	otherAccount.Contact.Columns = map[string]any{"parentcustomerid": "acc-2", "_parentcustomerid_value": "acc-2"}
	noRole := boundSubject()
	noRole.Roles = nil
	noColumns := &Subject{ID: "u3", Contact: &dataverse.Contact{ID: "c3"}}
	otherEmail := boundSubject()
	otherEmail.Contact.Columns = map[string]any{"emailaddress1": "x@elsewhere.example"}
	req := RequestInfo{Method: "GET", Host: "app.example.com", Path: "/"}

	tests := []struct {
		name    string
		route   string
		subject *Subject
		want    Decision
		wantErr bool
	}{
		{"bound: anonymous signs in", "bound", nil, Unauthenticated, false},
		{"bound: unbound forbidden", "bound", unbound, Forbidden, false},
		{"bound: bound allowed", "bound", bound, Allow, false},
		{"bound: contact without columns allowed", "bound", noColumns, Allow, false},
		{"bound roles: anonymous", "bound-roles", nil, Unauthenticated, false},
		{"bound roles: unbound with role", "bound-roles", unbound, Forbidden, false},
		{"bound roles: bound without role", "bound-roles", noRole, Forbidden, false},
		{"bound roles: bound with role", "bound-roles", bound, Allow, false},
		{"column equality and role in roles", "partner-account", bound, Allow, false},
		{"column of another account", "partner-account", otherAccount, Forbidden, false},
		{"column ok, role missing", "partner-account", noRole, Forbidden, false},
		{"column: anonymous", "partner-account", nil, Unauthenticated, false},
		{"column: unbound on bound route", "partner-account", unbound, Forbidden, false},
		{"has and index on a lookup value", "lookup-value", bound, Allow, false},
		{"has false on unbound, no error", "lookup-value", unbound, Forbidden, false},
		{"has false on contact without columns", "lookup-value", noColumns, Forbidden, false},
		{"unbound column read fails closed", "column-unbound", unbound, Forbidden, true},
		{"missing column read fails closed", "column-unbound", noColumns, Forbidden, true},
		{"column read when bound", "column-unbound", bound, Allow, false},
		{"has guard: unbound passes its branch", "has-guard", unbound, Allow, false},
		{"has guard: bound, matching column", "has-guard", bound, Allow, false},
		{"has guard: bound, missing column", "has-guard", noColumns, Forbidden, false},
		{"has guard: bound, other column value", "has-guard", otherEmail, Forbidden, false},
		{"contact identity fields", "identity", bound, Allow, false},
		{"contact identity unbound", "identity", unbound, Forbidden, false},
		{"unbound contact is empty", "unbound-identity", unbound, Allow, false},
		{"bound contact is not empty", "unbound-identity", bound, Forbidden, false},
		{"number, bool and null columns", "types", bound, Allow, false},
		{"wrong column type fails closed", "wrong-type", bound, Forbidden, true},
		{"contact columns do not gate authenticated", "headers", unbound, Allow, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := routeNamed(t, p, tt.route)
			got, err := r.Check(tt.subject, req)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("Check = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if d := r.Decide(tt.subject, req); d != tt.want {
				t.Fatalf("Decide = %v, want %v", d, tt.want)
			}
			var ce *ConditionError
			if err != nil && (!errors.As(err, &ce) || ce.Route != tt.route) {
				t.Fatalf("error %v is not a *ConditionError for %s", err, tt.route)
			}
		})
	}

	t.Run("hand-built bound route", func(t *testing.T) {
		r := &Route{Name: "x", Access: AccessBound}
		if d := r.Decide(nil, req); d != Unauthenticated {
			t.Fatalf("anonymous: %v", d)
		}
		if d := r.Decide(unbound, req); d != Forbidden {
			t.Fatalf("unbound: %v", d)
		}
		if d := r.Decide(bound, req); d != Allow {
			t.Fatalf("bound: %v", d)
		}
	})

	t.Run("columns are not modified", func(t *testing.T) {
		s := boundSubject()
		routeNamed(t, p, "types").Decide(s, req)
		if len(s.Contact.Columns) != 6 || s.Contact.Columns["creditlimit"] != 1500.0 {
			t.Fatalf("columns changed: %v", s.Contact.Columns)
		}
		if len(noColumns.Contact.Columns) != 0 || noColumns.Contact.Columns != nil {
			t.Fatalf("nil columns changed: %v", noColumns.Contact.Columns)
		}
	})
}

func TestContactHeaders(t *testing.T) {
	p := mustParse(t, contactPolicy)
	r := routeNamed(t, p, "headers")
	want := []ContactHeader{
		{"fullname", "X-Current-User-Contact-Fullname"},
		{"emailaddress1", "X-Current-User-Contact-Emailaddress1"},
		{"_parentcustomerid_value", "X-Current-User-Contact-Parentcustomerid-Value"},
		{"new_tier2", "X-Current-User-Contact-New-Tier2"},
	}
	if !slices.Equal(r.ContactHeaders, want) {
		t.Fatalf("ContactHeaders = %v, want %v", r.ContactHeaders, want)
	}
	if got := strings.Join(r.ContactColumns, ","); got != "fullname,emailaddress1,_parentcustomerid_value,new_tier2" {
		t.Fatalf("ContactColumns = %s", got)
	}
	for _, h := range r.ContactHeaders {
		if c := http.CanonicalHeaderKey(h.Header); c != h.Header {
			t.Errorf("header %q is not canonical (%q)", h.Header, c)
		}
		if h.Header != ContactHeaderName(h.Column) {
			t.Errorf("header %q != ContactHeaderName(%q)", h.Header, h.Column)
		}
	}
	if cols := routeNamed(t, p, "bound").ContactColumns; cols != nil {
		t.Fatalf("default ContactColumns = %v, want none", cols)
	}
}

func TestContactHeaderName(t *testing.T) {
	tests := []struct{ column, want string }{
		{"fullname", "X-Current-User-Contact-Fullname"},
		{"_parentcustomerid_value", "X-Current-User-Contact-Parentcustomerid-Value"},
		{"adx_identity_username", "X-Current-User-Contact-Adx-Identity-Username"},
		{"a__b_", "X-Current-User-Contact-A-B"},
		{"x2", "X-Current-User-Contact-X2"},
		{"new_2x", "X-Current-User-Contact-New-2x"},
	}
	for _, tt := range tests {
		t.Run(tt.column, func(t *testing.T) {
			if got := ContactHeaderName(tt.column); got != tt.want {
				t.Fatalf("ContactHeaderName = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPolicyContactColumns(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"none", "routes:\n  - {name: r, paths: [/], access: authenticated, condition: 'contact.id != \"\"'}\n", nil},
		{"contact_columns union", contactPolicy, []string{
			"_parentcustomerid_value", "creditlimit", "donotemail", "emailaddress1", "fax", "fullname",
			"new_tier2", "parentcustomerid", "x", // "x" from `"x" in contact.columns`
		}},
		{"every literal form in conditions", `
routes:
  - name: r
    paths: [/]
    access: bound
    contact_columns: [zeta, alpha]
    condition: >-
      contact.columns.a1 == "x" || has(contact.columns.b2) || contact.columns["c3"] == 1.0 ||
      "d4" in contact.columns || contact.columns[user.id] == "dynamic" ||
      contact.columns.exists(k, k == "not-a-column")
  - name: s
    paths: [/s]
    access: public
    contact_columns: [alpha, beta]
`, []string{"a1", "alpha", "b2", "beta", "c3", "d4", "zeta"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.src).ContactColumns()
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ContactColumns = %q, want %q", got, tt.want)
			}
		})
	}
	var zero Policy
	if got := zero.ContactColumns(); got != nil {
		t.Fatalf("zero Policy ContactColumns = %v", got)
	}
}

func TestParseContactErrors(t *testing.T) {
	const head = "routes:\n  - name: r\n    paths: [/]\n    access: authenticated\n"
	tests := []struct {
		name, src string
		line      int
		want      string
	}{
		{"upper case column", head + "    contact_columns: [fullname, FullName]\n", 5, `routes[0].contact_columns[1]: must be a Dataverse column name (letters, digits and _ in lower case, not starting with a digit), got "FullName"`},
		{"dash in column", head + "    contact_columns:\n      - fullname\n      - full-name\n", 7, `contact_columns[1]: must be a Dataverse column name (letters, digits and _ in lower case, not starting with a digit), got "full-name"`},
		{"empty column", head + "    contact_columns: ['']\n", 5, "must be a Dataverse column name of 1 to 128 characters"},
		{"long column", head + "    contact_columns: [" + strings.Repeat("a", 129) + "]\n", 5, "must be a Dataverse column name of 1 to 128 characters"},
		{"underscores only", head + "    contact_columns: [__]\n", 5, "must be a Dataverse column name holding a letter or digit"},
		{"leading digit", head + "    contact_columns: [1st]\n", 5, `must be a Dataverse column name (letters, digits and _ in lower case, not starting with a digit), got "1st"`},
		{"duplicate column", head + "    contact_columns:\n      - fullname\n      - emailaddress1\n      - fullname\n", 8, `duplicate column "fullname" (first at line 6)`},
		{"duplicate header", head + "    contact_columns:\n      - new_tier\n      - _new_tier\n", 7, `columns "new_tier" (line 6) and "_new_tier" would both be sent as X-Current-User-Contact-New-Tier`},
		{"reserved id header", head + "    contact_columns: [_id]\n", 5, "reserved for the bound contact's id"},
		{"not a list", head + "    contact_columns: fullname\n", 5, "contact_columns: must be a list"},
		{"null item", head + "    contact_columns: [~]\n", 5, "contact_columns[0]: must be a string"},
		{"deny with columns", "routes:\n  - name: r\n    paths: [/]\n    access: deny\n    contact_columns: [fullname]\n", 5, "contact_columns cannot be used with access deny"},
		{"misspelt contact field", head + "    condition: 'contact.colums.x == \"a\"'\n", 5, "undefined field 'colums'"},
		{"misspelt user.bound", head + "    condition: 'user.bund'\n", 5, "undefined field 'bund'"},
		{"bad column in condition", head + "    condition: 'contact.columns.FullName == \"a\"'\n", 5, `contact column: must be a Dataverse column name (letters, digits and _ in lower case, not starting with a digit), got "FullName"`},
		{"bad indexed column in condition", head + "    condition: 'contact.columns[\"a b\"] == \"a\"'\n", 5, `contact column: must be a Dataverse column name (letters, digits and _ in lower case, not starting with a digit), got "a b"`},
		{"contact id is a string", head + "    condition: 'contact.id == 1'\n", 5, "no matching overload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(tt.src))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q at line %d, want line %d containing %q", err, pe.Line, tt.line, tt.want)
			}
		})
	}
}

func BenchmarkDecideContactCondition(b *testing.B) {
	p := mustParse(b, `
routes:
  - name: c
    paths: ["/**"]
    access: bound
    condition: 'contact.columns.parentcustomerid == "acc-1" && "Partners" in user.roles'
`)
	r := p.Routes[0]
	s := boundSubject()
	req := RequestInfo{Method: "GET", Host: "app.example.com", Path: "/x"}
	b.ReportAllocs()
	for b.Loop() {
		if r.Decide(s, req) != Allow {
			b.Fatal("not allowed")
		}
	}
}

// TestParseRefusesWhatTheClientRefuses: a column the Dataverse client would
// refuse at every bound sign-in (a credential column, an OData keyword) is
// refused when the policy is compiled, naming the line.
func TestParseRefusesWhatTheClientRefuses(t *testing.T) {
	head := "upstreams:\n  - name: app\n    url: http://127.0.0.1:1\nroutes:\n  - name: r\n    paths: [\"/**\"]\n    access: bound\n"
	for _, tt := range []struct{ name, route, want string }{
		{"secret column", "    contact_columns: [adx_identity_passwordhash]\n", "must not be adx_identity_passwordhash: that column holds a credential"},
		{"keyword column", "    contact_columns: [\"null\", eq]\n", `not the OData keyword "null"`},
		{"secret in a condition", "    condition: 'contact.columns.adx_identity_securitystamp == \"x\"'\n", "must not be adx_identity_securitystamp"},
		{"keyword in a condition", "    condition: 'contact.columns[\"and\"] == \"x\"'\n", `not the OData keyword "and"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(head+tt.route))
			if err == nil || !strings.Contains(err.Error(), "policy.yaml:8:") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: %v, want line 8 and %q", err, tt.want)
			}
		})
	}
}
