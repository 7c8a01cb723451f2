// Package mail sends crmgate's outgoing email through the durable outbox.
//
// It is a top-level feature package rather than part of authz because mail
// is not an authorization decision: the account flows (registration,
// confirmation, invitations, reset) consume it, and so may anything else
// that writes to the outbox. A flow builds its message with NewEvent and
// stores the event in the same transaction as the change that causes it
// (for example store.DB.CreateUserAndEnqueue); the outbox worker hands it to
// the Deliverer, which sends it through a Sender (SMTP in production).
// A mail server outage therefore delays mail and loses none; a permanent
// refusal (a 5xx answer) is recorded failed, not retried forever.
//
// The mail server URL follows the one rule of package mail/smtpurl.
package mail

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz/outbox"
)

// Kind is the outbox Kind of mail events.
const Kind = "mail"

// Limits of a Message.
const (
	// MaxSubject is the longest subject, in bytes.
	MaxSubject = 250
	// MaxBody is the longest text or HTML body, in bytes each.
	MaxBody = 256 << 10
	// MaxType is the longest event type (the purpose of a mail).
	MaxType = 64
)

// Message is one email to one recipient. The sender's address is not
// part of it: it is the configured CRMGATE_SMTP_FROM.
type Message struct {
	// To is the recipient, an RFC 5322 address with an optional display
	// name ("Ana <ana@example.com>"). It must not be empty.
	To string `json:"to"`
	// Subject is the subject line; it must not be empty nor contain
	// control characters (no header injection).
	Subject string `json:"subject"`
	// Text is the plain-text body; it must not be empty.
	Text string `json:"text"`
	// HTML is the HTML alternative of Text; empty sends text only.
	HTML string `json:"html,omitempty"`
}

// ErrInvalid is wrapped by every error of Validate.
var ErrInvalid = errors.New("mail: invalid message")

// Validate checks m: one valid recipient address, a subject without
// control characters, bodies of valid UTF-8 within MaxBody. Errors wrap
// ErrInvalid and name no address.
func (m Message) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if err := ValidAddress(m.To); err != nil {
		return bad("recipient: %v", err)
	}
	switch {
	case m.Subject == "":
		return bad("empty subject")
	case len(m.Subject) > MaxSubject:
		return bad("subject longer than %d bytes", MaxSubject)
	case !printable(m.Subject):
		return bad("subject has control characters or invalid UTF-8")
	case m.Text == "":
		return bad("empty text body")
	case len(m.Text) > MaxBody || len(m.HTML) > MaxBody:
		return bad("body longer than %d bytes", MaxBody)
	case !utf8.ValidString(m.Text) || !utf8.ValidString(m.HTML):
		return bad("body is not valid UTF-8")
	}
	return nil
}

// ValidAddress checks that s is exactly one RFC 5322 address (a display
// name allowed) without control characters, so that it cannot add headers
// or recipients. It serves CRMGATE_SMTP_FROM and every recipient. The
// error does not repeat s.
func ValidAddress(s string) error {
	if s == "" {
		return errors.New("empty address")
	}
	if len(s) > 320 {
		return errors.New("address longer than 320 bytes")
	}
	if !printable(s) {
		return errors.New("address has control characters or invalid UTF-8")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return errors.New("not one valid email address")
	}
	local, domain, ok := strings.Cut(a.Address, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(a.Address, " <>,;\"\\") {
		return errors.New("not one valid email address")
	}
	// Only "addr" or "name <addr>": no group syntax, comments or trailing text.
	if s != a.Address && !strings.HasSuffix(s, "<"+a.Address+">") {
		return errors.New("not one valid email address (use addr or Name <addr>)")
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters
// (C0, DEL, C1) and without the Unicode line and paragraph separators.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// validType reports whether typ is a usable event type and metric label:
// 1 to MaxType lower-case letters, digits, '.', '_' or '-'.
func validType(typ string) bool {
	if typ == "" || len(typ) > MaxType {
		return false
	}
	for _, r := range typ {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// NewEvent returns the outbox event that sends m, after validating it.
// typ names the mail's purpose (for example "confirm" or "reset"); it
// becomes the event Type and the metric label, so it must be 1 to MaxType
// characters of a-z, 0-9, '.', '_', '-' and never hold an address or
// token. userID is the account the mail is about ("" for none: such mails
// share one delivery queue); at is the enqueue time (zero: the store's
// clock). Store the event in the transaction of the change that causes the
// mail.
func NewEvent(typ, userID string, m Message, at time.Time) (outbox.Event, error) {
	if !validType(typ) {
		return outbox.Event{}, fmt.Errorf("%w: type must be 1 to %d characters of a-z, 0-9, '.', '_', '-'", ErrInvalid, MaxType)
	}
	if err := m.Validate(); err != nil {
		return outbox.Event{}, err
	}
	p, err := json.Marshal(m)
	if err != nil {
		return outbox.Event{}, fmt.Errorf("mail: encode message: %w", err)
	}
	return outbox.Event{Kind: Kind, Type: typ, UserID: userID, Payload: p, CreatedAt: at}, nil
}
