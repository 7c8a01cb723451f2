package oidc

import (
	"errors"
	"fmt"
)

// Errors Finish returns; match them with errors.Is (ErrProviderError and
// VerifyError with errors.As). Each Error() text is safe to show to the
// person signing in: it never carries a token, a code or a secret. The
// details worth logging are written to the Provider's logger when the error
// is returned.
var (
	// ErrState means the callback's state parameter is missing or differs
	// from the one stored in the flow (a forged or crossed callback, login
	// CSRF, or a flow cookie from another attempt), or the flow was started
	// at another provider (a mix-up between providers).
	ErrState = errors.New("oidc: the sign-in attempt does not match this browser; start again")
	// ErrNonce means the ID token's nonce differs from the flow's: a
	// replayed or substituted ID token.
	ErrNonce = errors.New("oidc: the identity provider's answer does not belong to this sign-in attempt; start again")
	// ErrExpiredFlow means the flow is older than the provider's MaxFlowAge,
	// or was issued more than ClockSkew in the future.
	ErrExpiredFlow = errors.New("oidc: the sign-in attempt expired; start again")
	// ErrDomain means the email's domain is not in the provider's
	// AllowedEmailDomains.
	ErrDomain = errors.New("oidc: accounts of this email domain may not sign in here")
	// ErrUnverifiedEmail means AllowedEmailDomains is set and the
	// provider did not assert email_verified=true (or gave no email).
	ErrUnverifiedEmail = errors.New("oidc: the identity provider did not confirm this account's email address")
	// ErrVerify is matched (errors.Is) by every *VerifyError.
	ErrVerify = errors.New("oidc: the identity provider's token could not be verified")
	// ErrExchange means the code could not be exchanged at the token
	// endpoint (a network failure, or the OP refused the code or the PKCE
	// verifier).
	ErrExchange = errors.New("oidc: the identity provider did not complete the sign-in; try again")
)

// ProviderError is an error answer from the OP at the callback (the error
// and error_description parameters, RFC 6749 section 4.1.2.1), such as
// access_denied when the person declined. Code is one of the RFC's codes as
// the OP sent it; Description is the OP's text, which the OP controls: show
// it escaped, if at all.
type ProviderError struct {
	Code        string
	Description string
}

// Error implements error; it names the code only.
func (e *ProviderError) Error() string {
	if e.Code == "access_denied" {
		return "oidc: sign-in was declined at the identity provider"
	}
	return "oidc: the identity provider refused the sign-in (" + e.Code + ")"
}

// VerifyError wraps the reason an ID token or access token was refused
// (go-oidc's error, or one of the checks this package adds). Error() is
// user-safe; Unwrap gives the detail for logs, and errors.Is(err, ErrVerify)
// holds.
type VerifyError struct {
	Err error
}

// Error implements error.
func (e *VerifyError) Error() string { return ErrVerify.Error() }

// Unwrap returns the underlying reason.
func (e *VerifyError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrVerify) true.
func (e *VerifyError) Is(target error) bool { return target == ErrVerify }

func verifyErr(format string, a ...any) error {
	return &VerifyError{Err: fmt.Errorf(format, a...)}
}
