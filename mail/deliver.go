package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crmgate/crmgate/authz/outbox"
)

// Sender hands one message to a mail server. It returns nil once the
// server accepted the message, an error wrapped with outbox.Permanent when
// the server refused it for good (an SMTP 5xx answer), and any other error
// for a failure worth retrying (connection refused, timeout, 4xx). id is a
// stable identifier of the message (the same across retries), used as its
// Message-ID so that a duplicate delivery is recognisable. *SMTP
// implements it.
type Sender interface {
	Send(ctx context.Context, m Message, id string) error
}

// DelivererOptions configure a Deliverer. The zero value is usable.
type DelivererOptions struct {
	// Logger receives one line per outcome (event id and type, never the
	// address, subject or body); nil discards them.
	Logger *slog.Logger
	// Registerer receives the crmgate_mail_* counters; nil registers
	// nothing.
	Registerer prometheus.Registerer
}

// Deliverer is the outbox.Deliverer of mail events: it decodes the
// message and sends it through its Sender, counting each outcome by mail
// type (never by address). Build it with NewDeliverer.
type Deliverer struct {
	sender                 Sender
	log                    *slog.Logger
	sent, deferred, failed *prometheus.CounterVec
}

var _ outbox.Deliverer = (*Deliverer)(nil)

// NewDeliverer returns a Deliverer sending through s. It fails for a nil
// Sender or a metrics registration error.
func NewDeliverer(s Sender, o DelivererOptions) (*Deliverer, error) {
	if s == nil {
		return nil, errors.New("mail: deliverer needs a sender")
	}
	d := &Deliverer{sender: s, log: o.Logger,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_mail_sent_total", Help: "Mails accepted by the mail server, by mail type.",
		}, []string{"type"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_mail_deferred_total", Help: "Mail delivery attempts that failed for now (connection, timeout, 4xx) and are retried, by mail type.",
		}, []string{"type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_mail_failed_total", Help: "Mails given up for good (a 5xx answer or an invalid message), by mail type.",
		}, []string{"type"}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if o.Registerer != nil {
		var errs []error
		for _, c := range []prometheus.Collector{d.sent, d.deferred, d.failed} {
			errs = append(errs, o.Registerer.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("mail: register metrics: %w", err)
		}
	}
	return d, nil
}

// Deliver implements outbox.Deliverer. An event of another kind is an
// error (retried); an event whose message cannot be read or is invalid is
// a permanent failure, as is a permanent refusal by the server.
func (d *Deliverer) Deliver(ctx context.Context, e outbox.Event) error {
	if e.Kind != Kind {
		return fmt.Errorf("mail: deliverer: event %d has kind %q, not %q", e.ID, e.Kind, Kind)
	}
	var m Message
	err := json.Unmarshal(e.Payload, &m)
	if err == nil {
		err = m.Validate()
	} else {
		err = fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	if err != nil {
		d.failed.WithLabelValues(e.Type).Inc()
		d.log.ErrorContext(ctx, "mail not sent: invalid message", "event", e.ID, "type", e.Type, "err", err)
		return outbox.Permanent(fmt.Errorf("mail: event %d: %w", e.ID, err))
	}
	// The Message-ID is the event's, the same on every attempt: a
	// duplicate delivery (at least once) is recognisable by it, in the
	// recipient's mailbox and in these logs.
	id := messageID(e)
	err = d.sender.Send(ctx, m, id)
	switch {
	case err == nil:
		d.sent.WithLabelValues(e.Type).Inc()
		d.log.InfoContext(ctx, "mail sent", "event", e.ID, "type", e.Type, "attempts", e.Attempts, "message_id", id)
		return nil
	case outbox.IsPermanent(err):
		d.failed.WithLabelValues(e.Type).Inc()
		d.log.ErrorContext(ctx, "mail refused by the mail server; not retried", "event", e.ID, "type", e.Type,
			"attempts", e.Attempts, "message_id", id, "err", err)
		return fmt.Errorf("mail: event %d: %w", e.ID, err)
	default:
		d.deferred.WithLabelValues(e.Type).Inc()
		d.log.WarnContext(ctx, "mail deferred; retried", "event", e.ID, "type", e.Type, "attempts", e.Attempts,
			"message_id", id, "err", err)
		return fmt.Errorf("mail: event %d: %w", e.ID, err)
	}
}

// messageID is the stable local part of the Message-ID of event e:
// "crmgate.<outbox id>.<creation time in ms, base 36>", the same on every
// attempt and in every process (both come from the stored event), and
// distinct across databases that reuse ids (the creation time). The
// Sender adds "@" and the sender's domain.
func messageID(e outbox.Event) string {
	return "crmgate." + strconv.FormatInt(e.ID, 10) + "." + strconv.FormatInt(e.CreatedAt.UnixMilli(), 36)
}

// Unconfigured is the mail Deliverer when no mail server is configured
// (CRMGATE_SMTP_URL unset): it records every mail event failed for good,
// so that mail never holds back a user's other events. Dangerous only if
// used with a mail server configured: its mails would be dropped.
type Unconfigured struct{}

var _ outbox.Deliverer = Unconfigured{}

// Deliver implements outbox.Deliverer.
func (Unconfigured) Deliver(_ context.Context, e outbox.Event) error {
	return outbox.Permanent(fmt.Errorf("mail: event %d not sent: CRMGATE_SMTP_URL is unset", e.ID))
}
