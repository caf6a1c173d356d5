package client

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

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

const manifestAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// CheckImage verifies that every manifest, child manifest, blob and
// referrer of repo:ref is present at the server and that each blob's
// content matches its digest, by reading it.
func (c *Client) CheckImage(ctx context.Context, repo, ref string) CheckResult {
	res := CheckResult{Image: repo + sep(ref) + ref}
	seen := map[digest.Digest]bool{}
	c.checkManifest(ctx, repo, ref, &res, seen, 0)
	res.OK = len(res.Problems) == 0
	return res
}

func sep(ref string) string {
	if strings.Contains(ref, ":") {
		return "@"
	}
	return ":"
}

func (c *Client) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+path, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	return c.http.Do(req)
}

func (c *Client) checkManifest(ctx context.Context, repo, ref string, res *CheckResult, seen map[digest.Digest]bool, depth int) {
	if depth > 8 {
		return
	}
	resp, err := c.get(ctx, "/v2/"+repo+"/manifests/"+ref, manifestAccept)
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("manifest %s: %v", ref, err))
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("missing manifest %s (%s)", ref, resp.Status))
		return
	}
	d := digest.FromBytes(body)
	if strings.Contains(ref, ":") {
		want := digest.Digest(ref)
		if want.Algorithm() == digest.SHA512 {
			d = digest.SHA512.FromBytes(body)
		}
		if d != want {
			res.Problems = append(res.Problems, fmt.Sprintf("corrupt manifest %s: content is %s", ref, d))
			return
		}
	} else if h := resp.Header.Get("Docker-Content-Digest"); h != "" && digest.Digest(h) != d {
		res.Problems = append(res.Problems, fmt.Sprintf("corrupt manifest %s: content is %s, registry says %s", ref, d, h))
	}
	if seen[d] {
		return
	}
	seen[d] = true
	res.Manifests++
	var m struct {
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("manifest %s is not JSON: %v", d, err))
		return
	}
	blobs := m.Layers
	if m.Config != nil {
		blobs = append([]v1.Descriptor{*m.Config}, blobs...)
	}
	for _, b := range blobs {
		if oci.IsNonDistributable(b.MediaType) {
			continue
		}
		c.checkBlob(ctx, repo, b, res)
	}
	for _, child := range m.Manifests {
		c.checkManifest(ctx, repo, string(child.Digest), res, seen, depth+1)
	}
	// Referrers: signatures, SBOMs.
	resp, err = c.get(ctx, "/v2/"+repo+"/referrers/"+string(d), "")
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("referrers of %s: %v", d, err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return
	}
	var idx v1.Index
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&idx); err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("referrers of %s: %v", d, err))
		return
	}
	for _, r := range idx.Manifests {
		c.checkManifest(ctx, repo, string(r.Digest), res, seen, depth+1)
	}
}

// checkBlob reads a blob entirely and verifies its digest and size.
func (c *Client) checkBlob(ctx context.Context, repo string, b v1.Descriptor, res *CheckResult) {
	resp, err := c.get(ctx, "/v2/"+repo+"/blobs/"+string(b.Digest), "")
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("blob %s: %v", b.Digest, err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		res.Problems = append(res.Problems, fmt.Sprintf("missing blob %s (%s)", b.Digest, resp.Status))
		return
	}
	var h hash.Hash = sha256.New()
	if b.Digest.Algorithm() == digest.SHA512 {
		h = sha512.New()
	}
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("blob %s: read: %v", b.Digest, err))
		return
	}
	got := digest.NewDigest(b.Digest.Algorithm(), h)
	if got != b.Digest || (b.Size > 0 && n != b.Size) {
		res.Problems = append(res.Problems, fmt.Sprintf("corrupt blob %s: content is %s (%d bytes, want %d)", b.Digest, got, n, b.Size))
		return
	}
	res.Blobs++
	res.Bytes += n
}

// HasManifest reports whether the server has repo:ref (a tag or digest),
// with a HEAD request; an answer other than 200 or 404 is an error.
func (c *Client) HasManifest(ctx context.Context, repo, ref string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.base.String()+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return false, fmt.Errorf("manifest %s%s%s: %w", repo, sep(ref), ref, err)
	}
	req.Header.Set("Accept", manifestAccept)
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
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
