package gc_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/storage/gc"
	"github.com/outpost-registry/outpost/internal/storage/retention"
)

// tagsOf lists the tags of repo.
func tagsOf(t *testing.T, s *site, repo string) []string {
	t.Helper()
	var out struct {
		Tags []string `json:"tags"`
	}
	s.c.JSON(t, http.MethodGet, "/v2/"+repo+"/tags/list", nil, &out)
	slices.Sort(out.Tags)
	return out.Tags
}

// TestRetention: each rule type, dry then for real, on a real store. A
// dry run lists the tags a policy would remove and removes nothing; the
// real run removes them and collects what they alone kept; protected
// tags (staged, synced) and referrers of kept images survive a policy
// that would otherwise remove them, and every kept tag pulls complete.
func TestRetention(t *testing.T) {
	t.Parallel()
	const grace = 200 * time.Millisecond
	cases := []struct {
		name    string
		policy  retention.Policy
		tags    []string // pushed in this order, one image each
		young   []string // pushed after the grace period, before the run
		protect gc.Protection
		want    []string // the tags left
	}{
		{name: "keep newest", policy: retention.Policy{KeepNewest: 2},
			tags: []string{"a", "b", "c", "d"}, want: []string{"c", "d"}},
		{name: "keep glob", policy: retention.Policy{KeepTags: []string{"v*", "latest"}},
			tags: []string{"v1", "v2", "latest", "build-1", "build-2"}, want: []string{"latest", "v1", "v2"}},
		{name: "keep semver range", policy: retention.Policy{KeepSemver: ">=1.4, <2"},
			tags: []string{"1.3.9", "v1.4.0", "v1.9.1", "2.0.0", "edge"}, want: []string{"v1.4.0", "v1.9.1"}},
		{name: "keep within", policy: retention.Policy{KeepWithin: retention.Duration(grace)},
			tags: []string{"old-1", "old-2"}, young: []string{"new-1"}, want: []string{"new-1"}},
		{name: "staged and synced survive", policy: retention.Policy{KeepNewest: 1},
			tags:    []string{"staged", "other", "newest"},
			protect: gc.Protection{Tags: map[string][]string{"app": {"staged"}}}, want: []string{"newest", "staged"}},
		{name: "sync scope keeps every tag", policy: retention.Policy{KeepNewest: 1},
			tags: []string{"x", "y", "z"}, protect: gc.Protection{Repositories: []string{"app"}}, want: []string{"x", "y", "z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			shared := ocitest.Random(99, 2048)
			imgs := map[string]v1.Descriptor{}
			for i, tag := range c.tags {
				imgs[tag] = s.c.Image(t, "app", tag, amd64, shared, ocitest.Random(uint64(i+1), 2048))
			}
			time.Sleep(grace + 50*time.Millisecond)
			for i, tag := range c.young {
				imgs[tag] = s.c.Image(t, "app", tag, amd64, shared, ocitest.Random(uint64(i+100), 2048))
			}
			p := c.policy
			p.Name, p.Repositories = "p", []string{"app"}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			opts := gc.Options{GracePeriod: grace, DryRun: true, Policies: []retention.Policy{p},
				Protect: func(context.Context) (gc.Protection, error) { return c.protect, nil }}
			all := slices.Sorted(slices.Values(append(slices.Clone(c.tags), c.young...)))
			var wantGone []string
			for _, tag := range all {
				if !slices.Contains(c.want, tag) {
					wantGone = append(wantGone, tag)
				}
			}
			dry, err := s.gc.Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := removedTags(dry); !slices.Equal(got, wantGone) {
				t.Errorf("dry run: got tags %v removed, want %v", got, wantGone)
			}
			if dry.Manifests != len(wantGone) || dry.Blobs != len(wantGone) {
				t.Errorf("dry run: got %d manifests and %d blobs, want %d each (the shared layer stays)", dry.Manifests, dry.Blobs, len(wantGone))
			}
			if got := tagsOf(t, s, "app"); !slices.Equal(got, all) {
				t.Fatalf("after the dry run: got tags %v, want %v", got, all)
			}
			opts.DryRun = false
			rep, err := s.gc.Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := removedTags(rep); !slices.Equal(got, wantGone) || rep.Tags != len(wantGone) {
				t.Errorf("run: got tags %v (%d) removed, want %v", got, rep.Tags, wantGone)
			}
			if got := tagsOf(t, s, "app"); !slices.Equal(got, c.want) {
				t.Errorf("after the run: got tags %v, want %v", got, c.want)
			}
			for _, tag := range wantGone {
				if status(s.c, http.MethodHead, "/v2/app/manifests/"+string(imgs[tag].Digest)) != http.StatusNotFound {
					t.Errorf("the image of removed tag %s is still served", tag)
				}
			}
			for _, tag := range c.want {
				checkPulls(t, s.c, "app", tag)
			}
		})
	}
}

func removedTags(r gc.Report) []string {
	var out []string
	for _, sw := range r.Removed {
		out = append(out, sw.Tags...)
	}
	slices.Sort(out)
	return out
}

// TestRetentionKeepsReferrersAndUntagged: a signature tagged the cosign
// way (sha256-HEX.sig) and a tagged referrer of a kept image survive a
// policy their names do not match; an untagged manifest stays until
// untaggedOlderThan, even past the grace period; a manifest the site
// must keep stays untagged.
func TestRetentionKeepsReferrersAndUntagged(t *testing.T) {
	t.Parallel()
	const grace = 200 * time.Millisecond
	s := newSite(t)
	kept := s.c.Image(t, "app", "v1", amd64, ocitest.Random(1, 1024))
	gone := s.c.Image(t, "app", "build-1", amd64, ocitest.Random(2, 1024))
	sig := s.c.Referrer(t, "app", "application/vnd.example.sig", kept, []byte("sig"))
	cosign := "sha256-" + kept.Digest.Encoded() + ".sig"
	// A cosign signature is a plain image tagged after its subject.
	s.c.Image(t, "app", cosign, amd64, []byte("cosign signature"))
	s.c.PushManifest(t, "app", "sbom", v1.MediaTypeImageManifest, mustBody(t, s, sig.Digest))
	untagged := s.c.Image(t, "app", "", amd64, ocitest.Random(3, 1024))
	staged := s.c.Image(t, "app", "", amd64, ocitest.Random(4, 1024))
	time.Sleep(grace + 50*time.Millisecond)

	p := retention.Policy{Name: "p", Repositories: []string{"*"}, KeepTags: []string{"v*"}, UntaggedOlderThan: retention.Duration(time.Hour)}
	prot := gc.Protection{Manifests: map[string][]digest.Digest{"app": {staged.Digest}}}
	opts := gc.Options{GracePeriod: grace, Policies: []retention.Policy{p}, Protect: func(context.Context) (gc.Protection, error) { return prot, nil }}
	rep, err := s.gc.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := removedTags(rep), []string{"build-1"}; !slices.Equal(got, want) {
		t.Errorf("got tags %v removed, want %v", got, want)
	}
	if got, want := tagsOf(t, s, "app"), []string{"sbom", cosign, "v1"}; !slices.Equal(got, want) {
		t.Errorf("got tags %v, want %v", got, want)
	}
	// build-1's image is untagged now but younger than an hour.
	for _, d := range []digest.Digest{kept.Digest, sig.Digest, untagged.Digest, staged.Digest, gone.Digest} {
		if status(s.c, http.MethodHead, "/v2/app/manifests/"+string(d)) != http.StatusOK {
			t.Errorf("manifest %s is gone", d)
		}
	}
	// With untagged manifests collected after the grace period, the
	// staged one still stays.
	opts.Policies[0].UntaggedOlderThan = 0
	if _, err := s.gc.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[digest.Digest]int{untagged.Digest: http.StatusNotFound, gone.Digest: http.StatusNotFound, staged.Digest: http.StatusOK, sig.Digest: http.StatusOK} {
		if got := status(s.c, http.MethodHead, "/v2/app/manifests/"+string(d)); got != want {
			t.Errorf("manifest %s: got %d, want %d", d, got, want)
		}
	}
}

// mustBody returns the body of manifest d of app.
func mustBody(t *testing.T, s *site, d digest.Digest) []byte {
	t.Helper()
	resp, body, err := s.c.Do(http.MethodGet, "/v2/app/manifests/"+string(d), http.Header{"Accept": {v1.MediaTypeImageManifest}}, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get %s: %v %v", d, err, resp)
	}
	return body
}
