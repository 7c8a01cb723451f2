package audit

// The event types of administrator approval and of generated credentials
// (package authz/onboarding).
const (
	// EventUserApproved: a pending registration was approved; the account
	// is active.
	EventUserApproved = "user.approved"
	// EventUserRejected: a pending registration was rejected and its
	// account deleted; Detail is "reason given" or "no reason" (never the
	// reason's text, which went to the user).
	EventUserRejected = "user.rejected"
	// EventCredentialsCreated: an account was created for a contact and a
	// set-password link mailed; Detail is "contact <id>".
	EventCredentialsCreated = "credentials.created"
	// EventCredentialsSkipped: a contact given to invite-contacts got no
	// account; Detail is "contact <id> <reason>" with an onboarding.Reason*
	// code.
	EventCredentialsSkipped = "credentials.skipped"
)
