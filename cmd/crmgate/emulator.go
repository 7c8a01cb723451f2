package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

const emulatorUsage = `usage: crmgate dataverse-emulator [--listen ADDR] [--seed FILE] [--tenant ID] [--client-id ID] [--actions A,B]

Runs the Dataverse Web API emulator: the Entra token endpoint at
/{tenant}/oauth2/v2.0/token and the Web API at /api/data/v9.2/. The client
secret is read from CRMGATE_EMULATOR_CLIENT_SECRET (never from the command
line); when unset, one is generated and printed. For development and tests
only: it keeps everything in memory.`

// runEmulator serves the Dataverse emulator until ctx ends.
func runEmulator(ctx context.Context, args, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dataverse-emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listenAddr := fs.String("listen", "127.0.0.1:8090", "address to listen on")
	seedFile := fs.String("seed", "", "JSON seed file of contacts, accounts, web roles, invitations and associations")
	tenant := fs.String("tenant", "emulator.local", "tenant ID accepted by the token endpoint (a GUID or domain name)")
	clientID := fs.String("client-id", "00000000-0000-4000-8000-00000000c0de", "client (application) ID accepted by the token endpoint, a GUID as in Entra ID")
	actions := fs.String("actions", "", "comma-separated unbound action names to accept (answered with 204)")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("dataverse-emulator: %v\n\n%s", err, emulatorUsage)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("dataverse-emulator: unexpected argument %q\n\n%s", fs.Arg(0), emulatorUsage)}
	}
	secret := envValue(environ, "CRMGATE_EMULATOR_CLIENT_SECRET")
	generated := secret == ""
	if generated {
		secret = randomSecret()
	}
	ln, err := net.Listen("tcp", *listenAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listenAddr, err)
	}
	base := "http://" + ln.Addr().String()
	opts := dataversetest.Options{BaseURL: base, TenantID: *tenant,
		Clients: []dataversetest.Client{{ID: *clientID, Secret: secret}}, Actions: map[string]dataversetest.Action{}}
	for _, a := range splitList(*actions) {
		opts.Actions[a] = dataversetest.Action{}
	}
	h := dataversetest.NewHandler(opts)
	if *seedFile != "" {
		f, err := os.Open(*seedFile)
		if err != nil {
			_ = ln.Close()
			return err
		}
		err = h.LoadSeed(f)
		f.Close()
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("%s: %w", *seedFile, err)
		}
	}
	fmt.Fprintf(stdout, "Dataverse emulator: %s/api/data/v9.2/\nToken endpoint:     %s/%s/oauth2/v2.0/token (authority host %s)\nClient:             %s\n",
		base, base, *tenant, base, *clientID)
	if generated {
		fmt.Fprintf(stdout, "Client secret:      %s (set CRMGATE_EMULATOR_CLIENT_SECRET to choose one)\n", secret)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envValue(environ []string, name string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// randomSecret returns a fresh client secret for the emulator.
func randomSecret() string { return rand.Text() }
