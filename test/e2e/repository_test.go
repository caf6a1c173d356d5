package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// detailTag is the part of `repository show-tags --detail -o json` the
// tests read.
type detailTag struct {
	Name      string   `json:"name"`
	Digest    string   `json:"digest"`
	Size      int64    `json:"size"`
	Platforms []string `json:"platforms"`
	Referrers []struct {
		ArtifactType string   `json:"artifactType"`
		Digests      []string `json:"digests"`
	} `json:"referrers"`
}

// showTag returns the detail of repo:tag as `outpost repository
// show-tags --detail -o json` prints it.
func showTag(t *testing.T, env []string, repo, tag string) detailTag {
	t.Helper()
	var tags []detailTag
	out := outpostCLI(t, env, "repository", "show-tags", "--name", repo, "--detail", "-o", "json")
	if err := json.Unmarshal([]byte(out), &tags); err != nil {
		t.Fatalf("show-tags --detail: %v\n%s", err, out)
	}
	for _, tg := range tags {
		if tg.Name == tag {
			return tg
		}
	}
	t.Fatalf("show-tags --detail of %s has no %s:\n%s", repo, tag, out)
	return detailTag{}
}

// TestRepositoryBrowse: the repository commands list, show, order and
// delete content, with platforms and referrers, and a pull-only token sees
// only the repositories of its scope map and may not delete.
func TestRepositoryBrowse(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	idx := testImage(t, env, r, "apps/web")
	testImage(t, env, r, "team-b/tool")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sig.txt"), []byte("signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, append(env, "E2E_DIR="+dir), false, "oras", "attach", r.host+"/apps/web@"+idx, "--artifact-type", "application/vnd.example.signature",
		"sig.txt:text/plain", "--ca-file", r.ca, "-u", "admin", "-p", adminPassword)

	admin := append(clientEnv(t, r), "OUTPOST_SERVER=https://"+r.host, "OUTPOST_USERNAME=admin", "OUTPOST_PASSWORD="+adminPassword, "SSL_CERT_FILE="+r.ca)
	list := outpostCLI(t, admin, "repository", "list", "-o", "tsv")
	must(t, list == "apps/web\nteam-b/tool\n", "admin repository list: got %q, want both repositories", list)

	tag := showTag(t, admin, "apps/web", "multi")
	must(t, tag.Digest == idx, "multi digest: got %s, want %s", tag.Digest, idx)
	must(t, slices.Equal(tag.Platforms, []string{"linux/amd64", "linux/arm64"}), "multi platforms: got %v", tag.Platforms)
	must(t, len(tag.Referrers) == 1 && tag.Referrers[0].ArtifactType == "application/vnd.example.signature" && len(tag.Referrers[0].Digests) == 1,
		"multi referrers: got %+v, want one signature", tag.Referrers)
	must(t, tag.Size > 1000, "multi size: got %d, want the index, manifests and blobs", tag.Size)
	amd := showTag(t, admin, "apps/web", "amd64")
	must(t, slices.Equal(amd.Platforms, []string{"linux/amd64"}), "amd64 platforms (from its config): got %v", amd.Platforms)

	// multi was pushed last: newest first puts it at the top.
	newest := outpostCLI(t, admin, "repository", "show-tags", "--name", "apps/web", "--orderby", "time_desc", "--top", "1", "-o", "tsv")
	must(t, newest == "multi\n", "newest tag: got %q, want multi", newest)
	table := outpostCLI(t, admin, "repository", "show-tags", "--name", "apps/web", "--detail", "-o", "table")
	must(t, strings.Contains(table, "linux/amd64,linux/arm64") && strings.Contains(table, "application/vnd.example.signature=1"), "detail table:\n%s", table)
	manifests := outpostCLI(t, admin, "repository", "show-manifests", "--name", "apps/web", "--query", "length(@)")
	// index, two platform images, base, the signature.
	must(t, strings.TrimSpace(manifests) == "5", "show-manifests count: got %s, want 5", manifests)
	show := outpostCLI(t, admin, "repository", "show", "--name", "apps/web", "--query", "tagCount")
	must(t, strings.TrimSpace(show) == "4", "tagCount: got %s, want 4 (base, amd64, arm64, multi)", show)

	r.api(t, http.MethodPost, "/api/v1/scope-maps", map[string]any{"name": "apps-pull", "repositories": []map[string]any{
		{"repository": "apps/*", "actions": []string{"content/read", "metadata/read"}},
	}}, nil)
	pw := r.token(t, "apps-reader", "apps-pull")
	reader := append(clientEnv(t, r), "OUTPOST_SERVER=https://"+r.host, "OUTPOST_USERNAME=apps-reader", "OUTPOST_PASSWORD="+pw, "SSL_CERT_FILE="+r.ca)
	list = outpostCLI(t, reader, "repository", "list", "-o", "tsv")
	must(t, list == "apps/web\n", "pull-only repository list: got %q, want only apps/web", list)
	_, err := run(t, reader, true, os.Getenv("OUTPOST_BIN"), "repository", "show-tags", "--name", "team-b/tool")
	must(t, err != nil, "a pull-only token read team-b/tool's tags")
	out, err := run(t, reader, true, os.Getenv("OUTPOST_BIN"), "repository", "untag", "--image", "apps/web:base")
	must(t, err != nil && strings.Contains(out, "content/delete"), "a pull-only token untagged: %v %s", err, out)

	outpostCLI(t, admin, "repository", "untag", "--image", "apps/web:base")
	tags := outpostCLI(t, admin, "repository", "show-tags", "--name", "apps/web", "-o", "tsv")
	must(t, tags == "amd64\narm64\nmulti\n", "tags after untag: got %q", tags)
	outpostCLI(t, admin, "repository", "delete", "--image", "apps/web:multi", "--yes")
	tags = outpostCLI(t, admin, "repository", "show-tags", "--name", "apps/web", "-o", "tsv")
	must(t, tags == "amd64\narm64\n", "tags after delete --image: got %q", tags)
	outpostCLI(t, admin, "repository", "delete", "--name", "team-b/tool", "--yes")
	left := outpostCLI(t, admin, "repository", "show-manifests", "--name", "team-b/tool", "--query", "length(@)")
	must(t, strings.TrimSpace(left) == "0", "manifests after repository delete: got %s", left)
}
