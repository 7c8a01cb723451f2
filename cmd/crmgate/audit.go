package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
)

const auditUsage = `usage: crmgate audit [--user LOGIN] [--actor A] [--type T] [--since T] [--until T] [--limit N] [--json]

Prints the audit trail, newest first: sign-ins and their failures with a
reason code, lockouts and unlocks, throttling, sign-outs, account, role,
status, binding and profile changes, and API key creation, revocation, use
and refusal. No event holds a password, token or cookie.

flags:
  --user LOGIN   events about this user: an id, username or email (the id
                 of a deleted user works too)
  --actor A      events caused by this actor: a user id, cli, apikey:<id>,
                 dataverse or system
  --type T       events of this type, e.g. signin.failed, account.locked,
                 apikey.used (--action is the same flag)
  --since T      events at or after T: an RFC 3339 time such as
                 2026-03-01T12:00:00Z, or a duration such as 24h meaning
                 that long ago
  --until T      events before T (same forms)
  --limit N      at most N events (default 100; 0 prints every match)
  --json         one JSON object per line instead of aligned columns

Only CRMGATE_DATABASE_URL and the CRMGATE_PASSWORD_* settings are read.`

// runAudit prints the audit trail, filtered, as aligned text or JSON lines.
func runAudit(ctx context.Context, args, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		user   = fs.String("user", "", "")
		actor  = fs.String("actor", "", "")
		typ    = fs.String("type", "", "")
		since  = fs.String("since", "", "")
		until  = fs.String("until", "", "")
		limit  = fs.Int("limit", 100, "")
		asJSON = fs.Bool("json", false, "")
	)
	fs.StringVar(typ, "action", "", "")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("audit: %v\n\n%s", err, auditUsage)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("audit: unexpected argument %q\n\n%s", fs.Arg(0), auditUsage)}
	}
	if *limit < 0 {
		return usageError{"audit: --limit must not be negative (0 prints every match)"}
	}
	f := audit.Filter{Actor: *actor, Type: *typ}
	now := time.Now()
	for _, b := range []struct {
		name, value string
		into        *time.Time
	}{{"since", *since, &f.Since}, {"until", *until, &f.Until}} {
		if b.value == "" {
			continue
		}
		t, err := audit.ParseTime(b.name, b.value, now)
		if err != nil {
			return usageError{"audit: --" + b.name + ": " + validationMessage(err)}
		}
		*b.into = t
	}
	// Check the filter before opening the store, as a usage error.
	probe := f
	probe.UserID = *user
	if err := probe.Validate(); err != nil {
		return usageError{"audit: " + validationMessage(err)}
	}
	svc, closeStore, err := openAccounts(ctx, environ)
	if err != nil {
		return err
	}
	defer closeStore()
	if *user != "" {
		f.UserID = *user // a deleted user's id filters as given
		u, err := svc.Accounts.LookupUser(ctx, *user)
		switch {
		case err == nil:
			f.UserID = u.ID
		case !errors.Is(err, authz.ErrNotFound):
			return err
		}
	}

	enc := json.NewEncoder(stdout)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, "ID\tTIME\tTYPE\tACTOR\tUSER\tADDRESS\tDETAIL")
	}
	printed := 0
	for {
		f.Limit = authz.MaxListLimit
		if *limit > 0 {
			f.Limit = min(authz.MaxListLimit, *limit-printed)
		}
		page, err := svc.Audit.ListAudit(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range page {
			if *asJSON {
				if err := enc.Encode(e); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.UTC().Format(time.RFC3339Nano),
				cliText(e.Type), cliText(e.Actor), cliText(e.UserID), cliText(e.ClientAddr), cliText(e.Detail))
		}
		printed += len(page)
		if len(page) < f.Limit || (*limit > 0 && printed >= *limit) {
			break
		}
		f.Before = page[len(page)-1].ID
	}
	if *asJSON {
		return nil
	}
	return tw.Flush()
}

// validationMessage is the message of a *authz.ValidationError, else the error text.
func validationMessage(err error) string {
	var verr *authz.ValidationError
	if errors.As(err, &verr) {
		return verr.Message
	}
	return err.Error()
}

// cliText makes s safe for one cell of a terminal table: "-" when empty,
// quoted with escapes when it holds a control character, a tab or an
// invalid byte (a forged newline or terminal escape sequence in a stored
// value must not reach the operator's terminal as such).
func cliText(s string) string {
	if s == "" {
		return "-"
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}
