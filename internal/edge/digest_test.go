package edge_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/faultproxy"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestDigestMismatchOverHTTP: on a plain-HTTP parent link nothing below
// the digest check protects the content, so a byte flipped in a blob's
// body reaches the syncer intact in length. The digest verification must
// catch it: a warning names the blob as a digest mismatch, the corrupt
// content is neither stored nor served (a client pulling the layer all
// along gets the root's bytes or nothing), and the retry completes with
// the root's bytes.
func TestDigestMismatchOverHTTP(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), func(c *config.Config) { c.TLS.Mode = config.TLSOff })
	root.url, root.ca = "http://"+root.addr, ""
	layer := ocitest.Random(44, bigBlob)
	ld := digest.FromBytes(layer)
	img := root.admin().Image(t, "apps/web", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, layer)
	pw := root.token(t, "site-puller", pullWebApps)
	p, err := faultproxy.New(root.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// Past any response headers and control calls on the connection: in
	// the body of the layer, the only transfer that large.
	p.CorruptOnceAt(bigBlob / 3)

	root.admin().JSON(t, http.MethodPost, "/api/v1/connected-registries", protocol.CreateRequest{Name: "edge-http-digest", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}}, nil)
	var s protocol.Settings
	root.admin().JSON(t, http.MethodPost, "/api/v1/connected-registries/edge-http-digest/settings", map[string]any{"parentProtocol": "http", "generatePassword": 1}, &s)
	cs, err := protocol.ParseConnectionString(s.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	if cs.ParentEndpointProtocol != "http" {
		t.Fatalf("connection string protocol: got %q, want http", cs.ParentEndpointProtocol)
	}
	cs.ParentGatewayEndpoint = p.Addr()
	edgeData := t.TempDir()
	edge, logs := startLogged(t, edgeData, func(c *config.Config) { c.ConnectionString = cs.String() })
	ec := edge.client("site-puller", pw)

	// A client pulls the layer while the edge syncs (which also asks for
	// it on demand): whatever it gets must be the root's bytes.
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		served atomic.Int64
		bad    atomic.Value
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(ld), nil, nil)
			if err == nil && resp.StatusCode == http.StatusOK {
				served.Add(1)
				if !bytes.Equal(body, layer) {
					bad.Store(digest.FromBytes(body))
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	ocitest.Eventually(t, 60*time.Second, "v1 at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "v1")
		return d == img.Digest
	})
	close(stop)
	wg.Wait()
	if d := bad.Load(); d != nil {
		t.Errorf("the edge served content %v for layer %s", d, ld)
	}
	t.Logf("client pulls of the layer served during the sync: %d", served.Load())

	resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(ld), nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, layer) {
		t.Fatalf("layer at the edge after the corrupted transfer: %v, want 200 with the layer", statusOf(resp, err))
	}
	l := logs.String()
	if !strings.Contains(l, `msg="blob digest mismatch from the parent; fetching again"`) || !strings.Contains(l, "digest="+string(ld)) {
		t.Errorf("no digest-mismatch warning naming %s in the edge's log:\n%s", ld, l)
	}
	if !strings.Contains(l, "digest mismatch from the parent") || !strings.Contains(l, "retrying") {
		t.Errorf("no retry after the digest mismatch in the edge's log:\n%s", l)
	}
	// The layer was fetched twice at most (the corrupt copy, then a clean
	// one), never resumed from the corrupt bytes.
	if got, limit := p.Downstream.Load(), int64(bigBlob)*22/10; got > limit {
		t.Errorf("transferred %d bytes for a %d-byte blob fetched twice, want at most %d", got, bigBlob, limit)
	}
	// Every stored blob holds the content its name says, the layer among
	// them, and no upload session keeps the corrupt bytes.
	found := false
	err = filepath.WalkDir(filepath.Join(edgeData, "blobs"), func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != de.Name() {
			t.Errorf("stored blob %s holds content %s", de.Name(), got)
		}
		found = found || de.Name() == ld.Encoded()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("layer %s not in the edge's blob store", ld)
	}
	if left, _ := filepath.Glob(filepath.Join(edgeData, "uploads", "*")); len(left) != 0 {
		t.Errorf("upload sessions left at the edge: %v", left)
	}
}
