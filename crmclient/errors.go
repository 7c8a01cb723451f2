package crmclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// ErrUnavailable reports that Dataverse cannot serve the call now: the
// circuit breaker is open, or retries on an outage (5xx, 408, connection
// errors, timeouts) or on throttling (429) were exhausted. Errors that wrap
// it may also wrap the last *APIError, so IsThrottled still tells a 429 from
// an outage. Callers fail closed or show a "server busy" page; they must not
// retry at once.
var ErrUnavailable = errors.New("crmclient: dataverse unavailable")

// maxErrorMessage bounds the message kept from an error body, so a huge or
// hostile body cannot flood logs.
const maxErrorMessage = 1024

// APIError is an error answer of the Dataverse Web API
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors):
// any status of 400 or more, with the code and message of its body.
//
// Message is Dataverse's text, meant for logs; it can name entities, ids
// and plug-in traces, so it must not be shown to end users as is.
type APIError struct {
	// Status is the HTTP status code, always set.
	Status int
	// Code is error.code of the body: a hex HRESULT such as "0x80040217",
	// unrelated to Status. It is empty when the body has none (Dataverse
	// also sends "" and "0x0").
	Code string
	// Message is error.message of the body, or a description written by
	// this package when the body is empty or unreadable; never empty.
	Message string
}

// Error returns the status, code and message on one line.
func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("crmclient: dataverse status %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("crmclient: dataverse status %d (%s): %s", e.Status, e.Code, e.Message)
}

// Dataverse error codes that mean "this record already exists"
// (https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes).
// Their HTTP status is 412 in the docs, but the status of alternate-key
// violations is unconfirmed (it may be 400 on some paths), so IsConflict
// looks at the code as well.
const (
	codeDuplicateRecord          = "0x80040237"
	codeDuplicateRecordEntityKey = "0x80060892"
	codeDuplicateRecordsFound    = "0x80040333"
	codeConcurrencyMismatch      = "0x80060882"
)

// IsNotFound reports whether err is or wraps a 404 answer (record, key or
// resource not found).
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// IsConflict reports whether err is or wraps a 412 answer (an If-Match
// version mismatch, or a duplicate on create) or a duplicate-record error
// code under any status.
func IsConflict(err error) bool {
	var e *APIError
	if !errors.As(err, &e) {
		return false
	}
	if e.Status == http.StatusPreconditionFailed {
		return true
	}
	switch strings.ToLower(e.Code) {
	case codeDuplicateRecord, codeDuplicateRecordEntityKey, codeDuplicateRecordsFound, codeConcurrencyMismatch:
		return true
	}
	return false
}

// IsThrottled reports whether err is or wraps a 429 answer of the service
// protection limits
// (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits),
// including the case where this client gave up waiting because the
// Retry-After did not fit the retry budget.
func IsThrottled(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusTooManyRequests
}

// parseAPIError builds the *APIError for an answer with the given status
// and body. It accepts the documented {"error":{"code","message"}} body and
// the {"Message":"..."} form some endpoints send; any other body, including
// an empty or malformed one, keeps the status and gets a message of its own.
func parseAPIError(status int, body []byte) *APIError {
	e := &APIError{Status: status}
	var doc struct {
		Error *struct {
			Code       json.RawMessage `json:"code"`
			Message    string          `json:"message"`
			InnerError *struct {
				Message string `json:"message"`
			} `json:"innererror"`
		} `json:"error"`
		Message string `json:"Message"`
	}
	if len(body) > 0 && json.Unmarshal(body, &doc) == nil {
		switch {
		case doc.Error != nil:
			e.Code = rawCode(doc.Error.Code)
			e.Message = doc.Error.Message
			if e.Message == "" && doc.Error.InnerError != nil {
				e.Message = doc.Error.InnerError.Message
			}
		case doc.Message != "":
			e.Message = doc.Message
		}
	}
	e.Message = truncate(strings.TrimSpace(e.Message), maxErrorMessage)
	if e.Message == "" {
		text := http.StatusText(status)
		if text == "" {
			text = "unknown status"
		}
		if len(body) == 0 {
			e.Message = text + " (empty error body)"
		} else {
			e.Message = text + " (error body not in the Dataverse error format)"
		}
	}
	return e
}

// rawCode returns error.code as text; the docs give a string, but a number
// is tolerated rather than dropped.
func rawCode(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return truncate(s, 64)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// truncate shortens s to at most n bytes without splitting a UTF-8
// sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
