package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

// TestFilterValidate: hostile filters are refused naming the field; sane
// ones pass.
func TestFilterValidate(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	long := strings.Repeat("a", audit.MaxFilterLen+1)
	tests := []struct {
		name  string
		f     audit.Filter
		field string // "" means valid
	}{
		{"zero", audit.Filter{}, ""},
		{"everything", audit.Filter{UserID: "u1", Actor: "apikey:abc", Type: audit.EventSignInFailed, Since: t0, Until: t0.Add(time.Second), Before: 9, Limit: authz.MaxListLimit}, ""},
		{"longest values", audit.Filter{UserID: long[1:], Actor: long[1:], Type: long[1:]}, ""},
		{"unicode user", audit.Filter{UserID: "jürgen"}, ""},
		{"long user", audit.Filter{UserID: long}, "user"},
		{"long actor", audit.Filter{Actor: long}, "actor"},
		{"long type", audit.Filter{Type: long}, "type"},
		{"NUL in user", audit.Filter{UserID: "u\x00"}, "user"},
		{"newline in actor", audit.Filter{Actor: "cli\nforged=1"}, "actor"},
		{"escape in type", audit.Filter{Type: "\x1b[31m"}, "type"},
		{"DEL in user", audit.Filter{UserID: "u\x7f"}, "user"},
		{"C1 control", audit.Filter{UserID: "u\u0085"}, "user"},
		{"bad UTF-8", audit.Filter{Type: "\xff\xfe"}, "type"},
		{"negative before", audit.Filter{Before: -1}, "before"},
		{"negative limit", audit.Filter{Limit: -1}, "limit"},
		{"huge limit", audit.Filter{Limit: authz.MaxListLimit + 1}, "limit"},
		{"until equals since", audit.Filter{Since: t0, Until: t0}, "until"},
		{"until before since", audit.Filter{Since: t0, Until: t0.Add(-time.Nanosecond)}, "until"},
		{"only since", audit.Filter{Since: t0}, ""},
		{"only until", audit.Filter{Until: t0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			var verr *authz.ValidationError
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("Validate() = %v; want nil", err)
			case tt.field != "" && (!errors.As(err, &verr) || verr.Field != tt.field):
				t.Errorf("Validate() = %v; want a ValidationError on %q", err, tt.field)
			}
		})
	}
}

// refusingStore fails the test when the log reaches it with a bad filter.
type refusingStore struct{ t *testing.T }

func (s refusingStore) AppendAudit(_ context.Context, _ *audit.Event) error { return nil }
func (s refusingStore) ListAudit(_ context.Context, f audit.Filter) ([]audit.Event, error) {
	s.t.Errorf("store reached with %+v", f)
	return nil, nil
}

// TestListAuditValidates: Log.ListAudit refuses a bad filter before the store sees it.
func TestListAuditValidates(t *testing.T) {
	l := audit.New(refusingStore{t}, nil, nil)
	var verr *authz.ValidationError
	if _, err := l.ListAudit(t.Context(), audit.Filter{Limit: -5}); !errors.As(err, &verr) {
		t.Errorf("ListAudit(bad) = %v; want a ValidationError", err)
	}
}
