package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// Sync workloads: an edge Outpost mirrors the dataset from a root Outpost.
const (
	// WorkloadRawCopy is the limit a sync is compared with: the dataset's
	// blobs fetched from the root by syncConcurrency parallel GET streams
	// into io.Discard.
	WorkloadRawCopy = "raw_copy"
	// WorkloadSyncFloor is the least any mirror that verifies and stores
	// the bytes must do: the dataset's blobs fetched from the root by
	// syncConcurrency parallel streams, each hashed while it streams,
	// written to a file beside the edge's data, fsynced and renamed.
	WorkloadSyncFloor = "sync_floor"
	// WorkloadSyncFull is an edge's first sync of the whole dataset.
	WorkloadSyncFull = "sync_full"
	// WorkloadSyncGeneric is the same first sync from a distribution
	// parent (the edge's generic mode: tag lists and HEADs, no change
	// feed).
	WorkloadSyncGeneric = "sync_generic"
	// WorkloadSyncTags is an edge's first sync of the tags repositories.
	WorkloadSyncTags = "sync_tags"
	// WorkloadSyncOneTag is one tag moved at the root, among the tags
	// already mirrored, reaching the edge.
	WorkloadSyncOneTag = "sync_one_tag"
)

// syncConcurrency is the edge's default number of parallel blob copies.
const syncConcurrency = 4

// edgeStatus is the part of an edge's GET /api/v1/status read here.
type edgeStatus struct {
	ConnectionState protocol.ConnectionState `json:"connectionState"`
	LastSyncResult  *protocol.SyncResult     `json:"lastSyncResult"`
	LastError       string                   `json:"lastError"`
}

// api sends a management request with the target's credentials and
// decodes the JSON answer into out (when not nil).
func (t *Target) api(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	var size int64
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, size = bytes.NewReader(b), int64(len(b))
	}
	resp, err := t.do(ctx, method, t.Base+path, http.Header{"Content-Type": {"application/json"}}, body, size)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(msg))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// headDigest returns the Docker-Content-Digest of repo:ref, or "" when
// the registry does not have it.
func (t *Target) headDigest(ctx context.Context, repo, ref, accept string) (string, error) {
	resp, err := t.do(ctx, http.MethodHead, t.Base+"/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {accept}}, nil, 0)
	if err != nil {
		return "", err
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", nil
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD %s:%s: status %d", repo, ref, resp.StatusCode)
	}
	return resp.Header.Get("Docker-Content-Digest"), nil
}

// connectEdge declares a connected registry for repos at the root and
// returns its connection string.
func (c *comparison) connectEdge(ctx context.Context, root *Target, name string, repos []string) (string, error) {
	req := map[string]any{"name": name, "repositories": repos}
	if err := root.api(ctx, http.MethodPost, "/api/v1/connected-registries", req, nil); err != nil {
		return "", fmt.Errorf("create connected registry %s: %w", name, err)
	}
	var settings struct {
		ConnectionString string `json:"connectionString"`
	}
	if err := root.api(ctx, http.MethodPost, "/api/v1/connected-registries/"+url.PathEscape(name)+"/settings",
		map[string]any{"parentProtocol": "http", "generatePassword": 1}, &settings); err != nil {
		return "", fmt.Errorf("connection string of %s: %w", name, err)
	}
	return settings.ConnectionString, nil
}

// startEdge starts an edge Outpost with the connection string cs.
func (c *comparison) startEdge(ctx context.Context, name, cs string) (*server, error) {
	data := filepath.Join(c.root, name)
	cmd := func(addr string) (string, []string, []string, error) {
		args := append(c.outpostArgs(addr, data), "--connection-string", cs)
		return c.o.OutpostBin, args, []string{"OUTPOST_ADMIN_PASSWORD=" + c.o.Password}, nil
	}
	s, _, err := c.launch(ctx, name, cmd, c.o.Password)
	return s, err
}

// waitRun polls the edge's status until a sync run that started after
// since has finished, and returns it. Runs that carried nothing (the
// continuous mode's idle runs) are skipped when needItems is set.
func waitRun(ctx context.Context, edge *Target, since time.Time, needItems bool, timeout time.Duration) (*edgeStatus, error) {
	deadline := time.Now().Add(timeout)
	var st edgeStatus
	for time.Now().Before(deadline) {
		st = edgeStatus{}
		if err := edge.api(ctx, http.MethodGet, "/api/v1/status", nil, &st); err == nil && st.LastSyncResult != nil {
			r := st.LastSyncResult
			if r.Start.After(since) && !r.End.IsZero() && (!needItems || r.Items > 0 || r.State != protocol.SyncSucceeded) {
				if r.State != protocol.SyncSucceeded {
					return &st, fmt.Errorf("edge sync run %s: %s", r.State, r.Error)
				}
				return &st, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("no finished sync run at %s within %s (connection %s, last error %q)", edge.Name, timeout, st.ConnectionState, st.LastError)
}

// waitMirror waits for the edge's first sync run that carried items, like
// waitRun, and returns its duration. A small dataset syncs so fast that
// the continuous mode's next, idle run may already have replaced it in the
// status before a poll sees it: then the mirror being complete (every tag
// at the root's digest) says the run ended, and the duration returned is
// the wall time since started, with missed set.
func waitMirror(ctx context.Context, edge *Target, ds *Dataset, started time.Time, timeout time.Duration) (run time.Duration, st *edgeStatus, missed bool, err error) {
	return waitComplete(ctx, edge, started, timeout, func() bool { return verifyMirror(ctx, edge, ds) == nil })
}

// waitComplete is waitMirror with complete telling that the run ended.
func waitComplete(ctx context.Context, edge *Target, started time.Time, timeout time.Duration, complete func() bool) (run time.Duration, st *edgeStatus, missed bool, err error) {
	deadline := time.Now().Add(timeout)
	for i := 0; time.Now().Before(deadline); i++ {
		st, err = waitRun(ctx, edge, started.Add(-time.Second), true, 200*time.Millisecond)
		if err == nil {
			return st.LastSyncResult.End.Sub(st.LastSyncResult.Start), st, false, nil
		}
		if ctx.Err() != nil || strings.HasPrefix(err.Error(), "edge sync run") {
			return 0, nil, false, err
		}
		if complete() {
			return time.Since(started), nil, true, nil
		}
	}
	return 0, nil, false, fmt.Errorf("no sync run that carried the dataset at %s within %s", edge.Name, timeout)
}

// tagCount counts the tags of repos at t (-1 when a listing fails).
func tagCount(ctx context.Context, t *Target, repos []string) int {
	n := 0
	for _, r := range repos {
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := t.api(ctx, http.MethodGet, "/v2/"+r+"/tags/list?n=100000", nil, &list); err != nil {
			return -1
		}
		n += len(list.Tags)
	}
	return n
}

// distinctBlobs lists each distinct blob of the dataset once, with a
// repository that holds it.
func distinctBlobs(ds *Dataset) (repos []string, blobs []Blob, total int64) {
	seen := map[string]bool{}
	for _, m := range ds.Images {
		for _, b := range m.Blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				repos = append(repos, m.Repo)
				blobs = append(blobs, b)
				total += b.Size
			}
		}
	}
	return repos, blobs, total
}

// syncFloor fetches every distinct blob of the dataset from t with n
// parallel streams, hashing each while it streams into a new file under
// dir, then fsyncs and renames the file, and checks the digest: what a
// mirror that verifies and stores the bytes cannot do without.
func syncFloor(ctx context.Context, t *Target, ds *Dataset, dir string, n int) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	repos, blobs, _ := distinctBlobs(ds)
	errs := make([]error, len(blobs))
	start := time.Now()
	forEach(len(blobs), n, func(i int) {
		errs[i] = fetchToFile(ctx, t, repos[i], blobs[i].Digest, filepath.Join(dir, strconv.Itoa(i)))
	})
	return time.Since(start), errors.Join(errs...)
}

// fetchToFile stores blob d of repo at path the way a registry commits
// one: hashed while written to a temporary file, fsynced, renamed.
func fetchToFile(ctx context.Context, t *Target, repo, d, path string) error {
	resp, err := t.do(ctx, http.MethodGet, t.Base+"/v2/"+repo+"/blobs/"+d, nil, nil, 0)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: status %d", d, resp.StatusCode)
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	_, err = io.CopyBuffer(io.MultiWriter(f, h), resp.Body, buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
		return fmt.Errorf("blob %s hashed to %s", d, got)
	}
	return os.Rename(path+".tmp", path)
}

// rawCopy fetches every distinct blob of the dataset from t with n
// parallel streams into io.Discard and returns the time it took.
func rawCopy(ctx context.Context, t *Target, ds *Dataset, n int) (time.Duration, int64, error) {
	repos, blobs, total := distinctBlobs(ds)
	errs := make([]error, len(blobs))
	start := time.Now()
	forEach(len(blobs), n, func(i int) {
		resp, err := t.do(ctx, http.MethodGet, t.Base+"/v2/"+repos[i]+"/blobs/"+blobs[i].Digest, nil, nil, 0)
		if err != nil {
			errs[i] = err
			return
		}
		errs[i] = expect(resp, http.StatusOK, "GET blob")
	})
	return time.Since(start), total, errors.Join(errs...)
}

// verifyMirror checks that every tag of the dataset resolves at the edge
// to the digest it has at the root.
func verifyMirror(ctx context.Context, edge *Target, ds *Dataset) error {
	for _, m := range append(append([]Manifest(nil), ds.Images...), ds.Indexes...) {
		got, err := edge.headDigest(ctx, m.Repo, m.Tag, m.MediaType)
		if err != nil {
			return err
		}
		if got != m.Digest {
			return fmt.Errorf("edge %s:%s is %q, want %s", m.Repo, m.Tag, got, m.Digest)
		}
	}
	return nil
}

// syncBench measures an edge's full sync of the dataset against the raw
// parallel copy, the first sync of c.o.Tags tags, and the time one moved
// tag among them takes to reach the edge.
func (c *comparison) syncBench(ctx context.Context) error {
	root, _, err := c.launch(ctx, "outpost-root", c.outpostCmd(filepath.Join(c.root, "outpost")), c.o.Password)
	if err != nil {
		return err
	}
	defer func() { _ = c.stopAll() }()

	raw, total, err := rawCopy(ctx, root.target, c.ds, syncConcurrency)
	if err != nil {
		return fmt.Errorf("raw copy: %w", err)
	}
	c.em.result(Result{Workload: WorkloadRawCopy, Target: TargetOutpost, Concurrency: syncConcurrency, Seconds: round(raw.Seconds()),
		Bytes: total, MBPerS: round(mb(total) / raw.Seconds()), Note: "distinct blobs of the dataset from the root Outpost to io.Discard"})
	c.logf("raw copy: %d MiB in %s with %d streams", int(mb(total)), raw.Round(time.Millisecond), syncConcurrency)
	floor, err := syncFloor(ctx, root.target, c.ds, filepath.Join(c.root, "floor"), syncConcurrency)
	if err != nil {
		return fmt.Errorf("verify+write floor: %w", err)
	}
	c.em.result(Result{Workload: WorkloadSyncFloor, Target: TargetOutpost, Concurrency: syncConcurrency, Seconds: round(floor.Seconds()),
		Bytes: total, MBPerS: round(mb(total) / floor.Seconds()), Note: "distinct blobs of the dataset from the root Outpost, hashed, written, fsynced and renamed beside the edge's data"})
	c.logf("verify+write floor: %d MiB in %s with %d streams", int(mb(total)), floor.Round(time.Millisecond), syncConcurrency)

	var repos []string
	for _, m := range c.ds.Images {
		if !slices.Contains(repos, m.Repo) {
			repos = append(repos, m.Repo)
		}
	}
	cs, err := c.connectEdge(ctx, root.target, "bench-edge", repos)
	if err != nil {
		return err
	}
	started := time.Now()
	edge, err := c.startEdge(ctx, "edge", cs)
	if err != nil {
		return err
	}
	run, st, missed, err := waitMirror(ctx, edge.target, c.ds, started, 30*time.Minute)
	if err != nil {
		return err
	}
	wall := time.Since(started)
	if err := verifyMirror(ctx, edge.target, c.ds); err != nil {
		return fmt.Errorf("after the full sync: %w", err)
	}
	peak, _ := procStatusMB(edge.target.PID, "VmHWM")
	what, bytes := "wall time from the edge's start to a complete mirror: the run ended before a poll saw it", total
	if !missed {
		what, bytes = fmt.Sprintf("%d items", st.LastSyncResult.Items), st.LastSyncResult.Bytes
	}
	c.em.result(Result{Workload: WorkloadSyncFull, Target: TargetOutpost, Concurrency: syncConcurrency, Seconds: round(run.Seconds()),
		Bytes: bytes, MBPerS: round(mb(total) / run.Seconds()), PeakRSSMB: peak,
		Note: fmt.Sprintf("first sync run of the edge (%s); %s from the edge's process start, activation included; floor %s, raw copy %s",
			what, wall.Round(time.Millisecond), floor.Round(time.Millisecond), raw.Round(time.Millisecond))})
	c.logf("full sync: run %s (%.2f× the verify+write floor), %s from the edge's start", run.Round(time.Millisecond), run.Seconds()/floor.Seconds(), wall.Round(time.Millisecond))
	if err := c.syncGeneric(ctx, repos); err != nil {
		return fmt.Errorf("sync from distribution: %w", err)
	}

	if c.o.Tags <= 0 {
		return nil
	}
	start := time.Now()
	if err := seedTags(ctx, root.target, c.o.Tags, 8); err != nil {
		return fmt.Errorf("seed %d tags into the root: %w", c.o.Tags, err)
	}
	c.logf("seeded %d tags into the root in %s", c.o.Tags, time.Since(start).Round(time.Millisecond))
	var tagNames []string
	for i := range min(tagRepos, c.o.Tags) {
		tagNames = append(tagNames, tagRepo(i))
	}
	cs, err = c.connectEdge(ctx, root.target, "bench-tags", tagNames)
	if err != nil {
		return err
	}
	started = time.Now()
	rootCPU0, _ := procCPU(root.target.PID)
	tagsEdge, err := c.startEdge(ctx, "edge-tags", cs)
	if err != nil {
		return err
	}
	run, st, missed, err = waitComplete(ctx, tagsEdge.target, started, 30*time.Minute, func() bool {
		return tagCount(ctx, tagsEdge.target, tagNames) >= c.o.Tags
	})
	if err != nil {
		return err
	}
	items := int64(c.o.Tags)
	if !missed {
		items = st.LastSyncResult.Items
	}
	// CPU time says what the run costs when other work shares the cores.
	rootCPU1, _ := procCPU(root.target.PID)
	edgeCPU, _ := procCPU(tagsEdge.target.PID)
	c.em.result(Result{Workload: WorkloadSyncTags, Target: TargetOutpost, Seconds: round(run.Seconds()),
		ServerCPU: round((rootCPU1 - rootCPU0).Seconds()), ClientCPU: round(edgeCPU.Seconds()),
		Note: fmt.Sprintf("first sync of %d tags in %d repositories (%d items); CPU: root %s, edge %s (start included)", c.o.Tags, len(tagNames), items,
			(rootCPU1 - rootCPU0).Round(time.Millisecond), edgeCPU.Round(time.Millisecond))})
	c.logf("first sync of %d tags: %s (CPU: root %s, edge %s)", c.o.Tags, run.Round(time.Millisecond), (rootCPU1 - rootCPU0).Round(time.Millisecond), edgeCPU.Round(time.Millisecond))

	// Move one tag at the root and wait for the run that carries it.
	moved, err := c.moveTag(ctx, root.target)
	if err != nil {
		return err
	}
	changed := time.Now()
	if st, err = waitRun(ctx, tagsEdge.target, changed, true, 2*time.Minute); err != nil {
		return err
	}
	arrived := time.Since(changed)
	got, err := tagsEdge.target.headDigest(ctx, tagRepo(0), "t00000", mediaManifest)
	if err != nil {
		return err
	}
	if got != moved {
		return fmt.Errorf("moved tag at the edge is %q, want %s", got, moved)
	}
	run = st.LastSyncResult.End.Sub(st.LastSyncResult.Start)
	c.em.result(Result{Workload: WorkloadSyncOneTag, Target: TargetOutpost, Seconds: round(run.Seconds()),
		Note: fmt.Sprintf("one tag moved among %d: run of %d items; %s from the change at the root to the end of the run (the continuous mode's pause included)",
			c.o.Tags, st.LastSyncResult.Items, arrived.Round(time.Millisecond))})
	c.logf("one moved tag among %d: run %s, %s after the change", c.o.Tags, run.Round(time.Millisecond), arrived.Round(time.Millisecond))
	return nil
}

// syncGeneric measures an edge's first sync of the dataset from a
// distribution parent (generic mode), when a distribution binary is given.
func (c *comparison) syncGeneric(ctx context.Context, repos []string) error {
	if c.o.DistributionBin == "" {
		return nil
	}
	dist, _, err := c.launch(ctx, "distribution-parent", c.distributionCmd(filepath.Join(c.root, "distribution-parent")), "")
	if err != nil {
		return err
	}
	if err := dist.target.Seed(ctx, c.ds, 4); err != nil {
		return fmt.Errorf("seed distribution: %w", err)
	}
	floor, err := syncFloor(ctx, dist.target, c.ds, filepath.Join(c.root, "floor"), syncConcurrency)
	if err != nil {
		return fmt.Errorf("verify+write floor from distribution: %w", err)
	}
	c.em.result(Result{Workload: WorkloadSyncFloor, Target: TargetDistribution, Concurrency: syncConcurrency, Seconds: round(floor.Seconds()),
		Bytes: c.ds.LayerBytes(), MBPerS: round(mb(c.ds.LayerBytes()) / floor.Seconds()), Note: "the same floor with distribution as the parent"})
	c.logf("verify+write floor from distribution: %s", floor.Round(time.Millisecond))
	data := filepath.Join(c.root, "edge-generic")
	cmd := func(addr string) (string, []string, []string, error) {
		args := append(c.outpostArgs(addr, data), "--parent", dist.target.Base)
		for _, r := range repos {
			args = append(args, "--repository", r)
		}
		return c.o.OutpostBin, args, []string{"OUTPOST_ADMIN_PASSWORD=" + c.o.Password}, nil
	}
	started := time.Now()
	edge, _, err := c.launch(ctx, "edge-generic", cmd, c.o.Password)
	if err != nil {
		return err
	}
	run, st, missed, err := waitMirror(ctx, edge.target, c.ds, started, 30*time.Minute)
	if err != nil {
		return err
	}
	if err := verifyMirror(ctx, edge.target, c.ds); err != nil {
		return fmt.Errorf("after the sync from distribution: %w", err)
	}
	peak, _ := procStatusMB(edge.target.PID, "VmHWM")
	note := "first sync run of an edge whose parent is distribution"
	bytes := c.ds.LayerBytes()
	if missed {
		note += " (wall time from the edge's start to a complete mirror: the run ended before a poll saw it)"
	} else {
		note += fmt.Sprintf(" (%d items)", st.LastSyncResult.Items)
		bytes = st.LastSyncResult.Bytes
	}
	c.em.result(Result{Workload: WorkloadSyncGeneric, Target: TargetOutpost, Concurrency: syncConcurrency, Seconds: round(run.Seconds()),
		Bytes: bytes, MBPerS: round(mb(c.ds.LayerBytes()) / run.Seconds()), PeakRSSMB: peak,
		Note: fmt.Sprintf("%s; floor from distribution %s", note, floor.Round(time.Millisecond))})
	c.logf("full sync from distribution: run %s", run.Round(time.Millisecond))
	if err := edge.stop(); err != nil {
		return err
	}
	return dist.stop()
}

// moveTag points tag t00000 of the first tags repository at a new
// manifest and returns its digest.
func (c *comparison) moveTag(ctx context.Context, root *Target) (string, error) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	body, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": mediaManifest,
		"config":      descriptor{MediaType: mediaConfig, Digest: digestOf(cfg), Size: int64(len(cfg))},
		"layers":      []descriptor{},
		"annotations": map[string]string{"org.example.bench.tag": "moved " + time.Now().UTC().Format(time.RFC3339Nano)},
	})
	if err != nil {
		return "", err
	}
	if err := root.putManifest(ctx, tagRepo(0), "t00000", mediaManifest, body); err != nil {
		return "", err
	}
	return digestOf(body), nil
}

// syncSummary prints the sync figures.
func syncSummary(results []Result) string {
	var b strings.Builder
	for _, r := range results {
		switch r.Workload {
		case WorkloadRawCopy, WorkloadSyncFloor, WorkloadSyncFull, WorkloadSyncGeneric, WorkloadSyncTags, WorkloadSyncOneTag:
			fmt.Fprintf(&b, "%-14s %-12s %8.3f s  %s\n", r.Workload, r.Target, r.Seconds, r.Note)
		}
	}
	return b.String()
}
