package odata

import (
	"errors"
	"testing"
)

func TestKeyTextRoundTrip(t *testing.T) {
	tests := []struct {
		col  string
		v    any
		text string // "" with null
		null bool
	}{
		{"lastname", "O'Bryan & <Co> \"x\"", "O'Bryan & <Co> \"x\"", false},
		{"lastname", "", "", false},
		{"lastname", nil, "", true},
		{"contactid", "9f3162f6-804a-e611-80d1-00155d4333fa", "{9F3162F6-804A-E611-80D1-00155D4333FA}", false},
		{"_parentcustomerid_value", parentID, "{9F3162F6-804A-E611-80D1-00155D4333FA}", false},
		{"numberofchildren", 2.0, "2", false},
		{"numberofchildren", 3, "3", false},
		{"creditlimit", -1500.25, "-1500.25", false},
		{"creditlimit", "12", "", true}, // the wrong Go type sorts as null
		{"donotemail", true, "1", false},
		{"donotemail", false, "0", false},
		{"modifiedon", "2024-03-01T10:00:00+02:00", "2024-03-01T08:00:00Z", false},
		{"modifiedon", "2024-03-01", "2024-03-01T00:00:00Z", false},
		{"modifiedon", "soon", "", true},
		{"statecode", 1.0, "1", false},
		{"notacolumn", "x", "x", false}, // sorts as a string, as in Sort
	}
	for _, tt := range tests {
		text, null := KeyText(contact, tt.col, tt.v)
		if text != tt.text || null != tt.null {
			t.Errorf("KeyText(%s, %#v) = %q, %v; want %q, %v", tt.col, tt.v, text, null, tt.text, tt.null)
			continue
		}
		if null {
			continue
		}
		v, err := ParseKeyText(contact, tt.col, text)
		if err != nil {
			t.Errorf("ParseKeyText(%s, %q): %v", tt.col, text, err)
			continue
		}
		o := OrderBy{{Column: tt.col}}
		if c := o.Compare(Row{tt.col: v}, Row{tt.col: tt.v}, contact); c != 0 {
			t.Errorf("ParseKeyText(%s, %q) = %#v, compares %d to %#v", tt.col, text, v, c, tt.v)
		}
	}
}

func TestParseKeyTextRejects(t *testing.T) {
	for _, tt := range []struct{ col, text string }{
		{"contactid", "9f3162f6-804a-e611-80d1-00155d4333fa"},
		{"contactid", "{9f3162f6-804a-e611-80d1-00155d4333f}"},
		{"contactid", "{9f3162f6-804a-e611-80d1-00155d4333fa"},
		{"_parentcustomerid_value", "{}"},
		{"numberofchildren", "two"},
		{"numberofchildren", " 2"},
		{"numberofchildren", "NaN"},
		{"creditlimit", "Inf"},
		{"creditlimit", "1e999"},
		{"donotemail", "true"},
		{"modifiedon", "2024-03-01"},
		{"statecode", ""},
	} {
		if v, err := ParseKeyText(contact, tt.col, tt.text); !errors.Is(err, ErrKeyText) {
			t.Errorf("ParseKeyText(%s, %q) = %#v, %v; want ErrKeyText", tt.col, tt.text, v, err)
		}
	}
}

func TestCompare(t *testing.T) {
	a := Row{"lastname": "smith", "statecode": 1.0, "contactid": "00000000-0000-0000-0000-000000000001"}
	b := Row{"lastname": "Smith", "statecode": 0.0, "contactid": "00000000-0000-0000-0000-000000000002"}
	n := Row{"contactid": "00000000-0000-0000-0000-000000000003"}
	tests := []struct {
		o    OrderBy
		x, y Row
		want int
	}{
		{OrderBy{{Column: "lastname"}}, a, b, 0}, // case-insensitive tie
		{OrderBy{{Column: "lastname"}, {Column: "contactid"}}, a, b, -1},
		{OrderBy{{Column: "lastname"}, {Column: "contactid", Desc: true}}, a, b, 1},
		{OrderBy{{Column: "statecode"}, {Column: "lastname"}}, a, b, 1},
		{OrderBy{{Column: "lastname"}}, n, a, -1}, // null first ascending
		{OrderBy{{Column: "lastname", Desc: true}}, n, a, 1},
		{nil, a, b, 0},
	}
	for _, tt := range tests {
		if got := tt.o.Compare(tt.x, tt.y, contact); sign(got) != tt.want {
			t.Errorf("%v.Compare(%v, %v) = %d, want %d", tt.o, tt.x, tt.y, got, tt.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
