package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// feed reads every change of repo after since.
func feed(t *testing.T, m storage.Metadata, repo string, since uint64) ([]storage.Change, uint64) {
	t.Helper()
	changes, head, err := m.Changes(context.Background(), repo, since, 1000)
	if err != nil {
		t.Fatalf("Changes(%s, %d): %v", repo, since, err)
	}
	return changes, head
}

// wantChanges compares changes with want on Op, Tag, Digest, Prev and
// Origin, and checks that sequence numbers grow, that they are after
// since, that head is the last one and that times are in [from, to].
func wantChanges(t *testing.T, changes []storage.Change, head, since uint64, from, to time.Time, want []storage.Change) {
	t.Helper()
	if len(changes) != len(want) {
		t.Fatalf("got %d changes, want %d:\n got %+v\nwant %+v", len(changes), len(want), changes, want)
	}
	prev := since
	for i, c := range changes {
		w := want[i]
		if c.Op != w.Op || c.Tag != w.Tag || c.Digest != w.Digest || c.Prev != w.Prev || c.Origin != w.Origin {
			t.Errorf("change %d = {Op:%s Tag:%q Digest:%s Prev:%s Origin:%q}, want {Op:%s Tag:%q Digest:%s Prev:%s Origin:%q}",
				i, c.Op, c.Tag, c.Digest, c.Prev, c.Origin, w.Op, w.Tag, w.Digest, w.Prev, w.Origin)
		}
		if c.Seq <= prev {
			t.Errorf("change %d has Seq %d, not after %d", i, c.Seq, prev)
		}
		prev = c.Seq
		if c.Time.Before(from) || c.Time.After(to) {
			t.Errorf("change %d has Time %v, outside [%v, %v]", i, c.Time, from, to)
		}
	}
	if len(changes) > 0 && head != prev {
		t.Errorf("head = %d, want the last Seq %d", head, prev)
	}
}

func testChangeFeed(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	from := time.Now().Add(-time.Second)
	one, two := image("one", blob("a")), image("two", blob("a"))
	sig := image("sig", blob("a"))
	sig.Subject = two.Digest
	put(t, m, "r", one, "latest")
	put(t, m, "r", two, "latest")
	put(t, m, "r", two, "v2")
	put(t, m, "r", sig)
	put(t, m, "other", image("elsewhere", blob("b")), "latest")
	if err := m.DeleteTag(ctx, "r", "v2"); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteManifest(ctx, "r", two.Digest); err != nil {
		t.Fatal(err)
	}
	to := time.Now().Add(time.Second)

	changes, head := feed(t, m, "r", 0)
	wantChanges(t, changes, head, 0, from, to, []storage.Change{
		{Op: storage.ChangePut, Tag: "latest", Digest: one.Digest},
		{Op: storage.ChangePut, Tag: "latest", Digest: two.Digest, Prev: one.Digest},
		{Op: storage.ChangePut, Tag: "v2", Digest: two.Digest},
		{Op: storage.ChangeRefer, Digest: sig.Digest},
		{Op: storage.ChangeDelete, Tag: "v2", Prev: two.Digest},
		{Op: storage.ChangeDelete, Tag: "latest", Prev: two.Digest},
	})
	// Each repository has its own feed.
	changes, head = feed(t, m, "other", 0)
	wantChanges(t, changes, head, 0, from, to, []storage.Change{
		{Op: storage.ChangePut, Tag: "latest", Digest: image("elsewhere", blob("b")).Digest},
	})
	if changes, head, err := m.Changes(ctx, "unknown", 0, 10); !errors.Is(err, storage.ErrRepositoryUnknown) {
		t.Errorf("Changes(unknown) = %+v, %d, %v; want ErrRepositoryUnknown", changes, head, err)
	}
}

func testChangeFeedPaging(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	from := time.Now().Add(-time.Second)
	var want []storage.Change
	for i := range 5 {
		rec := image(fmt.Sprint(i), blob("a"))
		put(t, m, "r", rec, fmt.Sprintf("t%d", i))
		want = append(want, storage.Change{Op: storage.ChangePut, Tag: fmt.Sprintf("t%d", i), Digest: rec.Digest})
	}
	to := time.Now().Add(time.Second)
	all, head := feed(t, m, "r", 0)
	wantChanges(t, all, head, 0, from, to, want)

	var since uint64
	for i := 0; i < 5; i += 2 {
		page, h, err := m.Changes(ctx, "r", since, 2)
		if err != nil {
			t.Fatal(err)
		}
		if h != head {
			t.Errorf("Changes(since %d, n 2) head = %d, want %d", since, h, head)
		}
		end := min(i+2, 5)
		if len(page) != end-i {
			t.Fatalf("Changes(since %d, n 2) = %d changes, want %d", since, len(page), end-i)
		}
		for j, c := range page {
			if c.Seq != all[i+j].Seq || c.Tag != all[i+j].Tag {
				t.Errorf("Changes(since %d, n 2)[%d] = seq %d tag %s, want seq %d tag %s", since, j, c.Seq, c.Tag, all[i+j].Seq, all[i+j].Tag)
			}
		}
		since = page[len(page)-1].Seq
	}
	if page, h, err := m.Changes(ctx, "r", head, 10); err != nil || len(page) != 0 || h != head {
		t.Errorf("Changes(since head) = %+v, %d, %v; want none, %d", page, h, err, head)
	}
}

func testChangeFeedOrigin(t *testing.T, m storage.Metadata) {
	ctx := storage.WithOrigin(context.Background(), storage.OriginSync)
	from := time.Now().Add(-time.Second)
	mirrored, local := image("mirrored", blob("a")), image("local", blob("a"))
	sig := image("sig", blob("a"))
	sig.Subject = mirrored.Digest
	putCtx(ctx, t, m, "r", mirrored, "v1")
	putCtx(ctx, t, m, "r", sig)
	put(t, m, "r", local, "v2")
	if err := m.DeleteTag(ctx, "r", "v2"); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteManifest(context.Background(), "r", mirrored.Digest); err != nil {
		t.Fatal(err)
	}
	to := time.Now().Add(time.Second)
	changes, head := feed(t, m, "r", 0)
	wantChanges(t, changes, head, 0, from, to, []storage.Change{
		{Op: storage.ChangePut, Tag: "v1", Digest: mirrored.Digest, Origin: storage.OriginSync},
		{Op: storage.ChangeRefer, Digest: sig.Digest, Origin: storage.OriginSync},
		{Op: storage.ChangePut, Tag: "v2", Digest: local.Digest},
		{Op: storage.ChangeDelete, Tag: "v2", Prev: local.Digest, Origin: storage.OriginSync},
		{Op: storage.ChangeDelete, Tag: "v1", Prev: mirrored.Digest},
	})
}

// testConcurrentTagMoves moves one tag from many writers at once: the feed
// must still be a chain in which each put's Prev is the digest the previous
// put set, ending where the tag points.
func testConcurrentTagMoves(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	const n = 8
	link(t, m, "r", blob("a"))
	recs := make([]*storage.ManifestRecord, n)
	for i := range recs {
		recs[i] = image(fmt.Sprint("writer ", i), blob("a"))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() { errs[i] = m.PutManifest(ctx, "r", recs[i], []string{"latest"}, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("PutManifest %d: %v", i, err)
		}
	}
	changes, _ := feed(t, m, "r", 0)
	if len(changes) != n {
		t.Fatalf("got %d changes, want %d: %+v", len(changes), n, changes)
	}
	var prev digest.Digest
	seen := map[digest.Digest]bool{}
	for i, c := range changes {
		if c.Op != storage.ChangePut || c.Tag != "latest" || c.Prev != prev {
			t.Fatalf("change %d = %+v, want a put of latest with Prev %q", i, c, prev)
		}
		seen[c.Digest] = true
		prev = c.Digest
	}
	if len(seen) != n {
		t.Errorf("the feed names %d distinct manifests, want %d", len(seen), n)
	}
	got, err := m.GetManifest(ctx, "r", "latest")
	if err != nil || got.Digest != prev {
		t.Errorf("latest = %v, %v; want the last change's %s", got, err, prev)
	}
}
