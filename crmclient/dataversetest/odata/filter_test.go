package odata

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

var contact = &EntityType{
	LogicalName: "contact",
	EntitySet:   "contacts",
	PrimaryKey:  "contactid",
	Columns: map[string]Kind{
		"contactid":               KindGuid,
		"firstname":               KindString,
		"lastname":                KindString,
		"fullname":                KindString,
		"emailaddress1":           KindString,
		"numberofchildren":        KindInt,
		"creditlimit":             KindDecimal,
		"donotemail":              KindBool,
		"modifiedon":              KindDateTime,
		"_parentcustomerid_value": KindLookup,
		"statecode":               KindChoice,
	},
	Navigation: map[string]Nav{
		"parentcustomerid_account":  {Target: "accounts", LookupColumn: "_parentcustomerid_value"},
		"contact_customer_accounts": {Target: "accounts", Collection: true},
	},
}

const parentID = "9f3162f6-804a-e611-80d1-00155d4333fa"

// rows are the sample contacts; "fullname" names each one in the tests.
func rows() []Row {
	return []Row{
		{"contactid": "00000000-0000-0000-0000-000000000001", "fullname": "ann", "firstname": "Ann", "lastname": "O'Bryan",
			"emailaddress1": "ann@example.com", "numberofchildren": 2.0, "creditlimit": 1500.5, "donotemail": false,
			"modifiedon": "2024-03-01T10:00:00Z", "_parentcustomerid_value": parentID, "statecode": 0.0},
		{"contactid": "00000000-0000-0000-0000-000000000002", "fullname": "bob", "firstname": "bob", "lastname": "Smith",
			"emailaddress1": nil, "numberofchildren": 0.0, "creditlimit": 0.0, "donotemail": true,
			"modifiedon": "2023-12-31T23:59:59Z", "_parentcustomerid_value": nil, "statecode": 1.0},
		{"contactid": "00000000-0000-0000-0000-000000000003", "fullname": "carl", "firstname": "Carl", "lastname": "carl",
			"emailaddress1": "carl_50%@x.org", "numberofchildren": nil, "creditlimit": -3.25, "donotemail": nil,
			"modifiedon": nil, "_parentcustomerid_value": "11111111-2222-3333-4444-555555555555", "statecode": 0.0},
		{"contactid": "00000000-0000-0000-0000-000000000004", "fullname": "zed", "firstname": nil, "lastname": "Zed",
			"emailaddress1": "z@[x].com", "statecode": 2.0},
	}
}

func matching(t *testing.T, src string) []string {
	t.Helper()
	f, err := ParseFilter(src, contact)
	if err != nil {
		t.Fatalf("ParseFilter(%q): %v", src, err)
	}
	var names []string
	for _, r := range rows() {
		if f.Match(r) {
			names = append(names, r["fullname"].(string))
		}
	}
	return names
}

func TestFilterMatch(t *testing.T) {
	in := func(prop, values string) string {
		return "Microsoft.Dynamics.CRM.In(PropertyName='" + prop + "',PropertyValues=" + values + ")"
	}
	tests := []struct {
		name, filter string
		want         []string
	}{
		{"eq string", "firstname eq 'ann'", []string{"ann"}},
		{"eq ignores case", "firstname eq 'ANN'", []string{"ann"}},
		{"doubled quote", "lastname eq 'O''Bryan'", []string{"ann"}},
		{"ne excludes null", "firstname ne 'ann'", []string{"bob", "carl"}},
		{"eq null", "firstname eq null", []string{"zed"}},
		{"null on the left", "null eq firstname", []string{"zed"}},
		{"ne null", "firstname ne null", []string{"ann", "bob", "carl"}},
		{"gt string ignores case", "lastname gt 'p'", []string{"bob", "zed"}},
		{"gt int", "numberofchildren gt 0", []string{"ann"}},
		{"ge int", "numberofchildren ge 0", []string{"ann", "bob"}},
		{"lt int", "numberofchildren lt 2", []string{"bob"}},
		{"le int", "numberofchildren le 2", []string{"ann", "bob"}},
		{"negative decimal", "creditlimit lt -3", []string{"carl"}},
		{"decimal eq", "creditlimit eq 1500.5", []string{"ann"}},
		{"int literal vs decimal", "creditlimit ge 0", []string{"ann", "bob"}},
		{"exponent", "creditlimit gt 1.5e3", []string{"ann"}},
		{"bool eq", "donotemail eq true", []string{"bob"}},
		{"bool eq false", "donotemail eq false", []string{"ann"}},
		{"bare bool column", "donotemail", []string{"bob"}},
		{"not bool column skips null", "not donotemail", []string{"ann"}},
		{"double not", "not not donotemail", []string{"bob"}},
		{"true literal", "true", []string{"ann", "bob", "carl", "zed"}},
		{"datetime", "modifiedon ge 2024-01-01T00:00:00Z", []string{"ann"}},
		{"datetime with offset", "modifiedon lt 2024-01-01T01:00:00+01:00", []string{"bob"}},
		{"datetime fraction", "modifiedon eq 2024-03-01T10:00:00.000Z", []string{"ann"}},
		{"date only", "modifiedon ge 2024-01-01", []string{"ann"}},
		{"unquoted guid", "_parentcustomerid_value eq " + parentID, []string{"ann"}},
		{"upper-case guid", "_parentcustomerid_value eq " + strings.ToUpper(parentID), []string{"ann"}},
		{"quoted guid", "_parentcustomerid_value eq '" + parentID + "'", []string{"ann"}},
		{"guid ne", "_parentcustomerid_value ne " + parentID, []string{"carl"}},
		{"lookup eq null", "_parentcustomerid_value eq null", []string{"bob", "zed"}},
		{"primary key", "contactid eq 00000000-0000-0000-0000-000000000002", []string{"bob"}},
		{"choice", "statecode eq 1", []string{"bob"}},
		{"column to column", "firstname eq lastname", []string{"carl"}},
		{"column to column null", "emailaddress1 ne firstname", []string{"ann", "carl"}},
		{"contains", "contains(fullname,'ar')", []string{"carl"}},
		{"contains ignores case", "contains(lastname,'BRY')", []string{"ann"}},
		{"startswith", "startswith(lastname,'s')", []string{"bob"}},
		{"endswith", "endswith(lastname,'ZED')", []string{"zed"}},
		{"not contains skips null", "not contains(firstname,'a')", []string{"bob"}},
		{"spaces", "  contains( lastname , 'a' )  ", []string{"ann", "carl"}},
		{"wildcard percent", "contains(emailaddress1,'%')", []string{"ann", "carl", "zed"}},
		{"bracket escapes percent", "contains(emailaddress1,'[%]')", []string{"carl"}},
		{"underscore", "startswith(firstname,'_o')", []string{"bob"}},
		{"bracket escapes bracket", "contains(emailaddress1,'[[]x]')", []string{"zed"}},
		{"range", "startswith(lastname,'[a-m]')", []string{"carl"}},
		{"negated range", "startswith(lastname,'[^a-m]')", []string{"ann", "bob", "zed"}},
		{"trailing wildcard", "startswith(emailaddress1,'c%')", []string{"carl"}},
		{"middle wildcard", "endswith(emailaddress1,'@%.org')", []string{"carl"}},
		{"eq has no wildcards", "firstname eq 'a%'", nil},
		{"and binds tighter than or", "firstname eq 'bob' or firstname eq 'ann' and numberofchildren gt 5", []string{"bob"}},
		{"parentheses", "(firstname eq 'bob' or firstname eq 'ann') and numberofchildren gt 1", []string{"ann"}},
		{"not binds tighter than and", "not contains(lastname,'a') and statecode ne 2", []string{"bob"}},
		{"not over parentheses", "not (statecode eq 0)", []string{"bob", "zed"}},
		{"or with unknown is true", "donotemail eq true or statecode eq 0", []string{"ann", "bob", "carl"}},
		{"and with unknown is unknown", "not (donotemail eq false and statecode eq 0)", []string{"bob", "zed"}},
		{"bool compared to bool", "(statecode eq 0) eq true", []string{"ann", "carl"}},
		{"In strings", in("lastname", `["o'bryan","SMITH"]`), []string{"ann", "bob"}},
		{"In single-quoted", in("lastname", `['O''Bryan', 'zed']`), []string{"ann", "zed"}},
		{"In numbers", in("numberofchildren", `["0","2"]`), []string{"ann", "bob"}},
		{"In bare numbers", in("statecode", `[1, 2]`), []string{"bob", "zed"}},
		{"In guid", in("_parentcustomerid_value", `["`+strings.ToUpper(parentID)+`"]`), []string{"ann"}},
		{"NotIn", "Microsoft.Dynamics.CRM.NotIn(PropertyName='lastname',PropertyValues=[\"o'bryan\",\"smith\"])", []string{"carl", "zed"}},
		{"Between", "Microsoft.Dynamics.CRM.Between(PropertyName='numberofchildren',PropertyValues=[\"1\",\"5\"])", []string{"ann"}},
		{"Between inclusive", "Microsoft.Dynamics.CRM.Between(PropertyName='creditlimit',PropertyValues=[\"0\",\"1500.5\"])", []string{"ann", "bob"}},
		{"NotBetween", "Microsoft.Dynamics.CRM.NotBetween(PropertyName='numberofchildren',PropertyValues=[\"1\",\"5\"])", []string{"bob"}},
		{"Between dates", "Microsoft.Dynamics.CRM.Between(PropertyName='modifiedon',PropertyValues=[\"2023-01-01T00:00:00Z\",\"2024-01-01T00:00:00Z\"])", []string{"bob"}},
		{"In with and", in("statecode", `["0"]`) + " and contains(lastname,'bry')", []string{"ann"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matching(t, tt.filter); !slices.Equal(got, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

func TestFilterWrongGoTypeIsNull(t *testing.T) {
	f, err := ParseFilter("numberofchildren eq 1 or numberofchildren ne 1", contact)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Row{{"numberofchildren": "1"}, {"numberofchildren": true}, {}, nil} {
		if f.Match(r) {
			t.Errorf("Match(%v) = true, want false", r)
		}
	}
	if !f.Match(Row{"numberofchildren": 1}) {
		t.Error("an int value should be accepted as a number")
	}
}

func TestFilterErrors(t *testing.T) {
	deep := strings.Repeat("(", 100) + "statecode eq 0" + strings.Repeat(")", 100)
	tests := []struct{ name, filter, msg string }{
		{"unknown property", "name eq 'x'",
			"Could not find a property named 'name' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"property names are case sensitive", "FirstName eq 'x'",
			"Could not find a property named 'FirstName' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"unterminated literal from the docs", "lastname eq 'O'Bryan'",
			"There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."},
		{"unterminated literal", "lastname eq 'abc",
			"There is an unterminated literal at position 16 in 'lastname eq 'abc'."},
		{"unterminated literal counts UTF-16 units", "lastname eq '😀",
			"There is an unterminated literal at position 15 in 'lastname eq '😀'."},
		{"unterminated JSON string", `Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=["a)`,
			`There is an unterminated literal at position 69 in 'Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=["a)'.`},
		{"not before In", `not Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=["a"])`,
			"Not operator along with the Custom Named Condition operators is not allowed"},
		{"not around a group with Between", `not (statecode eq 0 and Microsoft.Dynamics.CRM.Between(PropertyName='statecode',PropertyValues=["0","1"]))`,
			"Not operator along with the Custom Named Condition operators is not allowed"},
		{"string vs number", "lastname eq 5",
			"A binary operator with incompatible types was detected. Found operand types 'Edm.String' and 'Edm.Int32' for operator kind 'Equal'."},
		{"number vs string", "numberofchildren gt 'x'",
			"A binary operator with incompatible types was detected. Found operand types 'Edm.Int32' and 'Edm.String' for operator kind 'GreaterThan'."},
		{"guid vs non-guid string", "_parentcustomerid_value eq 'abc'",
			"A binary operator with incompatible types was detected. Found operand types 'Edm.Guid' and 'Edm.String' for operator kind 'Equal'."},
		{"date vs string", "modifiedon ge '2024-01-01T00:00:00Z'",
			"A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind 'GreaterThanOrEqual'."},
		{"column vs column of another type", "firstname eq statecode",
			"A binary operator with incompatible types was detected. Found operand types 'Edm.String' and 'Edm.Int32' for operator kind 'Equal'."},
		{"and with a number", "donotemail and 5",
			"A binary operator with incompatible types was detected. Found operand types 'Edm.Boolean' and 'Edm.Int32' for operator kind 'And'."},
		{"not of a string", "not firstname eq 'a'",
			"A unary operator with an incompatible type was detected. Found operand type 'Edm.String' for operator kind 'Not'."},
		{"not a boolean", "firstname",
			"The $filter expression must evaluate to a single boolean value."},
		{"other query function", "Microsoft.Dynamics.CRM.LastXDays(PropertyName='modifiedon',PropertyValue=7)",
			"The query function 'Microsoft.Dynamics.CRM.LastXDays' is not supported by the emulator."},
		{"lambda", "contact_customer_accounts/any(a:a/name eq 'x')",
			"Lookup traversal and lambda operators (any, all) after 'contact_customer_accounts/' is not supported by the emulator."},
		{"lookup traversal", "parentcustomerid_account/name eq 'x'",
			"Lookup traversal and lambda operators (any, all) after 'parentcustomerid_account/' is not supported by the emulator."},
		{"unknown path", "foo/bar eq 1",
			"Could not find a property named 'foo' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"navigation property", "parentcustomerid_account eq null",
			"Filtering on the navigation property 'parentcustomerid_account' is not supported by the emulator."},
		{"other function", "tolower(firstname) eq 'a'",
			"The function 'tolower' is not supported by the emulator."},
		{"parameter alias", "firstname eq @p1",
			"The parameter alias '@p1' is not supported by the emulator."},
		{"contains on a number", "contains(statecode,'1')",
			"No function signature for the function with name 'contains' matches the specified arguments. The function signatures considered are: contains(Edm.String Nullable=true, Edm.String Nullable=true)."},
		{"contains with a column", "contains(firstname,lastname)",
			"A 'contains' whose second argument is not a string literal is not supported by the emulator."},
		{"too deep", deep,
			"The $filter expression is nested more than 64 levels deep; the emulator does not allow that."},
		{"too many nots", strings.Repeat("not ", 100) + "donotemail",
			"The $filter expression is nested more than 64 levels deep; the emulator does not allow that."},
		{"empty", "", "Expression expected at position 0 in ''."},
		{"missing operand", "firstname eq", "Expression expected at position 12 in 'firstname eq'."},
		{"missing close paren", "(firstname eq 'a'", "')' or operator expected at position 17 in '(firstname eq 'a''."},
		{"trailing word", "firstname eq 'a' xyz", "')' or operator expected at position 17 in 'firstname eq 'a' xyz'."},
		{"missing comma", "contains(firstname 'a')", "')' or ',' expected at position 19 in 'contains(firstname 'a')'."},
		{"syntax before binding", "name eq 'x' and (", "Expression expected at position 17 in 'name eq 'x' and ('."},
		{"invalid character", "firstname eq #", "Syntax error: character '#' is not valid at position 13 in 'firstname eq #'."},
		{"bad date", "modifiedon ge 2024-13-01T00:00:00Z",
			"Unrecognized 'Edm.DateTimeOffset' literal '2024-13-01T00:00:00Z' at '14' in 'modifiedon ge 2024-13-01T00:00:00Z'."},
		{"number glued to a word", "statecode eq 1abc", "Syntax error at position 14 in 'statecode eq 1abc'."},
		{"In without values", "Microsoft.Dynamics.CRM.In(PropertyName='lastname')",
			"The query function 'Microsoft.Dynamics.CRM.In' takes exactly the parameters PropertyName='<column>' and PropertyValues=[...]."},
		{"In with empty values", "Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=[])",
			"The query function 'Microsoft.Dynamics.CRM.In' needs at least one value in PropertyValues."},
		{"In unknown column", `Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=["a"])`,
			"Could not find a property named 'name' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"In bad number", `Microsoft.Dynamics.CRM.In(PropertyName='statecode',PropertyValues=["x"])`,
			"The value 'x' given to 'Microsoft.Dynamics.CRM.In' is not a valid 'Edm.Int32' for the property 'statecode'."},
		{"Between with three values", `Microsoft.Dynamics.CRM.Between(PropertyName='statecode',PropertyValues=["1","2","3"])`,
			"The query function 'Microsoft.Dynamics.CRM.Between' needs exactly two values in PropertyValues."},
		{"duplicate parameter", `Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyName='b')`,
			"The parameter 'PropertyName' of 'Microsoft.Dynamics.CRM.In' is given more than once."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFilter(tt.filter, contact)
			if err == nil {
				t.Fatalf("ParseFilter(%q) = %v, want an error", tt.filter, f)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.Status != http.StatusBadRequest || e.Code != "0x0" || e.Message != tt.msg {
				t.Errorf("got  %d %s %q\nwant 400 0x0 %q", e.Status, e.Code, e.Message, tt.msg)
			}
		})
	}
}

func TestFilterDepthLimit(t *testing.T) {
	ok := strings.Repeat("(", 64) + "statecode eq 0" + strings.Repeat(")", 64)
	if _, err := ParseFilter(ok, contact); err != nil {
		t.Fatalf("64 levels: %v", err)
	}
	if _, err := ParseFilter("("+ok+")", contact); err == nil {
		t.Fatal("65 levels: no error")
	}
}

func TestFilterLong(t *testing.T) {
	// A 32 KB filter of or-ed conditions parses and evaluates.
	var b strings.Builder
	b.WriteString("statecode eq 2")
	for b.Len() < 32<<10 {
		b.WriteString(" or lastname eq 'x'")
	}
	if got := matching(t, b.String()); !slices.Equal(got, []string{"zed"}) {
		t.Errorf("got %v", got)
	}
}

func TestFilterNilEntityType(t *testing.T) {
	_, err := ParseFilter("a eq 1", nil)
	var e *Error
	if !errors.As(err, &e) || e.Message != "Could not find a property named 'a' on type 'Microsoft.Dynamics.CRM.'." {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"firstname eq 'ann'", "lastname eq 'O''Bryan'", "not contains(firstname,'a%[^b-c]_')",
		"(statecode eq 0 or donotemail) and modifiedon ge 2024-01-01T00:00:00Z",
		"_parentcustomerid_value eq " + parentID, "creditlimit lt -3.5e2 and numberofchildren ne null",
		`Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=["a","b\"c"])`,
		`Microsoft.Dynamics.CRM.Between(PropertyName='modifiedon',PropertyValues=['2023-01-01','2024-01-01T00:00Z'])`,
		"firstname eq lastname", "lastname eq 'O'Bryan'", "a/any(x:x/b eq 1)", "@p1", "not not not true",
	} {
		f.Add(s)
	}
	samples := append(rows(), Row{}, nil, Row{"firstname": 5.0, "statecode": "x", "modifiedon": "nope", "donotemail": "y"})
	f.Fuzz(func(t *testing.T, src string) {
		flt, err := ParseFilter(src, contact)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Message == "" {
				t.Fatalf("ParseFilter(%q): bad error %#v", src, err)
			}
			return
		}
		for _, r := range samples {
			flt.Match(r)
		}
	})
}
