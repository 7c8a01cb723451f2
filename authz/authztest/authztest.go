// Package authztest builds the identity layer for tests: every authz
// feature over a real SQLite store in a temporary directory, wired by
// package wiring exactly as the gateway wires it, with an injected clock and
// fakes of Dataverse's contact directory made of functions.
package authztest

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// FastParams keep argon2id cheap under -race; production uses password.Default.
var FastParams = password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// GoodPassword passes the password policy.
const GoodPassword = "correct horse battery"

// Contact ids of the tests.
const (
	C1        = "11111111-1111-4111-8111-111111111111"
	C2        = "22222222-2222-4222-8222-222222222222"
	C3        = "33333333-3333-4333-8333-333333333333"
	ContactID = "0f8fad5b-d9cb-469f-a165-70867728950e"
)

// Clock is an injected clock that tests move by hand.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Options returns o with every required value that is zero set for tests:
// FastParams, five failures, a 15-minute lockout, no client throttle and a
// burst of 10. The production values come from package config.
func Options(o wiring.Options) wiring.Options {
	if o.Password == (password.Params{}) {
		o.Password = FastParams
	}
	if o.MaxFailures == 0 {
		o.MaxFailures = 5
	}
	if o.AccountMaxFailures == 0 {
		o.AccountMaxFailures = 20
	}
	if o.LockoutDuration == 0 {
		o.LockoutDuration = 15 * time.Minute
	}
	if o.ClientRate == 0 {
		o.ClientRate = rate.Inf
	}
	if o.ClientBurst == 0 {
		o.ClientBurst = 10
	}
	if o.Mail == nil {
		o.Mail = Composer
	}
	return o
}

// Composer composes the embedded mails for https://portal.example.com
// under /.auth; Options sets it when Options.Mail is nil.
var Composer = func() *mail.Composer {
	c, err := mail.NewComposer(mail.ComposerOptions{PublicURL: "https://portal.example.com", AuthPrefix: "/.auth",
		Site: mail.Site{Name: "Example Portal"}})
	if err != nil {
		panic(err)
	}
	return c
}()

// Fixture is the identity layer over a real store, with its clock.
type Fixture struct {
	Svc   *wiring.Services
	DB    *store.DB
	Clock *Clock
}

// NewFixture builds every feature over a real SQLite store in a temporary
// directory, with Options(opts) and the fixture's clock.
func NewFixture(t testing.TB, opts wiring.Options) *Fixture {
	t.Helper()
	c := NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "crmgate.db"), store.WithNow(c.Now))
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	opts = Options(opts)
	opts.Now = c.Now
	svc, err := wiring.New(db, opts)
	if err != nil {
		t.Fatalf("wiring.New: %v", err)
	}
	return &Fixture{Svc: svc, DB: db, Clock: c}
}

// CreateUser creates user name (email name@example.com, GoodPassword, role
// member) in state st.
func (f *Fixture) CreateUser(t testing.TB, name string, st authz.Status) *authz.User {
	t.Helper()
	u, err := f.Svc.Accounts.CreateUser(t.Context(), accounts.NewUser{
		Username: name, Email: name + "@example.com", Password: GoodPassword, Roles: []string{"member"}, Status: st,
	}, "cli:test")
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// SignIn signs in with a password from addr.
func (f *Fixture) SignIn(t testing.TB, login, pw, addr string) (*authz.User, error) {
	t.Helper()
	return f.Svc.SignIn.SignIn(t.Context(), signin.Credentials{Login: login, Password: pw, ClientAddr: addr})
}

// User returns the stored user with that id.
func (f *Fixture) User(t testing.TB, id string) *authz.User {
	t.Helper()
	u, err := f.Svc.Accounts.UserByID(t.Context(), id)
	if err != nil {
		t.Fatalf("UserByID: %v", err)
	}
	return u
}

// UserByLogin returns the stored user whose username is login.
func (f *Fixture) UserByLogin(t testing.TB, login string) *authz.User {
	t.Helper()
	us, err := f.Svc.Accounts.ListUsers(t.Context(), authz.UserFilter{Query: login})
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	for _, u := range us {
		if u.Username == login {
			return u
		}
	}
	t.Fatalf("no user %s", login)
	return nil
}

// LastAudit returns the newest audit event of type typ.
func (f *Fixture) LastAudit(t testing.TB, typ string) audit.Event {
	t.Helper()
	es, err := f.Svc.Audit.ListAudit(t.Context(), audit.Filter{Type: typ, Limit: 1})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(es) == 0 {
		t.Fatalf("no %s audit event", typ)
	}
	return es[0]
}

// Events returns the outbox events of userID, oldest first.
func (f *Fixture) Events(t testing.TB, userID string) []outbox.Event {
	t.Helper()
	es, err := f.DB.OutboxEvents(t.Context(), userID)
	if err != nil {
		t.Fatalf("OutboxEvents: %v", err)
	}
	return es
}

// CountAudit counts the audit events filter selects.
func CountAudit(t testing.TB, f *Fixture, filter audit.Filter) int {
	t.Helper()
	es, err := f.Svc.Audit.ListAudit(t.Context(), filter)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return len(es)
}

// Snapshot decodes the lifecycle payload of e.
func Snapshot(t testing.TB, e outbox.Event) lifecycle.Snapshot {
	t.Helper()
	var u lifecycle.Snapshot
	if err := json.Unmarshal(e.Payload, &u); err != nil {
		t.Fatalf("event %d payload %s: %v", e.ID, e.Payload, err)
	}
	return u
}

// Contact returns an active-or-not contact with a logon right, the web role
// Customer and the columns emailaddress1, adx_identity_username and
// new_tier ("gold").
func Contact(id, email, username string, active bool) *dataverse.Contact {
	return &dataverse.Contact{ID: id, LogicalName: "contact", Name: "Contact " + id[:1], Active: active, LogonEnabled: true,
		Email: email, Username: username, Roles: []string{"Customer"},
		Columns: map[string]any{"emailaddress1": email, "adx_identity_username": username, "new_tier": "gold"}}
}

// Lookup is a lookup binding to contact id.
func Lookup(id string) authz.Binding {
	return authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: id, LogicalName: "contact"}}
}

// Directory is a contact directory (wiring.Contacts) made of functions; it
// records every request it answers.
type Directory struct {
	ByID func(ctx context.Context, id string, columns []string) (*dataverse.Contact, error)
	Find func(ctx context.Context, q dataverse.ContactQuery) ([]*dataverse.Contact, error)
	// Update answers UpdateContact; nil refuses every update.
	Update func(ctx context.Context, id string, columns map[string]any, etag string) error

	mu      sync.Mutex
	IDs     []string
	Queries []dataverse.ContactQuery
	Updates []map[string]any
}

var _ wiring.Contacts = (*Directory)(nil)

// ContactByID records id and answers with ByID.
func (d *Directory) ContactByID(ctx context.Context, id string, columns []string) (*dataverse.Contact, error) {
	d.mu.Lock()
	d.IDs = append(d.IDs, id)
	d.mu.Unlock()
	return d.ByID(ctx, id, columns)
}

// FindContacts records q and answers with Find.
func (d *Directory) FindContacts(ctx context.Context, q dataverse.ContactQuery) ([]*dataverse.Contact, error) {
	d.mu.Lock()
	d.Queries = append(d.Queries, q)
	d.mu.Unlock()
	return d.Find(ctx, q)
}

// UpdateContact records columns and answers with Update.
func (d *Directory) UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error {
	d.mu.Lock()
	d.Updates = append(d.Updates, columns)
	d.mu.Unlock()
	if d.Update == nil {
		return errors.New("directory: updates not expected in this test")
	}
	return d.Update(ctx, id, columns, etag)
}

// Requests counts the requests answered so far.
func (d *Directory) Requests() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.IDs) + len(d.Queries) + len(d.Updates)
}

// Recorded returns copies of the ids, queries and updates answered so far.
func (d *Directory) Recorded() (ids []string, queries []dataverse.ContactQuery, updates []map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.IDs...), append([]dataverse.ContactQuery(nil), d.Queries...), append([]map[string]any(nil), d.Updates...)
}

// Rows is a directory over fixed contacts. Find returns every contact
// accepted by loose, which stands for Dataverse's own matching; nil means
// dataverse.Condition.Matches. Returned contacts are copies.
func Rows(loose func(c *dataverse.Contact, q dataverse.ContactQuery) bool, cs ...*dataverse.Contact) *Directory {
	copyOf := func(c *dataverse.Contact) *dataverse.Contact {
		cp := *c
		cp.Columns = map[string]any{}
		for k, v := range c.Columns {
			cp.Columns[k] = v
		}
		return &cp
	}
	if loose == nil {
		loose = func(c *dataverse.Contact, q dataverse.ContactQuery) bool {
			return dataverse.MatchesAll(c, q.Conditions)
		}
	}
	return &Directory{
		ByID: func(_ context.Context, id string, _ []string) (*dataverse.Contact, error) {
			for _, c := range cs {
				if c.ID == id {
					return copyOf(c), nil
				}
			}
			return nil, dataverse.ErrContactNotFound
		},
		Find: func(_ context.Context, q dataverse.ContactQuery) ([]*dataverse.Contact, error) {
			var out []*dataverse.Contact
			for _, c := range cs {
				if loose(c, q) && len(out) < q.Limit {
					out = append(out, copyOf(c))
				}
			}
			return out, nil
		},
	}
}

// Down is a directory whose every request fails as an open breaker does.
func Down() *Directory {
	fail := errors.Join(dataverse.ErrUnavailable, errors.New("breaker open"))
	return &Directory{
		ByID: func(context.Context, string, []string) (*dataverse.Contact, error) { return nil, fail },
		Find: func(context.Context, dataverse.ContactQuery) ([]*dataverse.Contact, error) { return nil, fail },
	}
}

// BuildErr returns wiring.New's error for Options(opts) over a real store.
func BuildErr(t testing.TB, opts wiring.Options) error {
	t.Helper()
	_, err := wiring.New(NewFixture(t, wiring.Options{}).DB, Options(opts))
	return err
}

// Worker returns an outbox worker over f's store delivering to d, with
// batches of 10, a one-minute lease, backoff from 1s to 1m, the fixture's
// clock and metrics registered in reg (nil: none).
func Worker(t testing.TB, f *Fixture, d outbox.Deliverer, reg prometheus.Registerer) *outbox.Worker {
	t.Helper()
	w, err := outbox.NewWorker(f.DB, d, outbox.Options{
		BatchSize: 10, Lease: time.Minute, MinBackoff: time.Second, MaxBackoff: time.Minute,
		Now: f.Clock.Now, Registerer: reg,
	})
	if err != nil {
		t.Fatalf("outbox.NewWorker: %v", err)
	}
	return w
}

// Drain polls w until the outbox has nothing due now.
func Drain(t testing.TB, w *outbox.Worker) {
	t.Helper()
	for range 100 {
		n, err := w.Poll(t.Context())
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("outbox not drained after 100 polls")
}

// Metric returns the value of the series name (with label type=typ when
// typ is not empty) in reg, or -1 when there is none.
func Metric(t testing.TB, reg *prometheus.Registry, name, typ string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if typ != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != typ) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// Known is a directory over active contacts with the ids given (and
// nothing else), for tests that bind by lookup: a lookup binding is checked
// against Dataverse.
func Known(ids ...string) *Directory {
	cs := make([]*dataverse.Contact, len(ids))
	for i, id := range ids {
		cs[i] = Contact(id, "contact"+strconv.Itoa(i)+"@contacts.example", "", true)
	}
	return Rows(nil, cs...)
}

// Bind stores binding b for the user named login directly, as a binding
// made earlier would be: the contact it names may have been deleted, or
// Dataverse may be down, since. It rotates nothing and sends no event.
func (f *Fixture) Bind(t testing.TB, login string, b authz.Binding) {
	t.Helper()
	u, err := f.DB.UserByLogin(t.Context(), login)
	if err != nil {
		t.Fatalf("UserByLogin(%s): %v", login, err)
	}
	if b, err = authz.ValidateBinding(b); err != nil {
		t.Fatalf("ValidateBinding: %v", err)
	}
	u.Binding = b
	if err := f.DB.UpdateUser(t.Context(), u); err != nil {
		t.Fatalf("UpdateUser(%s): %v", login, err)
	}
}
