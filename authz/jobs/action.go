package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/crmgate/crmgate/authz"
)

// Action is one kind of bulk action, registered by name in
// Options.Actions. It must be safe for concurrent use.
type Action interface {
	// Validate checks a job's params at submit, before anything is
	// stored. It returns a *authz.ValidationError (naming the field) for
	// bad params; Submit passes it on to the submitter.
	Validate(params json.RawMessage) error
	// Run applies the action to one target user as actor. It may run twice
	// for one target (see the package doc), so applying it again must do
	// no harm. ctx ends with the worker's lease or when the worker stops.
	// The error becomes the item's failure: see Fail for what the operator
	// is shown.
	Run(ctx context.Context, target string, params json.RawMessage, actor string) error
}

// Funcs is an Action made of two functions.
type Funcs struct {
	// Check validates params; nil accepts only "{}" (the params of a
	// submit without any).
	Check func(params json.RawMessage) error
	// Do runs the action on one target; it must not be nil.
	Do func(ctx context.Context, target string, params json.RawMessage, actor string) error
}

// Validate implements Action.
func (f Funcs) Validate(params json.RawMessage) error {
	if f.Check == nil {
		return NoParams(params)
	}
	return f.Check(params)
}

// Run implements Action.
func (f Funcs) Run(ctx context.Context, target string, params json.RawMessage, actor string) error {
	return f.Do(ctx, target, params, actor)
}

// NoParams is the Validate of an action without parameters: it accepts "{}"
// and "null" only.
func NoParams(params json.RawMessage) error {
	if s := strings.TrimSpace(string(params)); s != "{}" && s != "null" {
		return &authz.ValidationError{Field: "params", Message: "This action takes no parameters."}
	}
	return nil
}

// Failure codes of items. Actions may use their own codes with Fail.
const (
	CodeInvalid     = "invalid"     // the action refused the user's data (a *authz.ValidationError)
	CodeNotFound    = "not_found"   // the user no longer exists
	CodeConflict    = "conflict"    // username or email already in use
	CodeStale       = "stale"       // the user changed meanwhile
	CodeBreakGlass  = "break_glass" // the last break-glass administrator is kept
	CodeUnavailable = "unavailable" // the store or Dataverse did not answer
	CodeTimeout     = "timeout"     // the action outlasted the worker's lease
	CodeInternal    = "internal"    // anything else; the log has the error, with the job id
)

// ItemError is an action's failure with a code and a message written for
// the operator. Build it with Fail.
type ItemError struct {
	// Code is machine-readable, e.g. "not_bound"; empty reads as
	// CodeInternal.
	Code string
	// Message is shown to the operator as the item's reason; it must hold
	// no secret.
	Message string
	// Err is the underlying error, logged, never shown; may be nil.
	Err error
}

// Error implements error.
func (e *ItemError) Error() string {
	if e.Err == nil {
		return "jobs: " + e.Message
	}
	return "jobs: " + e.Message + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ItemError) Unwrap() error { return e.Err }

// Fail returns an error an Action's Run answers for a target it cannot
// act on: the item fails with code and message (shown to the operator),
// and err (may be nil) is logged.
func Fail(code, message string, err error) error {
	return &ItemError{Code: code, Message: message, Err: err}
}

// Outcome maps an action's error to an item's code and message, and says
// whether the error is one the operator is shown in full (expected) or an
// internal one that only the log explains:
//
//   - an *ItemError (see Fail): its code and message;
//   - a *authz.ValidationError: CodeInvalid and its Message;
//   - authz.ErrNotFound, ErrConflict, ErrStale, ErrLastBreakGlassAdmin,
//     ErrStoreUnavailable: a code and a sentence of their own;
//   - context.DeadlineExceeded: CodeTimeout;
//   - anything else: CodeInternal and a generic sentence.
func Outcome(err error) (code, message string, expected bool) {
	var ie *ItemError
	var ve *authz.ValidationError
	switch {
	case errors.As(err, &ie):
		code = ie.Code
		if code == "" {
			code = CodeInternal
		}
		return code, cut(ie.Message), true
	case errors.As(err, &ve):
		return CodeInvalid, cut(ve.Message), true
	case errors.Is(err, authz.ErrNotFound):
		return CodeNotFound, "The user no longer exists.", true
	case errors.Is(err, authz.ErrConflict):
		return CodeConflict, "Another user has the same username or email.", true
	case errors.Is(err, authz.ErrStale):
		return CodeStale, "The user was changed at the same time; try again.", true
	case errors.Is(err, authz.ErrLastBreakGlassAdmin):
		return CodeBreakGlass, "Refused: this is the last active unbound administrator (the break-glass account).", true
	case errors.Is(err, authz.ErrStoreUnavailable):
		return CodeUnavailable, "The account store did not answer; try again later.", false
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout, "The action took too long and was stopped.", false
	}
	return CodeInternal, "The action failed unexpectedly; the server log has the details.", false
}

// cut bounds an item message to MaxMessageLen bytes without splitting a
// UTF-8 sequence.
func cut(s string) string {
	if len(s) <= MaxMessageLen {
		return s
	}
	return strings.ToValidUTF8(s[:MaxMessageLen], "")
}
