package apikeys_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/permissions"
)

// TestLegacyScopeKeys: a key stored by an earlier version with the scope
// names users:bind, users:password and users:invite keeps working with the
// permissions that replace them (bindings:write, users:credentials); a
// stored name no version knows allows nothing and is logged; and creating
// a key with an old name stores the new one.
func TestLegacyScopeKeys(t *testing.T) {
	f := newKeyFixture(t)
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i * 7)
	}
	sum := sha256.Sum256(secret)
	stored := &apikeys.Key{ID: "legacykey234", Name: "old flow", SecretHash: hex.EncodeToString(sum[:]),
		Scopes: []string{"users:read", "users:bind", "users:password", "users:frob"}, CreatedBy: "cli:root"}
	if err := f.store.Store.CreateAPIKey(t.Context(), stored); err != nil {
		t.Fatal(err)
	}
	text := apikeys.APIKeyPrefix + stored.ID + "_" + base64.RawURLEncoding.EncodeToString(secret)
	k, err := f.Svc.APIKeys.AuthenticateAPIKey(t.Context(), text)
	if err != nil {
		t.Fatalf("AuthenticateAPIKey: %v", err)
	}
	if want := []string{permissions.UsersRead, permissions.UsersCredentials, permissions.BindingsWrite}; !slices.Equal(k.Scopes, want) {
		t.Errorf("scopes = %v, want %v", k.Scopes, want)
	}
	for _, p := range []string{permissions.UsersRead, permissions.BindingsWrite, permissions.UsersCredentials} {
		if !k.HasScope(p) {
			t.Errorf("legacy key lacks %s", p)
		}
	}
	for _, p := range []string{permissions.AuditRead, permissions.UsersWrite, "users:frob", "users:bind"} {
		if k.HasScope(p) {
			t.Errorf("legacy key has %s", p)
		}
	}
	// HasScope reads the names itself too, for a Key not read through the service.
	if !stored.HasScope(permissions.BindingsWrite) || stored.HasScope("users:frob") {
		t.Error("HasScope of the stored key")
	}
	if !strings.Contains(f.logged.String(), "unknown scopes") || !strings.Contains(f.logged.String(), "users:frob") {
		t.Errorf("the unknown scope is not logged:\n%s", f.logged.String())
	}
	ks, err := f.Svc.APIKeys.ListAPIKeys(t.Context())
	if err != nil || len(ks) != 1 || !slices.Equal(ks[0].Scopes, k.Scopes) {
		t.Errorf("ListAPIKeys = %+v, %v", ks, err)
	}

	_, created, err := f.Svc.APIKeys.CreateAPIKey(t.Context(), "new", []string{"users:invite", "users:bind", permissions.BindingsWrite}, keyT0.AddDate(0, 0, 1), "cli:root")
	if err != nil || !slices.Equal(created.Scopes, []string{permissions.UsersCredentials, permissions.BindingsWrite}) {
		t.Fatalf("created with old names: %+v, %v", created, err)
	}
}
