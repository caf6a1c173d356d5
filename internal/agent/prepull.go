package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// Runtime is a node's image store that pre-pull fills: the CRI image
// service in production, any store in tests.
type Runtime interface {
	// Pull pulls ref (host/repository@digest) with basic credentials.
	Pull(ctx context.Context, ref, username, password string) error
	// Has reports whether the store holds ref under that digest.
	Has(ctx context.Context, ref string) (bool, error)
}

// PrePullOptions configure PrePull.
type PrePullOptions struct {
	// Server is the site's registry (https://host:port), reached with
	// CAFile and the site's node token (Username, Password).
	Server             string
	CAFile             string
	Username, Password string
	// Host is the registry as images name it on the node (default: the
	// host:port of Server): images are pulled as Host/repository@digest,
	// the name certs.d/<Host> makes containerd trust.
	Host string
	// Node is this node's name (the DaemonSet's spec.nodeName).
	Node string
	// Labels are this node's labels, matched against a job's node
	// selector.
	Labels map[string]string
	// LabelSource, when set, is asked for the node's labels every round
	// (the Kubernetes API); they add to Labels.
	LabelSource func(ctx context.Context) (map[string]string, error)
	// Concurrency is how many images the node pulls at once (default 2).
	Concurrency int
	// Interval is how often the site is asked for jobs (default 10 s).
	Interval time.Duration
	// SlotRetry is how long to wait before asking again for a pull slot
	// the site refused (default 2 s, jittered).
	SlotRetry time.Duration
	Runtime   Runtime
}

func (o *PrePullOptions) defaults() error {
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.SlotRetry <= 0 {
		o.SlotRetry = 2 * time.Second
	}
	if err := protocol.ValidNodeName(o.Node); err != nil {
		return fmt.Errorf("%w: --node-name: %w", ErrInvalidOptions, err)
	}
	if o.Host == "" {
		s, err := client.NormalizeServer(o.Server)
		if err != nil {
			return fmt.Errorf("%w: --server: %w", ErrInvalidOptions, err)
		}
		o.Host = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	}
	if o.Runtime == nil {
		return fmt.Errorf("%w: no container runtime", ErrInvalidOptions)
	}
	return nil
}

// prePuller is one node's agent state.
type prePuller struct {
	o    PrePullOptions
	site *client.Client
	log  *slog.Logger
}

// PrePull runs the node stage of pre-pull jobs until ctx ends. Every
// Interval it asks the site for the jobs it has staged; for each job whose
// node selector matches this node and that may be pulled now, it holds one
// of the site's pull slots (the site counts them, so only so many nodes
// pull at once), pulls the images the runtime does not hold yet
// (Concurrency at a time), checks that the runtime reports each with the
// staged digest, and reports the node's state to the site (Pending,
// Pulling, Pulled, or Failed with the reason). Failures are retried on the
// next round: a site that is gone, a runtime that is down. A job the
// site no longer lists (deleted at the root) has its pulls cancelled;
// images already pulled stay (the kubelet's image GC owns them).
func PrePull(ctx context.Context, o PrePullOptions, log *slog.Logger) error {
	if err := o.defaults(); err != nil {
		return err
	}
	site, err := client.New(o.Server, o.Username, o.Password, o.CAFile)
	if err != nil {
		return fmt.Errorf("pre-pull: %w", err)
	}
	p := &prePuller{o: o, site: site, log: log.With("node", o.Node)}
	log.Info("pre-pull agent started", "node", o.Node, "server", o.Server, "host", o.Host, "concurrency", o.Concurrency)
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// round handles every job the site lists once.
func (p *prePuller) round(ctx context.Context) {
	jobs, err := p.jobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("pre-pull: site unreachable; retrying", "server", p.o.Server, "err", err)
		}
		return
	}
	labels, labelErr := p.labels(ctx)
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		if len(j.NodeSelector) > 0 && labelErr != nil {
			p.report(ctx, j.Job, protocol.NodeFailed, 0, len(j.Images), "node labels for the node selector: "+labelErr.Error()+" (retrying)")
			continue
		}
		if !protocol.MatchNodeSelector(j.NodeSelector, labels) {
			continue
		}
		p.job(ctx, j)
	}
}

// labels are the node's labels: Labels, and those of LabelSource.
func (p *prePuller) labels(ctx context.Context) (map[string]string, error) {
	out := maps.Clone(p.o.Labels)
	if p.o.LabelSource == nil {
		return out, nil
	}
	more, err := p.o.LabelSource(ctx)
	if err != nil {
		return out, err
	}
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, more)
	return out, nil
}

func (p *prePuller) jobs(ctx context.Context) ([]protocol.NodeJob, error) {
	var jobs []protocol.NodeJob
	err := p.site.Do(ctx, http.MethodGet, "/api/v1/nodes/jobs", nil, &jobs)
	return jobs, err
}

func (p *prePuller) ref(im protocol.StagedImage) string {
	return p.o.Host + "/" + im.Repository + "@" + string(im.Digest)
}

// report sends the node's state on a job; a site that cannot be reached
// hears it with the next round.
func (p *prePuller) report(ctx context.Context, job string, state protocol.NodeState, done, total int, reason string) {
	np := protocol.NodeProgress{Node: p.o.Node, State: state, ImagesDone: done, ImagesTotal: total, Reason: reason}
	path := "/api/v1/nodes/" + url.PathEscape(p.o.Node) + "/jobs/" + url.PathEscape(job)
	if err := p.site.Do(ctx, http.MethodPut, path, np, nil); err != nil && ctx.Err() == nil {
		p.log.Warn("pre-pull: report progress", "job", job, "state", state, "err", err)
	}
}

// missing returns the images the runtime does not hold with their digest.
func (p *prePuller) missing(ctx context.Context, images []protocol.StagedImage) ([]protocol.StagedImage, error) {
	var out []protocol.StagedImage
	for _, im := range images {
		ok, err := p.o.Runtime.Has(ctx, p.ref(im))
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, im)
		}
	}
	return out, nil
}

// job brings one job to Pulled on this node, or reports why not.
func (p *prePuller) job(ctx context.Context, j protocol.NodeJob) {
	total := len(j.Images)
	todo, err := p.missing(ctx, j.Images)
	if err != nil {
		p.report(ctx, j.Job, protocol.NodeFailed, 0, total, err.Error()+" (retrying)")
		return
	}
	if len(todo) == 0 {
		p.report(ctx, j.Job, protocol.NodePulled, total, total, "")
		return
	}
	done := total - len(todo)
	if !j.PullNow {
		p.report(ctx, j.Job, protocol.NodePending, done, total, "waiting for the site's sync window")
		return
	}
	p.report(ctx, j.Job, protocol.NodePending, done, total, "waiting for a pull slot")
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ttl, ok := p.acquire(jctx, j.Job)
	if !ok {
		return
	}
	defer p.release(ctx)
	// Keep the slot while pulling, and stop when the job goes away.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.hold(jctx, cancel, j.Job, ttl) }()
	defer wg.Wait()
	defer cancel()
	p.report(ctx, j.Job, protocol.NodePulling, done, total, "")
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(jctx)
	g.SetLimit(p.o.Concurrency)
	for _, im := range todo {
		g.Go(func() error {
			ref := p.ref(im)
			if err := p.o.Runtime.Pull(gctx, ref, p.o.Username, p.o.Password); err != nil {
				return err
			}
			ok, err := p.o.Runtime.Has(gctx, ref)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s: the runtime does not report the staged digest after the pull", ref)
			}
			mu.Lock()
			done++
			n := done
			mu.Unlock()
			p.report(ctx, j.Job, protocol.NodePulling, n, total, "")
			return nil
		})
	}
	err = g.Wait()
	switch {
	case err == nil:
		p.report(ctx, j.Job, protocol.NodePulled, total, total, "")
		p.log.Info("pre-pull: job pulled", "job", j.Job, "images", total)
	case jctx.Err() != nil && ctx.Err() == nil:
		p.log.Info("pre-pull: job no longer listed by the site; pulls stopped", "job", j.Job)
	case ctx.Err() == nil:
		p.report(ctx, j.Job, protocol.NodeFailed, done, total, err.Error()+" (retrying)")
		p.log.Warn("pre-pull: job failed; retrying", "job", j.Job, "err", err)
	}
}

// acquire waits for one of the site's pull slots and returns its
// lifetime; false when ctx ended or the site no longer lists job (asked
// every few refusals, so that waiting nodes stop for a deleted job).
func (p *prePuller) acquire(ctx context.Context, job string) (time.Duration, bool) {
	for attempt := 1; ; attempt++ {
		if attempt%5 == 0 && !p.listed(ctx, job) {
			p.log.Info("pre-pull: job no longer listed by the site; stopped waiting for a pull slot", "job", job)
			return 0, false
		}
		var l protocol.Lease
		err := p.site.Do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(p.o.Node)+"/lease", nil, &l)
		if err == nil && l.Granted {
			return time.Duration(max(l.TTLSeconds, 3)) * time.Second, true
		}
		if err != nil && ctx.Err() == nil {
			p.log.Debug("pre-pull: pull slot", "err", err)
		}
		// Jitter so that refused nodes do not ask in lockstep.
		wait := p.o.SlotRetry/2 + rand.N(p.o.SlotRetry) //nolint:gosec // jitter, not security
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(wait):
		}
	}
}

func (p *prePuller) release(ctx context.Context) {
	if err := p.site.Do(context.WithoutCancel(ctx), http.MethodDelete, "/api/v1/nodes/"+url.PathEscape(p.o.Node)+"/lease", nil, nil); err != nil {
		p.log.Debug("pre-pull: give the pull slot back (it expires by itself)", "err", err)
	}
}

// hold renews the slot a third of its lifetime at a time and cancels the
// job's pulls when the site no longer lists the job; it returns when ctx
// ends.
func (p *prePuller) hold(ctx context.Context, cancel context.CancelFunc, job string, ttl time.Duration) {
	every := min(p.o.Interval, ttl/3)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var l protocol.Lease
		if err := p.site.Do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(p.o.Node)+"/lease", nil, &l); err != nil {
			continue // the site is gone: the pulls fail or finish by themselves
		}
		if !p.listed(ctx, job) {
			cancel()
			return
		}
	}
}

// listed reports whether the site still lists job; true when the site
// cannot be asked (a site that is gone deletes nothing).
func (p *prePuller) listed(ctx context.Context, job string) bool {
	jobs, err := p.jobs(ctx)
	if err != nil {
		return true
	}
	return slices.ContainsFunc(jobs, func(j protocol.NodeJob) bool { return j.Job == job })
}
