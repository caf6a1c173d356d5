package bench

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-registry/outpost/internal/oci"
)

// Workload names, as printed in the JSON lines.
const (
	WorkloadPull          = "pull"
	WorkloadPushMonolith  = "push_monolithic"
	WorkloadPushChunked   = "push_chunked"
	WorkloadManifestHead  = "manifest_head"
	WorkloadManifestGet   = "manifest_get"
	WorkloadStart         = "start"
	WorkloadStartTags     = "start_tags"
	WorkloadSeed          = "seed"
	maxErrorsPerWorkload  = 1000
	hardTimeoutOverDeadln = time.Minute
)

// RunConfig bounds one workload run: it stops at Duration or after MaxOps
// operations, whichever comes first; operations in flight at the deadline
// finish and are counted.
type RunConfig struct {
	Concurrency int
	Duration    time.Duration
	MaxOps      int64
}

// tally is what one client goroutine measured.
type tally struct {
	lat       []time.Duration
	ops       int64
	errs      int64
	bytes     int64
	manifests int64
	firstErr  error
}

// outcome is a whole run, all clients merged.
type outcome struct {
	tally
	elapsed time.Duration
}

func (o outcome) result(workload, target string, conc int) Result {
	slices.Sort(o.lat)
	secs := o.elapsed.Seconds()
	r := Result{
		Workload: workload, Target: target, Concurrency: conc,
		Requests: o.ops, Errors: o.errs, Bytes: o.bytes, Seconds: round(secs),
		P50ms: percentile(o.lat, 50), P99ms: percentile(o.lat, 99),
	}
	if secs > 0 {
		r.ReqPerS = round(float64(o.ops-o.errs) / secs)
		r.MBPerS = round(mb(o.bytes) / secs)
		r.ManifestsPerS = round(float64(o.manifests) / secs)
	}
	if o.firstErr != nil {
		r.Note = "first error: " + o.firstErr.Error()
	}
	return r
}

// opFunc performs one operation for client c (its n-th) and adds bytes
// and manifests to t; the runner records latency and errors.
type opFunc func(ctx context.Context, n int64, t *tally) error

// run starts rc.Concurrency clients, each made by newOp, and returns
// what they measured. Latency samples are kept only for successful
// operations.
func run(ctx context.Context, rc RunConfig, newOp func(client int) opFunc) outcome {
	ctx, cancel := context.WithTimeout(ctx, rc.Duration+hardTimeoutOverDeadln)
	defer cancel()
	var (
		issued atomic.Int64
		errs   atomic.Int64
		wg     sync.WaitGroup
	)
	tallies := make([]tally, rc.Concurrency)
	start := time.Now()
	deadline := start.Add(rc.Duration)
	for c := range rc.Concurrency {
		op := newOp(c)
		wg.Go(func() {
			t := &tallies[c]
			for n := int64(0); ; n++ {
				if issued.Add(1) > rc.MaxOps || time.Now().After(deadline) ||
					errs.Load() >= maxErrorsPerWorkload || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := op(ctx, n, t)
				t.ops++
				if err != nil {
					errs.Add(1)
					t.errs++
					if t.firstErr == nil {
						t.firstErr = err
					}
					continue
				}
				t.lat = append(t.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	o := outcome{elapsed: time.Since(start)}
	for _, t := range tallies {
		o.lat = append(o.lat, t.lat...)
		o.ops += t.ops
		o.errs += t.errs
		o.bytes += t.bytes
		o.manifests += t.manifests
		if o.firstErr == nil {
			o.firstErr = t.firstErr
		}
	}
	return o
}

// errMismatch marks content that did not match the dataset.
var errMismatch = errors.New("content mismatch")

// puller fetches images like a container runtime: the manifest by tag
// (for an index, then the platform manifest by digest), then the config
// and every layer. Each manifest is checked against its digest; one blob
// in verifyEvery is hashed while it is read (0: none), the others are
// checked for length only.
type puller struct {
	t           *Target
	ds          *Dataset
	verifyEvery int64
	blobs       atomic.Int64
}

// pullJobs lists what clients pull in turn: every image tag, then every
// index tag.
func (p *puller) jobs() []*Manifest {
	var jobs []*Manifest
	for i := range p.ds.Images {
		jobs = append(jobs, &p.ds.Images[i])
	}
	for i := range p.ds.Indexes {
		jobs = append(jobs, &p.ds.Indexes[i])
	}
	return jobs
}

func (p *puller) newOp(conc int) func(client int) opFunc {
	jobs := p.jobs()
	return func(client int) opFunc {
		buf := make([]byte, 256<<10)
		offset := client * len(jobs) / max(conc, 1)
		return func(ctx context.Context, n int64, t *tally) error {
			m := jobs[(offset+int(n))%len(jobs)]
			if err := p.manifest(ctx, m.Repo, m.Tag, m, buf, t); err != nil {
				return err
			}
			t.manifests++
			if len(m.Children) > 0 {
				// A node of platform client%len picks its manifest.
				m = &p.ds.Images[m.Children[client%len(m.Children)]]
				if err := p.manifest(ctx, m.Repo, m.Digest, m, buf, t); err != nil {
					return err
				}
			}
			for _, b := range m.Blobs {
				if err := p.blob(ctx, m.Repo, b, buf, t); err != nil {
					return err
				}
			}
			return nil
		}
	}
}

func (p *puller) manifest(ctx context.Context, repo, ref string, want *Manifest, buf []byte, t *tally) error {
	resp, err := p.t.do(ctx, "GET", p.t.Base+"/v2/"+repo+"/manifests/"+ref,
		map[string][]string{"Accept": {oci.ManifestAccept}}, nil, 0)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != 200 {
		return expect(resp, 200, "GET manifest "+repo+":"+ref)
	}
	n, err := io.ReadFull(resp.Body, buf[:min(len(buf), len(want.Body)+1)])
	t.bytes += int64(n)
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) && err != nil {
		return err
	}
	if digestOf(buf[:n]) != want.Digest {
		return fmt.Errorf("%w: manifest %s:%s", errMismatch, repo, ref)
	}
	return nil
}

func (p *puller) blob(ctx context.Context, repo string, b Blob, buf []byte, t *tally) error {
	resp, err := p.t.do(ctx, "GET", p.t.Base+"/v2/"+repo+"/blobs/"+b.Digest, nil, nil, 0)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != 200 {
		return expect(resp, 200, "GET blob "+b.Digest)
	}
	verify := p.verifyEvery > 0 && p.blobs.Add(1)%p.verifyEvery == 0
	var (
		w io.Writer = io.Discard
		h hash.Hash
	)
	if verify {
		h = getHash()
		defer hashPool.Put(h)
		w = h
	}
	// Hide io.Discard's ReaderFrom so that the large buffer is used.
	n, err := io.CopyBuffer(struct{ io.Writer }{w}, resp.Body, buf)
	t.bytes += n
	if err != nil {
		return err
	}
	if n != b.Size {
		return fmt.Errorf("%w: blob %s: %d bytes, want %d", errMismatch, b.Digest, n, b.Size)
	}
	if verify && fmt.Sprintf("sha256:%x", h.Sum(nil)) != b.Digest {
		return fmt.Errorf("%w: blob %s", errMismatch, b.Digest)
	}
	return nil
}

// manifestProbe sends HEAD or GET for image manifests by tag, as a
// runtime checking for updates does. It checks Docker-Content-Digest on
// every answer and, for GET, the body length (and the body's digest for
// one in verifyEvery).
func manifestProbe(tg *Target, ds *Dataset, method string, verifyEvery int64) func(client int) opFunc {
	var count atomic.Int64
	return func(client int) opFunc {
		buf := make([]byte, 64<<10)
		return func(ctx context.Context, n int64, t *tally) error {
			m := &ds.Images[(client+int(n))%len(ds.Images)]
			resp, err := tg.do(ctx, method, tg.Base+"/v2/"+m.Repo+"/manifests/"+m.Tag,
				map[string][]string{"Accept": {oci.ManifestAccept}}, nil, 0)
			if err != nil {
				return err
			}
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != 200 {
				return expect(resp, 200, method+" manifest")
			}
			if resp.Header.Get("Docker-Content-Digest") != m.Digest {
				return fmt.Errorf("%w: %s %s:%s: Docker-Content-Digest %q", errMismatch, method, m.Repo, m.Tag, resp.Header.Get("Docker-Content-Digest"))
			}
			if method == "HEAD" {
				return nil
			}
			k, err := io.ReadFull(resp.Body, buf[:min(len(buf), len(m.Body)+1)])
			t.bytes += int64(k)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				return err
			}
			if k != len(m.Body) || (verifyEvery > 0 && count.Add(1)%verifyEvery == 0 && digestOf(buf[:k]) != m.Digest) {
				return fmt.Errorf("%w: GET %s:%s", errMismatch, m.Repo, m.Tag)
			}
			return nil
		}
	}
}
