package mail_test

import (
	"encoding/json"
	"errors"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/mail"
)

// hostileAddresses are addresses that must never reach a header: header
// and recipient injection, several addresses, control characters, no
// address at all.
var hostileAddresses = []string{
	"",
	"ana",
	"ana@",
	"@example.com",
	"ana@example.com\r\nBcc: eve@evil.test",
	"ana@example.com\nBcc: eve@evil.test",
	"ana@example.com\rBcc: eve@evil.test",
	"Ana\r\n <ana@example.com>",
	"ana@example.com, eve@evil.test",
	"ana@example.com; eve@evil.test",
	"Ana <ana@example.com>, Eve <eve@evil.test>",
	"ana@example.com\x00",
	"ana@exa\tmple.com",
	"ana@example.com\u2028Bcc: eve@evil.test",
	"ana@example.com\x85",
	"=?utf-8?q?x=0D=0ABcc:_eve@evil.test?= <ana@example.com>\r\n",
	"<ana@example.com",
	"ana@example.com>",
	"\xff@example.com",
	strings.Repeat("a", 320) + "@example.com",
	"undisclosed-recipients:;",
	"group: ana@example.com;",
}

func TestValidateRefuses(t *testing.T) {
	for _, to := range hostileAddresses {
		m := msg()
		m.To = to
		if err := m.Validate(); !errors.Is(err, mail.ErrInvalid) {
			t.Errorf("To %q: Validate = %v", to, err)
		} else if to != "" && strings.Contains(err.Error(), to) {
			t.Errorf("To %q: the error repeats the address: %v", to, err)
		}
		if _, err := mail.NewEvent("confirm", "u1", m, time.Time{}); err == nil {
			t.Errorf("To %q: NewEvent accepted", to)
		}
	}
	for _, subj := range []string{"", "Hi\r\nBcc: eve@evil.test", "Hi\nX: y", "Hi\rX", "a\x00", "a\x1b[31m", "a\u2029b", "\xff", strings.Repeat("s", mail.MaxSubject+1)} {
		m := msg()
		m.Subject = subj
		if err := m.Validate(); !errors.Is(err, mail.ErrInvalid) {
			t.Errorf("Subject %q: Validate = %v", subj, err)
		}
	}
	for _, m := range []mail.Message{
		{To: "a@example.com", Subject: "s"},
		{To: "a@example.com", Subject: "s", Text: "\xff"},
		{To: "a@example.com", Subject: "s", Text: "t", HTML: "\xfe"},
		{To: "a@example.com", Subject: "s", Text: strings.Repeat("x", mail.MaxBody+1)},
	} {
		if err := m.Validate(); !errors.Is(err, mail.ErrInvalid) {
			t.Errorf("%.40q: Validate = %v", m.Text, err)
		}
	}
	for _, typ := range []string{"", "Confirm", "a b", "a@example.com", "x\n", strings.Repeat("a", mail.MaxType+1), "ä"} {
		if _, err := mail.NewEvent(typ, "u1", msg(), time.Time{}); err == nil {
			t.Errorf("type %q accepted", typ)
		}
	}
}

func TestNewEvent(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, to := range []string{"ana@example.org", "Ana <ana@example.org>", "\"Ana, Jr.\" <ana@example.org>", "José <jose@例え.jp>"} {
		m := msg()
		m.To = to
		e, err := mail.NewEvent("confirm", "u1", m, at)
		if err != nil {
			t.Fatalf("NewEvent(%q): %v", to, err)
		}
		var back mail.Message
		if e.Kind != mail.Kind || e.Type != "confirm" || e.UserID != "u1" || !e.CreatedAt.Equal(at) ||
			json.Unmarshal(e.Payload, &back) != nil || back != m {
			t.Errorf("event = %+v", e)
		}
	}
}

// FuzzValidAddress: whatever ValidAddress accepts is one address without
// line breaks or control characters, so it cannot add a header or recipient.
func FuzzValidAddress(f *testing.F) {
	for _, s := range append([]string{"ana@example.org", "Ana <ana@example.org>", "\"A, B\" <a@b.c>"}, hostileAddresses...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if mail.ValidAddress(s) != nil {
			return
		}
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("accepted %q with a line break", s)
		}
		list, err := netmail.ParseAddressList(s)
		if err != nil || len(list) != 1 {
			t.Fatalf("accepted %q: %d addresses, %v", s, len(list), err)
		}
	})
}
