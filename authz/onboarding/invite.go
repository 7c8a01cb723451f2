package onboarding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/mail"
)

// MaxInvite is the most contacts one InviteContacts call takes: ids
// given, or contacts a filter matches.
const MaxInvite = 500

// MailSetPassword is the mail template of a generated account, also its
// mail event type.
const MailSetPassword = "set_password"

// SetPasswordPath is the page a set-password link opens, under the auth
// prefix, with ?token=<secret>&purpose=set_password.
const SetPasswordPath = "/reset/confirm"

// Outcome is what happened to one contact of InviteContacts.
type Outcome string

// The outcomes.
const (
	// Created: an account was created and its set-password mail queued.
	Created Outcome = "created"
	// WouldCreate: a dry run found nothing in the way of an account.
	WouldCreate Outcome = "would_create"
	// Skipped: the contact has an account already; nothing was sent.
	Skipped Outcome = "skipped"
	// Failed: the contact got no account, for Reason.
	Failed Outcome = "failed"
)

// The reasons of a skipped or failed contact: InviteResult.Reason, and the
// Detail of audit.EventCredentialsSkipped.
const (
	ReasonAlreadyHasAccount    = "already_has_account"   // a user is bound to the contact (skipped)
	ReasonDuplicate            = "duplicate"             // the id was given earlier in the same list (skipped)
	ReasonInvalidID            = "invalid_contact_id"    // not a GUID
	ReasonContactNotFound      = "contact_not_found"     // no such contact in Dataverse
	ReasonContactInactive      = "contact_inactive"      // statecode is not 0
	ReasonNoEmail              = "no_email"              // emailaddress1 is empty
	ReasonInvalidEmail         = "invalid_email"         // emailaddress1 is not a bare address crmgate accepts
	ReasonInvalidUsername      = "invalid_username"      // the username it would get is not one crmgate accepts
	ReasonEmailTaken           = "email_taken"           // another account has the email or username
	ReasonDataverseUnavailable = "dataverse_unavailable" // Dataverse could not answer
	ReasonDataverseError       = "dataverse_error"       // Dataverse answered with another error
	ReasonStoreError           = "store_error"           // the account store failed
	ReasonCanceled             = "canceled"              // the request ended before this contact
)

// InviteRequest names the contacts of InviteContacts: ContactIDs or
// Filter, exactly one of them.
type InviteRequest struct {
	// ContactIDs are contact GUIDs, at most MaxInvite.
	ContactIDs []string
	// Filter selects contacts with the grammar of binding filter templates
	// (binding.FilterTemplate) without placeholders, e.g.
	// "parentcustomerid_account eq 'Contoso' and statecode eq 0"
	// ("column eq|ne value" joined by "and"). More than MaxInvite matches
	// refuse the whole request.
	Filter string
	// DryRun checks every contact and changes nothing: Created becomes
	// WouldCreate, and nothing is audited.
	DryRun bool
}

// InviteResult is the outcome of one contact.
type InviteResult struct {
	// ContactID is the contact's id as given (lower case when valid).
	ContactID string `json:"contact_id"`
	// Outcome is what happened.
	Outcome Outcome `json:"outcome"`
	// Reason is one of the Reason* codes for Skipped and Failed.
	Reason string `json:"reason,omitempty"`
	// Message says Reason as a sentence for the administrator.
	Message string `json:"message,omitempty"`
	// UserID is the created account, or the account already bound.
	UserID string `json:"user_id,omitempty"`
	// Username and Email are the account's (created or would be).
	Username string `json:"username,omitempty"`
	Email    string `json:"email,omitempty"`
}

// reasonMessages are the sentences of the reasons.
var reasonMessages = map[string]string{
	ReasonAlreadyHasAccount:    "The contact already has an account; no mail was sent.",
	ReasonDuplicate:            "The contact is listed more than once; it is handled once.",
	ReasonInvalidID:            "This is not a contact id (a GUID).",
	ReasonContactNotFound:      "There is no contact with this id in Dataverse.",
	ReasonContactInactive:      "The contact is inactive in Dataverse.",
	ReasonNoEmail:              "The contact has no email address (emailaddress1).",
	ReasonInvalidEmail:         "The contact's email address is not one an account can have.",
	ReasonInvalidUsername:      "The username the contact would get is not valid (1 to 64 letters, digits or . _ - @).",
	ReasonEmailTaken:           "Another account already has this email address or username.",
	ReasonDataverseUnavailable: "Dataverse could not be reached; try again shortly.",
	ReasonDataverseError:       "Dataverse refused to read the contact.",
	ReasonStoreError:           "The account could not be saved; try again.",
	ReasonCanceled:             "The request ended before this contact was handled.",
}

// InviteContacts creates, for each contact of req that no user is bound
// to, an active account without a password, bound to it (lookup), and
// mails it a set-password link (template set_password, link
// SetPasswordPath?token=…&purpose=set_password, valid SetPasswordTTL). The
// account, its tokens.PurposeSetPassword token, its lifecycle Created
// event and the mail are stored in one transaction, so that an account is
// never created without its mail nor a mail sent for an account rolled
// back. The username is the contact's Options.UsernameColumn when set and
// not empty, else its email address; the email address is confirmed only
// when the link is used.
//
// Each contact succeeds or fails on its own (InviteResult, in the order of
// req.ContactIDs, or of contact id for a filter). A contact bound already
// (a lookup binding naming it, or a username binding whose username is
// the contact's Options.BindingUsernameColumn) is Skipped with
// ReasonAlreadyHasAccount and gets no mail, also when its
// earlier link was never used: a rerun sends nothing twice, and two runs at
// once create each account once. To send someone a new link, use the
// password reset. Every outcome but a dry run's is audited with actor.
//
// The contacts are read one request per id (ContactByID), or in one
// request for a filter (at most MaxInvite+1 rows); the client's
// concurrency limit, Retry-After handling and breaker apply. A request
// that is malformed as a whole (neither or both of ids and filter, more
// than MaxInvite ids or matches, a filter that does not parse) gives a
// *authz.ValidationError and changes nothing; no Dataverse gives
// ErrNoDirectory; a filter query Dataverse cannot answer an error wrapping
// dataverse.ErrUnavailable.
func (s *Service) InviteContacts(ctx context.Context, req InviteRequest, actor string) ([]InviteResult, error) {
	if s.contacts == nil {
		return nil, ErrNoDirectory
	}
	hasFilter := strings.TrimSpace(req.Filter) != ""
	switch {
	case len(req.ContactIDs) > 0 && hasFilter, len(req.ContactIDs) == 0 && !hasFilter:
		return nil, &authz.ValidationError{Field: "contacts", Message: "Give contact ids or a filter, one of them."}
	case len(req.ContactIDs) > MaxInvite:
		return nil, &authz.ValidationError{Field: "contact_ids", Message: fmt.Sprintf("At most %d contacts at once; split the list.", MaxInvite)}
	}
	columns := []string{s.bindCol}
	if s.column != "" && s.column != s.bindCol {
		columns = append(columns, s.column)
	}
	if hasFilter {
		found, err := s.findContacts(ctx, req.Filter, columns)
		if err != nil {
			return nil, err
		}
		out := make([]InviteResult, len(found))
		for i, c := range found {
			out[i] = s.invite(ctx, c.ID, c, req.DryRun, actor)
		}
		return out, nil
	}
	out := make([]InviteResult, len(req.ContactIDs))
	seen := make(map[string]bool, len(req.ContactIDs))
	for i, raw := range req.ContactIDs {
		id, err := dataverse.ParseID(strings.TrimSpace(raw))
		if err != nil {
			out[i] = s.fail(ctx, InviteResult{ContactID: truncate(raw, 64)}, Failed, ReasonInvalidID, req.DryRun, actor)
			continue
		}
		if seen[id] {
			out[i] = InviteResult{ContactID: id, Outcome: Skipped, Reason: ReasonDuplicate, Message: reasonMessages[ReasonDuplicate]}
			continue
		}
		seen[id] = true
		if ctx.Err() != nil {
			out[i] = InviteResult{ContactID: id, Outcome: Failed, Reason: ReasonCanceled, Message: reasonMessages[ReasonCanceled]}
			continue
		}
		// A contact bound already is skipped without asking Dataverse, so a
		// rerun over the same ids costs no Dataverse request for them.
		switch bound, err := s.store.UsersBoundToContact(ctx, id); {
		case err != nil:
			s.log.ErrorContext(ctx, "invite contacts: bound users not read", "contact_id", id, "err", err)
			out[i] = s.fail(ctx, InviteResult{ContactID: id}, Failed, ReasonStoreError, req.DryRun, actor)
			continue
		case len(bound) > 0:
			out[i] = s.fail(ctx, InviteResult{ContactID: id, UserID: bound[0].ID, Username: bound[0].Username, Email: bound[0].Email},
				Skipped, ReasonAlreadyHasAccount, req.DryRun, actor)
			continue
		}
		c, err := s.contacts.ContactByID(ctx, id, columns)
		if err != nil {
			reason := ReasonDataverseError
			switch {
			case errors.Is(err, dataverse.ErrContactNotFound):
				reason = ReasonContactNotFound
			case errors.Is(err, dataverse.ErrUnavailable):
				reason = ReasonDataverseUnavailable
			case ctx.Err() != nil:
				reason = ReasonCanceled
			}
			if reason != ReasonContactNotFound {
				s.log.WarnContext(ctx, "invite contacts: contact not read", "contact_id", id, "err", err)
			}
			out[i] = s.fail(ctx, InviteResult{ContactID: id}, Failed, reason, req.DryRun, actor)
			continue
		}
		out[i] = s.invite(ctx, id, c, req.DryRun, actor)
	}
	return out, nil
}

// findContacts runs a filter: one request for at most MaxInvite+1 rows,
// each checked again with dataverse.MatchesAll (Dataverse may match
// strings more loosely).
func (s *Service) findContacts(ctx context.Context, filter string, columns []string) ([]*dataverse.Contact, error) {
	t, err := binding.ParseFilterTemplate(filter)
	if err != nil {
		return nil, &authz.ValidationError{Field: "filter", Message: "The filter does not parse: " + err.Error()}
	}
	if t.HasFields() {
		return nil, &authz.ValidationError{Field: "filter", Message: "The filter may not hold placeholders such as {email}: it selects contacts, not users."}
	}
	conds, err := t.Conditions(nil)
	if err != nil {
		return nil, &authz.ValidationError{Field: "filter", Message: err.Error()}
	}
	rows, err := s.contacts.FindContacts(ctx, dataverse.ContactQuery{Conditions: conds, Columns: columns, Limit: MaxInvite + 1})
	if err != nil {
		return nil, fmt.Errorf("onboarding: invite contacts: %w", err)
	}
	if len(rows) > MaxInvite {
		return nil, &authz.ValidationError{Field: "filter", Message: fmt.Sprintf("More than %d contacts match the filter; narrow it.", MaxInvite)}
	}
	out := rows[:0]
	for _, c := range rows {
		if dataverse.MatchesAll(c, conds) {
			out = append(out, c)
		}
	}
	return out, nil
}

// invite handles one contact read from Dataverse.
func (s *Service) invite(ctx context.Context, id string, c *dataverse.Contact, dryRun bool, actor string) InviteResult {
	r := InviteResult{ContactID: id}
	if ctx.Err() != nil {
		return InviteResult{ContactID: id, Outcome: Failed, Reason: ReasonCanceled, Message: reasonMessages[ReasonCanceled]}
	}
	bound, err := s.store.UsersBoundToContact(ctx, id)
	if err != nil {
		s.log.ErrorContext(ctx, "invite contacts: bound users not read", "contact_id", id, "err", err)
		return s.fail(ctx, r, Failed, ReasonStoreError, dryRun, actor)
	}
	// A username binding ties a user to the contact whose username column
	// holds the username, without naming the contact: such a user has an
	// account for this contact too.
	if v, ok := c.Text(s.bindCol); ok && strings.TrimSpace(v) != "" {
		switch u, err := s.store.UserByLogin(ctx, strings.TrimSpace(v)); {
		case err == nil && u.Binding.Mode == authz.BindingUsername && authz.NormalizeLogin(u.Username) == authz.NormalizeLogin(v):
			bound = append(bound, u)
		case err != nil && !errors.Is(err, authz.ErrNotFound):
			s.log.ErrorContext(ctx, "invite contacts: username binding not checked", "contact_id", id, "err", err)
			return s.fail(ctx, r, Failed, ReasonStoreError, dryRun, actor)
		}
	}
	if len(bound) > 0 {
		r.UserID, r.Username, r.Email = bound[0].ID, bound[0].Username, bound[0].Email
		return s.fail(ctx, r, Skipped, ReasonAlreadyHasAccount, dryRun, actor)
	}
	if !c.Active {
		return s.fail(ctx, r, Failed, ReasonContactInactive, dryRun, actor)
	}
	r.Email = strings.TrimSpace(c.Email)
	if r.Email == "" {
		return s.fail(ctx, r, Failed, ReasonNoEmail, dryRun, actor)
	}
	if authz.ValidateEmail(r.Email) != nil {
		return s.fail(ctx, r, Failed, ReasonInvalidEmail, dryRun, actor)
	}
	r.Username = r.Email
	if s.column != "" {
		if v, ok := c.Text(s.column); ok && strings.TrimSpace(v) != "" {
			r.Username = strings.TrimSpace(v)
		}
	}
	if authz.ValidateUsername(r.Username) != nil {
		return s.fail(ctx, r, Failed, ReasonInvalidUsername, dryRun, actor)
	}
	// As accounts.CreateUser: a login must name one account, so neither
	// the username nor the email may be any account's username or email.
	for _, login := range []string{r.Username, r.Email} {
		switch _, err := s.store.UserByLogin(ctx, login); {
		case err == nil:
			return s.taken(ctx, r, dryRun, actor)
		case !errors.Is(err, authz.ErrNotFound):
			s.log.ErrorContext(ctx, "invite contacts: login not checked", "contact_id", id, "err", err)
			return s.fail(ctx, r, Failed, ReasonStoreError, dryRun, actor)
		}
	}
	if dryRun {
		r.Outcome = WouldCreate
		return r
	}
	u, t, err := s.create(ctx, c, r)
	switch {
	case errors.Is(err, ErrContactBound):
		if others, lerr := s.store.UsersBoundToContact(ctx, id); lerr == nil && len(others) > 0 {
			r.UserID, r.Username, r.Email = others[0].ID, others[0].Username, others[0].Email
		}
		return s.fail(ctx, r, Skipped, ReasonAlreadyHasAccount, dryRun, actor)
	case errors.Is(err, authz.ErrConflict):
		return s.taken(ctx, r, dryRun, actor)
	case err != nil:
		s.log.ErrorContext(ctx, "invite contacts: account not created", "contact_id", id, "err", err)
		return s.fail(ctx, r, Failed, ReasonStoreError, dryRun, actor)
	}
	s.notify()
	s.tokens.Issued(ctx, t)
	s.audit.Record(ctx, audit.Event{Time: u.CreatedAt, Type: audit.EventUserCreated, Actor: actor, UserID: u.ID, Detail: string(u.Status)})
	s.audit.Record(ctx, audit.Event{Time: u.CreatedAt, Type: audit.EventCredentialsCreated, Actor: actor, UserID: u.ID, Detail: "contact " + id})
	r.Outcome, r.UserID = Created, u.ID
	return r
}

// create stores the account for contact c with its token, lifecycle
// event and mail.
func (s *Service) create(ctx context.Context, c *dataverse.Contact, r InviteResult) (*authz.User, tokens.Token, error) {
	now := s.now()
	u := &authz.User{
		ID: authz.NewID(), Username: r.Username, Email: r.Email,
		Roles: []string{}, Status: authz.StatusActive, SecurityStamp: authz.NewID(),
		Binding:   authz.Binding{Mode: authz.BindingLookup, Ref: &dataverse.EntityReference{ID: c.ID, LogicalName: dataverse.ContactLogicalName, Name: c.Name}},
		CreatedAt: now, UpdatedAt: now,
	}
	if authz.ValidateName(c.FirstName) == nil && authz.ValidateName(c.LastName) == nil {
		u.FirstName, u.LastName = strings.TrimSpace(c.FirstName), strings.TrimSpace(c.LastName)
	}
	// The payload names the address the link was sent to: the set-password
	// page confirms that address, and only while the account still has it.
	payload, err := json.Marshal(map[string]string{"email": u.Email})
	if err != nil {
		return nil, tokens.Token{}, err
	}
	secret, t, err := s.tokens.Prepare(tokens.PurposeSetPassword, u.ID, s.ttl, payload)
	if err != nil {
		return nil, tokens.Token{}, err
	}
	link := s.mail.Link(SetPasswordPath, url.Values{"token": {secret}, "purpose": {string(tokens.PurposeSetPassword)}})
	m, err := s.mail.Compose(MailSetPassword, u.Email, mail.Data{Name: u.Name(), Link: link, Expires: s.ttl,
		Extra: map[string]string{"username": u.Username}})
	if err != nil {
		return nil, tokens.Token{}, err
	}
	me, err := mail.NewEvent(MailSetPassword, u.ID, m, now)
	if err != nil {
		return nil, tokens.Token{}, err
	}
	le, err := lifecycle.NewEvent(lifecycle.Created, u, now)
	if err != nil {
		return nil, tokens.Token{}, err
	}
	if err := s.store.CreateContactUser(ctx, u, &t, le, me); err != nil {
		return nil, tokens.Token{}, err
	}
	return u, t, nil
}

// taken is the outcome of a contact whose username or email another
// account has: that account may be one a concurrent run created for this
// very contact a moment ago (then the contact is Skipped as bound), or a
// stranger's (Failed, ReasonEmailTaken).
func (s *Service) taken(ctx context.Context, r InviteResult, dryRun bool, actor string) InviteResult {
	if bound, err := s.store.UsersBoundToContact(ctx, r.ContactID); err == nil && len(bound) > 0 {
		r.UserID, r.Username, r.Email = bound[0].ID, bound[0].Username, bound[0].Email
		return s.fail(ctx, r, Skipped, ReasonAlreadyHasAccount, dryRun, actor)
	}
	return s.fail(ctx, r, Failed, ReasonEmailTaken, dryRun, actor)
}

// fail completes r with outcome and reason and audits it (not in a dry run).
func (s *Service) fail(ctx context.Context, r InviteResult, outcome Outcome, reason string, dryRun bool, actor string) InviteResult {
	r.Outcome, r.Reason, r.Message = outcome, reason, reasonMessages[reason]
	if !dryRun {
		s.audit.Record(ctx, audit.Event{Type: audit.EventCredentialsSkipped, Actor: actor, UserID: r.UserID,
			Detail: "contact " + r.ContactID + " " + reason})
	}
	return r
}

// truncate cuts s to at most n bytes of printable text, for echoing input.
func truncate(s string, n int) string {
	if !authz.Printable(s) {
		return "(not printable)"
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
