package main

import (
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
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/wiring"
	"github.com/crmgate/crmgate/config"
)

const invitationsUsage = `usage: crmgate invitations <command> [flags]

commands:
  create   (--email E | --contact GUID [--email E]) [--group --max N] [--expires 336h]
           [--roles a,b] [--redirect /path]
  list     [--json]
  resend   --id ID   (mails a new code; the old one stops working)
  revoke   --id ID

create stores a crmgate invitation and queues its mail (a link to
/.auth/invitation built from CRMGATE_PUBLIC_URL) in the same transaction;
the running gateway sends it. The code is in that mail only: it is never
printed, logged or stored (only its hash is). Redeeming it proves the
address it was sent to; a group invitation's members give and confirm
their own. With --contact the new account is bound to that Dataverse
contact (the CRMGATE_DATAVERSE_* settings are read to check it, and its
emailaddress1 is the address unless --email is given). Every change is
audited with the actor "cli".`

// runInvitations manages crmgate invitations directly in the store.
func runInvitations(ctx context.Context, args, environ []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{invitationsUsage}
	}
	sub, args := args[0], args[1:]
	if !slices.Contains([]string{"create", "list", "resend", "revoke"}, sub) {
		return usageError{fmt.Sprintf("unknown invitations command %q\n\n%s", sub, invitationsUsage)}
	}
	fs := flag.NewFlagSet("invitations "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		email    = fs.String("email", "", "the invited address")
		contact  = fs.String("contact", "", "the contact (GUID) to bind the new account to")
		group    = fs.Bool("group", false, "a group invitation, redeemed up to --max times")
		maxR     = fs.Int("max", 0, "the maximum redemptions of a group invitation")
		expires  = fs.Duration("expires", invitations.DefaultTTL, "how long the invitation is valid")
		roles    = fs.String("roles", "", "comma-separated local roles of the new account")
		redirect = fs.String("redirect", "", "a path on the site to go to after redeeming")
		id       = fs.Int64("id", 0, "the invitation's id")
		asJSON   = fs.Bool("json", false, "print JSON")
	)
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("invitations %s: %v\n\n%s", sub, err, invitationsUsage)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("invitations %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	if (sub == "resend" || sub == "revoke") && *id < 1 {
		return usageError{"invitations " + sub + ": --id is required"}
	}
	if sub == "create" && *email == "" && *contact == "" {
		return usageError{"invitations create: give --email or --contact"}
	}
	if *maxR != 0 && !*group {
		return usageError{"invitations create: --max needs --group"}
	}
	svc, closeStore, err := openInvitations(ctx, environ, sub == "create" && *contact != "")
	if err != nil {
		return err
	}
	defer closeStore()
	switch sub {
	case "create":
		ni := invitations.NewInvitation{Email: *email, ContactID: *contact, Kind: invitations.Single, MaxRedemptions: *maxR,
			TTL: *expires, RedirectURL: *redirect}
		if *group {
			ni.Kind = invitations.Group
		}
		if *roles != "" {
			ni.Roles = strings.Split(*roles, ",")
		}
		inv, err := svc.Create(ctx, ni, cliActor)
		if err != nil {
			return invitationCLIError("create", err)
		}
		return printInvitation(stdout, inv, *asJSON, "created")
	case "resend":
		inv, err := svc.Resend(ctx, *id, cliActor)
		if err != nil {
			return invitationCLIError("resend", err)
		}
		return printInvitation(stdout, inv, *asJSON, "resent")
	case "revoke":
		if err := svc.Revoke(ctx, *id, cliActor); err != nil {
			return invitationCLIError("revoke", err)
		}
		fmt.Fprintf(stdout, "revoked invitation %d\n", *id)
		return nil
	}
	var all []*invitations.Invitation
	for after := int64(0); ; {
		page, err := svc.List(ctx, after, authz.MaxListLimit)
		if err != nil {
			return err
		}
		all = append(all, page...)
		if len(page) < authz.MaxListLimit {
			break
		}
		after = page[len(page)-1].ID
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, inv := range all {
			if err := enc.Encode(inv); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tKIND\tREDEEMED\tEXPIRES\tSTATE")
	now := time.Now()
	for _, inv := range all {
		state := "open"
		switch {
		case !inv.RevokedAt.IsZero():
			state = "revoked"
		case inv.Redemptions >= inv.MaxRedemptions:
			state = "used"
		case !now.Before(inv.ExpiresAt):
			state = "expired"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\n", inv.ID, inv.Email, inv.Kind, inv.Redemptions, inv.MaxRedemptions,
			inv.ExpiresAt.Format(time.RFC3339), state)
	}
	return tw.Flush()
}

func printInvitation(w io.Writer, inv *invitations.Invitation, asJSON bool, verb string) error {
	if asJSON {
		return json.NewEncoder(w).Encode(inv)
	}
	fmt.Fprintf(w, "%s invitation %d for %s (%s, %d redemption(s), expires %s); its mail is queued\n",
		verb, inv.ID, inv.Email, inv.Kind, inv.MaxRedemptions, inv.ExpiresAt.Format(time.RFC3339))
	return nil
}

// invitationCLIError turns a refusal into a usage-style message.
func invitationCLIError(op string, err error) error {
	var verr *authz.ValidationError
	switch {
	case errors.As(err, &verr):
		return fmt.Errorf("invitations %s: %s: %s", op, verr.Field, verr.Message)
	case errors.Is(err, authz.ErrNotFound):
		return fmt.Errorf("invitations %s: no such invitation, or it is revoked, expired or used up", op)
	}
	return fmt.Errorf("invitations %s: %w", op, err)
}

// openInvitations opens the store and the invitation service: the mail
// composer needs CRMGATE_PUBLIC_URL (the links), and Dataverse is read
// only to check a contact.
func openInvitations(ctx context.Context, environ []string, withDataverse bool) (*invitations.Service, func(), error) {
	cfg, err := config.Load(environ)
	if err != nil {
		return nil, nil, err
	}
	if cfg.PublicURL == "" {
		return nil, nil, errors.New("invitations: CRMGATE_PUBLIC_URL is required: the mailed links are built from it")
	}
	composer, err := newComposer(cfg)
	if err != nil {
		return nil, nil, err
	}
	var dvErr error
	svc, closeStore, err := openAccountsWith(ctx, environ, withDataverse, func(o *wiring.Options) {
		o.Mail = composer
		if withDataverse {
			if !cfg.Dataverse.Configured() {
				dvErr = errors.New("invitations: --contact needs Dataverse (CRMGATE_DATAVERSE_URL)")
				return
			}
			dv, err := newDataverse(cfg, nil, nil, nil)
			if err != nil {
				dvErr = err
				return
			}
			o.Invitations = dv.directory
		}
	})
	if err != nil {
		return nil, nil, err
	}
	if dvErr != nil {
		closeStore()
		return nil, nil, dvErr
	}
	return svc.Invitations, closeStore, nil
}
