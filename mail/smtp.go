package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	netmail "net/mail"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/mail/smtpurl"
)

// DefaultTimeout bounds one SMTP exchange when SMTPOptions.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// SMTPOptions configure an SMTP sender.
type SMTPOptions struct {
	// Server is the parsed CRMGATE_SMTP_URL. Its Security is enforced:
	// Implicit dials TLS, StartTLS refuses a server that does not offer
	// STARTTLS (before any credential is sent), None never uses TLS and
	// carries no credentials (smtpurl.Parse refuses them).
	Server smtpurl.URL
	// From is the sender address (CRMGATE_SMTP_FROM); it must pass
	// ValidAddress.
	From string
	// TLSConfig is the TLS client configuration; nil means the system's
	// roots with TLS 1.2 at least. ServerName is set to Server.Host when
	// empty. Dangerous: InsecureSkipVerify lets anyone on the path read
	// the credentials and every mail.
	TLSConfig *tls.Config
	// Timeout bounds one connection's exchange; zero means DefaultTimeout.
	Timeout time.Duration
	// HELO is the name given in EHLO/HELO; empty means the host name of
	// From's domain.
	HELO string
}

// SMTP sends messages to one mail server, one connection per message. It
// is safe for concurrent use. Build it with NewSMTP.
type SMTP struct {
	opts   SMTPOptions
	domain string
}

var _ Sender = (*SMTP)(nil)

// NewSMTP checks o and returns the sender; it does not connect.
func NewSMTP(o SMTPOptions) (*SMTP, error) {
	if o.Server.Host == "" || o.Server.Port < 1 || o.Server.Port > 65535 {
		return nil, errors.New("mail: SMTP sender needs a server (smtpurl.Parse)")
	}
	if o.Server.Security == smtpurl.None && o.Server.Username != "" {
		return nil, errors.New("mail: SMTP sender refuses credentials without TLS")
	}
	if err := ValidAddress(o.From); err != nil {
		return nil, fmt.Errorf("mail: SMTP sender address: %w", err)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSConfig != nil {
		cfg = o.TLSConfig.Clone()
		cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = o.Server.Host
	}
	o.TLSConfig = cfg
	addr, _ := parseFrom(o.From)
	_, domain, _ := strings.Cut(addr, "@")
	if o.HELO == "" {
		o.HELO = domain
	}
	return &SMTP{opts: o, domain: domain}, nil
}

// parseFrom returns the bare address of an address ValidAddress accepted.
func parseFrom(s string) (string, error) {
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}

// Send implements Sender. A 5xx answer to MAIL, RCPT or DATA is returned
// wrapped with outbox.Permanent; connection failures, timeouts, 4xx
// answers and refused credentials (an operator can fix those) are not.
func (s *SMTP) Send(ctx context.Context, m Message, id string) error {
	if err := m.Validate(); err != nil {
		return outbox.Permanent(err)
	}
	msg := gomail.NewMsg()
	if err := msg.From(s.opts.From); err != nil {
		return outbox.Permanent(fmt.Errorf("mail: sender address: %w", err))
	}
	if err := msg.To(m.To); err != nil {
		return outbox.Permanent(fmt.Errorf("%w: recipient not accepted", ErrInvalid))
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	if id != "" {
		msg.SetMessageIDWithValue(id + "@" + s.domain)
	} else {
		msg.SetMessageID()
	}
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		var se *gomail.SendError
		if !errors.As(err, &se) {
			return fmt.Errorf("mail: SMTP: %w", err) // dial, TLS or AUTH: no address in it
		}
		// go-mail's text names the recipients, and the server's text often
		// does too: keep only the command and codes, for logs and the outbox.
		e := &ReplyError{Command: se.Reason.String(), Code: se.ErrorCode(), Enhanced: se.EnhancedStatusCode()}
		if e.Code >= 500 && e.Code <= 599 {
			return outbox.Permanent(e)
		}
		return e
	}
	return nil
}

// ReplyError is a mail server's refusal of a message, without the
// server's text (which often repeats the recipient's address).
type ReplyError struct {
	// Command is what was refused, e.g. "sending SMTP RCPT TO command".
	Command string
	// Code is the SMTP reply code (RFC 5321 section 4.2), 0 when the
	// failure was not a server answer.
	Code int
	// Enhanced is the enhanced status code (RFC 3463), if the server sent one.
	Enhanced string
}

// Error implements error.
func (e *ReplyError) Error() string {
	s := "mail: SMTP: " + e.Command + ": " + strconv.Itoa(e.Code)
	if e.Enhanced != "" {
		s += " " + e.Enhanced
	}
	return s
}

// client builds a go-mail client for one send, with the security of the URL.
func (s *SMTP) client() (*gomail.Client, error) {
	u := s.opts.Server
	opts := []gomail.Option{
		gomail.WithPort(u.Port), gomail.WithTimeout(s.opts.Timeout), gomail.WithHELO(s.opts.HELO),
		gomail.WithTLSConfig(s.opts.TLSConfig),
	}
	switch u.Security {
	case smtpurl.Implicit:
		opts = append(opts, gomail.WithSSL())
	case smtpurl.StartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case smtpurl.None:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		return nil, fmt.Errorf("mail: unknown SMTP security %d", u.Security)
	}
	if u.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(u.Username), gomail.WithPassword(u.Password))
	}
	c, err := gomail.NewClient(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mail: SMTP client: %w", err)
	}
	return c, nil
}
