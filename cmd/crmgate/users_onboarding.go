package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/config"
	"github.com/crmgate/crmgate/dataverse"
)

// The help of the onboarding subcommands, in the users usage and their own.
const (
	approveHelp = `approve makes each named user (username, email or id) that waits for
approval active and mails them a sign-in link; reject deletes each one's
account (so that the person may register again, and registration never
reveals that the address was once registered) and mails them, with the
--reason when given. Each user is decided on its own: one line per user,
exit status 1 if any failed (not waiting for approval, no such user).
Decisions are audited and send the approved/rejected lifecycle events.
The mails wait in the outbox until the running gateway delivers them.
CRMGATE_PUBLIC_URL is read: the mails' links are built from it.`

	inviteHelp = `invite-contacts creates, for each Dataverse contact that has no account,
an active account without a password bound to the contact (lookup), with
the contact's email address as its username (or the contact column
CRMGATE_CREDENTIALS_USERNAME_COLUMN), and mails it a link to choose its
password (valid CRMGATE_CREDENTIALS_SET_PASSWORD_TTL, once). Give up to
500 contact ids (--contact, repeated or comma-separated), or a --filter
in the grammar of the policy file's contact filters without placeholders
("jobtitle eq 'partner' and statecode eq 0"; more than 500 matches are
refused). Each contact succeeds or fails on its own: one line per contact,
exit status 1 if any failed. A contact that has an account already is
skipped and gets no mail, also when its earlier link was never used, so a
rerun creates and sends nothing twice (for a new link, the person asks
for a password reset). --dry-run checks everything and changes nothing.
The CRMGATE_DATAVERSE_* settings and CRMGATE_PUBLIC_URL are read; the
mails wait in the outbox until the running gateway delivers them.`
)

// openOnboarding builds the identity layer for the onboarding commands:
// openAccountsWith (Dataverse when withDataverse) with the mail composer,
// which needs CRMGATE_PUBLIC_URL.
func openOnboarding(ctx context.Context, environ []string, withDataverse bool) (*wiring.Services, func(), error) {
	cfg, err := config.Load(environ)
	if err != nil {
		return nil, nil, err
	}
	if cfg.PublicURL == "" {
		return nil, nil, errors.New("CRMGATE_PUBLIC_URL is required: the mails' links are built from it")
	}
	if err := cfg.Validate(); err != nil {
		// Only the settings these commands read must be right.
		for _, e := range joinedErrors(err) {
			for _, name := range []string{"CRMGATE_PUBLIC_URL", "CRMGATE_AUTH_PREFIX", "CRMGATE_CREDENTIALS_", "CRMGATE_SITE_NAME", "CRMGATE_LOGO_URL", "CRMGATE_BRAND_COLOR", "CRMGATE_TEMPLATES_DIR"} {
				if strings.HasPrefix(e.Error(), name) {
					return nil, nil, fmt.Errorf("configuration: %w", e)
				}
			}
		}
	}
	composer, err := newComposer(cfg)
	if err != nil {
		return nil, nil, err
	}
	svc, closeStore, err := openAccountsWith(ctx, environ, withDataverse, func(o *wiring.Options) { o.Mail = composer })
	if err != nil {
		return nil, nil, err
	}
	if svc.Onboarding == nil {
		closeStore()
		return nil, nil, errors.New("users: the onboarding service was not built")
	}
	return svc, closeStore, nil
}

// joinedErrors unpacks an errors.Join.
func joinedErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// runDecide approves or rejects the users named on the command line.
func runDecide(ctx context.Context, sub string, args, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("users "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	reason := ""
	if sub == "reject" {
		fs.StringVar(&reason, "reason", "", "a reason for the mail (at most 500 characters)")
	}
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("users %s: %v\n\n%s", sub, err, usersSubUsage[sub])}
	}
	logins := fs.Args()
	for _, l := range logins {
		if strings.HasPrefix(l, "-") {
			return usageError{fmt.Sprintf("users %s: flag %s after a login: flags come first", sub, l)}
		}
	}
	if len(logins) == 0 {
		return usageError{fmt.Sprintf("users %s: name the users (username, email or id)\n\n%s", sub, usersSubUsage[sub])}
	}
	if _, err := onboarding.ValidateReason(reason); err != nil {
		return usageError{fmt.Sprintf("users %s: --reason: %s", sub, validationMessage(err))}
	}
	svc, closeStore, err := openOnboarding(ctx, environ, false)
	if err != nil {
		return err
	}
	defer closeStore()
	past := map[string]string{"approve": "approved", "reject": "rejected"}[sub]
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	done, failed := 0, 0
	for batch := range slices.Chunk(logins, onboarding.MaxDecisions) {
		var res []onboarding.Decision
		if sub == "approve" {
			res, err = svc.Onboarding.ApproveMany(ctx, batch, cliActor)
		} else {
			res, err = svc.Onboarding.RejectMany(ctx, batch, reason, cliActor)
		}
		if err != nil {
			return err
		}
		for _, d := range res {
			if d.Err != nil {
				failed++
				fmt.Fprintf(tw, "failed\t%s\t%s\n", cliText(d.User), decisionFailure(d.Err))
				continue
			}
			done++
			fmt.Fprintf(tw, "%s\t%s\t%s\n", past, cliText(d.User), d.ID)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d %s, %d failed; the mails are sent by the running gateway\n", done, past, failed)
	if failed > 0 {
		return fmt.Errorf("users %s: %d of %d users failed", sub, failed, done+failed)
	}
	return nil
}

// decisionFailure says why a decision failed, for the command's output.
func decisionFailure(err error) string {
	switch {
	case errors.Is(err, onboarding.ErrNotPending):
		return "not waiting for approval"
	case errors.Is(err, authz.ErrNotFound):
		return "no such user"
	case errors.Is(err, authz.ErrStale):
		return "the user kept changing; try again"
	}
	return err.Error()
}

// runInviteContacts generates credentials for contacts.
func runInviteContacts(ctx context.Context, args, environ []string, stdout io.Writer) error {
	const usageLine = "users invite-contacts: "
	fs := flag.NewFlagSet("users invite-contacts", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var ids []string
	fs.Func("contact", "a contact id (GUID); repeat it or separate ids with commas", func(v string) error {
		ids = append(ids, splitList(v)...)
		return nil
	})
	filter := fs.String("filter", "", "a contact filter, e.g. \"jobtitle eq 'partner' and statecode eq 0\"")
	dryRun := fs.Bool("dry-run", false, "check every contact and change nothing")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("%s%v\n\n%s", usageLine, err, usersSubUsage["invite-contacts"])}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("%sunexpected argument %q (give contacts with --contact)", usageLine, fs.Arg(0))}
	case (len(ids) > 0) == (*filter != ""):
		return usageError{usageLine + "give --contact ids or a --filter, one of them"}
	case len(ids) > onboarding.MaxInvite:
		return usageError{fmt.Sprintf("%sat most %d contacts at once; split the list", usageLine, onboarding.MaxInvite)}
	}
	svc, closeStore, err := openOnboarding(ctx, environ, true)
	if err != nil {
		return err
	}
	defer closeStore()
	res, err := svc.Onboarding.InviteContacts(ctx, onboarding.InviteRequest{ContactIDs: ids, Filter: *filter, DryRun: *dryRun}, cliActor)
	switch {
	case errors.Is(err, onboarding.ErrNoDirectory):
		return errors.New(usageLine + "no Dataverse is configured (CRMGATE_DATAVERSE_URL)")
	case errors.Is(err, dataverse.ErrUnavailable):
		return fmt.Errorf("%sDataverse cannot be reached: %w", usageLine, err)
	case err != nil:
		var verr *authz.ValidationError
		if errors.As(err, &verr) {
			return usageError{usageLine + verr.Message}
		}
		return err
	}
	counts := map[onboarding.Outcome]int{}
	for _, r := range res {
		counts[r.Outcome]++
	}
	if *asJSON {
		if err := printJSON(stdout, res); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		for _, r := range res {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ReplaceAll(string(r.Outcome), "_", " "), cliText(r.ContactID), cliText(r.Username), r.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if *dryRun {
			fmt.Fprintf(stdout, "dry run: %d would be created, %d skipped, %d failed; nothing was changed\n",
				counts[onboarding.WouldCreate], counts[onboarding.Skipped], counts[onboarding.Failed])
		} else {
			fmt.Fprintf(stdout, "%d created, %d skipped, %d failed; the set-password mails are sent by the running gateway\n",
				counts[onboarding.Created], counts[onboarding.Skipped], counts[onboarding.Failed])
		}
	}
	if n := counts[onboarding.Failed]; n > 0 {
		return fmt.Errorf("%s%d of %d contacts failed", usageLine, n, len(res))
	}
	return nil
}
