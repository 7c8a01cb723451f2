package pages

// PageInvitation redeems an invitation code; its data is InvitationData.
const PageInvitation Page = "invitation"

// The states of PageInvitation.
const (
	// InvitationEnterCode asks for a code (none given, or a refused one).
	InvitationEnterCode = "enter_code"
	// InvitationRegister offers to create the account.
	InvitationRegister = "register"
	// InvitationExisting tells a person who already has an account to
	// sign in and take the invitation there.
	InvitationExisting = "existing"
	// InvitationLink asks the signed-in person to confirm taking the
	// invitation with their account.
	InvitationLink = "link"
	// InvitationDone says the account is ready (or the invitation taken).
	InvitationDone = "done"
	// InvitationPending says a confirmation link was mailed.
	InvitationPending = "pending"
	// InvitationConfirm asks to confirm, from the mailed link, that the
	// account may be made (a GET never makes it).
	InvitationConfirm = "confirm"
)

// InvitationData is the data of PageInvitation.
type InvitationData struct {
	// State is one of the Invitation* states; empty means InvitationEnterCode.
	State string
	// CSRFToken is echoed in a hidden field.
	CSRFToken string
	// Code is echoed in a hidden field of the forms (never shown).
	Code string
	// Token is the confirmation link's secret, echoed in a hidden field.
	Token string
	// Email is the invited address as shown (masked for a Dataverse
	// invitation); empty with AskEmail.
	Email string
	// AskEmail adds an email field (the invitation names no address).
	AskEmail bool
	// EnteredEmail and Username pre-fill the fields after a failed attempt.
	EnteredEmail string
	Username     string
	// Name is the invitation's or invited person's name; empty shows none.
	Name string
	// NeedsProof says a confirmation will be mailed before the account is made.
	NeedsProof bool
	// PasswordHint describes the password rule.
	PasswordHint string
	// SignedInAs is the signed-in user's name (InvitationLink, InvitationDone).
	SignedInAs string
	// SignInURL is the sign-in link (InvitationExisting, InvitationDone);
	// the handler passes a validated address only.
	SignInURL string
	// ContinueURL is where to go on (InvitationDone); validated; empty
	// means the home URL.
	ContinueURL string
	// Error is a user-safe message above the form; FieldErrors are by field
	// name (username, password, password_confirm, email). Never internal
	// error text.
	Error       string
	FieldErrors map[string]string
	// Notice is an informational message.
	Notice string
}

func init() {
	samples[PageInvitation] = InvitationData{State: InvitationRegister, AskEmail: true, FieldErrors: map[string]string{"username": "x"}}
}
