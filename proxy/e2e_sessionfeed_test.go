package proxy_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/proxy"
)

// TestWatchSessions: with the session feed running, an account disabled
// in the store by someone else (another replica, the CLI) ends its
// sessions here at their next request, long before the stamp check is
// due; without the feed the session goes on until then. A feed that
// cannot be read is logged once, the sessions are served meanwhile, and
// polling resumes when the store is back.
func TestWatchSessions(t *testing.T) {
	for _, feed := range []bool{false, true} {
		name := "without the feed"
		if feed {
			name = "with the feed"
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gw.db")
			var clock atomic.Pointer[fakeClock]
			db, err := store.Open(context.Background(), "sqlite:"+path, store.WithNow(func() time.Time {
				if c := clock.Load(); c != nil {
					return c.Now()
				}
				return time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
			}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			logs := &lockedBuffer{}
			h := newHarness(t, harnessConfig{db: db, mutate: func(o *proxy.Options) {
				o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
				o.StampCheckInterval = 10 * time.Minute
				if feed {
					o.SessionFeed = db
				}
			}})
			clock.Store(h.clock)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- h.srv.WatchSessions(ctx, 10*time.Millisecond) }()
			defer func() {
				cancel()
				if err := <-done; feed && err != context.Canceled {
					t.Errorf("WatchSessions returned %v", err)
				}
			}()
			h.createUser("ann", "ann@example.test", "correct horse battery")
			c := h.browser()
			h.signIn(c, "ann", "correct horse battery")
			h.clock.Advance(2 * time.Second)
			time.Sleep(50 * time.Millisecond) // a few polls
			if resp, _ := h.get(c, "/account/x"); resp.StatusCode != http.StatusOK {
				t.Fatalf("signed in: %d", resp.StatusCode)
			}
			h.clock.Advance(2 * time.Second)

			// The feed cannot be read for a while.
			raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if feed {
				if _, err := raw.Exec(`ALTER TABLE revoked_sessions RENAME TO revoked_sessions_away`); err != nil {
					t.Fatal(err)
				}
				time.Sleep(60 * time.Millisecond)
				if resp, _ := h.get(c, "/account/x"); resp.StatusCode != http.StatusOK {
					t.Fatalf("signed in while the feed fails: %d", resp.StatusCode)
				}
				if _, err := raw.Exec(`ALTER TABLE revoked_sessions_away RENAME TO revoked_sessions`); err != nil {
					t.Fatal(err)
				}
				waitLog(t, logs, "session feed: polling again")
				if n := strings.Count(logs.String(), "session feed: poll failed"); n != 1 {
					t.Errorf("%d log lines for the failing feed, want 1:\n%s", n, logs)
				}
			}

			// Someone else disables the account in the store.
			u, err := db.UserByLogin(context.Background(), "ann")
			if err != nil {
				t.Fatal(err)
			}
			u.Status = authz.StatusDisabled
			if err := db.UpdateUser(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				resp, _ := h.get(c, "/account/x")
				ended := resp.StatusCode != http.StatusOK
				if !feed {
					if ended {
						t.Fatalf("the session ended without the feed before its stamp check was due: %d", resp.StatusCode)
					}
					if time.Now().After(deadline.Add(-4500 * time.Millisecond)) {
						return // served for half a second after the change: the stamp check is not due
					}
				} else if ended {
					return
				} else if time.Now().After(deadline) {
					t.Fatal("the disabled account's session was still served 5s after the change")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func waitLog(t *testing.T, logs *lockedBuffer, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", msg, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
