package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/dataverse"
)

// opener returns a fresh, empty database URL for one test.
type opener func(t *testing.T) string

func sqliteURL(t *testing.T) string   { return storetest.SQLiteURL(t) }
func postgresURL(t *testing.T) string { return storetest.PostgresURL(t) }

func TestSQLite(t *testing.T)   { runSuite(t, sqliteURL) }
func TestPostgres(t *testing.T) { runSuite(t, postgresURL) }

// dbOpener returns a function that opens a new store on a new database of
// newURL's dialect, closed when the test ends.
func dbOpener(newURL opener) func(*testing.T) *DB {
	return func(t *testing.T) *DB {
		t.Helper()
		db, err := Open(t.Context(), newURL(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}

// runSuite is the store test suite both dialects must pass.
func runSuite(t *testing.T, newURL opener) {
	open := dbOpener(newURL)
	t.Run("CreateAndGet", func(t *testing.T) { testCreateAndGet(t, open(t)) })
	t.Run("Conflicts", func(t *testing.T) { testConflicts(t, open(t)) })
	t.Run("Update", func(t *testing.T) { testUpdate(t, open(t)) })
	t.Run("List", func(t *testing.T) { testList(t, open(t)) })
	t.Run("SignInBookkeeping", func(t *testing.T) { testSignInBookkeeping(t, open(t)) })
	t.Run("ConcurrentAttempts", func(t *testing.T) { testConcurrentAttempts(t, open(t)) })
	t.Run("ReplacePasswordHash", func(t *testing.T) { testReplacePasswordHash(t, open(t)) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open(t)) })
	t.Run("RevokedSessions", func(t *testing.T) { testRevokedSessions(t, newURL(t)) })
	t.Run("SessionChanges", func(t *testing.T) { testSessionChanges(t, newURL(t)) })
	t.Run("MigrationsIdempotent", func(t *testing.T) { testMigrationsIdempotent(t, newURL(t)) })
	t.Run("ConcurrentOpen", func(t *testing.T) { testConcurrentOpen(t, newURL(t)) })
	t.Run("OutboxEnqueue", func(t *testing.T) { testOutboxEnqueue(t, open(t)) })
	t.Run("OutboxRollback", func(t *testing.T) { testOutboxRollback(t, open(t)) })
	t.Run("OutboxClaim", func(t *testing.T) { testOutboxClaim(t, open(t)) })
	t.Run("OutboxConcurrentClaims", func(t *testing.T) { testOutboxConcurrentClaims(t, open(t)) })
	t.Run("OutboxClaimLimit", func(t *testing.T) { testOutboxClaimLimit(t, open(t)) })
	t.Run("OutboxFail", func(t *testing.T) { testOutboxFail(t, open(t)) })
	t.Run("APIKeys", func(t *testing.T) { testAPIKeys(t, open(t)) })
	t.Run("BreakGlassGuard", func(t *testing.T) { testBreakGlassGuard(t, open(t)) })
	t.Run("BreakGlassConcurrent", func(t *testing.T) { testBreakGlassConcurrent(t, open) })
	t.Run("UsersBoundToContact", func(t *testing.T) { testUsersBoundToContact(t, open(t)) })
	t.Run("ContactIDBackfill", func(t *testing.T) { testContactIDBackfill(t, newURL(t)) })
}

func newUser(name string) *authz.User {
	return &authz.User{
		Username:      name,
		Email:         name + "@Example.com",
		FirstName:     "First " + name,
		PasswordHash:  "$argon2id$hash-" + name,
		Roles:         []string{"member"},
		Status:        authz.StatusActive,
		SecurityStamp: "stamp-" + name,
	}
}

func mustCreate(t *testing.T, db *DB, u *authz.User) *authz.User {
	t.Helper()
	if err := db.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", u.Username, err)
	}
	return u
}

func testCreateAndGet(t *testing.T, db *DB) {
	ctx := t.Context()
	u := newUser("Ana")
	u.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{
		ID: "0f8fad5b-d9cb-469f-a165-70867728950e", LogicalName: "contact", Name: "Ana",
		KeyAttributes: map[string]string{"emailaddress1": "ana@example.com"}}}
	u.LockoutUntil = time.Date(2030, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	mustCreate(t, db, u)
	if len(u.ID) != 32 || u.CreatedAt.IsZero() || !u.UpdatedAt.Equal(u.CreatedAt) {
		t.Fatalf("CreateUser did not fill id/timestamps: %+v", u)
	}
	if got := u.LockoutUntil.Nanosecond(); got != 678_000_000 {
		t.Errorf("LockoutUntil not truncated to ms: %d ns", got)
	}

	byID, err := db.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatalf("UserByID: %v", err)
	}
	if !reflect.DeepEqual(byID, u) {
		t.Errorf("UserByID round trip:\n got %+v\nwant %+v", byID, u)
	}
	for _, login := range []string{"ana", "ANA", " Ana ", "ana@example.com", "ANA@EXAMPLE.COM"} {
		got, err := db.UserByLogin(ctx, login)
		if err != nil || got.ID != u.ID {
			t.Errorf("UserByLogin(%q) = %v, %v; want user %s", login, got, err, u.ID)
		}
	}
	for _, login := range []string{"", "anna", "ana@example.org"} {
		if _, err := db.UserByLogin(ctx, login); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("UserByLogin(%q) error = %v, want ErrNotFound", login, err)
		}
	}
	if _, err := db.UserByID(ctx, "nope"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("UserByID(nope) error = %v, want ErrNotFound", err)
	}

	// A username that equals another user's email: the username wins.
	other := newUser("bob")
	other.Username = "ana@example.com"
	other.Email = "bob@example.com"
	mustCreate(t, db, other)
	if got, err := db.UserByLogin(ctx, "ana@example.com"); err != nil || got.ID != other.ID {
		t.Errorf("UserByLogin(ana@example.com) = %v, %v; want the username match %s", got, err, other.ID)
	}
}

func testConflicts(t *testing.T, db *DB) {
	mustCreate(t, db, newUser("ana"))
	tests := []struct {
		name            string
		username, email string
	}{
		{"same username other case", "ANA", "x@example.com"},
		{"same email other case", "x", "ANA@EXAMPLE.COM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUser(tt.username)
			u.Email = tt.email
			if err := db.CreateUser(t.Context(), u); !errors.Is(err, authz.ErrConflict) {
				t.Errorf("CreateUser error = %v, want ErrConflict", err)
			}
		})
	}
	dupID := newUser("carl")
	dupID.ID = "fixed"
	mustCreate(t, db, dupID)
	again := newUser("dora")
	again.ID = "fixed"
	if err := db.CreateUser(t.Context(), again); !errors.Is(err, authz.ErrConflict) {
		t.Errorf("CreateUser with a taken id: error = %v, want ErrConflict", err)
	}
}

func testUpdate(t *testing.T, db *DB) {
	ctx := t.Context()
	u := mustCreate(t, db, newUser("ana"))
	mustCreate(t, db, newUser("bob"))

	stale := *u
	u.DisplayName = "Ana B."
	u.Roles = []string{"admin", "member"}
	u.Status = authz.StatusDisabled
	u.Email = "ana.b@example.com"
	u.Binding = authz.Binding{Mode: authz.BindingUsername}
	u.EmailConfirmed, u.MustChangePassword = true, true
	before := u.UpdatedAt
	if err := db.UpdateUser(ctx, u); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	if !u.UpdatedAt.After(before) {
		t.Errorf("UpdatedAt %v not after %v", u.UpdatedAt, before)
	}
	got, err := db.UserByLogin(ctx, "ANA.B@example.com")
	if err != nil {
		t.Fatalf("UserByLogin after email change: %v", err)
	}
	if !reflect.DeepEqual(got, u) {
		t.Errorf("after update:\n got %+v\nwant %+v", got, u)
	}
	if _, err := db.UserByLogin(ctx, "ana@example.com"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("old email still finds the user: %v", err)
	}

	t.Run("stale", func(t *testing.T) {
		stale.FirstName = "lost"
		if err := db.UpdateUser(ctx, &stale); !errors.Is(err, authz.ErrStale) {
			t.Errorf("UpdateUser with an old UpdatedAt: error = %v, want ErrStale", err)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		c := *u
		c.Username = "BOB"
		if err := db.UpdateUser(ctx, &c); !errors.Is(err, authz.ErrConflict) {
			t.Errorf("UpdateUser to a taken username: error = %v, want ErrConflict", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		m := *u
		m.ID = "missing"
		if err := db.UpdateUser(ctx, &m); !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("UpdateUser of a missing user: error = %v, want ErrNotFound", err)
		}
	})
}

func testList(t *testing.T, db *DB) {
	for _, n := range []string{"carl", "ana", "bob", "dora", "an_na", "an%x"} {
		u := newUser(n)
		if n == "bob" || n == "dora" {
			u.Status = authz.StatusPending
		}
		switch n {
		case "carl":
			u.Binding = authz.Binding{Mode: authz.BindingUsername}
		case "ana":
			u.Binding = authz.Binding{Mode: authz.BindingCustom}
		}
		mustCreate(t, db, u)
	}
	names := func(us []*authz.User) string {
		var s []string
		for _, u := range us {
			s = append(s, u.Username)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name string
		f    authz.UserFilter
		want string
	}{
		{"all", authz.UserFilter{}, "an%x,an_na,ana,bob,carl,dora"},
		{"query username", authz.UserFilter{Query: "AN"}, "an%x,an_na,ana"},
		{"query matches email domain", authz.UserFilter{Query: "example.COM", Limit: 2}, "an%x,an_na"},
		{"underscore is literal", authz.UserFilter{Query: "n_"}, "an_na"},
		{"percent is literal", authz.UserFilter{Query: "n%"}, "an%x"},
		{"status", authz.UserFilter{Status: authz.StatusPending}, "bob,dora"},
		{"cursor", authz.UserFilter{After: "ana", Limit: 2}, "bob,carl"},
		{"cursor and status", authz.UserFilter{After: "bob", Status: authz.StatusPending}, "dora"},
		{"nothing", authz.UserFilter{Query: "zzz"}, ""},
		{"mode", authz.UserFilter{Mode: authz.BindingUsername}, "carl"},
		{"mode none", authz.UserFilter{Mode: authz.BindingNone}, "an%x,an_na,bob,dora"},
		{"mode and query", authz.UserFilter{Mode: authz.BindingCustom, Query: "a"}, "ana"},
		{"descending", authz.UserFilter{Desc: true, Limit: 3}, "dora,carl,bob"},
		{"by status, ties by username", authz.UserFilter{Sort: authz.SortStatus}, "an%x,an_na,ana,carl,bob,dora"},
		{"by status descending", authz.UserFilter{Sort: authz.SortStatus, Desc: true, Limit: 3}, "dora,bob,carl"},
		{"offset", authz.UserFilter{Sort: authz.SortEmail, Offset: 4}, "carl,dora"},
		{"offset beyond", authz.UserFilter{Offset: 10}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.ListUsers(t.Context(), tt.f)
			if err != nil {
				t.Fatalf("ListUsers: %v", err)
			}
			if names(got) != tt.want {
				t.Errorf("ListUsers(%+v) = %s, want %s", tt.f, names(got), tt.want)
			}
			if tt.f.Offset > 0 || tt.f.Limit > 0 || tt.f.After != "" {
				return
			}
			n, err := db.CountUsers(t.Context(), tt.f)
			if want := len(got); err != nil || n != want {
				t.Errorf("CountUsers(%+v) = %d, %v; want %d", tt.f, n, err, want)
			}
		})
	}
	for _, f := range []authz.UserFilter{{Mode: "bogus"}, {Sort: "password_hash"}, {Sort: authz.SortEmail, After: "x"},
		{Desc: true, After: "x"}, {Offset: -1}, {Offset: authz.MaxListOffset + 1}, {Status: "gone"}} {
		var verr *authz.ValidationError
		if _, err := db.ListUsers(t.Context(), f); !errors.As(err, &verr) {
			t.Errorf("ListUsers(%+v): error = %v, want a ValidationError", f, err)
		}
		if _, err := db.CountUsers(t.Context(), f); !errors.As(err, &verr) {
			t.Errorf("CountUsers(%+v): error = %v, want a ValidationError", f, err)
		}
	}
}

func testSignInBookkeeping(t *testing.T, db *DB) {
	ctx := t.Context()
	u := mustCreate(t, db, newUser("ana"))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const lockFor = 10 * time.Minute
	limits := signin.Limits{ClientMaxFailures: 3, AccountMaxFailures: 5, LockFor: lockFor}
	const a, b, c = "192.0.2.1", "192.0.2.2", "2001:db8::/64"
	steps := []struct {
		client      string
		at          time.Time
		wantAllowed bool
		wantReason  string
		wantClient  int
		wantLock    time.Time // the client's lockout
		wantAccount int
	}{
		{a, t0, true, "", 1, time.Time{}, 1},
		{a, t0.Add(time.Second), true, "", 2, time.Time{}, 2},
		{a, t0.Add(2 * time.Second), true, "", 3, t0.Add(2*time.Second + lockFor), 3},                          // reaches the threshold: locks a, still checked
		{a, t0.Add(3 * time.Second), false, signin.ReasonLockedOut, 4, t0.Add(2*time.Second + lockFor), 3},     // a locked: counted on a, not on the account
		{b, t0.Add(4 * time.Second), true, "", 1, time.Time{}, 4},                                              // another address is not locked
		{b, t0.Add(5 * time.Second), true, "", 2, time.Time{}, 5},                                              // the account's threshold: soft lock
		{b, t0.Add(6 * time.Second), false, signin.ReasonAccountLocked, 3, t0.Add(6*time.Second + lockFor), 6}, // b failed recently: refused
		{c, t0.Add(7 * time.Second), true, "", 1, time.Time{}, 7},                                              // a fresh address passes the soft lock
		{a, t0.Add(7*time.Second + lockFor), true, "", 1, time.Time{}, 1},                                      // lockouts and window over: fresh counts
	}
	for i, s := range steps {
		got, err := db.BeginSignInAttempt(ctx, u.ID, s.client, s.at, limits)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got.Allowed != s.wantAllowed || got.Reason != s.wantReason || got.Client.Failures != s.wantClient ||
			!got.Client.LockoutUntil.Equal(s.wantLock) || got.Account.Failures != s.wantAccount {
			t.Errorf("step %d: got %+v, want allowed=%v reason=%q client=%d lock=%v account=%d",
				i, got, s.wantAllowed, s.wantReason, s.wantClient, s.wantLock, s.wantAccount)
		}
		stored, err := db.UserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.FailedCount != got.Account.Failures || !stored.LockoutUntil.Equal(got.Account.LockoutUntil) {
			t.Errorf("step %d: stored account counter %d %v, attempt says %+v", i, stored.FailedCount, stored.LockoutUntil, got.Account)
		}
	}
	if n := countFailureRows(t, db, u.ID); n != 1 {
		t.Errorf("%d per-address rows after every other one expired, want 1 (the current one)", n)
	}

	// A success clears the account's counter and its own address's, not
	// another address's.
	at := t0.Add(time.Hour)
	for range 3 {
		if _, err := db.BeginSignInAttempt(ctx, u.ID, b, at, limits); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.BeginSignInAttempt(ctx, u.ID, a, at, limits); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordSignInSuccess(ctx, u.ID, a, at); err != nil {
		t.Fatalf("RecordSignInSuccess: %v", err)
	}
	got, err := db.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.FailedCount != 0 || !got.LockoutUntil.IsZero() || !got.LastSignInAt.Equal(at) || !got.UpdatedAt.Equal(u.UpdatedAt) {
		t.Errorf("after success: failed=%d lockout=%v last=%v updated=%v", got.FailedCount, got.LockoutUntil, got.LastSignInAt, got.UpdatedAt)
	}
	if next, _ := db.BeginSignInAttempt(ctx, u.ID, b, at, limits); next.Allowed || next.Reason != signin.ReasonLockedOut {
		t.Errorf("b's lockout did not survive a's success: %+v", next)
	}
	if next, _ := db.BeginSignInAttempt(ctx, u.ID, a, at, limits); !next.Allowed || next.Client.Failures != 1 || next.Account.Failures != 1 {
		t.Errorf("a after its success: %+v, want a fresh count", next)
	}
	if err := db.ClearSignInFailures(ctx, u.ID, a, at); err != nil {
		t.Fatalf("ClearSignInFailures: %v", err)
	}
	if got, _ := db.UserByID(ctx, u.ID); got.FailedCount != 0 || !got.LastSignInAt.Equal(at) {
		t.Errorf("after clear: failed=%d last=%v", got.FailedCount, got.LastSignInAt)
	}
	if n := countFailureRows(t, db, u.ID); n != 1 {
		t.Errorf("%d per-address rows after clearing a, want b's", n)
	}
	if addresses, locked, err := db.ResetSignInFailures(ctx, u.ID, at); err != nil || addresses != 1 || locked != 1 {
		t.Fatalf("ResetSignInFailures: %d addresses, %d locked, %v; want b's, locked", addresses, locked, err)
	}
	if n := countFailureRows(t, db, u.ID); n != 0 {
		t.Errorf("%d per-address rows after a reset, want 0", n)
	}
	if next, _ := db.BeginSignInAttempt(ctx, u.ID, b, at, limits); !next.Allowed || next.Client.Failures != 1 {
		t.Errorf("b after a reset: %+v", next)
	}
	for name, err := range map[string]error{
		"BeginSignInAttempt":  func() error { _, err := db.BeginSignInAttempt(ctx, "missing", a, at, limits); return err }(),
		"RecordSignInSuccess": db.RecordSignInSuccess(ctx, "missing", a, at),
		"ClearSignInFailures": db.ClearSignInFailures(ctx, "missing", a, at),
		"ResetSignInFailures": func() error { _, _, err := db.ResetSignInFailures(ctx, "missing", at); return err }(),
	} {
		if !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("%s of a missing user: error = %v, want ErrNotFound", name, err)
		}
	}
	for _, bad := range []signin.Limits{{}, {ClientMaxFailures: 1, AccountMaxFailures: 1}, {ClientMaxFailures: 0, AccountMaxFailures: 1, LockFor: time.Minute},
		{ClientMaxFailures: 1, AccountMaxFailures: -1, LockFor: time.Minute}} {
		if _, err := db.BeginSignInAttempt(ctx, u.ID, a, at, bad); err == nil {
			t.Errorf("BeginSignInAttempt accepted limits %+v", bad)
		}
	}
	// Deleting the user deletes its per-address counters.
	if err := db.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if n := countFailureRows(t, db, u.ID); n != 0 {
		t.Errorf("%d per-address rows of a deleted user", n)
	}
}

func countFailureRows(t *testing.T, db *DB, userID string) int {
	t.Helper()
	var n int
	if err := db.db.QueryRowContext(t.Context(), db.q(`SELECT COUNT(*) FROM signin_failures WHERE user_id = ?`), userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// testConcurrentAttempts runs attempts on one account from many goroutines
// and addresses at once: no address gets more than ClientMaxFailures
// checks, and once the account's budget is spent only each address's first
// attempt is checked.
func testConcurrentAttempts(t *testing.T, db *DB) {
	u := mustCreate(t, db, newUser("ana"))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const clients, perClient = 6, 8
	limits := signin.Limits{ClientMaxFailures: 3, AccountMaxFailures: 7, LockFor: time.Minute}
	type result struct {
		client string
		a      signin.Attempt
	}
	var wg sync.WaitGroup
	results := make(chan result, clients*perClient)
	errs := make(chan error, clients*perClient)
	for c := range clients {
		client := fmt.Sprintf("198.51.100.%d", c)
		for range perClient {
			wg.Go(func() {
				a, err := db.BeginSignInAttempt(context.Background(), u.ID, client, now, limits)
				if err != nil {
					errs <- err
					return
				}
				results <- result{client, a}
			})
		}
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatalf("BeginSignInAttempt: %v", err)
	}
	allowed, beyondBudget := map[string]int{}, 0
	seen := map[string]bool{}
	for r := range results {
		key := fmt.Sprintf("%s/%d", r.client, r.a.Client.Failures)
		if seen[key] {
			t.Errorf("client count %s returned twice", key)
		}
		seen[key] = true
		if !r.a.Allowed {
			continue
		}
		allowed[r.client]++
		if r.a.Account.Failures > limits.AccountMaxFailures {
			beyondBudget++
			if r.a.Client.Failures != 1 {
				t.Errorf("attempt %+v checked beyond the account's budget from an address that had failed", r.a)
			}
		}
	}
	total := 0
	for client, n := range allowed {
		total += n
		if n > limits.ClientMaxFailures {
			t.Errorf("%s got %d checks, more than %d", client, n, limits.ClientMaxFailures)
		}
	}
	if total > limits.AccountMaxFailures+clients || total < limits.AccountMaxFailures {
		t.Errorf("%d checks in all, want between %d and %d", total, limits.AccountMaxFailures, limits.AccountMaxFailures+clients)
	}
	got, err := db.UserByID(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LockoutUntil.Equal(now.Add(time.Minute)) {
		t.Errorf("after the spray: account lockout=%v, want %v", got.LockoutUntil, now.Add(time.Minute))
	}
}

func testReplacePasswordHash(t *testing.T, db *DB) {
	ctx := t.Context()
	u := mustCreate(t, db, newUser("ana"))
	if err := db.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, "new"); err != nil {
		t.Fatalf("ReplacePasswordHash: %v", err)
	}
	if err := db.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, "newer"); !errors.Is(err, authz.ErrStale) {
		t.Errorf("ReplacePasswordHash with the old hash: error = %v, want ErrStale", err)
	}
	if err := db.ReplacePasswordHash(ctx, "missing", "a", "b"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("ReplacePasswordHash of a missing user: error = %v, want ErrNotFound", err)
	}
	got, _ := db.UserByID(ctx, u.ID)
	if got.PasswordHash != "new" || got.SecurityStamp != u.SecurityStamp || !got.UpdatedAt.Equal(u.UpdatedAt) {
		t.Errorf("after replace: hash=%q stamp=%q updated=%v", got.PasswordHash, got.SecurityStamp, got.UpdatedAt)
	}
}

func testAudit(t *testing.T, db *DB) {
	ctx := t.Context()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var all []audit.Event
	for i := range 5 {
		e := audit.Event{Time: t0.Add(time.Duration(i) * time.Second), Type: "signin.failed",
			UserID: fmt.Sprintf("u%d", i%2), ClientAddr: "192.0.2.1", Detail: "wrong_password"}
		if i == 4 {
			e.Type, e.Actor = "user.created", "cli:root"
		}
		if err := db.AppendAudit(ctx, &e); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		if e.ID == 0 || (len(all) > 0 && e.ID <= all[len(all)-1].ID) {
			t.Fatalf("AppendAudit id %d does not grow", e.ID)
		}
		all = append(all, e)
	}
	ids := func(es []audit.Event) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	id := func(i int) int64 { return all[i].ID }
	tests := []struct {
		name string
		f    audit.Filter
		want []int64
	}{
		{"all newest first", audit.Filter{}, []int64{id(4), id(3), id(2), id(1), id(0)}},
		{"user", audit.Filter{UserID: "u1"}, []int64{id(3), id(1)}},
		{"type", audit.Filter{Type: "user.created"}, []int64{id(4)}},
		{"before and limit", audit.Filter{Before: id(3), Limit: 2}, []int64{id(2), id(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.ListAudit(ctx, tt.f)
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("ListAudit(%+v) ids = %v, want %v", tt.f, ids(got), tt.want)
			}
		})
	}
	got, err := db.ListAudit(ctx, audit.Filter{Type: "user.created"})
	if err != nil || len(got) != 1 || got[0] != all[4] {
		t.Errorf("ListAudit round trip = %+v, %v; want %+v", got, err, all[4])
	}
}

func countMigrations(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatalf("count migrations: %v", err)
	}
	return n
}

func testMigrationsIdempotent(t *testing.T, dbURL string) {
	ms, err := migrations(SQLite)
	if err != nil {
		t.Fatal(err)
	}
	first, err := Open(t.Context(), dbURL)
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	u := mustCreate(t, first, newUser("ana"))
	first.Close()
	second, err := Open(t.Context(), dbURL)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer second.Close()
	if n := countMigrations(t, second); n != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(ms))
	}
	if _, err := second.UserByID(t.Context(), u.ID); err != nil {
		t.Errorf("data lost across Open: %v", err)
	}
}

func testConcurrentOpen(t *testing.T, dbURL string) {
	const n = 4
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(context.Background(), dbURL) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer dbs[i].Close()
	}
	ms, _ := migrations(SQLite)
	if got := countMigrations(t, dbs[0]); got != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d", got, len(ms))
	}
	mustCreate(t, dbs[n-1], newUser("ana"))
}

// TestSQLiteConcurrentOpenNewFile opens new SQLite files from several
// stores at once, many times: the first connection's switch to WAL mode can
// answer SQLITE_BUSY without waiting, and Start must wait it out (this
// failed about once in 75 new files before connect retried).
func TestSQLiteConcurrentOpenNewFile(t *testing.T) {
	const files, n = 150, 4
	for f := range files {
		dbURL := "sqlite:" + filepath.Join(t.TempDir(), "crmgate.db")
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				db, err := Open(t.Context(), dbURL)
				if err == nil {
					db.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("file %d, Open %d: %v", f, i, err)
			}
		}
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in          string
		wantDialect Dialect
		wantPrefix  string // of the DSN
		wantErr     string
	}{
		{"postgres://u:p@db:5432/crm?sslmode=disable", Postgres, "postgres://u:p@db:5432/crm", ""},
		{"postgresql://db/crm", Postgres, "postgresql://db/crm", ""},
		{"sqlite:/var/lib/crmgate/db.sqlite", SQLite, "/var/lib/crmgate/db.sqlite?", ""},
		{"sqlite:///var/lib/crmgate/db.sqlite", SQLite, "/var/lib/crmgate/db.sqlite?", ""},
		{"sqlite:data/crmgate.db", SQLite, "data/crmgate.db?", ""},
		{"file:/tmp/x.db?mode=rwc", SQLite, "file:/tmp/x.db?", ""},
		{"./crmgate.db", SQLite, "./crmgate.db?", ""},
		{"", "", "", "empty"},
		{"   ", "", "", "empty"},
		{"mysql://db/crm", "", "", `scheme "mysql"`},
		{"sqlite:", "", "", "file path"},
		{"sqlite::memory:", "", "", "file path"},
		{"file::memory:", "", "", "file path"},
		{"db?x.sqlite", "", "", "contains ? or #"},
		{"postgres://u:secret@db:bad/x", "", "", "malformed PostgreSQL URL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, dsn, dialect, err := parseURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseURL(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseURL(%q): %v", tt.in, err)
			}
			if dialect != tt.wantDialect || !strings.HasPrefix(dsn, tt.wantPrefix) {
				t.Errorf("parseURL(%q) = %s %q, want %s %q...", tt.in, dialect, dsn, tt.wantDialect, tt.wantPrefix)
			}
			if dialect == SQLite && !strings.Contains(dsn, "journal_mode%28WAL%29") {
				t.Errorf("SQLite DSN %q lacks the WAL pragma", dsn)
			}
		})
	}
}

func TestRebind(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
	if got := rebind(Postgres, q); got != "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)" {
		t.Errorf("rebind(Postgres) = %q", got)
	}
	if got := rebind(SQLite, q); got != q {
		t.Errorf("rebind(SQLite) = %q", got)
	}
}

func TestSQLiteURLForms(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{
		"sqlite:" + dir + "/a.db",
		"sqlite://" + dir + "/b.db",
		"file:" + dir + "/c.db?mode=rwc",
		dir + "/d.db",
	} {
		t.Run(u, func(t *testing.T) {
			db, err := Open(t.Context(), u)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer db.Close()
			var journal string
			var fk, busy int
			ctx := t.Context()
			if err := db.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
				t.Fatal(err)
			}
			if err := db.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
				t.Fatal(err)
			}
			if err := db.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
				t.Fatal(err)
			}
			if journal != "wal" || fk != 1 || busy != int(sqliteBusyTimeout/time.Millisecond) {
				t.Errorf("journal_mode=%s foreign_keys=%d busy_timeout=%d", journal, fk, busy)
			}
		})
	}
	if _, err := os.Stat(dir + "/c.db"); err != nil {
		t.Errorf("file: URL did not create its file: %v", err)
	}
}

func testRevokedSessions(t *testing.T, dbURL string) {
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	db, err := Open(ctx, dbURL, WithNow(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if got, err := db.SessionRevoked(ctx, "s1"); err != nil || got {
		t.Fatalf("unknown session revoked: %v %v", got, err)
	}
	if err := db.RevokeSession(ctx, "s1", "u1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeSession(ctx, "s1", "u1", now.Add(time.Hour)); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if err := db.RevokeSession(ctx, "old", "u1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{"s1", "old"} {
		if got, err := db.SessionRevoked(ctx, sid); err != nil || !got {
			t.Fatalf("%s not revoked: %v %v", sid, got, err)
		}
	}
	// Two hours later, a new revocation sweeps the expired ones.
	now = now.Add(2 * time.Hour)
	if err := db.RevokeSession(ctx, "s2", "u2", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM revoked_sessions").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after sweep: %d %v", n, err)
	}
}

// testSessionChanges: the session feed lists the sign-outs and the account
// changes at or after a time, and nothing older.
func testSessionChanges(t *testing.T, dbURL string) {
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	db, err := Open(ctx, dbURL, WithNow(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	old := mustCreate(t, db, newUser("old"))
	if err := db.RevokeSession(ctx, "s-old", old.ID, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	since := now
	fresh := mustCreate(t, db, newUser("fresh"))
	if err := db.RevokeSession(ctx, "s-new", fresh.ID, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	old.Status = authz.StatusDisabled
	if err := db.UpdateUser(ctx, old); err != nil {
		t.Fatal(err)
	}
	ch, err := db.SessionChangesSince(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Revoked) != 1 || ch.Revoked[0].ID != "s-new" || !ch.Revoked[0].ExpiresAt.Equal(since.Add(2*time.Hour)) {
		t.Errorf("revoked = %+v, want s-new only", ch.Revoked)
	}
	users := map[string]time.Time{}
	for _, u := range ch.Users {
		users[u.UserID] = u.At
	}
	if len(users) != 2 || !users[fresh.ID].Equal(since) || !users[old.ID].Equal(now) || ch.Truncated {
		t.Errorf("users = %+v (truncated %v), want fresh at %v and old at %v", ch.Users, ch.Truncated, since, now)
	}
	if ch, err := db.SessionChangesSince(ctx, now.Add(time.Millisecond)); err != nil || len(ch.Revoked)+len(ch.Users) != 0 {
		t.Errorf("changes after the last one: %+v %v", ch, err)
	}
}
