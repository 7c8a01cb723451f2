package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

const probeUsage = `usage: crmgate probe [--timeout DURATION] URL...

Sends GET to each http or https URL in turn and prints one line per answer;
the exit status is non-zero unless every answer is 2xx. Redirects are not
followed (a 3xx fails). For health checks where the image has no shell or
curl, as the Helm chart's helm test pod does:

  crmgate probe http://crmgate:9090/readyz http://crmgate:8080/.auth/jwks.json

flags:
  --timeout DURATION  longest wait for each answer (default 5s)`

// runProbe asks each URL of args and fails unless every one answers 2xx.
// It reads no configuration.
func runProbe(ctx context.Context, stdout io.Writer, args ...string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 5*time.Second, "longest wait for each answer")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("probe: %v\n\n%s", err, probeUsage)}
	}
	if fs.NArg() == 0 {
		return usageError{"probe: no URL given\n\n" + probeUsage}
	}
	if *timeout <= 0 {
		return usageError{fmt.Sprintf("probe: --timeout must be positive, got %s", *timeout)}
	}
	for _, raw := range fs.Args() {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError{fmt.Sprintf("probe: %q is not an absolute http or https URL", raw)}
		}
	}
	client := &http.Client{
		Timeout:       *timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var failed []error
	for _, u := range fs.Args() {
		if err := probeOne(ctx, client, u); err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", u, err)
			failed = append(failed, err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s\n", u)
	}
	if len(failed) > 0 {
		return fmt.Errorf("probe: %d of %d URLs failed", len(failed), fs.NArg())
	}
	return nil
}

func probeOne(ctx context.Context, client *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
