package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Options configure an Engine.
type Options struct {
	Parent   *Parent
	Blobs    storage.BlobStore
	Uploads  storage.Uploads
	Metadata storage.Metadata
	Logger   *slog.Logger
	// Concurrency is the number of blobs downloaded at once, across every
	// copy (default 4).
	Concurrency int
	// BandwidthLimit caps download bytes per second; 0 is unlimited.
	BandwidthLimit int64
	// ChangeFeed follows the parent's change feed (an Outpost parent)
	// instead of listing tags.
	ChangeFeed bool
	// Cursors persists change-feed positions; nil keeps them in memory.
	Cursors *Cursors
	// Attempts bounds retries of a transient failure (default 6).
	Attempts int
	// ManifestMaxBytes bounds manifests fetched (default 4 MiB).
	ManifestMaxBytes int64
	Metrics          Observer
	// OnDemandTimeout bounds each wait for the parent's answer during a
	// pull-through (sync.onDemandTimeout, default 5s); see
	// WithAnswerTimeout.
	OnDemandTimeout time.Duration
	// OnDemandHold is how long pull-through skips a parent that did not
	// answer in time, so that the next misses answer at once (default
	// 30s).
	OnDemandHold time.Duration
}

// Observer receives sync events for metrics.
type Observer interface {
	BlobSynced(bytes int64)
	OnDemand(hit bool)
	// SyncRun is told the state and end of each finished run.
	SyncRun(state protocol.SyncState, end time.Time)
}

type noObserver struct{}

func (noObserver) BlobSynced(int64)                      {}
func (noObserver) OnDemand(bool)                         {}
func (noObserver) SyncRun(protocol.SyncState, time.Time) {}

// Engine copies content from the parent.
type Engine struct {
	o      Options
	log    *slog.Logger
	flight singleflight.Group
	online atomic.Bool
	// src is the parent as a copy's source, store the local store as its
	// target; pool bounds the blob transfers of every copy at once.
	src   parentSource
	store *graph.Store
	pool  *graph.Pool

	mu       sync.Mutex
	scope    []string
	staged   []string // repositories of staging jobs, fetched on demand only
	progress Progress
	// blobsPending counts blob copies queued or in progress.
	blobsPending atomic.Int64

	// holds, set by an Outbox, reports parent states that must not be
	// applied locally because a local push made on top of them waits for
	// delivery.
	holds atomic.Pointer[holder]

	// silentUntil (Unix nanoseconds) is when pull-through tries again a
	// parent that did not answer an on-demand fetch in time.
	silentUntil atomic.Int64
}

// holder is what the engine asks before it applies a parent's tag state.
type holder interface {
	Holds(ctx context.Context, repo, tag string, d digest.Digest) bool
}

// held reports whether the parent's state d of repo:tag ("" for no tag)
// must wait: applying it would undo a local push not yet delivered.
func (e *Engine) held(ctx context.Context, repo, tag string, d digest.Digest) bool {
	h := e.holds.Load()
	if h == nil || !(*h).Holds(ctx, repo, tag, d) {
		return false
	}
	e.log.Debug("parent's tag state held back: a local push waits for delivery", "repo", repo, "tag", tag, "digest", string(d))
	return true
}

// Progress describes the running (or last) sync run.
type Progress struct {
	Running          bool             `json:"running"`
	Trigger          protocol.Trigger `json:"trigger,omitempty"`
	Started          time.Time        `json:"startTime,omitzero"`
	Repositories     int              `json:"repositories"`
	RepositoriesDone int              `json:"repositoriesDone"`
	Items            int64            `json:"items"`
	Bytes            int64            `json:"bytes"`
	Current          string           `json:"currentRepository,omitempty"`
}

// Result is the outcome of a run: what the edge reports to its parent,
// and the run's error.
type Result struct {
	protocol.SyncResult
	// Err is the run's error, for errors.Is (nil on success).
	Err error
}

// NewEngine returns an Engine.
func NewEngine(o Options) *Engine {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Attempts <= 0 {
		o.Attempts = 6
	}
	if o.ManifestMaxBytes <= 0 {
		o.ManifestMaxBytes = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Cursors == nil {
		o.Cursors = &Cursors{m: map[string]uint64{}}
	}
	if o.Metrics == nil {
		o.Metrics = noObserver{}
	}
	if o.OnDemandTimeout <= 0 {
		o.OnDemandTimeout = 5 * time.Second
	}
	if o.OnDemandHold <= 0 {
		o.OnDemandHold = 30 * time.Second
	}
	e := &Engine{o: o, log: o.Logger, pool: graph.NewPool(o.Concurrency)}
	e.src = parentSource{p: o.Parent}
	if o.BandwidthLimit > 0 {
		e.src.limiter = rate.NewLimiter(rate.Limit(o.BandwidthLimit), int(min(o.BandwidthLimit, 256<<10)))
	}
	e.store = &graph.Store{Blobs: o.Blobs, Uploads: o.Uploads, Metadata: o.Metadata, OnCommit: o.Metrics.BlobSynced, Log: o.Logger, From: "the parent"}
	e.online.Store(true)
	return e
}

// SetScope sets the repositories (names or trailing-wildcard patterns)
// that sync and pull-through cover.
func (e *Engine) SetScope(repos []string) {
	e.mu.Lock()
	e.scope = append([]string(nil), repos...)
	e.mu.Unlock()
}

// SetStaged sets the repositories of staging jobs: on-demand fetches may
// bring their content, sync runs leave them alone.
func (e *Engine) SetStaged(repos []string) {
	e.mu.Lock()
	e.staged = append([]string(nil), repos...)
	e.mu.Unlock()
}

// onDemand reports whether a pull that missed locally may fetch repo.
func (e *Engine) onDemand(repo string) bool {
	if e.InScope(repo) {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.staged, repo)
}

// SetOnline tells whether the parent answered lately; pull-through skips
// the parent while it is offline so that misses fail fast.
func (e *Engine) SetOnline(v bool) { e.online.Store(v) }

// InScope reports whether a repository is covered.
func (e *Engine) InScope(repo string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.ContainsFunc(e.scope, func(p string) bool { return oci.MatchRepository(p, repo) })
}

// Progress returns the current progress.
func (e *Engine) Progress() Progress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.progress
}

// Pending returns the repositories the running run has yet to finish (0
// between runs) and the blob copies queued or in progress, for metrics.
func (e *Engine) Pending() (repositories int, blobs int64) {
	e.mu.Lock()
	if e.progress.Running {
		repositories = e.progress.Repositories - e.progress.RepositoriesDone
	}
	e.mu.Unlock()
	return repositories, e.blobsPending.Load()
}

func (e *Engine) addProgress(items, bytes int64) {
	e.mu.Lock()
	e.progress.Items += items
	e.progress.Bytes += bytes
	e.mu.Unlock()
}

// retry runs fn with the engine's attempts; see Retrier.
func (e *Engine) retry(ctx context.Context, what string, fn func() error) error {
	return retry(ctx, e.o.Attempts, e.log, what, fn)
}

// Retrier returns a graph.Options Retry for copies from a parent: fn
// runs until it succeeds, fails permanently, or attempts run out, with
// capped exponential backoff that honours Retry-After; each retry is
// logged at Warn.
func Retrier(attempts int, log *slog.Logger) func(ctx context.Context, what string, fn func() error) error {
	return func(ctx context.Context, what string, fn func() error) error {
		return retry(ctx, attempts, log, what, fn)
	}
}

func retry(ctx context.Context, attempts int, log *slog.Logger, what string, fn func() error) error {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !Temporary(err) || errors.Is(err, ErrNoAnswer) || attempt >= attempts || ctx.Err() != nil {
			return err
		}
		wait := backoff
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			wait = min(se.RetryAfter, 5*time.Minute)
		}
		log.Warn("retrying", "what", what, "attempt", attempt, "wait", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// expand turns the scope's patterns into repository names, listing the
// parent's catalog when a pattern has a wildcard.
func (e *Engine) expand(ctx context.Context) ([]string, error) {
	e.mu.Lock()
	scope := append([]string(nil), e.scope...)
	e.mu.Unlock()
	var out []string
	wild := false
	for _, p := range scope {
		if strings.Contains(p, "*") {
			wild = true
			continue
		}
		out = append(out, p)
	}
	if wild {
		var catalog []string
		err := e.retry(ctx, "catalog", func() error {
			var err error
			catalog, err = e.o.Parent.Catalog(ctx)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list the parent's repositories: %w", err)
		}
		for _, r := range catalog {
			if e.InScope(r) && !contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Run syncs every repository in scope once. A deadline on ctx (the sync
// window) stops it between items; what was published stays consistent.
func (e *Engine) Run(ctx context.Context, trigger protocol.Trigger) Result {
	ctx = storage.WithOrigin(ctx, storage.OriginSync)
	start := time.Now().UTC()
	e.mu.Lock()
	e.progress = Progress{Running: true, Trigger: trigger, Started: start}
	e.mu.Unlock()
	res := Result{SyncResult: protocol.SyncResult{Trigger: trigger, Start: start}}
	repos, err := e.expand(ctx)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	e.mu.Lock()
	e.progress.Repositories = len(repos)
	e.mu.Unlock()
	// Repositories sync several at once, as the tags within each.
	var (
		wg  sync.WaitGroup
		emu sync.Mutex
		sem = make(chan struct{}, repoConcurrency)
	)
	for _, repo := range repos {
		if ctx.Err() != nil {
			emu.Lock()
			errs = append(errs, fmt.Errorf("sync window ended: %w", ctx.Err()))
			emu.Unlock()
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			e.mu.Lock()
			e.progress.Current = repo
			e.mu.Unlock()
			if err := e.syncRepo(ctx, repo); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", repo, err))
				emu.Unlock()
				e.log.Warn("repository sync failed", "repo", repo, "err", err)
			}
			e.mu.Lock()
			e.progress.RepositoriesDone++
			e.mu.Unlock()
		}()
	}
	wg.Wait()
	p := e.Progress()
	res.End, res.Bytes, res.Items = time.Now().UTC(), p.Bytes, p.Items
	res.State = protocol.SyncSucceeded
	if err := errors.Join(errs...); err != nil {
		res.State, res.Error, res.Err = protocol.SyncFailed, err.Error(), err
	}
	e.mu.Lock()
	e.progress.Running, e.progress.Current = false, ""
	e.mu.Unlock()
	e.o.Metrics.SyncRun(res.State, res.End)
	return res
}

// syncRepo brings one repository up to date.
func (e *Engine) syncRepo(ctx context.Context, repo string) error {
	if !e.o.ChangeFeed {
		return e.fullRepo(ctx, repo)
	}
	cursor := e.o.Cursors.Get(repo)
	if cursor == 0 {
		head, err := e.feedHead(ctx, repo)
		if err != nil {
			return err
		}
		if err := e.fullRepo(ctx, repo); err != nil {
			return err
		}
		return e.o.Cursors.Set(repo, head)
	}
	for page := 0; page < 100000; page++ {
		var resp protocol.ChangesResponse
		err := e.retry(ctx, "changes "+repo, func() error {
			return e.o.Parent.JSON(ctx, "GET", fmt.Sprintf("/api/v1/changes?repository=%s&since=%d&n=1000", repo, cursor), nil, &resp)
		})
		if err != nil {
			return fmt.Errorf("read the change feed: %w", err)
		}
		if resp.Head < cursor {
			// The parent's feed restarted (a new store): start over.
			return e.o.Cursors.Set(repo, 0)
		}
		for _, c := range resp.Changes {
			if err := e.apply(ctx, repo, c); err != nil {
				return err
			}
			cursor = c.Seq
			if err := e.o.Cursors.Set(repo, cursor); err != nil {
				return err
			}
		}
		if len(resp.Changes) < 1000 {
			return nil
		}
	}
	return nil
}

func (e *Engine) feedHead(ctx context.Context, repo string) (uint64, error) {
	var resp protocol.ChangesResponse
	err := e.retry(ctx, "changes "+repo, func() error {
		return e.o.Parent.JSON(ctx, "GET", "/api/v1/changes?n=1&since=18446744073709551614&repository="+repo, nil, &resp)
	})
	return resp.Head, err
}

// apply replays one change of the feed.
func (e *Engine) apply(ctx context.Context, repo string, c storage.Change) error {
	switch c.Op {
	case storage.ChangePut:
		err := e.copyTag(ctx, repo, c.Tag, c.Digest)
		if errors.Is(err, ErrNotFound) {
			// Moved or deleted again since: a later change says what.
			return nil
		}
		return err
	case storage.ChangeDelete:
		if e.held(ctx, repo, c.Tag, "") {
			return nil
		}
		err := e.o.Metadata.DeleteTag(ctx, repo, c.Tag)
		if errors.Is(err, storage.ErrManifestUnknown) {
			return nil
		}
		return err
	case storage.ChangeRefer:
		_, err := e.copy(ctx, repo, c.Digest)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// fullRepo compares every tag with the parent (one HEAD each), copies
// what differs and removes local tags the parent no longer has.
func (e *Engine) fullRepo(ctx context.Context, repo string) error {
	var tags []string
	err := e.retry(ctx, "tags "+repo, func() error {
		var err error
		tags, err = e.o.Parent.Tags(ctx, repo)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		tags = nil
	} else if err != nil {
		return fmt.Errorf("list tags: %w", err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, tagConcurrency)
	)
	// Tags are compared and copied several at once: each is a few round
	// trips to the parent, and the blob pool bounds the transfers.
	for _, tag := range tags {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := e.syncTag(ctx, repo, tag); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("tag %s: %w", tag, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	local, err := e.localTags(ctx, repo)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	remote := make(map[string]bool, len(tags))
	for _, t := range tags {
		remote[t] = true
	}
	for _, t := range local {
		if !remote[t] && !e.held(ctx, repo, t, "") {
			if err := e.o.Metadata.DeleteTag(ctx, repo, t); err != nil && !errors.Is(err, storage.ErrManifestUnknown) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// tagConcurrency is the number of tags of a repository compared with the
// parent and copied at once.
const tagConcurrency = 8

// repoConcurrency is the number of repositories synced at once.
const repoConcurrency = 4

// syncTag brings one tag to the parent's state.
func (e *Engine) syncTag(ctx context.Context, repo, tag string) error {
	if _, err := e.o.Metadata.GetManifest(ctx, repo, tag); errors.Is(err, storage.ErrManifestUnknown) {
		return e.newTag(ctx, repo, tag)
	}
	var d digest.Digest
	err := e.retry(ctx, "resolve "+repo+":"+tag, func() error {
		var err error
		d, err = e.o.Parent.Resolve(ctx, repo, tag)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return e.copyTag(ctx, repo, tag, d)
}

// newTag copies a tag this registry does not have yet. Its manifest is
// fetched by tag, which tells its digest too: one request where a tag
// to compare takes a HEAD and then, if it moved, a GET.
func (e *Engine) newTag(ctx context.Context, repo, tag string) error {
	var (
		body []byte
		mt   string
		d    digest.Digest
	)
	err := e.retry(ctx, "fetch "+repo+":"+tag, func() error {
		var err error
		body, mt, d, err = e.o.Parent.Manifest(ctx, repo, tag, e.o.ManifestMaxBytes)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if e.held(ctx, repo, tag, d) {
		return nil
	}
	src := fetchedRoot{Source: e.src, d: d, body: body, mediaType: mt}
	if _, err := graph.Copy(ctx, src, repo, e.store, repo, v1.Descriptor{Digest: d}, e.copyOptions(tag)); err != nil {
		return err
	}
	e.log.Info("tag synced", "repo", repo, "tag", tag, "digest", string(d))
	return nil
}

// fetchedRoot is a source whose root manifest was already fetched: the
// copy reads it from memory (and verifies its digest like any other).
type fetchedRoot struct {
	graph.Source
	d         digest.Digest
	body      []byte
	mediaType string
}

func (f fetchedRoot) Manifest(ctx context.Context, repo string, d digest.Digest, maxBytes int64) ([]byte, string, error) {
	if d == f.d {
		return f.body, f.mediaType, nil
	}
	return f.Source.Manifest(ctx, repo, d, maxBytes)
}

func (e *Engine) localTags(ctx context.Context, repo string) ([]string, error) {
	var out []string
	last := ""
	for range 100000 {
		page, more, err := e.o.Metadata.Tags(ctx, repo, last, 1000)
		if errors.Is(err, storage.ErrRepositoryUnknown) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			break
		}
		last = page[len(page)-1]
	}
	return out, nil
}

// copyTag copies the graph of d and then points tag at it: the tag is
// published only once everything it references is present.
//
// At a ReadWrite registry, a parent state that a local push waiting in the
// outbox was made on top of is not applied: it is older than the local
// tag (typically the echo of an earlier push of this registry), and the
// outbox is about to move the parent's tag past it.
func (e *Engine) copyTag(ctx context.Context, repo, tag string, d digest.Digest) error {
	if e.held(ctx, repo, tag, d) {
		return nil
	}
	var tags []string
	if cur, err := e.o.Metadata.GetManifest(ctx, repo, tag); err != nil || cur.Digest != d {
		tags = []string{tag}
	}
	if _, err := e.copy(ctx, repo, d, tags...); err != nil {
		return err
	}
	if len(tags) > 0 {
		e.log.Info("tag synced", "repo", repo, "tag", tag, "digest", string(d))
	}
	return nil
}

// copyOptions are the options of every copy from the parent.
func (e *Engine) copyOptions(tags ...string) graph.Options {
	return graph.Options{
		Pool:             e.pool,
		ManifestMaxBytes: e.o.ManifestMaxBytes,
		Tags:             tags,
		Retry:            e.retry,
		OnManifest:       func(v1.Descriptor) { e.addProgress(1, 0) },
		OnBytes:          func(n int64) { e.addProgress(0, n) },
		OnQueue:          func(n int64) { e.blobsPending.Add(n) },
	}
}

// copy copies the graph of manifest d of repo from the parent (every
// platform of an index, blobs and referrers), then points tags at it.
func (e *Engine) copy(ctx context.Context, repo string, d digest.Digest, tags ...string) (graph.Stats, error) {
	return graph.Copy(ctx, e.src, repo, e.store, repo, v1.Descriptor{Digest: d}, e.copyOptions(tags...))
}

// copyBlob makes blob d part of repo, downloading it unless the store
// holds it already; size is -1 when not known.
func (e *Engine) copyBlob(ctx context.Context, repo string, d digest.Digest, size int64) error {
	return graph.CopyBlob(ctx, e.src, repo, e.store, repo, v1.Descriptor{Digest: d, Size: size}, e.copyOptions())
}

// FetchManifest brings a manifest (by tag or digest) of a repository in
// scope from the parent for a client pull that missed locally.
func (e *Engine) FetchManifest(ctx context.Context, repo, ref string) error {
	if !e.mayFetch(repo) {
		return ErrNotFound
	}
	ctx, cancel := context.WithTimeout(e.onDemandContext(ctx), 60*time.Second)
	defer cancel()
	_, err, _ := e.flight.Do("manifest:"+repo+":"+ref, func() (any, error) {
		if oci.IsDigest(ref) {
			_, err := e.copy(ctx, repo, digest.Digest(ref))
			return nil, err
		}
		d, err := e.o.Parent.Resolve(ctx, repo, ref)
		if err != nil {
			return nil, err
		}
		return nil, e.copyTag(ctx, repo, ref, d)
	})
	e.onDemandDone(ctx, repo, ref, err)
	return err
}

// FetchBlob brings a blob of a repository in scope from the parent.
func (e *Engine) FetchBlob(ctx context.Context, repo string, d digest.Digest) error {
	if !e.mayFetch(repo) {
		return ErrNotFound
	}
	ctx, cancel := context.WithTimeout(e.onDemandContext(ctx), 10*time.Minute)
	defer cancel()
	err := e.copyBlob(ctx, repo, d, -1)
	e.onDemandDone(ctx, repo, string(d), err)
	return err
}

// mayFetch reports whether a pull-through of repo may ask the parent: the
// repository may be fetched on demand, the parent is online and it has
// not lately left an on-demand fetch unanswered. A miss it refuses is
// counted.
func (e *Engine) mayFetch(repo string) bool {
	if e.onDemand(repo) && e.online.Load() && time.Now().UnixNano() >= e.silentUntil.Load() {
		return true
	}
	e.o.Metrics.OnDemand(false)
	return false
}

func (e *Engine) onDemandContext(ctx context.Context) context.Context {
	return WithAnswerTimeout(storage.WithOrigin(ctx, storage.OriginSync), e.o.OnDemandTimeout)
}

// onDemandDone counts a pull-through and, when the parent did not answer
// in time or could not be reached, skips it for OnDemandHold so that the
// next misses answer at once rather than wait again.
func (e *Engine) onDemandDone(ctx context.Context, repo, ref string, err error) {
	e.o.Metrics.OnDemand(err == nil)
	if err == nil || !errors.Is(err, ErrConnection) || context.Cause(ctx) == context.Canceled {
		return
	}
	until := time.Now().Add(e.o.OnDemandHold)
	if prev := e.silentUntil.Swap(until.UnixNano()); time.Now().UnixNano() >= prev {
		e.log.Warn("parent did not answer a pull-through in time; misses answer at once until it is tried again",
			"repo", repo, "ref", ref, "retry_at", until.UTC().Format(time.RFC3339), "err", err)
	}
}

// Stage copies the graph of manifest d of repo (every platform of an
// index, blobs and referrers) regardless of the sync scope, for a staging
// job, publishes tag (when set) once the graph is complete, and returns
// the bytes of the manifests and blobs its graph holds.
func (e *Engine) Stage(ctx context.Context, repo string, d digest.Digest, tag string) (int64, error) {
	ctx = storage.WithOrigin(ctx, storage.OriginSync)
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	if _, err := e.copy(ctx, repo, d, tags...); err != nil {
		return 0, err
	}
	return graph.Size(ctx, e.store, repo, d)
}
