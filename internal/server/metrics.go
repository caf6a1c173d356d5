package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the HTTP and storage metrics exposed on /metrics.
type Metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	bytesIn   *prometheus.CounterVec
	bytesOut  *prometheus.CounterVec
	uploads   prometheus.Gauge
	inFlight  prometheus.Gauge
	buildInfo *prometheus.GaugeVec
	syncBytes *prometheus.CounterVec
	onDemand  *prometheus.CounterVec
}

// NewMetrics registers Outpost's metrics, plus Go runtime and process
// collectors, on a registry of their own.
func NewMetrics(version string) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_http_requests_total",
			Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outpost_http_request_duration_seconds",
			Help:    "Time to serve HTTP requests, by method and route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method", "route"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_http_request_bytes_total",
			Help: "Bytes received in request bodies, by route.",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_http_response_bytes_total",
			Help: "Bytes sent in response bodies, by route.",
		}, []string{"route"}),
		uploads: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_uploads_in_progress",
			Help: "Blob upload sessions opened and not yet completed or cancelled since start.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_build_info",
			Help: "Outpost version, always 1.",
		}, []string{"version"}),
	}
	m.syncBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outpost_sync_blobs_total",
		Help: "Blobs downloaded from the parent (count in the blobs series, bytes in the bytes series).",
	}, []string{"unit"})
	m.onDemand = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outpost_sync_on_demand_total",
		Help: "Pull-through fetches from the parent for content missing locally, by result.",
	}, []string{"result"})
	m.registry.MustRegister(m.syncBytes, m.onDemand)
	m.registry.MustRegister(m.requests, m.latency, m.bytesIn, m.bytesOut, m.uploads, m.inFlight, m.buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.buildInfo.WithLabelValues(version).Set(1)
	return m
}

// Registry returns the registry to serve on /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// UploadStarted implements registryapi.UploadObserver.
func (m *Metrics) UploadStarted() { m.uploads.Inc() }

// UploadEnded implements registryapi.UploadObserver.
func (m *Metrics) UploadEnded() { m.uploads.Dec() }

// BlobSynced implements syncer.Observer.
func (m *Metrics) BlobSynced(n int64) {
	m.syncBytes.WithLabelValues("blobs").Inc()
	m.syncBytes.WithLabelValues("bytes").Add(float64(n))
}

// OnDemand implements syncer.Observer.
func (m *Metrics) OnDemand(hit bool) {
	if hit {
		m.onDemand.WithLabelValues("hit").Inc()
	} else {
		m.onDemand.WithLabelValues("miss").Inc()
	}
}
