// Package mailtest runs a real SMTP server (github.com/emersion/go-smtp) on
// a loopback port for tests: a plain relay, STARTTLS or implicit TLS with a
// fresh test certificate, optional AUTH PLAIN and LOGIN, scripted 4xx/5xx
// answers, and a record of every message and of every AUTH attempt with
// whether it came over TLS. It is to mail what net/http/httptest is to
// HTTP.
package mailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mode is how the server protects connections.
type Mode int

// The server modes.
const (
	// Plain offers no TLS at all.
	Plain Mode = iota
	// StartTLS offers STARTTLS on a plain connection.
	StartTLS
	// Implicit speaks TLS from the first byte.
	Implicit
)

// Options configure a Server. The zero value is a plain relay without
// authentication.
type Options struct {
	// Mode is the connection protection.
	Mode Mode
	// Users are the accepted AUTH PLAIN and LOGIN credentials, user name
	// to password; nil offers no AUTH. The server accepts AUTH also
	// before TLS (AllowInsecureAuth), so that a test sees a client that
	// sends credentials in clear; Auths records it.
	Users map[string]string
	// Mechs are the AUTH mechanisms offered when Users is set; nil means
	// PLAIN and LOGIN.
	Mechs []string
	// Reply, when set, is asked before each RCPT and DATA is accepted,
	// with the 0-based count of messages attempted so far and the stage
	// ("rcpt" or "data"); a non-nil *smtp.SMTPError it returns is the
	// server's answer. Use Code 4xx or 5xx.
	Reply func(attempt int, stage string) *smtp.SMTPError
	// Addr is the listen address; empty means 127.0.0.1:0 (a free port).
	Addr string
}

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	// TLS reports whether the connection was encrypted.
	TLS bool
	// User is the authenticated user, if any.
	User string
}

// Auth is one AUTH attempt.
type Auth struct {
	Mech, User string
	// TLS reports whether the connection was encrypted when the
	// credentials arrived.
	TLS bool
	OK  bool
}

// Server is a running test SMTP server. Build it with Start.
type Server struct {
	// Host and Port are where it listens.
	Host string
	Port int
	// Roots trusts the server's certificate (for Mode StartTLS and
	// Implicit).
	Roots *x509.CertPool

	opts     Options
	srv      *smtp.Server
	ln       net.Listener
	mu       sync.Mutex
	msgs     []Message
	auths    []Auth
	attempts int
	closed   bool
}

// Start starts a server with o and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := Listen(o)
	if err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Listen starts a server with o; the caller closes it.
func Listen(o Options) (*Server, error) {
	s := &Server{opts: o}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s: s, c: c}, nil })
	s.srv = smtp.NewServer(be)
	s.srv.Domain = "mailtest.localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.ErrorLog = discardLogger{}
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var cfg *tls.Config
	if o.Mode != Plain {
		c, roots, err := certificate()
		if err != nil {
			return nil, err
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
		s.Roots = roots
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	switch o.Mode {
	case StartTLS:
		s.srv.TLSConfig = cfg
	case Implicit:
		l = tls.NewListener(l, cfg)
	}
	s.ln = l
	host, port, _ := net.SplitHostPort(l.Addr().String())
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Close stops the server and closes its connections.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// Closing the listener too covers a Serve that has not registered it yet.
	lerr := s.ln.Close()
	if err := s.srv.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return err
	}
	if lerr != nil && !errors.Is(lerr, net.ErrClosed) {
		return lerr
	}
	return nil
}

// Messages returns the accepted messages, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Auths returns every AUTH attempt, in order.
func (s *Server) Auths() []Auth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Auth(nil), s.auths...)
}

type session struct {
	s    *Server
	c    *smtp.Conn
	from string
	to   []string
	user string
}

func (se *session) isTLS() bool { _, ok := se.c.TLSConnectionState(); return ok }

func (se *session) AuthMechanisms() []string {
	if se.s.opts.Users == nil {
		return nil
	}
	if se.s.opts.Mechs != nil {
		return se.s.opts.Mechs
	}
	return []string{sasl.Plain, sasl.Login}
}

func (se *session) check(mech, user, pass string) error {
	want, ok := se.s.opts.Users[user]
	ok = ok && want == pass
	se.s.mu.Lock()
	se.s.auths = append(se.s.auths, Auth{Mech: mech, User: user, TLS: se.isTLS(), OK: ok})
	se.s.mu.Unlock()
	if !ok {
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
	}
	se.user = user
	return nil
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return se.check(mech, user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: func(u, p string) error { return se.check(mech, u, p) }}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.opts.Users != nil && se.user == "" {
		return smtp.ErrAuthRequired
	}
	se.from = from
	return nil
}

func (se *session) reply(stage string) error {
	if se.s.opts.Reply == nil {
		return nil
	}
	se.s.mu.Lock()
	n := se.s.attempts
	se.s.mu.Unlock()
	if e := se.s.opts.Reply(n, stage); e != nil {
		if stage == "rcpt" || e.Code >= 400 {
			se.s.mu.Lock()
			se.s.attempts++
			se.s.mu.Unlock()
		}
		return e
	}
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := se.reply("rcpt"); err != nil {
		return err
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := se.reply("data"); err != nil {
		return err
	}
	se.s.mu.Lock()
	se.s.attempts++
	se.s.msgs = append(se.s.msgs, Message{From: se.from, To: se.to, Data: b, TLS: se.isTLS(), User: se.user})
	se.s.mu.Unlock()
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login-00): user name, then password, each prompted.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, true, errors.New("mailtest: unexpected LOGIN response")
}

// certificate makes a self-signed certificate for 127.0.0.1, ::1 and
// localhost, valid for a day.
func certificate() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "mailtest"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:    []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, roots, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// Header returns the value of header name in m's data ("" when absent),
// for assertions.
func (m Message) Header(name string) string {
	head, _, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(k, []byte(name)) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// Fail returns a Reply that answers code at stage for the first n
// attempts and accepts afterwards; n < 0 means always.
func Fail(stage string, code, n int) func(int, string) *smtp.SMTPError {
	return func(attempt int, st string) *smtp.SMTPError {
		if st != stage || n >= 0 && attempt >= n {
			return nil
		}
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: "scripted answer " + strconv.Itoa(code)}
	}
}
