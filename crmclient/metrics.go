package crmclient

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the crmgate_dataverse_* series. Labels hold operation names
// and status codes only, never ids.
type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	breakerState prometheus.Gauge
	inFlight     prometheus.Gauge
	// concurrencyLimit is the current bound on requests in flight.
	concurrencyLimit prometheus.Gauge
	// budgetSpent counts interactive calls that gave up within their budget.
	budgetSpent *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_dataverse_requests_total",
			Help: "HTTP attempts to the Dataverse Web API by operation and status code (\"error\" for no answer, \"breaker_open\" for calls refused by the open breaker).",
		}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crmgate_dataverse_request_duration_seconds",
			Help:    "Duration of HTTP attempts to the Dataverse Web API, body read included.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_dataverse_retries_total",
			Help: "Retries of Dataverse Web API calls by operation.",
		}, []string{"operation"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_dataverse_throttled_total",
			Help: "429 Too Many Requests answers of the Dataverse Web API by operation.",
		}, []string{"operation"}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crmgate_dataverse_breaker_state",
			Help: "State of the Dataverse circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crmgate_dataverse_in_flight_requests",
			Help: "HTTP requests to the Dataverse Web API in flight.",
		}),
		concurrencyLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crmgate_dataverse_concurrency_limit",
			Help: "How many HTTP requests to the Dataverse Web API may be in flight: CRMGATE_DATAVERSE_MAX_CONCURRENCY, or Dataverse's lower x-ms-dop-hint.",
		}),
		budgetSpent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_dataverse_interactive_budget_exceeded_total",
			Help: "Interactive Dataverse calls (sign-ins, session revalidations) that gave up because Dataverse could not answer within the interactive budget, by operation.",
		}, []string{"operation"}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries, m.throttled, m.breakerState, m.inFlight, m.concurrencyLimit, m.budgetSpent} {
		if err := r.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("crmclient: register metrics: %w", err)
	}
	return nil
}
