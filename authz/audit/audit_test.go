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

// TestParseTime: RFC 3339 times and positive durations up to MaxAge are
// read; everything else is a ValidationError naming the field.
func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"2026-03-01T10:00:00Z", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"2026-03-01T10:00:00.123456789Z", time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)},
		{"2026-03-01T11:00:00+01:00", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"24h", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"1ns", now.Add(-time.Nanosecond)},
		{"+1h", now.Add(-time.Hour)},
		{"876000h", now.Add(-audit.MaxAge)},
	} {
		got, err := audit.ParseTime("since", tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-03-01", "2026-03-01 10:00:00", "2026-13-01T00:00:00Z",
		"2026-02-30T00:00:00Z", "2026-03-01T25:00:00Z", "0", "0s", "-1h", "876001h", "9999999999h", "1h\n", " 1h",
		"2026-03-01T10:00:00Z\x00", "1d", "NaN", "１h", "\xff"} {
		_, err := audit.ParseTime("until", in, now)
		var verr *authz.ValidationError
		if !errors.As(err, &verr) || verr.Field != "until" || !strings.Contains(verr.Message, "RFC 3339") {
			t.Errorf("ParseTime(%q) = %v; want a ValidationError on until", in, err)
		}
	}
}

// FuzzParseTime: ParseTime never panics, and what it accepts is either an
// RFC 3339 time or a time at most MaxAge before now and strictly before it.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-03-01T10:00:00Z", "24h", "-1h", "0s", "1.5h", "2026-03-01T10:00:00.5+14:00", "1h2m3s4ms"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := audit.ParseTime("since", s, now)
		if err != nil {
			return
		}
		if _, perr := time.Parse(time.RFC3339Nano, s); perr == nil {
			return
		}
		if !got.Before(now) || got.Before(now.Add(-audit.MaxAge)) {
			t.Fatalf("ParseTime(%q) = %v: outside (now - MaxAge, now)", s, got)
		}
	})
}

// TestRecordOutlivesItsContext: Record writes the row although the
// caller's context ended just after the change (a stopping worker, a
// client gone), and keeps the context's values.
func TestRecordOutlivesItsContext(t *testing.T) {
	st := &memStore{}
	l := audit.New(st, nil, nil)
	ctx, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "v"))
	cancel()
	l.Record(ctx, audit.Event{Type: "user.password_set", Actor: "a", UserID: "u"})
	if len(st.events) != 1 || st.sawValue != "v" {
		t.Fatalf("rows %d, value %q; want 1 and the context's value", len(st.events), st.sawValue)
	}
}

type ctxKey struct{}

// memStore is an audit.Store in memory that refuses a cancelled context,
// as the real stores do.
type memStore struct {
	events   []audit.Event
	sawValue any
}

func (m *memStore) AppendAudit(ctx context.Context, e *audit.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.sawValue = ctx.Value(ctxKey{})
	m.events = append(m.events, *e)
	return nil
}

func (m *memStore) ListAudit(context.Context, audit.Filter) ([]audit.Event, error) {
	return m.events, nil
}
