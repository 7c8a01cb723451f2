package authz

import "time"

// SessionChanges is what changed about sessions in a window of time, on
// any replica: the sessions signed out, and the users whose account
// changed (status, security stamp, roles, names: anything a session's
// stamp check reads).
type SessionChanges struct {
	Revoked []RevokedSession
	// Users are the ids of the users changed, with when.
	Users []UserChange
	// Contacts are the Dataverse contacts reported changed (by the
	// Dataverse webhook), with when: the sessions bound to one revalidate
	// their contact at their next request, or end when it was deleted.
	Contacts []ContactChange
	// Truncated is set when the window held more changes than one answer
	// carries; the rest are honoured at the sessions' next stamp check.
	Truncated bool
}

// RevokedSession is one signed-out session.
type RevokedSession struct {
	ID        string
	ExpiresAt time.Time
}

// UserChange is one account change.
type UserChange struct {
	UserID string
	At     time.Time
}

// ContactChange is one Dataverse contact reported changed.
type ContactChange struct {
	ContactID string // lower-case GUID
	At        time.Time
	// Deleted says the change was the contact's deletion.
	Deleted bool
}
