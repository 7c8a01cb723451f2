package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/proxy"
)

// trustLoopback makes the test client a trusted proxy, so that each
// request names its client address in X-Forwarded-For.
func trustLoopback(o *proxy.Options) { o.TrustedProxies = []string{"127.0.0.1/32", "::1/128"} }

// signInFrom submits the sign-in form as a browser at client would, through
// a trusted proxy; it returns the status and the page with its form token
// blanked, so that two answers can be compared.
func (h *harness) signInFrom(c *http.Client, client, login, password string) (int, string) {
	h.t.Helper()
	form := url.Values{"login": {login}, "password": {password}, "csrf_token": {h.csrfToken(c)}}
	req, _ := http.NewRequest("POST", h.url("/.auth/signin"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.gw.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("X-Forwarded-For", client)
	resp, body := h.do(c, req)
	return resp.StatusCode, csrfRE.ReplaceAllString(body, `name="csrf_token" value=""`)
}

// TestLockoutOwnerGetsInDuringAttack: an attacker hammering an account
// from one address, then spraying it from many, locks only itself out;
// the owner signs in from their own address throughout, and the
// attacker's correct guess from a locked address gets the wrong
// password's answer.
func TestLockoutOwnerGetsInDuringAttack(t *testing.T) {
	h := newHarness(t, harnessConfig{mutate: trustLoopback})
	owner := h.createUser("ann", "ann@example.test", "correct horse battery")
	const attacker, home = "203.0.113.66", "192.0.2.10"
	atk := h.browser()
	code, wrong := h.signInFrom(atk, attacker, "ann", "guess 0")
	if code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	for i := 1; i < 40; i++ {
		h.clock.Advance(time.Second)
		code, body := h.signInFrom(atk, attacker, "ann", fmt.Sprintf("guess %d", i))
		if code != http.StatusUnauthorized || body != wrong {
			t.Fatalf("guess %d: %d, a different page:\n%s", i, code, body)
		}
		if i%10 == 0 {
			if code, body := h.signInFrom(h.browser(), home, "ann", "correct horse battery"); code != http.StatusSeeOther {
				t.Fatalf("the owner during the attack (guess %d): %d\n%s", i, code, body)
			}
		}
	}
	// The attacker's address is locked out of ann: the right password looks wrong.
	if code, body := h.signInFrom(atk, attacker, "ann", "correct horse battery"); code != http.StatusUnauthorized || body != wrong {
		t.Fatalf("the right password from the locked address: %d\n%s", code, body)
	}
	if e := lastAudit(t, h, audit.EventAddressLocked); e.UserID != owner.ID || e.ClientAddr != attacker {
		t.Errorf("address lock audit = %+v", e)
	}

	// A spray from many addresses soft-locks the account; the owner's
	// network has not failed, so the owner still gets in.
	for i := range 40 {
		h.clock.Advance(100 * time.Millisecond)
		if code, _ := h.signInFrom(h.browser(), fmt.Sprintf("198.51.100.%d", i), "ann", "spray"); code != http.StatusUnauthorized {
			t.Fatalf("spray %d: %d", i, code)
		}
	}
	if e := lastAudit(t, h, audit.EventAccountLocked); e.UserID != owner.ID {
		t.Errorf("account lock audit = %+v", e)
	}
	c := h.browser()
	if code, body := h.signInFrom(c, home, "ann", "correct horse battery"); code != http.StatusSeeOther {
		t.Fatalf("the owner during the spray: %d\n%s", code, body)
	}
	if resp, _ := h.get(c, "/account/"); resp.StatusCode != http.StatusOK {
		t.Errorf("the owner's session: %d", resp.StatusCode)
	}
	// A sprayer's address that failed is refused even with the right password, with the same page.
	if code, body := h.signInFrom(h.browser(), "198.51.100.3", "ann", "correct horse battery"); code != http.StatusUnauthorized || body != wrong {
		t.Errorf("the right password from a failed address during the soft lock: %d\n%s", code, body)
	}
}

// TestNoPasswordOracleOverHTTP: a wrong password and the correct password
// of a disabled, a locked or a Dataverse-refused account get the same
// status and the same page, while the audit log records the real reason;
// with CRMGATE_SIGNIN_EXPLAIN_REFUSALS the refusal is explained.
func TestNoPasswordOracleOverHTTP(t *testing.T) {
	for _, explain := range []bool{false, true} {
		t.Run(fmt.Sprintf("explain=%v", explain), func(t *testing.T) {
			emu, client := newContactEmulator(t)
			_ = emu
			h := contactHarnessWith(t, client, harnessConfig{mutate: trustLoopback}, func(o *wiring.Options) { o.ExplainRefusals = explain })
			ctx := context.Background()
			for _, n := range []string{"ann", "bob", "dora", "lena"} {
				h.createUser(n, n+"@example.test", "correct horse battery")
			}
			if err := h.svc.Accounts.SetStatus(ctx, "dora", authz.StatusDisabled, "test"); err != nil {
				t.Fatal(err)
			}
			const locked = "203.0.113.9"
			for range 5 {
				h.signInFrom(h.browser(), locked, "lena", "wrong")
			}
			cases := []struct {
				name, login, addr, reason string
				explained                 bool // answered differently with explanations
			}{
				{"disabled", "dora", "192.0.2.1", signin.ReasonDisabled, true},
				{"refused by Dataverse (inactive contact)", "bob", "192.0.2.1", binding.ReasonContactInactive, true},
				{"locked address", "lena", locked, signin.ReasonLockedOut, false},
			}
			for _, tt := range cases {
				t.Run(tt.name, func(t *testing.T) {
					wcode, wrong := h.signInFrom(h.browser(), tt.addr, tt.login, "wrong password")
					rcode, right := h.signInFrom(h.browser(), tt.addr, tt.login, "correct horse battery")
					if e := lastAudit(t, h, audit.EventSignInFailed); e.Detail != tt.reason {
						t.Errorf("audited reason %q, want %q", e.Detail, tt.reason)
					}
					if explain && tt.explained {
						if rcode != http.StatusForbidden || msg(right) == msg(wrong) {
							t.Errorf("explained refusal: %d %q (wrong password: %q)", rcode, msg(right), msg(wrong))
						}
						return
					}
					if wcode != http.StatusUnauthorized || rcode != wcode || right != wrong {
						t.Errorf("wrong password %d, right password %d; pages differ: %v\nwrong: %q\nright: %q",
							wcode, rcode, right != wrong, msg(wrong), msg(right))
					}
				})
			}
		})
	}
}

// lastAudit returns the newest audit event of type typ.
func lastAudit(t *testing.T, h *harness, typ string) audit.Event {
	t.Helper()
	es, err := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: typ, Limit: 1})
	if err != nil || len(es) == 0 {
		t.Fatalf("no %s audit event: %v", typ, err)
	}
	return es[0]
}
