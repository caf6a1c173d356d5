package syncer_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/memory"
	"github.com/outpost-registry/outpost/internal/syncer"
)

// These tests cover the engine's own logic: which repositories a run
// covers, which tags it publishes and removes, how it follows the change
// feed, and what it reports. How one graph is copied (platforms,
// referrers, digest checks, resumed blobs, a tag moved during the copy)
// is the graph package's, tested in internal/graph.

// parent is an Outpost parent in process: the registry API and the
// change feed route of the management API over a store in memory, on
// loopback, open to anonymous reads.
type parent struct {
	st   memory.Store
	url  string
	push *ocitest.Client
}

func newParent(t *testing.T) *parent {
	t.Helper()
	st := memory.New()
	reg, err := registryapi.New(registryapi.Options{Blobs: st, Uploads: st, Metadata: st})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ids, err := auth.OpenStore(filepath.Join(dir, "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ids.Close() })
	svc, err := auth.NewService(ids, auth.Options{DataDir: dir, AnonymousPull: true})
	if err != nil {
		t.Fatal(err)
	}
	api := adminapi.New(svc, slog.New(slog.DiscardHandler))
	api.RegisterChanges(st)
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)
	mux.Handle("/api/", api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &parent{st: st, url: srv.URL, push: ocitest.New(t, srv.URL, "", "", "")}
}

// image pushes a one-layer image under repo:tag and returns it with its
// layer.
func (p *parent) image(t *testing.T, repo, tag string, seed uint64) (v1.Descriptor, []byte) {
	t.Helper()
	layer := ocitest.Random(seed, 32<<10)
	return p.push.Image(t, repo, tag, v1.Platform{OS: "linux", Architecture: "amd64"}, layer), layer
}

// head is the parent's latest change-feed cursor of repo.
func (p *parent) head(t *testing.T, repo string) uint64 {
	t.Helper()
	_, head, err := p.st.Changes(context.Background(), repo, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return head
}

// runs records what the engine reports to its observer.
type runs struct {
	mu     sync.Mutex
	states []protocol.SyncState
	bytes  int64
}

func (r *runs) BlobSynced(n int64) { r.mu.Lock(); r.bytes += n; r.mu.Unlock() }
func (r *runs) OnDemand(bool)      {}
func (r *runs) SyncRun(s protocol.SyncState, _ time.Time) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.mu.Unlock()
}

// edge is an engine syncing p into a store in memory.
type edge struct {
	st      memory.Store
	eng     *syncer.Engine
	cursors *syncer.Cursors
	runs    *runs
}

func newEdge(t *testing.T, p *parent, feed bool, scope ...string) *edge {
	t.Helper()
	par, err := syncer.NewParent(syncer.ParentOptions{URL: p.url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cursors, err := syncer.OpenCursors(filepath.Join(t.TempDir(), "cursors.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, obs := memory.New(), &runs{}
	// Two attempts: a failure the engine must report is reported fast.
	eng := syncer.NewEngine(syncer.Options{Parent: par, Blobs: st, Uploads: st, Metadata: st, ChangeFeed: feed,
		Cursors: cursors, Metrics: obs, Attempts: 2})
	eng.SetScope(scope)
	return &edge{st: st, eng: eng, cursors: cursors, runs: obs}
}

func (e *edge) run(t *testing.T, trigger protocol.Trigger) syncer.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.eng.Run(ctx, trigger)
}

// tag is what repo:tag points at locally ("" for nothing).
func (e *edge) tag(t *testing.T, repo, tag string) digest.Digest {
	t.Helper()
	rec, err := e.st.GetManifest(context.Background(), repo, tag)
	if errors.Is(err, storage.ErrManifestUnknown) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec.Digest
}

func (e *edge) repositories(t *testing.T) []string {
	t.Helper()
	repos, _, err := e.st.Repositories(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	return repos
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scope []string
		// setup fills the parent and returns what the run must publish
		// (repo:tag → digest) and what it must not (repo:tag).
		setup     func(t *testing.T, p *parent) (want map[string]digest.Digest, absent []string)
		wantState protocol.SyncState
		// wantErr are words the run's error must hold.
		wantErr []string
		// wantRepos are the repositories the local store may hold.
		wantRepos []string
		// covers is how many repositories the run works through.
		covers int
	}{
		{
			name:  "index with platforms and referrers, only the repositories in scope",
			scope: []string{"apps/*"},
			setup: func(t *testing.T, p *parent) (map[string]digest.Digest, []string) {
				amd, _ := p.image(t, "apps/web", "", 1)
				arm, _ := p.image(t, "apps/web", "", 2)
				idx := p.push.Index(t, "apps/web", "v1", amd, arm)
				sig := p.push.Referrer(t, "apps/web", "application/vnd.example.signature", idx, []byte("signed"))
				api, _ := p.image(t, "apps/api", "stable", 3)
				p.image(t, "other/secret", "v1", 4)
				return map[string]digest.Digest{"apps/web:v1": idx.Digest, "apps/web@" + string(sig.Digest): sig.Digest, "apps/api:stable": api.Digest},
					[]string{"other/secret:v1"}
			},
			wantState: protocol.SyncSucceeded,
			wantRepos: []string{"apps/api", "apps/web"},
			covers:    2,
		},
		{
			name:  "a missing blob fails its tag and the run, not the other tags",
			scope: []string{"apps/web"},
			setup: func(t *testing.T, p *parent) (map[string]digest.Digest, []string) {
				good, _ := p.image(t, "apps/web", "v1", 5)
				_, layer := p.image(t, "apps/web", "v2", 6)
				if err := p.st.Blobs.Delete(context.Background(), digest.FromBytes(layer)); err != nil {
					t.Fatal(err)
				}
				return map[string]digest.Digest{"apps/web:v1": good.Digest}, []string{"apps/web:v2"}
			},
			wantState: protocol.SyncFailed,
			wantErr:   []string{"apps/web", "tag v2"},
			wantRepos: []string{"apps/web"},
			covers:    1,
		},
		{
			name:      "a repository in scope that the parent does not have is no failure",
			scope:     []string{"apps/none"},
			setup:     func(*testing.T, *parent) (map[string]digest.Digest, []string) { return nil, []string{"apps/none:v1"} },
			wantState: protocol.SyncSucceeded,
			covers:    1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newParent(t)
			want, absent := tc.setup(t, p)
			e := newEdge(t, p, false, tc.scope...)
			res := e.run(t, protocol.TriggerSchedule)
			if res.State != tc.wantState || res.Trigger != protocol.TriggerSchedule {
				t.Fatalf("run: got state %q, trigger %q (error %q); want %q, %q", res.State, res.Trigger, res.Error, tc.wantState, protocol.TriggerSchedule)
			}
			if (res.Err == nil) != (tc.wantState == protocol.SyncSucceeded) || (res.Error == "") != (res.Err == nil) {
				t.Errorf("run %s: got Err %v, Error %q", res.State, res.Err, res.Error)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(res.Error, w) {
					t.Errorf("run error %q does not name %q", res.Error, w)
				}
			}
			for ref, d := range want {
				repo, tag, _ := strings.Cut(ref, ":")
				if r, dg, ok := strings.Cut(ref, "@"); ok {
					repo, tag = r, dg
				}
				if got := e.tag(t, repo, tag); got != d {
					t.Errorf("%s at the edge: got %q, want %s", ref, got, d)
				}
			}
			for _, ref := range absent {
				repo, tag, _ := strings.Cut(ref, ":")
				if got := e.tag(t, repo, tag); got != "" {
					t.Errorf("%s at the edge: got %s, want nothing", ref, got)
				}
			}
			if got := e.repositories(t); !slices.Equal(got, tc.wantRepos) && len(got)+len(tc.wantRepos) > 0 {
				t.Errorf("repositories at the edge: got %v, want %v", got, tc.wantRepos)
			}
			if len(want) > 0 && (res.Items == 0 || res.Bytes == 0 || res.Bytes != e.runs.bytes) {
				t.Errorf("run reports %d items, %d bytes; the observer saw %d bytes: want items and the same bytes", res.Items, res.Bytes, e.runs.bytes)
			}
			if !slices.Equal(e.runs.states, []protocol.SyncState{tc.wantState}) {
				t.Errorf("observer: got runs %v, want [%s]", e.runs.states, tc.wantState)
			}
			if pr := e.eng.Progress(); pr.Running || pr.RepositoriesDone != pr.Repositories || pr.Repositories != tc.covers {
				t.Errorf("progress after the run: %+v", pr)
			}
		})
	}
}

// TestRunFollowsTagsByListing: without a change feed (a generic parent)
// every run compares each tag with the parent: moved tags move, new ones
// come, and tags the parent no longer has go.
func TestRunFollowsTagsByListing(t *testing.T) {
	t.Parallel()
	p := newParent(t)
	p.image(t, "apps/web", "v1", 10)
	v2, _ := p.image(t, "apps/web", "v2", 11)
	e := newEdge(t, p, false, "apps/web")
	if res := e.run(t, protocol.TriggerStartup); res.State != protocol.SyncSucceeded {
		t.Fatalf("first run: %s %s", res.State, res.Error)
	}
	moved, _ := p.image(t, "apps/web", "v1", 12)
	v3, _ := p.image(t, "apps/web", "v3", 13)
	if err := p.st.DeleteTag(context.Background(), "apps/web", "v2"); err != nil {
		t.Fatal(err)
	}
	if res := e.run(t, protocol.TriggerSchedule); res.State != protocol.SyncSucceeded {
		t.Fatalf("second run: %s %s", res.State, res.Error)
	}
	for tag, want := range map[string]digest.Digest{"v1": moved.Digest, "v2": "", "v3": v3.Digest} {
		if got := e.tag(t, "apps/web", tag); got != want {
			t.Errorf("apps/web:%s after the second run: got %q, want %q", tag, got, want)
		}
	}
	// The manifest stays (only the tag went): what v2 pointed at is
	// still there by digest.
	if got := e.tag(t, "apps/web", string(v2.Digest)); got != v2.Digest {
		t.Errorf("apps/web@%s after its tag went: got %q", v2.Digest, got)
	}
}

// TestRunFollowsChangeFeed: with an Outpost parent the first run lists
// every tag and keeps the feed's head; later runs replay only the feed
// from there (put, delete, refer); a feed that restarted (a cursor past
// its head) starts over with a full listing.
func TestRunFollowsChangeFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newParent(t)
	v1, _ := p.image(t, "apps/web", "v1", 20)
	p.image(t, "apps/web", "v2", 21)
	v3, _ := p.image(t, "apps/web", "v3", 22)
	e := newEdge(t, p, true, "apps/web")
	if res := e.run(t, protocol.TriggerStartup); res.State != protocol.SyncSucceeded {
		t.Fatalf("first run: %s %s", res.State, res.Error)
	}
	if got, want := e.cursors.Get("apps/web"), p.head(t, "apps/web"); got != want || got == 0 {
		t.Fatalf("cursor after the first run: got %d, want the parent's head %d", got, want)
	}

	// A local loss the feed does not mention stays lost: the run reads
	// the feed, not the tag list.
	if err := e.st.DeleteTag(ctx, "apps/web", "v3"); err != nil {
		t.Fatal(err)
	}
	moved, _ := p.image(t, "apps/web", "v1", 23)
	if err := p.st.DeleteTag(ctx, "apps/web", "v2"); err != nil {
		t.Fatal(err)
	}
	sig := p.push.Referrer(t, "apps/web", "application/vnd.example.signature", moved, []byte("signed"))
	if res := e.run(t, protocol.TriggerSchedule); res.State != protocol.SyncSucceeded {
		t.Fatalf("second run: %s %s", res.State, res.Error)
	}
	for ref, want := range map[string]digest.Digest{"v1": moved.Digest, "v2": "", "v3": "", string(sig.Digest): sig.Digest, string(v1.Digest): v1.Digest} {
		if got := e.tag(t, "apps/web", ref); got != want {
			t.Errorf("apps/web %s after the feed's changes: got %q, want %q", ref, got, want)
		}
	}
	if got, want := e.cursors.Get("apps/web"), p.head(t, "apps/web"); got != want {
		t.Errorf("cursor after the second run: got %d, want the parent's head %d", got, want)
	}

	// The parent's feed restarted: the cursor is past its head.
	if err := e.cursors.Set("apps/web", p.head(t, "apps/web")+100); err != nil {
		t.Fatal(err)
	}
	if res := e.run(t, protocol.TriggerSchedule); res.State != protocol.SyncSucceeded {
		t.Fatalf("run on a restarted feed: %s %s", res.State, res.Error)
	}
	if got := e.cursors.Get("apps/web"); got != 0 {
		t.Fatalf("cursor after a restarted feed: got %d, want 0 (start over)", got)
	}
	if res := e.run(t, protocol.TriggerSchedule); res.State != protocol.SyncSucceeded {
		t.Fatalf("run after the restart: %s %s", res.State, res.Error)
	}
	if got := e.tag(t, "apps/web", "v3"); got != v3.Digest {
		t.Errorf("apps/web:v3 after the full listing that follows a restart: got %q, want %s", got, v3.Digest)
	}
	if got, want := e.cursors.Get("apps/web"), p.head(t, "apps/web"); got != want {
		t.Errorf("cursor after the full listing: got %d, want %d", got, want)
	}
}
