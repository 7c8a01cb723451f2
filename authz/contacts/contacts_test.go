package contacts_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/store/storetest"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
	"github.com/crmgate/crmgate/dataverse"
)

const (
	emuClient = "0c000000-0000-4000-8000-0000000000c1"
	filter    = "adx_organizationname eq 'Acme' and statecode eq 0"
)

// recordingCache records InvalidateContact calls.
type recordingCache struct {
	mu  sync.Mutex
	ids []string
}

func (c *recordingCache) InvalidateContact(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, id)
}

func (c *recordingCache) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids)
}

type env struct {
	svc    *contacts.Service
	ids    *wiring.Services
	db     *store.DB
	emu    *dataversetest.Server
	client *crmclient.Client
	cache  *recordingCache
	dir    *crmclient.Directory
	n      int
}

// newEnv is the service over the emulator (HTTP) and a real store.
func newEnv(t *testing.T, open storetest.Opener) *env {
	t.Helper()
	emu := dataversetest.NewServer(dataversetest.Options{TenantID: "t", Clients: []dataversetest.Client{{ID: emuClient, Secret: "s"}}})
	t.Cleanup(emu.Close)
	client, err := crmclient.New(crmclient.Config{URL: emu.URL, AuthorityHost: emu.URL, TenantID: "t", ClientID: emuClient, ClientSecret: "s", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	dir := crmclient.NewDirectory(client, crmclient.WebRoleModelStandard)
	clock := authztest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	db, err := store.Open(t.Context(), open(t), store.WithNow(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	o := authztest.Options(wiring.Options{Contacts: dir, Invitations: dir})
	o.Now = clock.Now
	ids, err := wiring.New(db, o)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ids: ids, db: db, emu: emu, client: client, cache: &recordingCache{}, dir: dir}
	e.svc, err = contacts.New(contacts.Options{
		Directory: dir, Store: db, Audit: ids.Audit,
		Filter:      binding.MustParseFilterTemplate(filter),
		Columns:     []string{"jobtitle", "telephone1"},
		Invitations: ids.Invitations, Onboarding: ids.Onboarding, Cache: e.cache,
		NewID: func() string { e.n++; return fmt.Sprintf("cccccccc-0000-4000-8000-%012d", e.n) },
		Now:   clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// seed creates a contact in Dataverse directly, outside the service.
func (e *env) seed(t *testing.T, first, last, email, org string) string {
	t.Helper()
	id, err := e.client.Create(t.Context(), crmclient.SetContacts, map[string]any{
		"firstname": first, "lastname": last, "emailaddress1": email, "adx_organizationname": org})
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func (e *env) auditDetails(t *testing.T, typ string) []string {
	t.Helper()
	evs, err := e.ids.Audit.ListAudit(t.Context(), audit.Filter{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Actor+" "+ev.Detail)
	}
	return out
}

func (e *env) bindUser(t *testing.T, name, contactID string) *authz.User {
	t.Helper()
	ctx := t.Context()
	u, err := e.ids.Accounts.CreateUser(ctx, accounts.NewUser{Username: name, Email: name + "@example.org"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	b := authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: contactID, LogicalName: "contact"}}
	if err := e.ids.Accounts.SetBinding(ctx, u.Username, b, "test"); err != nil {
		t.Fatal(err)
	}
	if u, err = e.db.UserByID(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	return u
}

func str(s string) *string { return &s }

func eachDialect(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, d := range storetest.Dialects {
		t.Run(d.Name, func(t *testing.T) { fn(t, newEnv(t, d.URL)) })
	}
}

// TestList: the filter scopes the list, a search narrows it, pages
// follow one another, and each row says who is bound to it.
func TestList(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		var acme []string
		for i := range 5 {
			acme = append(acme, e.seed(t, "Ann", fmt.Sprintf("Acme%d", i), fmt.Sprintf("a%d@acme.example", i), "Acme"))
		}
		other := e.seed(t, "Ann", "Other", "x@other.example", "Other Ltd")
		ana := e.bindUser(t, "ana", acme[1])
		bea := e.bindUser(t, "bea", acme[0])
		// A second account on one contact needs an override in accounts;
		// written straight to the store here.
		bea.Binding.Ref.ID = acme[1]
		if err := e.db.UpdateUser(ctx, bea); err != nil {
			t.Fatal(err)
		}
		e.bindUser(t, "cid", other)

		var seen []string
		req := contacts.ListRequest{Limit: 2}
		for pages := 0; ; pages++ {
			before, all := e.emu.Handler.Requests("GET contacts"), e.emu.Handler.Requests("")
			p, err := e.svc.List(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if n, m := e.emu.Handler.Requests("GET contacts")-before, e.emu.Handler.Requests("")-all; n != 1 || m != 1 {
				t.Errorf("page %d: %d list requests, %d in all; want 1", pages, n, m)
			}
			if len(p.Contacts) > 2 || pages > 3 {
				t.Fatalf("page %d: %d rows", pages, len(p.Contacts))
			}
			for _, c := range p.Contacts {
				seen = append(seen, c.ID)
				if c.ETag == "" || c.Company != "Acme" || !c.Active {
					t.Errorf("row %+v", c)
				}
				if _, ok := c.Columns["jobtitle"]; !ok {
					t.Errorf("row %s: no jobtitle column: %v", c.ID, c.Columns)
				}
				var bound []string
				for _, u := range c.BoundUsers {
					bound = append(bound, u.Username)
				}
				want := []string(nil)
				if c.ID == acme[1] {
					want = []string{ana.Username, bea.Username}
				}
				if !slices.Equal(bound, want) {
					t.Errorf("row %s bound to %v, want %v", c.ID, bound, want)
				}
			}
			if p.Next == "" {
				break
			}
			req.Cursor = p.Next
		}
		if !slices.Equal(seen, acme) {
			t.Fatalf("listed %v, want the Acme contacts by full name %v", seen, acme)
		}

		p, err := e.svc.List(ctx, contacts.ListRequest{Search: "acme3"})
		if err != nil || len(p.Contacts) != 1 || p.Contacts[0].ID != acme[3] {
			t.Fatalf("search acme3: %+v %v", p, err)
		}
		p, err = e.svc.List(ctx, contacts.ListRequest{Search: "other"})
		if err != nil || len(p.Contacts) != 0 {
			t.Fatalf("search other (outside the filter): %+v %v", p, err)
		}

		var ve *authz.ValidationError
		for _, req := range []contacts.ListRequest{{Limit: contacts.MaxLimit + 1}, {Limit: -1}, {Search: "a\x00"}, {Cursor: "bm90IGEgY3Vyc29y"}} {
			if _, err := e.svc.List(ctx, req); !errors.As(err, &ve) {
				t.Errorf("%+v: %v, want a ValidationError", req, err)
			}
		}
	})
}

// TestWrites: create, get, update, stale update, delete with a stale
// etag, delete of a bound contact, delete; validation; audit rows.
func TestWrites(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		c, err := e.svc.Create(ctx, contacts.Fields{FirstName: str(" Dana "), LastName: str("Vu"), Email: str("dana@example.com"),
			Columns: map[string]string{"jobtitle": "Buyer"}}, "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		// The filter's eq term puts the new contact in the list.
		if c.FirstName != "Dana" || c.FullName != "Dana Vu" || c.Company != "Acme" || c.Columns["jobtitle"] != "Buyer" || c.ETag == "" {
			t.Fatalf("created %+v", c)
		}
		if got := e.auditDetails(t, audit.EventContactCreated); !slices.Equal(got, []string{"admin-1 contact " + c.ID + " columns adx_organizationname,emailaddress1,firstname,jobtitle,lastname"}) {
			t.Errorf("audit created: %v", got)
		}

		up, err := e.svc.Update(ctx, c.ID, c.ETag, contacts.Fields{FirstName: str("Dana"), Email: str("dana.vu@example.com"), Columns: map[string]string{"telephone1": "+1 555"}}, "admin-2")
		if err != nil {
			t.Fatal(err)
		}
		if up.Email != "dana.vu@example.com" || up.Columns["telephone1"] != "+1 555" || up.ETag == c.ETag {
			t.Fatalf("updated %+v", up)
		}
		if got := e.auditDetails(t, audit.EventContactUpdated); !slices.Equal(got, []string{"admin-2 contact " + c.ID + " columns emailaddress1,telephone1"}) {
			t.Errorf("audit updated (firstname unchanged, so not written): %v", got)
		}
		if got := e.cache.got(); !slices.Equal(got, []string{c.ID}) {
			t.Errorf("cache invalidated for %v", got)
		}

		// A stale etag: refused, nothing written.
		before := e.emu.Handler.Requests("PATCH contacts()")
		_, err = e.svc.Update(ctx, c.ID, c.ETag, contacts.Fields{LastName: str("Stale")}, "admin-2")
		if !errors.Is(err, contacts.ErrChanged) || !errors.Is(err, dataverse.ErrContactChanged) {
			t.Fatalf("stale update: %v, want ErrChanged", err)
		}
		if row, _ := e.emu.Handler.Row("contacts", c.ID); row["lastname"] != "Vu" {
			t.Errorf("stale update wrote: %v", row["lastname"])
		}
		if n := e.emu.Handler.Requests("PATCH contacts()") - before; n != 0 {
			t.Errorf("stale update sent %d PATCHes", n)
		}
		// Changed in Dataverse between the read and the write: Dataverse's
		// 412 is the same error.
		if err := e.client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(c.ID)), map[string]any{"jobtitle": "Chief"}, ""); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Delete(ctx, c.ID, up.ETag, "admin-3"); !errors.Is(err, contacts.ErrChanged) {
			t.Fatalf("delete with a stale etag: %v, want ErrChanged", err)
		}
		if _, ok := e.emu.Handler.Row("contacts", c.ID); !ok {
			t.Fatal("deleted with a stale etag")
		}

		cur, err := e.svc.Get(ctx, c.ID)
		if err != nil || cur.Columns["jobtitle"] != "Chief" {
			t.Fatalf("get: %+v %v", cur, err)
		}
		for _, etag := range []string{"", "*"} {
			var ve *authz.ValidationError
			if err := e.svc.Delete(ctx, c.ID, etag, "admin-3"); !errors.As(err, &ve) || ve.Field != "etag" {
				t.Errorf("delete with etag %q: %v", etag, err)
			}
			if _, err := e.svc.Update(ctx, c.ID, etag, contacts.Fields{FirstName: str("X")}, "admin-3"); !errors.As(err, &ve) || ve.Field != "etag" {
				t.Errorf("update with etag %q: %v", etag, err)
			}
		}

		// Bound: refused, naming the account.
		u := e.bindUser(t, "dana", c.ID)
		err = e.svc.Delete(ctx, c.ID, cur.ETag, "admin-3")
		var be *contacts.BoundError
		if !errors.Is(err, contacts.ErrBound) || !errors.As(err, &be) || len(be.Users) != 1 || be.Users[0].ID != u.ID || !strings.Contains(err.Error(), "dana") {
			t.Fatalf("delete of a bound contact: %v", err)
		}
		if err := e.ids.Accounts.SetBinding(ctx, u.Username, authz.Binding{Mode: authz.BindingNone}, "test"); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Delete(ctx, c.ID, cur.ETag, "admin-3"); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.emu.Handler.Row("contacts", c.ID); ok {
			t.Fatal("not deleted")
		}
		if got := e.auditDetails(t, audit.EventContactDeleted); !slices.Equal(got, []string{"admin-3 contact " + c.ID}) {
			t.Errorf("audit deleted: %v", got)
		}
		if _, err := e.svc.Get(ctx, c.ID); !errors.Is(err, contacts.ErrNotFound) || !errors.Is(err, authz.ErrNotFound) {
			t.Errorf("get after delete: %v", err)
		}

		// Outside the filter: not found for every operation.
		other := e.seed(t, "Oz", "Other", "oz@other.example", "Other Ltd")
		if _, err := e.svc.Get(ctx, other); !errors.Is(err, contacts.ErrNotFound) {
			t.Errorf("get outside the filter: %v", err)
		}
		if err := e.svc.Delete(ctx, other, `W/"1"`, "admin-3"); !errors.Is(err, contacts.ErrNotFound) {
			t.Errorf("delete outside the filter: %v", err)
		}
		if _, ok := e.emu.Handler.Row("contacts", other); !ok {
			t.Fatal("a contact outside the filter was deleted")
		}
	})
}

// TestValidation: bad fields are refused before anything is sent.
func TestValidation(t *testing.T) {
	e := newEnv(t, storetest.SQLiteURL)
	ctx := t.Context()
	long := func(n int) *string { return str(strings.Repeat("é", n)) }
	before := e.emu.Handler.Requests("")
	for name, tc := range map[string]struct {
		f     contacts.Fields
		field string
	}{
		"no last name":      {contacts.Fields{FirstName: str("A")}, "last_name"},
		"blank last name":   {contacts.Fields{LastName: str("  ")}, "last_name"},
		"first name 51":     {contacts.Fields{LastName: str("L"), FirstName: long(51)}, "first_name"},
		"last name 51":      {contacts.Fields{LastName: long(51)}, "last_name"},
		"email syntax":      {contacts.Fields{LastName: str("L"), Email: str("Ann <a@b.c>")}, "email"},
		"email 101":         {contacts.Fields{LastName: str("L"), Email: str(strings.Repeat("a", 89) + "@example.com")}, "email"},
		"control character": {contacts.Fields{LastName: str("L\x07")}, "last_name"},
		"unknown column":    {contacts.Fields{LastName: str("L"), Columns: map[string]string{"adx_identity_passwordhash": "x"}}, "columns"},
	} {
		_, err := e.svc.Create(ctx, tc.f, "admin")
		var ve *authz.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: %v, want a ValidationError on %s", name, err, tc.field)
		}
	}
	if n := e.emu.Handler.Requests("") - before; n != 0 {
		t.Errorf("refused fields sent %d requests", n)
	}
	if _, err := e.svc.Create(ctx, contacts.Fields{LastName: long(50), FirstName: long(50), Email: str(strings.Repeat("a", 88) + "@example.com")}, "admin"); err != nil {
		t.Errorf("at the limits: %v", err)
	}
	if n := e.emu.Handler.Requests("PATCH contacts()"); n != 1 {
		t.Errorf("create at the limits: %d PATCHes, want 1", n)
	}
	var ve *authz.ValidationError
	if _, err := e.svc.Update(ctx, "cccccccc-0000-4000-8000-000000000001", `W/"1"`, contacts.Fields{LastName: str("")}, "admin"); !errors.As(err, &ve) || ve.Field != "last_name" {
		t.Errorf("clearing the last name: %v", err)
	}
}

// TestInviteAndCreateUser: both act through their services, from a
// contact inside the filter only.
func TestInviteAndCreateUser(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		a := e.seed(t, "Ann", "Lee", "ann@acme.example", "Acme")
		b := e.seed(t, "Bo", "Ng", "bo@acme.example", "Acme")
		other := e.seed(t, "Oz", "Other", "oz@other.example", "Other Ltd")
		inv, err := e.svc.Invite(ctx, a, invitations.NewInvitation{}, "admin")
		if err != nil {
			t.Fatal(err)
		}
		if inv.ContactID != a || !strings.EqualFold(inv.Email, "ann@acme.example") {
			t.Errorf("invitation %+v", inv)
		}
		res, err := e.svc.CreateUser(ctx, b, "admin")
		if err != nil || res.Outcome != onboarding.Created || res.UserID == "" {
			t.Fatalf("create user: %+v %v", res, err)
		}
		got, err := e.svc.Get(ctx, b)
		if err != nil || len(got.BoundUsers) != 1 || got.BoundUsers[0].ID != res.UserID {
			t.Fatalf("bound after create user: %+v %v", got, err)
		}
		if _, err := e.svc.Invite(ctx, b, invitations.NewInvitation{}, "admin"); !errors.Is(err, contacts.ErrBound) {
			t.Errorf("invite a bound contact: %v", err)
		}
		res, err = e.svc.CreateUser(ctx, b, "admin")
		if err != nil || res.Outcome != onboarding.Skipped {
			t.Errorf("create user again: %+v %v", res, err)
		}
		if _, err := e.svc.CreateUser(ctx, other, "admin"); !errors.Is(err, contacts.ErrNotFound) {
			t.Errorf("create user outside the filter: %v", err)
		}
		if _, err := e.svc.Invite(ctx, other, invitations.NewInvitation{}, "admin"); !errors.Is(err, contacts.ErrNotFound) {
			t.Errorf("invite outside the filter: %v", err)
		}
	})
}

// TestOptions: the configuration is checked.
func TestOptions(t *testing.T) {
	for name, tc := range map[string]struct {
		filter  string
		company string
		columns []string
	}{
		"placeholder":    {filter: "emailaddress1 eq {email}"},
		"secret column":  {columns: []string{"adx_identity_passwordhash"}},
		"bad column":     {columns: []string{"a b"}},
		"fixed column":   {columns: []string{"emailaddress1"}},
		"company twice":  {columns: []string{"adx_organizationname"}},
		"duplicate":      {columns: []string{"jobtitle", "jobtitle"}},
		"fixed company":  {company: "lastname"},
		"secret company": {company: "adx_identity_securitystamp"},
	} {
		var f *binding.FilterTemplate
		if tc.filter != "" {
			f = binding.MustParseFilterTemplate(tc.filter)
		}
		if err := contacts.CheckOptions(f, tc.company, tc.columns); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := contacts.CheckOptions(binding.MustParseFilterTemplate(filter), "", []string{"jobtitle"}); err != nil {
		t.Errorf("good options: %v", err)
	}
	if err := contacts.CheckOptions(nil, "", make([]string, contacts.MaxColumns+1)); err == nil {
		t.Error("too many columns accepted")
	}
}

// racingDirectory is the real directory, with someone else's write to
// the contact in Dataverse just before each update or delete: the
// service's own check of the row version passes, and Dataverse's 412 is
// what refuses the write.
type racingDirectory struct {
	*crmclient.Directory
	client *crmclient.Client
}

func (d racingDirectory) meddle(ctx context.Context, id string) error {
	return d.client.Update(ctx, crmclient.SetContacts, crmclient.ByID(crmclient.MustParseGUID(id)), map[string]any{"jobtitle": "Meddler"}, "")
}

func (d racingDirectory) UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error {
	if err := d.meddle(ctx, id); err != nil {
		return err
	}
	return d.Directory.UpdateContact(ctx, id, columns, etag)
}

func (d racingDirectory) DeleteContact(ctx context.Context, id, etag string) error {
	if err := d.meddle(ctx, id); err != nil {
		return err
	}
	return d.Directory.DeleteContact(ctx, id, etag)
}

// TestDataverseConflict: a change in Dataverse between the service's read
// and its write is refused by Dataverse (412) and reported as ErrChanged;
// nothing of the administrator's change is written, nothing audited.
func TestDataverseConflict(t *testing.T) {
	e := newEnv(t, storetest.SQLiteURL)
	ctx := t.Context()
	svc, err := contacts.New(contacts.Options{Directory: racingDirectory{e.dir, e.client}, Store: e.db, Audit: e.ids.Audit,
		Filter: binding.MustParseFilterTemplate(filter), Columns: []string{"jobtitle"}})
	if err != nil {
		t.Fatal(err)
	}
	id := e.seed(t, "Ann", "Lee", "ann@acme.example", "Acme")
	c, err := svc.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Update(ctx, id, c.ETag, contacts.Fields{LastName: str("Changed")}, "admin"); !errors.Is(err, contacts.ErrChanged) || !errors.Is(err, dataverse.ErrContactChanged) {
		t.Fatalf("update: %v, want ErrChanged", err)
	}
	if row, _ := e.emu.Handler.Row("contacts", id); row["lastname"] != "Lee" || row["jobtitle"] != "Meddler" {
		t.Fatalf("after the refused update: %v", row)
	}
	c, err = svc.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(ctx, id, c.ETag, "admin"); !errors.Is(err, contacts.ErrChanged) {
		t.Fatalf("delete: %v, want ErrChanged", err)
	}
	if _, ok := e.emu.Handler.Row("contacts", id); !ok {
		t.Fatal("deleted despite the 412")
	}
	for _, typ := range []string{audit.EventContactUpdated, audit.EventContactDeleted} {
		if got := e.auditDetails(t, typ); len(got) != 0 {
			t.Errorf("%s audited: %v", typ, got)
		}
	}
}

// TestCreateOutsideFilter: a contact the filter would not list is not
// created.
func TestCreateOutsideFilter(t *testing.T) {
	e := newEnv(t, storetest.SQLiteURL)
	svc, err := contacts.New(contacts.Options{Directory: e.dir, Store: e.db, Audit: e.ids.Audit,
		Filter:  binding.MustParseFilterTemplate("adx_organizationname eq 'Acme' and jobtitle ne null and statecode eq 0 and statuscode eq 1"),
		Columns: []string{"jobtitle"}})
	if err != nil {
		t.Fatal(err)
	}
	before := e.emu.Handler.Requests("PATCH contacts()")
	var ve *authz.ValidationError
	if _, err := svc.Create(t.Context(), contacts.Fields{LastName: str("Lee")}, "admin"); !errors.As(err, &ve) || ve.Field != "filter" {
		t.Fatalf("create without jobtitle: %v, want a ValidationError on filter", err)
	}
	if n := e.emu.Handler.Requests("PATCH contacts()") - before; n != 0 {
		t.Fatalf("%d contacts created", n)
	}
	c, err := svc.Create(t.Context(), contacts.Fields{LastName: str("Lee"), Columns: map[string]string{"jobtitle": "Buyer"}}, "admin")
	if err != nil || c.Company != "Acme" {
		t.Fatalf("create with jobtitle: %+v %v", c, err)
	}
}

// TestUsernameBinding: an account bound in username mode shows on the
// contact whose adx_identity_username is its username.
func TestUsernameBinding(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		id, err := e.client.Create(ctx, crmclient.SetContacts, map[string]any{"lastname": "Zed", "adx_organizationname": "Acme", "adx_identity_username": "Zed.Z"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := e.ids.Accounts.CreateUser(ctx, accounts.NewUser{Username: "zed.z", Email: "zed@example.org"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		u.Binding = authz.Binding{Mode: authz.BindingUsername}
		if err := e.db.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		c, err := e.svc.Get(ctx, id.String())
		if err != nil || len(c.BoundUsers) != 1 || c.BoundUsers[0].ID != u.ID || c.BoundUsers[0].Mode != authz.BindingUsername {
			t.Fatalf("get: %+v %v", c, err)
		}
		if err := e.svc.Delete(ctx, c.ID, c.ETag, "admin"); !errors.Is(err, contacts.ErrBound) {
			t.Fatalf("delete: %v, want ErrBound", err)
		}
	})
}
