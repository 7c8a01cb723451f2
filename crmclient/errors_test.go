package crmclient

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseAPIError(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantCode    string
		wantMessage string // substring
	}{
		{"documented body", 404, `{"error":{"code":"0x80040217","message":"Entity 'contact' With Id = 1 Does Not Exist"}}`, "0x80040217", "Does Not Exist"},
		{"empty code", 404, `{"error":{"code":"","message":"No HTTP resource was found"}}`, "", "No HTTP resource"},
		{"numeric code tolerated", 400, `{"error":{"code":-2147220969,"message":"x"}}`, "-2147220969", "x"},
		{"inner error only", 500, `{"error":{"code":"0x0","innererror":{"message":"boom"}}}`, "0x0", "boom"},
		{"Message form", 400, `{"Message":"legacy text"}`, "", "legacy text"},
		{"empty body", 503, ``, "", "Service Unavailable (empty error body)"},
		{"html body", 502, `<html>bad gateway</html>`, "", "Bad Gateway (error body not in the Dataverse error format)"},
		{"truncated json", 500, `{"error":{"code":"0x1"`, "", "not in the Dataverse error format"},
		{"json null error", 500, `{"error":null}`, "", "Internal Server Error"},
		{"unknown status", 599, ``, "", "unknown status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseAPIError(tt.status, []byte(tt.body))
			if e.Status != tt.status || e.Code != tt.wantCode || !strings.Contains(e.Message, tt.wantMessage) {
				t.Fatalf("got %+v, want status %d code %q message containing %q", e, tt.status, tt.wantCode, tt.wantMessage)
			}
			if !strings.HasPrefix(e.Error(), "crmclient: ") {
				t.Fatalf("Error() = %q", e.Error())
			}
		})
	}
}

func TestParseAPIErrorLongMessage(t *testing.T) {
	long := strings.Repeat("é", 2000)
	e := parseAPIError(400, []byte(`{"error":{"code":"0x1","message":"`+long+`"}}`))
	if len(e.Message) > maxErrorMessage+len("…") {
		t.Fatalf("message not truncated: %d bytes", len(e.Message))
	}
	if !strings.HasSuffix(e.Message, "…") {
		t.Fatalf("truncated message lacks ellipsis")
	}
}

func TestErrorPredicates(t *testing.T) {
	wrap := func(e error) error { return fmt.Errorf("outer: %w", e) }
	tests := []struct {
		name                          string
		err                           error
		notFound, conflict, throttled bool
	}{
		{"404", wrap(&APIError{Status: 404}), true, false, false},
		{"412", wrap(&APIError{Status: 412, Code: codeConcurrencyMismatch}), false, true, false},
		{"duplicate key under 400", wrap(&APIError{Status: 400, Code: "0x80060892"}), false, true, false},
		{"duplicate upper-case hex", &APIError{Status: 400, Code: "0x80040237"}, false, true, false},
		{"429 under ErrUnavailable", fmt.Errorf("%w: %w", ErrUnavailable, &APIError{Status: 429}), false, false, true},
		{"400", &APIError{Status: 400, Code: "0x80040203"}, false, false, false},
		{"plain error", errors.New("x"), false, false, false},
		{"nil", nil, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsNotFound(tt.err); got != tt.notFound {
				t.Errorf("IsNotFound = %v", got)
			}
			if got := IsConflict(tt.err); got != tt.conflict {
				t.Errorf("IsConflict = %v", got)
			}
			if got := IsThrottled(tt.err); got != tt.throttled {
				t.Errorf("IsThrottled = %v", got)
			}
		})
	}
}
