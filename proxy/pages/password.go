package pages

// The pages of the password flows (reset, set-password link, change).
const (
	// PageReset asks for the username or email of an account to reset;
	// its data is ResetData.
	PageReset Page = "reset"
	// PageResetConfirm sets a new password from a reset or set-password
	// link; its data is ResetConfirmData.
	PageResetConfirm Page = "reset_confirm"
	// PagePassword changes the signed-in user's password (also when the
	// change is forced); its data is PasswordData.
	PagePassword Page = "password"
)

func init() {
	// The trial render of New covers these pages too.
	samples[PageReset] = ResetData{}
	samples[PageResetConfirm] = ResetConfirmData{}
	samples[PagePassword] = PasswordData{}
}

// ResetData is the data of PageReset.
type ResetData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// Login pre-fills the "Username or email" field.
	Login string
	// Sent shows the answer instead of the form: the same text whether or
	// not an account matched.
	Sent bool
	// Error is a user-safe message shown above the form; empty shows none.
	Error string
	// SignInURL is the "Back to sign in" link; empty means AuthPrefix + "/signin".
	SignInURL string
}

// ResetConfirmData is the data of PageResetConfirm.
type ResetConfirmData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// Token is the link's secret, echoed in a hidden field so that the
	// form's POST carries it; never put it in a URL or a log.
	Token string
	// Purpose is echoed in a hidden field: empty for a reset link,
	// "set_password" for a "choose your password" link.
	Purpose string
	// SetPassword titles the page "Choose your password" instead of
	// "Choose a new password".
	SetPassword bool
	// Username is the account's username, shown above the form; empty
	// leaves it out.
	Username string
	// Invalid shows that the link does not work (used, expired, revoked or
	// mistyped) and offers to ask for a new one, instead of the form.
	Invalid bool
	// Error is a user-safe message tied to the new password; empty shows none.
	Error string
	// MinLength is the password policy's minimum length, shown as a hint
	// and set as minlength; zero shows no hint.
	MinLength int
}

// PasswordData is the data of PagePassword.
type PasswordData struct {
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// RedirectURL is echoed in a hidden field; the handler validates it on POST.
	RedirectURL string
	// Username is the signed-in user's username, shown above the form.
	Username string
	// Forced says the user must change the password before going on: the
	// page says why and offers only signing out besides.
	Forced bool
	// AskCurrent shows the "Current password" field.
	AskCurrent bool
	// CurrentError and NewError are the fields' own messages; empty shows none.
	CurrentError, NewError string
	// Error is a user-safe message shown above the form; empty shows none.
	Error string
	// MinLength is the password policy's minimum length; zero shows no hint.
	MinLength int
	// ResetURL is the "Forgot your password?" link; empty shows none.
	ResetURL string
}
