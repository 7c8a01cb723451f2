package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/audit"
)

func TestSQLiteAuditFilters(t *testing.T)   { testAuditFilters(t, sqliteURL) }
func TestPostgresAuditFilters(t *testing.T) { testAuditFilters(t, postgresURL) }

// testAuditFilters: every filter of audit.Filter selects the same rows on
// both dialects, alone and combined, with the time bounds half-open
// ([Since, Until)) at millisecond precision.
func testAuditFilters(t *testing.T, newURL opener) {
	ctx := t.Context()
	db, err := Open(ctx, newURL(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rows := []audit.Event{
		{Type: audit.EventSignInFailed, Actor: "", UserID: "u1", Detail: "wrong_password"},
		{Type: audit.EventSignIn, Actor: "u1", UserID: "u1"},
		{Type: audit.EventRolesSet, Actor: "cli", UserID: "u2", Detail: "admin"},
		{Type: audit.EventAPIKeyUsed, Actor: "apikey:abc", Detail: "abc"},
		{Type: audit.EventSignInFailed, Actor: "", UserID: "u2", Detail: "locked_out"},
		{Type: audit.EventRolesSet, Actor: "u1", UserID: "u1", Detail: ""},
	}
	for i := range rows {
		rows[i].Time = t0.Add(time.Duration(i) * time.Second)
		if err := db.AppendAudit(ctx, &rows[i]); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	id := func(i int) int64 { return rows[i].ID }
	at := func(i int) time.Time { return rows[i].Time }
	tests := []struct {
		name string
		f    audit.Filter
		want []int64
	}{
		{"actor", audit.Filter{Actor: "u1"}, []int64{id(5), id(1)}},
		{"actor cli", audit.Filter{Actor: "cli"}, []int64{id(2)}},
		{"actor api key", audit.Filter{Actor: "apikey:abc"}, []int64{id(3)}},
		{"unknown actor", audit.Filter{Actor: "nobody"}, nil},
		{"since inclusive", audit.Filter{Since: at(4)}, []int64{id(5), id(4)}},
		{"until exclusive", audit.Filter{Until: at(2)}, []int64{id(1), id(0)}},
		{"range", audit.Filter{Since: at(1), Until: at(4)}, []int64{id(3), id(2), id(1)}},
		{"range by a millisecond", audit.Filter{Since: at(2), Until: at(2).Add(time.Millisecond)}, []int64{id(2)}},
		{"sub-millisecond until is truncated", audit.Filter{Since: at(2), Until: at(2).Add(time.Microsecond)}, nil},
		{"range outside", audit.Filter{Since: t0.Add(time.Hour)}, nil},
		{"since in another zone", audit.Filter{Since: at(5).In(time.FixedZone("x", 5*3600))}, []int64{id(5)}},
		{"type and user", audit.Filter{Type: audit.EventSignInFailed, UserID: "u2"}, []int64{id(4)}},
		{"type, range and limit", audit.Filter{Type: audit.EventRolesSet, Since: at(0), Limit: 1}, []int64{id(5)}},
		{"everything", audit.Filter{UserID: "u1", Actor: "u1", Type: audit.EventRolesSet, Since: at(0), Until: at(5).Add(time.Second), Before: id(5) + 1}, []int64{id(5)}},
		{"before with range", audit.Filter{Before: id(3), Since: at(1)}, []int64{id(2), id(1)}},
		{"value with quote", audit.Filter{Actor: "u1' OR '1'='1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.ListAudit(ctx, tt.f)
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			var ids []int64
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if !reflect.DeepEqual(ids, tt.want) {
				t.Errorf("ListAudit(%+v) ids = %v, want %v", tt.f, ids, tt.want)
			}
		})
	}
}
