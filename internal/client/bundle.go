package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/bundle"
	"github.com/outpost-registry/outpost/internal/graph"
)

// stream sends a request whose body or answer may take long (a bundle):
// no overall timeout, the context bounds it. The answer is the caller's
// to close; an error status is decoded into an *APIError.
func (c *Client) stream(ctx context.Context, method, path string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", contentType)
	}
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, decodeError(resp.StatusCode, data)
	}
	return resp, nil
}

// decodeError turns an error answer of the management API into an
// *APIError.
func decodeError(status int, data []byte) error {
	var e struct {
		Error APIError `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error.Message == "" {
		e.Error.Message = string(bytes.TrimSpace(data))
		if e.Error.Message == "" {
			e.Error.Message = http.StatusText(status)
		}
	}
	e.Error.Status = status
	return &e.Error
}

// ExportOptions select what ExportBundle exports.
type ExportOptions struct {
	ConnectedRegistry string
	Repositories      []string
	Images            []string
	Full              bool
	// Inventory is the site's inventory file (nil: none).
	Inventory []byte
}

// ExportBundle has the server write a bundle and returns the answer: the
// tar as its body (ContentLength set when known), the bundle id and
// counts in its headers.
func (c *Client) ExportBundle(ctx context.Context, o ExportOptions) (*http.Response, error) {
	q := url.Values{}
	if o.ConnectedRegistry != "" {
		q.Set("connectedRegistry", o.ConnectedRegistry)
	}
	for _, r := range o.Repositories {
		q.Add("repository", r)
	}
	for _, im := range o.Images {
		q.Add("image", im)
	}
	if o.Full {
		q.Set("full", "true")
	}
	var body io.Reader
	if o.Inventory != nil {
		body = bytes.NewReader(o.Inventory)
	}
	return c.stream(ctx, http.MethodPost, "/api/v1/bundles/export?"+q.Encode(), body, int64(len(o.Inventory)), "application/octet-stream")
}

// Inventory streams the server's inventory file into w.
func (c *Client) Inventory(ctx context.Context, w io.Writer) error {
	resp, err := c.stream(ctx, http.MethodGet, "/api/v1/bundles/inventory", nil, 0, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read inventory: %w", err)
	}
	return nil
}

// OpenImport starts importing a bundle at the server: the server checks
// the signature, the target and the base before anything is written.
func (c *Client) OpenImport(ctx context.Context, req bundle.OpenRequest) (bundle.Summary, error) {
	var sum bundle.Summary
	body := mustJSON(req)
	err := c.send(ctx, http.MethodPost, "/api/v1/bundles/imports", bytes.NewReader(body), int64(len(body)), "application/json", &sum)
	return sum, err
}

// CommitImport publishes the bundle's tags once every image is present.
func (c *Client) CommitImport(ctx context.Context, id string) (bundle.Report, error) {
	var rep bundle.Report
	err := c.Do(ctx, http.MethodPost, "/api/v1/bundles/imports/"+url.PathEscape(id)+"/commit", nil, &rep)
	return rep, err
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// send sends body (of any size) and decodes a JSON answer into out
// (nil: discarded).
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, size int64, contentType string, out any) error {
	resp, err := c.stream(ctx, method, path, body, size, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// ImportTarget is the graph.Target of an import: the server's import
// session, which admits only what the bundle's signed contents list and
// verifies every blob while it streams.
type ImportTarget struct {
	C  *Client
	ID string
}

func (t *ImportTarget) path(kind, repo string, d digest.Digest, size int64) string {
	p := "/api/v1/bundles/imports/" + url.PathEscape(t.ID) + "/" + kind + "/" + string(d) + "?repository=" + url.QueryEscape(repo)
	if size > 0 {
		p += "&size=" + strconv.FormatInt(size, 10)
	}
	return p
}

// HasManifest implements graph.Target.
func (t *ImportTarget) HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	var p bundle.Presence
	err := t.C.Do(ctx, http.MethodGet, t.path("manifests", repo, d, 0), nil, &p)
	return p.Present, err
}

// HasBlob implements graph.Target.
func (t *ImportTarget) HasBlob(ctx context.Context, repo string, desc v1.Descriptor) (bool, error) {
	var p bundle.Presence
	err := t.C.Do(ctx, http.MethodGet, t.path("blobs", repo, desc.Digest, desc.Size), nil, &p)
	return p.Present, err
}

// PushBlob implements graph.Target.
func (t *ImportTarget) PushBlob(ctx context.Context, repo string, desc v1.Descriptor, open graph.Opener) error {
	rc, _, err := open(ctx, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	return digestError(t.C.send(ctx, http.MethodPut, t.path("blobs", repo, desc.Digest, 0), rc, desc.Size, "application/octet-stream", nil))
}

// PushManifest implements graph.Target.
func (t *ImportTarget) PushManifest(ctx context.Context, repo string, n graph.Node) error {
	return digestError(t.C.send(ctx, http.MethodPut, t.path("manifests", repo, n.Descriptor.Digest, 0), bytes.NewReader(n.Body), int64(len(n.Body)), n.Descriptor.MediaType, nil))
}

// Tag implements graph.Target: the commit publishes the tags, all at
// once, after every image's graph is present.
func (t *ImportTarget) Tag(context.Context, string, v1.Descriptor, string) error { return nil }

// digestError marks the server's refusal of content as graph.ErrDigest
// (so that a copy reports it as corrupt, not as a transfer to retry).
func digestError(err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		return fmt.Errorf("%w: %w", graph.ErrDigest, err)
	}
	return err
}
