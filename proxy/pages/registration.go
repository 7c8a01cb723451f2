package pages

// The pages of self-registration and email confirmation.
const (
	// PageRegister is the registration form, or in invitation mode the
	// page that asks for an invitation code; its data is RegisterData.
	PageRegister Page = "register"
	// PageRegistered tells what happens next after a registration or a
	// confirmation; its data is RegisteredData.
	PageRegistered Page = "registered"
	// PageConfirm asks to confirm an email address with a button (a GET
	// never consumes the link); its data is ConfirmData.
	PageConfirm Page = "confirm"
	// PageResend asks for a new confirmation link; its data is ResendData.
	PageResend Page = "resend"
)

// RegisterData is the data of PageRegister.
type RegisterData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// RedirectURL is echoed in a hidden field; the handler validates it again on POST.
	RedirectURL string
	// InvitationOnly shows the invitation-code form (to AuthPrefix +
	// "/invitation") instead of the registration form.
	InvitationOnly bool
	// Approval says that new accounts wait for an administrator.
	Approval bool
	// Email, FirstName and LastName pre-fill the form after an error.
	Email, FirstName, LastName string
	// LastNameRequired marks the last name required.
	LastNameRequired bool
	// MinLength is the shortest password accepted, stated in the hint.
	MinLength int
	// Fields are the extra fields, in order.
	Fields []RegisterField
	// Errors are the field errors, listed in the error summary; each
	// links to its field.
	Errors []FieldError
	// EmailError, FirstNameError, LastNameError and PasswordError are the
	// messages shown at those fields; empty shows none.
	EmailError, FirstNameError, LastNameError, PasswordError string
	// Error is a user-safe message above the form; empty shows none.
	Error string
	// SignInURL is the "Already have an account?" link.
	SignInURL string
}

// RegisterField is one extra field of PageRegister.
type RegisterField struct {
	// Name is the form field name: "field_" and the contact column.
	Name string
	// Label is the visible label.
	Label string
	// Value is the just-entered value.
	Value string
	// Autocomplete is the input's autocomplete token; empty for none.
	Autocomplete string
	// Error is this field's message; empty shows none.
	Error string
}

// FieldError is one entry of an error summary.
type FieldError struct {
	// ID is the id of the input it is about.
	ID string
	// Message is the user-safe message.
	Message string
}

// The Next values of RegisteredData.
const (
	NextCheckMail = "check_mail"
	NextSignIn    = "sign_in"
	NextPending   = "pending"
	NextSettingUp = "setting_up"
	// NextConfirmed is NextSignIn right after a confirmation.
	NextConfirmed = "confirmed"
)

// RegisteredData is the data of PageRegistered.
type RegisteredData struct {
	// Next is one of the Next* values.
	Next string
	// Email is the address a link was sent to (NextCheckMail).
	Email string
	// SignInURL is the sign-in link (with the return address when safe).
	SignInURL string
	// ResendURL is the "ask for a new link" link.
	ResendURL string
}

// ConfirmData is the data of PageConfirm.
type ConfirmData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// Token is the link's secret, echoed in a hidden field of the POST form.
	Token string
	// Error is a user-safe message (an invalid or expired link); the form
	// is then replaced by the resend link.
	Error string
	// ResendURL is the "ask for a new link" link.
	ResendURL string
}

// ResendData is the data of PageResend.
type ResendData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// Email pre-fills the address.
	Email string
	// Notice is shown after a request (the same whether or not an account
	// exists); empty shows none.
	Notice string
	// Error is a user-safe message; empty shows none.
	Error string
	// SignInURL is the "Back to sign in" link.
	SignInURL string
}
