// Package policies holds crmgate's route rules: a YAML policy file compiled
// once at start-up (LoadFile, Parse), the canonical forms of request paths and
// hosts that rules are matched on (CanonicalPath, CanonicalHost), and the
// access decision for a matched route (Route.Decide).
//
// # Using it
//
// For each request, in this order:
//
//  1. path, err := CanonicalPath(r.URL.EscapedPath()); on error answer 400
//     (errors.Is(err, ErrAmbiguousPath)). host, err := CanonicalHost(r.Host)
//     likewise (ErrInvalidHost).
//  2. route := policy.Route(host, r.Method, path); nil means deny (403).
//  3. switch route.Decide(subject, RequestInfo{r.Method, host, path}):
//     Allow proxies, Unauthenticated sends the user to sign in, Forbidden is 403.
//     subject carries the bound contact, if any (Subject.Contact), with the
//     columns named by policy.ContactColumns, fetched once at sign-in.
//  4. up := policy.Upstream(host, path) picks where to proxy; the outgoing URL
//     path is up.URL's base path joined with the canonical path (never the
//     original escaped path), and the JWT audience is route.AudienceFor(up).
//     The JWT's contact.columns claim and the X-Current-User-Contact-* headers
//     carry only route.ContactHeaders (see Contact columns).
//
// # The policy file
//
// The file is named by CRMGATE_POLICY_FILE. It has four top-level sections:
// upstreams, routes, the optional dataverse (see Dataverse lifecycle
// actions) and the optional permissions (see Permissions). Decoding is strict: an unknown or
// repeated field is an error, and every error names the file, the line and the
// reason, for example "policies: policy.yaml:12: routes[2].access: "admin"
// must be public, authenticated, bound or deny". All problems are reported at once.
//
//	upstreams:                       # optional; where allowed requests are proxied
//	  - name: app                    # required, unique
//	    url: http://127.0.0.1:8080   # required, http or https, no query, fragment or credentials; may have a base path
//	    hosts: [app.example.com]     # optional; empty = any host
//	    path_prefix: /               # optional, default "/"; no trailing slash otherwise
//	    audience: https://app.example.com  # optional; default the url's origin (scheme://host[:port])
//	routes:                          # required, at least one; ordered, the first matching route decides
//	  - name: home                   # required, unique; letters, digits, '_', '-', '.'; used as a metrics label
//	    hosts: [app.example.com, "*.example.com"]  # optional; empty = any host
//	    paths: ["/", "/public/**", "/about"]        # required; see path patterns
//	    methods: [GET, HEAD]         # optional; default any method
//	    access: public               # required: public | authenticated | bound | deny
//	    roles: [admin]               # optional, only with authenticated or bound: the user must hold at least one
//	    condition: 'user.email.endsWith("@example.com")'  # optional CEL, only with authenticated or bound; must be a bool
//	    audience: https://api.example.com  # optional; overrides the upstream's audience in the JWT
//	    contact_columns: [fullname, emailaddress1]  # optional, not with deny; contact columns sent upstream, default none
//	    cross_origin: refuse         # optional: refuse (default) | allow, allow only with public; see Cross-origin requests
//
// Requests that match no route are denied.
//
// # Cross-origin requests
//
// The gateway refuses state-changing requests (POST, PUT, DELETE, ...) that a
// browser says came from another site (Sec-Fetch-Site, Origin; see
// net/http.CrossOriginProtection) before any route decides. A public route
// with "cross_origin: allow" lets them through, for legacy pages that receive
// other sites' POST callbacks (payment return pages, SAML assertion
// consumers). Such a request is proxied as anonymous: it never carries the
// signed-in user's identity headers, so another site cannot make the upstream
// act for the user. Other access kinds refuse the option when the file is
// loaded.
//
// An upstream is chosen by host first, the most specific match winning (an
// exact name, then a wildcard, then an upstream without hosts), and then by
// the longest path_prefix that
// matches the canonical path on a segment boundary ("/api" matches "/api" and
// "/api/x", never "/apix"); on a tie the first in the file wins. Route and
// upstream choice are independent: a route decides, an upstream serves.
//
// # Hosts
//
// Host patterns are exact names ("app.example.com") or a wildcard of exactly
// one label ("*.example.com" matches "a.example.com", not "example.com" nor
// "a.b.example.com"). They are written in canonical form: lowercase, no port,
// no trailing dot; IP addresses without brackets. Requests are matched on
// CanonicalHost of their Host header, so the port never matters.
//
// # Path patterns
//
// Patterns are written decoded ("/über", not "/%C3%BCber") and must already be
// canonical (no "//", ".", "..", ";", backslash or control characters); the
// loader says what to write instead.
//
//   - "/about" matches exactly "/about". A trailing slash is significant:
//     "/about" does not match "/about/".
//   - "/public/**" matches "/public", "/public/" and everything below, on
//     segment boundaries: never "/publicity". "/**" matches every path.
//   - "/files/*" matches exactly one non-empty segment: "/files/a", but not
//     "/files", "/files/", "/files/a/" or "/files/a/b". "/files/*/" matches
//     "/files/a/".
//
// "*" and "**" are only allowed as whole segments, and "**" only as the last.
//
// # Methods
//
// Methods are compared ignoring case, because some frameworks upper-case the
// method before routing ("delete" reaches their DELETE handler). HEAD is not
// implied by GET: list it.
//
// # Access
//
// public allows everyone. deny forbids everyone (it takes neither roles nor a
// condition: put an authenticated route with the condition before it).
// authenticated needs a signed-in user: anonymous users are sent to sign in,
// even when the route has a condition; then the user must hold one of the
// roles, if listed, and the condition, if any, must be true. A condition that
// fails at run time (an index out of range, a missing contact column, the
// cost limit) forbids.
//
// bound is authenticated for users bound to a Dataverse contact: anonymous
// users are sent to sign in, signed-in users without a contact are forbidden,
// then roles and condition apply as for authenticated:
//
//	routes:
//	  - name: partners
//	    paths: ["/partners/**"]
//	    access: bound
//	    roles: [Partners]            # a local role or a web role of the contact
//	    condition: 'contact.columns._parentcustomerid_value == "0d5e2c1a-0000-0000-0000-000000000001"'
//	    contact_columns: [fullname, _parentcustomerid_value]
//
// # Contact columns
//
// A route's contact_columns is its allow-list of the bound contact's columns
// (data minimisation: an upstream gets only the columns its route lists).
// Each is a Dataverse logical name: 1 to 128 lowercase ASCII letters, digits
// and '_', not starting with a digit, e.g. "fullname" or the lookup value
// "_parentcustomerid_value". For a bound user, each listed column goes into
// the JWT's contact.columns claim under its logical name and into a header
// named by ContactHeaderName: "X-Current-User-Contact-" followed by the
// column's '_'-separated parts, empty parts dropped, each with its first
// letter upper-cased, joined by '-':
//
//	fullname                  X-Current-User-Contact-Fullname
//	emailaddress1             X-Current-User-Contact-Emailaddress1
//	_parentcustomerid_value   X-Current-User-Contact-Parentcustomerid-Value
//	adx_identity_username     X-Current-User-Contact-Adx-Identity-Username
//
// Headers never hold '_' (many proxies drop such headers, and client copies
// are stripped with '_' folded to '-'). Within a route, two columns that map
// to the same header ("new_tier", "_new_tier") are a load error, as is a
// column that maps to X-Current-User-Contact-Id ("id", "_id"), which always
// carries the contact's id. Repeated columns are a load error too.
//
// Policy.ContactColumns is what the gateway fetches once per sign-in: every
// route's contact_columns and every column a condition names literally.
//
// # Conditions
//
// Conditions are CEL (https://cel.dev) with the standard library and the
// strings extension (lowerAscii, split, ...), type-checked when the file is
// loaded: a misspelt field ("user.emial", "contact.colums") is a load error.
// Variables:
//
//	user.id, user.username, user.email, user.name, user.auth_method   string
//	user.email_verified, user.authenticated, user.bound                bool
//	user.roles                                                         list(string)
//	request.method, request.host, request.path                         string
//	contact.id, contact.logicalname, contact.name                      string
//	contact.columns                                                    map(string, dyn)
//
// user.email is lower-cased. request.host and request.path are canonical.
// Conditions are only evaluated for signed-in users, so user.authenticated is
// always true there. A condition that trusts the email's domain should also
// test user.email_verified:
//
//	condition: 'user.email_verified && user.email.endsWith("@example.com")'
//
// user.roles holds the user's local roles and, when bound, the names of the
// contact's web roles:
//
//	condition: '"Partners" in user.roles'
//
// user.bound is true when the user is bound to a contact. contact is that
// contact; for an unbound user it is empty: its strings are "" and
// contact.columns has no entries. contact.columns holds the fetched columns
// (see Contact columns) by logical name, as decoded from Dataverse's JSON:
// strings, doubles (numbers), bools and null. Reading a column that is not
// there is a run-time error, so the route forbids (it fails closed), which
// is what happens to an unbound user on an authenticated route:
//
//	condition: 'contact.columns.parentcustomerid == "acc-1"'   # unbound: forbidden
//
// Test presence with has(), which is never an error:
//
//	condition: '!user.bound || (has(contact.columns.emailaddress1) && contact.columns.emailaddress1.endsWith("@example.com"))'
//
// Columns a condition names literally (contact.columns.x, has(contact.columns.x),
// contact.columns["x"], "x" in contact.columns) must be valid logical names
// and are fetched at sign-in; a computed key or a comprehension over the map
// sees only the columns fetched for other reasons. A condition may read any
// fetched column, not only those in its route's contact_columns: conditions
// run in the gateway, and contact_columns limits only what goes upstream.
//
// # Dataverse lifecycle actions
//
// The optional dataverse section names the Dataverse unbound action (custom
// API) the gateway calls when a user is created, updated (password, roles or
// status), deleted, bound to a contact or unbound, and when a visitor
// registered (registered, after created). Events go through the
// gateway's durable outbox: they are delivered at least once, in order per
// user, retried until Dataverse takes them, and never lost across restarts,
// so an action must tolerate a repeated call (event_id is the same on
// every repetition). The connection itself is configured with the
// CRMGATE_DATAVERSE_* environment variables; without them nothing is sent.
//
//	dataverse:
//	  lifecycle_actions:             # optional; an event not listed sends nothing
//	    created:                     # created | updated | deleted | bound | unbound | approved | rejected | registered
//	      name: alex_WPUserCreated   # required; the action's unique name
//	      params: {UserId: id, Email: email, Roles: roles}   # parameter name: event field
//	    deleted:
//	      name: alex_WPUserDeleted
//	      params: {UserId: id, ContactId: contact_id}
//
// Event fields (LifecycleFields): id, username, email, first_name, last_name,
// display_name, roles (comma-separated), status (pending, active, disabled),
// contact_id (left out when the user is not bound), binding_mode, event_id,
// event_type (e.g. user.created) and occurred_at (RFC 3339, UTC). Every value
// is sent as a string. A deleted event carries the user as it was just
// before the deletion. approved and rejected are an administrator's decision
// on a pending registration; a rejected event carries the user as it was
// just before its account was deleted.
//
// The section also holds two contact filter templates, kept here as text
// (Dataverse.BindingFilter, Dataverse.SignInFilter) and parsed by the
// gateway at start-up, which reports a bad one with its file and line:
//
//	dataverse:
//	  binding_filter: emailaddress1 eq {email}        # custom bindings
//	  signin_filter: adx_portalaccess eq true          # also required at sign-in
//
// binding_filter is the filter of the custom binding mode: the contact a
// custom-bound user is bound to is the single active one it matches. It
// must name a user field ({username}, {email}, {first_name}, {last_name},
// {id}), or every user would get the same contact, and it is required when
// CRMGATE_BINDING_DEFAULT_MODE is custom. signin_filter must also match the
// bound contact when CRMGATE_SIGNIN_DATAVERSE_CHECK is on. The grammar is
// terms "column eq|ne value" joined with "and"; a value is a {field}, a
// 'quoted string', an integer, true, false or null.
//
// # Console
//
// The optional console section configures the admin console's pages; its
// contacts part (Console.Contacts) selects the Dataverse contacts the
// console manages and the columns it shows:
//
//	console:
//	  contacts:
//	    filter: adx_organizationname eq 'Contoso' and statecode eq 0
//	    company_column: adx_organizationname
//	    columns: [jobtitle, telephone1]
//
// filter has the grammar of binding_filter without placeholders and is
// parsed, like it, by the gateway at start-up; column names are checked
// here (dataverse.ValidContactColumn) and the rest by
// authz/contacts.CheckOptions.
//
// # Permissions
//
// The optional permissions section maps local role names to the
// permissions each grants in the REST API and the admin console (the names
// of package permissions, which API keys carry as scopes):
//
//	permissions:
//	  helpdesk: [users:read, users:credentials]
//	  auditor: [audit:read]
//
// The admin role has every permission and may not be listed. Without the
// section only admin has permissions. See Policy.Permissions.
//
// # Paths the gateway refuses
//
// CanonicalPath answers every request path that upstream servers could read
// in more than one way with ErrAmbiguousPath (400): encoded slashes,
// backslashes, ";" path parameters, control characters, double encoding,
// invalid UTF-8, dot segments above the root. See CanonicalPath.
package policies
