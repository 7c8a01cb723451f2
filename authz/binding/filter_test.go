package binding_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/dataverse"
)

func TestParseFilterTemplate(t *testing.T) {
	u := &authz.User{ID: "u1", Username: "ana", Email: "o'brien@example.com", FirstName: "Ana", LastName: "Lima"}
	good := []struct {
		in   string
		want []dataverse.Condition
	}{
		{"emailaddress1 eq {email}", []dataverse.Condition{{Column: "emailaddress1", Op: "eq", Value: "o'brien@example.com"}}},
		{"  firstname eq {first_name}\tand lastname ne {last_name}\n", []dataverse.Condition{
			{Column: "firstname", Op: "eq", Value: "Ana"}, {Column: "lastname", Op: "ne", Value: "Lima"}}},
		{"new_gatewayid eq {id} and adx_identity_username eq {username}", []dataverse.Condition{
			{Column: "new_gatewayid", Op: "eq", Value: "u1"}, {Column: "adx_identity_username", Op: "eq", Value: "ana"}}},
		{"adx_portalaccess eq true and new_blocked ne false and _parentcustomerid_value ne null", []dataverse.Condition{
			{Column: "adx_portalaccess", Op: "eq", Value: true}, {Column: "new_blocked", Op: "ne", Value: false},
			{Column: "_parentcustomerid_value", Op: "ne", Value: nil}}},
		{"new_tier eq -12 and new_code eq 'it''s or 1 eq 1'", []dataverse.Condition{
			{Column: "new_tier", Op: "eq", Value: int64(-12)}, {Column: "new_code", Op: "eq", Value: "it's or 1 eq 1"}}},
		{"new_city eq 'São Paulo'", []dataverse.Condition{{Column: "new_city", Op: "eq", Value: "São Paulo"}}},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			tmpl, err := binding.ParseFilterTemplate(tt.in)
			if err != nil {
				t.Fatalf("ParseFilterTemplate: %v", err)
			}
			got, err := tmpl.Conditions(u)
			if err != nil {
				t.Fatalf("Conditions: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Conditions = %#v\nwant %#v", got, tt.want)
			}
			if tmpl.String() != tt.in {
				t.Errorf("String() = %q", tmpl.String())
			}
		})
	}

	bad := []struct {
		name, in string
		pos      int
		msg      string
	}{
		{"empty", "", 1, "empty template"},
		{"blank", "   ", 4, "empty template"},
		{"or", "emailaddress1 eq {email} or firstname eq 'x'", 26, `only "and"`},
		{"function", "contains(emailaddress1,{email})", 9, "functions such as contains"},
		{"unknown field", "emailaddress1 eq {password}", 18, "unknown field {password}"},
		{"field with spaces", "emailaddress1 eq { email }", 18, "unknown field"},
		{"unterminated placeholder", "emailaddress1 eq {email", 18, "unterminated placeholder"},
		{"unterminated string", "new_code eq 'abc", 13, "unterminated string"},
		{"quote breakout", "new_code eq 'a' or 'b' eq 'b'", 17, `only "and"`},
		{"other operator", "new_tier gt 3", 10, "expected eq or ne"},
		{"missing value", "new_tier eq", 12, "expected a value"},
		{"missing operator", "new_tier", 9, "expected eq or ne"},
		{"trailing and", "new_tier eq 1 and", 18, "expected a column name"},
		{"keyword as column", "not eq 1", 1, "OData keyword"},
		{"value as column", "{email} eq emailaddress1", 1, "expected a column name"},
		{"parentheses", "(new_tier eq 1)", 1, `expected a column name, found character '('`},
		{"lambda", "adx_webrole_contact/any(r:r/adx_name eq 'x')", 20, `expected eq or ne, found character '/'`},
		{"guid literal", "_parentcustomerid_value eq 0f8fad5b-d9cb-469f-a165-70867728950e", 28, "only integer literals"},
		{"decimal", "new_score eq 1.5", 14, "only integer literals"},
		{"huge integer", "new_tier eq 99999999999999999999", 13, "out of range"},
		{"lone minus", "new_tier eq -", 13, "without digits"},
		{"semicolon", "new_tier eq 1; drop", 14, `expected "and" or the end, found character ';'`},
		{"control char", "new_code eq 'a\x00b'", 15, "control character"},
		{"uppercase AND", "new_tier eq 1 AND new_x eq 2", 15, `expected "and" or the end`},
		{"two values", "new_tier eq 1 2", 15, `expected "and" or the end`},
		{"too long", strings.Repeat("a", binding.MaxTemplateLen+1), 1, "longer than"},
		{"too many terms", strings.Repeat("a eq 1 and ", binding.MaxTemplateTerms) + "a eq 1", 1 + 11*binding.MaxTemplateTerms, "more than"},
		{"bad utf-8", "new_code eq '\xff'", 1, "UTF-8"},
		{"position counts characters", "new_city eq 'São' or x eq 1", 19, `only "and"`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := binding.ParseFilterTemplate(tt.in)
			var terr *binding.FilterTemplateError
			if !errors.As(err, &terr) {
				t.Fatalf("ParseFilterTemplate(%q) = %v, %v; want a *FilterTemplateError", tt.in, tmpl, err)
			}
			if terr.Pos != tt.pos || !strings.Contains(terr.Msg, tt.msg) {
				t.Errorf("error = %v; want position %d and %q", err, tt.pos, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "authz: filter template: position ") {
				t.Errorf("error text %q", err)
			}
		})
	}
}

func TestFilterTemplateEmptyField(t *testing.T) {
	tmpl := binding.MustParseFilterTemplate("firstname eq {first_name} and emailaddress1 eq {email}")
	_, err := tmpl.Conditions(&authz.User{Email: "ana@example.com"})
	if !errors.Is(err, binding.ErrEmptyUserField) || !strings.Contains(err.Error(), "{first_name}") {
		t.Errorf("Conditions with an empty first name: %v, want ErrEmptyUserField naming the field", err)
	}
	if got := tmpl.Columns(); !reflect.DeepEqual(got, []string{"firstname", "emailaddress1"}) {
		t.Errorf("Columns = %v", got)
	}
	var nilTmpl *binding.FilterTemplate
	if conds, err := nilTmpl.Conditions(&authz.User{}); conds != nil || err != nil || nilTmpl.Columns() != nil || nilTmpl.HasFields() {
		t.Errorf("nil template: %v, %v", conds, err)
	}
}

func TestFilterTemplateText(t *testing.T) {
	var cfg struct {
		Filter *binding.FilterTemplate `json:"filter"`
	}
	if err := json.Unmarshal([]byte(`{"filter":"emailaddress1 eq {email}"}`), &cfg); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if cfg.Filter.String() != "emailaddress1 eq {email}" || !cfg.Filter.HasFields() {
		t.Errorf("decoded %q", cfg.Filter)
	}
	out, err := json.Marshal(cfg)
	if err != nil || string(out) != `{"filter":"emailaddress1 eq {email}"}` {
		t.Errorf("Marshal = %s, %v", out, err)
	}
	err = json.Unmarshal([]byte(`{"filter":"emailaddress1 eq {email} or 1 eq 1"}`), &cfg)
	var terr *binding.FilterTemplateError
	if !errors.As(err, &terr) {
		t.Errorf("Unmarshal of a bad template: %v", err)
	}
}

func TestConditionMatches(t *testing.T) {
	c := &dataverse.Contact{ID: "c1", Email: "Ana@Example.com", Active: true, LogonEnabled: true, Columns: map[string]any{
		"new_code": "a_b", "new_tier": json.Number("3"), "new_score": float64(3), "new_flag": true, "new_empty": nil,
	}}
	tests := []struct {
		cond dataverse.Condition
		want bool
	}{
		{dataverse.Condition{Column: "emailaddress1", Op: "eq", Value: "ana@example.COM"}, true},
		{dataverse.Condition{Column: "new_code", Op: "eq", Value: "a_b"}, true},
		{dataverse.Condition{Column: "new_code", Op: "eq", Value: "axb"}, false},
		{dataverse.Condition{Column: "new_code", Op: "ne", Value: "axb"}, true},
		{dataverse.Condition{Column: "new_tier", Op: "eq", Value: int64(3)}, true},
		{dataverse.Condition{Column: "new_tier", Op: "eq", Value: "3"}, false},
		{dataverse.Condition{Column: "new_score", Op: "eq", Value: int64(3)}, true},
		{dataverse.Condition{Column: "new_flag", Op: "eq", Value: true}, true},
		{dataverse.Condition{Column: "new_flag", Op: "eq", Value: "true"}, false},
		{dataverse.Condition{Column: "new_empty", Op: "eq", Value: nil}, true},
		{dataverse.Condition{Column: "new_empty", Op: "ne", Value: nil}, false},
		{dataverse.Condition{Column: "new_code", Op: "ne", Value: nil}, true},
		{dataverse.Condition{Column: "new_missing", Op: "ne", Value: "x"}, false},
		{dataverse.Condition{Column: "statecode", Op: "eq", Value: int64(0)}, true},
		{dataverse.Condition{Column: "adx_identity_logonenabled", Op: "eq", Value: true}, true},
		{dataverse.Condition{Column: "new_code", Op: "gt", Value: "a"}, false},
	}
	for _, tt := range tests {
		if got := tt.cond.Matches(c); got != tt.want {
			t.Errorf("%+v.Matches = %v, want %v", tt.cond, got, tt.want)
		}
	}
}

// FuzzParseFilterTemplate checks that any accepted template yields
// conditions on valid columns with eq/ne and values of the allowed types,
// and that no input panics.
func FuzzParseFilterTemplate(f *testing.F) {
	for _, s := range []string{"emailaddress1 eq {email}", "a eq 'x''y' and b ne -1", "a eq true and b eq null", "contains(a,'b')", "a eq {x"} {
		f.Add(s)
	}
	u := &authz.User{ID: "i", Username: "u", Email: "e", FirstName: "f", LastName: "l"}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := binding.ParseFilterTemplate(s)
		if err != nil {
			return
		}
		conds, err := tmpl.Conditions(u)
		if err != nil || len(conds) == 0 {
			t.Fatalf("Conditions(%q) = %v, %v", s, conds, err)
		}
		for _, c := range conds {
			if dataverse.ValidContactColumn(c.Column) != nil || c.Op != "eq" && c.Op != "ne" {
				t.Fatalf("%q gave %+v", s, c)
			}
			switch c.Value.(type) {
			case nil, string, int64, bool:
			default:
				t.Fatalf("%q gave value %T", s, c.Value)
			}
		}
	})
}
