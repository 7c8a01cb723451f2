package store

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/tokens"
)

func TestTokensSQLite(t *testing.T)   { runTokenSuite(t, sqliteURL) }
func TestTokensPostgres(t *testing.T) { runTokenSuite(t, postgresURL) }

// runTokenSuite is the one-time token part of the store suite, on one dialect.
func runTokenSuite(t *testing.T, newURL opener) {
	open := dbOpener(newURL)
	t.Run("Lifecycle", func(t *testing.T) { testTokenLifecycle(t, open(t)) })
	t.Run("Keep", func(t *testing.T) { testTokenKeep(t, open(t)) })
	t.Run("ConcurrentConsume", func(t *testing.T) { testTokenConcurrentConsume(t, open(t)) })
	t.Run("ConcurrentIssueKeepsCap", func(t *testing.T) { testTokenConcurrentIssue(t, open(t)) })
}

var tokenT0 = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

func issue(t *testing.T, db *DB, purpose tokens.Purpose, userID, hash string, ttl time.Duration, keep int, events ...outbox.Event) *tokens.Token {
	t.Helper()
	tok := &tokens.Token{Purpose: purpose, UserID: userID, SecretHash: hash, CreatedAt: tokenT0, ExpiresAt: tokenT0.Add(ttl)}
	if err := db.IssueToken(t.Context(), tok, keep, events...); err != nil {
		t.Fatalf("IssueToken(%s): %v", hash, err)
	}
	return tok
}

// testTokenLifecycle shows the round trip with and without a user and a
// payload, that consuming needs the right purpose, works once and not
// after expiry, that revocation and deleting the user kill tokens, that the
// sweep keeps outstanding tokens, and the input errors.
func testTokenLifecycle(t *testing.T, db *DB) {
	ctx := t.Context()
	u := mustCreate(t, db, newUser("tok"))
	reset := &tokens.Token{Purpose: tokens.PurposeResetPassword, UserID: u.ID, SecretHash: "aa01",
		Payload: []byte(`{"email":"tok@example.com"}`), CreatedAt: tokenT0.Add(123 * time.Microsecond), ExpiresAt: tokenT0.Add(time.Hour)}
	mail := outbox.Event{Kind: "mail", Type: "reset"}
	if err := db.IssueToken(ctx, reset, 0, mail); err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	if reset.ID == 0 || !reset.CreatedAt.Equal(tokenT0) {
		t.Fatalf("IssueToken did not set the id or truncate: %+v", reset)
	}
	evs, err := db.OutboxEvents(ctx, u.ID)
	if err != nil || len(evs) != 1 || evs[0].Kind != "mail" {
		t.Fatalf("outbox after IssueToken = %+v, %v; want the mail event", evs, err)
	}
	invite := issue(t, db, tokens.PurposeInvitation, "", "bb02", 24*time.Hour, 1)

	got, err := db.TokenByHash(ctx, "aa01")
	if err != nil || !reflect.DeepEqual(got, reset) {
		t.Fatalf("TokenByHash = %+v, %v; want %+v", got, err, reset)
	}
	got, err = db.TokenByHash(ctx, "bb02")
	if err != nil || got.UserID != "" || got.Payload != nil {
		t.Fatalf("TokenByHash(invitation) = %+v, %v", got, err)
	}
	if _, err := db.TokenByHash(ctx, "cc03"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("TokenByHash(unknown) error = %v, want ErrNotFound", err)
	}

	t.Run("bad input", func(t *testing.T) {
		if err := db.IssueToken(ctx, &tokens.Token{Purpose: tokens.PurposeConfirmEmail, UserID: "nobody", SecretHash: "dd04",
			CreatedAt: tokenT0, ExpiresAt: tokenT0.Add(time.Hour)}, 1); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("IssueToken(unknown user) error = %v, want ErrNotFound", err)
		}
		if err := db.IssueToken(ctx, &tokens.Token{Purpose: tokens.PurposeConfirmEmail, SecretHash: "aa01",
			CreatedAt: tokenT0, ExpiresAt: tokenT0.Add(time.Hour)}, 0); !errors.Is(err, authz.ErrConflict) {
			t.Errorf("IssueToken(hash in use) error = %v, want ErrConflict", err)
		}
		for _, bad := range []*tokens.Token{{SecretHash: "ee05", ExpiresAt: tokenT0}, {Purpose: "x", ExpiresAt: tokenT0}, {Purpose: "x", SecretHash: "ee06"}} {
			if err := db.IssueToken(ctx, bad, 0); err == nil {
				t.Errorf("IssueToken(%+v) succeeded", bad)
			}
		}
		// A refused issue rolls back its outbox events.
		if err := db.IssueToken(ctx, &tokens.Token{Purpose: tokens.PurposeConfirmEmail, UserID: u.ID, SecretHash: "aa01",
			CreatedAt: tokenT0, ExpiresAt: tokenT0.Add(time.Hour)}, 0, mail); err == nil {
			t.Fatal("IssueToken with a used hash succeeded")
		}
		if evs, _ := db.OutboxEvents(ctx, u.ID); len(evs) != 1 {
			t.Errorf("a failed IssueToken left outbox events: %+v", evs)
		}
	})

	t.Run("consume", func(t *testing.T) {
		if _, err := db.ConsumeToken(ctx, tokens.PurposeConfirmEmail, "aa01", tokenT0.Add(time.Minute)); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("ConsumeToken(wrong purpose) error = %v, want ErrNotFound", err)
		}
		if _, err := db.ConsumeToken(ctx, tokens.PurposeResetPassword, "aa01", tokenT0.Add(time.Hour)); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("ConsumeToken(at expiry) error = %v, want ErrNotFound", err)
		}
		got, err := db.ConsumeToken(ctx, tokens.PurposeResetPassword, "aa01", tokenT0.Add(time.Minute))
		if err != nil || got.ID != reset.ID || !got.UsedAt.Equal(tokenT0.Add(time.Minute)) || string(got.Payload) != string(reset.Payload) {
			t.Fatalf("ConsumeToken = %+v, %v", got, err)
		}
		if _, err := db.ConsumeToken(ctx, tokens.PurposeResetPassword, "aa01", tokenT0.Add(2*time.Minute)); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("second ConsumeToken error = %v, want ErrNotFound", err)
		}
		got, _ = db.TokenByHash(ctx, "aa01")
		if !got.UsedAt.Equal(tokenT0.Add(time.Minute)) {
			t.Errorf("UsedAt = %v, want the first consumption", got.UsedAt)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		c := issue(t, db, tokens.PurposeConfirmEmail, u.ID, "ff07", time.Hour, 0)
		s := issue(t, db, tokens.PurposeSetPassword, u.ID, "ff08", time.Hour, 0)
		r := issue(t, db, tokens.PurposeResetPassword, u.ID, "ff09", time.Hour, 0)
		at := tokenT0.Add(time.Minute)
		if n, err := db.RevokeTokens(ctx, u.ID, tokens.PurposeResetPassword, at); err != nil || n != 1 {
			t.Errorf("RevokeTokens(reset) = %d, %v; want 1 (the used one is left alone)", n, err)
		}
		if _, err := db.ConsumeToken(ctx, tokens.PurposeResetPassword, r.SecretHash, at); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("ConsumeToken(revoked) error = %v, want ErrNotFound", err)
		}
		if n, err := db.RevokeTokens(ctx, u.ID, "", at); err != nil || n != 2 {
			t.Errorf("RevokeTokens(all) = %d, %v; want 2", n, err)
		}
		for _, tok := range []*tokens.Token{c, s, r} {
			got, _ := db.TokenByHash(ctx, tok.SecretHash)
			if !got.RevokedAt.Equal(at) || !got.UsedAt.IsZero() {
				t.Errorf("token %s after revocation: %+v", tok.SecretHash, got)
			}
		}
		if _, err := db.RevokeTokens(ctx, "", "", at); err == nil {
			t.Error("RevokeTokens without a user succeeded")
		}
		if got, _ := db.TokenByHash(ctx, invite.SecretHash); !got.RevokedAt.IsZero() {
			t.Errorf("revoking a user's tokens touched an invitation without a user: %+v", got)
		}
	})

	t.Run("sweep", func(t *testing.T) {
		live := issue(t, db, tokens.PurposeConfirmEmail, u.ID, "1110", 48*time.Hour, 0)
		// At +25h: the invitation expired, the rest was used or revoked at
		// about +1m; only the 48 h token is outstanding.
		n, err := db.SweepTokens(ctx, tokenT0.Add(25*time.Hour))
		if err != nil || n != 5 {
			t.Errorf("SweepTokens = %d, %v; want 5", n, err)
		}
		if _, err := db.TokenByHash(ctx, live.SecretHash); err != nil {
			t.Errorf("the sweep deleted an outstanding token: %v", err)
		}
		if _, err := db.TokenByHash(ctx, invite.SecretHash); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("the expired invitation survived the sweep: %v", err)
		}
		if err := db.DeleteUser(ctx, u.ID); err != nil {
			t.Fatalf("DeleteUser: %v", err)
		}
		if _, err := db.TokenByHash(ctx, live.SecretHash); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("a deleted user's token survived: %v", err)
		}
	})
}

// testTokenKeep shows the per-user cap: issuing a token revokes all but
// the keep newest outstanding ones of that user and purpose, and nothing of
// other users or purposes.
func testTokenKeep(t *testing.T, db *DB) {
	ctx := t.Context()
	u := mustCreate(t, db, newUser("keep"))
	other := mustCreate(t, db, newUser("other"))
	o := issue(t, db, tokens.PurposeConfirmEmail, other.ID, "o1", time.Hour, 1)
	p := issue(t, db, tokens.PurposeResetPassword, u.ID, "p1", time.Hour, 1)
	var hs []string
	for i := range 4 {
		h := fmt.Sprintf("k%d", i)
		issue(t, db, tokens.PurposeConfirmEmail, u.ID, h, time.Hour, 2)
		hs = append(hs, h)
	}
	for i, h := range hs {
		got, _ := db.TokenByHash(ctx, h)
		if revoked := !got.RevokedAt.IsZero(); revoked != (i < 2) {
			t.Errorf("token %d of 4 with keep 2: revoked = %v", i, revoked)
		}
	}
	issue(t, db, tokens.PurposeConfirmEmail, u.ID, "k4", time.Hour, 1)
	for _, h := range []string{"k3"} {
		if got, _ := db.TokenByHash(ctx, h); got.RevokedAt.IsZero() {
			t.Errorf("token %s outstanding after an issue with keep 1", h)
		}
	}
	for _, tok := range []*tokens.Token{o, p} {
		if got, _ := db.TokenByHash(ctx, tok.SecretHash); !got.RevokedAt.IsZero() {
			t.Errorf("the cap revoked %s of another user or purpose", tok.SecretHash)
		}
	}
}

// testTokenConcurrentConsume races many goroutines consuming one token,
// round after round: exactly one wins each time.
func testTokenConcurrentConsume(t *testing.T, db *DB) {
	const rounds, racers = 20, 16
	u := mustCreate(t, db, newUser("race"))
	for r := range rounds {
		h := fmt.Sprintf("race%d", r)
		issue(t, db, tokens.PurposeResetPassword, u.ID, h, time.Hour, 0)
		var wins, fails atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range racers {
			wg.Go(func() {
				<-start
				_, err := db.ConsumeToken(t.Context(), tokens.PurposeResetPassword, h, tokenT0.Add(time.Minute))
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, authz.ErrNotFound):
					fails.Add(1)
				default:
					t.Errorf("ConsumeToken: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || fails.Load() != racers-1 {
			t.Fatalf("round %d: %d winners and %d refusals of %d racers, want exactly one winner", r, wins.Load(), fails.Load(), racers)
		}
	}
}

// testTokenConcurrentIssue issues tokens of one user and purpose from many
// goroutines with keep 1: afterwards exactly one is outstanding.
func testTokenConcurrentIssue(t *testing.T, db *DB) {
	const racers = 12
	u := mustCreate(t, db, newUser("resend"))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			tok := &tokens.Token{Purpose: tokens.PurposeConfirmEmail, UserID: u.ID, SecretHash: fmt.Sprintf("resend%d", i),
				CreatedAt: tokenT0, ExpiresAt: tokenT0.Add(time.Hour)}
			if err := db.IssueToken(t.Context(), tok, 1); err != nil {
				t.Errorf("IssueToken: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	outstanding := 0
	for i := range racers {
		got, err := db.TokenByHash(t.Context(), fmt.Sprintf("resend%d", i))
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		if got.Outstanding(tokenT0) {
			outstanding++
		}
	}
	if outstanding != 1 {
		t.Errorf("%d tokens outstanding after %d concurrent issues with keep 1, want 1", outstanding, racers)
	}
}
