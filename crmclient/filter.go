package crmclient

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmgate/crmgate/dataverse"
)

// Filter is an OData $filter expression
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows) built only
// from validated column names and literals encoded by their Go type, so
// user input can never change the structure of the expression. Build one with
// the methods of F.
//
// The zero value is "no filter": String returns "" and Query leaves out
// $filter. A Filter built from a bad column name or an unsupported value
// carries the error (see Err); queries refuse it.
type Filter struct {
	expr string
	err  error
}

// ErrInvalidFilter is wrapped by every error a Filter or Query reports:
// a bad column name, an unsupported literal type, a string that is not
// valid UTF-8, an empty And/Or.
var ErrInvalidFilter = errors.New("crmclient: invalid filter")

// String returns the $filter text, or "" for the zero Filter and for a
// Filter whose Err is not nil.
func (f Filter) String() string {
	if f.err != nil {
		return ""
	}
	return f.expr
}

// Err returns the first error met while building f, or nil.
func (f Filter) Err() error { return f.err }

// IsZero reports whether f is the zero ("no filter") Filter.
func (f Filter) IsZero() bool { return f.expr == "" && f.err == nil }

// FilterBuilder builds Filters; use the package variable F. Its zero value
// is ready to use.
type FilterBuilder struct{}

// F builds Filters: F.And(F.Eq("emailaddress1", email), F.Eq("statecode", 0)).
var F FilterBuilder

func filterErr(format string, args ...any) Filter {
	return Filter{err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidFilter}, args...)...)}
}

func (FilterBuilder) compare(op, column string, value any) Filter {
	if err := validColumn(column); err != nil {
		return Filter{err: err}
	}
	lit, err := literal(value)
	if err != nil {
		return Filter{err: fmt.Errorf("%w: column %s: %w", ErrInvalidFilter, column, err)}
	}
	return Filter{expr: column + " " + op + " " + lit}
}

// Eq is "column eq value". A nil value gives "column eq null". Dataverse
// compares strings case-insensitively.
func (b FilterBuilder) Eq(column string, value any) Filter { return b.compare("eq", column, value) }

// Ne is "column ne value".
func (b FilterBuilder) Ne(column string, value any) Filter { return b.compare("ne", column, value) }

// Gt is "column gt value".
func (b FilterBuilder) Gt(column string, value any) Filter { return b.compare("gt", column, value) }

// Ge is "column ge value".
func (b FilterBuilder) Ge(column string, value any) Filter { return b.compare("ge", column, value) }

// Lt is "column lt value".
func (b FilterBuilder) Lt(column string, value any) Filter { return b.compare("lt", column, value) }

// Le is "column le value".
func (b FilterBuilder) Le(column string, value any) Filter { return b.compare("le", column, value) }

// IsNull is "column eq null".
func (b FilterBuilder) IsNull(column string) Filter { return b.compare("eq", column, nil) }

// IsNotNull is "column ne null".
func (b FilterBuilder) IsNotNull(column string) Filter { return b.compare("ne", column, nil) }

func (FilterBuilder) function(name, column, value string) Filter {
	if err := validColumn(column); err != nil {
		return Filter{err: err}
	}
	lit, err := literal(value)
	if err != nil {
		return Filter{err: fmt.Errorf("%w: column %s: %w", ErrInvalidFilter, column, err)}
	}
	return Filter{expr: name + "(" + column + "," + lit + ")"}
}

// Contains is "contains(column,'value')". Dataverse treats %, _, [ ] and
// [^ ] inside the value as SQL wildcards
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows) and
// documents no escape for them, so a value holding them matches more than its text;
// never use Contains, StartsWith or EndsWith to decide access.
func (b FilterBuilder) Contains(column, value string) Filter {
	return b.function("contains", column, value)
}

// StartsWith is "startswith(column,'value')"; see Contains for wildcards.
func (b FilterBuilder) StartsWith(column, value string) Filter {
	return b.function("startswith", column, value)
}

// EndsWith is "endswith(column,'value')"; see Contains for wildcards.
func (b FilterBuilder) EndsWith(column, value string) Filter {
	return b.function("endswith", column, value)
}

// And joins filters with "and", each operand in parentheses. Zero
// operands are an error; one operand is returned as is.
func (FilterBuilder) And(filters ...Filter) Filter { return join("and", filters) }

// Or joins filters with "or", each operand in parentheses. Zero operands
// are an error; one operand is returned as is.
func (FilterBuilder) Or(filters ...Filter) Filter { return join("or", filters) }

// Not negates f: "not (f)". Dataverse query functions cannot be negated,
// but this builder does not produce them.
func (FilterBuilder) Not(f Filter) Filter {
	if f.err != nil {
		return f
	}
	if f.expr == "" {
		return filterErr("not of an empty filter")
	}
	return Filter{expr: "not (" + f.expr + ")"}
}

func join(op string, filters []Filter) Filter {
	if len(filters) == 0 {
		return filterErr("%s of no filters", op)
	}
	parts := make([]string, 0, len(filters))
	for _, f := range filters {
		if f.err != nil {
			return f
		}
		if f.expr == "" {
			return filterErr("%s with an empty filter", op)
		}
		parts = append(parts, "("+f.expr+")")
	}
	if len(parts) == 1 {
		return filters[0]
	}
	return Filter{expr: strings.Join(parts, " "+op+" ")}
}

// validColumn applies the one rule for logical column names,
// dataverse.ValidColumn; a bad name wraps ErrInvalidFilter.
func validColumn(name string) error {
	if err := dataverse.ValidColumn(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidFilter, err)
	}
	return nil
}

// literal encodes v as an OData 4.0 literal according to its Go type.
func literal(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "null", nil
	case string:
		return stringLiteral(x)
	case GUID:
		return x.String(), nil
	case *GUID:
		if x == nil {
			return "null", nil
		}
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Time:
		if x.IsZero() {
			return "", errors.New("zero time.Time (use nil for null)")
		}
		// Unquoted DateTimeOffset per OData 4.0 (inferred from the OData 4.0
		// ABNF; filter-rows shows no date literal).
		return x.UTC().Format(time.RFC3339Nano), nil
	case float32:
		return floatLiteral(float64(x))
	case float64:
		return floatLiteral(x)
	}
	// Named types such as a choice type "type State int".
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return stringLiteral(rv.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.Bool:
		return strconv.FormatBool(rv.Bool()), nil
	case reflect.Float32, reflect.Float64:
		return floatLiteral(rv.Float())
	}
	return "", fmt.Errorf("unsupported value type %T", v)
}

func floatLiteral(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("non-finite number %v", f)
	}
	// Plain decimal notation: valid for Edm.Double and Edm.Decimal alike.
	return strconv.FormatFloat(f, 'f', -1, 64), nil
}

// stringLiteral single-quotes s and doubles every embedded quote
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows: O'Bryan is written with its quote twice). Invalid UTF-8 is refused: Dataverse would
// reject or mangle it.
func stringLiteral(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("string is not valid UTF-8")
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}

// Query holds the query options of a collection GET
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview). The
// zero value asks for every column of up to 5,000 rows.
type Query struct {
	// Select lists the columns to return; empty returns all columns
	// (costly: always name the columns you need).
	Select []string
	// Filter restricts the rows; the zero Filter means no restriction.
	Filter Filter
	// OrderBy lists columns, each optionally followed by " asc" or
	// " desc".
	OrderBy []string
	// Top limits the number of rows; 0 means no $top. Dataverse ignores
	// it when odata.maxpagesize is sent.
	Top int
}

// Encode returns the URL query string of q: keys in a fixed order,
// values percent-encoded (a space as %20, never +), so characters such as
// &, #, + and % in filter values cannot break the URL. It reports every
// invalid part at once, each wrapping ErrInvalidFilter.
func (q Query) Encode() (string, error) {
	var errs []error
	v := url.Values{}
	if len(q.Select) > 0 {
		for _, c := range q.Select {
			if err := validColumn(c); err != nil {
				errs = append(errs, fmt.Errorf("$select: %w", err))
			}
		}
		v.Set("$select", strings.Join(q.Select, ","))
	}
	if q.Filter.err != nil {
		errs = append(errs, q.Filter.err)
	} else if q.Filter.expr != "" {
		v.Set("$filter", q.Filter.expr)
	}
	if len(q.OrderBy) > 0 {
		for _, o := range q.OrderBy {
			col, dir, _ := strings.Cut(o, " ")
			if err := validColumn(col); err != nil {
				errs = append(errs, fmt.Errorf("$orderby: %w", err))
			}
			if dir != "" && dir != "asc" && dir != "desc" {
				errs = append(errs, fmt.Errorf("%w: $orderby %q: direction must be asc or desc", ErrInvalidFilter, truncate(o, 64)))
			}
		}
		v.Set("$orderby", strings.Join(q.OrderBy, ","))
	}
	if q.Top < 0 {
		errs = append(errs, fmt.Errorf("%w: $top %d is negative", ErrInvalidFilter, q.Top))
	} else if q.Top > 0 {
		v.Set("$top", strconv.Itoa(q.Top))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return encodeQuery(v), nil
}

// encodeQuery is url.Values.Encode with two differences: keys are written
// as they are (the fixed OData option names such as $filter; the docs never
// show %24filter), and a space is %20 rather than +, so the value does not
// depend on the server decoding + as a space. Keys must come from this
// package, never from input.
func encodeQuery(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, val := range v[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			// QueryEscape turns a literal + into %2B, so every + left is a space.
			b.WriteString(strings.ReplaceAll(url.QueryEscape(val), "+", "%20"))
		}
	}
	return b.String()
}
