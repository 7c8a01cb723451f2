package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// bindingSeed has a contact for alice (may sign in) and one for bob, whose
// logon right was taken away in Dataverse.
const bindingSeed = `{"contacts": [
  {"contactid": "c0000000-0000-4000-8000-00000000a11c", "firstname": "Alice", "lastname": "Example",
   "emailaddress1": "alice@example.test", "adx_identity_username": "alice", "adx_identity_logonenabled": true},
  {"contactid": "c0000000-0000-4000-8000-000000000b0b", "firstname": "Bob", "lastname": "Example",
   "emailaddress1": "bob@example.test", "adx_identity_username": "bob", "adx_identity_logonenabled": false}
]}`

// startEmulator starts a Dataverse emulator with bindingSeed and returns it
// with the settings that point the gateway at it.
func startEmulator(t *testing.T) (*dataversetest.Server, []string) {
	t.Helper()
	return startEmulatorWith(t, bindingSeed)
}

// startEmulatorWith is startEmulator with the seed given.
func startEmulatorWith(t *testing.T, seed string) (*dataversetest.Server, []string) {
	t.Helper()
	const secret = "emulator-secret"
	dv := dataversetest.NewServer(dataversetest.Options{TenantID: demoTenant,
		Clients: []dataversetest.Client{{ID: demoClientID, Secret: secret}}})
	t.Cleanup(dv.Close)
	if err := dv.LoadSeed(strings.NewReader(seed)); err != nil {
		t.Fatal(err)
	}
	return dv, []string{
		"CRMGATE_DATAVERSE_URL=" + dv.URL, "CRMGATE_DATAVERSE_AUTHORITY_HOST=" + dv.URL,
		"CRMGATE_DATAVERSE_TENANT_ID=" + demoTenant, "CRMGATE_DATAVERSE_CLIENT_ID=" + demoClientID,
		"CRMGATE_DATAVERSE_CLIENT_SECRET=" + secret,
	}
}

// TestSignInCheckThroughTheGateway builds the gateway against the emulator
// with username bindings and the sign-in check on: a new user is bound by
// username, signs in through the gateway's own sign-in form with exactly
// one contacts request, and the upstream receives the bound contact. A
// contact whose logon right is off is refused after the right password.
func TestSignInCheckThroughTheGateway(t *testing.T) {
	dv, dvEnv := startEmulator(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "contact %s", r.Header.Get("X-Current-User-Contact-Id"))
	}))
	defer upstream.Close()
	dir := t.TempDir()
	env := baseEnv(t, dir, append(dvEnv, "CRMGATE_UPSTREAM_URL="+upstream.URL,
		"CRMGATE_BINDING_DEFAULT_MODE=username", "CRMGATE_SIGNIN_DATAVERSE_CHECK=true",
		// The refusal below is told apart only with explanations on (the
		// default answers it like a wrong password).
		"CRMGATE_SIGNIN_EXPLAIN_REFUSALS=true")...)
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := buildGateway(ctx, cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	const password = "correct horse battery staple"
	for _, name := range []string{"alice", "bob"} {
		u, err := g.auth.Accounts.CreateUser(ctx, accounts.NewUser{Username: name, Email: name + "@example.test", Password: password}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if u.Binding.Mode != authz.BindingUsername {
			t.Fatalf("%s created with binding %+v, want the default mode username", name, u.Binding)
		}
	}

	// Through the sign-in form, as a browser would.
	serve := func(req *http.Request, cookies []*http.Cookie) *httptest.ResponseRecorder {
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		g.handler.ServeHTTP(rec, req)
		return rec
	}
	base := cfg.PublicURL
	rec := serve(httptest.NewRequest("GET", base+"/.auth/signin?redirect_url=/private", nil), nil)
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil {
		t.Fatalf("sign-in page: %d\n%s", rec.Code, rec.Body)
	}
	cookies := rec.Result().Cookies()
	before := dv.Requests("GET contacts")
	form := url.Values{"login": {"alice"}, "password": {password}, "csrf_token": {m[1]}, "redirect_url": {"/private"}}
	req := httptest.NewRequest("POST", base+"/.auth/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	rec = serve(req, cookies)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/private" {
		t.Fatalf("sign-in: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if n := dv.Requests("GET contacts") - before; n != 1 {
		t.Errorf("the sign-in check made %d contacts requests, want exactly 1", n)
	}
	rec = serve(httptest.NewRequest("GET", base+"/private", nil), rec.Result().Cookies())
	if got := rec.Body.String(); got != "contact c0000000-0000-4000-8000-00000000a11c" {
		t.Errorf("upstream saw %q (status %d), want alice's contact id", got, rec.Code)
	}

	// The right password, but Dataverse says bob may not sign in.
	_, _, err = g.auth.SignIn.SignInWithContact(ctx, signin.Credentials{Login: "bob", Password: password}, nil)
	var refused *signin.RefusedError
	if !errors.As(err, &refused) || refused.Reason != binding.ReasonContactLogonDisabled {
		t.Fatalf("bob signed in with %v, want a refusal for %s", err, binding.ReasonContactLogonDisabled)
	}
}

// TestRequireLogonEnabledOff shows CRMGATE_SIGNIN_REQUIRE_LOGON_ENABLED=false
// reaching authz: bob's contact, whose logon right is off, signs in.
func TestRequireLogonEnabledOff(t *testing.T) {
	_, dvEnv := startEmulator(t)
	cfg, err := loadConfig(baseEnv(t, t.TempDir(), append(dvEnv, "CRMGATE_BINDING_DEFAULT_MODE=username",
		"CRMGATE_SIGNIN_DATAVERSE_CHECK=true", "CRMGATE_SIGNIN_REQUIRE_LOGON_ENABLED=false")...))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := buildGateway(ctx, cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.auth.Accounts.CreateUser(ctx, accounts.NewUser{Username: "bob", Email: "bob@example.test", Password: "correct horse battery"}, "test"); err != nil {
		t.Fatal(err)
	}
	_, c, err := g.auth.SignIn.SignInWithContact(ctx, signin.Credentials{Login: "bob", Password: "correct horse battery"}, nil)
	if err != nil || c == nil || c.ID != "c0000000-0000-4000-8000-000000000b0b" {
		t.Fatalf("bob: contact %+v, %v", c, err)
	}
}

// TestBreakGlassGuardWired shows BreakGlassRole "admin" is set without
// Dataverse too: the last active unbound admin cannot lose the role.
func TestBreakGlassGuardWired(t *testing.T) {
	cfg, err := loadConfig(baseEnv(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := buildGateway(ctx, cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.auth.Accounts.CreateUser(ctx, accounts.NewUser{Username: "root", Email: "root@example.test",
		Password: "correct horse battery", Roles: []string{"admin"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := g.auth.Accounts.SetRoles(ctx, "root", nil, "test"); !errors.Is(err, authz.ErrLastBreakGlassAdmin) {
		t.Fatalf("demoting the last admin: %v, want ErrLastBreakGlassAdmin", err)
	}
}

// TestContactFilters checks the policy's filter templates at start-up and
// in check-config: errors name the file, the line and authz's reason.
func TestContactFilters(t *testing.T) {
	dir := t.TempDir()
	_, dvEnv := startEmulator(t)
	write := func(name, dataverse string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(dvPolicy(dataverse)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// dvPolicy's dataverse section ends after its lifecycle events; extra lines start at line first.
	first := dvPolicyExtraLine()
	good := write("good.yaml", "  binding_filter: emailaddress1 eq {email}\n  signin_filter: adx_identity_logonenabled eq true\n")
	badSyntax := write("syntax.yaml", "  binding_filter: emailaddress1 gt {email}\n  signin_filter: \"x eq {nickname}\"\n")
	noField := write("nofield.yaml", "  binding_filter: emailaddress1 eq 'a@example.test'\n")
	none := write("none.yaml", "")
	contactRoute := filepath.Join(dir, "contact.yaml")
	if err := os.WriteFile(contactRoute, []byte("routes:\n  - name: orders\n    paths: [\"/orders/**\"]\n    access: bound\n    contact_columns: [fullname]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   []string
		valid bool
		want  []string
	}{
		{"custom mode with a filter", append([]string{"CRMGATE_POLICY_FILE=" + good, "CRMGATE_BINDING_DEFAULT_MODE=custom",
			"CRMGATE_SIGNIN_DATAVERSE_CHECK=true"}, dvEnv...), true, []string{"configuration is valid"}},
		{"signin filter without the check", append([]string{"CRMGATE_POLICY_FILE=" + good}, dvEnv...), true,
			[]string{"warning: the policy has a dataverse.signin_filter but CRMGATE_SIGNIN_DATAVERSE_CHECK is off"}},
		{"bad templates", append([]string{"CRMGATE_POLICY_FILE=" + badSyntax}, dvEnv...), false, []string{
			fmt.Sprintf("syntax.yaml:%d: dataverse.binding_filter: authz: filter template: position", first),
			fmt.Sprintf("syntax.yaml:%d: dataverse.signin_filter: authz: filter template: position", first+1),
		}},
		{"binding filter without a user field", append([]string{"CRMGATE_POLICY_FILE=" + noField}, dvEnv...), false,
			[]string{fmt.Sprintf("nofield.yaml:%d: dataverse.binding_filter: names no user field", first)}},
		{"contact route without the sign-in check", append([]string{"CRMGATE_POLICY_FILE=" + contactRoute}, dvEnv...), false,
			[]string{`contact.yaml: route "orders" uses the signed-in user's contact`, "CRMGATE_SIGNIN_DATAVERSE_CHECK=true"}},
		{"contact route with the check", append([]string{"CRMGATE_POLICY_FILE=" + contactRoute, "CRMGATE_SIGNIN_DATAVERSE_CHECK=true"}, dvEnv...), true,
			[]string{"configuration is valid"}},
		{"custom mode without a filter", append([]string{"CRMGATE_POLICY_FILE=" + none, "CRMGATE_BINDING_DEFAULT_MODE=custom"}, dvEnv...), false,
			[]string{"none.yaml: CRMGATE_BINDING_DEFAULT_MODE is custom but the policy has no dataverse.binding_filter"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv(t, dir, tt.env...)
			var out bytes.Buffer
			err := run(context.Background(), []string{"check-config"}, env, nil, &out, io.Discard)
			if (err == nil) != tt.valid {
				t.Fatalf("check-config returned %v:\n%s", err, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("check-config output lacks %q:\n%s", w, out.String())
				}
			}
			if tt.valid {
				return
			}
			cfg, err := loadConfig(env)
			if err != nil {
				t.Fatal(err)
			}
			g, err := buildGateway(context.Background(), cfg, io.Discard, nil)
			if err == nil {
				g.Close()
				t.Fatal("buildGateway accepted the policy")
			}
			if !strings.Contains(err.Error(), tt.want[0]) {
				t.Errorf("buildGateway: %v, want %q", err, tt.want[0])
			}
		})
	}
}

func TestAPIKeyCommands(t *testing.T) {
	dir := t.TempDir()
	// Only the database setting is needed, as for the other users commands.
	env := []string{"CRMGATE_DATABASE_URL=sqlite:" + filepath.Join(dir, "db")}
	keys := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users", "api-key"}, args...), env, nil, &out, io.Discard)
		return out.String(), err
	}
	out, err := keys("create", "--name", "Power Automate flow", "--scopes", "users:bind, users:read", "--expires", "720h")
	m := regexp.MustCompile(`(?m)^created API key ([a-z2-7]+) \(Power Automate flow\) with scopes users:read,bindings:write, expires \S+\nkey: (cgk_\S+)\n`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	id, key := m[1], m[2]
	if _, err := keys("create", "--name", "forever", "--scopes", "contacts:read"); err != nil {
		t.Fatal(err)
	}

	// The printed key authenticates, with its scopes.
	db := func() *wiring.Services {
		svc, closeStore, err := openAccounts(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeStore)
		return svc
	}()
	k, err := db.APIKeys.AuthenticateAPIKey(context.Background(), key)
	if err != nil || k.ID != id || !k.HasScope(permissions.BindingsWrite) || k.HasScope(permissions.ContactsRead) {
		t.Fatalf("the printed key: %+v, %v", k, err)
	}

	if out, err = keys("revoke", "--id", id); err != nil || !strings.Contains(out, "API key "+id+" revoked") {
		t.Fatalf("revoke: %v %q", err, out)
	}
	if _, err := db.APIKeys.AuthenticateAPIKey(context.Background(), key); !errors.Is(err, apikeys.ErrInvalidAPIKey) {
		t.Fatalf("revoked key: %v", err)
	}
	out, err = keys("list")
	if err != nil || !regexp.MustCompile(id+`\s+Power Automate flow\s+users:read,bindings:write\s+revoked\s`).MatchString(out) ||
		!regexp.MustCompile(`forever\s+contacts:read\s+active\s+\S+\s+-\s+\S+`).MatchString(out) || strings.Contains(out, key[len(key)-20:]) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = keys("list", "--json")
	if err != nil || !strings.Contains(out, `"id": "`+id+`"`) || strings.Contains(out, "secret") {
		t.Fatalf("list --json: %v\n%s", err, out)
	}

	var ue usageError
	var verr *authz.ValidationError
	for _, tt := range []struct {
		args  []string
		usage bool
	}{
		{[]string{"create", "--name", "x"}, true},
		{[]string{"create", "--scopes", "users:read"}, true},
		{[]string{"create", "--name", "x", "--scopes", "users:read", "--expires", "-1h"}, true},
		{[]string{"create", "--name", "x", "--scopes", "users:read", "--expires", "soon"}, true},
		{[]string{"revoke"}, true},
		{[]string{"rotate"}, true},
		{nil, true},
		{[]string{"create", "--name", "x", "--scopes", "admin"}, false},
	} {
		_, err := keys(tt.args...)
		if tt.usage && !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", tt.args, err)
		}
		if !tt.usage && !errors.As(err, &verr) {
			t.Errorf("%v: %v, want a *authz.ValidationError", tt.args, err)
		}
	}
	if _, err := keys("revoke", "--id", "nosuchkey0000"); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("revoking an unknown key: %v, want ErrNotFound", err)
	}
}
