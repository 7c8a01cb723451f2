package odata

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

func wantError(t *testing.T, err error, msg string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *Error %q", err, err, msg)
	}
	if e.Status != 400 || e.Code != "0x0" || e.Message != msg {
		t.Errorf("got  %d %s %q\nwant 400 0x0 %q", e.Status, e.Code, e.Message, msg)
	}
}

func TestParseSelect(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
		err       string
	}{
		{"columns", "fullname,emailaddress1", []string{"fullname", "emailaddress1"}, ""},
		{"spaces and duplicates", " fullname , lastname,fullname", []string{"fullname", "lastname"}, ""},
		{"lookup value", "_parentcustomerid_value", []string{"_parentcustomerid_value"}, ""},
		{"empty means all", "", nil, ""},
		{"star means all", "*", nil, ""},
		{"unknown", "fullname,Name", nil, "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"navigation is not a column", "parentcustomerid_account", nil,
			"Could not find a property named 'parentcustomerid_account' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"empty item", "fullname,", nil, "Term '' is not valid in a $select or $expand expression."},
		{"bad name", "full-name", nil, "Term 'full-name' is not valid in a $select or $expand expression."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSelect(tt.src, contact)
			if tt.err != "" {
				wantError(t, err, tt.err)
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParseSelect(%q) = %v, %v; want %v", tt.src, got, err, tt.want)
			}
		})
	}
}

func TestParseOrderBy(t *testing.T) {
	tests := []struct {
		name, src string
		want      OrderBy
		err       string
	}{
		{"default ascending", "lastname", OrderBy{{Column: "lastname"}}, ""},
		{"directions", "creditlimit asc,lastname desc", OrderBy{{Column: "creditlimit"}, {Column: "lastname", Desc: true}}, ""},
		{"extra spaces", " lastname   desc , statecode ", OrderBy{{Column: "lastname", Desc: true}, {Column: "statecode"}}, ""},
		{"empty", "", nil, ""},
		{"unknown", "revenue desc", nil, "Could not find a property named 'revenue' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"bad direction", "lastname up", nil, "Syntax error at position 11 in 'lastname up'."},
		{"upper-case direction", "lastname DESC", nil, "Syntax error at position 13 in 'lastname DESC'."},
		{"empty item", "lastname,", nil, "Syntax error at position 9 in 'lastname,'."},
		{"alias", "@p1", nil, "The parameter alias '@p1' is not supported by the emulator."},
		{"related column", "parentcustomerid_account/name", nil,
			"Ordering by a related table's column ('parentcustomerid_account/name') is not supported by the emulator."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOrderBy(tt.src, contact)
			if tt.err != "" {
				wantError(t, err, tt.err)
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseOrderBy(%q) = %v, %v; want %v", tt.src, got, err, tt.want)
			}
		})
	}
}

func TestOrderBySort(t *testing.T) {
	tests := []struct {
		name, orderby string
		want          []string
	}{
		{"string ignores case", "lastname", []string{"carl", "ann", "bob", "zed"}},
		{"string desc", "lastname desc", []string{"zed", "bob", "ann", "carl"}},
		{"nulls first ascending", "firstname", []string{"zed", "ann", "bob", "carl"}},
		{"nulls last descending", "firstname desc", []string{"carl", "bob", "ann", "zed"}},
		{"number", "creditlimit", []string{"zed", "carl", "bob", "ann"}},
		{"choice by value, ties keep input order", "statecode", []string{"ann", "carl", "bob", "zed"}},
		{"second key", "statecode desc,lastname", []string{"zed", "bob", "carl", "ann"}},
		{"datetime", "modifiedon desc", []string{"ann", "bob", "carl", "zed"}},
		{"bool", "donotemail", []string{"carl", "zed", "ann", "bob"}},
		{"guid", "contactid desc", []string{"zed", "carl", "bob", "ann"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOrderBy(tt.orderby, contact)
			if err != nil {
				t.Fatal(err)
			}
			rs := rows()
			o.Sort(rs, contact)
			var got []string
			for _, r := range rs {
				got = append(got, r["fullname"].(string))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.orderby, got, tt.want)
			}
		})
	}
}

func TestSortWrongGoTypeSortsAsNull(t *testing.T) {
	rs := []Row{{"n": 2.0, "id": "a"}, {"n": "x", "id": "b"}, {"n": 1.0, "id": "c"}, {"id": "d"}}
	typ := &EntityType{Columns: map[string]Kind{"n": KindInt}}
	OrderBy{{Column: "n"}}.Sort(rs, typ)
	var got []string
	for _, r := range rs {
		got = append(got, r["id"].(string))
	}
	if want := []string{"b", "d", "c", "a"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseExpand(t *testing.T) {
	tests := []struct {
		name, src string
		want      []Expand
		err       string
	}{
		{"plain", "parentcustomerid_account", []Expand{{Nav: "parentcustomerid_account"}}, ""},
		{"select", "parentcustomerid_account($select=name,accountid)",
			[]Expand{{Nav: "parentcustomerid_account", Select: []string{"name", "accountid"}}}, ""},
		{"ref and several", "a($select=x,y),b/$ref,c($select=z;$filter=name eq 'a;b)';$orderby=name desc;$top=5)",
			[]Expand{{Nav: "a", Select: []string{"x", "y"}}, {Nav: "b", Ref: true},
				{Nav: "c", Select: []string{"z"}, Filter: "name eq 'a;b)'", OrderBy: "name desc", Top: 5}}, ""},
		{"JSON array in filter", `c($filter=Microsoft.Dynamics.CRM.In(PropertyName='n',PropertyValues=["a,b","c\")"]))`,
			[]Expand{{Nav: "c", Filter: `Microsoft.Dynamics.CRM.In(PropertyName='n',PropertyValues=["a,b","c\")"])`}}, ""},
		{"empty", "", nil, ""},
		{"nested expand", "a($expand=b)", nil, "A nested $expand is not supported by the emulator."},
		{"other option", "a($count=true)", nil, "The query option '$count' inside $expand is not supported by the emulator."},
		{"top zero", "a($top=0)", nil, "Invalid value '0' for $top in $expand of 'a'."},
		{"top not a number", "a($top=x)", nil, "Invalid value 'x' for $top in $expand of 'a'."},
		{"unbalanced", "a($select=x", nil, "Term 'a($select=x' is not valid in a $select or $expand expression."},
		{"unterminated quote", "a($filter=n eq 'x)", nil, "Term 'a($filter=n eq 'x)' is not valid in a $select or $expand expression."},
		{"empty item", "a,,b", nil, "Term '' is not valid in a $select or $expand expression."},
		{"empty options", "a()", nil, "Term 'a()' is not valid in a $select or $expand expression."},
		{"duplicate option", "a($top=1;$top=2)", nil, "Term 'a($top=1;$top=2)' is not valid in a $select or $expand expression."},
		{"ref with options", "a/$ref($top=1)", nil, "Term 'a/$ref($top=1)' is not valid in a $select or $expand expression."},
		{"bad select name", "a($select=x y)", nil, "Term 'x y' is not valid in a $select or $expand expression."},
		{"text after options", "a($top=1)x", nil, "Term 'a($top=1)x' is not valid in a $select or $expand expression."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseExpand(tt.src)
			if tt.err != "" {
				wantError(t, err, tt.err)
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseExpand(%q) = %+v, %v\nwant %+v", tt.src, got, err, tt.want)
			}
		})
	}
}

func TestProject(t *testing.T) {
	r := Row{"contactid": "id", "fullname": "Ann", "lastname": "B", "@odata.etag": `W/"1"`,
		"_parentcustomerid_value": "p", "_parentcustomerid_value@OData.Community.Display.V1.FormattedValue": "Contoso",
		"lastname@OData.Community.Display.V1.FormattedValue": "B"}
	tests := []struct {
		name string
		cols []string
		want Row
	}{
		{"all", nil, r},
		{"columns, key and annotations", []string{"fullname", "_parentcustomerid_value"}, Row{
			"contactid": "id", "fullname": "Ann", "@odata.etag": `W/"1"`, "_parentcustomerid_value": "p",
			"_parentcustomerid_value@OData.Community.Display.V1.FormattedValue": "Contoso"}},
		{"missing column is null", []string{"emailaddress1"}, Row{"contactid": "id", "emailaddress1": nil, "@odata.etag": `W/"1"`}},
		{"empty list keeps the key", []string{}, Row{"contactid": "id", "@odata.etag": `W/"1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Project(r, tt.cols, contact)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
			got["new"] = 1
			if _, ok := r["new"]; ok {
				t.Error("Project returned the input row, not a copy")
			}
		})
	}
	if got := Project(Row{"a": 1}, []string{"a"}, nil); !reflect.DeepEqual(got, Row{"a": 1}) {
		t.Errorf("nil type: got %v", got)
	}
}
