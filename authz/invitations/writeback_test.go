package invitations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/dataverse"
)

type recorder struct {
	got []dataverse.InvitationRedemption
	err error
}

func (r *recorder) RecordInvitationRedemption(_ context.Context, x dataverse.InvitationRedemption) error {
	r.got = append(r.got, x)
	return r.err
}

// TestWriteBackDeliver: a write-back event reaches Dataverse as it was
// enqueued; an unreadable one fails for good (never retried for ever); a
// Dataverse error is returned for the worker to retry.
func TestWriteBackDeliver(t *testing.T) {
	r := &recorder{}
	w := invitations.WriteBack{Dataverse: r}
	ev := outbox.Event{ID: 1, Kind: invitations.OutboxKind, Type: invitations.OutboxRedeemed,
		Payload: []byte(`{"invitation_id":"e0000000-0000-4000-8000-0000000000e1","n":2,"contact_id":"c0000000-0000-4000-8000-0000000000d1","group":true,"max":5}`)}
	if err := w.Deliver(context.Background(), ev); err != nil || len(r.got) != 1 || r.got[0].N != 2 || !r.got[0].Group || r.got[0].MaxRedemptions != 5 {
		t.Fatalf("Deliver = %v, %+v", err, r.got)
	}
	for name, e := range map[string]outbox.Event{
		"not JSON":   {Kind: invitations.OutboxKind, Type: invitations.OutboxRedeemed, Payload: []byte(`{`)},
		"no number":  {Kind: invitations.OutboxKind, Type: invitations.OutboxRedeemed, Payload: []byte(`{"invitation_id":"x"}`)},
		"other type": {Kind: invitations.OutboxKind, Type: "other", Payload: ev.Payload},
	} {
		if err := w.Deliver(context.Background(), e); !outbox.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent failure", name, err)
		}
	}
	r.err = errors.New("dataverse: unavailable")
	if err := w.Deliver(context.Background(), ev); err == nil || outbox.IsPermanent(err) {
		t.Fatalf("Dataverse error: %v, want a retry", err)
	}
}
