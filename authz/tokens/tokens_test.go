package tokens_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/authz/wiring"
)

// syncBuffer is a bytes.Buffer safe for a logger used from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is the token service over a real store of one dialect, with an
// injected clock, the audit trail and the log it writes.
type fixture struct {
	db    *store.DB
	svc   *tokens.Service
	audit *audit.Log
	clock *authztest.Clock
	logs  *syncBuffer
	user  *authz.User
}

var t0 = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, dbURL string, maxOutstanding int) *fixture {
	t.Helper()
	f := &fixture{clock: authztest.NewClock(t0), logs: &syncBuffer{}}
	var err error
	if f.db, err = store.Open(t.Context(), dbURL, store.WithNow(f.clock.Now)); err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { f.db.Close() })
	logger := slog.New(slog.NewTextHandler(f.logs, nil))
	f.audit = audit.New(f.db, f.clock.Now, logger)
	if f.svc, err = tokens.New(f.db, tokens.Options{Audit: f.audit, MaxOutstanding: maxOutstanding, Now: f.clock.Now, Logger: logger}); err != nil {
		t.Fatalf("tokens.New: %v", err)
	}
	f.user = &authz.User{Username: "ana", Email: "ana@example.com", Status: authz.StatusActive, SecurityStamp: "s"}
	if err := f.db.CreateUser(t.Context(), f.user); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return f
}

func (f *fixture) issue(t *testing.T, p tokens.Purpose, ttl time.Duration) (string, tokens.Token) {
	t.Helper()
	secret, tok, err := f.svc.Issue(t.Context(), p, f.user.ID, ttl, json.RawMessage(`{"email":"ana@example.com"}`))
	if err != nil {
		t.Fatalf("Issue(%s): %v", p, err)
	}
	return secret, tok
}

// events returns the audit events of typ, newest first.
func (f *fixture) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	evs, err := f.audit.ListAudit(t.Context(), audit.Filter{Type: typ, Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return evs
}

// lastRefusal returns the reason word of the newest token.refused event.
func (f *fixture) lastRefusal(t *testing.T) string {
	t.Helper()
	evs := f.events(t, audit.EventTokenRefused)
	if len(evs) == 0 {
		t.Fatal("no token.refused event")
	}
	fields := strings.Fields(evs[0].Detail)
	return fields[len(fields)-1]
}

// noSecretsLeak fails when a secret or its hash appears in the log or the
// audit trail.
func (f *fixture) noSecretsLeak(t *testing.T, secrets ...string) {
	t.Helper()
	all, err := f.audit.ListAudit(t.Context(), audit.Filter{Limit: authz.MaxListLimit})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	text, _ := json.Marshal(all)
	for _, s := range secrets {
		raw, _ := base64.RawURLEncoding.DecodeString(s)
		sum := sha256.Sum256(raw)
		for _, leak := range []string{s, hex.EncodeToString(sum[:])} {
			if strings.Contains(f.logs.String(), leak) || strings.Contains(string(text), leak) {
				t.Errorf("a secret or its hash leaked into the log or the audit trail: %s", leak)
			}
		}
	}
}

func eachDialect(t *testing.T, test func(t *testing.T, dbURL string)) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) { test(t, d.URL(t)) })
	}
}

func TestSecretShape(t *testing.T) {
	f := newFixture(t, storetest.SQLiteURL(t), 0)
	seen := map[string]bool{}
	for range 50 {
		s, tok := f.issue(t, tokens.PurposeConfirmEmail, time.Hour)
		if len(s) != tokens.SecretLen || strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("secret %q is not %d URL-safe characters", s, tokens.SecretLen)
		}
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(raw) != 32 {
			t.Fatalf("secret %q does not decode to 32 bytes: %v", s, err)
		}
		sum := sha256.Sum256(raw)
		if tok.SecretHash != hex.EncodeToString(sum[:]) {
			t.Fatalf("stored hash is not the SHA-256 of the secret")
		}
		if seen[s] {
			t.Fatal("a secret repeated")
		}
		seen[s] = true
	}
	if text, _ := json.Marshal(tokens.Token{SecretHash: "abc"}); strings.Contains(string(text), "abc") {
		t.Errorf("a token's JSON carries its hash: %s", text)
	}
}

// TestHostileSecrets presents secrets that must all be refused with the
// one error, and then shows that none of them spent the real token.
func TestHostileSecrets(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, 0)
		ctx := t.Context()
		secret, tok := f.issue(t, tokens.PurposeResetPassword, time.Hour)
		other, _ := f.issue(t, tokens.PurposeConfirmEmail, time.Hour)
		used, _ := f.issue(t, tokens.PurposeResetPassword, time.Hour)
		if _, err := f.svc.Consume(ctx, tokens.PurposeResetPassword, used); err != nil {
			t.Fatalf("Consume: %v", err)
		}
		raw, _ := base64.RawURLEncoding.DecodeString(secret)
		flip := func(i int) string {
			b := []byte(secret)
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}
		// The last character carries 4 bits of the secret and 2 zero bits;
		// setting a zero bit gives another text of the same bytes.
		nonCanonical := secret[:len(secret)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", secret[len(secret)-1])^1])
		cases := []struct {
			name, secret, reason string
		}{
			{"empty", "", tokens.RefusedMalformed},
			{"too long", secret + "A", tokens.RefusedMalformed},
			{"far too long", strings.Repeat(secret, 1000), tokens.RefusedMalformed},
			{"too short", secret[:len(secret)-1], tokens.RefusedMalformed},
			{"prefix", secret[:20], tokens.RefusedMalformed},
			{"padded", secret + "=", tokens.RefusedMalformed},
			{"standard base64", base64.StdEncoding.EncodeToString(raw), tokens.RefusedMalformed},
			{"non-base64", strings.Repeat("!", tokens.SecretLen), tokens.RefusedMalformed},
			{"spaces", " " + secret[1:], tokens.RefusedMalformed},
			{"NUL", secret[:42] + "\x00", tokens.RefusedMalformed},
			{"non-ASCII", secret[:41] + "é", tokens.RefusedMalformed},
			{"non-canonical spelling", nonCanonical, tokens.RefusedMalformed},
			{"the stored hash", tok.SecretHash, tokens.RefusedMalformed},
			{"the hash in base64url", base64.RawURLEncoding.EncodeToString(func() []byte { s := sha256.Sum256(raw); return s[:] }()), tokens.RefusedUnknown},
			{"first character flipped", flip(0), tokens.RefusedUnknown},
			{"middle character flipped", flip(21), tokens.RefusedUnknown},
			{"all zero", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), tokens.RefusedUnknown},
			{"another purpose's secret", other, tokens.RefusedWrongPurpose},
			{"a used secret", used, tokens.RefusedUsed},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got, err := f.svc.Consume(ctx, tokens.PurposeResetPassword, c.secret)
				if !errors.Is(err, tokens.ErrInvalidToken) || got != nil || err.Error() != tokens.ErrInvalidToken.Error() {
					t.Fatalf("Consume = %v, %v; want nil, exactly ErrInvalidToken", got, err)
				}
				if r := f.lastRefusal(t); r != c.reason {
					t.Errorf("audited reason = %q, want %q", r, c.reason)
				}
			})
		}
		for _, p := range []tokens.Purpose{"", "Reset", "reset password", "x\x00", tokens.Purpose(strings.Repeat("a", 65))} {
			if _, err := f.svc.Consume(ctx, p, secret); !errors.Is(err, tokens.ErrInvalidToken) {
				t.Errorf("Consume with purpose %q: %v, want ErrInvalidToken", p, err)
			}
		}
		if !strings.Contains(f.logs.String(), `purpose=invalid`) {
			t.Error("a bad purpose was not logged as invalid")
		}
		// None of that spent the token, nor the one of the other purpose.
		got, err := f.svc.Consume(ctx, tokens.PurposeResetPassword, secret)
		if err != nil || got.ID != tok.ID || got.UserID != f.user.ID || string(got.Payload) != `{"email":"ana@example.com"}` {
			t.Fatalf("Consume(the real secret) = %+v, %v", got, err)
		}
		if _, err := f.svc.Consume(ctx, tokens.PurposeConfirmEmail, other); err != nil {
			t.Errorf("Consume(other purpose's secret for its purpose): %v", err)
		}
		f.noSecretsLeak(t, secret, other, used)
	})
}

// TestExpiry moves the injected clock over the expiry instant.
func TestExpiry(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, 0)
		a, tok := f.issue(t, tokens.PurposeConfirmEmail, 24*time.Hour)
		b, _ := f.issue(t, tokens.PurposeConfirmEmail, 24*time.Hour)
		if !tok.ExpiresAt.Equal(t0.Add(24 * time.Hour)) {
			t.Fatalf("ExpiresAt = %v, want issue time + ttl", tok.ExpiresAt)
		}
		f.clock.Advance(24*time.Hour - time.Millisecond)
		if _, err := f.svc.Consume(t.Context(), tokens.PurposeConfirmEmail, a); err != nil {
			t.Errorf("Consume a millisecond before expiry: %v", err)
		}
		f.clock.Advance(time.Millisecond)
		if _, err := f.svc.Consume(t.Context(), tokens.PurposeConfirmEmail, b); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("Consume at expiry: %v, want ErrInvalidToken", err)
		}
		if r := f.lastRefusal(t); r != tokens.RefusedExpired {
			t.Errorf("reason = %q, want expired", r)
		}
	})
}

// TestReuseAndAudit consumes a token twice and reads the audit trail.
func TestReuseAndAudit(t *testing.T) {
	f := newFixture(t, storetest.SQLiteURL(t), 0)
	ctx := t.Context()
	s, tok := f.issue(t, tokens.PurposeSetPassword, time.Hour)
	f.clock.Advance(time.Minute)
	got, err := f.svc.Consume(ctx, tokens.PurposeSetPassword, s)
	if err != nil || !got.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Consume = %+v, %v", got, err)
	}
	if _, err := f.svc.Consume(ctx, tokens.PurposeSetPassword, s); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("second Consume: %v, want ErrInvalidToken", err)
	}
	if r := f.lastRefusal(t); r != tokens.RefusedUsed {
		t.Errorf("reason = %q, want used", r)
	}
	for typ, want := range map[string]string{
		audit.EventTokenIssued:   "set_password 1 expires 2026-05-01T10:00:00Z",
		audit.EventTokenConsumed: "set_password 1",
		audit.EventTokenRefused:  "set_password 1 used",
	} {
		evs := f.events(t, typ)
		if len(evs) != 1 || evs[0].Detail != want || evs[0].UserID != f.user.ID {
			t.Errorf("%s events = %+v, want one about the user with detail %q", typ, evs, want)
		}
	}
	if tok.ID != 1 {
		t.Errorf("first token id = %d", tok.ID)
	}
	f.noSecretsLeak(t, s)
}

// TestRevokeForUser shows that a password change can kill reset links.
func TestRevokeForUser(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		f := newFixture(t, dbURL, 0)
		ctx := t.Context()
		r1, _ := f.issue(t, tokens.PurposeResetPassword, time.Hour)
		r2, _ := f.issue(t, tokens.PurposeResetPassword, time.Hour)
		c, _ := f.issue(t, tokens.PurposeConfirmEmail, time.Hour)
		n, err := f.svc.RevokeForUser(ctx, f.user.ID, tokens.PurposeResetPassword)
		if err != nil || n != 2 {
			t.Fatalf("RevokeForUser = %d, %v; want 2", n, err)
		}
		for _, s := range []string{r1, r2} {
			if _, err := f.svc.Consume(ctx, tokens.PurposeResetPassword, s); !errors.Is(err, tokens.ErrInvalidToken) {
				t.Errorf("Consume(revoked) = %v", err)
			}
			if r := f.lastRefusal(t); r != tokens.RefusedRevoked {
				t.Errorf("reason = %q, want revoked", r)
			}
		}
		if evs := f.events(t, audit.EventTokenRevoked); len(evs) != 1 || evs[0].Detail != "reset_password 2" {
			t.Errorf("token.revoked events = %+v", evs)
		}
		if n, err := f.svc.RevokeForUser(ctx, f.user.ID, tokens.PurposeResetPassword); err != nil || n != 0 {
			t.Errorf("second RevokeForUser = %d, %v; want 0", n, err)
		}
		if n, err := f.svc.RevokeForUser(ctx, f.user.ID, ""); err != nil || n != 1 {
			t.Errorf("RevokeForUser(all) = %d, %v; want 1", n, err)
		}
		if _, err := f.svc.Consume(ctx, tokens.PurposeConfirmEmail, c); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("Consume after RevokeForUser(all) = %v", err)
		}
		if evs := f.events(t, audit.EventTokenRevoked); len(evs) != 2 || evs[0].Detail != "all 1" {
			t.Errorf("token.revoked events = %+v", evs)
		}
		for _, bad := range []struct {
			user string
			p    tokens.Purpose
		}{{"", tokens.PurposeResetPassword}, {f.user.ID, "Bad Purpose"}} {
			var ve *authz.ValidationError
			if _, err := f.svc.RevokeForUser(ctx, bad.user, bad.p); !errors.As(err, &ve) {
				t.Errorf("RevokeForUser(%q, %q) = %v, want a ValidationError", bad.user, bad.p, err)
			}
		}
	})
}

// TestMaxOutstanding shows that resending a link revokes the older one.
func TestMaxOutstanding(t *testing.T) {
	f := newFixture(t, storetest.SQLiteURL(t), 1)
	ctx := t.Context()
	first, _ := f.issue(t, tokens.PurposeConfirmEmail, time.Hour)
	reset, _ := f.issue(t, tokens.PurposeResetPassword, time.Hour)
	second, _ := f.issue(t, tokens.PurposeConfirmEmail, time.Hour)
	if _, err := f.svc.Consume(ctx, tokens.PurposeConfirmEmail, first); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("Consume(first after a resend) = %v, want ErrInvalidToken", err)
	}
	if r := f.lastRefusal(t); r != tokens.RefusedRevoked {
		t.Errorf("reason = %q, want revoked", r)
	}
	for _, c := range []struct {
		p tokens.Purpose
		s string
	}{{tokens.PurposeConfirmEmail, second}, {tokens.PurposeResetPassword, reset}} {
		if _, err := f.svc.Consume(ctx, c.p, c.s); err != nil {
			t.Errorf("Consume(%s newest) = %v", c.p, err)
		}
	}
	// Invitations to an address share no user, so the cap does not apply.
	var invites []string
	for range 3 {
		s, _, err := f.svc.Issue(ctx, tokens.PurposeInvitation, "", time.Hour, nil)
		if err != nil {
			t.Fatalf("Issue(invitation): %v", err)
		}
		invites = append(invites, s)
	}
	for _, s := range invites {
		if tok, err := f.svc.Consume(ctx, tokens.PurposeInvitation, s); err != nil || tok.UserID != "" || tok.Payload != nil {
			t.Errorf("Consume(invitation) = %+v, %v", tok, err)
		}
	}
	if _, err := tokens.New(f.db, tokens.Options{Audit: f.audit, MaxOutstanding: -1}); err == nil {
		t.Error("New with a negative MaxOutstanding succeeded")
	}
	if _, err := tokens.New(f.db, tokens.Options{}); err == nil {
		t.Error("New without an audit log succeeded")
	}
}

// TestIssueInput refuses bad input before anything is stored.
func TestIssueInput(t *testing.T) {
	f := newFixture(t, storetest.SQLiteURL(t), 0)
	ctx := t.Context()
	cases := []struct {
		name    string
		p       tokens.Purpose
		user    string
		ttl     time.Duration
		payload string
		field   string
	}{
		{"no purpose", "", "", time.Hour, "", "purpose"},
		{"purpose with a space", "reset password", "", time.Hour, "", "purpose"},
		{"upper-case purpose", "Reset", "", time.Hour, "", "purpose"},
		{"long purpose", tokens.Purpose(strings.Repeat("a", 65)), "", time.Hour, "", "purpose"},
		{"zero ttl", tokens.PurposeInvitation, "", 0, "", "ttl"},
		{"negative ttl", tokens.PurposeInvitation, "", -time.Hour, "", "ttl"},
		{"ttl above the maximum", tokens.PurposeInvitation, "", tokens.MaxTTL + time.Second, "", "ttl"},
		{"payload not JSON", tokens.PurposeInvitation, "", time.Hour, "{", "payload"},
		{"payload too big", tokens.PurposeInvitation, "", time.Hour, `"` + strings.Repeat("a", tokens.MaxPayload) + `"`, "payload"},
		{"user id with a control character", tokens.PurposeConfirmEmail, "a\nb", time.Hour, "", "user_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ve *authz.ValidationError
			if _, _, err := f.svc.Issue(ctx, c.p, c.user, c.ttl, json.RawMessage(c.payload)); !errors.As(err, &ve) || ve.Field != c.field {
				t.Errorf("Issue = %v, want a ValidationError on %s", err, c.field)
			}
		})
	}
	if _, _, err := f.svc.Issue(ctx, tokens.PurposeConfirmEmail, "no-such-user", time.Hour, nil); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("Issue(unknown user) = %v, want ErrNotFound", err)
	}
	if evs := f.events(t, audit.EventTokenIssued); len(evs) != 0 {
		t.Errorf("refused issues were audited as issued: %+v", evs)
	}
	if _, _, err := f.svc.Issue(ctx, "custom_purpose", "", tokens.MaxTTL, json.RawMessage(`[1,2]`)); err != nil {
		t.Errorf("Issue(custom purpose, MaxTTL) = %v", err)
	}
}

// TestIssueWith enqueues the mail carrying the link with the token, and
// stores nothing when building the mail fails.
func TestIssueWith(t *testing.T) {
	f := newFixture(t, storetest.SQLiteURL(t), 0)
	ctx := t.Context()
	var seen string
	secret, _, err := f.svc.IssueWith(ctx, tokens.PurposeConfirmEmail, f.user.ID, time.Hour, nil, func(s string) ([]outbox.Event, error) {
		seen = s
		return []outbox.Event{{Kind: "mail", Type: "confirm", Payload: json.RawMessage(`{"link":"https://example.com/.auth/confirm?t=` + s + `"}`)}}, nil
	})
	if err != nil || seen != secret {
		t.Fatalf("IssueWith = %v; builder saw %q, caller got %q", err, seen, secret)
	}
	evs, err := f.db.OutboxEvents(ctx, f.user.ID)
	if err != nil || len(evs) != 1 || !strings.Contains(string(evs[0].Payload), secret) {
		t.Fatalf("outbox = %+v, %v; want the mail with the link", evs, err)
	}
	boom := errors.New("template broken")
	if _, _, err := f.svc.IssueWith(ctx, tokens.PurposeConfirmEmail, f.user.ID, time.Hour, nil, func(string) ([]outbox.Event, error) {
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Errorf("IssueWith(failing builder) = %v", err)
	}
	// A bad event rolls the token back with it.
	if _, _, err := f.svc.IssueWith(ctx, tokens.PurposeConfirmEmail, f.user.ID, time.Hour, nil, func(string) ([]outbox.Event, error) {
		return []outbox.Event{{Kind: "", Type: ""}}, nil
	}); err == nil {
		t.Error("IssueWith with an event the outbox refuses succeeded")
	}
	if n, err := f.svc.RevokeForUser(ctx, f.user.ID, ""); err != nil || n != 1 {
		t.Errorf("outstanding tokens = %d, %v; want only the first", n, err)
	}
}

// TestSweep deletes dead tokens after the retention and keeps live ones.
func TestSweep(t *testing.T) {
	f := newFixture(t, storetest.SQLiteURL(t), 0)
	ctx := t.Context()
	short, _ := f.issue(t, tokens.PurposeResetPassword, time.Hour)
	long, _ := f.issue(t, tokens.PurposeConfirmEmail, 72*time.Hour)
	used, _ := f.issue(t, tokens.PurposeSetPassword, 72*time.Hour)
	if _, err := f.svc.Consume(ctx, tokens.PurposeSetPassword, used); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour)
	if n, err := f.svc.Sweep(ctx, 24*time.Hour); err != nil || n != 0 {
		t.Errorf("Sweep within the retention = %d, %v; want 0", n, err)
	}
	f.clock.Advance(24 * time.Hour)
	if n, err := f.svc.Sweep(ctx, 24*time.Hour); err != nil || n != 2 {
		t.Errorf("Sweep = %d, %v; want 2", n, err)
	}
	if _, err := f.svc.Consume(ctx, tokens.PurposeSetPassword, used); !errors.Is(err, tokens.ErrInvalidToken) || f.lastRefusal(t) != tokens.RefusedUnknown {
		t.Errorf("a swept used token: %v, %s", err, f.lastRefusal(t))
	}
	if _, err := f.svc.Consume(ctx, tokens.PurposeResetPassword, short); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("a swept expired token: %v", err)
	}
	if _, err := f.svc.Consume(ctx, tokens.PurposeConfirmEmail, long); err != nil {
		t.Errorf("the sweep killed an outstanding token: %v", err)
	}
	if _, err := f.svc.Sweep(ctx, -time.Second); err == nil {
		t.Error("Sweep with a negative retention succeeded")
	}
}

// TestConcurrentConsume races goroutines for one token through the
// service on both databases: exactly one wins, each loser gets
// ErrInvalidToken, and exactly one consumption is audited.
func TestConcurrentConsume(t *testing.T) {
	eachDialect(t, func(t *testing.T, dbURL string) {
		const racers = 24
		f := newFixture(t, dbURL, 0)
		for round := range 5 {
			secret, _ := f.issue(t, tokens.PurposeInvitation, time.Hour)
			var wins atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range racers {
				wg.Go(func() {
					<-start
					tok, err := f.svc.Consume(t.Context(), tokens.PurposeInvitation, secret)
					switch {
					case err == nil && tok != nil:
						wins.Add(1)
					case !errors.Is(err, tokens.ErrInvalidToken):
						t.Errorf("Consume: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("round %d: %d winners of %d, want exactly 1", round, wins.Load(), racers)
			}
			if n := len(f.events(t, audit.EventTokenConsumed)); n != round+1 {
				t.Fatalf("round %d: %d consumptions audited, want %d", round, n, round+1)
			}
		}
	})
}

// TestWiring shows that the identity layer builds the token service with
// the cap it is given and its clock, and audits into the one trail.
func TestWiring(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{MaxOutstandingTokens: 1})
	u := f.CreateUser(t, "ana", authz.StatusActive)
	ctx := t.Context()
	first, _, err := f.Svc.Tokens.Issue(ctx, tokens.PurposeResetPassword, u.ID, time.Hour, nil)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	second, tok, err := f.Svc.Tokens.Issue(ctx, tokens.PurposeResetPassword, u.ID, time.Hour, nil)
	if err != nil || !tok.CreatedAt.Equal(f.Clock.Now()) {
		t.Fatalf("Issue = %+v, %v; want the fixture's clock", tok, err)
	}
	if _, err := f.Svc.Tokens.Consume(ctx, tokens.PurposeResetPassword, first); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("the cap of 1 did not reach the service: %v", err)
	}
	if _, err := f.Svc.Tokens.Consume(ctx, tokens.PurposeResetPassword, second); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if e := f.LastAudit(t, audit.EventTokenConsumed); e.UserID != u.ID {
		t.Errorf("consumption not in the audit trail: %+v", e)
	}
}

// TestRunSweeper: the periodic sweep deletes a used token once the
// injected clock passes its retention, keeps an outstanding one, logs the
// count, and stops with its context.
func TestRunSweeper(t *testing.T) {
	f := newFixture(t, storetest.SQLiteURL(t), 0)
	ctx, cancel := context.WithCancel(t.Context())
	used, usedTok := f.issue(t, tokens.PurposeSetPassword, 72*time.Hour)
	_, liveTok := f.issue(t, tokens.PurposeConfirmEmail, 30*24*time.Hour)
	if _, err := f.svc.Consume(ctx, tokens.PurposeSetPassword, used); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.svc.RunSweeper(ctx, 5*time.Millisecond, 24*time.Hour) }()
	gone := func(tok tokens.Token) bool {
		_, err := f.db.TokenByHash(t.Context(), tok.SecretHash)
		return errors.Is(err, authz.ErrNotFound)
	}
	time.Sleep(50 * time.Millisecond) // several sweeps within the retention
	if gone(usedTok) {
		t.Fatal("the used token was swept within its retention")
	}
	f.clock.Advance(25 * time.Hour)
	for deadline := time.Now().Add(5 * time.Second); !gone(usedTok); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the used token was not swept after its retention")
		}
	}
	if gone(liveTok) {
		t.Error("the sweep deleted an outstanding token")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("RunSweeper returned %v, want context.Canceled", err)
	}
	if !strings.Contains(f.logs.String(), "one-time tokens swept") || !strings.Contains(f.logs.String(), "deleted=1") {
		t.Errorf("logs:\n%s", f.logs)
	}
	if err := f.svc.RunSweeper(t.Context(), -time.Second, 0); err == nil {
		t.Error("a negative interval was accepted")
	}
}
