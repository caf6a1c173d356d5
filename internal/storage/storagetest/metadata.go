package storagetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/storage"
)

// NewMetadata returns a fresh, empty metadata store. It registers its own
// cleanup (Close) with t.
type NewMetadata func(t *testing.T) storage.Metadata

// TestMetadata runs the Metadata conformance suite.
func TestMetadata(t *testing.T, newMeta NewMetadata) {
	tests := []struct {
		name string
		fn   func(t *testing.T, m storage.Metadata)
	}{
		{"BlobLinks", testBlobLinks},
		{"UnlinkBlob", testUnlinkBlob},
		{"PutGetManifest", testPutGetManifest},
		{"RecordPerRepository", testRecordPerRepository},
		{"PutManifestIdempotent", testPutIdempotent},
		{"MissingBlobChangesNothing", testMissingBlob},
		{"MissingChildManifest", testMissingChild},
		{"OptionalBlobs", testOptionalBlobs},
		{"TagMoves", testTagMoves},
		{"DeleteManifest", testDeleteManifest},
		{"DeleteTag", testDeleteTag},
		{"TagsPagination", testTagsPagination},
		{"RepositoriesPagination", testRepositoriesPagination},
		{"Referrers", testReferrers},
		{"ChangeFeed", testChangeFeed},
		{"ChangeFeedPaging", testChangeFeedPaging},
		{"ChangeFeedOrigin", testChangeFeedOrigin},
		{"ConcurrentTagMoves", testConcurrentTagMoves},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newMeta(t))
		})
	}
}

// blob returns the digest of a made-up blob.
func blob(s string) digest.Digest { return digest.FromString("blob " + s) }

// image returns a manifest record referencing blobs, with a body (and so a
// digest) unique to name.
func image(name string, blobs ...digest.Digest) *storage.ManifestRecord {
	body := fmt.Appendf(nil, `{"schemaVersion":2,"name":%q,"blobs":%q}`, name, blobs)
	return &storage.ManifestRecord{
		Digest:    digest.FromBytes(body),
		MediaType: v1.MediaTypeImageManifest,
		Blobs:     blobs,
		Body:      body,
	}
}

// link links each blob into repo with a size of 100.
func link(t *testing.T, m storage.Metadata, repo string, blobs ...digest.Digest) {
	t.Helper()
	for _, d := range blobs {
		if err := m.LinkBlob(context.Background(), repo, d, 100); err != nil {
			t.Fatalf("LinkBlob(%s, %s): %v", repo, d, err)
		}
	}
}

// put links the manifest's blobs into repo and stores it under tags.
func put(t *testing.T, m storage.Metadata, repo string, rec *storage.ManifestRecord, tags ...string) {
	t.Helper()
	putCtx(context.Background(), t, m, repo, rec, tags...)
}

func putCtx(ctx context.Context, t *testing.T, m storage.Metadata, repo string, rec *storage.ManifestRecord, tags ...string) {
	t.Helper()
	link(t, m, repo, rec.Blobs...)
	if err := m.PutManifest(ctx, repo, rec, tags, nil); err != nil {
		t.Fatalf("PutManifest(%s, %s, %q): %v", repo, rec.Digest, tags, err)
	}
}

// wantManifest checks that ref resolves to want in repo.
func wantManifest(t *testing.T, m storage.Metadata, repo, ref string, want *storage.ManifestRecord) {
	t.Helper()
	got, err := m.GetManifest(context.Background(), repo, ref)
	if err != nil {
		t.Fatalf("GetManifest(%s, %s): %v", repo, ref, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetManifest(%s, %s):\n got %+v\nwant %+v", repo, ref, got, want)
	}
}

func wantNoManifest(t *testing.T, m storage.Metadata, repo, ref string) {
	t.Helper()
	if got, err := m.GetManifest(context.Background(), repo, ref); !errors.Is(err, storage.ErrManifestUnknown) {
		t.Fatalf("GetManifest(%s, %s) = %v, %v; want ErrManifestUnknown", repo, ref, got, err)
	}
}

// allTags lists every tag of repo.
func allTags(t *testing.T, m storage.Metadata, repo string) []string {
	t.Helper()
	tags, more, err := m.Tags(context.Background(), repo, "", 1000)
	if err != nil || more {
		t.Fatalf("Tags(%s) = %q, %v, %v", repo, tags, more, err)
	}
	return tags
}

func wantStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) || (len(want) > 0 && !slices.Equal(got, want)) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

func testBlobLinks(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	a, b := blob("a"), blob("b")
	if n, err := m.BlobSize(ctx, "x/one", a); !errors.Is(err, storage.ErrBlobUnknown) {
		t.Fatalf("BlobSize in a new store = %d, %v; want ErrBlobUnknown", n, err)
	}
	if err := m.LinkBlob(ctx, "x/one", a, 1234); err != nil {
		t.Fatal(err)
	}
	if err := m.LinkBlob(ctx, "x/two", a, 1234); err != nil {
		t.Fatal(err)
	}
	if err := m.LinkBlob(ctx, "x/two", b, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		repo string
		d    digest.Digest
		want int64
	}{{"x/one", a, 1234}, {"x/two", a, 1234}, {"x/two", b, 0}} {
		if n, err := m.BlobSize(ctx, c.repo, c.d); err != nil || n != c.want {
			t.Errorf("BlobSize(%s, %s) = %d, %v; want %d, nil", c.repo, c.d, n, err, c.want)
		}
	}
	// Membership is per repository.
	if n, err := m.BlobSize(ctx, "x/one", b); !errors.Is(err, storage.ErrBlobUnknown) {
		t.Errorf("BlobSize of a blob linked elsewhere = %d, %v; want ErrBlobUnknown", n, err)
	}
	repos, err := m.BlobRepositories(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(repos)
	wantStrings(t, "BlobRepositories(a)", repos, []string{"x/one", "x/two"})
	repos, err = m.BlobRepositories(ctx, blob("nowhere"))
	if err != nil || len(repos) != 0 {
		t.Errorf("BlobRepositories(unlinked) = %q, %v; want none, nil", repos, err)
	}
}

func testUnlinkBlob(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	a := blob("a")
	link(t, m, "one", a)
	link(t, m, "two", a)
	if err := m.UnlinkBlob(ctx, "one", a); err != nil {
		t.Fatalf("UnlinkBlob: %v", err)
	}
	if n, err := m.BlobSize(ctx, "one", a); !errors.Is(err, storage.ErrBlobUnknown) {
		t.Errorf("BlobSize after UnlinkBlob = %d, %v; want ErrBlobUnknown", n, err)
	}
	if n, err := m.BlobSize(ctx, "two", a); err != nil || n != 100 {
		t.Errorf("BlobSize in the other repository = %d, %v; want 100, nil", n, err)
	}
	repos, err := m.BlobRepositories(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "BlobRepositories after UnlinkBlob", repos, []string{"two"})
	for _, c := range []struct{ repo, why string }{{"one", "again"}, {"never", "in an unknown repository"}} {
		if err := m.UnlinkBlob(ctx, c.repo, a); !errors.Is(err, storage.ErrBlobUnknown) {
			t.Errorf("UnlinkBlob %s = %v, want ErrBlobUnknown", c.why, err)
		}
	}
}

func testPutGetManifest(t *testing.T, m storage.Metadata) {
	cfg, layer := blob("cfg"), blob("layer")
	rec := image("app", cfg, layer)
	rec.ArtifactType = "application/vnd.example.thing"
	rec.Annotations = map[string]string{"org.opencontainers.image.title": "app"}
	want := *rec
	want.Blobs = slices.Clone(rec.Blobs)
	want.Annotations = maps.Clone(rec.Annotations)
	want.Body = slices.Clone(rec.Body)
	put(t, m, "lib/app", rec, "v1", "latest")
	for _, ref := range []string{"v1", "latest", string(rec.Digest)} {
		wantManifest(t, m, "lib/app", ref, &want)
	}
	wantStrings(t, "tags", allTags(t, m, "lib/app"), []string{"latest", "v1"})
	for _, c := range []struct{ repo, ref string }{
		{"lib/app", "v2"},
		{"lib/app", string(digest.FromString("other"))},
		{"lib/other", "v1"},
		{"lib/other", string(rec.Digest)},
	} {
		wantNoManifest(t, m, c.repo, c.ref)
	}
	// An index whose children are in the repository.
	idxBody := fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[%q]}`, rec.Digest)
	idx := &storage.ManifestRecord{
		Digest:    digest.FromBytes(idxBody),
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []digest.Digest{rec.Digest},
		Body:      idxBody,
	}
	wantIdx := *idx
	put(t, m, "lib/app", idx, "multi")
	wantManifest(t, m, "lib/app", "multi", &wantIdx)
}

func testPutIdempotent(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	rec := image("same", blob("a"))
	put(t, m, "r", rec, "t")
	_, head, err := m.Changes(ctx, "r", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	put(t, m, "r", rec, "t")
	wantManifest(t, m, "r", "t", rec)
	// Putting a tag where it already points is no change.
	changes, head2, err := m.Changes(ctx, "r", head, 100)
	if err != nil || head2 != head || len(changes) != 0 {
		t.Fatalf("Changes after a repeated put = %+v, head %d, %v; want none, head %d", changes, head2, err, head)
	}
}

func testMissingBlob(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	old := image("old", blob("a"))
	put(t, m, "r", old, "latest")
	_, head, err := m.Changes(ctx, "r", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	// b is in another repository only, c nowhere; a referrer too, so that
	// the referrers index must not change either.
	link(t, m, "elsewhere", blob("b"))
	for name, rec := range map[string]*storage.ManifestRecord{
		"blob in another repository": image("new", blob("a"), blob("b")),
		"blob nowhere":               image("new2", blob("c")),
	} {
		rec.Subject = old.Digest
		err := m.PutManifest(ctx, "r", rec, []string{"latest", "new"}, nil)
		if !errors.Is(err, storage.ErrManifestBlobUnknown) {
			t.Fatalf("PutManifest with a %s = %v, want ErrManifestBlobUnknown", name, err)
		}
		wantNoManifest(t, m, "r", string(rec.Digest))
	}
	wantManifest(t, m, "r", "latest", old)
	wantStrings(t, "tags", allTags(t, m, "r"), []string{"latest"})
	if refs, err := m.Referrers(ctx, "r", old.Digest); err != nil || len(refs) != 0 {
		t.Errorf("Referrers after refused puts = %+v, %v; want none", refs, err)
	}
	if changes, h, err := m.Changes(ctx, "r", head, 100); err != nil || h != head || len(changes) != 0 {
		t.Errorf("Changes after refused puts = %+v, head %d, %v; want none, head %d", changes, h, err, head)
	}
	// A refused push to a new repository does not create it.
	if err := m.PutManifest(ctx, "fresh", image("x", blob("c")), []string{"v1"}, nil); !errors.Is(err, storage.ErrManifestBlobUnknown) {
		t.Fatalf("PutManifest into a new repository = %v, want ErrManifestBlobUnknown", err)
	}
	if tags, _, err := m.Tags(ctx, "fresh", "", 10); !errors.Is(err, storage.ErrRepositoryUnknown) {
		t.Errorf("Tags of the refused repository = %q, %v; want ErrRepositoryUnknown", tags, err)
	}
	repos, _, err := m.Repositories(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(repos, "fresh") {
		t.Errorf("Repositories = %q, includes the refused repository", repos)
	}
}

func testMissingChild(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	child := image("child", blob("a"))
	put(t, m, "other", child)
	link(t, m, "r", blob("a"))
	body := fmt.Appendf(nil, `{"manifests":[%q]}`, child.Digest)
	idx := &storage.ManifestRecord{Digest: digest.FromBytes(body), MediaType: v1.MediaTypeImageIndex, Manifests: []digest.Digest{child.Digest}, Body: body}
	if err := m.PutManifest(ctx, "r", idx, []string{"multi"}, nil); !errors.Is(err, storage.ErrManifestBlobUnknown) {
		t.Fatalf("PutManifest of an index with a child in another repository = %v, want ErrManifestBlobUnknown", err)
	}
	wantNoManifest(t, m, "r", "multi")
	// A child blob is not a child manifest.
	body2 := fmt.Appendf(nil, `{"manifests":[%q]}`, blob("a"))
	idx2 := &storage.ManifestRecord{Digest: digest.FromBytes(body2), MediaType: v1.MediaTypeImageIndex, Manifests: []digest.Digest{blob("a")}, Body: body2}
	if err := m.PutManifest(ctx, "r", idx2, nil, nil); !errors.Is(err, storage.ErrManifestBlobUnknown) {
		t.Fatalf("PutManifest of an index listing a blob as a child = %v, want ErrManifestBlobUnknown", err)
	}
}

func testOptionalBlobs(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	foreign, missing := blob("foreign"), blob("missing")
	link(t, m, "r", blob("cfg"))
	rec := image("win", blob("cfg"), foreign)
	if err := m.PutManifest(ctx, "r", rec, []string{"v1"}, map[digest.Digest]bool{foreign: true}); err != nil {
		t.Fatalf("PutManifest with an optional blob absent: %v", err)
	}
	wantManifest(t, m, "r", "v1", rec)
	// Only the blobs listed are optional.
	rec2 := image("win2", blob("cfg"), foreign, missing)
	err := m.PutManifest(ctx, "r", rec2, []string{"v2"}, map[digest.Digest]bool{foreign: true, missing: false})
	if !errors.Is(err, storage.ErrManifestBlobUnknown) {
		t.Fatalf("PutManifest with a required blob absent = %v, want ErrManifestBlobUnknown", err)
	}
}

func testTagMoves(t *testing.T, m storage.Metadata) {
	one, two := image("one", blob("a")), image("two", blob("b"))
	put(t, m, "r", one, "latest", "stable")
	put(t, m, "r", two, "latest")
	wantManifest(t, m, "r", "latest", two)
	wantManifest(t, m, "r", "stable", one)
	// The manifest a tag left is still there by digest.
	wantManifest(t, m, "r", string(one.Digest), one)
	// Pushing by digest alone moves no tag.
	three := image("three", blob("a"))
	put(t, m, "r", three)
	wantManifest(t, m, "r", "latest", two)
	wantStrings(t, "tags", allTags(t, m, "r"), []string{"latest", "stable"})
}

func testDeleteManifest(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	subject := image("subject", blob("a"))
	put(t, m, "r", subject, "keep")
	gone := image("gone", blob("a"))
	gone.Subject = subject.Digest
	gone.ArtifactType = "application/vnd.example.sig"
	put(t, m, "r", gone, "t1", "t2")
	if refs, err := m.Referrers(ctx, "r", subject.Digest); err != nil || len(refs) != 1 {
		t.Fatalf("Referrers before delete = %+v, %v; want one", refs, err)
	}
	if err := m.DeleteManifest(ctx, "r", gone.Digest); err != nil {
		t.Fatalf("DeleteManifest: %v", err)
	}
	for _, ref := range []string{"t1", "t2", string(gone.Digest)} {
		wantNoManifest(t, m, "r", ref)
	}
	wantStrings(t, "tags after DeleteManifest", allTags(t, m, "r"), []string{"keep"})
	wantManifest(t, m, "r", "keep", subject)
	if refs, err := m.Referrers(ctx, "r", subject.Digest); err != nil || len(refs) != 0 {
		t.Errorf("Referrers after deleting the referrer = %+v, %v; want none", refs, err)
	}
	for _, c := range []struct{ repo, why string }{{"r", "again"}, {"nowhere", "in an unknown repository"}} {
		if err := m.DeleteManifest(ctx, c.repo, gone.Digest); !errors.Is(err, storage.ErrManifestUnknown) {
			t.Errorf("DeleteManifest %s = %v, want ErrManifestUnknown", c.why, err)
		}
	}
}

func testDeleteTag(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	rec := image("x", blob("a"))
	put(t, m, "r", rec, "a", "b")
	if err := m.DeleteTag(ctx, "r", "a"); err != nil {
		t.Fatalf("DeleteTag: %v", err)
	}
	wantNoManifest(t, m, "r", "a")
	wantManifest(t, m, "r", "b", rec)
	wantManifest(t, m, "r", string(rec.Digest), rec)
	wantStrings(t, "tags after DeleteTag", allTags(t, m, "r"), []string{"b"})
	for _, c := range []struct{ repo, tag string }{{"r", "a"}, {"r", "never"}, {"nowhere", "b"}} {
		if err := m.DeleteTag(ctx, c.repo, c.tag); !errors.Is(err, storage.ErrManifestUnknown) {
			t.Errorf("DeleteTag(%s, %s) = %v, want ErrManifestUnknown", c.repo, c.tag, err)
		}
	}
}

// pageCase is one page request and its expected answer.
type pageCase struct {
	last     string
	n        int
	want     []string
	wantMore bool
}

var pageCases = []pageCase{
	{"", 100, []string{"a", "b", "b0", "c", "d"}, false},
	{"", 5, []string{"a", "b", "b0", "c", "d"}, false},
	{"", 2, []string{"a", "b"}, true},
	{"b", 2, []string{"b0", "c"}, true},
	{"c", 2, []string{"d"}, false},
	{"c", 1, []string{"d"}, false},
	{"bz", 10, []string{"c", "d"}, false}, // last need not exist
	{"0", 1, []string{"a"}, true},
	{"d", 10, nil, false},
	{"zzz", 10, nil, false},
}

func testTagsPagination(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	put(t, m, "r", image("x", blob("a")), "d", "b0", "a", "c", "b")
	for _, c := range pageCases {
		got, more, err := m.Tags(ctx, "r", c.last, c.n)
		if err != nil {
			t.Fatalf("Tags(last %q, n %d): %v", c.last, c.n, err)
		}
		wantStrings(t, fmt.Sprintf("Tags(last %q, n %d)", c.last, c.n), got, c.want)
		if more != c.wantMore {
			t.Errorf("Tags(last %q, n %d) more = %v, want %v", c.last, c.n, more, c.wantMore)
		}
	}
	if tags, _, err := m.Tags(ctx, "unknown", "", 10); !errors.Is(err, storage.ErrRepositoryUnknown) {
		t.Errorf("Tags(unknown) = %q, %v; want ErrRepositoryUnknown", tags, err)
	}
}

func testRepositoriesPagination(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	if repos, more, err := m.Repositories(ctx, "", 10); err != nil || more || len(repos) != 0 {
		t.Fatalf("Repositories of an empty store = %q, %v, %v; want none", repos, more, err)
	}
	for _, r := range []string{"d", "b0", "a", "c", "b"} {
		put(t, m, r, image(r, blob(r)), "latest")
	}
	for _, c := range pageCases {
		got, more, err := m.Repositories(ctx, c.last, c.n)
		if err != nil {
			t.Fatalf("Repositories(last %q, n %d): %v", c.last, c.n, err)
		}
		wantStrings(t, fmt.Sprintf("Repositories(last %q, n %d)", c.last, c.n), got, c.want)
		if more != c.wantMore {
			t.Errorf("Repositories(last %q, n %d) more = %v, want %v", c.last, c.n, more, c.wantMore)
		}
	}
}

func testReferrers(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	subject := image("subject", blob("a"))
	put(t, m, "r", subject, "v1")
	sig := image("sig", blob("a"))
	sig.Subject, sig.ArtifactType = subject.Digest, "application/vnd.example.sig"
	sig.Annotations = map[string]string{"created": "today"}
	sbom := image("sbom", blob("a"))
	sbom.Subject, sbom.ArtifactType = subject.Digest, "application/spdx+json"
	other := image("other", blob("a"))
	other.Subject = blob("not a manifest here") // the subject need not exist
	for _, rec := range []*storage.ManifestRecord{sig, sbom, other} {
		put(t, m, "r", rec)
	}
	// The same referrer in another repository is not listed here.
	put(t, m, "r2", sig)

	got, err := m.Referrers(ctx, "r", subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b v1.Descriptor) int { return cmp.Compare(a.Digest, b.Digest) })
	want := []v1.Descriptor{
		{MediaType: v1.MediaTypeImageManifest, Digest: sig.Digest, Size: sig.Size(), ArtifactType: sig.ArtifactType, Annotations: sig.Annotations},
		{MediaType: v1.MediaTypeImageManifest, Digest: sbom.Digest, Size: sbom.Size(), ArtifactType: sbom.ArtifactType},
	}
	slices.SortFunc(want, func(a, b v1.Descriptor) int { return cmp.Compare(a.Digest, b.Digest) })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Referrers:\n got %+v\nwant %+v", got, want)
	}
	got, err = m.Referrers(ctx, "r", other.Subject)
	if err != nil || len(got) != 1 || got[0].Digest != other.Digest {
		t.Errorf("Referrers of an absent subject = %+v, %v; want [%s]", got, err, other.Digest)
	}
	for _, c := range []struct {
		repo string
		d    digest.Digest
	}{{"r", sig.Digest}, {"r", blob("unrelated")}, {"nowhere", subject.Digest}} {
		if got, err := m.Referrers(ctx, c.repo, c.d); err != nil || len(got) != 0 {
			t.Errorf("Referrers(%s, %s) = %+v, %v; want none, nil", c.repo, c.d, got, err)
		}
	}
}
