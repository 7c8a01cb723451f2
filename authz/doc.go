// Package authz is crmgate's identity model: the user account, its binding
// to a Dataverse contact, the validation rules of its fields and the errors
// every feature shares. It knows nothing about HTTP and imports no feature.
//
// Each feature lives in its own package below authz, declares the part of
// the account store it uses (its Store interface, which package authz/store
// satisfies for SQLite and PostgreSQL) and the small interfaces it needs from
// other features and from Dataverse:
//
//	authz/password   argon2id hashing and the password policy (a leaf)
//	authz/audit      the audit trail: every security event as a row and a log line
//	authz/outbox     durable work written with the change that caused it, delivered at least once
//	authz/lifecycle  user lifecycle events and their delivery to Dataverse actions
//	authz/binding    binding users to contacts: modes, filter templates, resolution, contact search
//	authz/profile    the user's own profile and the field sync with the bound contact
//	authz/accounts   creating and changing accounts, bindings included, and the break-glass guard
//	authz/signin     password sign-in, throttling and lockout, the Dataverse sign-in check,
//	                 contact revalidation and session revocation
//	authz/apikeys    API keys of the REST API's machine clients
//	authz/contacts   the admin console's Dataverse contacts: a filtered list, writes with the row version
//	authz/jobs       durable bulk jobs of the admin console (a lease, item by item)
//	authz/bulk       the console's bulk actions on users, as jobs over the single-user services
//	authz/oidc       OpenID Connect protocol core: discovery, code flow with PKCE, ID token checks
//	authz/wiring     builds every feature over one store, as serve and the tests do
//
// A new capability gets a package of its own in the same shape: self
// registration, invitations, one-time tokens (email confirmation, password
// reset), approval and outgoing email belong in authz/registration,
// authz/invitations, authz/tokens and authz/mail, each with its Store
// interface, wired in authz/wiring.
package authz
