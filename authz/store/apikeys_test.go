package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/permissions"
)

// testAPIKeys shows that API keys round-trip with their nullable times,
// that ids are unique, that revocation keeps its first time and reports
// whether it changed anything, that listing is oldest first, and that
// TouchAPIKey writes only once per interval.
func testAPIKeys(t *testing.T, db *DB) {
	ctx := t.Context()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	flow := &apikeys.Key{ID: "aaaaaaaaaaaa", Name: "Power Automate — binding flow", SecretHash: "11aa",
		Scopes: []string{permissions.UsersRead, permissions.BindingsWrite}, CreatedBy: "cli:root",
		CreatedAt: t0.Add(123_456 * time.Nanosecond), ExpiresAt: t0.Add(24 * time.Hour)}
	if err := db.CreateAPIKey(ctx, flow); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	if !flow.CreatedAt.Equal(t0) {
		t.Errorf("CreatedAt not truncated to ms: %v", flow.CreatedAt)
	}
	reader := &apikeys.Key{ID: "bbbbbbbbbbbb", Name: "reader", SecretHash: "22bb", Scopes: []string{permissions.ContactsRead},
		CreatedAt: t0.Add(time.Second)}
	if err := db.CreateAPIKey(ctx, reader); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}

	t.Run("get by id", func(t *testing.T) {
		got, err := db.APIKeyByID(ctx, flow.ID)
		if err != nil {
			t.Fatalf("APIKeyByID: %v", err)
		}
		if !reflect.DeepEqual(got, flow) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, flow)
		}
		if !got.LastUsedAt.IsZero() || !got.RevokedAt.IsZero() {
			t.Errorf("NULL times did not come back zero: %+v", got)
		}
		if _, err := db.APIKeyByID(ctx, "cccccccccccc"); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("APIKeyByID(missing) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("invalid input", func(t *testing.T) {
		dup := &apikeys.Key{ID: flow.ID, Name: "dup", SecretHash: "33cc"}
		if err := db.CreateAPIKey(ctx, dup); !errors.Is(err, authz.ErrConflict) {
			t.Errorf("CreateAPIKey with a used id: error = %v, want ErrConflict", err)
		}
		for _, k := range []*apikeys.Key{{Name: "no id", SecretHash: "44dd"}, {ID: "dddddddddddd", Name: "no hash"}} {
			if err := db.CreateAPIKey(ctx, k); err == nil {
				t.Errorf("CreateAPIKey(%+v) succeeded", k)
			}
		}
	})

	t.Run("touch at most once per interval", func(t *testing.T) {
		steps := []struct {
			at   time.Duration
			want time.Duration
		}{
			{10 * time.Second, 10 * time.Second}, // never used: written
			{40 * time.Second, 10 * time.Second}, // 30s later: left alone
			{70 * time.Second, 70 * time.Second}, // a full minute later: written
			{65 * time.Second, 70 * time.Second}, // a replica with an older clock does not move it back
		}
		for _, s := range steps {
			if err := db.TouchAPIKey(ctx, reader.ID, t0.Add(s.at), time.Minute); err != nil {
				t.Fatalf("TouchAPIKey: %v", err)
			}
			got, _ := db.APIKeyByID(ctx, reader.ID)
			if !got.LastUsedAt.Equal(t0.Add(s.want)) {
				t.Errorf("after touch at +%v: LastUsedAt = %v, want +%v", s.at, got.LastUsedAt.Sub(t0), s.want)
			}
		}
		if err := db.TouchAPIKey(ctx, "cccccccccccc", t0, time.Minute); err != nil {
			t.Errorf("TouchAPIKey(missing) = %v, want nil", err)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		changed, err := db.RevokeAPIKey(ctx, flow.ID, t0.Add(time.Hour))
		if err != nil || !changed {
			t.Fatalf("RevokeAPIKey = %v, %v; want true, nil", changed, err)
		}
		changed, err = db.RevokeAPIKey(ctx, flow.ID, t0.Add(2*time.Hour))
		if err != nil || changed {
			t.Errorf("second RevokeAPIKey = %v, %v; want false, nil", changed, err)
		}
		got, _ := db.APIKeyByID(ctx, flow.ID)
		if !got.RevokedAt.Equal(t0.Add(time.Hour)) {
			t.Errorf("RevokedAt = %v, want the first revocation %v", got.RevokedAt, t0.Add(time.Hour))
		}
		if _, err := db.RevokeAPIKey(ctx, "cccccccccccc", t0); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("RevokeAPIKey(missing) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("list oldest first, revoked included", func(t *testing.T) {
		ks, err := db.ListAPIKeys(ctx)
		if err != nil {
			t.Fatalf("ListAPIKeys: %v", err)
		}
		var ids []string
		for _, k := range ks {
			ids = append(ids, k.ID)
		}
		if want := []string{flow.ID, reader.ID}; !reflect.DeepEqual(ids, want) {
			t.Fatalf("ListAPIKeys ids = %v, want %v", ids, want)
		}
		if ks[0].RevokedAt.IsZero() || !reflect.DeepEqual(ks[1].Scopes, []string{permissions.ContactsRead}) || ks[1].SecretHash != "22bb" {
			t.Errorf("ListAPIKeys rows = %+v", ks)
		}
	})
}
