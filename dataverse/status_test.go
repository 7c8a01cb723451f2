package dataverse

import (
	"strings"
	"testing"
)

func TestSafeMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Service Unavailable", "Service Unavailable"},
		{"contact With Id = 0f8fad5b-d9cb-469f-a165-70867728950e Does Not Exist", "contact With Id = <id> Does Not Exist"},
		{"The value 'ana@example.com' of emailaddress1 is taken", "The value '<email>' of emailaddress1 is taken"},
		{"mail to Ana <ana.b+x@mail.example.org> refused", "mail to Ana <<email>> refused"},
		{"Could not find a property named 'new_foo' on type 'Microsoft.Dynamics.CRM.contact'", "Could not find a property named 'new_foo' on type '…'"},
		{`Invalid value "Ana Smith" for firstname`, `Invalid value "…" for firstname`},
		{"Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl failed", "Authorization: Bearer <redacted> failed"},
		{"key abcdefghijklmnopqrstuvwxyz0123456789ABCD leaked", "key <redacted> leaked"},
		{"call 5551234567 or code 0x80040217", "call <number> or code 0x80040217"},
		{"line1\nline2\x00", "line1 line2"},
	}
	for _, tt := range tests {
		if got := SafeMessage(tt.in, 0); got != tt.want {
			t.Errorf("SafeMessage(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := strings.Repeat("word ", 100)
	if got := SafeMessage(long, 20); len(got) > 20+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("SafeMessage(long, 20) = %q", got)
	}
	if got := SafeMessage(strings.Repeat("é", 300), 0); !strings.HasSuffix(got, "…") || len(got) > MaxStatusMessage+len("…") {
		t.Errorf("SafeMessage(é…) = %q", got)
	}
}
