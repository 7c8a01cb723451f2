package apikeys_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/permissions"
)

// TestAPIKeyUseAudited shows that API key use is audited with the key id
// at most once per APIKeyTouchInterval, that the refusal of a known key is
// audited with its reason at most once per interval, that unknown and
// malformed keys are logged but write no row, and that neither the rows
// nor the log hold the secret.
func TestAPIKeyUseAudited(t *testing.T) {
	f := newKeyFixture(t)
	ctx := t.Context()
	key, info := f.create(t, "collector", permissions.AuditRead)
	rows := func(typ string) []audit.Event {
		t.Helper()
		es, err := f.Svc.Audit.ListAudit(ctx, audit.Filter{Type: typ})
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		return es
	}
	auth := func(k string) error {
		_, err := f.Svc.APIKeys.AuthenticateAPIKey(ctx, k)
		return err
	}

	for range 3 {
		if err := auth(key); err != nil {
			t.Fatalf("AuthenticateAPIKey: %v", err)
		}
		f.Clock.Advance(time.Second)
	}
	used := rows(audit.EventAPIKeyUsed)
	if len(used) != 1 || used[0].Actor != "apikey:"+info.ID || used[0].Detail != info.ID || !used[0].Time.Equal(keyT0) {
		t.Fatalf("used rows after three uses in a second each = %+v; want one, naming the key", used)
	}
	f.Clock.Advance(apikeys.APIKeyTouchInterval)
	if err := auth(key); err != nil {
		t.Fatal(err)
	}
	if n := len(rows(audit.EventAPIKeyUsed)); n != 2 {
		t.Errorf("used rows after the interval = %d; want 2", n)
	}

	wrong := key[:len(key)-2] + "AA"
	if wrong == key {
		wrong = key[:len(key)-2] + "BA"
	}
	for range 5 {
		if err := auth(wrong); !errors.Is(err, apikeys.ErrInvalidAPIKey) {
			t.Fatalf("wrong secret: %v", err)
		}
	}
	refused := rows(audit.EventAPIKeyRefused)
	if len(refused) != 1 || refused[0].Detail != info.ID+" "+apikeys.RefusedWrongSecret || refused[0].Actor != "apikey:"+info.ID {
		t.Fatalf("refused rows after five wrong secrets = %+v; want one with the reason", refused)
	}

	if err := f.Svc.APIKeys.RevokeAPIKey(ctx, info.ID, "cli"); err != nil {
		t.Fatal(err)
	}
	if err := auth(key); !errors.Is(err, apikeys.ErrInvalidAPIKey) {
		t.Fatalf("revoked key: %v", err)
	}
	if n := len(rows(audit.EventAPIKeyRefused)); n != 1 {
		t.Errorf("refused rows within the interval = %d; want still 1", n)
	}
	f.Clock.Advance(apikeys.APIKeyTouchInterval)
	_ = auth(key)
	if r := rows(audit.EventAPIKeyRefused); len(r) != 2 || r[0].Detail != info.ID+" "+apikeys.RefusedRevoked {
		t.Errorf("refused rows after the interval = %+v; want a second one, revoked", r)
	}

	expiring, exp, err := f.Svc.APIKeys.CreateAPIKey(ctx, "short", []string{permissions.UsersRead}, f.Clock.Now().Add(time.Hour), "cli")
	if err != nil {
		t.Fatal(err)
	}
	f.Clock.Advance(2 * time.Hour)
	_ = auth(expiring)
	if r := rows(audit.EventAPIKeyRefused); len(r) != 3 || r[0].Detail != exp.ID+" "+apikeys.RefusedExpired {
		t.Errorf("refused rows after an expired key = %+v; want a third one, expired", r)
	}

	before := len(rows(""))
	unknown := "cgk_aaaaaaaaaaaa_" + key[17:]
	for _, k := range []string{unknown, "nonsense", "", key + "x", strings.ToUpper(key)} {
		if err := auth(k); !errors.Is(err, apikeys.ErrInvalidAPIKey) {
			t.Errorf("AuthenticateAPIKey(%q) = %v; want ErrInvalidAPIKey", k, err)
		}
	}
	if after := len(rows("")); after != before {
		t.Errorf("unknown and malformed keys wrote %d audit rows; want none", after-before)
	}
	logged := f.logged.String()
	for _, want := range []string{"api_key_id=aaaaaaaaaaaa reason=unknown", "reason=malformed", "reason=wrong_secret", "reason=revoked", "reason=expired"} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, e := range rows("") {
		assertNoSecret(t, e.Detail+e.Actor+e.ClientAddr, key, "the audit trail")
		assertNoSecret(t, e.Detail+e.Actor+e.ClientAddr, expiring, "the audit trail")
	}
	assertNoSecret(t, logged, key, "the log")
	assertNoSecret(t, logged, expiring, "the log")
}

// TestAPIKeyRefusalAuditConcurrent: many concurrent refusals of one key
// within the interval write exactly one audit row.
func TestAPIKeyRefusalAuditConcurrent(t *testing.T) {
	f := newKeyFixture(t)
	key, info := f.create(t, "collector", permissions.AuditRead)
	wrong := key[:len(key)-2] + "AA"
	if wrong == key {
		wrong = key[:len(key)-2] + "BA"
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { _, _ = f.Svc.APIKeys.AuthenticateAPIKey(t.Context(), wrong) })
	}
	wg.Wait()
	es, err := f.Svc.Audit.ListAudit(t.Context(), audit.Filter{Type: audit.EventAPIKeyRefused})
	if err != nil || len(es) != 1 || es[0].Detail != info.ID+" "+apikeys.RefusedWrongSecret {
		t.Fatalf("refused rows = %+v, %v; want exactly one", es, err)
	}
}
