// Command benchtarget is test tooling for .ci/bench: the two servers the
// gateway is measured against, each a few lines so that nothing but the
// code under test costs time.
//
//	benchtarget upstream -listen 127.0.0.1:18081 [-size 1024]
//	benchtarget bare -listen 127.0.0.1:18082 -upstream http://127.0.0.1:18081 [-max-idle-per-host 256] [-buffer-pool=false]
//
// Mode upstream answers every request with a fixed body of -size bytes,
// except GET /whoami, which answers the X-Current-User-Id header it
// received (empty for anonymous requests), so a script can check that the
// gateway forwarded a signed-in identity. Mode bare is an
// httputil.ReverseProxy to -upstream with the documented Rewrite
// (SetURL, SetXForwarded) and the same tuned transport as crmgate
// (proxy.NewTransport): the baseline the gateway's overhead is read against.
//
// Both serve with the timeouts of crmgate's public listener and stop
// gracefully on SIGINT or SIGTERM. Neither authenticates anything: never
// expose them beyond loopback.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/crmgate/crmgate/proxy"
)

const usage = `usage:
  benchtarget upstream -listen ADDR [-size N]
  benchtarget bare -listen ADDR -upstream URL [-max-idle-per-host N]`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchtarget:", err)
		os.Exit(2)
	}
}

// run is main without the process.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	mode, args := args[0], args[1:]
	fs := flag.NewFlagSet("benchtarget "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (loopback only)")
	var handler func() (http.Handler, error)
	switch mode {
	case "upstream":
		size := fs.Int("size", 1024, "bytes of the fixed response body")
		handler = func() (http.Handler, error) {
			if *size < 0 {
				return nil, fmt.Errorf("-size %d is negative", *size)
			}
			return upstream(*size), nil
		}
	case "bare":
		target := fs.String("upstream", "", "URL of the upstream to proxy to (required)")
		maxIdle := fs.Int("max-idle-per-host", 256, "idle keep-alive connections kept to the upstream; Go's default of 2 starves a busy proxy")
		pool := fs.Bool("buffer-pool", true, "pool the 32 KiB copy buffers as crmgate does (false: ReverseProxy's default, one allocation per request)")
		handler = func() (http.Handler, error) { return bare(*target, *maxIdle, *pool) }
	default:
		return fmt.Errorf("unknown mode %q\n%s", mode, usage)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), usage)
	}
	if host, _, err := net.SplitHostPort(*listen); err != nil || !isLoopback(host) {
		return fmt.Errorf("-listen %q is not a loopback address", *listen)
	}
	h, err := handler()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "benchtarget %s listening on %s\n", mode, ln.Addr())
	return serve(ctx, ln, h)
}

// isLoopback reports whether host is localhost or a loopback IP. The
// servers authenticate nothing, so they refuse any other address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// upstream answers a fixed body of size bytes, and GET /whoami with the
// identity the gateway forwarded.
func upstream(size int) http.Handler {
	body := bytes.Repeat([]byte{'x'}, size)
	length := strconv.Itoa(size)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		if r.URL.Path == "/whoami" {
			_, _ = io.WriteString(w, r.Header.Get("X-Current-User-Id"))
			return
		}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
}

// bare is a ReverseProxy to target with crmgate's upstream transport.
func bare(target string, maxIdlePerHost int, pool bool) (http.Handler, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-upstream %q is not an absolute http(s) URL", target)
	}
	if maxIdlePerHost <= 0 {
		return nil, fmt.Errorf("-max-idle-per-host %d must be positive", maxIdlePerHost)
	}
	rp := &httputil.ReverseProxy{
		Transport: proxy.NewTransport(maxIdlePerHost, 5*time.Second, 0),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
	}
	if pool {
		rp.BufferPool = proxy.NewBufferPool() // as crmgate has: the strictest baseline
	}
	return rp, nil
}

// serve runs h on ln until ctx ends, then drains for up to five seconds.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
