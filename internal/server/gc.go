package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/atomicfile"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/gc"
	"github.com/outpost-registry/outpost/internal/storage/retention"
)

// gcStateFile, in the data directory, remembers the last garbage
// collection for `outpost gc status` across restarts.
const gcStateFile = "gc.json"

// gcRunner runs the collector on gc.schedule and on demand, and counts
// for metrics.
type gcRunner struct {
	c     *gc.Collector
	cfg   config.GC
	data  string
	log   *slog.Logger
	sched cron.Schedule // nil: off
	// policies and protect, when set, give the retention policies each
	// run applies and what the site must keep whatever they say.
	policies *policies
	protect  func(context.Context) (gc.Protection, error)
	// deletes is signalled after each deletion in the metadata store.
	deletes chan struct{}
	next    atomic.Int64 // Unix seconds of the next scheduled run

	runs, failed         prometheus.Counter
	bytes                prometheus.Counter
	items                *prometheus.CounterVec
	duration, lastSucess prometheus.Gauge
	live, reclaimable    prometheus.Gauge
}

func newGCRunner(c *gc.Collector, cfg config.GC, data string, log *slog.Logger, m *Metrics) *gcRunner {
	g := &gcRunner{c: c, cfg: cfg, data: data, log: log, deletes: make(chan struct{}, 1),
		runs:       prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_gc_runs_total", Help: "Garbage collections run (not dry), whatever their outcome."}),
		failed:     prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_gc_runs_failed_total", Help: "Garbage collections that ended with an error."}),
		bytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_gc_reclaimed_bytes_total", Help: "Bytes of blob and quarantine files garbage collection removed."}),
		items:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_gc_reclaimed_items_total", Help: "Items garbage collection removed, by kind (tag (by retention policies), manifest, link, blob, quarantine)."}, []string{"kind"}),
		duration:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_gc_last_duration_seconds", Help: "Duration of the last garbage collection."}),
		lastSucess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_gc_last_success_timestamp_seconds", Help: "End of the last garbage collection that succeeded, in Unix seconds (0: none yet)."}),
		live:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_storage_blob_bytes", Help: "Bytes of blob files kept by the last garbage collection (each blob once)."}),
		reclaimable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_storage_reclaimable_bytes",
			Help: "Bytes the last dry garbage collection (outpost gc run --dry-run, storage usage --reclaimable) found reclaimable."}),
	}
	if cfg.Schedule != "off" && cfg.Schedule != "" {
		g.sched, _ = cron.ParseStandard(cfg.Schedule) // validated by config
	}
	if b, err := os.ReadFile(filepath.Join(data, gcStateFile)); err == nil {
		var r gc.Report
		if json.Unmarshal(b, &r) == nil {
			c.SetLast(r)
			if r.Error == "" && !r.DryRun {
				g.lastSucess.Set(float64(r.Finished.Unix()))
			}
		}
	}
	m.registry.MustRegister(g.runs, g.failed, g.bytes, g.items, g.duration, g.lastSucess, g.live, g.reclaimable)
	return g
}

// gcRun is what one run is asked to do.
type gcRun struct {
	dry     bool
	trigger string
	// only, when set, names the only retention policies applied.
	only []string
}

// run runs one collection now, applying the retention policies; dry runs
// are not recorded.
func (g *gcRunner) run(ctx context.Context, req gcRun) (gc.Report, error) {
	dry := req.dry
	o := gc.Options{GracePeriod: time.Duration(g.cfg.GracePeriod), DryRun: dry, Trigger: req.trigger, Protect: g.protect}
	if g.policies != nil {
		all, err := g.policies.all()
		if err != nil {
			return gc.Report{}, err
		}
		if req.only != nil {
			all = slices.DeleteFunc(all, func(p retention.Policy) bool { return !slices.Contains(req.only, p.Name) })
		}
		o.Policies = all
	}
	rep, err := g.c.TryRun(ctx, o)
	if errors.Is(err, gc.ErrRunning) {
		return rep, err
	}
	if dry {
		if err == nil {
			g.reclaimable.Set(float64(rep.Bytes()))
		}
		return rep, err
	}
	g.live.Set(float64(rep.LiveBytes))
	g.reclaimable.Set(0)
	g.runs.Inc()
	g.duration.Set(rep.Finished.Sub(rep.Started).Seconds())
	g.bytes.Add(float64(rep.Bytes()))
	g.items.WithLabelValues("tag").Add(float64(rep.Tags))
	g.items.WithLabelValues("manifest").Add(float64(rep.Manifests))
	g.items.WithLabelValues("link").Add(float64(rep.Links))
	g.items.WithLabelValues("blob").Add(float64(rep.Blobs))
	g.items.WithLabelValues("quarantine").Add(float64(rep.Quarantined))
	if err != nil {
		g.failed.Inc()
	} else {
		g.lastSucess.Set(float64(rep.Finished.Unix()))
	}
	rec := rep
	rec.Removed = nil // the status keeps the figures, not every digest
	if b, merr := json.MarshalIndent(rec, "", "  "); merr == nil {
		if werr := atomicfile.Write(filepath.Join(g.data, gcStateFile), b, 0o640); werr != nil {
			g.log.Warn("garbage collection record not written", "err", werr)
		}
	}
	return rep, err
}

// deleted notes a deletion without blocking (bolt.Store.SetOnDelete).
func (g *gcRunner) deleted() {
	select {
	case g.deletes <- struct{}{}:
	default:
	}
}

// afterDeletesQuiet is how long deletions must pause before a dry
// collection checks what they made reclaimable (the grace period when
// shorter).
const afterDeletesQuiet = 30 * time.Second

// afterDeletes runs, once deletions have paused, a dry collection and, when
// it finds at least gc.reclaimableThreshold bytes, a real one.
func (g *gcRunner) afterDeletes(ctx context.Context) {
	threshold := int64(1 << 30)
	if g.cfg.ReclaimableThreshold != nil {
		threshold = int64(*g.cfg.ReclaimableThreshold)
	}
	if threshold <= 0 {
		return
	}
	quiet := min(afterDeletesQuiet, time.Duration(g.cfg.GracePeriod))
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.deletes:
			t.Reset(quiet)
			continue
		case <-t.C:
		}
		dry, err := g.run(ctx, gcRun{dry: true, trigger: "deletions"})
		if err != nil || dry.Bytes() < threshold {
			continue
		}
		_, _ = g.run(ctx, gcRun{trigger: "deletions"}) // logged by the collector
	}
}

// loop runs a collection at each time of gc.schedule until ctx ends.
func (g *gcRunner) loop(ctx context.Context) {
	if g.sched == nil {
		return
	}
	for {
		next := g.sched.Next(time.Now().UTC())
		g.next.Store(next.Unix())
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		_, _ = g.run(ctx, gcRun{trigger: "schedule"}) // logged by the collector
	}
}

// GCStatus is the body of GET /api/v1/gc.
type GCStatus struct {
	Running     bool         `json:"running"`
	Progress    *gc.Progress `json:"progress,omitempty"`
	Schedule    string       `json:"schedule"`
	GracePeriod string       `json:"gracePeriod"`
	Next        time.Time    `json:"next,omitzero"`
	Last        *gc.Report   `json:"last,omitempty"`
}

// GCRunRequest is the body of POST /api/v1/gc/runs.
type GCRunRequest struct {
	DryRun bool `json:"dryRun"`
}

// register adds GET /api/v1/gc (status) and POST /api/v1/gc/runs (run
// now and answer with the report once it is done).
func (g *gcRunner) register(api *adminapi.API) {
	api.Handle("GET /api/v1/gc", func(*http.Request) (int, any, error) {
		last, running, p := g.c.Last()
		st := GCStatus{Running: running, Schedule: g.cfg.Schedule, GracePeriod: time.Duration(g.cfg.GracePeriod).String()}
		if n := g.next.Load(); n != 0 {
			st.Next = time.Unix(n, 0).UTC()
		}
		if running {
			st.Progress = &p
		}
		if !last.Started.IsZero() {
			st.Last = &last
		}
		return http.StatusOK, st, nil
	})
	api.Handle("POST /api/v1/gc/runs", func(r *http.Request) (int, any, error) {
		var req GCRunRequest
		if r.ContentLength != 0 {
			if err := adminapi.Decode(r, &req); err != nil {
				return 0, nil, err
			}
		}
		return g.respondRun(r.Context(), gcRun{dry: req.DryRun, trigger: "api"})
	})
}

// respondRun runs a collection for an API request and answers with its
// report.
func (g *gcRunner) respondRun(ctx context.Context, req gcRun) (int, any, error) {
	rep, err := g.run(ctx, req)
	if errors.Is(err, gc.ErrRunning) {
		return 0, nil, fmt.Errorf("%w: %w", auth.ErrInUse, err)
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rep, nil
}

// StorageUsage is the body of GET /api/v1/storage.
type StorageUsage struct {
	bolt.Usage
	// Volume is the data volume: total, free (to the registry) and used
	// bytes.
	Volume struct {
		Total uint64 `json:"total"`
		Free  uint64 `json:"free"`
		Used  uint64 `json:"used"`
	} `json:"volume"`
	// ReclaimableBytes is what a collection now would free (asked with
	// ?reclaimable=true: it runs a dry collection).
	ReclaimableBytes *int64 `json:"reclaimableBytes,omitempty"`
	// Pressure is the volume against the watermarks and the last
	// eviction (a connected registry's).
	Pressure PressureState `json:"pressure"`
}

// registerUsage adds GET /api/v1/storage: bytes per repository, in total
// (shared blobs once), the data volume's figures and, on request, what a
// collection would reclaim.
func (g *gcRunner) registerUsage(api *adminapi.API, meta *bolt.Store, blobs *fs.Store, pr *pressure) {
	api.Handle("GET /api/v1/storage", func(r *http.Request) (int, any, error) {
		u, err := meta.Usage(r.Context())
		if err != nil {
			return 0, nil, err
		}
		out := StorageUsage{Usage: u, Pressure: pr.State()}
		if sp, err := blobs.Space(); err == nil {
			out.Volume.Total, out.Volume.Free = sp.Total, sp.Free
			if sp.Total > sp.Free {
				out.Volume.Used = sp.Total - sp.Free
			}
		}
		if r.URL.Query().Get("reclaimable") == "true" {
			rep, err := g.run(r.Context(), gcRun{dry: true, trigger: "usage"})
			if errors.Is(err, gc.ErrRunning) {
				return 0, nil, fmt.Errorf("%w: %w", auth.ErrInUse, err)
			}
			if err != nil {
				return 0, nil, err
			}
			n := rep.Bytes()
			out.ReclaimableBytes = &n
		}
		return http.StatusOK, out, nil
	})
}
