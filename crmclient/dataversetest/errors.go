package dataversetest

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/crmgate/crmgate/crmclient/dataversetest/odata"
)

// apiError is a Dataverse-shaped error
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors)
// that one place, writeError, renders.
type apiError struct {
	status  int
	code    string
	message string
	header  http.Header // extra response headers (Retry-After, WWW-Authenticate)
}

func (e *apiError) Error() string {
	return fmt.Sprintf("dataversetest: %d %s: %s", e.status, e.code, e.message)
}

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// Error codes. Unless noted, from
// https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes.
const (
	codeObjectDoesNotExist  = "0x80040217"
	codeRecordNotFoundByKey = "0x80060891"
	// https://learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors
	codeResourceNotFound    = "0x8006088a"
	codePayloadError        = "0x80048d19"
	codeConcurrencyMismatch = "0x80060882"
	codeDuplicateRecord     = "0x80040237"
	codeNotAuthenticated    = "0x80044302"
	// InvalidArgument: known from third-party clients, not documented.
	codeInvalidArgument = "0x80040203"
	codePrivilegeDenied = "0x80040220"
	// Service protection limits: https://learn.microsoft.com/power-apps/developer/data-platform/api-limits
	codeRequestsLimit          = "0x80072322"
	codeExecutionTimeLimit     = "0x80072321"
	codeConcurrentRequestLimit = "0x80072326"
)

// recordNotFound is the 404 for a missing record. The doc sample
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api)
// uses code "" and "account With Id = ... Does Not Exist"; the live service
// answers 0x80040217 (https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes)
// and, as third parties observe, "Entity 'contact' With Id = ... Does Not
// Exist". The emulator follows the live form.
func recordNotFound(logical, id string) *apiError {
	return errf(http.StatusNotFound, codeObjectDoesNotExist, "Entity '%s' With Id = %s Does Not Exist", logical, id)
}

func segmentNotFound(segment string) *apiError {
	return errf(http.StatusNotFound, codeResourceNotFound, "Resource not found for the segment '%s'.", segment)
}

// noResource is the 404 for a wrong method on a function or action
// (https://learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors):
// code "" and this message.
func noResource(url string) *apiError {
	return errf(http.StatusNotFound, "", "No HTTP resource was found that matches the request URI '%s'.", url)
}

// methodNotAllowed is the 405 for a wrong method, e.g. PATCH on a
// collection (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors).
// The exact code and message are not documented; this uses code "" as in
// the older doc samples and the ASP.NET Web API wording (unconfirmed).
func methodNotAllowed(method string) *apiError {
	return errf(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", method)
}

// asAPIError converts any error (including the odata package's) into an
// apiError; unknown errors become 500.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if oe, ok := odataError(err); ok {
		return &apiError{status: oe.Status, code: oe.Code, message: oe.Message}
	}
	return errf(http.StatusInternalServerError, "0x80040216", "%s", err.Error())
}

func odataError(err error) (*odata.Error, bool) {
	var oe *odata.Error
	if errors.As(err, &oe) {
		return oe, true
	}
	return nil, false
}

func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	for k, vs := range ae.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	body := orderedObject{{"error", orderedObject{{"code", ae.code}, {"message", ae.message}}}}
	writeJSON(w, ae.status, body)
}
