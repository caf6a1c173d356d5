package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Target is a registry under test, reached over plain HTTP on loopback.
type Target struct {
	Name string
	// Base is the registry's root URL, e.g. http://127.0.0.1:5000.
	Base       string
	User, Pass string
	// PID is the server's process ID for RSS and CPU figures; 0 when the
	// tool did not start it.
	PID    int
	client *http.Client
}

// newClient returns a keep-alive client with enough idle connections per
// host for the highest concurrency, no compression and large socket
// buffers so that the load generator reads in big chunks.
func newClient() *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     64 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   2 * time.Minute,
		// Registries answer pulls directly; a redirect would mean a
		// storage backend this tool does not measure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// NewTarget returns a target with its own connection pool.
func NewTarget(name, base, user, pass string, pid int) *Target {
	return &Target{Name: name, Base: base, User: user, Pass: pass, PID: pid, client: newClient()}
}

// close drops the target's idle connections.
func (t *Target) close() { t.client.CloseIdleConnections() }

// do sends a request with Basic credentials on every request, as
// containerd and kubelet pull secrets do. body may be nil.
func (t *Target) do(ctx context.Context, method, u string, hdr http.Header, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if t.User != "" {
		req.SetBasicAuth(t.User, t.Pass)
	}
	return t.client.Do(req)
}

// expect drains and closes resp's body and returns an error unless its
// status is want.
func expect(resp *http.Response, want int, what string) error {
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s: status %d, want %d: %s", what, resp.StatusCode, want, bytes.TrimSpace(msg))
	}
	_, err := io.Copy(io.Discard, resp.Body)
	return err
}

// location resolves an upload session's Location header against Base
// and adds query parameters. distribution answers with absolute URLs
// that carry state in the query; Outpost answers with a path.
func (t *Target) location(resp *http.Response, add url.Values) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", errors.New("upload response has no Location")
	}
	base, err := url.Parse(t.Base)
	if err != nil {
		return "", err
	}
	u, err := base.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("bad Location %q: %w", loc, err)
	}
	q := u.Query()
	for k, v := range add {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// payload is blob content that can be read in sections, for chunked
// uploads.
type payload interface {
	Size() int64
	Section(from, to int64) io.Reader
}

// filePayload is a blob file. Whole-file requests hand the *os.File to
// the transport, which can then use sendfile(2).
type filePayload struct {
	f    *os.File
	size int64
}

func (p filePayload) Size() int64 { return p.size }

func (p filePayload) Section(from, to int64) io.Reader {
	if from == 0 && to == p.size {
		_, _ = p.f.Seek(0, io.SeekStart)
		return p.f
	}
	return io.NewSectionReader(p.f, from, to-from)
}

// bytesPayload is a blob held in memory.
type bytesPayload []byte

func (p bytesPayload) Size() int64 { return int64(len(p)) }

func (p bytesPayload) Section(from, to int64) io.Reader { return bytes.NewReader(p[from:to]) }

// startUpload opens an upload session (spec § "Pushing blobs").
func (t *Target) startUpload(ctx context.Context, repo string) (*http.Response, error) {
	resp, err := t.do(ctx, http.MethodPost, t.Base+"/v2/"+repo+"/blobs/uploads/", nil, bytes.NewReader(nil), 0)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, expect(resp, http.StatusAccepted, "POST upload")
	}
	_ = resp.Body.Close()
	return resp, nil
}

// pushMonolithic uploads a blob with POST then a single PUT carrying the
// whole body (spec § "POST then PUT"), which both registries support.
func (t *Target) pushMonolithic(ctx context.Context, repo, digest string, p payload) error {
	resp, err := t.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	u, err := t.location(resp, url.Values{"digest": {digest}})
	if err != nil {
		return err
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err = t.do(ctx, http.MethodPut, u, hdr, p.Section(0, p.Size()), p.Size())
	if err != nil {
		return err
	}
	return expect(resp, http.StatusCreated, "PUT blob")
}

// pushChunked uploads a blob with POST, one PATCH per chunk carrying
// Content-Range, and a closing PUT with no body (spec § "Pushing a blob in
// chunks").
func (t *Target) pushChunked(ctx context.Context, repo, digest string, p payload, chunk int64) error {
	resp, err := t.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	for from := int64(0); from < p.Size(); from += chunk {
		to := min(from+chunk, p.Size())
		u, err := t.location(resp, nil)
		if err != nil {
			return err
		}
		hdr := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", from, to-1)},
		}
		resp, err = t.do(ctx, http.MethodPatch, u, hdr, p.Section(from, to), to-from)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusAccepted {
			return expect(resp, http.StatusAccepted, "PATCH chunk")
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	u, err := t.location(resp, url.Values{"digest": {digest}})
	if err != nil {
		return err
	}
	resp, err = t.do(ctx, http.MethodPut, u, nil, bytes.NewReader(nil), 0)
	if err != nil {
		return err
	}
	return expect(resp, http.StatusCreated, "PUT upload")
}

// putManifest stores a manifest under ref (spec § "Pushing manifests").
func (t *Target) putManifest(ctx context.Context, repo, ref, mediaType string, body []byte) error {
	hdr := http.Header{"Content-Type": {mediaType}}
	resp, err := t.do(ctx, http.MethodPut, t.Base+"/v2/"+repo+"/manifests/"+ref, hdr, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return err
	}
	return expect(resp, http.StatusCreated, "PUT manifest "+repo+":"+ref)
}

// Seed pushes the dataset into the target: every blob monolithically
// (workers at once), then the image manifests by tag, then the indexes.
func (t *Target) Seed(ctx context.Context, ds *Dataset, workers int) error {
	type job struct {
		repo string
		blob Blob
	}
	var jobs []job
	for _, m := range ds.Images {
		for _, b := range m.Blobs {
			jobs = append(jobs, job{m.Repo, b})
		}
	}
	errs := make([]error, len(jobs))
	forEach(len(jobs), workers, func(i int) {
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
			return
		}
		f, err := os.Open(BlobPath(ds.Dir, jobs[i].blob.Digest))
		if err != nil {
			errs[i] = err
			return
		}
		defer func() { _ = f.Close() }()
		errs[i] = t.pushMonolithic(ctx, jobs[i].repo, jobs[i].blob.Digest, filePayload{f, jobs[i].blob.Size})
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("seed %s: %w", t.Name, err)
	}
	for _, m := range append(append([]Manifest(nil), ds.Images...), ds.Indexes...) {
		if err := t.putManifest(ctx, m.Repo, m.Tag, m.MediaType, m.Body); err != nil {
			return fmt.Errorf("seed %s: %w", t.Name, err)
		}
	}
	return nil
}
