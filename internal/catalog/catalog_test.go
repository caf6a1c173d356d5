package catalog

import (
	"strings"
	"testing"

	"github.com/outpost-registry/outpost/internal/oci"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path, repo, kind, ref string
		bad                         bool
	}{
		{name: "repository", path: "apps/web", repo: "apps/web"},
		{name: "tags", path: "apps/web/_tags", repo: "apps/web", kind: "_tags"},
		{name: "one tag", path: "apps/web/_tags/4.2", repo: "apps/web", kind: "_tags", ref: "4.2"},
		{name: "manifests", path: "web/_manifests", repo: "web", kind: "_manifests"},
		{name: "manifest by digest", path: "a/b/c/_manifests/sha256:abc", repo: "a/b/c", kind: "_manifests", ref: "sha256:abc"},
		{name: "marker prefix is a name", path: "apps/_tagsx", bad: true},
		{name: "no repository", path: "_tags", bad: true},
		{name: "bad name", path: "Apps/_tags", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo, kind, ref, err := split(tt.path)
			if tt.bad {
				if err == nil {
					t.Fatalf("split(%q) = %q %q %q, want an error", tt.path, repo, kind, ref)
				}
				return
			}
			if err != nil || repo != tt.repo || kind != tt.kind || ref != tt.ref {
				t.Fatalf("split(%q) = %q %q %q %v, want %q %q %q", tt.path, repo, kind, ref, err, tt.repo, tt.kind, tt.ref)
			}
		})
	}
}

// FuzzSplit: whatever the path, an accepted answer names a valid
// repository and a known kind, and rebuilds the path.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"apps/web", "apps/web/_tags/x", "a/_manifests/sha256:1", "_tags", "a//_tags"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		repo, kind, ref, err := split(path)
		if err != nil {
			return
		}
		if oci.ValidateName(repo) != nil {
			t.Fatalf("split(%q): invalid repository %q accepted", path, repo)
		}
		rebuilt := repo
		switch kind {
		case "":
		case "_tags", "_manifests":
			rebuilt += "/" + kind
			if ref != "" || strings.HasSuffix(path, "/") {
				rebuilt += "/" + ref
			}
		default:
			t.Fatalf("split(%q): kind %q", path, kind)
		}
		if rebuilt != path {
			t.Fatalf("split(%q) = %q %q %q, rebuilds %q", path, repo, kind, ref, rebuilt)
		}
	})
}
