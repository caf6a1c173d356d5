// Package ocitest helps tests talk to a registry over its real HTTP API:
// push blobs, manifests and indexes with Basic credentials, and read them
// back. It builds small synthetic images from a seeded random source.
package ocitest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Client is a registry client for tests.
type Client struct {
	Base     string
	Username string
	Password string
	HTTP     *http.Client
}

// New returns a client for base (http://host:port or https://…). caFile,
// when set, is the only CA trusted.
func New(t testing.TB, base, user, pass, caFile string) *Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatalf("read CA: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{Base: base, Username: user, Password: pass, HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// Do sends a request with Basic credentials.
func (c *Client) Do(method, path string, hdr http.Header, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Username != "" {
		req.SetBasicAuth(c.Username, c.Password)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// JSON sends a JSON request and decodes a 2xx answer into out.
func (c *Client) JSON(t testing.TB, method, path string, in, out any) {
	t.Helper()
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	resp, b, err := c.Do(method, path, http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
}

// PushBlob uploads a blob monolithically and returns its descriptor.
func (c *Client) PushBlob(t testing.TB, repo, mediaType string, data []byte) v1.Descriptor {
	t.Helper()
	d := digest.FromBytes(data)
	resp, b, err := c.Do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+string(d), http.Header{"Content-Type": {"application/octet-stream"}}, data)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push blob %s to %s: %v %v %s", d, repo, err, status(resp), b)
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

func status(r *http.Response) string {
	if r == nil {
		return ""
	}
	return r.Status
}

// PushManifest puts a manifest under ref (a tag or its digest) and returns
// its descriptor.
func (c *Client) PushManifest(t testing.TB, repo, ref, mediaType string, body []byte) v1.Descriptor {
	t.Helper()
	resp, b, err := c.Do(http.MethodPut, "/v2/"+repo+"/manifests/"+ref, http.Header{"Content-Type": {mediaType}}, body)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest %s:%s: %v %v %s", repo, ref, err, status(resp), b)
	}
	return v1.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(body), Size: int64(len(body))}
}

// Random returns n bytes from a source seeded with seed.
func Random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// Image pushes an image manifest with the given layers (and a config for
// platform) and returns its descriptor; tag may be empty (push by digest).
func (c *Client) Image(t testing.TB, repo, tag string, platform v1.Platform, layers ...[]byte) v1.Descriptor {
	t.Helper()
	cfg, _ := json.Marshal(v1.Image{Platform: platform, RootFS: v1.RootFS{Type: "layers"}})
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: c.PushBlob(t, repo, v1.MediaTypeImageConfig, cfg)}
	for _, l := range layers {
		m.Layers = append(m.Layers, c.PushBlob(t, repo, v1.MediaTypeImageLayer, l))
	}
	body, _ := json.Marshal(m)
	ref := tag
	if ref == "" {
		ref = string(digest.FromBytes(body))
	}
	d := c.PushManifest(t, repo, ref, v1.MediaTypeImageManifest, body)
	d.Platform = &platform
	return d
}

// Index pushes an index of the given manifests under tag.
func (c *Client) Index(t testing.TB, repo, tag string, manifests ...v1.Descriptor) v1.Descriptor {
	t.Helper()
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: manifests}
	body, _ := json.Marshal(idx)
	return c.PushManifest(t, repo, tag, v1.MediaTypeImageIndex, body)
}

// Referrer pushes an artifact manifest whose subject is subject.
func (c *Client) Referrer(t testing.TB, repo, artifactType string, subject v1.Descriptor, payload []byte) v1.Descriptor {
	t.Helper()
	empty := c.PushBlob(t, repo, v1.MediaTypeEmptyJSON, []byte("{}"))
	layer := c.PushBlob(t, repo, "application/octet-stream", payload)
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		ArtifactType: artifactType, Config: empty, Layers: []v1.Descriptor{layer}, Subject: &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}}
	body, _ := json.Marshal(m)
	return c.PushManifest(t, repo, string(digest.FromBytes(body)), v1.MediaTypeImageManifest, body)
}

// ManifestDigest returns the digest a tag resolves to, or "" when the
// registry does not know it.
func (c *Client) ManifestDigest(repo, ref string) (digest.Digest, int, error) {
	resp, _, err := c.Do(http.MethodHead, "/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {v1.MediaTypeImageIndex + ", " + v1.MediaTypeImageManifest}}, nil)
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", resp.StatusCode, nil
	}
	return digest.Digest(resp.Header.Get("Docker-Content-Digest")), resp.StatusCode, nil
}

// Eventually polls cond every 100 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// Digest is the SHA-256 digest of b.
func Digest(b []byte) digest.Digest { return digest.FromBytes(b) }
