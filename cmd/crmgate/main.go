// Command crmgate is the crmgate authentication gateway. This package only
// wires: configuration in, packages connected, servers run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "crmgate:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "crmgate:", err)
		os.Exit(1)
	}
}

// usageError is a wrong command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: crmgate [command] [flags]

commands:
  serve          run the gateway (default)
  dev            run the gateway with a built-in demo site, keys and accounts
  check-config   validate the configuration and policy file, print every problem
  users          manage accounts (create, list, set-password, set-roles, set-binding, disable, enable, unlock) and API keys (api-key)
  invitations    create, list, resend and revoke invitations (mailed codes that make an account)
  audit          print the audit trail (filter by user, actor, type and time; text or JSON lines)
  gen-keys       print a new cookie key and signing key
  dataverse-emulator  run the Dataverse Web API emulator (development and tests)
  probe URL...   GET each URL, fail unless every answer is 2xx (health checks, helm test)
  version        print the version and the Go version it was built with
  help [COMMAND] print this help, or a command's

Every command takes --help (or -h). Configuration comes from CRMGATE_*
environment variables; see the README.`

const serveUsage = `usage: crmgate serve

Runs the gateway. It takes no flags: the configuration comes from CRMGATE_*
environment variables (see the README's configuration reference), and
serve refuses to start while any of it is invalid.`

const devUsage = `usage: crmgate dev [--listen ADDR] [--ops-listen ADDR]

Runs the gateway with everything generated, for trying it out: a temporary
SQLite database, fresh keys, a demo site behind it, a demo policy and demo
accounts, whose passwords it prints. Nothing is kept when it stops.

flags:
  --listen ADDR      address of the gateway (default 127.0.0.1:8080)
  --ops-listen ADDR  address of the ops listener: health and metrics (default 127.0.0.1:9090)`

const checkConfigUsage = `usage: crmgate check-config

Builds everything serve would build from the CRMGATE_* environment
variables and the policy file, starts nothing, and prints every problem at
once; the exit status is non-zero when there is any.`

const genKeysUsage = `usage: crmgate gen-keys [--cookie-keys-file FILE] [--signing-key-file FILE]

Prints a new cookie key (CRMGATE_COOKIE_KEYS) and a new ES256 signing key
(CRMGATE_SIGNING_KEYS, PEM). Both are secrets: keep them out of logs and
repositories. With --cookie-keys-file or --signing-key-file the key is
written to that new file (mode 0600; an existing file is never
overwritten) instead, and the CRMGATE_*_FILE setting naming it is printed.`

const versionUsage = `usage: crmgate version

Prints the version stamped at build time (go build -ldflags "-X
main.version=..."; else the module version or the source revision Go
recorded), and the Go version and platform it was built for.`

const helpUsage = `usage: crmgate help [COMMAND [SUBCOMMAND]]

Prints the usage of crmgate, or of a command.`

// commandUsage is the usage text of each top-level command, printed by
// --help; runUsers and runAPIKeys have their own for their subcommands.
var commandUsage = map[string]string{
	"serve": serveUsage, "dev": devUsage, "check-config": checkConfigUsage, "users": usersUsage,
	"invitations": invitationsUsage, "audit": auditUsage, "gen-keys": genKeysUsage, "dataverse-emulator": emulatorUsage,
	"probe": probeUsage, "version": versionUsage, "help": helpUsage,
}

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, environ []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if text, ok := helpFor(cmd, args); ok {
		fmt.Fprintln(stdout, text)
		return nil
	}
	switch cmd {
	case "serve":
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		return runServe(ctx, environ, stderr)
	case "dev":
		return runDev(ctx, args, environ, stdout, stderr)
	case "check-config":
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		return runCheckConfig(ctx, environ, stdout)
	case "users":
		return runUsers(ctx, args, environ, stdin, stdout)
	case "invitations":
		return runInvitations(ctx, args, environ, stdout)
	case "audit":
		return runAudit(ctx, args, environ, stdout)
	case "gen-keys":
		return runGenKeys(stdout, args...)
	case "dataverse-emulator":
		return runEmulator(ctx, args, environ, stdout)
	case "probe":
		return runProbe(ctx, stdout, args...)
	case "version":
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		printVersion(stdout)
		return nil
	case "help", "-h", "--h", "-help", "--help":
		if len(args) == 0 {
			fmt.Fprintln(stdout, usage)
			return nil
		}
		if text, ok := helpFor(args[0], append(args[1:], "--help")); ok {
			fmt.Fprintln(stdout, text)
			return nil
		}
		return usageError{fmt.Sprintf("help: unknown command %q\n\n%s", strings.Join(args, " "), usage)}
	default:
		return usageError{fmt.Sprintf("unknown command %q\n\n%s", cmd, usage)}
	}
}

// noArgs refuses any argument to a command that takes none.
func noArgs(cmd string, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q\n\n%s", cmd, args[0], commandUsage[cmd])}
	}
	return nil
}

// isHelpFlag reports whether arg asks for help, in any spelling the flag
// package accepts.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "--h" || arg == "-help" || arg == "--help"
}

// helpFor returns the usage text of command cmd (and of its subcommand,
// for users) when args ask for help: a help flag before any "--". An
// unknown command or subcommand gets none, so that it fails as unknown.
func helpFor(cmd string, args []string) (string, bool) {
	end := slices.Index(args, "--")
	if end < 0 {
		end = len(args)
	}
	if !slices.ContainsFunc(args[:end], isHelpFlag) {
		return "", false
	}
	text, ok := commandUsage[cmd]
	if !ok {
		return "", false
	}
	if cmd == "users" && len(args) > 0 {
		return usersHelp(args)
	}
	return text, true
}
