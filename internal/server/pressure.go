package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/gc"
)

// pressureInterval is how often a connected registry compares its data
// volume with the watermarks.
const pressureInterval = 10 * time.Second

// pullClock remembers, in memory, when each manifest was last pulled:
// one map write per manifest pull, nothing on disk. After a restart what
// was not pulled since counts as least recently pulled.
type pullClock struct {
	mu   sync.Mutex
	last map[string]time.Time // repo@digest
}

// ManifestPulled implements registryapi.PullObserver.
func (p *pullClock) ManifestPulled(repo string, d digest.Digest) {
	now := time.Now()
	p.mu.Lock()
	if p.last == nil {
		p.last = map[string]time.Time{}
	}
	p.last[repo+"@"+string(d)] = now
	p.mu.Unlock()
}

func (p *pullClock) at(repo string, d digest.Digest) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last[repo+"@"+string(d)]
}

// Eviction is what one eviction removed.
type Eviction struct {
	Time time.Time `json:"time"`
	// Tags are the pull-through copies evicted, repo:tag.
	Tags []string `json:"tags"`
	// Bytes is what the collection after it reclaimed.
	Bytes int64 `json:"bytes"`
	// UsedBefore and UsedAfter are the volume's used percentages.
	UsedBefore float64 `json:"usedPercentBefore"`
	UsedAfter  float64 `json:"usedPercentAfter"`
}

// PressureState is the data volume against the watermarks, in GET
// /api/v1/storage.
type PressureState struct {
	HighWatermark int     `json:"highWatermark"`
	LowWatermark  int     `json:"lowWatermark"`
	UsedPercent   float64 `json:"usedPercent"`
	// Full is set while the volume is above the high watermark with
	// nothing left to evict: what the registry must keep fills it.
	Full bool `json:"full"`
	// Reason says so, and how much must be freed.
	Reason       string    `json:"reason,omitempty"`
	LastEviction *Eviction `json:"lastEviction,omitempty"`
}

// pressure evicts, at a connected registry above storage.highWatermark,
// the pull-through copies it can fetch again — tags fetched from its
// parent in repositories outside its sync scope that no assigned release
// names — least recently pulled first, down to storage.lowWatermark.
type pressure struct {
	hi, lo int
	blobs  *fs.Store
	meta   *bolt.Store
	g      *gcRunner
	ep     *edgeParts
	clock  *pullClock
	log    *slog.Logger

	mu    sync.Mutex
	state PressureState

	evicted      prometheus.Counter
	evictedBytes prometheus.Counter
	full         prometheus.Gauge
}

func newPressure(cfg config.Storage, blobs *fs.Store, meta *bolt.Store, g *gcRunner, ep *edgeParts, clock *pullClock, log *slog.Logger, m *Metrics) *pressure {
	p := &pressure{hi: cfg.HighWatermark, lo: cfg.LowWatermark, blobs: blobs, meta: meta, g: g, ep: ep, clock: clock, log: log,
		evicted:      prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_storage_evicted_tags_total", Help: "Pull-through copies (tags) evicted above storage.highWatermark."}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_storage_evicted_bytes_total", Help: "Bytes reclaimed by the collections that followed evictions."}),
		full:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_storage_full", Help: "1 while the data volume is above storage.highWatermark with nothing left to evict."}),
	}
	p.state = PressureState{HighWatermark: p.hi, LowWatermark: p.lo}
	m.registry.MustRegister(p.evicted, p.evictedBytes, p.full)
	return p
}

// State returns the volume's use now, whether it is full of content that
// must be kept and the last eviction.
func (p *pressure) State() PressureState {
	pct, _, err := p.used()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.state.UsedPercent = pct
	}
	return p.state
}

// loop checks the volume every pressureInterval until ctx ends; only a
// connected registry evicts.
func (p *pressure) loop(ctx context.Context) {
	if p.ep == nil || p.hi >= 100 {
		return
	}
	t := time.NewTicker(pressureInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.check(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("disk pressure check failed", "err", err)
		}
	}
}

func (p *pressure) used() (pct float64, total uint64, err error) {
	sp, err := p.blobs.Space()
	if err != nil || sp.Total == 0 {
		return 0, 0, err
	}
	return 100 * float64(sp.Total-min(sp.Free, sp.Total)) / float64(sp.Total), sp.Total, nil
}

// candidate is a pull-through copy that may be evicted.
type candidate struct {
	repo, tag string
	last      time.Time
	size      int64
}

// check measures the volume and, above the high watermark, evicts.
func (p *pressure) check(ctx context.Context) error {
	pct, total, err := p.used()
	if err != nil || total == 0 {
		return err
	}
	p.mu.Lock()
	p.state.UsedPercent = pct
	p.mu.Unlock()
	if pct < float64(p.hi) {
		p.setFull(false, "")
		return nil
	}
	before := pct
	ev := Eviction{Time: time.Now().UTC(), UsedBefore: before}
	// A few rounds: each evicts what should free enough by its estimate,
	// then a collection says what it really freed.
	for round := 0; round < 4 && pct >= float64(p.lo); round++ {
		cands, err := p.candidates(ctx)
		if err != nil {
			return err
		}
		need := int64((pct - float64(p.lo)) / 100 * float64(total))
		var picked []candidate
		var est int64
		for _, c := range cands {
			if est >= need {
				break
			}
			picked = append(picked, c)
			est += c.size
		}
		if len(picked) == 0 {
			break
		}
		sctx := storage.WithOrigin(ctx, storage.OriginSync) // not delivered to the parent
		for _, c := range picked {
			if err := p.meta.DeleteTag(sctx, c.repo, c.tag); err != nil && !errors.Is(err, storage.ErrManifestUnknown) {
				return fmt.Errorf("evict %s:%s: %w", c.repo, c.tag, err)
			}
			ev.Tags = append(ev.Tags, c.repo+":"+c.tag)
			p.evicted.Inc()
		}
		rep, err := p.g.run(ctx, gcRun{trigger: "disk-pressure"})
		if errors.Is(err, gc.ErrRunning) {
			rep, err = p.g.c.Run(ctx, gc.Options{GracePeriod: time.Duration(p.g.cfg.GracePeriod), Trigger: "disk-pressure", Protect: p.g.protect, Duty: 1})
		}
		if err != nil {
			return err
		}
		ev.Bytes += rep.Bytes()
		p.evictedBytes.Add(float64(rep.Bytes()))
		if pct, _, err = p.used(); err != nil {
			return err
		}
	}
	ev.UsedAfter = pct
	if len(ev.Tags) > 0 {
		p.log.Warn("data volume above the high watermark: evicted pull-through copies", "used_percent_before", fmt.Sprintf("%.1f", before),
			"used_percent_after", fmt.Sprintf("%.1f", pct), "tags", len(ev.Tags), "bytes", ev.Bytes, "high_watermark", p.hi, "low_watermark", p.lo)
		p.mu.Lock()
		p.state.LastEviction = &ev
		p.state.UsedPercent = pct
		p.mu.Unlock()
	}
	if pct >= float64(p.hi) {
		need := int64((pct - float64(p.lo)) / 100 * float64(total))
		p.setFull(true, fmt.Sprintf("the data volume %s is %.1f%% used, above storage.highWatermark (%d%%), and holds only content this registry must keep (synced, staged, pushed here, or younger than gc.gracePeriod): free %d bytes to get below storage.lowWatermark (%d%%), or grow the volume",
			p.blobs.Root(), pct, p.hi, need, p.lo))
	} else {
		p.setFull(false, "")
	}
	return nil
}

func (p *pressure) setFull(full bool, reason string) {
	p.mu.Lock()
	was := p.state.Full
	p.state.Full, p.state.Reason = full, reason
	p.mu.Unlock()
	switch {
	case full && !was:
		p.log.Error("data volume full of content that must be kept", "reason", reason)
		p.full.Set(1)
	case !full && was:
		p.log.Info("data volume below the high watermark again")
		p.full.Set(0)
	}
}

// candidates lists the evictable tags, least recently pulled first: in
// repositories outside the sync scope, tags whose last change came from
// the parent (a pull-through or staging copy) and that no assigned
// release names.
func (p *pressure) candidates(ctx context.Context) ([]candidate, error) {
	_, images := p.ep.edge.Keep()
	keep := map[string]bool{}
	for _, im := range images {
		keep[im.Repository+":"+im.Tag] = true
		keep[im.Repository+"@"+string(im.Digest)] = true
	}
	var out []candidate
	for last := ""; ; {
		repos, more, err := p.meta.Repositories(ctx, last, 1000)
		if err != nil {
			return nil, err
		}
		for _, repo := range repos {
			if p.ep.engine.InScope(repo) {
				continue
			}
			cs, err := p.fromParent(ctx, repo)
			if err != nil {
				return nil, err
			}
			for _, tag := range cs {
				m, err := p.meta.GetManifest(ctx, repo, tag)
				if err != nil || keep[repo+":"+tag] || keep[repo+"@"+string(m.Digest)] {
					continue
				}
				out = append(out, candidate{repo: repo, tag: tag, last: p.clock.at(repo, m.Digest), size: p.graphSize(ctx, repo, m, 0)})
			}
		}
		if !more || len(repos) == 0 {
			break
		}
		last = repos[len(repos)-1]
	}
	slices.SortStableFunc(out, func(a, b candidate) int {
		if c := a.last.Compare(b.last); c != 0 {
			return c
		}
		return strings.Compare(a.repo+":"+a.tag, b.repo+":"+b.tag)
	})
	return out, nil
}

// fromParent lists the tags of repo whose last change was copied from
// the parent.
func (p *pressure) fromParent(ctx context.Context, repo string) ([]string, error) {
	origin := map[string]string{}
	var since uint64
	for range 10000 {
		cs, _, err := p.meta.Changes(ctx, repo, since, 1000)
		if errors.Is(err, storage.ErrRepositoryUnknown) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			switch c.Op {
			case "put":
				origin[c.Tag] = c.Origin
			case "delete":
				delete(origin, c.Tag)
			}
			since = c.Seq
		}
		if len(cs) < 1000 {
			break
		}
	}
	var out []string
	for tag, o := range origin {
		if o == storage.OriginSync {
			out = append(out, tag)
		}
	}
	slices.Sort(out)
	return out, nil
}

// graphSize estimates what evicting m frees: its body, its blobs and its
// children's (shared ones included).
func (p *pressure) graphSize(ctx context.Context, repo string, m *storage.ManifestRecord, depth int) int64 {
	n := m.Size()
	for _, b := range m.Blobs {
		if sz, err := p.meta.BlobSize(ctx, repo, b); err == nil {
			n += sz
		}
	}
	if depth < 2 {
		for _, c := range m.Manifests {
			if cm, err := p.meta.GetManifest(ctx, repo, string(c)); err == nil {
				n += p.graphSize(ctx, repo, cm, depth+1)
			}
		}
	}
	return n
}

// volume reports the data volume for heartbeats (nil when it cannot be
// read, or when blobs are not in the data directory).
func (s *Server) volume() *protocol.Volume {
	if s.engines == nil || s.engines.local == nil {
		return nil
	}
	sp, err := s.engines.local.Space()
	if err != nil {
		return nil
	}
	v := &protocol.Volume{TotalBytes: sp.Total, FreeBytes: sp.Free, UsedBytes: sp.Total - min(sp.Free, sp.Total)}
	if s.pressure != nil {
		st := s.pressure.State()
		v.Full, v.Reason = st.Full, st.Reason
	}
	return v
}
