package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness is the gateway's ready flag for /readyz. The zero value is not
// ready; SetReady(true) once configuration and keys are loaded.
type Readiness struct{ ready atomic.Bool }

// SetReady sets the flag.
func (r *Readiness) SetReady(v bool) { r.ready.Store(v) }

// Ready reports the flag.
func (r *Readiness) Ready() bool { return r.ready.Load() }

// OpsHandler serves /livez, /readyz and /metrics. It belongs on a separate
// listener that is not exposed publicly.
func OpsHandler(ready *Readiness, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}

// Listeners are the gateway's two listeners and their handlers.
type Listeners struct {
	Public, Ops               net.Listener
	PublicHandler, OpsHandler http.Handler
	Ready                     *Readiness
	// ShutdownDelay is how long /readyz fails before the public listener
	// stops accepting, so load balancers stop sending traffic first. Zero
	// closes the listener at once: a load balancer that has not noticed
	// yet sends requests to a closed port.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the drain of in-flight requests after the
	// delay; requests still running then are cut off. Zero cuts them off
	// at once.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Serve runs both servers until ctx is done, then shuts down gracefully:
// /readyz answers 503 at once, the public listener keeps accepting and
// serving for ShutdownDelay (each answer with "Connection: close", so
// that kept-alive clients reconnect, elsewhere), then stops accepting and
// in-flight requests have at most ShutdownTimeout to finish (the rest are
// cut off); the ops server stops last, answering /readyz with 503 until
// then. It returns the first serving error, or nil after a clean shutdown.
func (l Listeners) Serve(ctx context.Context) error {
	log := l.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// While draining, every answer of the public listener says
	// "Connection: close" (on HTTP/2, a GOAWAY), so that a client keeping
	// its connection alive opens a new one for its next request. A load
	// balancer that routes by readiness stops sending here anyway; a
	// client that does not (a connection through a Kubernetes Service's
	// virtual IP stays on its pod, whatever the endpoints say) otherwise
	// keeps its connection until Shutdown closes it idle, and a request it
	// sends at that instant fails (a POST cannot be retried safely).
	var draining atomic.Bool
	publicHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		l.PublicHandler.ServeHTTP(w, r)
	})
	public := &http.Server{Handler: publicHandler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ops := &http.Server{Handler: l.OpsHandler, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- public.Serve(l.Public) }()
	go func() { errc <- ops.Serve(l.Ops) }()
	l.Ready.SetReady(true)
	log.Info("listening", "public", l.Public.Addr().String(), "ops", l.Ops.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	l.Ready.SetReady(false)
	draining.Store(true)
	if serveErr == nil && l.ShutdownDelay > 0 {
		log.Info("shutting down: not ready, draining", "delay", l.ShutdownDelay)
		time.Sleep(l.ShutdownDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), l.ShutdownTimeout)
	defer cancel()
	if err := public.Shutdown(sctx); err != nil {
		log.Warn("public listener did not drain in time", "err", err)
		_ = public.Close()
	}
	_ = ops.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	log.Info("stopped")
	return nil
}
