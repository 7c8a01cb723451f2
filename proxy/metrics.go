package proxy

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus collectors. Labels never carry user
// ids, emails or raw paths: routes are named by the policy file.
type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	signIns   *prometheus.CounterVec
	sessions  *prometheus.CounterVec
	routes    sync.Map // label -> *routeMetrics
}

// newMetrics builds the collectors and registers them with reg (nil: none);
// a registration that fails (a second server on one registry) is an error.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_http_requests_total", Help: "Requests handled, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "crmgate_http_request_duration_seconds", Help: "Time to serve a request, including the upstream, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_policy_decisions_total", Help: "Access decisions, by route and decision.",
		}, []string{"route", "decision"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_signins_total", Help: "Sign-in attempts, by method and outcome.",
		}, []string{"method", "outcome"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crmgate_sessions_ended_total", Help: "Sessions ended by the gateway, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.decisions, m.signIns, m.sessions} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("proxy: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// routeMetrics are one route's collectors, resolved once so the hot path
// does no label hashing.
type routeMetrics struct {
	duration                     prometheus.Observer
	allow, unauthenticated, deny prometheus.Counter
	codes                        sync.Map // int status -> prometheus.Counter
	requests                     *prometheus.CounterVec
	name                         string
}

// route returns the collectors for a route label, creating them on first use.
func (m *metrics) route(label string) *routeMetrics {
	if v, ok := m.routes.Load(label); ok {
		return v.(*routeMetrics)
	}
	rm := &routeMetrics{
		duration:        m.duration.WithLabelValues(label),
		allow:           m.decisions.WithLabelValues(label, "allow"),
		unauthenticated: m.decisions.WithLabelValues(label, "unauthenticated"),
		deny:            m.decisions.WithLabelValues(label, "forbidden"),
		requests:        m.requests,
		name:            label,
	}
	v, _ := m.routes.LoadOrStore(label, rm)
	return v.(*routeMetrics)
}

// request counts a finished request with its status.
func (rm *routeMetrics) request(status int) {
	if c, ok := rm.codes.Load(status); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := rm.requests.WithLabelValues(rm.name, statusText(status))
	rm.codes.Store(status, c)
	c.Inc()
}
