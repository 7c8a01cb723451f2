package proxy

import (
	"net/http"
	"testing"
)

func TestIsIdentityHeader(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"X-Current-User", true},
		{"x-current-user", true},
		{"X-CURRENT-USER", true},
		{"X_Current_User", true},
		{"x_current_user", true},
		{"X-Current_User", true},
		{"X-Current-User-Id", true},
		{"X-Current-User-Roles", true},
		{"x_current_user_roles", true},
		{"X-Current-User-Contact-Fullname", true},
		{"X-CURRENT-USER_EMAIL", true},
		{"X-Current-User-", true},
		{"X-Current-Users", false},
		{"X-Current-Userid", false},
		{"X-Current-Use", false},
		{"X-Current", false},
		{"Current-User", false},
		{"X-Forwarded-User", false},
		{"X-Current-User\x00", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isIdentityHeader(tt.name); got != tt.want {
			t.Errorf("isIdentityHeader(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStripIdentityHeaders(t *testing.T) {
	h := http.Header{
		"X-Current-User":       {"forged"},
		"X_current_user_roles": {"admin"},
		"X-Current-User-Id":    {"1", "2"},
		"x-current-user-email": {"a@b"}, // non-canonical key, as set by a raw map write
		"X-Current-Userx":      {"keep"},
		"Accept":               {"text/html"},
	}
	stripIdentityHeaders(h)
	if len(h) != 2 || h.Get("Accept") == "" || h["X-Current-Userx"] == nil {
		t.Fatalf("after strip: %v", h)
	}
	stripIdentityHeaders(nil) // nil trailer maps are fine
}

func TestHeaderValue(t *testing.T) {
	if got := headerValue("Ada\r\nSet-Cookie: x=1\x00\x7f"); got != "AdaSet-Cookie: x=1" {
		t.Fatalf("headerValue = %q", got)
	}
	if got := headerValue("Zoë Ångström"); got != "Zoë Ångström" {
		t.Fatalf("headerValue changed UTF-8: %q", got)
	}
}

func TestRemoveCookies(t *testing.T) {
	tests := []struct{ in, want string }{
		{"crmgate_session=abc; theme=dark", "theme=dark"},
		{"theme=dark; crmgate_session=abc; crmgate_session_csrf=x; PHPSESSID=42", "theme=dark; PHPSESSID=42"},
		{"crmgate_session=abc", ""},
		{"a=1;b=2", "a=1; b=2"},
		{"crmgate_sessionx=keep", "crmgate_sessionx=keep"},
	}
	for _, tt := range tests {
		h := http.Header{"Cookie": {tt.in}}
		removeCookies(h, []string{"crmgate_session", "crmgate_session_csrf"})
		if got := h.Get("Cookie"); got != tt.want {
			t.Errorf("removeCookies(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
