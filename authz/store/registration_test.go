package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/tokens"
)

func TestRegistrationsSQLite(t *testing.T)   { runRegistrationSuite(t, sqliteURL) }
func TestRegistrationsPostgres(t *testing.T) { runRegistrationSuite(t, postgresURL) }

// runRegistrationSuite is the self-registration part of the store suite.
func runRegistrationSuite(t *testing.T, newURL opener) {
	open := dbOpener(newURL)
	t.Run("CreateAtomic", func(t *testing.T) { testRegistrationCreate(t, open(t)) })
	t.Run("ConcurrentAdvance", func(t *testing.T) { testRegistrationConcurrentAdvance(t, open(t)) })
}

func newRegUser(id, email string) *authz.User {
	return &authz.User{ID: id, Username: email, Email: email, Status: authz.StatusActive, SecurityStamp: "s-" + id,
		Binding: authz.Binding{Mode: authz.BindingNone}, CreatedAt: tokenT0}
}

// testRegistrationCreate: the account, its registration, its token and
// its mail are created together, or not at all.
func testRegistrationCreate(t *testing.T, db *DB) {
	ctx := t.Context()
	u := newRegUser("u1", "eve@example.com")
	r := &registration.Registration{State: registration.StateConfirming, Fields: map[string]string{"telephone1": "+1 555"}, ContactID: "c-1"}
	tok := &tokens.Token{Purpose: tokens.PurposeConfirmEmail, UserID: "u1", SecretHash: "h1", CreatedAt: tokenT0, ExpiresAt: tokenT0.Add(time.Hour)}
	ev := outbox.Event{Kind: "mail", Type: "confirm_email", Payload: []byte(`{}`)}
	if err := db.CreateRegistration(ctx, u, r, tok, 1, ev); err != nil {
		t.Fatal(err)
	}
	got, err := db.RegistrationByUser(ctx, "u1")
	if err != nil || got.State != registration.StateConfirming || got.Fields["telephone1"] != "+1 555" || got.ContactID != "c-1" || !got.CreatedAt.Equal(tokenT0) {
		t.Fatalf("registration = %+v, %v", got, err)
	}
	if tok.ID == 0 {
		t.Error("token id not set")
	}
	if _, err := db.TokenByHash(ctx, "h1"); err != nil {
		t.Errorf("token: %v", err)
	}
	if evs, _ := db.OutboxEvents(ctx, "u1"); len(evs) != 1 {
		t.Errorf("events = %d", len(evs))
	}
	// A taken address: nothing of the second attempt remains.
	u2 := newRegUser("u2", "EVE@example.com")
	tok2 := &tokens.Token{Purpose: tokens.PurposeConfirmEmail, UserID: "u2", SecretHash: "h2", CreatedAt: tokenT0, ExpiresAt: tokenT0.Add(time.Hour)}
	if err := db.CreateRegistration(ctx, u2, &registration.Registration{State: registration.StateConfirming}, tok2, 1, ev); !errors.Is(err, authz.ErrConflict) {
		t.Fatalf("taken email: %v", err)
	}
	if _, err := db.TokenByHash(ctx, "h2"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("token of the failed registration: %v", err)
	}
	if _, err := db.RegistrationByUser(ctx, "u2"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("registration of the failed attempt: %v", err)
	}
	// A token for someone else is refused.
	u3 := newRegUser("u3", "ann@example.com")
	bad := &tokens.Token{Purpose: tokens.PurposeConfirmEmail, UserID: "u1", SecretHash: "h3", ExpiresAt: tokenT0.Add(time.Hour)}
	if err := db.CreateRegistration(ctx, u3, &registration.Registration{State: registration.StateConfirming}, bad, 1); err == nil {
		t.Error("a token for another user was accepted")
	}
	if _, err := db.UserByID(ctx, "u3"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("user of the refused registration: %v", err)
	}
	// Without a registration: ErrNotFound (operator-created accounts).
	if _, err := db.RegistrationByUser(ctx, "nobody"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	// Deleting the account deletes its registration.
	if err := db.DeleteUser(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RegistrationByUser(ctx, "u1"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

// testRegistrationConcurrentAdvance: of concurrent advances out of one
// state exactly one succeeds; the others get ErrStale and enqueue nothing.
func testRegistrationConcurrentAdvance(t *testing.T, db *DB) {
	ctx := t.Context()
	u := newRegUser("u1", "eve@example.com")
	if err := db.CreateRegistration(ctx, u, &registration.Registration{State: registration.StateConfirming}, nil, 0); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var ok, stale atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			cp := *u
			cp.EmailConfirmed = true
			err := db.AdvanceRegistration(ctx, &cp, registration.StateConfirming, registration.StateDone,
				outbox.Event{Kind: "mail", Type: "registration_pending", Payload: []byte(`{}`)})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, authz.ErrStale):
				stale.Add(1)
			default:
				t.Errorf("advance: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || stale.Load() != n-1 {
		t.Fatalf("ok %d, stale %d", ok.Load(), stale.Load())
	}
	r, _ := db.RegistrationByUser(ctx, "u1")
	got, _ := db.UserByID(ctx, "u1")
	if r.State != registration.StateDone || !got.EmailConfirmed {
		t.Errorf("state %s, confirmed %v", r.State, got.EmailConfirmed)
	}
	if evs, _ := db.OutboxEvents(ctx, "u1"); len(evs) != 1 {
		t.Errorf("%d events enqueued, want 1", len(evs))
	}
}
