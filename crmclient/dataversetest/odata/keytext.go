package odata

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrKeyText is wrapped by every error of ParseKeyText.
var ErrKeyText = errors.New("invalid value")

// KeyText renders v, a value of column col of t, as the text a paging
// cookie records for it, so that ParseKeyText gives back a value that
// compares equal to v under OrderBy.Compare. null reports a value that
// sorts as null (nil, or a value of the wrong Go type for the column); text
// is then "".
//
// Dataverse documents only two forms: text values as they are and
// primary keys as upper-case GUIDs in braces
// (https://learn.microsoft.com/power-apps/developer/data-platform/fetchxml/page-results).
// GUIDs of lookup columns are written the same way. The forms of numbers
// (shortest decimal text), yes/no values ("1" or "0") and date-times
// (RFC 3339 in UTC) are not documented and are the emulator's own.
func KeyText(t *EntityType, col string, v any) (text string, null bool) {
	n := normalize(keyKind(t, col), v)
	if n.null {
		return "", true
	}
	switch n.t {
	case tString:
		return n.s, false
	case tGuid:
		return "{" + strings.ToUpper(n.s) + "}", false
	case tNumber:
		return strconv.FormatFloat(n.f, 'f', -1, 64), false
	case tBool:
		if n.b {
			return "1", false
		}
		return "0", false
	case tDateTime:
		return n.tm.UTC().Format(time.RFC3339Nano), false
	}
	return "", true
}

// ParseKeyText parses text that KeyText wrote for column col of t into a
// Row value: a string (GUIDs in lower case, date-times as RFC 3339 UTC
// text), a float64 or a bool. Text KeyText could not have written for the
// column's Kind gives an error wrapping ErrKeyText.
func ParseKeyText(t *EntityType, col, text string) (any, error) {
	switch vtypeOf(keyKind(t, col)) {
	case tString:
		return text, nil
	case tGuid:
		inner, open := strings.CutPrefix(text, "{")
		inner, closed := strings.CutSuffix(inner, "}")
		if !open || !closed || !isGUID(inner) {
			return nil, fmt.Errorf("%w: %q is not a GUID in braces", ErrKeyText, text)
		}
		return strings.ToLower(inner), nil
	case tNumber:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || strings.TrimSpace(text) != text {
			return nil, fmt.Errorf("%w: %q is not a number", ErrKeyText, text)
		}
		return f, nil
	case tBool:
		switch text {
		case "1":
			return true, nil
		case "0":
			return false, nil
		}
		return nil, fmt.Errorf("%w: %q is not 1 or 0", ErrKeyText, text)
	case tDateTime:
		tm, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeyText, err)
		}
		return tm.UTC().Format(time.RFC3339Nano), nil
	}
	return nil, fmt.Errorf("%w: %s is not a column of the table", ErrKeyText, col)
}

// keyKind is the Kind col sorts as: a column t lacks sorts as a string, as
// in OrderBy.Sort.
func keyKind(t *EntityType, col string) Kind {
	if k, ok := t.column(col); ok {
		return k
	}
	return KindString
}
