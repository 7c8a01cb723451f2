package store

import (
	"errors"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
)

func TestOnboardingSQLite(t *testing.T)   { runOnboardingSuite(t, sqliteURL) }
func TestOnboardingPostgres(t *testing.T) { runOnboardingSuite(t, postgresURL) }

// runOnboardingSuite checks CreateContactUser and DeleteUserIfUnchanged on
// one dialect: the account, its token and its events commit together or
// not at all; a second account for a contact is refused; a delete applies
// only to the row as read.
func runOnboardingSuite(t *testing.T, newURL opener) {
	db, err := Open(t.Context(), newURL(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := t.Context()
	const contact = "0f8fad5b-d9cb-469f-a165-70867728950e"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	contactUser := func(name string) (*authz.User, *tokens.Token) {
		u := newUser(name)
		u.ID, u.PasswordHash = newID(), ""
		u.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: contact, LogicalName: "contact"}}
		return u, &tokens.Token{Purpose: tokens.PurposeSetPassword, UserID: u.ID, SecretHash: "hash-" + name,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	ev := outbox.Event{Kind: "mail", Type: "set_password", Payload: []byte(`{"to":"x"}`)}

	u, tok := contactUser("ann")
	if err := db.CreateContactUser(ctx, u, tok, ev); err != nil {
		t.Fatalf("CreateContactUser: %v", err)
	}
	if tok.ID == 0 {
		t.Error("token id not set")
	}
	got, err := db.ConsumeToken(ctx, tokens.PurposeSetPassword, "hash-ann", now)
	if err != nil || got.UserID != u.ID {
		t.Fatalf("ConsumeToken: %+v, %v", got, err)
	}
	if es, _ := db.OutboxEvents(ctx, u.ID); len(es) != 1 || es[0].Type != "set_password" {
		t.Errorf("events %+v", es)
	}

	// A second account for the contact: refused, nothing stored.
	u2, tok2 := contactUser("bob")
	if err := db.CreateContactUser(ctx, u2, tok2, ev); !errors.Is(err, onboarding.ErrContactBound) {
		t.Fatalf("second account: %v, want ErrContactBound", err)
	}
	if _, err := db.UserByID(ctx, u2.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("the refused user was stored: %v", err)
	}
	if _, err := db.TokenByHash(ctx, "hash-bob"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("the refused token was stored: %v", err)
	}
	// A taken email on another contact rolls everything back too.
	u3, tok3 := contactUser("ann")
	u3.Binding.Ref.ID = "1f8fad5b-d9cb-469f-a165-70867728950e"
	if err := db.CreateContactUser(ctx, u3, tok3, ev); !errors.Is(err, authz.ErrConflict) {
		t.Fatalf("taken email: %v, want ErrConflict", err)
	}
	if es, _ := db.OutboxEvents(ctx, u3.ID); len(es) != 0 {
		t.Errorf("events of a rolled-back account: %+v", es)
	}
	// Bad input is refused before the database.
	u4, tok4 := contactUser("cara")
	u4.Binding = authz.Binding{Mode: authz.BindingNone}
	if err := db.CreateContactUser(ctx, u4, tok4); err == nil {
		t.Error("an unbound user was accepted")
	}
	u5, tok5 := contactUser("dan")
	tok5.UserID = "someone-else"
	if err := db.CreateContactUser(ctx, u5, tok5); err == nil {
		t.Error("a token for another user was accepted")
	}

	// DeleteUserIfUnchanged: a stale copy deletes nothing.
	p := mustCreate(t, db, newUser("pending"))
	stale := p.UpdatedAt
	p.Status = authz.StatusActive
	if err := db.UpdateUserAndEnqueue(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteUserIfUnchanged(ctx, p.ID, stale, ev); !errors.Is(err, authz.ErrStale) {
		t.Fatalf("stale delete: %v, want ErrStale", err)
	}
	if es, _ := db.OutboxEvents(ctx, p.ID); len(es) != 0 {
		t.Errorf("a refused delete enqueued %+v", es)
	}
	if err := db.DeleteUserIfUnchanged(ctx, p.ID, p.UpdatedAt, ev); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := db.UserByID(ctx, p.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("not deleted: %v", err)
	}
	if es, _ := db.OutboxEvents(ctx, p.ID); len(es) != 1 {
		t.Errorf("delete events %+v", es)
	}
	if err := db.DeleteUserIfUnchanged(ctx, p.ID, p.UpdatedAt); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}
