package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/tokens"
)

// TestGatewayTokens shows the wiring of the one-time tokens: the
// configured cap (CRMGATE_TOKENS_MAX_OUTSTANDING) revokes the oldest link
// beyond it, and the gateway's periodic sweep deletes a used token once
// the (injected) clock passes CRMGATE_TOKENS_RETENTION, not before.
func TestGatewayTokens(t *testing.T) {
	clock := authztest.NewClock(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	cfg, err := loadConfig(baseEnv(t, t.TempDir(), "CRMGATE_TOKENS_MAX_OUTSTANDING=2", "CRMGATE_TOKENS_RETENTION=48h", "CRMGATE_SHUTDOWN_DELAY=0s"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := buildGateway(ctx, cfg, io.Discard, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := g.auth.Accounts.CreateUser(ctx, accounts.NewUser{Username: "ana", Email: "ana@example.test", Password: "correct horse battery"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	var toks []tokens.Token
	var secrets []string
	for range 3 {
		s, tok, err := g.auth.Tokens.Issue(ctx, tokens.PurposeResetPassword, u.ID, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		secrets, toks = append(secrets, s), append(toks, tok)
	}
	if _, err := g.auth.Tokens.Consume(ctx, tokens.PurposeResetPassword, secrets[0]); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("the oldest of three links with a cap of 2: %v, want it revoked", err)
	}
	if _, err := g.auth.Tokens.Consume(ctx, tokens.PurposeResetPassword, secrets[2]); err != nil {
		t.Fatalf("the newest link: %v", err)
	}

	g.sweepEvery = 5 * time.Millisecond
	pub, ops, err := listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serveGateway(ctx, cfg, g, slog.New(slog.DiscardHandler), pub, ops) }()
	exists := func(tok tokens.Token) bool {
		_, err := g.store.TokenByHash(ctx, tok.SecretHash)
		if err != nil && !errors.Is(err, authz.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	time.Sleep(50 * time.Millisecond) // sweeps within the retention
	if !exists(toks[2]) {
		t.Fatal("the used token was swept within the retention")
	}
	clock.Advance(49 * time.Hour)
	for deadline := time.Now().Add(5 * time.Second); exists(toks[2]) || exists(toks[0]); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the used and the revoked token were not swept after the retention")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveGateway returned %v", err)
	}
}
