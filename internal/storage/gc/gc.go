// Package gc applies retention policies and collects the garbage of a
// registry's stores while it serves:
// manifests neither tagged nor referenced by live content, blob links no
// live manifest names, blob files no repository links, and quarantined
// corrupt blobs. docs/architecture.md ("Garbage collection") gives the
// algorithm and why it is safe under concurrent pushes, uploads, syncs
// and pull-through fetches, and after a crash at any point.
package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/retention"
)

// DefaultGracePeriod is how old content must be before it can be
// collected, unless configured otherwise.
const DefaultGracePeriod = time.Hour

// batch is how many blob files one write transaction deletes.
const batch = 512

// Collector runs collections of one registry's stores, one at a time.
type Collector struct {
	meta  *bolt.Store
	blobs *fs.Store
	log   *slog.Logger

	mu      sync.Mutex // held during a run
	lastMu  sync.Mutex
	last    Report
	running bool
	current Progress
	// BeforePhase, when set, is called before each phase with its name
	// (tests use it to stop a run between phases).
	BeforePhase func(phase string)
}

// New returns a collector of meta and blobs. It makes meta check, inside
// each link's transaction, that the blob's file exists (see
// bolt.Store.SetBlobCheck); call it before serving.
func New(meta *bolt.Store, blobs *fs.Store, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	meta.SetBlobCheck(blobs.Present)
	return &Collector{meta: meta, blobs: blobs, log: log}
}

// Options configure one run.
type Options struct {
	// GracePeriod: content put, linked or committed less than this long
	// before the run started is kept (DefaultGracePeriod when zero).
	GracePeriod time.Duration
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// Progress, when set, is told of each phase's progress.
	Progress func(Progress)
	// Trigger says why the run started (schedule, api, cli), for the report.
	Trigger string
	// Policies are the retention policies applied before collecting, the
	// first covering a repository applying to it.
	Policies []retention.Policy
	// Protect, when set, returns what the site must keep whatever the
	// policies say; it is called once per run, before the first phase.
	Protect func(ctx context.Context) (Protection, error)
	// Duty is the share of its wall time the run spends working, pausing
	// in between so that the requests being served come first
	// (DefaultDuty when zero, 1 for no pauses).
	Duty float64
}

// Protection is content a site must keep whatever its retention
// policies say. Untagged manifests it names also outlive the grace
// period.
type Protection struct {
	// Repositories are patterns of repositories no policy removes tags
	// from (a connected registry's sync scope: its parent decides what
	// stays there, and sync removes what the parent no longer tags).
	Repositories []string `json:"repositories,omitempty"`
	// Tags are, per repository, tags no policy removes (the images of
	// staging releases).
	Tags map[string][]string `json:"tags,omitempty"`
	// Manifests are, per repository, manifests kept even untagged.
	Manifests map[string][]digest.Digest `json:"manifests,omitempty"`
}

// covers reports whether p protects every tag of repo.
func (p *Protection) covers(repo string) bool {
	return slices.ContainsFunc(p.Repositories, func(pat string) bool { return oci.MatchRepository(pat, repo) })
}

// Progress is where a run is.
type Progress struct {
	Phase string `json:"phase"` // manifests, blobs, quarantine
	Done  int    `json:"done"`
	Total int    `json:"total,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished,omitzero"`
	Trigger      string    `json:"trigger,omitempty"`
	DryRun       bool      `json:"dryRun"`
	GracePeriod  string    `json:"gracePeriod"`
	Repositories int       `json:"repositories"`
	// Tags counts the tags retention policies removed.
	Tags            int   `json:"tags"`
	Manifests       int   `json:"manifests"`
	ManifestBytes   int64 `json:"manifestBytes"`
	Links           int   `json:"links"`
	Blobs           int   `json:"blobs"`
	BlobBytes       int64 `json:"blobBytes"`
	Quarantined     int   `json:"quarantined"`
	QuarantineBytes int64 `json:"quarantineBytes"`
	LiveBlobs       int   `json:"liveBlobs"`
	LiveBytes       int64 `json:"liveBytes"`
	// Removed lists, per repository, the manifests and links removed.
	Removed []bolt.RepoSweep `json:"removed,omitempty"`
	Error   string           `json:"error,omitempty"`
}

// Bytes is what the run reclaimed (or would reclaim) on disk.
func (r Report) Bytes() int64 { return r.BlobBytes + r.QuarantineBytes }

// Last returns the report of the last run that was not dry, whether one is running and,
// if so, its progress.
func (c *Collector) Last() (Report, bool, Progress) {
	c.lastMu.Lock()
	defer c.lastMu.Unlock()
	return c.last, c.running, c.current
}

// SetLast sets the report Last returns before the first run (the last
// run's, remembered across a restart).
func (c *Collector) SetLast(r Report) {
	c.lastMu.Lock()
	defer c.lastMu.Unlock()
	c.last = r
}

// ErrRunning is returned by TryRun while another run is in progress.
var ErrRunning = errors.New("a garbage collection is already running")

// TryRun runs a collection unless one is already running.
func (c *Collector) TryRun(ctx context.Context, o Options) (Report, error) {
	if !c.mu.TryLock() {
		return Report{}, ErrRunning
	}
	defer c.mu.Unlock()
	return c.run(ctx, o)
}

// Run runs a collection, waiting for a running one to finish first.
func (c *Collector) Run(ctx context.Context, o Options) (Report, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run(ctx, o)
}

func (c *Collector) phase(name string) {
	if c.BeforePhase != nil {
		c.BeforePhase(name)
	}
}

func (c *Collector) run(ctx context.Context, o Options) (Report, error) {
	grace := o.GracePeriod
	if grace <= 0 {
		grace = DefaultGracePeriod
	}
	progress := func(p Progress) {
		c.lastMu.Lock()
		c.current = p
		c.lastMu.Unlock()
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	rep := Report{Started: time.Now(), Trigger: o.Trigger, DryRun: o.DryRun, GracePeriod: grace.String()}
	c.lastMu.Lock()
	c.running, c.current = true, Progress{Phase: "manifests"}
	c.lastMu.Unlock()
	// One cutoff for every phase: content younger than the run's start
	// minus the grace period is live in all of them.
	cutoff := rep.Started.Add(-grace)
	err := c.collect(ctx, o, cutoff, progress, &rep)
	rep.Finished = time.Now()
	if err != nil {
		rep.Error = err.Error()
	}
	c.lastMu.Lock()
	c.running, c.current = false, Progress{}
	if !o.DryRun {
		c.last = rep
	}
	c.lastMu.Unlock()
	c.log.Info("garbage collection finished", "dry_run", o.DryRun, "trigger", o.Trigger, "tags", rep.Tags, "manifests", rep.Manifests,
		"links", rep.Links, "blobs", rep.Blobs, "bytes", rep.Bytes(), "duration", rep.Finished.Sub(rep.Started).Round(time.Millisecond).String(), "err", err)
	return rep, err
}

// sweepOptions applies the policy covering repo, and what the site must
// keep, to the sweep of repo.
func sweepOptions(o Options, repo string, cutoff, now time.Time, prot *Protection) bolt.SweepOptions {
	so := bolt.SweepOptions{Cutoff: cutoff, Dry: o.DryRun, Keep: prot.Manifests[repo]}
	p := retention.For(o.Policies, repo)
	if p == nil {
		return so
	}
	if p.UntaggedOlderThan > 0 {
		so.UntaggedCutoff = now.Add(-time.Duration(p.UntaggedOlderThan))
	}
	if !p.RemovesTags() || prot.covers(repo) {
		return so
	}
	keepTags, keepDigests := prot.Tags[repo], prot.Manifests[repo]
	so.Retain = func(tags []bolt.TagTime) []string {
		in := make([]retention.Tag, len(tags))
		for i, t := range tags {
			in[i] = retention.Tag{Name: t.Tag, Pushed: t.Pushed,
				Protected: slices.Contains(keepTags, t.Tag) || slices.Contains(keepDigests, t.Digest)}
		}
		return p.Removed(in, now)
	}
	return so
}

func (c *Collector) collect(ctx context.Context, o Options, cutoff time.Time, progress func(Progress), rep *Report) error {
	// Phase 1: manifests and blob links, one repository per write
	// transaction.
	c.phase("manifests")
	var repos []string
	for last := ""; ; {
		page, more, err := c.meta.Repositories(ctx, last, 1000)
		if err != nil {
			return fmt.Errorf("list repositories: %w", err)
		}
		repos = append(repos, page...)
		if !more || len(page) == 0 {
			break
		}
		last = page[len(page)-1]
	}
	rep.Repositories = len(repos)
	var prot Protection
	if o.Protect != nil {
		p, err := o.Protect(ctx)
		if err != nil {
			return fmt.Errorf("content to keep: %w", err)
		}
		prot = p
	}
	pace := newPacer(o.Duty)
	dryUnlinked := map[digest.Digest]map[string]bool{}
	for i, repo := range repos {
		if err := pace.yield(ctx); err != nil {
			return err
		}
		sw, err := c.meta.SweepRepository(ctx, repo, sweepOptions(o, repo, cutoff, rep.Started, &prot))
		if err != nil {
			return err
		}
		rep.Tags += len(sw.Tags)
		rep.Manifests += len(sw.Manifests)
		rep.ManifestBytes += sw.ManifestBytes
		rep.Links += len(sw.Links)
		if o.DryRun {
			for _, d := range sw.Links {
				if dryUnlinked[d] == nil {
					dryUnlinked[d] = map[string]bool{}
				}
				dryUnlinked[d][repo] = true
			}
		}
		if len(sw.Tags)+len(sw.Manifests)+len(sw.Links) > 0 {
			rep.Removed = append(rep.Removed, sw)
		}
		progress(Progress{Phase: "manifests", Done: i + 1, Total: len(repos)})
	}
	// Phase 2: blob files committed before the cutoff that no repository
	// links, checked and deleted in write transactions.
	c.phase("blobs")
	var cands []fs.BlobFile
	walked := 0
	err := c.blobs.WalkBlobs(ctx, func(b fs.BlobFile) error {
		if walked++; walked%256 == 0 {
			if err := pace.yield(ctx); err != nil {
				return err
			}
		}
		if b.Time.Before(cutoff) {
			cands = append(cands, b)
		}
		rep.LiveBlobs++
		rep.LiveBytes += b.Size
		return nil
	})
	if err != nil {
		return err
	}
	sizes := make(map[digest.Digest]int64, len(cands))
	for i := 0; i < len(cands); i += batch {
		if err := pace.yield(ctx); err != nil {
			return err
		}
		part := cands[i:min(i+batch, len(cands))]
		ds := make([]digest.Digest, len(part))
		for j, b := range part {
			ds[j] = b.Digest
			sizes[b.Digest] = b.Size
		}
		gone, err := c.meta.DeleteUnlinkedBlobs(ctx, ds, o.DryRun, dryUnlinked, func(d digest.Digest) (bool, error) {
			return c.blobs.RemoveIfOlder(d, cutoff)
		})
		if err != nil {
			return fmt.Errorf("collect blobs: %w", err)
		}
		for _, d := range gone {
			rep.Blobs++
			rep.BlobBytes += sizes[d]
		}
		progress(Progress{Phase: "blobs", Done: min(i+batch, len(cands)), Total: len(cands)})
	}
	rep.LiveBlobs -= rep.Blobs
	rep.LiveBytes -= rep.BlobBytes
	// Phase 3: quarantined corrupt blobs moved aside before the cutoff.
	c.phase("quarantine")
	n, b, err := c.blobs.PurgeQuarantine(cutoff, o.DryRun)
	rep.Quarantined, rep.QuarantineBytes = n, b
	progress(Progress{Phase: "quarantine", Done: n})
	return err
}
