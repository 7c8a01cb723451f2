package registration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/dataverse"
)

// ContactKind is the outbox Kind of the contact creations of
// registrations, delivered by ContactDeliverer.
const ContactKind = "registration.contact"

// contactCreate is the Type of ContactKind events.
const contactCreate = "create"

// contactPayload is the payload of a ContactKind event: only ids. The
// columns are read from the registration at delivery, so that the event
// carries no personal data beyond what the store already holds.
type contactPayload struct {
	UserID    string `json:"user_id"`
	ContactID string `json:"contact_id"`
}

func contactEvent(userID, contactID string, at time.Time) (outbox.Event, error) {
	p, err := json.Marshal(contactPayload{UserID: userID, ContactID: contactID})
	if err != nil {
		return outbox.Event{}, err
	}
	return outbox.Event{Kind: ContactKind, Type: contactCreate, UserID: userID, Payload: p, CreatedAt: at}, nil
}

// ContactCreator creates a Dataverse contact with a chosen id;
// crmclient.Directory satisfies it.
type ContactCreator interface {
	// CreateContact creates contact id with columns. A contact that
	// already exists with that id is success, not an error: a retry after
	// an answer that was lost must not fail nor create a second contact.
	// Dataverse being unreachable gives an error wrapping
	// dataverse.ErrUnavailable.
	CreateContact(ctx context.Context, id string, columns map[string]any) error
}

// ContactDeliverer is the outbox.Deliverer of ContactKind events: it
// creates the registration's contact (idempotently, under the id chosen at
// registration) and binds the account to it (lookup), which ends the
// registration. Any failure is retried by the outbox with backoff, so a
// Dataverse outage delays the account and loses nothing.
type ContactDeliverer struct {
	store    Store
	contacts ContactCreator
	audit    *audit.Log
	now      func() time.Time
	log      *slog.Logger
	defaults map[string]any
}

var _ outbox.Deliverer = (*ContactDeliverer)(nil)

// LogonEnabledColumn is the Power Pages column that lets a contact sign in
// (WEBAPI.md, "Power Pages contact identity columns"); a sign-in check
// that requires it refuses a contact without it.
const LogonEnabledColumn = "adx_identity_logonenabled"

// NewContactDeliverer returns the deliverer; now and log may be nil.
// defaults are columns every created contact also gets, for example
// {LogonEnabledColumn: true} when the sign-in check requires that column
// (without it a self-registered user would be refused at every sign-in);
// nil adds none. The registration's own fields win over them.
func NewContactDeliverer(store Store, contacts ContactCreator, a *audit.Log, now func() time.Time, log *slog.Logger, defaults map[string]any) (*ContactDeliverer, error) {
	if store == nil || contacts == nil || a == nil {
		return nil, errors.New("registration: contact deliverer needs a store, a contact directory and an audit log")
	}
	for col := range defaults {
		if err := dataverse.ValidContactColumn(col); err != nil {
			return nil, fmt.Errorf("registration: contact default %w", err)
		}
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ContactDeliverer{store: store, contacts: contacts, audit: a, now: now, log: log, defaults: maps.Clone(defaults)}, nil
}

// Deliver implements outbox.Deliverer. An account deleted meanwhile, or a
// registration already bound, gives outbox.ErrNothingToDeliver.
func (d *ContactDeliverer) Deliver(ctx context.Context, e outbox.Event) error {
	if e.Kind != ContactKind || e.Type != contactCreate {
		return outbox.Permanent(fmt.Errorf("registration: contact deliverer: event %d is %s/%s", e.ID, e.Kind, e.Type))
	}
	var p contactPayload
	if err := json.Unmarshal(e.Payload, &p); err != nil || p.UserID == "" || p.ContactID == "" {
		return outbox.Permanent(fmt.Errorf("registration: contact deliverer: event %d payload unreadable", e.ID))
	}
	u, err := d.store.UserByID(ctx, p.UserID)
	if errors.Is(err, authz.ErrNotFound) {
		return outbox.ErrNothingToDeliver
	}
	if err != nil {
		return err
	}
	reg, err := d.store.RegistrationByUser(ctx, u.ID)
	if errors.Is(err, authz.ErrNotFound) {
		return outbox.ErrNothingToDeliver
	}
	if err != nil {
		return err
	}
	if reg.State != StateSettingUp || reg.ContactID != p.ContactID {
		return outbox.ErrNothingToDeliver
	}
	cols := maps.Clone(d.defaults)
	if cols == nil {
		cols = map[string]any{}
	}
	cols["emailaddress1"], cols["lastname"] = u.Email, u.LastName
	if u.FirstName != "" {
		cols["firstname"] = u.FirstName
	}
	for k, v := range reg.Fields {
		if ValidField(k) == nil {
			cols[k] = v
		}
	}
	if err := d.contacts.CreateContact(ctx, reg.ContactID, cols); err != nil {
		return fmt.Errorf("registration: create contact for %s: %w", u.ID, err)
	}
	now := d.now()
	name := strings.TrimSpace(u.FirstName + " " + u.LastName)
	u.Binding = authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: reg.ContactID,
		LogicalName: dataverse.ContactLogicalName, Name: name}}
	ev, err := lifecycle.NewEvent(lifecycle.Bound, u, now)
	if err != nil {
		return err
	}
	switch err := d.store.AdvanceRegistration(ctx, u, StateSettingUp, StateDone, ev); {
	case errors.Is(err, authz.ErrStale):
		return outbox.ErrNothingToDeliver
	case err != nil:
		// The contact exists; the retry finds it (CreateContact succeeds
		// on an existing id) and binds then.
		return err
	}
	d.audit.Record(ctx, audit.Event{Time: now, Type: EventContactCreated, Actor: "system", UserID: u.ID, Detail: reg.ContactID})
	d.log.InfoContext(ctx, "registration contact created", "user_id", u.ID, "contact_id", reg.ContactID)
	return nil
}
