package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/dataverse"
)

const usersUsage = `usage: crmgate users <command> [flags]

commands:
  create        --username U --email E [--roles a,b] [--name N] [--password-stdin] [--must-change-password] [--status S]
  list          [--query Q] [--json]
  set-password  --login U [--password-stdin] [--must-change-password]
  force-password-change  --login U | LOGIN   (the next sign-in must choose a new password)
  set-roles     --login U --roles a,b   (empty --roles removes every role)
  disable       --login U
  enable        --login U   (says when the account is still locked out)
  unlock        --login U | LOGIN   (clears a sign-in lockout and the failure count)
  set-binding   --mode none|username|custom [--dry-run] (LOGIN... | --from-mode M | --all)
  set-binding   --mode lookup --contact GUID [--contact-name N] [--allow-shared] [--dry-run] LOGIN
  approve       LOGIN...   (pending users: active, mailed a sign-in link)
  reject        [--reason TEXT] LOGIN...   (pending users: account deleted, mailed)
  invite-contacts  (--contact ID... | --filter F) [--dry-run] [--json]   (accounts and set-password mails for contacts)
  api-key create  --name N --scopes S1,S2 [--expires 720h]   (scopes: users api-key create --help)
  api-key list    [--json]
  api-key revoke  --id ID

` + setBindingHelp + `

Without --password-stdin a random password is generated and printed once.
An API key is printed once, when it is created; only its hash is stored.
Only CRMGATE_DATABASE_URL and the CRMGATE_PASSWORD_* settings are read, so
a break-glass admin can be recovered even when the rest of the
configuration is broken.`

// setBindingHelp explains set-binding, in the users usage and its own.
const setBindingHelp = `set-binding changes how users are bound to Dataverse contacts: the users
named (username, email or id; flags come first), every user whose mode is
--from-mode, or every user (--all). Users already bound that way are left
alone. It prints one line per user, and exits with status 1 if any change
failed; --dry-run only prints what would change. Each change is audited
and sends its bound/unbound lifecycle event (delivered by the running
gateway). The last active, unbound admin (the break-glass account) is
never bound. A lookup binding is checked in Dataverse first (the
CRMGATE_DATAVERSE_* settings are read for it): a contact that does not
exist is refused, and so is one another user is bound to unless
--allow-shared is given.`

// runUsers manages accounts directly in the store.
func runUsers(ctx context.Context, args, environ []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{usersUsage}
	}
	switch args[0] {
	case "api-key":
		return runAPIKeys(ctx, args[1:], environ, stdout)
	case "set-binding":
		return runSetBinding(ctx, args[1:], environ, stdout)
	case "approve", "reject":
		return runDecide(ctx, args[0], args[1:], environ, stdout)
	case "invite-contacts":
		return runInviteContacts(ctx, args[1:], environ, stdout)
	}
	sub, args := args[0], args[1:]
	if !slices.Contains(usersCommands, sub) {
		return usageError{fmt.Sprintf("unknown users command %q\n\n%s", sub, usersUsage)}
	}
	fs := flag.NewFlagSet("users "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		username   = fs.String("username", "", "username")
		email      = fs.String("email", "", "email address")
		name       = fs.String("name", "", "display name")
		login      = fs.String("login", "", "username or email of an existing user")
		roles      = fs.String("roles", "", "comma-separated roles")
		pwStdin    = fs.Bool("password-stdin", false, "read the password from the first line of standard input")
		mustChange = fs.Bool("must-change-password", false, "force a password change at next sign-in")
		status     = fs.String("status", "", "initial status of a new user: active (default), pending or disabled")
		query      = fs.String("query", "", "filter by username or email")
		asJSON     = fs.Bool("json", false, "print JSON")
	)
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("users %s: %v\n\n%s", sub, err, usersUsage)}
	}
	if (sub == "unlock" || sub == "force-password-change") && fs.NArg() == 1 && *login == "" {
		*login = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("users %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	svc, closeStore, err := openAccounts(ctx, environ)
	if err != nil {
		return err
	}
	defer closeStore()
	password := func() (string, bool, error) {
		if *pwStdin {
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return "", false, err
			}
			return strings.TrimRight(line, "\r\n"), false, nil
		}
		return svc.Accounts.PasswordPolicy().Generate(), true, nil
	}
	needLogin := func() error {
		if *login == "" {
			return usageError{fmt.Sprintf("users %s: --login is required", sub)}
		}
		return nil
	}

	switch sub {
	case "create":
		if *username == "" || *email == "" {
			return usageError{"users create: --username and --email are required"}
		}
		pw, generated, err := password()
		if err != nil {
			return err
		}
		u, err := svc.Accounts.CreateUser(ctx, accounts.NewUser{Username: *username, Email: *email, DisplayName: *name,
			Password: pw, Roles: splitList(*roles), MustChangePassword: *mustChange, Status: authz.Status(*status)}, cliActor)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created user %s (id %s)\n", u.Username, u.ID)
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	case "list":
		users, err := svc.Accounts.ListUsers(ctx, authz.UserFilter{Query: *query, Limit: authz.MaxListLimit})
		if err != nil {
			return err
		}
		now := time.Now()
		if *asJSON {
			out := make([]listedUser, len(users))
			for i, u := range users {
				out[i] = listedUser{User: u, Locked: accounts.Locked(u, now)}
			}
			return printJSON(stdout, out)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSERNAME\tEMAIL\tSTATUS\tROLES\tLOCKED")
		for _, u := range users {
			locked := "-"
			if accounts.Locked(u, now) {
				locked = "until " + cliTime(u.LockoutUntil)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Email, u.Status, strings.Join(u.Roles, ","), locked)
		}
		return tw.Flush()
	case "set-password":
		if err := needLogin(); err != nil {
			return err
		}
		pw, generated, err := password()
		if err != nil {
			return err
		}
		u, err := svc.Accounts.LookupUser(ctx, *login)
		if err != nil {
			return err
		}
		if _, err := svc.Accounts.SetUserPassword(ctx, u.ID, pw, accounts.PasswordChange{Actor: cliActor, MustChange: *mustChange}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password changed for %s; existing sessions end at their next check\n", *login)
		if *mustChange {
			fmt.Fprintf(stdout, "%s must choose a new password right after signing in\n", *login)
		}
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	case "force-password-change":
		if err := needLogin(); err != nil {
			return err
		}
		if _, err := svc.Accounts.ForcePasswordChange(ctx, *login, cliActor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s must choose a new password at the next sign-in; existing sessions end at their next check\n", *login)
	case "set-roles":
		if err := needLogin(); err != nil {
			return err
		}
		if err := svc.Accounts.SetRoles(ctx, *login, splitList(*roles), cliActor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "roles of %s set to [%s]\n", *login, strings.Join(splitList(*roles), ","))
	case "disable", "enable":
		if err := needLogin(); err != nil {
			return err
		}
		st := authz.StatusDisabled
		if sub == "enable" {
			st = authz.StatusActive
		}
		if err := svc.Accounts.SetStatus(ctx, *login, st, cliActor); err != nil {
			return err
		}
		if st != authz.StatusActive {
			fmt.Fprintf(stdout, "%s is now %s\n", *login, st)
			break
		}
		u, err := svc.Accounts.LookupUser(ctx, *login)
		if err != nil {
			return err
		}
		if accounts.Locked(u, time.Now()) {
			fmt.Fprintf(stdout, "%s is now active, but still locked out until %s after failed sign-ins; "+
				"crmgate users unlock --login %s clears it\n", *login, cliTime(u.LockoutUntil), *login)
		} else {
			fmt.Fprintf(stdout, "%s is now active and not locked out\n", *login)
		}
	case "unlock":
		if err := needLogin(); err != nil {
			return err
		}
		was, err := svc.Accounts.Unlock(ctx, *login, cliActor)
		if err != nil {
			return err
		}
		if was {
			fmt.Fprintf(stdout, "%s unlocked: the lockout and the failed sign-in count are cleared\n", *login)
		} else {
			fmt.Fprintf(stdout, "%s was not locked out; any failed sign-in count is cleared\n", *login)
		}
	default:
		return usageError{fmt.Sprintf("unknown users command %q\n\n%s", sub, usersUsage)}
	}
	return nil
}

// usersCommands are the subcommands runUsers handles itself.
var usersCommands = []string{"create", "list", "set-password", "force-password-change", "set-roles", "disable", "enable", "unlock"}

// listedUser is a user as users list --json prints it: the account and
// whether a lockout is running now.
type listedUser struct {
	*authz.User
	Locked bool `json:"locked"`
}

// cliActor is the actor the users commands record in the audit log.
const cliActor = "cli"

// openAccounts opens the store and builds the identity layer over it as
// serve does (identityOptions), but reading only CRMGATE_DATABASE_URL and
// the CRMGATE_PASSWORD_* settings (Load, not Validate), so that the users
// commands work when the rest of the configuration is broken. mods adjust
// the options. Call the returned function to close the store.
func openAccounts(ctx context.Context, environ []string, mods ...func(*wiring.Options)) (*wiring.Services, func(), error) {
	return openAccountsWith(ctx, environ, false, mods...)
}

// openAccountsWith is openAccounts that, with dataverse, also reads and
// checks the CRMGATE_DATAVERSE_* settings and gives the identity layer the
// contact directory when Dataverse is configured, so that lookup bindings
// can be checked; it contacts nothing until a binding is.
func openAccountsWith(ctx context.Context, environ []string, dataverse bool, mods ...func(*wiring.Options)) (*wiring.Services, func(), error) {
	cfg, err := config.Load(environ)
	if err != nil {
		return nil, nil, err
	}
	var dv *dataverseConn
	if dataverse && cfg.Dataverse.Configured() {
		if err := cfg.ValidateDataverse(); err != nil {
			return nil, nil, fmt.Errorf("configuration:\n%w", err)
		}
		if dv, err = newDataverse(cfg, nil, nil, nil); err != nil {
			return nil, nil, err
		}
		mods = append([]func(*wiring.Options){func(o *wiring.Options) {
			o.Contacts = dv.directory
			o.Binding.UsernameColumn = cfg.Binding.UsernameColumn
		}}, mods...)
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	// The same guard as serve: the last active, unbound admin (the
	// break-glass account) cannot be demoted, disabled, bound or deleted
	// from here either; create another admin first.
	opts := identityOptions(cfg, nil, nil)
	for _, m := range mods {
		m(&opts)
	}
	svc, err := wiring.New(db, opts)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return svc, func() { _ = db.Close() }, nil
}

// runAPIKeys creates, lists and revokes the REST API's keys.
func runAPIKeys(ctx context.Context, args, environ []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{usersUsage}
	}
	sub, args := args[0], args[1:]
	if !slices.Contains([]string{"create", "list", "revoke"}, sub) {
		return usageError{fmt.Sprintf("unknown users api-key command %q\n\n%s", sub, usersUsage)}
	}
	fs := flag.NewFlagSet("users api-key "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		name    = fs.String("name", "", "what the key is for")
		scopes  = fs.String("scopes", "", "comma-separated scopes")
		expires = fs.Duration("expires", 0, "lifetime of the key, e.g. 720h; 0 means it never expires")
		id      = fs.String("id", "", "id of the key")
		asJSON  = fs.Bool("json", false, "print JSON")
	)
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("users api-key %s: %v\n\n%s", sub, err, usersUsage)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("users api-key %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	switch sub {
	case "create":
		if *name == "" || *scopes == "" {
			return usageError{"users api-key create: --name and --scopes are required (scopes: " + strings.Join(apikeys.Scopes(), ", ") + ")"}
		}
		if *expires < 0 {
			return usageError{"users api-key create: --expires must not be negative"}
		}
	case "revoke":
		if *id == "" {
			return usageError{"users api-key revoke: --id is required"}
		}
	case "list":
	default:
		return usageError{fmt.Sprintf("unknown users api-key command %q\n\n%s", sub, usersUsage)}
	}
	svc, closeStore, err := openAccounts(ctx, environ)
	if err != nil {
		return err
	}
	defer closeStore()
	now := time.Now()
	switch sub {
	case "create":
		var expiresAt time.Time
		if *expires > 0 {
			expiresAt = now.Add(*expires)
		}
		key, k, err := svc.APIKeys.CreateAPIKey(ctx, *name, splitList(*scopes), expiresAt, cliActor)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created API key %s (%s) with scopes %s", k.ID, k.Name, strings.Join(k.Scopes, ","))
		if !k.ExpiresAt.IsZero() {
			fmt.Fprintf(stdout, ", expires %s", k.ExpiresAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(stdout, "\nkey: %s\nThe key is shown only now; store it in a secret.\n", key)
	case "list":
		keys, err := svc.APIKeys.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, keys)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tSTATE\tCREATED\tEXPIRES\tLAST USED")
		for _, k := range keys {
			state := "active"
			switch {
			case !k.RevokedAt.IsZero():
				state = "revoked"
			case !k.Usable(now):
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Scopes, ","), state,
				cliTime(k.CreatedAt), cliTime(k.ExpiresAt), cliTime(k.LastUsedAt))
		}
		return tw.Flush()
	case "revoke":
		if err := svc.APIKeys.RevokeAPIKey(ctx, *id, cliActor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "API key %s revoked\n", *id)
	}
	return nil
}

// runSetBinding changes the binding of many users at once: those named on
// the command line, every user in one mode (--from-mode), or everyone
// (--all). It applies the changes in batches of accounts.MaxBindingChanges,
// prints one line per user, and fails when any change failed.
func runSetBinding(ctx context.Context, args, environ []string, stdout io.Writer) error {
	const usageLine = "users set-binding: "
	fs := flag.NewFlagSet("users set-binding", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		mode        = fs.String("mode", "", "the new binding mode: none, lookup, username or custom")
		fromMode    = fs.String("from-mode", "", "change every user whose binding mode is this one")
		all         = fs.Bool("all", false, "change every user")
		contact     = fs.String("contact", "", "the contact id (GUID) of a lookup binding")
		contactName = fs.String("contact-name", "", "the contact's name, kept with a lookup binding")
		dryRun      = fs.Bool("dry-run", false, "print what would change and change nothing")
		allowShared = fs.Bool("allow-shared", false, "bind a lookup's contact even when other users are bound to it")
	)
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("%s%v\n\n%s", usageLine, err, usersUsage)}
	}
	logins := fs.Args()
	for _, l := range logins {
		if strings.HasPrefix(l, "-") {
			return usageError{fmt.Sprintf("%sflag %s after a login: flags come first", usageLine, l)}
		}
	}
	want := authz.Binding{Mode: authz.BindingMode(*mode)}
	if *contact != "" || *contactName != "" {
		want.Ref = &dataverse.EntityReference{ID: *contact, LogicalName: "contact", Name: *contactName}
	}
	switch selectors := len(logins); {
	case *mode == "":
		return usageError{usageLine + "--mode is required (none, lookup, username or custom)"}
	case *fromMode != "" && !authz.BindingMode(*fromMode).Valid():
		return usageError{usageLine + "--from-mode must be none, lookup, username or custom"}
	case selectors > 0 && (*all || *fromMode != ""), *all && *fromMode != "":
		return usageError{usageLine + "name users, or give --from-mode, or --all: only one of them"}
	case selectors == 0 && !*all && *fromMode == "":
		return usageError{usageLine + "name the users to change, or give --from-mode or --all"}
	case want.Mode == authz.BindingLookup && (selectors != 1 || *contact == ""):
		return usageError{usageLine + "a lookup binding names one contact: give --contact and exactly one login"}
	}
	want, err := authz.ValidateBinding(want)
	if err != nil {
		var verr *authz.ValidationError
		if errors.As(err, &verr) {
			return usageError{usageLine + verr.Message}
		}
		return err
	}
	svc, closeStore, err := openAccountsWith(ctx, environ, want.Mode == authz.BindingLookup)
	if err != nil {
		return err
	}
	defer closeStore()

	// targets are the users to change, each once, by id; users already
	// bound as wanted are skipped (a change would end their sessions for
	// nothing), and so are logins that name no one, reported as failures.
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	var targets []*authz.User
	seen := map[string]bool{}
	add := func(u *authz.User) {
		switch {
		case seen[u.ID]:
		case sameBinding(u.Binding, want):
			fmt.Fprintf(tw, "unchanged\t%s\t%s\n", u.Username, describeBinding(u.Binding))
		default:
			targets = append(targets, u)
		}
		seen[u.ID] = true
	}
	failed := 0
	if len(logins) > 0 {
		for _, l := range logins {
			u, err := svc.Accounts.LookupUser(ctx, l)
			switch {
			case errors.Is(err, authz.ErrNotFound):
				failed++
				fmt.Fprintf(tw, "failed\t%s\tno such user\n", l)
			case err != nil:
				return err
			default:
				add(u)
			}
		}
	} else {
		after := ""
		for {
			page, err := svc.Accounts.ListUsers(ctx, authz.UserFilter{After: after, Limit: authz.MaxListLimit})
			if err != nil {
				return err
			}
			for _, u := range page {
				if *all || bindingMode(u.Binding) == authz.BindingMode(*fromMode) {
					if !sameBinding(u.Binding, want) { // --all would list every unchanged user
						add(u)
					}
				}
			}
			if len(page) < authz.MaxListLimit {
				break
			}
			after = authz.NormalizeLogin(page[len(page)-1].Username)
		}
	}
	if *dryRun {
		for _, u := range targets {
			fmt.Fprintf(tw, "would set\t%s\t%s -> %s\n", u.Username, describeBinding(u.Binding), describeBinding(want))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dry run: %d users would change, nothing was changed\n", len(targets))
		if failed > 0 {
			return fmt.Errorf("users set-binding: %d of %d users not found", failed, len(targets)+failed)
		}
		return nil
	}
	changed := 0
	for batch := range slices.Chunk(targets, accounts.MaxBindingChanges) {
		changes := make([]accounts.BindingChange, len(batch))
		for i, u := range batch {
			changes[i] = accounts.BindingChange{User: u.ID, Binding: want, AllowShared: *allowShared}
		}
		results, err := svc.Accounts.SetBindings(ctx, changes, cliActor)
		if err != nil {
			return err
		}
		for i, r := range results {
			u := batch[i]
			if r.Err != nil {
				failed++
				fmt.Fprintf(tw, "failed\t%s\t%s\n", u.Username, bindingFailure(r.Err))
				continue
			}
			changed++
			fmt.Fprintf(tw, "ok\t%s\t%s -> %s\n", u.Username, describeBinding(u.Binding), describeBinding(want))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if changed+failed == 0 {
		fmt.Fprintln(stdout, "no users to change")
		return nil
	}
	fmt.Fprintf(stdout, "%d changed, %d failed\n", changed, failed)
	if failed > 0 {
		return fmt.Errorf("users set-binding: %d of %d changes failed", failed, changed+failed)
	}
	return nil
}

// bindingMode is b's mode with the empty mode as none.
func bindingMode(b authz.Binding) authz.BindingMode {
	if b.Mode == "" {
		return authz.BindingNone
	}
	return b.Mode
}

// sameBinding reports whether a and b bind the same way: the same mode
// and, for lookups, the same contact id and name.
func sameBinding(a, b authz.Binding) bool {
	if bindingMode(a) != bindingMode(b) {
		return false
	}
	if bindingMode(a) != authz.BindingLookup {
		return true
	}
	return a.Ref != nil && b.Ref != nil && strings.EqualFold(a.Ref.ID, b.Ref.ID) && a.Ref.Name == b.Ref.Name
}

// describeBinding shows a binding in one word, or two for a lookup.
func describeBinding(b authz.Binding) string {
	if b.Mode == authz.BindingLookup && b.Ref != nil {
		return "lookup " + b.Ref.ID
	}
	return string(bindingMode(b))
}

// bindingFailure says why one binding change failed, for the operator.
func bindingFailure(err error) string {
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		return verr.Message
	case errors.Is(err, authz.ErrNotFound):
		return "no such user (deleted meanwhile?)"
	case errors.Is(err, authz.ErrLastBreakGlassAdmin):
		return "refused: the last active, unbound admin (break-glass account) must stay unbound"
	case errors.Is(err, accounts.ErrBindingRefused):
		msg := strings.TrimPrefix(err.Error(), "accounts: ")
		var refused *accounts.BindingRefusedError
		if errors.As(err, &refused) && refused.Reason == accounts.RefusedContactBound {
			msg = strings.Replace(msg, "allow a shared contact", "give --allow-shared", 1)
		}
		if errors.As(err, &refused) && refused.Reason == accounts.RefusedNoDirectory {
			msg += " (set CRMGATE_DATAVERSE_URL and its credentials)"
		}
		return "refused: " + msg
	case errors.Is(err, dataverse.ErrUnavailable):
		return "Dataverse cannot be reached to check the contact; try again shortly"
	}
	return err.Error()
}

// cliTime formats t for a table; "-" for the zero time.
func cliTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// printJSON writes v as indented JSON, for the --json listings.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// usersSubUsage is the usage text of each users subcommand, printed by
// --help.
var usersSubUsage = map[string]string{
	"create": `usage: crmgate users create --username U --email E [--roles a,b] [--name N] [--password-stdin] [--must-change-password] [--status S]

Creates an account. Without --password-stdin a random password is
generated and printed once; with it, the first line of standard input is
the password. --status is active (default), pending (waiting for
approval: crmgate users approve) or disabled.`,
	"approve": `usage: crmgate users approve LOGIN...

` + approveHelp,
	"reject": `usage: crmgate users reject [--reason TEXT] LOGIN...

` + approveHelp,
	"invite-contacts": `usage: crmgate users invite-contacts (--contact ID... | --filter F) [--dry-run] [--json]

` + inviteHelp,
	"list": `usage: crmgate users list [--query Q] [--json]

Lists accounts ordered by username: id, username, email, status, roles, and
LOCKED ("until <time>" while a sign-in lockout runs, else "-"). --query
keeps users whose username or email contains Q; --json prints JSON, each
user with "locked": true or false.`,
	"set-password": `usage: crmgate users set-password --login U [--password-stdin] [--must-change-password]

Sets the password of the user (username or email), clears any lockout,
ends the user's sessions at their next check and revokes the user's
outstanding reset and set-password links. Without --password-stdin a
random password is generated and printed once. With
--must-change-password the user must choose a new one right after the
next sign-in (a temporary password); without it the flag is cleared.`,
	"force-password-change": `usage: crmgate users force-password-change (--login U | LOGIN)

Makes the user (username or email) choose a new password right after the
next sign-in: until then every page answers with a redirect to the change
page (API clients 403). The user's sessions end at their next check, so
the change comes at once. It is audited (user.password_set must_change).`,
	"set-roles": `usage: crmgate users set-roles --login U --roles a,b

Replaces the user's local roles; an empty --roles removes every role. The
last active, unbound admin keeps the admin role.`,
	"disable": `usage: crmgate users disable --login U

Disables the account; its sessions end at their next check.`,
	"enable": `usage: crmgate users enable --login U

Makes the account active, and says whether it is still locked out after
failed sign-ins (crmgate users unlock clears that).`,
	"unlock": `usage: crmgate users unlock (--login U | LOGIN)

Clears the sign-in lockout and the failed sign-in count of the user
(username or email), so that its owner can sign in at once. It is audited
(account.unlocked) and ends no session. Unlocking an account someone is
guessing at gives them fresh attempts: unlock when the owner asks.`,
	"set-binding": `usage: crmgate users set-binding --mode none|username|custom [--dry-run] (LOGIN... | --from-mode M | --all)
       crmgate users set-binding --mode lookup --contact GUID [--contact-name N] [--allow-shared] [--dry-run] LOGIN

` + setBindingHelp,
	"api-key": `usage: crmgate users api-key <command> [flags]

commands:
  create  --name N --scopes ` + strings.Join(apikeys.Scopes(), ",") + ` [--expires 720h]
  list    [--json]
  revoke  --id ID

An API key is printed once, when it is created; only its hash is stored.`,
	"api-key create": `usage: crmgate users api-key create --name N --scopes S1,S2 [--expires 720h]

Creates a REST API key allowing the scopes (` + strings.Join(apikeys.Scopes(), ", ") + `),
the permissions the policy file grants roles (the names users:bind,
users:password and users:invite of earlier versions are read as
bindings:write, users:credentials and users:credentials), and prints it once; only its hash is stored. --expires 0 (the default)
means it never expires.`,
	"api-key list": `usage: crmgate users api-key list [--json]

Lists every API key, revoked and expired ones included: id, name, scopes,
state, and when it was created, expires and was last used.`,
	"api-key revoke": `usage: crmgate users api-key revoke --id ID

Revokes the key at once and for good.`,
}

// usersHelp returns the usage of the users subcommand args names (args[0],
// and args[1] under api-key; a flag there means the level above), or none
// for an unknown one.
func usersHelp(args []string) (string, bool) {
	sub := args[0]
	if strings.HasPrefix(sub, "-") {
		return usersUsage, true
	}
	if sub == "api-key" && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		sub += " " + args[1]
	}
	text, ok := usersSubUsage[sub]
	return text, ok
}
