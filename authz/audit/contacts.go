package audit

// The event types of the admin console's contact management (package
// authz/contacts). Detail is "contact <id>" followed by the columns
// written ("columns firstname,emailaddress1"), never their values.
const (
	// EventContactCreated: a Dataverse contact was created.
	EventContactCreated = "contact.created"
	// EventContactUpdated: columns of a Dataverse contact were written.
	EventContactUpdated = "contact.updated"
	// EventContactDeleted: a Dataverse contact was deleted.
	EventContactDeleted = "contact.deleted"
)
