package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/mail"
)

// apiPost posts body to the REST API path with extra headers.
func (h *harness) apiPost(c *http.Client, path, body string, hdr ...string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.url("/.auth/api"+path), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, b := h.do(c, req)
	return resp.StatusCode, b
}

func (h *harness) pendingUser(name string) *authz.User {
	h.t.Helper()
	u, err := h.svc.Accounts.CreateUser(context.Background(), accounts.NewUser{Username: name, Email: name + "@example.test",
		Password: "correct horse battery", Status: authz.StatusPending}, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// mailsTo returns the subjects and texts of the mails queued for userID.
func (h *harness) mailsTo(userID string) []mail.Message {
	h.t.Helper()
	es, err := h.db.OutboxEvents(context.Background(), userID)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []mail.Message
	for _, e := range es {
		if e.Kind == mail.Kind {
			var m mail.Message
			if err := json.Unmarshal(e.Payload, &m); err != nil {
				h.t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}

// TestRESTApproval: an admin lists pending users, approves and rejects
// them one by one and in bulk; an API key needs users:approve; a
// cross-site request with the admin's cookie is refused; decisions on
// users who are not pending fail per item.
func TestRESTApproval(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	admin := h.browser()
	h.signIn(admin, "root", "correct horse battery")
	ann, bob, cara, dan := h.pendingUser("ann"), h.pendingUser("bob"), h.pendingUser("cara"), h.pendingUser("dan")

	resp, body := h.get(admin, "/.auth/api/users?status=pending")
	var list struct{ Users []authz.User }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Users) != 4 {
		t.Fatalf("pending list: %d %s", resp.StatusCode, body)
	}

	// Cross-site with the admin's cookie: refused before anything happens.
	if code, _ := h.apiPost(admin, "/users/"+ann.ID+"/approve", "", "Sec-Fetch-Site", "cross-site"); code != 403 {
		t.Errorf("cross-site approval: %d", code)
	}
	code, body := h.apiPost(admin, "/users/"+ann.ID+"/approve", "")
	var approved authz.User
	if code != 200 || json.Unmarshal([]byte(body), &approved) != nil || approved.Status != authz.StatusActive {
		t.Fatalf("approve: %d %s", code, body)
	}
	if ms := h.mailsTo(ann.ID); len(ms) != 1 || !strings.Contains(ms[0].Text, h.opts.PublicURL+"/.auth/signin") {
		t.Errorf("approval mail %+v", ms)
	}
	root := mustUserID(t, h, "root")
	if es, _ := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventUserApproved}); len(es) != 1 || es[0].Actor != root {
		t.Errorf("audit %+v", es)
	}
	// Approved: ann signs in.
	h.signIn(h.browser(), "ann", "correct horse battery")

	if code, body := h.apiPost(admin, "/users/ann/approve", "{}"); code != 409 || !strings.Contains(body, "not_pending") {
		t.Errorf("second approval: %d %s", code, body)
	}
	if code, _ := h.apiPost(admin, "/users/nobody/approve", ""); code != 404 {
		t.Errorf("unknown user: %d", code)
	}
	if code, _ := h.apiPost(admin, "/users/bob/approve", `{"reason":"x"}`); code != 400 {
		t.Errorf("approval with a body: %d", code)
	}
	if code, _ := h.apiPost(admin, "/users/bob/reject", `{"reason":"`+strings.Repeat("x", 501)+`"}`); code != 400 {
		t.Errorf("long reason: %d", code)
	}
	code, body = h.apiPost(admin, "/users/bob/reject", `{"reason":"Use your work address."}`)
	if code != 200 || !strings.Contains(body, `"rejected":true`) {
		t.Fatalf("reject: %d %s", code, body)
	}
	if ms := h.mailsTo(bob.ID); len(ms) != 1 || !strings.Contains(ms[0].Text, "Use your work address.") {
		t.Errorf("rejection mail %+v", ms)
	}
	if _, err := h.svc.Accounts.UserByID(context.Background(), bob.ID); err == nil {
		t.Error("the rejected account remains")
	}

	// An API key with users:read cannot decide; one with users:approve can,
	// in bulk, each user on its own.
	readKey, _, _ := h.svc.APIKeys.CreateAPIKey(context.Background(), "r", []string{permissions.UsersRead}, time.Time{}, "test")
	approveKey, info, _ := h.svc.APIKeys.CreateAPIKey(context.Background(), "a", []string{permissions.UsersApprove}, time.Time{}, "test")
	c := &http.Client{}
	if code, _ := h.apiPost(c, "/users/approve", `{"users":["cara"]}`, "Authorization", "Bearer "+readKey); code != 403 {
		t.Errorf("read key: %d", code)
	}
	code, body = h.apiPost(c, "/users/approve", `{"users":["cara","ann","ghost","dan@example.test"]}`, "Authorization", "Bearer "+approveKey)
	var res struct {
		Results []struct {
			User, ID string
			OK       bool
			Error    *struct{ Code, Message string }
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil || len(res.Results) != 4 {
		t.Fatalf("bulk approve: %d %s", code, body)
	}
	if !res.Results[0].OK || res.Results[0].ID != cara.ID || res.Results[1].OK || res.Results[1].Error.Code != "not_pending" ||
		res.Results[2].Error.Code != "not_found" || !res.Results[3].OK || res.Results[3].ID != dan.ID {
		t.Errorf("bulk results %s", body)
	}
	if es, _ := h.svc.Audit.ListAudit(context.Background(), audit.Filter{Type: audit.EventUserApproved, Actor: "apikey:" + info.ID}); len(es) != 2 {
		t.Errorf("%d approvals audited for the key", len(es))
	}
	for _, bad := range []string{``, `{}`, `{"users":[]}`, `{"users":["a"],"extra":1}`, `{"users":["a"]} {}`, `{"users":["a"],"reason":"r"}`} {
		if code, _ := h.apiPost(admin, "/users/approve", bad); code != 400 {
			t.Errorf("bulk approve %q: %d", bad, code)
		}
	}
	many, _ := json.Marshal(map[string][]string{"users": make([]string, 501)})
	if code, _ := h.apiPost(admin, "/users/reject", string(many)); code != 400 {
		t.Errorf("501 users: %d", code)
	}
	code, body = h.apiPost(admin, "/users/reject", `{"users":["cara","ghost"],"reason":"late"}`)
	if code != 200 || !strings.Contains(body, "not_pending") || !strings.Contains(body, "not_found") {
		t.Errorf("bulk reject: %d %s", code, body)
	}
}

// Contacts of the invite-contacts tests, in the emulator.
const (
	invEve   = "e0000000-0000-4000-8000-00000000000e"
	invFay   = "e0000000-0000-4000-8000-00000000000f"
	invGus   = "e0000000-0000-4000-8000-000000000010"
	invHal   = "e0000000-0000-4000-8000-000000000011"
	invGhost = "e0000000-0000-4000-8000-0000000000ff"
)

const inviteSeed = `{
 "contacts": [
  {"contactid": "` + annID + `", "firstname": "Ann", "lastname": "Lee", "emailaddress1": "ann@example.test",
   "adx_identity_username": "ann", "adx_identity_logonenabled": true, "jobtitle": "partner"},
  {"contactid": "` + invEve + `", "firstname": "Eve", "lastname": "Stone", "emailaddress1": "eve@example.test", "jobtitle": "partner"},
  {"contactid": "` + invFay + `", "firstname": "Fay", "lastname": "Hill", "emailaddress1": "fay@example.test", "jobtitle": "partner"},
  {"contactid": "` + invGus + `", "firstname": "Gus", "lastname": "Gone", "emailaddress1": "gus@example.test", "jobtitle": "partner",
   "statecode": 1, "statuscode": 2},
  {"contactid": "` + invHal + `", "firstname": "Hal", "lastname": "NoMail", "jobtitle": "partner"}
 ]
}`

// TestRESTInviteContacts generates credentials through the REST API for
// contacts in the emulator: by ids and by a filter, per-item outcomes, a
// dry run, a rerun that creates and sends nothing, the scope, and
// Dataverse down.
func TestRESTInviteContacts(t *testing.T) {
	emu, client := seededContactEmulator(t, inviteSeed)
	h := contactHarnessWith(t, client, harnessConfig{})
	ctx := context.Background()
	h.createUser("root", "root@example.test", "correct horse battery", "admin")
	if err := h.svc.Accounts.SetBinding(ctx, "root", authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
		t.Fatal(err)
	}
	h.createUser("ann", "ann.other@example.test", "correct horse battery") // bound by username to Ann's contact
	admin := h.browser()
	h.signIn(admin, "root", "correct horse battery")

	type result struct {
		ContactID string `json:"contact_id"`
		Outcome   string
		Reason    string
		Message   string
		UserID    string `json:"user_id"`
		Username  string
		Email     string
	}
	type answer struct {
		Summary struct {
			Created     int
			WouldCreate int `json:"would_create"`
			Skipped     int
			Failed      int
		}
		Results []result
	}
	invite := func(c *http.Client, body string, hdr ...string) (int, answer, string) {
		t.Helper()
		code, b := h.apiPost(c, "/users/invite-contacts", body, hdr...)
		var a answer
		if code == 200 {
			dec := json.NewDecoder(strings.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				t.Fatalf("%v in %s", err, b)
			}
		}
		return code, a, b
	}
	ids := `{"contact_ids":["` + annID + `","` + invEve + `","` + invGus + `","` + invHal + `","` + invGhost + `","nope"]`
	code, a, body := invite(admin, ids+`,"dry_run":true}`)
	if code != 200 || a.Summary.WouldCreate != 1 || a.Results[1].Outcome != "would_create" {
		t.Fatalf("dry run: %d %s", code, body)
	}
	code, a, body = invite(admin, ids+`}`)
	if code != 200 {
		t.Fatalf("invite: %d %s", code, body)
	}
	want := []struct{ outcome, reason string }{
		{"skipped", "already_has_account"}, {"created", ""}, {"failed", "contact_inactive"},
		{"failed", "no_email"}, {"failed", "contact_not_found"}, {"failed", "invalid_contact_id"},
	}
	for i, w := range want {
		if a.Results[i].Outcome != w.outcome || a.Results[i].Reason != w.reason {
			t.Errorf("item %d: %+v, want %s %s", i, a.Results[i], w.outcome, w.reason)
		}
	}
	if a.Summary.Created != 1 || a.Summary.Skipped != 1 || a.Summary.Failed != 4 {
		t.Errorf("summary %+v", a.Summary)
	}
	eve, err := h.svc.Accounts.UserByID(ctx, a.Results[1].UserID)
	if err != nil || eve.Username != "eve@example.test" || eve.Binding.Mode != authz.BindingLookup || eve.Binding.Ref.ID != invEve ||
		eve.Binding.Ref.Name != "Eve Stone" || eve.PasswordHash != "" || eve.EmailConfirmed {
		t.Fatalf("eve %+v %v", eve, err)
	}
	ms := h.mailsTo(eve.ID)
	if len(ms) != 1 || ms[0].To != "eve@example.test" ||
		!strings.Contains(ms[0].Text, h.opts.PublicURL+"/.auth/reset/confirm?purpose=set_password&token=") ||
		!strings.Contains(ms[0].Text, "7 days") || !strings.Contains(ms[0].Text, "eve@example.test") {
		t.Fatalf("set-password mail %+v", ms)
	}
	// The account cannot sign in before a password is set.
	if resp, _ := h.postSignIn(h.browser(), "eve@example.test", "", nil); resp.StatusCode == http.StatusSeeOther {
		t.Error("an account without a password signed in")
	}

	// By filter: the partners; a rerun creates and sends nothing.
	before := emu.Requests("GET contacts")
	code, a, body = invite(admin, `{"filter":"jobtitle eq 'partner' and statecode eq 0"}`)
	if code != 200 || a.Summary.Created != 1 || a.Summary.Skipped != 2 || a.Summary.Failed != 1 {
		t.Fatalf("filter: %d %s", code, body)
	}
	if n := emu.Requests("GET contacts") - before; n != 1 {
		t.Errorf("the filter took %d requests, want 1", n)
	}
	code, a, _ = invite(admin, `{"filter":"jobtitle eq 'partner' and statecode eq 0"}`)
	if code != 200 || a.Summary.Created != 0 || a.Summary.Skipped != 3 {
		t.Errorf("rerun: %+v", a.Summary)
	}
	if ms := h.mailsTo(eve.ID); len(ms) != 1 {
		t.Errorf("a rerun mailed eve again: %d mails", len(ms))
	}

	for _, bad := range []string{`{}`, `{"filter":"emailaddress1 eq {email}"}`, `{"filter":"bogus"}`,
		`{"contact_ids":["` + invEve + `"],"filter":"a eq 1"}`, `{"contact_ids":"x"}`, `{"other":1}`} {
		if code, _, b := invite(admin, bad); code != 400 {
			t.Errorf("%s: %d %s", bad, code, b)
		}
	}
	many, _ := json.Marshal(map[string][]string{"contact_ids": make([]string, 501)})
	if code, _, _ := invite(admin, string(many)); code != 400 {
		t.Errorf("501 ids: %d", code)
	}
	inviteKey, _, _ := h.svc.APIKeys.CreateAPIKey(ctx, "i", []string{permissions.UsersCredentials}, time.Time{}, "test")
	bindKey, _, _ := h.svc.APIKeys.CreateAPIKey(ctx, "b", []string{permissions.BindingsWrite}, time.Time{}, "test")
	c := &http.Client{}
	if code, _, _ := invite(c, `{"contact_ids":["`+invFay+`"]}`, "Authorization", "Bearer "+bindKey); code != 403 {
		t.Errorf("bind key: %d", code)
	}
	if code, a, _ := invite(c, `{"contact_ids":["`+invFay+`"]}`, "Authorization", "Bearer "+inviteKey); code != 200 || a.Results[0].Reason != "already_has_account" {
		t.Errorf("invite key: %d %+v", code, a)
	}
	if code, _, _ := invite(admin, `{"contact_ids":["`+invEve+`"]}`, "Sec-Fetch-Site", "cross-site"); code != 403 {
		t.Errorf("cross-site: %d", code)
	}

	// Dataverse down: each id fails on its own; a filter fails whole.
	emu.Close()
	code, a, body = invite(admin, `{"contact_ids":["`+invFay+`","`+invGhost+`"]}`)
	if code != 200 || a.Results[0].Reason != "already_has_account" || a.Results[1].Reason != "dataverse_unavailable" {
		t.Errorf("down, ids: %d %s", code, body)
	}
	if code, _, _ := invite(admin, `{"filter":"jobtitle eq 'partner'"}`); code != 503 {
		t.Errorf("down, filter: %d", code)
	}
}
