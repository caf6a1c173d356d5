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
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-registry/outpost/internal/atomicfile"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/syncer"
)

// scrubStateFile, in the data directory, remembers the last scrub and
// when the next is due, so that a registry restarted more often than its
// scrub interval still scrubs.
const scrubStateFile = "scrub.json"

// ScrubState is the record of the last scrub.
type ScrubState struct {
	LastStarted  time.Time `json:"lastStarted,omitzero"`
	LastFinished time.Time `json:"lastFinished,omitzero"`
	Blobs        int64     `json:"blobs"`
	Bytes        int64     `json:"bytes"`
	Corrupt      int       `json:"corrupt"`
	Repaired     int       `json:"repaired"`
	// Next is when serve runs the next scheduled scrub.
	Next time.Time `json:"next,omitzero"`
}

func readScrubState(data string) ScrubState {
	var st ScrubState
	if b, err := os.ReadFile(filepath.Join(data, scrubStateFile)); err == nil {
		_ = json.Unmarshal(b, &st) // a damaged record only moves the schedule
	}
	return st
}

func writeScrubState(data string, st ScrubState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("write scrub state: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(data, scrubStateFile), b, 0o640); err != nil {
		return fmt.Errorf("write scrub state: %w", err)
	}
	return nil
}

// scrubber runs scrubs of a store and repairs what they find.
type scrubber struct {
	data   string
	blobs  *fs.Store
	meta   storage.Metadata
	engine *syncer.Engine // nil: no parent to repair from
	log    *slog.Logger
	// last is the end of the last scrub, in Unix seconds, for metrics.
	last     atomic.Int64
	repaired atomic.Int64
	failed   atomic.Int64
}

func newScrubber(data string, blobs *fs.Store, meta storage.Metadata, ep *edgeParts, log *slog.Logger) *scrubber {
	sc := &scrubber{data: data, blobs: blobs, meta: meta, log: log}
	if ep != nil {
		sc.engine = ep.engine
	}
	if st := readScrubState(data); !st.LastFinished.IsZero() {
		sc.last.Store(st.LastFinished.Unix())
	}
	return sc
}

// RepairOutcome is what became of one corrupt blob.
type RepairOutcome struct {
	fs.Corruption
	// Repaired is set when a good copy came from the parent; Err says why
	// not when a repair was tried.
	Repaired bool
	Err      error
}

// run scrubs the store once, repairing from the parent when there is one,
// records the result in the data directory and returns it. report, when
// not nil, is told of each corrupt blob.
func (sc *scrubber) run(ctx context.Context, interval time.Duration, report func(RepairOutcome)) (fs.ScrubReport, error) {
	sc.log.Info("storage scrub started", "data", sc.data)
	repaired := 0
	rep, err := sc.blobs.Scrub(ctx, func(c fs.Corruption) {
		out := RepairOutcome{Corruption: c}
		if sc.engine != nil {
			out.Err = sc.repair(ctx, c)
			out.Repaired = out.Err == nil
			if out.Repaired {
				repaired++
			}
		}
		if report != nil {
			report(out)
		}
	})
	st := ScrubState{LastStarted: rep.Started, LastFinished: rep.Finished, Blobs: rep.Blobs, Bytes: rep.Bytes, Corrupt: len(rep.Corrupt), Repaired: repaired}
	if interval > 0 {
		st.Next = rep.Finished.Add(interval)
	}
	if ctx.Err() == nil {
		if werr := writeScrubState(sc.data, st); werr != nil {
			err = errors.Join(err, werr)
		}
		sc.last.Store(rep.Finished.Unix())
	}
	level := slog.LevelInfo
	if err != nil || len(rep.Corrupt) > repaired {
		level = slog.LevelWarn
	}
	sc.log.Log(ctx, level, "storage scrub finished", "blobs", rep.Blobs, "bytes", rep.Bytes, "corrupt", len(rep.Corrupt),
		"repaired", repaired, "duration", rep.Finished.Sub(rep.Started).Round(time.Millisecond).String(), "err", err)
	return rep, err
}

// repair fetches a quarantined blob again from the parent, from the
// repositories that link it.
func (sc *scrubber) repair(ctx context.Context, c fs.Corruption) error {
	repos, err := sc.meta.BlobRepositories(ctx, c.Digest)
	if err == nil {
		err = sc.engine.RepairBlob(ctx, repos, c.Digest)
	}
	if err != nil {
		sc.failed.Add(1)
		sc.log.Error("corrupt blob could not be fetched again from the parent; it stays unknown until pushed or synced again", "digest", string(c.Digest), "err", err)
		return err
	}
	sc.repaired.Add(1)
	sc.log.Info("corrupt blob fetched again from the parent", "digest", string(c.Digest), "repositories", strings.Join(repos, ","))
	return nil
}

// loop runs a scrub whenever one is due until ctx ends.
func (sc *scrubber) loop(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	st := readScrubState(sc.data)
	now := time.Now()
	if st.Next.IsZero() || st.Next.After(now.Add(interval)) {
		// First start, or a shorter interval than before.
		st.Next = now.Add(interval)
		if err := writeScrubState(sc.data, st); err != nil {
			sc.log.Warn("storage scrub schedule not recorded", "err", err)
		}
	}
	next := st.Next
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		_, _ = sc.run(ctx, interval, nil) // logged by run
		next = time.Now().Add(interval)
	}
}

// registerStorage adds the data volume's and the scrub's metrics.
func (m *Metrics) registerStorage(blobs *fs.Store, sc *scrubber) {
	space := func(f func(fs.Space) float64) func() float64 {
		return func() float64 {
			sp, err := blobs.Space()
			if err != nil {
				return -1
			}
			return f(sp)
		}
	}
	stat := func(f func(fs.Stats) int64) func() float64 {
		return func() float64 { return float64(f(blobs.Stats())) }
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_storage_free_bytes",
			Help: "Bytes available on the data volume to the registry (-1 when it cannot be read).",
		}, space(func(s fs.Space) float64 { return float64(s.Free) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_storage_size_bytes",
			Help: "Size of the data volume in bytes (-1 when it cannot be read).",
		}, space(func(s fs.Space) float64 { return float64(s.Total) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_storage_writes_degraded",
			Help: "1 while writes are degraded for lack of space (see /readyz), 0 otherwise.",
		}, space(func(s fs.Space) float64 {
			if s.WritesDegraded {
				return 1
			}
			return 0
		})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "outpost_storage_no_space_errors_total",
			Help: "Writes to the data directory that failed for lack of space (ENOSPC, EDQUOT).",
		}, stat(func(s fs.Stats) int64 { return s.NoSpace })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_storage_scrub_last_timestamp_seconds",
			Help: "End of the last complete storage scrub, in Unix seconds (0: none yet).",
		}, func() float64 { return float64(sc.last.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "outpost_storage_blobs_repaired_total",
			Help:        "Corrupt blobs a scrub found at a connected registry, by whether fetching them again from the parent succeeded.",
			ConstLabels: prometheus.Labels{"result": "succeeded"},
		}, func() float64 { return float64(sc.repaired.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "outpost_storage_blobs_repaired_total",
			Help:        "Corrupt blobs a scrub found at a connected registry, by whether fetching them again from the parent succeeded.",
			ConstLabels: prometheus.Labels{"result": "failed"},
		}, func() float64 { return float64(sc.failed.Load()) }),
	}
	for _, trigger := range []string{fs.TriggerRead, fs.TriggerScrub} {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "outpost_storage_blobs_verified_total",
				Help:        "Blobs whose content was hashed and compared with their digest, by trigger (read: first open since start; scrub).",
				ConstLabels: prometheus.Labels{"trigger": trigger},
			}, stat(func(s fs.Stats) int64 { return s.Verified[trigger] })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "outpost_storage_blobs_corrupt_total",
				Help:        "Blobs found corrupt and moved to quarantine, by trigger (read; scrub).",
				ConstLabels: prometheus.Labels{"trigger": trigger},
			}, stat(func(s fs.Stats) int64 { return s.Corrupt[trigger] })),
		)
	}
	m.registry.MustRegister(cs...)
}

// readiness is the body of /readyz: pulls are served whenever the
// metadata store answers; writes may be degraded by a full volume, which
// does not take the registry out of service (status 200), so that pulls
// keep being routed to it.
type readiness struct {
	Status    string `json:"status"` // ok or degraded
	Pulls     string `json:"pulls"`
	Writes    string `json:"writes"`
	Reason    string `json:"reason,omitempty"`
	FreeBytes uint64 `json:"freeBytes"`
}

func (s *Server) writeReadiness(w http.ResponseWriter, r *http.Request) {
	rd := readiness{Status: "ok", Pulls: "ok", Writes: "ok"}
	if s.engines.local != nil {
		sp, err := s.engines.local.Space()
		switch {
		case err != nil:
			s.log.DebugContext(r.Context(), "readiness: free space unknown", "err", err)
		case sp.WritesDegraded:
			rd.Status, rd.Writes, rd.Reason = "degraded", "degraded", sp.Reason
		}
		rd.FreeBytes = sp.Free
	}
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rd)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	if rd.Status == "ok" {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	_, _ = fmt.Fprintf(w, "degraded: pulls ok; writes degraded: %s\n", rd.Reason)
}

// VerifyOptions configure VerifyStorage.
type VerifyOptions struct {
	// RepairFromParent fetches each corrupt blob again from the parent
	// the configuration names; it needs the metadata store, so the server
	// must not be running.
	RepairFromParent bool
	// Report is told of each corrupt blob.
	Report func(RepairOutcome)
}

// VerifyStorage scrubs the blob store of cfg's data directory once: every
// blob is hashed and each that fails is quarantined (and, when asked,
// fetched again from the parent). It records the scrub as serve's
// scheduled one does.
func VerifyStorage(ctx context.Context, cfg config.Config, log *slog.Logger, o VerifyOptions) (fs.ScrubReport, error) {
	blobs, err := fs.NewWithOptions(cfg.Data, fs.Options{Logger: log, MinFreeBytes: uint64(cfg.Storage.MinFreeBytes)}) //nolint:gosec // validated non-negative
	if err != nil {
		return fs.ScrubReport{}, err
	}
	sc := &scrubber{data: cfg.Data, blobs: blobs, log: log}
	if o.RepairFromParent {
		if cfg.ConnectionString == "" && cfg.Parent.URL == "" {
			return fs.ScrubReport{}, errors.New("--repair-from-parent: no parent configured (give --connection-string or --parent, or the config file serve uses)")
		}
		meta, err := bolt.Open(filepath.Join(cfg.Data, "metadata.db"))
		if err != nil {
			return fs.ScrubReport{}, fmt.Errorf("%w (is outpost serve running on this data directory? stop it, or let its scheduled scrub repair: storage.scrubInterval)", err)
		}
		defer meta.Close()
		ps, err := parentSettingsOf(cfg, true)
		if err != nil {
			return fs.ScrubReport{}, err
		}
		parent, err := syncer.NewParent(ps.popts)
		if err != nil {
			return fs.ScrubReport{}, err
		}
		sc.meta = meta
		sc.engine = syncer.NewEngine(syncer.Options{Parent: parent, Blobs: blobs, Uploads: blobs, Metadata: meta, Logger: log,
			ManifestMaxBytes: int64(cfg.Limits.ManifestMaxBytes)})
	}
	return sc.run(ctx, scrubInterval(cfg), o.Report)
}

// scrubInterval is cfg's storage.scrubInterval, its default when unset.
func scrubInterval(cfg config.Config) time.Duration {
	if cfg.Storage.ScrubInterval == nil {
		return time.Duration(config.DefaultScrubInterval)
	}
	return time.Duration(*cfg.Storage.ScrubInterval)
}
