// Package capture is the mail server of `crmgate dev`: a real SMTP server
// (github.com/emersion/go-smtp) on a loopback port that accepts every
// message, keeps the last few in memory and shows them on a web page, so
// that a newcomer can follow a confirmation or reset link without a mail
// server. The gateway sends to it through its ordinary SMTP sender and
// outbox (CRMGATE_SMTP_URL=smtp://127.0.0.1:PORT?tls=none), so dev
// exercises the production path end to end.
//
// It is a development tool: it offers no TLS and no authentication and
// accepts mail for anyone. Never expose it, nor its page (Handler), on a
// production gateway: the page shows every mail, links with one-time
// tokens included.
package capture

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Defaults of Options.
const (
	// DefaultMax is how many messages a Server keeps when Options.Max is zero.
	DefaultMax = 100
	// DefaultMaxSize is the largest message accepted when Options.MaxSize is zero.
	DefaultMaxSize = 1 << 20
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Addr is the listen address; empty means 127.0.0.1:0 (a free
	// loopback port). Dangerous: a non-loopback address lets anyone on the
	// network read the captured mails' links.
	Addr string
	// Max is how many messages are kept; older ones are dropped. Zero or
	// less means DefaultMax.
	Max int
	// MaxSize bounds one message, in bytes; a larger one is refused with
	// 552. Zero or less means DefaultMaxSize.
	MaxSize int64
	// Now is the clock of the received times; nil means time.Now.
	Now func() time.Time
}

// Message is one captured message, decoded for display.
type Message struct {
	// ID numbers the messages of a Server from 1, in order of arrival.
	ID int
	// Received is when the server accepted the message.
	Received time.Time
	// From and To are the envelope's sender and recipients.
	From string
	To   []string
	// Subject, MessageID and Date are the decoded headers ("" when absent).
	Subject, MessageID, Date string
	// Text and HTML are the decoded plain-text and HTML parts ("" when
	// absent). HTML is the sender's markup: show it only sandboxed.
	Text, HTML string
	// Raw is the message as received.
	Raw []byte
	// Err says why the message could not be decoded ("" when it could);
	// the message is kept, with Raw, either way.
	Err string
}

// Server is a running capture server. Build it with Listen; it is safe for
// concurrent use.
type Server struct {
	max  int
	now  func() time.Time
	srv  *smtp.Server
	ln   net.Listener
	mu   sync.Mutex
	msgs []Message // oldest first, at most max
	next int
	done chan struct{}
}

// Listen starts a server with o; Close stops it.
func Listen(o Options) (*Server, error) {
	s := &Server{max: o.Max, now: o.Now, next: 1, done: make(chan struct{})}
	if s.max <= 0 {
		s.max = DefaultMax
	}
	if s.now == nil {
		s.now = time.Now
	}
	size := o.MaxSize
	if size <= 0 {
		size = DefaultMaxSize
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	s.srv.Domain = "capture.crmgate.localhost"
	s.srv.MaxMessageBytes = size
	s.srv.MaxRecipients = 50
	s.srv.ReadTimeout, s.srv.WriteTimeout = 30*time.Second, 30*time.Second
	s.srv.ErrorLog = discard{}
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the CRMGATE_SMTP_URL that sends to the server.
func (s *Server) URL() string { return "smtp://" + s.Addr() + "?tls=none" }

// Close stops the server and closes its connections.
func (s *Server) Close() error {
	err := s.srv.Close()
	_ = s.ln.Close() // covers a Serve that has not registered it yet
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Messages returns the kept messages, newest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[len(s.msgs)-1-i] = m
	}
	return out
}

// Message returns the kept message id.
func (s *Server) Message(id int) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if m.ID == id {
			return m, true
		}
	}
	return Message{}, false
}

// add keeps m, dropping the oldest message beyond the bound.
func (s *Server) add(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.ID = s.next
	s.next++
	s.msgs = append(s.msgs, m)
	if n := len(s.msgs) - s.max; n > 0 {
		s.msgs = append(s.msgs[:0:0], s.msgs[n:]...)
	}
}

type session struct {
	s    *Server
	from string
	to   []string
}

func (se *session) AuthMechanisms() []string { return nil }

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err // go-smtp answers 552 for a message over MaxMessageBytes
	}
	m := Decode(raw)
	m.Received, m.From, m.To = se.s.now(), se.from, append([]string(nil), se.to...)
	se.s.add(m)
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

type discard struct{}

func (discard) Printf(string, ...any) {}
func (discard) Println(...any)        {}

// maxParts bounds the MIME parts Decode walks, so that a hostile message
// cannot make it loop for long.
const maxParts = 50

// Decode reads an RFC 5322 message: its Subject, Message-ID and Date, and
// the first text/plain and text/html parts, decoded (base64,
// quoted-printable, charset UTF-8 or US-ASCII). A message it cannot read
// comes back with Err set and Raw kept.
func Decode(raw []byte) Message {
	m := Message{Raw: raw}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		m.Err = "unreadable message: " + err.Error()
		return m
	}
	dec := new(mime.WordDecoder)
	header := func(name string) string {
		v := msg.Header.Get(name)
		if d, err := dec.DecodeHeader(v); err == nil {
			return d
		}
		return v
	}
	m.Subject, m.MessageID, m.Date = header("Subject"), header("Message-Id"), header("Date")
	parts := 0
	if err := m.walk(msg.Header.Get, msg.Body, 0, &parts); err != nil {
		m.Err = err.Error()
	}
	return m
}

// walk decodes one entity with headers h and body r into m, recursing
// into multipart entities up to depth 5.
func (m *Message) walk(h func(string) string, r io.Reader, depth int, parts *int) error {
	*parts++
	if *parts > maxParts || depth > 5 {
		return errors.New("too many or too deeply nested MIME parts")
	}
	ct := h("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("bad Content-Type: %v", err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextPart() // decodes quoted-printable parts itself
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("bad multipart body: %v", err)
			}
			if err := m.walk(p.Header.Get, p, depth+1, parts); err != nil {
				return err
			}
		}
	}
	if mt != "text/plain" && mt != "text/html" {
		return nil // attachments and the like are not shown
	}
	if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
		return fmt.Errorf("unsupported charset %q", cs)
	}
	switch strings.ToLower(strings.TrimSpace(h("Content-Transfer-Encoding"))) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &stripCRLF{r: r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("bad %s body: %v", mt, err)
	}
	body := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch {
	case mt == "text/plain" && m.Text == "":
		m.Text = body
	case mt == "text/html" && m.HTML == "":
		m.HTML = body
	}
	return nil
}

// stripCRLF drops the line breaks of a base64 body.
type stripCRLF struct{ r io.Reader }

func (s *stripCRLF) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
