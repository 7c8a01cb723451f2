package dataverse

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// GUID is a Dataverse unique identifier (Edm.Guid), such as a record's
// primary key or a lookup's _x_value. The zero value is the nil GUID
// 00000000-0000-0000-0000-000000000000, which Dataverse never assigns to a
// record; use IsZero to detect "no id".
//
// In a filter a GUID is written unquoted in lower case, as OData 4.0 and
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows
// show. It marshals to and from JSON as the canonical string.
type GUID [16]byte

// ParseGUID parses the canonical 8-4-4-4-12 hexadecimal form, in either
// case, optionally wrapped in braces as .NET prints it. Any other form is an
// error.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) == 38 && s[0] == '{' && s[37] == '}' {
		s = s[1:37]
	}
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("dataverse: %q is not a GUID (want 8-4-4-4-12 hexadecimal digits)", truncate(s, 64))
	}
	var b [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		b[n] = s[i]
		n++
	}
	if _, err := hex.Decode(g[:], b[:]); err != nil {
		return GUID{}, fmt.Errorf("dataverse: %q is not a GUID (want 8-4-4-4-12 hexadecimal digits)", truncate(s, 64))
	}
	return g, nil
}

// MustParseGUID is like ParseGUID but panics on a malformed s. It is meant
// for constants in tests and start-up code, never for input.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the lower-case canonical form.
func (g GUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], g[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], g[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], g[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], g[8:10])
	b[23] = '-'
	hex.Encode(b[24:], g[10:])
	return string(b[:])
}

// IsZero reports whether g is the nil GUID.
func (g GUID) IsZero() bool { return g == GUID{} }

// MarshalText implements encoding.TextMarshaler.
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what
// ParseGUID accepts.
func (g *GUID) UnmarshalText(b []byte) error {
	if g == nil {
		return errors.New("dataverse: UnmarshalText on nil *GUID")
	}
	v, err := ParseGUID(string(b))
	if err != nil {
		return err
	}
	*g = v
	return nil
}

// ParseID parses the id of a record as crmgate stores and compares it: a
// GUID in the canonical 8-4-4-4-12 form (either case, no braces) that is
// not the nil GUID, which names no record. It returns the lower-case
// canonical form.
func ParseID(s string) (string, error) {
	if len(s) != 36 {
		return "", fmt.Errorf("dataverse: %q is not a record id (want a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e)", truncate(s, 64))
	}
	g, err := ParseGUID(s)
	if err != nil {
		return "", err
	}
	if g.IsZero() {
		return "", errors.New("dataverse: the nil GUID names no record")
	}
	return g.String(), nil
}
