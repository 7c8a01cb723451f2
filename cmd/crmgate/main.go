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
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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
  users          manage accounts (create, list, set-password, set-roles, set-binding, disable, enable) and API keys (api-key)
  gen-keys       print a new cookie key and signing key
  dataverse-emulator  run the Dataverse Web API emulator (development and tests)
  version        print the version

Configuration comes from CRMGATE_* environment variables; see the README.`

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, environ []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, environ, stderr)
	case "dev":
		return runDev(ctx, args, environ, stdout, stderr)
	case "check-config":
		return runCheckConfig(ctx, environ, stdout)
	case "users":
		return runUsers(ctx, args, environ, stdin, stdout)
	case "gen-keys":
		return runGenKeys(stdout)
	case "dataverse-emulator":
		return runEmulator(ctx, args, environ, stdout)
	case "version":
		fmt.Fprintln(stdout, "crmgate", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return usageError{fmt.Sprintf("unknown command %q\n\n%s", cmd, usage)}
	}
}
