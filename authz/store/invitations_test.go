package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/dataverse"
)

func TestInvitationsSQLite(t *testing.T)   { runInvitationSuite(t, sqliteURL) }
func TestInvitationsPostgres(t *testing.T) { runInvitationSuite(t, postgresURL) }

// runInvitationSuite is the invitations part of the store suite, on one dialect.
func runInvitationSuite(t *testing.T, newURL opener) {
	open := dbOpener(newURL)
	t.Run("Lifecycle", func(t *testing.T) { testInvitationLifecycle(t, open(t)) })
	t.Run("SingleRace", func(t *testing.T) { testInvitationSingleRace(t, open(t)) })
	t.Run("GroupLastRedemptions", func(t *testing.T) { testInvitationGroupRace(t, open(t)) })
	t.Run("DataverseRace", func(t *testing.T) { testDataverseInvitationRace(t, open(t)) })
	t.Run("ContactNeverRebound", func(t *testing.T) { testInvitationContactBound(t, open(t)) })
	t.Run("MailClaimOnce", func(t *testing.T) { testInvitationMailClaim(t, open(t)) })
	t.Run("Redemptions", func(t *testing.T) { testInvitationRedemptions(t, open(t)) })
}

// testInvitationRedemptions: who redeemed the invitations of a page, in
// one query, oldest first, the first perKey of each.
func testInvitationRedemptions(t *testing.T, db *DB) {
	g := createInvitation(t, db, "g", invitations.Group, 5)
	s := createInvitation(t, db, "s", invitations.Single, 1)
	createInvitation(t, db, "n", invitations.Single, 1) // never redeemed
	gc := invitations.Claim{Invitation: invitations.Key(g.ID), LocalID: g.ID, Max: 5, At: invT0.Add(time.Minute)}
	for i := range 3 {
		if _, err := redeemNew(db, gc, fmt.Sprintf("g%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := redeemNew(db, invitations.Claim{Invitation: invitations.Key(s.ID), LocalID: s.ID, Max: 1, At: invT0.Add(2 * time.Minute)}, "s0"); err != nil {
		t.Fatal(err)
	}
	dv := invitations.DataverseKey("d0000000-0000-4000-8000-000000000001")
	if _, err := redeemNew(db, invitations.Claim{Invitation: dv, Max: 2, At: invT0.Add(3 * time.Minute)}, "d0"); err != nil {
		t.Fatal(err)
	}
	got, err := db.InvitationRedemptions(t.Context(), []string{invitations.Key(g.ID), invitations.Key(s.ID), dv, "crmgate:999"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rs := got[invitations.Key(g.ID)]; len(rs) != 2 || rs[0].N != 1 || rs[1].N != 2 || rs[0].UserID == "" || !rs[0].At.Equal(invT0.Add(time.Minute)) {
		t.Errorf("group redemptions = %+v, want the first two", rs)
	}
	if len(got[invitations.Key(s.ID)]) != 1 || len(got[dv]) != 1 || len(got) != 3 {
		t.Errorf("redemptions = %+v", got)
	}
	u, err := db.UserByID(t.Context(), got[invitations.Key(s.ID)][0].UserID)
	if err != nil || u.Username != "s0" {
		t.Errorf("the single invitation's redeemer: %v %v", u, err)
	}
	if _, err := db.InvitationRedemptions(t.Context(), make([]string, invitations.MaxRedemptionKeys+1), 1); err == nil {
		t.Error("too many keys accepted")
	}
}

var invT0 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

func createInvitation(t *testing.T, db *DB, hash string, kind invitations.Kind, maxR int) *invitations.Invitation {
	t.Helper()
	inv := &invitations.Invitation{CodeHash: hash, Email: hash + "@example.com", Kind: kind, MaxRedemptions: maxR,
		Roles: []string{"member"}, RedirectURL: "/welcome", CreatedBy: "cli", CreatedAt: invT0, ExpiresAt: invT0.Add(time.Hour)}
	if err := db.CreateInvitation(t.Context(), inv, outbox.Event{Kind: "mail", Type: "invitation"}); err != nil {
		t.Fatalf("CreateInvitation: %v", err)
	}
	return inv
}

// redeemNew claims a redemption of c for a new user named name.
func redeemNew(db *DB, c invitations.Claim, name string) (int, error) {
	u := newUser(name)
	u.ID = authz.NewID()
	if c.ContactID != "" {
		u.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: c.ContactID, LogicalName: "contact"}}
	}
	c.UserID = u.ID
	err := db.RedeemInvitation(context.Background(), &c, u, nil, outbox.Event{Kind: "lifecycle", Type: "created"})
	return c.N, err
}

// testInvitationLifecycle: create, look up by hash and id, list, replace
// the code (the old hash is gone), revoke (then neither a new code nor a
// redemption works), and the count kept with the redemption.
func testInvitationLifecycle(t *testing.T, db *DB) {
	ctx := t.Context()
	inv := createInvitation(t, db, "aa01", invitations.Single, 1)
	got, err := db.InvitationByHash(ctx, "aa01")
	if err != nil || got.ID != inv.ID || got.Email != "aa01@example.com" || got.Roles[0] != "member" || got.RedirectURL != "/welcome" ||
		!got.ExpiresAt.Equal(invT0.Add(time.Hour)) || !got.RevokedAt.IsZero() {
		t.Fatalf("InvitationByHash = %+v, %v", got, err)
	}
	if err := db.CreateInvitation(ctx, &invitations.Invitation{CodeHash: "aa01", Kind: invitations.Single, MaxRedemptions: 1, ExpiresAt: invT0.Add(time.Hour)}); !errors.Is(err, authz.ErrConflict) {
		t.Fatalf("duplicate hash: %v, want ErrConflict", err)
	}
	if err := db.ReplaceInvitationCode(ctx, inv.ID, "aa02", invT0.Add(time.Minute)); err != nil {
		t.Fatalf("ReplaceInvitationCode: %v", err)
	}
	if _, err := db.InvitationByHash(ctx, "aa01"); !errors.Is(err, authz.ErrNotFound) {
		t.Fatalf("old hash after replace: %v", err)
	}
	list, err := db.ListInvitations(ctx, 0, 10)
	if err != nil || len(list) != 1 || list[0].CodeHash != "aa02" || !list[0].SentAt.Equal(invT0.Add(time.Minute)) {
		t.Fatalf("ListInvitations = %+v, %v", list, err)
	}
	// Expired at the claim's time: no slot.
	if _, err := redeemNew(db, invitations.Claim{Invitation: "crmgate:1", LocalID: inv.ID, Max: 1, At: invT0.Add(2 * time.Hour)}, "late"); !errors.Is(err, invitations.ErrNoSlot) {
		t.Fatalf("expired claim: %v", err)
	}
	n, err := redeemNew(db, invitations.Claim{Invitation: fmt.Sprintf("crmgate:%d", inv.ID), LocalID: inv.ID, Max: 1, At: invT0.Add(2 * time.Minute)}, "first")
	if err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	if got, _ := db.InvitationByID(ctx, inv.ID); got.Redemptions != 1 {
		t.Fatalf("redemptions = %d", got.Redemptions)
	}
	if u, err := db.UserByLogin(ctx, "first"); err != nil || u.Username != "first" {
		t.Fatalf("redeemed user: %v, %v", u, err)
	}
	if err := db.ReplaceInvitationCode(ctx, inv.ID, "aa03", invT0.Add(3*time.Minute)); !errors.Is(err, authz.ErrNotFound) {
		t.Fatalf("replace a used-up invitation: %v", err)
	}
	// A taken username rolls the whole redemption back.
	g := createInvitation(t, db, "bb01", invitations.Group, 3)
	gc := invitations.Claim{Invitation: fmt.Sprintf("crmgate:%d", g.ID), LocalID: g.ID, Max: 3, At: invT0.Add(time.Minute)}
	if _, err := redeemNew(db, gc, "first"); !errors.Is(err, authz.ErrConflict) {
		t.Fatalf("taken username: %v", err)
	}
	if got, _ := db.InvitationByID(ctx, g.ID); got.Redemptions != 0 {
		t.Fatalf("a failed redemption counted: %d", got.Redemptions)
	}
	if err := db.RevokeInvitation(ctx, g.ID, invT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeInvitation(ctx, g.ID, invT0.Add(time.Minute)); !errors.Is(err, authz.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := redeemNew(db, gc, "second"); !errors.Is(err, invitations.ErrNoSlot) {
		t.Fatalf("revoked claim: %v", err)
	}
}

// race runs racers redemptions of c at once and counts winners and
// refusals (ErrNoSlot).
func race(t *testing.T, db *DB, c invitations.Claim, racers int, prefix string) (wins, refused int32) {
	t.Helper()
	var w, r atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			_, err := redeemNew(db, c, fmt.Sprintf("%s%d", prefix, i))
			switch {
			case err == nil:
				w.Add(1)
			case errors.Is(err, invitations.ErrNoSlot):
				r.Add(1)
			default:
				t.Errorf("redeem: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	return w.Load(), r.Load()
}

// testInvitationSingleRace: of simultaneous redemptions of a single-use
// invitation exactly one wins.
func testInvitationSingleRace(t *testing.T, db *DB) {
	const rounds, racers = 10, 12
	for r := range rounds {
		inv := createInvitation(t, db, fmt.Sprintf("s%d", r), invitations.Single, 1)
		c := invitations.Claim{Invitation: fmt.Sprintf("crmgate:%d", inv.ID), LocalID: inv.ID, Max: 1, At: invT0.Add(time.Minute)}
		wins, refused := race(t, db, c, racers, fmt.Sprintf("s%d-", r))
		if wins != 1 || refused != racers-1 {
			t.Fatalf("round %d: %d winners, %d refused of %d, want exactly one winner", r, wins, refused, racers)
		}
		if got, _ := db.InvitationByID(t.Context(), inv.ID); got.Redemptions != 1 {
			t.Fatalf("round %d: redemptions = %d", r, got.Redemptions)
		}
	}
}

// testInvitationGroupRace: a group invitation of 5 with 3 used lets exactly
// 2 of 10 simultaneous redemptions through.
func testInvitationGroupRace(t *testing.T, db *DB) {
	inv := createInvitation(t, db, "g", invitations.Group, 5)
	c := invitations.Claim{Invitation: fmt.Sprintf("crmgate:%d", inv.ID), LocalID: inv.ID, Max: 5, At: invT0.Add(time.Minute)}
	for i := range 3 {
		if _, err := redeemNew(db, c, fmt.Sprintf("early%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	wins, refused := race(t, db, c, 10, "g")
	if wins != 2 || refused != 8 {
		t.Fatalf("%d winners, %d refused; want 2 and 8", wins, refused)
	}
	if got, _ := db.InvitationByID(t.Context(), inv.ID); got.Redemptions != 5 {
		t.Fatalf("redemptions = %d, want 5", got.Redemptions)
	}
}

// testDataverseInvitationRace: a Dataverse invitation (no row here) with
// 2 of 4 counted in Dataverse lets exactly 2 of 10 through, numbered 3
// and 4, and each winner's write-back carries its own number.
func testDataverseInvitationRace(t *testing.T, db *DB) {
	var mu sync.Mutex
	nums := map[int]bool{}
	c := invitations.Claim{Invitation: "dataverse:abc", Max: 4, Base: 2, At: invT0,
		WriteBack: func(n int) (outbox.Event, error) {
			mu.Lock()
			defer mu.Unlock()
			nums[n] = true
			return outbox.Event{Kind: "invitation", Type: "redeemed", Payload: []byte(fmt.Sprintf(`{"n":%d}`, n))}, nil
		}}
	wins, refused := race(t, db, c, 10, "dv")
	if wins != 2 || refused != 8 {
		t.Fatalf("%d winners, %d refused; want 2 and 8", wins, refused)
	}
	var ns []int
	if err := func() error {
		rows, err := db.db.QueryContext(t.Context(), `SELECT n FROM invitation_redemptions WHERE invitation = 'dataverse:abc' ORDER BY n`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n int
			if err := rows.Scan(&n); err != nil {
				return err
			}
			ns = append(ns, n)
		}
		return rows.Err()
	}(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ns) != "[3 4]" {
		t.Fatalf("numbers %v, want [3 4]", ns)
	}
	var payloads int
	if err := db.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM outbox WHERE kind = 'invitation'`).Scan(&payloads); err != nil || payloads != 2 {
		t.Fatalf("write-backs enqueued = %d, %v; want 2", payloads, err)
	}
}

// testInvitationContactBound: a redemption for a contact another account
// is bound to is refused, and changes nothing.
func testInvitationContactBound(t *testing.T, db *DB) {
	const contact = "0f8fad5b-d9cb-469f-a165-70867728950e"
	owner := newUser("owner")
	owner.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: contact, LogicalName: "contact"}}
	mustCreate(t, db, owner)
	c := invitations.Claim{Invitation: "dataverse:x", Max: 0, ContactID: contact, At: invT0}
	if _, err := redeemNew(db, c, "intruder"); !errors.Is(err, invitations.ErrContactBound) {
		t.Fatalf("redeem for a bound contact: %v", err)
	}
	if _, err := db.UserByLogin(t.Context(), "intruder"); !errors.Is(err, authz.ErrNotFound) {
		t.Fatalf("the refused redemption created a user: %v", err)
	}
	// Two redemptions for one free contact at once: one binds it.
	const free = "1f8fad5b-d9cb-469f-a165-70867728950e"
	var w, b atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 8 {
		wg.Go(func() {
			<-start
			_, err := redeemNew(db, invitations.Claim{Invitation: fmt.Sprintf("dataverse:f%d", i), ContactID: free, At: invT0}, fmt.Sprintf("f%d", i))
			switch {
			case err == nil:
				w.Add(1)
			case errors.Is(err, invitations.ErrContactBound):
				b.Add(1)
			default:
				t.Errorf("redeem: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if w.Load() != 1 || b.Load() != 7 {
		t.Fatalf("%d bound the contact, %d refused; want 1 and 7", w.Load(), b.Load())
	}
}

// testInvitationMailClaim: a Dataverse invitation is claimed for mail once,
// also by concurrent claimers, and only the winner's mail is enqueued.
func testInvitationMailClaim(t *testing.T, db *DB) {
	ctx := t.Context()
	if l, err := db.LatestDataverseInvitationMail(ctx); err != nil || !l.IsZero() {
		t.Fatalf("latest on empty = %v, %v", l, err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			<-start
			ok, err := db.ClaimDataverseInvitationMail(ctx, "ABC", invT0, invT0, outbox.Event{Kind: "mail", Type: "invitation"})
			if err != nil {
				t.Errorf("claim: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want 1", wins.Load())
	}
	var mails int
	if err := db.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE user_id = 'invitation:abc'`).Scan(&mails); err != nil || mails != 1 {
		t.Fatalf("mails = %d, %v", mails, err)
	}
	if l, _ := db.LatestDataverseInvitationMail(ctx); !l.Equal(invT0) {
		t.Fatalf("latest = %v", l)
	}
}
