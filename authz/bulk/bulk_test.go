package bulk_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/bulk"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/wiring"
)

// TestActions runs each bulk action twice on one user, as a job does for
// the item in flight when its worker died: the second run does no harm and
// succeeds; and the refusals an operator sees have their own codes.
func TestActions(t *testing.T) {
	f := authztest.NewFixture(t, wiring.Options{BreakGlassRole: "admin"})
	acts := bulk.Actions(bulk.Options{Accounts: f.Svc.Accounts, Approvals: f.Svc.Onboarding})
	run := func(action string, u *authz.User, params string) error {
		t.Helper()
		a, ok := acts[action]
		if !ok {
			t.Fatalf("no action %s", action)
		}
		if params == "" {
			params = "{}"
		}
		if err := a.Validate(json.RawMessage(params)); err != nil {
			t.Fatalf("%s: Validate(%s): %v", action, params, err)
		}
		return a.Run(t.Context(), u.ID, json.RawMessage(params), "admin-id")
	}
	twice := func(action string, u *authz.User, params string) {
		t.Helper()
		for i := range 2 {
			if err := run(action, u, params); err != nil {
				t.Errorf("%s run %d: %v", action, i+1, err)
			}
		}
	}
	ana := f.CreateUser(t, "ana", authz.StatusActive)
	twice(bulk.Disable, ana, "")
	if u := f.User(t, ana.ID); u.Status != authz.StatusDisabled {
		t.Errorf("ana is %s", u.Status)
	}
	twice(bulk.Enable, ana, "")
	twice(bulk.ForcePassword, ana, "")
	twice(bulk.Unlink, ana, "")
	twice(bulk.Link, ana, `{"mode":"username"}`)
	if u := f.User(t, ana.ID); u.Status != authz.StatusActive || !u.MustChangePassword || u.Binding.Mode != authz.BindingUsername {
		t.Errorf("ana = %+v", u)
	}

	pen := f.CreateUser(t, "pen", authz.StatusPending)
	code := func(err error) string {
		c, _, _ := jobs.Outcome(err)
		return c
	}
	if err := run(bulk.Enable, pen, ""); code(err) != "pending" {
		t.Errorf("enable a pending user: %v", err)
	}
	twice(bulk.Approve, pen, "")
	if u := f.User(t, pen.ID); u.Status != authz.StatusActive {
		t.Errorf("pen after approval is %s", u.Status)
	}
	if err := run(bulk.Approve, ana, ""); err != nil {
		t.Errorf("approving an active user (done already): %v", err)
	}
	dis := f.CreateUser(t, "dis", authz.StatusDisabled)
	if err := run(bulk.Approve, dis, ""); code(err) != "not_pending" {
		t.Errorf("approving a disabled user: %v", err)
	}
	if err := run(bulk.Reject, dis, ""); code(err) != "not_pending" {
		t.Errorf("rejecting a disabled user: %v", err)
	}
	rej := f.CreateUser(t, "rej", authz.StatusPending)
	twice(bulk.Reject, rej, `{"reason":"not a customer"}`)
	if _, err := f.Svc.Accounts.UserByID(t.Context(), rej.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("rejected registration: %v", err)
	}
	twice(bulk.Delete, dis, "")
	if _, err := f.Svc.Accounts.UserByID(t.Context(), dis.ID); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("deleted user: %v", err)
	}

	root := f.CreateUser(t, "root", authz.StatusActive)
	if err := f.Svc.Accounts.SetRoles(t.Context(), "root", []string{"admin"}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := run(bulk.Disable, root, ""); code(err) != jobs.CodeBreakGlass {
		t.Errorf("disabling the last break-glass admin: %v (%s)", err, code(err))
	}

	for action, params := range map[string]string{bulk.Link: `{"mode":"lookup"}`, bulk.Disable: `{"x":1}`,
		bulk.Reject: `{"reason":"` + string(make([]byte, 0)) + `","extra":1}`} {
		var verr *authz.ValidationError
		if err := acts[action].Validate(json.RawMessage(params)); !errors.As(err, &verr) {
			t.Errorf("%s: Validate(%s) = %v, want a ValidationError", action, params, err)
		}
	}
	if _, ok := acts[bulk.Credentials]; ok {
		t.Error("credentials offered without a set-password link service")
	}
}
