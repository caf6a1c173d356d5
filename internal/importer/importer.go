// Package importer copies an image from any OCI registry into this one,
// on the server (`outpost import`, POST /api/v1/imports): the manifest or
// index with every platform, its blobs and its referrers, each digest
// verified. The copy is a graph.Copy from the source registry, reached as
// a sync parent (syncer.NewParent applies internal/origin's guard, so the
// credentials go only to the source's origin and its token realm there),
// into the local store under the target name.
package importer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/syncer"
)

// Request is the body of POST /api/v1/imports.
type Request struct {
	// Source is [http(s)://]host[:port]/repository:tag or …@digest
	// (https unless http:// is given).
	Source string `json:"source"`
	// Image is the target, repository:tag (or repository alone: the
	// source's tag).
	Image    string `json:"image"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// CACertificate is a PEM CA to trust for the source, besides the
	// system roots.
	CACertificate string `json:"caCertificate,omitempty"`
}

// State is where an import stands.
type State string

// Import states.
const (
	StateRunning   State = "Running"
	StateSucceeded State = "Succeeded"
	StateFailed    State = "Failed"
)

// Import is an import's progress and outcome.
type Import struct {
	ID     string        `json:"id"`
	Source string        `json:"source"`
	Image  string        `json:"image"`
	State  State         `json:"state"`
	Digest digest.Digest `json:"digest,omitempty"`
	// Manifests and Bytes copied so far.
	Manifests int64      `json:"manifests"`
	Bytes     int64      `json:"bytes"`
	Error     string     `json:"error,omitempty"`
	Started   time.Time  `json:"startTime"`
	Ended     *time.Time `json:"endTime,omitempty"`
}

// Importer runs imports into the registry's stores.
type Importer struct {
	blobs   storage.BlobStore
	uploads storage.Uploads
	meta    storage.Metadata
	log     *slog.Logger

	mu      sync.Mutex
	imports map[string]*Import
	// running counts the progress of the imports under way.
	running map[string]*progress
	next    int
}

// progress counts what an import has copied so far.
type progress struct{ manifests, bytes atomic.Int64 }

// New returns an importer into the local store, which the management API
// serves under /api/v1/imports (admin only).
func New(blobs storage.BlobStore, uploads storage.Uploads, meta storage.Metadata, log *slog.Logger) *Importer {
	return &Importer{blobs: blobs, uploads: uploads, meta: meta, log: log, imports: map[string]*Import{}, running: map[string]*progress{}}
}

// source is a parsed Source.
type source struct {
	url, repo, ref string
}

func parseSource(s string) (source, error) {
	scheme := "https"
	rest := s
	if r, ok := strings.CutPrefix(s, "http://"); ok {
		scheme, rest = "http", r
	} else if r, ok := strings.CutPrefix(s, "https://"); ok {
		rest = r
	}
	host, path, ok := strings.Cut(rest, "/")
	if !ok || host == "" || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return source{}, fmt.Errorf("%w: source %q: want host[:port]/repository:tag or host[:port]/repository@digest", auth.ErrInvalid, s)
	}
	repo, ref, err := protocol.ParseImageRef(path)
	if err != nil {
		return source{}, fmt.Errorf("source %q: %w", s, err)
	}
	return source{url: scheme + "://" + host, repo: repo, ref: ref}, nil
}

// target parses Image: repository:tag, or a repository taking the
// source's tag.
func target(image string, src source) (repo, tag string, err error) {
	if !strings.Contains(image, ":") {
		if err := oci.ValidateName(image); err != nil {
			return "", "", fmt.Errorf("%w: image %q: %w", auth.ErrInvalid, image, err)
		}
		if oci.IsDigest(src.ref) {
			return image, "", nil
		}
		return image, src.ref, nil
	}
	repo, tag, err = protocol.ParseImageRef(image)
	if err == nil && oci.IsDigest(tag) {
		err = fmt.Errorf("%w: image %q: the target is a tag, not a digest", auth.ErrInvalid, image)
	}
	return repo, tag, err
}

// Start checks the request and begins the copy in the background.
func (im *Importer) Start(req Request) (*Import, error) {
	src, err := parseSource(req.Source)
	if err != nil {
		return nil, err
	}
	repo, tag, err := target(req.Image, src)
	if err != nil {
		return nil, err
	}
	caFile := ""
	if req.CACertificate != "" {
		f, err := os.CreateTemp("", "outpost-import-ca-*.crt")
		if err != nil {
			return nil, fmt.Errorf("import CA: %w", err)
		}
		caFile = f.Name()
		_, werr := f.WriteString(req.CACertificate)
		if err := errors.Join(werr, f.Close()); err != nil {
			_ = os.Remove(caFile)
			return nil, fmt.Errorf("import CA: %w", err)
		}
	}
	parent, err := syncer.NewParent(syncer.ParentOptions{URL: src.url, Username: req.Username, Password: req.Password, CAFile: caFile})
	if caFile != "" {
		_ = os.Remove(caFile) // read by NewParent
	}
	if err != nil {
		return nil, fmt.Errorf("%w: source %s: %w", auth.ErrInvalid, req.Source, err)
	}
	im.mu.Lock()
	im.next++
	job := &Import{ID: fmt.Sprintf("import-%d", im.next), Source: req.Source, Image: repo + ":" + tag, State: StateRunning, Started: time.Now().UTC()}
	if tag == "" {
		job.Image = repo
	}
	prog := &progress{}
	im.imports[job.ID], im.running[job.ID] = job, prog
	out := *job
	im.mu.Unlock()
	go im.run(job, prog, parent, src, repo, tag)
	return &out, nil
}

// importTimeout bounds one import.
const importTimeout = 6 * time.Hour

func (im *Importer) run(job *Import, prog *progress, parent *syncer.Parent, src source, repo, tag string) {
	ctx, cancel := context.WithTimeout(context.Background(), importTimeout)
	defer cancel()
	d, err := digest.Digest(src.ref), error(nil)
	if !oci.IsDigest(src.ref) {
		d, err = parent.Resolve(ctx, src.repo, src.ref)
	}
	if err == nil {
		im.set(job, func(j *Import) { j.Digest = d })
		var tags []string
		if tag != "" {
			tags = []string{tag}
		}
		// The copy is a local write (a push at a ReadWrite connected
		// registry travels to its parent like any other).
		dst := &graph.Store{Blobs: im.blobs, Uploads: im.uploads, Metadata: im.meta, Log: im.log, From: "the import source " + job.Source}
		_, err = graph.Copy(ctx, parent.Source(), src.repo, dst, repo, v1.Descriptor{Digest: d}, graph.Options{
			Tags:       tags,
			Retry:      syncer.Retrier(3, im.log),
			OnManifest: func(v1.Descriptor) { prog.manifests.Add(1) },
			OnBytes:    func(n int64) { prog.bytes.Add(n) },
		})
	}
	now := time.Now().UTC()
	im.set(job, func(j *Import) {
		j.Manifests, j.Bytes, j.Ended = prog.manifests.Load(), prog.bytes.Load(), &now
		j.State = StateSucceeded
		if err != nil {
			j.State, j.Error = StateFailed, fmt.Sprintf("import from %s: %v", job.Source, err)
		}
	})
	im.mu.Lock()
	delete(im.running, job.ID)
	im.mu.Unlock()
	if err != nil {
		im.log.Warn("import failed", "source", job.Source, "image", job.Image, "err", err)
		return
	}
	im.log.Info("import finished", "source", job.Source, "image", job.Image, "digest", d, "bytes", prog.bytes.Load())
}

func (im *Importer) set(job *Import, f func(*Import)) {
	im.mu.Lock()
	defer im.mu.Unlock()
	f(job)
}

// Get returns an import's progress: live while it runs.
func (im *Importer) Get(id string) (*Import, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	j, ok := im.imports[id]
	if !ok {
		return nil, fmt.Errorf("import %q: %w", id, auth.ErrNotFound)
	}
	out := *j
	if p := im.running[id]; p != nil {
		out.Manifests, out.Bytes = p.manifests.Load(), p.bytes.Load()
	}
	return &out, nil
}
