package capture_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/mail"
	"github.com/crmgate/crmgate/mail/capture"
	"github.com/crmgate/crmgate/mail/smtpurl"
)

func start(t *testing.T, o capture.Options) *capture.Server {
	t.Helper()
	s, err := capture.Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// sender is the production SMTP sender pointed at s.
func sender(t *testing.T, s *capture.Server) *mail.SMTP {
	t.Helper()
	u, err := smtpurl.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	snd, err := mail.NewSMTP(mail.SMTPOptions{Server: u, From: "Demo <noreply@demo.test>", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return snd
}

// The real sender's message arrives decoded: envelope, subject (non-ASCII
// included), the Message-ID the sender was given, both parts.
func TestCaptureDecodesTheSendersMail(t *testing.T) {
	s := start(t, capture.Options{})
	text := "Hello Zoë,\n\nopen https://portal.example.com/.auth/confirm?token=abc_DEF-1 to confirm.\n" + strings.Repeat("long line ", 20) + "\n"
	html := `<p>Hello Zoë, <a href="https://portal.example.com/.auth/confirm?token=abc_DEF-1">confirm</a></p>`
	err := sender(t, s).Send(context.Background(), mail.Message{To: "Zoë <zoe@example.org>", Subject: "Bestätigen Sie Ihre Adresse",
		Text: text, HTML: html}, "crmgate.42.abc")
	if err != nil {
		t.Fatal(err)
	}
	ms := s.Messages()
	if len(ms) != 1 {
		t.Fatalf("messages = %d", len(ms))
	}
	m := ms[0]
	if m.ID != 1 || m.From != "noreply@demo.test" || len(m.To) != 1 || m.To[0] != "zoe@example.org" || m.Err != "" {
		t.Errorf("envelope: %+v", m)
	}
	if m.Subject != "Bestätigen Sie Ihre Adresse" || m.MessageID != "<crmgate.42.abc@demo.test>" || m.Date == "" {
		t.Errorf("headers: subject %q, id %q, date %q", m.Subject, m.MessageID, m.Date)
	}
	if m.Text != text {
		t.Errorf("text = %q, want %q", m.Text, text)
	}
	if strings.TrimSpace(m.HTML) != html {
		t.Errorf("html = %q", m.HTML)
	}
}

// Only the last Max messages are kept, and Messages lists them newest first.
func TestCaptureKeepsTheLastMessages(t *testing.T) {
	s := start(t, capture.Options{Max: 3})
	snd := sender(t, s)
	for i := range 5 {
		if err := snd.Send(context.Background(), mail.Message{To: "a@example.org", Subject: "m" + strconv.Itoa(i), Text: "x"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, m := range s.Messages() {
		got = append(got, strconv.Itoa(m.ID)+":"+m.Subject)
	}
	if strings.Join(got, ",") != "5:m4,4:m3,3:m2" {
		t.Errorf("kept %v, want the last three, newest first", got)
	}
	if _, ok := s.Message(1); ok {
		t.Error("message 1 still kept")
	}
}

// A message over MaxSize is refused by the server with a permanent answer.
func TestCaptureRefusesLargeMessages(t *testing.T) {
	s := start(t, capture.Options{MaxSize: 2000})
	err := sender(t, s).Send(context.Background(), mail.Message{To: "a@example.org", Subject: "big", Text: strings.Repeat("x", 5000)}, "")
	var re *mail.ReplyError
	if !errors.As(err, &re) || re.Code != 552 {
		t.Errorf("send = %v, want a 552 refusal", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("kept %d messages", n)
	}
}

// Decode survives what a hostile or odd sender sends: no headers, base64,
// an unknown charset, endless nesting; it never panics and keeps Raw.
func TestDecodeOddMessages(t *testing.T) {
	for _, tc := range []struct {
		name, raw, text, err string
	}{
		{"no content type", "Subject: hi\r\n\r\nbody\r\n", "body\n", ""},
		{"base64", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n", "hello", ""},
		{"encoded subject", "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx", "x", ""},
		{"charset", "Content-Type: text/plain; charset=iso-8859-1\r\n\r\nx", "", "unsupported charset"},
		{"bad type", "Content-Type: ;;\r\n\r\nx", "", "bad Content-Type"},
		{"not a message", "\x00\x01", "", ""},
		{"nested", nested(10), "", "nested"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := capture.Decode([]byte(tc.raw))
			if string(m.Raw) != tc.raw {
				t.Error("raw not kept")
			}
			if m.Text != tc.text || !strings.Contains(m.Err, tc.err) || tc.err == "" && m.Err != "" && tc.name != "not a message" {
				t.Errorf("text %q err %q; want %q and an error with %q", m.Text, m.Err, tc.text, tc.err)
			}
		})
	}
	if m := capture.Decode([]byte("Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx")); m.Subject != "café" {
		t.Errorf("subject = %q", m.Subject)
	}
}

func nested(depth int) string {
	var b strings.Builder
	for i := range depth {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + strconv.Itoa(i) + "\r\n\r\n--b" + strconv.Itoa(i) + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	return b.String()
}

func handler(t *testing.T, s *capture.Server, o capture.HandlerOptions) http.Handler {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = "/.auth/dev/mail"
	}
	h, err := s.Handler(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, h http.Handler, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Result(), string(b)
}

// The page lists the messages newest first and shows one: the plain text
// with its link clickable, its HTML only through a sandboxed frame whose
// document is itself sandboxed by its CSP, and the source as text.
func TestPageListsAndShowsMessages(t *testing.T) {
	s := start(t, capture.Options{})
	snd := sender(t, s)
	link := "https://portal.example.com/.auth/reset/confirm?token=T0K&x=1"
	for i, subj := range []string{"First <b>mail</b>", "Second"} {
		if err := snd.Send(context.Background(), mail.Message{To: "ana" + strconv.Itoa(i) + "@example.org", Subject: subj,
			Text: "Open " + link + ".\n", HTML: `<p onclick="alert(1)">Hi <script>alert(2)</script><a href="` + link + `">reset</a></p>`}, ""); err != nil {
			t.Fatal(err)
		}
	}
	h := handler(t, s, capture.HandlerOptions{Stylesheets: []string{"/.auth/static/style.css"}, SiteName: "Demo"})

	resp, body := get(t, h, "/.auth/dev/mail")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("list: %d %v", resp.StatusCode, resp.Header)
	}
	second, first := strings.Index(body, `href="/.auth/dev/mail/2">Second`), strings.Index(body, `href="/.auth/dev/mail/1">First &lt;b&gt;mail&lt;/b&gt;`)
	if second < 0 || first < 0 || second > first {
		t.Errorf("list does not show both, newest first, escaped:\n%s", body)
	}
	for _, want := range []string{"ana0@example.org", `<link rel="stylesheet" href="/.auth/static/style.css">`, `href="/.auth/dev/mail/style.css"`, "2 captured messages"} {
		if !strings.Contains(body, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	if strings.Contains(body, "Send a test mail") {
		t.Error("a send button without Send")
	}

	_, body = get(t, h, "/.auth/dev/mail/1")
	escaped := "https://portal.example.com/.auth/reset/confirm?token=T0K&amp;x=1"
	for _, want := range []string{`<a href="` + escaped + `">` + escaped + `</a>.`, `<iframe class="mail-html"`, `src="/.auth/dev/mail/1/html"`,
		`sandbox="allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"`, `href="/.auth/dev/mail/1/raw"`} {
		if !strings.Contains(body, want) {
			t.Errorf("message page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "onclick") {
		t.Errorf("message page carries the mail's markup:\n%s", body)
	}

	resp, body = get(t, h, "/.auth/dev/mail/1/html")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.HasPrefix(csp, "sandbox ") || strings.Contains(csp, "allow-scripts") || strings.Contains(csp, "allow-same-origin") ||
		!strings.Contains(csp, "default-src 'none'") || !strings.Contains(body, `<base target="_top">`) {
		t.Errorf("html view: CSP %q body %q", csp, body)
	}
	resp, body = get(t, h, "/.auth/dev/mail/1/raw")
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || !strings.Contains(body, "Subject: First") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("raw: %s %q", ct, body)
	}
	for _, p := range []string{"/.auth/dev/mail/9", "/.auth/dev/mail/x", "/.auth/dev/mail/9/html", "/.auth/dev/mail/-1/raw"} {
		if resp, _ := get(t, h, p); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, h, "/.auth/signin"); resp.StatusCode != 404 {
		t.Errorf("outside the prefix: %d", resp.StatusCode)
	}
	if resp, body := get(t, h, "/.auth/dev/mail/style.css"); resp.StatusCode != 200 || !strings.Contains(body, ".mail-list") {
		t.Errorf("style sheet: %d", resp.StatusCode)
	}
}

// The button sends through Send and lands on the new message; a
// cross-site POST is refused before Send runs; a failing Send says so.
func TestPageSendButton(t *testing.T) {
	s := start(t, capture.Options{})
	snd := sender(t, s)
	calls := 0
	var fail error
	h := handler(t, s, capture.HandlerOptions{Wait: 2 * time.Second, Send: func(ctx context.Context) error {
		calls++
		if fail != nil {
			return fail
		}
		go func() {
			_ = snd.Send(context.Background(), mail.Message{To: "a@example.org", Subject: "test", Text: "x"}, "")
		}()
		return nil
	}})
	if _, body := get(t, h, "/.auth/dev/mail"); !strings.Contains(body, `<form class="form" method="post" action="/.auth/dev/mail/send">`) {
		t.Fatalf("no send form:\n%s", body)
	}
	post := func(hdr map[string]string) *http.Response {
		req := httptest.NewRequest("POST", "http://gw.test/.auth/dev/mail/send", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	for _, hdr := range []map[string]string{nil, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.test"}, {"Sec-Fetch-Site": "same-site", "Origin": "http://gw.test"}} {
		if resp := post(hdr); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST with %v: %d, want 403", hdr, resp.StatusCode)
		}
	}
	if calls != 0 {
		t.Fatalf("Send ran %d times for refused requests", calls)
	}
	if resp := post(map[string]string{"Sec-Fetch-Site": "same-origin"}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.auth/dev/mail/1" {
		t.Errorf("POST: %d to %q, want 303 to the new message", resp.StatusCode, resp.Header.Get("Location"))
	}
	fail = errors.New("store down")
	if resp := post(map[string]string{"Origin": "http://gw.test"}); resp.Header.Get("Location") != "/.auth/dev/mail?sent=failed" {
		t.Errorf("failing Send: %q", resp.Header.Get("Location"))
	}
	if _, body := get(t, h, "/.auth/dev/mail?sent=failed"); !strings.Contains(body, `role="alert"`) {
		t.Error("no alert after a failed send")
	}
}

// A prefix that would make a bad route is refused.
func TestHandlerPrefix(t *testing.T) {
	s := start(t, capture.Options{})
	for _, p := range []string{"", "dev/mail", "/dev/mail/", "/a/../b", "/{x}"} {
		if _, err := s.Handler(capture.HandlerOptions{Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

// Concurrent senders each get their message kept once, with distinct ids,
// while the page is read.
func TestCaptureConcurrentSenders(t *testing.T) {
	s := start(t, capture.Options{Max: 15})
	snd := sender(t, s)
	h := handler(t, s, capture.HandlerOptions{})
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- snd.Send(context.Background(), mail.Message{To: "a@example.org", Subject: "m" + strconv.Itoa(i), Text: "x"}, "")
		}()
	}
	for range n {
		get(t, h, "/.auth/dev/mail")
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ms := s.Messages()
	seen := map[int]bool{}
	for i, m := range ms {
		if seen[m.ID] || i > 0 && m.ID >= ms[i-1].ID {
			t.Fatalf("ids not distinct and newest first: %d after %v", m.ID, ms[:i])
		}
		seen[m.ID] = true
	}
	if len(ms) != 15 || ms[0].ID != n {
		t.Errorf("kept %d, newest %d; want 15, %d", len(ms), ms[0].ID, n)
	}
}
