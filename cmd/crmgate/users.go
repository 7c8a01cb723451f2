package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/store"
	"github.com/crmgate/crmgate/config"
)

const usersUsage = `usage: crmgate users <command> [flags]

commands:
  create        --username U --email E [--roles a,b] [--name N] [--password-stdin] [--must-change-password]
  list          [--query Q] [--json]
  set-password  --login U [--password-stdin]
  set-roles     --login U --roles a,b   (empty --roles removes every role)
  disable       --login U
  enable        --login U

Without --password-stdin a random password is generated and printed once.
Only CRMGATE_DATABASE_URL and the CRMGATE_PASSWORD_* settings are read, so
a break-glass admin can be recovered even when the rest of the
configuration is broken.`

// runUsers manages accounts directly in the store.
func runUsers(ctx context.Context, args, environ []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{usersUsage}
	}
	sub, args := args[0], args[1:]
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
		query      = fs.String("query", "", "filter by username or email")
		asJSON     = fs.Bool("json", false, "print JSON")
	)
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("users %s: %v\n\n%s", sub, err, usersUsage)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("users %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	cfg, err := config.Load(environ)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	svc, err := authz.NewService(db, authz.Options{Password: authz.PasswordParams{Memory: cfg.Password.MemoryKiB,
		Iterations: cfg.Password.Iterations, Parallelism: cfg.Password.Parallelism,
		SaltLen: authz.DefaultPasswordParams.SaltLen, KeyLen: authz.DefaultPasswordParams.KeyLen}})
	if err != nil {
		return err
	}
	const actor = "cli"
	password := func() (string, bool, error) {
		if *pwStdin {
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return "", false, err
			}
			return strings.TrimRight(line, "\r\n"), false, nil
		}
		return rand.Text(), true, nil
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
		u, err := svc.CreateUser(ctx, authz.NewUser{Username: *username, Email: *email, DisplayName: *name,
			Password: pw, Roles: splitList(*roles), MustChangePassword: *mustChange}, actor)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created user %s (id %s)\n", u.Username, u.ID)
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	case "list":
		users, err := svc.ListUsers(ctx, authz.UserFilter{Query: *query, Limit: authz.MaxListLimit})
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(users)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSERNAME\tEMAIL\tSTATUS\tROLES")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Email, u.Status, strings.Join(u.Roles, ","))
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
		if err := svc.SetPassword(ctx, *login, pw, actor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password changed for %s; existing sessions end at their next check\n", *login)
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	case "set-roles":
		if err := needLogin(); err != nil {
			return err
		}
		if err := svc.SetRoles(ctx, *login, splitList(*roles), actor); err != nil {
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
		if err := svc.SetStatus(ctx, *login, st, actor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is now %s\n", *login, st)
	default:
		return usageError{fmt.Sprintf("unknown users command %q\n\n%s", sub, usersUsage)}
	}
	return nil
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
