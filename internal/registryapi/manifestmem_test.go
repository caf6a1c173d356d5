package registryapi_test

import (
	"bytes"
	"context"
	"net/http"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage/fs"
)

// heapObjects is the bytes of live and not yet swept heap objects.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestLargeManifestMemoryBounded pushes 30 manifests of the largest size
// allowed (7,000 layers of 1 MiB; the bound scales with the limit) at once and samples the heap: the handler holds
// only what its manifest budget allows, so the peak stays under ten times
// the limit whatever the concurrency.
func TestLargeManifestMemoryBounded(t *testing.T) {
	const limit = 1 << 20
	// Over the stores Outpost runs on: the in-memory store of the other
	// tests keeps every body on the heap.
	r := newDiskRegistryLimits(t, t.TempDir(), fs.Options{}, registryapi.Limits{ManifestMaxBytes: limit})
	m := r.pushImage("big/app", "x", "layer")
	for range 7000 {
		m.layers = append(m.layers, m.layers[0])
	}
	body := m.body()
	if len(body) < limit*9/10 || len(body) > limit {
		t.Fatalf("manifest of %d bytes, want just under %d", len(body), limit)
	}
	r.pushManifest("big/app", "warm", body) // the store's first growth is not the handler's

	base := heapObjects()
	var peak atomic.Uint64
	ctx, stop := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			if h := heapObjects(); h > peak.Load() {
				peak.Store(h)
			}
			time.Sleep(500 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPut, r.url+"/v2/big/app/manifests/t"+string(rune('a'+i%26)), bytes.NewReader(body))
			req.Header = manifestType.Clone()
			resp, err := r.client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- &statusError{resp.StatusCode}
			}
		}()
	}
	wg.Wait()
	stop()
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("30 concurrent %d-byte manifests: heap peak %.1f MiB above the start (%.1fx the limit)", len(body), float64(grew)/(1<<20), float64(grew)/limit)
	if grew > 10*limit {
		t.Fatalf("heap grew by %d bytes, more than 10x the %d-byte manifest limit", grew, limit)
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }
