package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/postgres"
	"github.com/outpost-registry/outpost/internal/storage/postgres/pgtest"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return storagetest.Closing(t, s)
}

func TestConformance(t *testing.T) {
	srv := pgtest.Shared(t)
	storagetest.TestMetadata(t, func(t *testing.T) storage.Metadata {
		return open(t, srv.DSN(t))
	})
}

// TestMigrateConcurrently opens one schema from several replicas at once:
// the advisory lock lets each migration run once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).DSN(t)
	const n = 4
	errs := make([]error, n)
	stores := make([]*postgres.Store, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(context.Background(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var applied, distinct int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied == 0 || applied != distinct {
		t.Fatalf("schema_migrations holds %d rows for %d versions, want each version once", applied, distinct)
	}
	if err := stores[0].Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// TestReplicasShareOneFeed writes one repository through two stores on
// the same database: the change feed is one sequence.
func TestReplicasShareOneFeed(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	layer := digest.FromString("layer")
	for _, m := range []*postgres.Store{a, b} {
		if err := m.LinkBlob(ctx, "shared/repo", layer, 5); err != nil {
			t.Fatal(err)
		}
	}
	// Ten writers, alternating between the replicas, move one tag.
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range errs {
		body := fmt.Appendf(nil, `{"schemaVersion":2,"writer":%d}`, i)
		rec := &storage.ManifestRecord{Digest: digest.FromBytes(body), MediaType: v1.MediaTypeImageManifest, Blobs: []digest.Digest{layer}, Body: body}
		replica := []*postgres.Store{a, b}[i%2]
		wg.Go(func() { errs[i] = replica.PutManifest(ctx, "shared/repo", rec, []string{"latest"}, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("PutManifest %d: %v", i, err)
		}
	}
	changes, head, err := b.Changes(ctx, "shared/repo", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 10 || head != changes[len(changes)-1].Seq {
		t.Fatalf("feed has %d changes, head %d; want 10 ending at head", len(changes), head)
	}
	var prev digest.Digest
	for i, c := range changes {
		if c.Seq != uint64(i+1) || c.Prev != prev {
			t.Fatalf("change %d = %+v, want Seq %d and Prev %q (one gapless chain)", i, c, i+1, prev)
		}
		prev = c.Digest
	}
}
