package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/contacts"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/permissions"
	"github.com/crmgate/crmgate/dataverse"
)

// ContactAdmin manages Dataverse contacts for the console, each write with
// the row version it was read at. *contacts.Service satisfies it.
type ContactAdmin interface {
	List(ctx context.Context, req contacts.ListRequest) (*contacts.ListPage, error)
	Get(ctx context.Context, id string) (*contacts.Contact, error)
	Create(ctx context.Context, f contacts.Fields, actor string) (*contacts.Contact, error)
	Update(ctx context.Context, id, etag string, f contacts.Fields, actor string) (*contacts.Contact, error)
	Delete(ctx context.Context, id, etag, actor string) error
	Invite(ctx context.Context, id string, ni invitations.NewInvitation, actor string) (*invitations.Invitation, error)
	CreateUser(ctx context.Context, id, actor string) (onboarding.InviteResult, error)
	// CompanyColumn and Columns name the columns the form edits besides
	// the names and the email address.
	CompanyColumn() string
	Columns() []string
	// CanInvite and CanCreateUser say whether Invite and CreateUser work.
	CanInvite() bool
	CanCreateUser() bool
}

func (c *Console) contactRoutes() []Route {
	a := c.o.ContactAdmin
	if a == nil {
		return nil
	}
	rs := []Route{
		{"GET", "/admin/contacts", permissions.ContactsRead, c.handleContacts},
		{"GET", "/admin/contacts/new", permissions.ContactsWrite, c.handleNewContact},
		{"POST", "/admin/contacts", permissions.ContactsWrite, c.handleCreateContact},
		{"GET", "/admin/contacts/{id}", permissions.ContactsRead, c.handleContact},
		{"POST", "/admin/contacts/{id}", permissions.ContactsWrite, c.handleUpdateContact},
		{"POST", "/admin/contacts/{id}/delete", permissions.ContactsWrite, c.handleDeleteContact},
	}
	if a.CanInvite() {
		rs = append(rs, Route{"POST", "/admin/contacts/{id}/invite", permissions.InvitationsWrite, c.handleInviteContact})
	}
	if a.CanCreateUser() {
		rs = append(rs, Route{"POST", "/admin/contacts/{id}/create-user", permissions.UsersCredentials, c.handleContactUser})
	}
	return rs
}

// contactsPage is the data of the contacts list.
type contactsPage struct {
	Search   string
	Contacts []*contacts.Contact
	Columns  []string
	Next     string // the cursor of the next page
	Cursor   string // this page's cursor; empty on the first
	CanWrite bool
}

// maxCursorLen bounds a paging cursor taken from the query string (a
// Dataverse nextLink without its host).
const maxCursorLen = 4096

func (c *Console) handleContacts(w http.ResponseWriter, r *http.Request, caller Caller) {
	q := r.URL.Query()
	d := contactsPage{Search: strings.TrimSpace(q.Get("q")), Cursor: q.Get("cursor"), Columns: c.o.ContactAdmin.Columns(),
		CanWrite: caller.can(permissions.ContactsWrite)}
	if len(d.Cursor) > maxCursorLen {
		c.o.RenderError(w, r, errBadRequest("The page cursor is not valid."))
		return
	}
	page, err := c.o.ContactAdmin.List(r.Context(), contacts.ListRequest{Search: d.Search, Cursor: d.Cursor})
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		c.render(w, r, http.StatusBadRequest, caller, "contacts", "contacts", "Contacts", d, "", verr.Message)
		return
	case errors.Is(err, dataverse.ErrInvalidCursor):
		c.render(w, r, http.StatusBadRequest, caller, "contacts", "contacts", "Contacts", d, "", "That page no longer exists; start from the first page.")
		return
	case errors.Is(err, dataverse.ErrUnavailable):
		c.render(w, r, http.StatusServiceUnavailable, caller, "contacts", "contacts", "Contacts", d, "",
			"Dataverse cannot be reached just now. Please try again shortly.")
		return
	case err != nil:
		c.o.RenderError(w, r, err)
		return
	}
	d.Contacts, d.Next = page.Contacts, page.Next
	c.render(w, r, http.StatusOK, caller, "contacts", "contacts", "Contacts", d, notice(r), "")
}

// contactForm is the data of a contact's page: the contact (nil for a new
// one), the form's values and each field's error.
type contactForm struct {
	Contact   *contacts.Contact
	ETag      string
	Fields    []formField
	New       bool
	CanWrite  bool
	CanInvite bool
	CanCreate bool
}

// contactFields builds the form's fields from the contact (or the entered
// values) and the errors by field name.
func (c *Console) contactFields(ct *contacts.Contact, entered map[string]string, errs map[string]string) []formField {
	val := func(name, cur string) string {
		if v, ok := entered[name]; ok {
			return v
		}
		return cur
	}
	var first, last, email, company string
	cols := map[string]any{}
	if ct != nil {
		first, last, email, company, cols = ct.FirstName, ct.LastName, ct.Email, ct.Company, ct.Columns
	}
	fs := []formField{
		{Name: "first_name", Label: "First name", Value: val("first_name", first), Autocomplete: "off", MaxLen: 50},
		{Name: "last_name", Label: "Last name", Value: val("last_name", last), Required: true, Autocomplete: "off", MaxLen: 50},
		{Name: "email", Label: "Email", Value: val("email", email), Type: "email", Autocomplete: "off", MaxLen: 100},
		{Name: "company", Label: "Company (" + c.o.ContactAdmin.CompanyColumn() + ")", Value: val("company", company), Autocomplete: "off"},
	}
	for _, col := range c.o.ContactAdmin.Columns() {
		cur := ""
		if v, ok := cols[col]; ok && v != nil {
			cur = fmt.Sprint(v)
		}
		fs = append(fs, formField{Name: "col_" + col, Label: col, Value: val("col_"+col, cur), Autocomplete: "off"})
	}
	for i := range fs {
		if fs[i].Type == "" {
			fs[i].Type = "text"
		}
		fs[i].Error = errs[strings.TrimPrefix(fs[i].Name, "col_")]
	}
	return fs
}

// enteredFields reads the contact form: the values as typed, and the
// Fields to write (a field the form does not carry is left as it is).
func (c *Console) enteredFields(r *http.Request) (map[string]string, contacts.Fields) {
	entered := map[string]string{}
	f := contacts.Fields{Columns: map[string]string{}}
	get := func(name string) *string {
		vs, ok := r.PostForm[name]
		if !ok || len(vs) == 0 {
			return nil
		}
		entered[name] = vs[0]
		v := vs[0]
		return &v
	}
	f.FirstName, f.LastName, f.Email, f.Company = get("first_name"), get("last_name"), get("email"), get("company")
	for _, col := range c.o.ContactAdmin.Columns() {
		if v := get("col_" + col); v != nil {
			f.Columns[col] = *v
		}
	}
	return entered, f
}

// contactID is the {id} contact of the request, or a 404 answered here.
func (c *Console) contactID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, err := dataverse.ParseID(r.PathValue("id"))
	if err != nil {
		c.o.RenderError(w, r, errNotFound("contact"))
		return "", false
	}
	return id, true
}

// loadContact reads the {id} contact, answering an error page itself.
func (c *Console) loadContact(w http.ResponseWriter, r *http.Request) (*contacts.Contact, bool) {
	id, ok := c.contactID(w, r)
	if !ok {
		return nil, false
	}
	ct, err := c.o.ContactAdmin.Get(r.Context(), id)
	switch {
	case errors.Is(err, contacts.ErrNotFound):
		c.o.RenderError(w, r, errNotFound("contact"))
		return nil, false
	case errors.Is(err, dataverse.ErrUnavailable):
		c.o.RenderError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: "dataverse_unavailable", Title: "Temporarily unavailable",
			Message: "Dataverse cannot be reached just now. Please try again shortly.", Err: err})
		return nil, false
	case err != nil:
		c.o.RenderError(w, r, err)
		return nil, false
	}
	return ct, true
}

func (c *Console) contactPage(caller Caller, ct *contacts.Contact, entered, errs map[string]string) contactForm {
	d := contactForm{Contact: ct, New: ct == nil, Fields: c.contactFields(ct, entered, errs), CanWrite: caller.can(permissions.ContactsWrite),
		CanInvite: c.o.ContactAdmin.CanInvite() && caller.can(permissions.InvitationsWrite),
		CanCreate: c.o.ContactAdmin.CanCreateUser() && caller.can(permissions.UsersCredentials)}
	if ct != nil {
		d.ETag = ct.ETag
	}
	return d
}

func (c *Console) handleContact(w http.ResponseWriter, r *http.Request, caller Caller) {
	ct, ok := c.loadContact(w, r)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, caller, "contact", "contacts", contactTitle(ct), c.contactPage(caller, ct, nil, nil), notice(r), "")
}

func contactTitle(ct *contacts.Contact) string {
	if ct.FullName != "" {
		return ct.FullName
	}
	return strings.TrimSpace(ct.FirstName + " " + ct.LastName)
}

func (c *Console) handleNewContact(w http.ResponseWriter, r *http.Request, caller Caller) {
	c.render(w, r, http.StatusOK, caller, "contact", "contacts", "New contact", c.contactPage(caller, nil, nil, nil), "", "")
}

// contactWriteError shows the form of contact id (empty: a new contact)
// again with a write's error, or the error page for an unexpected one.
// The contact is read here, once, for the page: the writes read it
// themselves before they write, so the handlers do not.
func (c *Console) contactWriteError(w http.ResponseWriter, r *http.Request, caller Caller, id string, entered map[string]string, err error) {
	var verr *authz.ValidationError
	var bound *contacts.BoundError
	status, msg, errs := http.StatusBadRequest, "", map[string]string{}
	switch {
	case errors.As(err, &verr):
		msg = "Please correct the marked field."
		errs[verr.Field] = verr.Message
		if verr.Field == "filter" || verr.Field == "etag" || verr.Field == "columns" {
			msg = verr.Message
		}
	case errors.Is(err, contacts.ErrChanged):
		status, msg = http.StatusConflict, "Someone changed this contact after you opened it, so nothing was saved. "+
			"The form now shows the current values: check them and save again."
		entered = nil
	case errors.As(err, &bound):
		names := make([]string, len(bound.Users))
		for i, u := range bound.Users {
			names[i] = u.Username
		}
		status, msg = http.StatusConflict, "The contact is bound to "+strings.Join(names, ", ")+": unbind them first."
	case errors.Is(err, contacts.ErrNotFound):
		c.o.RenderError(w, r, errNotFound("contact"))
		return
	case errors.Is(err, dataverse.ErrUnavailable):
		status, msg = http.StatusServiceUnavailable, "Dataverse cannot be reached just now, so nothing was saved. Please try again shortly."
	default:
		c.o.RenderError(w, r, err)
		return
	}
	c.renderContactError(w, r, caller, id, entered, errs, status, msg)
}

// renderContactError shows contact id's page (a new contact's when id is
// empty) with a message, reading the contact for it.
func (c *Console) renderContactError(w http.ResponseWriter, r *http.Request, caller Caller, id string, entered, errs map[string]string, status int, msg string) {
	var ct *contacts.Contact
	title := "New contact"
	if id != "" {
		cur, err := c.o.ContactAdmin.Get(r.Context(), id)
		if err != nil {
			c.o.RenderError(w, r, &Error{Status: status, Code: "contact_not_saved", Title: "Not saved", Message: msg, Err: err})
			return
		}
		ct, title = cur, contactTitle(cur)
	}
	c.render(w, r, status, caller, "contact", "contacts", title, c.contactPage(caller, ct, entered, errs), "", msg)
}

func (c *Console) handleCreateContact(w http.ResponseWriter, r *http.Request, caller Caller) {
	if !c.parseForm(w, r) {
		return
	}
	entered, f := c.enteredFields(r)
	ct, err := c.o.ContactAdmin.Create(r.Context(), f, caller.Actor())
	if err != nil {
		c.contactWriteError(w, r, caller, "", entered, err)
		return
	}
	c.redirect(w, r, "/contacts/"+ct.ID, "contact-created")
}

func (c *Console) handleUpdateContact(w http.ResponseWriter, r *http.Request, caller Caller) {
	if !c.parseForm(w, r) {
		return
	}
	id, ok := c.contactID(w, r)
	if !ok {
		return
	}
	entered, f := c.enteredFields(r)
	if _, err := c.o.ContactAdmin.Update(r.Context(), id, r.PostForm.Get("etag"), f, caller.Actor()); err != nil {
		c.contactWriteError(w, r, caller, id, entered, err)
		return
	}
	c.redirect(w, r, "/contacts/"+id, "contact-saved")
}

func (c *Console) handleDeleteContact(w http.ResponseWriter, r *http.Request, caller Caller) {
	if !c.parseForm(w, r) {
		return
	}
	id, ok := c.contactID(w, r)
	if !ok {
		return
	}
	if r.PostForm.Get("confirmed") != "yes" {
		// The question names the contact: read it for the page only.
		ct, ok := c.loadContact(w, r)
		if !ok || !c.confirmed(w, r, caller, "contacts", confirmation{Question: "Delete the contact " + contactTitle(ct) + " from Dataverse?",
			Detail: "The contact row is deleted in Dataverse for good. This cannot be undone here.",
			Action: "/admin/contacts/" + id + "/delete", Button: "Delete the contact", Back: "/admin/contacts/" + id}) {
			return
		}
	}
	if err := c.o.ContactAdmin.Delete(r.Context(), id, r.PostForm.Get("etag"), caller.Actor()); err != nil {
		c.contactWriteError(w, r, caller, id, nil, err)
		return
	}
	c.redirect(w, r, "/contacts", "contact-deleted")
}

func (c *Console) handleInviteContact(w http.ResponseWriter, r *http.Request, caller Caller) {
	c.contactAccount(w, r, caller, func(ctx context.Context, id string) (string, string, error) {
		_, err := c.o.ContactAdmin.Invite(ctx, id, invitations.NewInvitation{}, caller.Actor())
		return "/contacts/" + id, "contact-invited", err
	})
}

func (c *Console) handleContactUser(w http.ResponseWriter, r *http.Request, caller Caller) {
	c.contactAccount(w, r, caller, func(ctx context.Context, id string) (string, string, error) {
		res, err := c.o.ContactAdmin.CreateUser(ctx, id, caller.Actor())
		if err == nil && res.Outcome != onboarding.Created {
			err = errNoAccount{res.Message}
		}
		return "/users/" + res.UserID, "user-created", err
	})
}

// errNoAccount is CreateUser's answer when it made no account (the
// contact has one, say); its message is the service's sentence.
type errNoAccount struct{ msg string }

func (e errNoAccount) Error() string { return "No account was created: " + e.msg }

// contactAccount runs an action that gives contact {id} an account (an
// invitation, a user) and goes to the path and notice it returns; a
// refusal shows the contact's page with the reason.
func (c *Console) contactAccount(w http.ResponseWriter, r *http.Request, caller Caller,
	do func(ctx context.Context, id string) (path, notice string, err error)) {
	if !c.parseForm(w, r) {
		return
	}
	id, ok := c.contactID(w, r)
	if !ok {
		return
	}
	path, notice, err := do(r.Context(), id)
	var none errNoAccount
	switch {
	case errors.As(err, &none):
		c.renderContactError(w, r, caller, id, nil, nil, http.StatusConflict, none.Error())
	case err != nil:
		c.contactWriteError(w, r, caller, id, nil, err)
	default:
		c.redirect(w, r, path, notice)
	}
}
