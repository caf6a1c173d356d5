package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/outpost-registry/outpost/internal/origin"
)

// HasBlob reports whether the parent has blob d in repo.
func (p *Parent) HasBlob(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	path := "/v2/" + repo + "/blobs/" + string(d)
	resp, err := p.do(ctx, http.MethodHead, path, nil, nil, repo, "pull", "push")
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, check(resp, http.MethodHead, path)
}

// PushBlob uploads a blob to the parent: a POST to open the session, then
// one PUT with the content and its digest (the parent verifies it).
func (p *Parent) PushBlob(ctx context.Context, repo string, d digest.Digest, size int64, open func() (io.ReadCloser, error)) error {
	ctx = auth.AppendScopes(ctx, auth.ScopeRepository(repo, "pull", "push"))
	path := "/v2/" + repo + "/blobs/uploads/"
	resp, err := p.do(ctx, http.MethodPost, path, nil, nil, repo, "pull", "push")
	if err != nil {
		return err
	}
	if err := check(resp, http.MethodPost, path, http.StatusAccepted); err != nil {
		return err
	}
	resp.Body.Close()
	loc, err := p.base.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return fmt.Errorf("upload to %s: no usable Location header", repo)
	}
	if loc.Host != p.base.Host {
		return fmt.Errorf("upload to %s: the parent redirected the upload to another host (%s); refusing to send content there", repo, loc.Host)
	}
	q := loc.Query()
	q.Set("digest", string(d))
	loc.RawQuery = q.Encode()
	body, err := open()
	if err != nil {
		return err
	}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.GetBody = func() (io.ReadCloser, error) { return open() }
	resp, err = p.send(req)
	if err != nil {
		if errors.Is(err, origin.ErrForeign) {
			return fmt.Errorf("PUT blob %s: %w", d, foreignCause(err))
		}
		return fmt.Errorf("%w: PUT blob %s: %w", ErrConnection, d, err)
	}
	if err := check(resp, http.MethodPut, loc.Path, http.StatusCreated); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// PushManifest puts a manifest under ref (a tag or its digest).
func (p *Parent) PushManifest(ctx context.Context, repo, ref, mediaType string, body []byte) error {
	path := "/v2/" + repo + "/manifests/" + url.PathEscape(ref)
	resp, err := p.do(ctx, http.MethodPut, path, http.Header{"Content-Type": {mediaType}, "Content-Length": {strconv.Itoa(len(body))}}, body, repo, "pull", "push")
	if err != nil {
		return err
	}
	if err := check(resp, http.MethodPut, path, http.StatusCreated); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// DeleteTag deletes a tag (or, with a digest, a manifest) at the parent.
func (p *Parent) DeleteTag(ctx context.Context, repo, ref string) error {
	path := "/v2/" + repo + "/manifests/" + ref
	resp, err := p.do(ctx, http.MethodDelete, path, nil, nil, repo, "delete")
	if err != nil {
		return err
	}
	if err := check(resp, http.MethodDelete, path, http.StatusAccepted, http.StatusOK); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
