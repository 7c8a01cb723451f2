package invitations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/dataverse"
)

// Recorder writes a redemption back to Dataverse; crmclient.Directory
// satisfies it. Writing one twice must count it once.
type Recorder interface {
	RecordInvitationRedemption(ctx context.Context, r dataverse.InvitationRedemption) error
}

// WriteBack is the outbox deliverer of OutboxKind events: it writes each
// redemption back to Dataverse. An event it cannot read fails for good; a
// Dataverse error is retried by the worker with backoff, so an outage
// delays the write-back and loses nothing.
type WriteBack struct {
	// Dataverse receives the redemptions. Required.
	Dataverse Recorder
}

// Deliver implements outbox.Deliverer.
func (w WriteBack) Deliver(ctx context.Context, e outbox.Event) error {
	if w.Dataverse == nil {
		return errors.New("invitations: write-back: no Dataverse configured")
	}
	if e.Type != OutboxRedeemed {
		return outbox.Permanent(fmt.Errorf("invitations: write-back: unknown event type %q", e.Type))
	}
	var r dataverse.InvitationRedemption
	if err := json.Unmarshal(e.Payload, &r); err != nil || r.InvitationID == "" || r.N < 1 {
		return outbox.Permanent(fmt.Errorf("invitations: write-back: event %d: bad payload", e.ID))
	}
	return w.Dataverse.RecordInvitationRedemption(ctx, r)
}
