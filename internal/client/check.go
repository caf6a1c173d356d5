package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
)

// CheckResult is the outcome of checking one image at a registry.
type CheckResult struct {
	Image     string   `json:"image"`
	OK        bool     `json:"ok"`
	Manifests int      `json:"manifests"`
	Blobs     int      `json:"blobs"`
	Bytes     int64    `json:"bytes"`
	Problems  []string `json:"problems,omitempty"`
}

// CheckImage verifies that every manifest, child manifest, blob and
// referrer of repo:ref is present at the server and that each blob's
// content matches its digest, by reading it: a copy of the image's graph
// into a sink that verifies and keeps nothing.
func (c *Client) CheckImage(ctx context.Context, repo, ref string) CheckResult {
	res := CheckResult{Image: repo + sep(ref) + ref}
	d, err := c.resolve(ctx, repo, ref)
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
		return res
	}
	var mu sync.Mutex
	st, err := graph.Copy(ctx, c, repo, graph.Verifier{}, repo, v1.Descriptor{Digest: d}, graph.Options{
		ManifestMaxBytes: 64 << 20,
		OnError: func(_ v1.Descriptor, err error) error {
			mu.Lock()
			res.Problems = append(res.Problems, problem(err))
			mu.Unlock()
			return nil
		},
		OnBlob: func(desc v1.Descriptor) {
			mu.Lock()
			res.Blobs++
			res.Bytes += desc.Size
			mu.Unlock()
		},
	})
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	res.Manifests = int(st.Manifests)
	res.OK = len(res.Problems) == 0
	return res
}

// problem words a failed manifest or blob for the check's report; err
// names what failed and where.
func problem(err error) string {
	switch {
	case errors.Is(err, graph.ErrNotFound):
		return "missing: " + err.Error()
	case errors.Is(err, graph.ErrDigest):
		return "corrupt: " + err.Error()
	}
	return err.Error()
}

func sep(ref string) string {
	if strings.Contains(ref, ":") {
		return "@"
	}
	return ":"
}

func (c *Client) get(ctx context.Context, method, path string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	return c.http.Do(req)
}

// answer turns a non-success status into an error, ErrNotFound for 404.
func answer(resp *http.Response, method, path string, ok ...int) error {
	for _, s := range append(ok, http.StatusOK) {
		if resp.StatusCode == s {
			return nil
		}
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s %s: %s", graph.ErrNotFound, method, path, resp.Status)
	}
	return fmt.Errorf("%s %s: %s", method, path, resp.Status)
}

var manifestHeader = http.Header{"Accept": {oci.ManifestAccept}}

// resolve returns the digest of repo:ref (ref itself when a digest).
func (c *Client) resolve(ctx context.Context, repo, ref string) (digest.Digest, error) {
	if oci.IsDigest(ref) {
		return digest.Parse(ref)
	}
	path := "/v2/" + repo + "/manifests/" + ref
	resp, err := c.get(ctx, http.MethodHead, path, manifestHeader)
	if err != nil {
		return "", fmt.Errorf("manifest %s: %w", ref, err)
	}
	if err := answer(resp, http.MethodHead, path); err != nil {
		return "", fmt.Errorf("missing manifest %s (%w)", ref, err)
	}
	_ = resp.Body.Close()
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("manifest %s: the registry sent no valid Docker-Content-Digest: %w", ref, err)
	}
	return d, nil
}

// Manifest implements graph.Source.
func (c *Client) Manifest(ctx context.Context, repo string, d digest.Digest, maxBytes int64) ([]byte, string, error) {
	path := "/v2/" + repo + "/manifests/" + string(d)
	resp, err := c.get(ctx, http.MethodGet, path, manifestHeader)
	if err != nil {
		return nil, "", err
	}
	if err := answer(resp, http.MethodGet, path); err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("%w: read manifest %s: %w", graph.ErrInterrupted, d, err)
	}
	if int64(len(body)) > maxBytes {
		return nil, "", fmt.Errorf("manifest %s is larger than %d bytes", d, maxBytes)
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// Blob implements graph.Source.
func (c *Client) Blob(ctx context.Context, repo string, desc v1.Descriptor, offset int64) (io.ReadCloser, bool, error) {
	path := "/v2/" + repo + "/blobs/" + string(desc.Digest)
	hdr := http.Header{}
	if offset > 0 {
		hdr.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := c.get(ctx, http.MethodGet, path, hdr)
	if err != nil {
		return nil, false, err
	}
	if err := answer(resp, http.MethodGet, path, http.StatusPartialContent); err != nil {
		return nil, false, err
	}
	return resp.Body, resp.StatusCode == http.StatusPartialContent, nil
}

// Referrers implements graph.Source; a registry without the referrers
// API has none.
func (c *Client) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	path := "/v2/" + repo + "/referrers/" + string(d)
	resp, err := c.get(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if err := answer(resp, http.MethodGet, path); err != nil {
		if errors.Is(err, graph.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	defer resp.Body.Close()
	var idx v1.Index
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&idx); err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	return idx.Manifests, nil
}

// HasManifest reports whether the server has repo:ref (a tag or digest),
// with a HEAD request; an answer other than 200 or 404 is an error.
func (c *Client) HasManifest(ctx context.Context, repo, ref string) (bool, error) {
	resp, err := c.get(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+ref, manifestHeader)
	if err != nil {
		return false, fmt.Errorf("manifest %s%s%s: %w", repo, sep(ref), ref, err)
	}
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("manifest %s%s%s at %s: %s", repo, sep(ref), ref, c.base, resp.Status)
	}
}
