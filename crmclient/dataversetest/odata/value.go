package odata

import (
	"cmp"
	"encoding/json"
	"strings"
	"time"
)

// vtype is the type of an expression.
type vtype int

const (
	tNull vtype = iota // the null literal
	tString
	tGuid
	tNumber
	tBool
	tDateTime
	tAny // the placeholder left behind by a binding error; never evaluated
)

// val is a typed value. A null val of type tBool is SQL's "unknown": a row is
// returned only when the filter is known true, as QFILTER says ("Records
// aren't included if the expression evaluates to false or null").
type val struct {
	t    vtype
	null bool
	s    string // tString as is; tGuid in lower case
	f    float64
	b    bool
	tm   time.Time
}

var unknown = val{t: tBool, null: true}

func boolVal(b bool) val { return val{t: tBool, b: b} }

func vtypeOf(k Kind) vtype {
	switch k {
	case KindString:
		return tString
	case KindGuid, KindLookup:
		return tGuid
	case KindInt, KindDecimal, KindChoice:
		return tNumber
	case KindBool:
		return tBool
	case KindDateTime:
		return tDateTime
	}
	return tAny
}

// normalize turns a row value into a val of the column's type. Values of
// the wrong Go type become null.
func normalize(k Kind, v any) val {
	t := vtypeOf(k)
	null := val{t: t, null: true}
	switch t {
	case tString:
		if s, ok := v.(string); ok {
			return val{t: t, s: s}
		}
	case tGuid:
		if s, ok := v.(string); ok {
			return val{t: t, s: strings.ToLower(s)}
		}
	case tNumber:
		switch x := v.(type) {
		case float64:
			return val{t: t, f: x}
		case int:
			return val{t: t, f: float64(x)}
		case int64:
			return val{t: t, f: float64(x)}
		case json.Number:
			if f, err := x.Float64(); err == nil {
				return val{t: t, f: f}
			}
		}
	case tBool:
		if b, ok := v.(bool); ok {
			return val{t: t, b: b}
		}
	case tDateTime:
		switch x := v.(type) {
		case string:
			if tm, ok := parseDateTime(x); ok {
				return val{t: t, tm: tm}
			}
		case time.Time:
			return val{t: t, tm: x}
		}
	}
	return null
}

// compareVals orders two non-null values of the same type. Strings compare
// without regard to case (QFILTER: string comparisons are case-insensitive).
// Dataverse's SQL collation is also accent-insensitive and GUIDs sort in SQL
// Server's byte order; the emulator does neither (GUIDs compare as text).
func compareVals(a, b val) int {
	switch a.t {
	case tString:
		if strings.EqualFold(a.s, b.s) {
			return 0
		}
		return strings.Compare(strings.ToLower(a.s), strings.ToLower(b.s))
	case tGuid:
		return strings.Compare(a.s, b.s)
	case tNumber:
		return cmp.Compare(a.f, b.f)
	case tBool:
		switch {
		case a.b == b.b:
			return 0
		case !a.b:
			return -1
		}
		return 1
	case tDateTime:
		return a.tm.Compare(b.tm)
	}
	return 0
}

// sortCompare orders values for $orderby: nulls first (as SQL Server sorts
// them in ascending order), then by compareVals.
func sortCompare(a, b val) int {
	switch {
	case a.null && b.null:
		return 0
	case a.null:
		return -1
	case b.null:
		return 1
	}
	return compareVals(a, b)
}
