package server

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outpost-registry/outpost/internal/edge"
	"github.com/outpost-registry/outpost/internal/protocol"
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
	// Connected registry: sync runs, last success, parent latency.
	syncRuns    *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	parent      *prometheus.HistogramVec
	// Limits: connections refused, transfers cut by the idle timeout.
	connRefused  prometheus.Counter
	idleTimeouts prometheus.Counter
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
	m.syncRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outpost_sync_runs_total",
		Help: "Finished sync runs, by result (succeeded or failed; a run cut by its sync window failed).",
	}, []string{"result"})
	m.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "outpost_sync_last_success_timestamp_seconds",
		Help: "End of the last successful sync run, in Unix seconds (0 until one succeeds).",
	})
	m.parent = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "outpost_parent_request_duration_seconds",
		Help:    "Time for the parent to answer a request (to the response headers), by method and status code (0: no answer).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"method", "code"})
	m.connRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outpost_connections_refused_total",
		Help: "Connections closed on accept because their client address already held limits.connectionsPerClient.",
	})
	m.idleTimeouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outpost_http_idle_timeouts_total",
		Help: "Request body reads and response writes that moved no byte for limits.idleTimeout; their connections are closed.",
	})
	m.registry.MustRegister(m.connRefused, m.idleTimeouts)
	m.registry.MustRegister(m.syncBytes, m.onDemand, m.syncRuns, m.lastSuccess, m.parent)
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

// SyncRun implements syncer.Observer.
func (m *Metrics) SyncRun(state protocol.SyncState, end time.Time) {
	m.syncRuns.WithLabelValues(strings.ToLower(string(state))).Inc()
	if state == protocol.SyncSucceeded {
		m.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
	}
}

// ParentRequest implements syncer.RequestObserver.
func (m *Metrics) ParentRequest(method string, code int, d time.Duration) {
	m.parent.WithLabelValues(method, strconv.Itoa(code)).Observe(d.Seconds())
}

// registerNodes adds the node stage's series (pre-pull), read at each
// scrape.
func (m *Metrics) registerNodes(stats func() edge.NodeStats) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_prepull_leases_held",
			Help: "Pull slots held by node agents now (pre-pull), at most sync.prePullNodes.",
		}, func() float64 { return float64(stats().Held) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_prepull_leases_peak",
			Help: "The most pull slots node agents held at once since start (never above the limit).",
		}, func() float64 { return float64(stats().Peak) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_prepull_leases_limit",
			Help: "Node agents that may pull from this registry at once (sync.prePullNodes).",
		}, func() float64 { return float64(stats().Limit) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "outpost_prepull_leases_granted_total",
			Help: "Pull slots granted to node agents.",
		}, func() float64 { return float64(stats().Granted) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "outpost_prepull_leases_refused_total",
			Help: "Pull slot requests refused because every slot was held; the node asks again.",
		}, func() float64 { return float64(stats().Refused) }),
		&nodeTransitions{stats: stats, desc: prometheus.NewDesc("outpost_prepull_node_transitions_total",
			"Node reports that changed a node's pre-pull state, by the new state (Pending, Pulling, Pulled, Failed).", []string{"state"}, nil)},
	)
}

// nodeTransitions exports NodeStats.Transitions as a labelled counter.
type nodeTransitions struct {
	stats func() edge.NodeStats
	desc  *prometheus.Desc
}

func (c *nodeTransitions) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *nodeTransitions) Collect(ch chan<- prometheus.Metric) {
	t := c.stats().Transitions
	for _, s := range []protocol.NodeState{protocol.NodePending, protocol.NodePulling, protocol.NodePulled, protocol.NodeFailed} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t[s]), string(s))
	}
}

// registerEdge adds the gauges read from a connected registry's engine
// and outbox at each scrape.
func (m *Metrics) registerEdge(pending func() (repositories int, blobs int64), outbox func() (dropped, conflicts, pending int64)) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_sync_repositories_pending",
			Help: "Repositories the running sync run has yet to finish (0 between runs).",
		}, func() float64 { r, _ := pending(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_sync_blobs_pending",
			Help: "Blob copies from the parent queued or in progress (sync and pull-through).",
		}, func() float64 { _, b := pending(); return float64(b) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "outpost_outbox_dropped_total",
			Help: "Outbox messages (local pushes of a ReadWrite registry) dropped undelivered after the sync message TTL.",
		}, func() float64 { d, _, _ := outbox(); return float64(d) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "outpost_outbox_conflicts_total",
			Help: "Tags moved both at this registry and at the parent; the parent's tag won.",
		}, func() float64 { _, c, _ := outbox(); return float64(c) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_outbox_pending",
			Help: "Changes of the local feed not yet delivered to the parent.",
		}, func() float64 { _, _, p := outbox(); return float64(p) }),
	)
}
