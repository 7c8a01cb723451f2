package crmclient

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

type choice int

type email string

func TestFilterBuild(t *testing.T) {
	g := MustParseGUID("9F3162F6-804A-E611-80D1-00155D4333FA")
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		f    Filter
		want string
	}{
		{"string with quote", F.Eq("lastname", "O'Bryan"), "lastname eq 'O''Bryan'"},
		{"only quotes", F.Eq("lastname", "''"), "lastname eq ''''''"},
		{"empty string", F.Eq("lastname", ""), "lastname eq ''"},
		{"guid unquoted lower case", F.Eq("_parentcustomerid_value", g), "_parentcustomerid_value eq 9f3162f6-804a-e611-80d1-00155d4333fa"},
		{"guid pointer", F.Eq("contactid", &g), "contactid eq 9f3162f6-804a-e611-80d1-00155d4333fa"},
		{"nil guid pointer", F.Eq("contactid", (*GUID)(nil)), "contactid eq null"},
		{"int", F.Ge("statecode", 0), "statecode ge 0"},
		{"negative int64", F.Lt("n", int64(-5)), "n lt -5"},
		{"uint", F.Le("n", uint8(7)), "n le 7"},
		{"named int", F.Eq("statuscode", choice(2)), "statuscode eq 2"},
		{"named string", F.Eq("emailaddress1", email("a'b@x")), "emailaddress1 eq 'a''b@x'"},
		{"float", F.Gt("revenue", 1.5), "revenue gt 1.5"},
		{"big float plain", F.Gt("revenue", 1e21), "revenue gt 1000000000000000000000"},
		{"bool", F.Ne("donotemail", true), "donotemail ne true"},
		{"time to utc", F.Ge("modifiedon", ts), "modifiedon ge 2024-01-02T02:04:05Z"},
		{"nil", F.Eq("parentcustomerid", nil), "parentcustomerid eq null"},
		{"is null", F.IsNull("adx_identity_username"), "adx_identity_username eq null"},
		{"is not null", F.IsNotNull("adx_identity_username"), "adx_identity_username ne null"},
		{"contains", F.Contains("fullname", "a'b"), "contains(fullname,'a''b')"},
		{"startswith", F.StartsWith("fullname", "x"), "startswith(fullname,'x')"},
		{"endswith", F.EndsWith("fullname", "Inc."), "endswith(fullname,'Inc.')"},
		{"and", F.And(F.Eq("a", 1), F.Eq("b", "x")), "(a eq 1) and (b eq 'x')"},
		{"or nested", F.Or(F.Eq("a", 1), F.And(F.Eq("b", 2), F.Eq("c", 3))), "(a eq 1) or ((b eq 2) and (c eq 3))"},
		{"single and", F.And(F.Eq("a", 1)), "a eq 1"},
		{"not", F.Not(F.Contains("fullname", "x")), "not (contains(fullname,'x'))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Err(); err != nil {
				t.Fatalf("Err() = %v", err)
			}
			if got := tt.f.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	tests := []struct {
		name string
		f    Filter
	}{
		{"injection in column", F.Eq("name eq 'x' or 1 eq 1 or name", "y")},
		{"space in column", F.Eq("first name", "y")},
		{"empty column", F.Eq("", "y")},
		{"leading digit", F.Eq("1abc", 1)},
		{"slash path", F.Eq("primarycontactid/fullname", "x")},
		{"keyword column", F.Eq("null", 1)},
		{"unicode column", F.Eq("nämé", 1)},
		{"long column", F.Eq(strings.Repeat("a", 129), 1)},
		{"struct value", F.Eq("a", struct{}{})},
		{"slice value", F.Eq("a", []string{"x"})},
		{"NaN", F.Eq("a", nanValue())},
		{"zero time", F.Eq("a", time.Time{})},
		{"invalid utf8", F.Eq("a", "\xff")},
		{"bad column in contains", F.Contains("a)or(b", "x")},
		{"empty and", F.And()},
		{"and with zero filter", F.And(F.Eq("a", 1), Filter{})},
		{"and propagates error", F.And(F.Eq("a", 1), F.Eq("b c", 1))},
		{"or propagates error", F.Or(F.Eq("b c", 1))},
		{"not propagates error", F.Not(F.Eq("b c", 1))},
		{"not empty", F.Not(Filter{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.f.Err(), ErrInvalidFilter) {
				t.Fatalf("Err() = %v, want ErrInvalidFilter", tt.f.Err())
			}
			if tt.f.String() != "" {
				t.Fatalf("String() = %q for an invalid filter", tt.f.String())
			}
			if _, err := (Query{Filter: tt.f}).Encode(); !errors.Is(err, ErrInvalidFilter) {
				t.Fatalf("Query.Encode err = %v", err)
			}
		})
	}
}

func nanValue() float64 {
	var zero float64
	return zero / zero
}

func TestQueryEncode(t *testing.T) {
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"zero", Query{}, ""},
		{"all parts", Query{
			Select:  []string{"fullname", "emailaddress1"},
			Filter:  F.Eq("emailaddress1", "a&b=c#d+e%f g@x"),
			OrderBy: []string{"fullname asc", "createdon"},
			Top:     5,
		}, "$filter=emailaddress1%20eq%20%27a%26b%3Dc%23d%2Be%25f%20g%40x%27&$orderby=fullname%20asc,createdon&$select=fullname,emailaddress1&$top=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.q.Encode()
			if err != nil {
				t.Fatal(err)
			}
			// The comma separator is escaped by QueryEscape; compare decoded forms too.
			want := strings.ReplaceAll(tt.want, ",", "%2C")
			if got != want {
				t.Fatalf("Encode() = %q, want %q", got, want)
			}
			parsed, err := url.ParseQuery(got)
			if err != nil {
				t.Fatal(err)
			}
			if tt.q.Filter.String() != "" && parsed.Get("$filter") != tt.q.Filter.String() {
				t.Fatalf("$filter round trip = %q", parsed.Get("$filter"))
			}
		})
	}
}

func TestQueryEncodeReportsAllErrors(t *testing.T) {
	_, err := Query{Select: []string{"a b"}, OrderBy: []string{"x sideways"}, Top: -1, Filter: F.Eq("", 1)}.Encode()
	if !errors.Is(err, ErrInvalidFilter) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"$select", "direction", "$top", "column name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestGUID(t *testing.T) {
	for _, s := range []string{"", "9f3162f6-804a-e611-80d1-00155d4333f", "9f3162f6804ae61180d100155d4333fa", "9f3162f6-804a-e611-80d1-00155d4333fg", "{9f3162f6-804a-e611-80d1-00155d4333fa", "9f3162f6-804a-e611-80d1+00155d4333fa"} {
		if _, err := ParseGUID(s); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", s)
		}
	}
	g, err := ParseGUID("{9F3162F6-804A-E611-80D1-00155D4333FA}")
	if err != nil || g.String() != "9f3162f6-804a-e611-80d1-00155d4333fa" {
		t.Fatalf("ParseGUID braces = %v, %v", g, err)
	}
	var back GUID
	text, _ := g.MarshalText()
	if err := back.UnmarshalText(text); err != nil || back != g {
		t.Fatalf("text round trip = %v, %v", back, err)
	}
	if !(GUID{}).IsZero() || g.IsZero() {
		t.Fatal("IsZero wrong")
	}
}

// token is one lexical item of the small OData subset produced by F.
type token struct {
	kind string // "ident", "string", "punct", "other"
	text string // for "string", the decoded value
}

// tokenize splits an OData filter into tokens, decoding string literals
// (two quotes in a row are one quote). ok is false for an unterminated literal.
func tokenize(s string) (toks []token, ok bool) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ':
			i++
		case c == '\'':
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return toks, false
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			toks = append(toks, token{"string", b.String()})
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, token{"punct", string(c)})
			i++
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '(' && s[j] != ')' && s[j] != ',' && s[j] != '\'' {
				j++
			}
			toks = append(toks, token{"ident", s[i:j]})
			i = j
		}
	}
	return toks, true
}

func FuzzFilterStringLiteral(f *testing.F) {
	for _, s := range []string{"", "o'brien@x", "'", "''", "a&b#c+d%e", "' or 1 eq 1 or name eq '", "\x00", "é', 'x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, fl := range []Filter{F.Eq("emailaddress1", s), F.Contains("fullname", s)} {
			if !utf8.ValidString(s) {
				if !errors.Is(fl.Err(), ErrInvalidFilter) {
					t.Fatalf("invalid UTF-8 accepted: %q", fl.String())
				}
				continue
			}
			if fl.Err() != nil {
				t.Fatal(fl.Err())
			}
			toks, ok := tokenize(fl.String())
			if !ok {
				t.Fatalf("unterminated literal in %q", fl.String())
			}
			var lits []string
			for _, tk := range toks {
				if tk.kind == "string" {
					lits = append(lits, tk.text)
				}
			}
			if len(lits) != 1 || lits[0] != s {
				t.Fatalf("filter %q has literals %q, want exactly [%q]", fl.String(), lits, s)
			}
			if n := len(toks); n != 3 && n != 6 {
				t.Fatalf("filter %q has %d tokens, want 3 (eq) or 6 (contains)", fl.String(), n)
			}
			enc, err := Query{Filter: fl}.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(enc, "#+ ") || strings.Count(enc, "&") != 0 {
				t.Fatalf("encoded query %q holds a raw separator", enc)
			}
			vals, err := url.ParseQuery(enc)
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", enc, err)
			}
			if len(vals) != 1 || len(vals["$filter"]) != 1 || vals.Get("$filter") != fl.String() {
				t.Fatalf("ParseQuery(%q) = %q, want $filter=%q", enc, vals, fl.String())
			}
		}
	})
}
