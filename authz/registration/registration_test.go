package registration_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/authztest"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/authz/wiring"
)

func fixture(t *testing.T, mods ...func(*registration.Options)) *authztest.Fixture {
	t.Helper()
	o := registration.Options{Mode: registration.ModeOpen, ConfirmEmail: true, ConfirmTTL: time.Hour}
	for _, m := range mods {
		m(&o)
	}
	return authztest.NewFixture(t, wiring.Options{Registration: o, MaxOutstandingTokens: 1})
}

// TestNewRefusesBadOptions: every problem of the options is reported.
func TestNewRefusesBadOptions(t *testing.T) {
	f := fixture(t)
	base := registration.Options{Mode: registration.ModeOpen, Tokens: f.Svc.Tokens, Audit: f.Svc.Audit, Mail: f.Svc.Mail,
		Password: authztest.FastParams}
	for name, mod := range map[string]func(*registration.Options){
		"unknown mode":  func(o *registration.Options) { o.Mode = "public" },
		"no mail":       func(o *registration.Options) { o.Mail = nil },
		"no ttl":        func(o *registration.Options) { o.ConfirmEmail = true },
		"secret field":  func(o *registration.Options) { o.Fields = []registration.Field{{Column: "adx_identity_passwordhash"}} },
		"gateway field": func(o *registration.Options) { o.Fields = []registration.Field{{Column: "emailaddress1"}} },
		"duplicate field": func(o *registration.Options) {
			o.Fields = []registration.Field{{Column: "jobtitle"}, {Column: "jobtitle"}}
		},
		"negative rate":    func(o *registration.Options) { o.ClientRate = -1 },
		"no token service": func(o *registration.Options) { o.Tokens = nil },
	} {
		o := base
		mod(&o)
		if _, err := registration.New(f.DB, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := registration.New(f.DB, base); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

// TestRegisterHoldsUntilConfirmed: the service view of the flow: the
// right password is held back with HoldUnconfirmed until Confirm, and
// an operator's account (email_confirmed false, no registration) is not.
func TestRegisterHoldsUntilConfirmed(t *testing.T) {
	f := fixture(t)
	ctx := context.Background()
	out, err := f.Svc.Registration.Register(ctx, registration.Input{Email: "eve@example.com", Password: authztest.GoodPassword, LastName: "Ng"})
	if err != nil || out.Next != registration.NextCheckMail {
		t.Fatalf("register: %+v, %v", out, err)
	}
	_, err = f.SignIn(t, "eve@example.com", authztest.GoodPassword, "192.0.2.1")
	var held *signin.HeldError
	if !errors.As(err, &held) || held.Reason != registration.HoldUnconfirmed {
		t.Fatalf("sign-in before confirmation: %v", err)
	}
	if _, err := f.SignIn(t, "eve@example.com", "wrong-password-xyz", "192.0.2.1"); !errors.Is(err, signin.ErrInvalidCredentials) {
		t.Errorf("wrong password while held: %v", err)
	}
	op := f.CreateUser(t, "ops", authz.StatusActive)
	if op.EmailConfirmed {
		t.Fatal("precondition")
	}
	if _, err := f.SignIn(t, "ops", authztest.GoodPassword, "192.0.2.1"); err != nil {
		t.Errorf("operator account held: %v", err)
	}
	if _, err := f.Svc.Registration.Confirm(ctx, "not-a-secret", "192.0.2.1"); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("bad secret: %v", err)
	}
	// The secret as the mail carried it.
	u, _ := f.DB.UserByLogin(ctx, "eve@example.com")
	evs, _ := f.DB.OutboxEvents(ctx, u.ID)
	var secret string
	for _, e := range evs {
		if i := strings.Index(string(e.Payload), "token="); i >= 0 {
			secret = string(e.Payload)[i+6 : i+6+tokens.SecretLen]
		}
	}
	out, err = f.Svc.Registration.Confirm(ctx, secret, "192.0.2.1")
	if err != nil || out.Next != registration.NextSignIn {
		t.Fatalf("confirm: %+v, %v", out, err)
	}
	if _, err := f.SignIn(t, "eve@example.com", authztest.GoodPassword, "192.0.2.1"); err != nil {
		t.Errorf("after confirmation: %v", err)
	}
}

// TestRegisterOffAndInvitation: registrations are refused unless open or
// approval.
func TestRegisterOffAndInvitation(t *testing.T) {
	for _, mode := range []registration.Mode{registration.ModeOff, registration.ModeInvitation} {
		f := fixture(t, func(o *registration.Options) { o.Mode = mode })
		if _, err := f.Svc.Registration.Register(context.Background(), registration.Input{Email: "eve@example.com", Password: authztest.GoodPassword}); !errors.Is(err, registration.ErrOff) {
			t.Errorf("%s: %v", mode, err)
		}
	}
}

// TestContactDelivererRefusesForeignEvents: an event it cannot read is a
// permanent failure, not retried for ever.
func TestContactDelivererRefusesForeignEvents(t *testing.T) {
	f := fixture(t)
	d, err := registration.NewContactDeliverer(f.DB, creatorFunc(func(context.Context, string, map[string]any) error { return nil }), f.Svc.Audit, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []outbox.Event{
		{Kind: "mail", Type: "create"},
		{Kind: registration.ContactKind, Type: "create", Payload: []byte(`{`)},
		{Kind: registration.ContactKind, Type: "create", Payload: []byte(`{"user_id":"u"}`)},
	} {
		if err := d.Deliver(context.Background(), e); !outbox.IsPermanent(err) {
			t.Errorf("%+v: %v, want a permanent error", e, err)
		}
	}
	err = d.Deliver(context.Background(), outbox.Event{Kind: registration.ContactKind, Type: "create", Payload: []byte(`{"user_id":"gone","contact_id":"c"}`)})
	if !errors.Is(err, outbox.ErrNothingToDeliver) {
		t.Errorf("deleted account: %v", err)
	}
}

type creatorFunc func(ctx context.Context, id string, cols map[string]any) error

func (f creatorFunc) CreateContact(ctx context.Context, id string, cols map[string]any) error {
	return f(ctx, id, cols)
}
