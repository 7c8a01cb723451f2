package outbox

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/crmgate/crmgate/authz"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		payload, domain string
	}{
		{`{"to":"Ana <ana@Mail.Example.org>","text":"https://gw/x?token=s3cret"}`, "mail.example.org"},
		{`{"to":"bob@example.com"}`, "example.com"},
		{`{"to":"no address"}`, ""},
		{`{"to":"x@bad domain"}`, ""},
		{`{"email":"ana@example.com"}`, ""}, // only a mail message's "to"
		{`not json`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		s := summarize(json.RawMessage(tt.payload))
		if s.RecipientDomain != tt.domain || s.Bytes != len(tt.payload) {
			t.Errorf("summarize(%s) = %+v, want domain %q and %d bytes", tt.payload, s, tt.domain, len(tt.payload))
		}
	}
}

func TestNotFailedError(t *testing.T) {
	for _, st := range []State{StatePending, StateDelivered, StateUnknown} {
		err := error(&NotFailedError{ID: 7, State: st})
		if !errors.Is(err, ErrNotFailed) || errors.Is(err, authz.ErrNotFound) != (st == StateUnknown) || err.Error() == "" {
			t.Errorf("%s: %v", st, err)
		}
	}
}
