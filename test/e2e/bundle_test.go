package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/bundle"
	"github.com/outpost-registry/outpost/internal/ocitest"
)

// cliEnv runs the outpost CLI against r as the admin.
func cliEnv(t *testing.T, r *registry) []string {
	return append(clientEnv(t, r), "OUTPOST_SERVER=https://"+r.host, "OUTPOST_USERNAME=admin", "OUTPOST_PASSWORD="+adminPassword, "SSL_CERT_FILE="+r.ca)
}

// outpostTry runs the outpost CLI and returns its output and error.
func outpostTry(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Getenv("OUTPOST_BIN"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rewriteBundle copies the bundle tar src to dst, passing each entry's
// content through edit (by name).
func rewriteBundle(t *testing.T, src, dst string, edit func(name string, body []byte) []byte) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var buf bytes.Buffer
	tr, tw := tar.NewReader(in), tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		body = edit(h.Name, body)
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

type exportSummary struct {
	ID        string `json:"id"`
	Blobs     int    `json:"blobs"`
	Bytes     int64  `json:"blobBytes"`
	Omitted   int    `json:"omitted"`
	FileBytes int64  `json:"fileBytes"`
}

type importSummary struct {
	ID           string   `json:"id"`
	Published    []string `json:"published"`
	Unchanged    []string `json:"unchanged"`
	BlobsWritten int64    `json:"blobsWritten"`
}

func exportBundle(t *testing.T, env []string, file string, args ...string) exportSummary {
	t.Helper()
	var s exportSummary
	out := outpostCLI(t, env, append([]string{"bundle", "export", "--file", file, "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("bundle export -o json: %v\n%s", err, out)
	}
	return s
}

func importBundle(t *testing.T, env []string, file string, args ...string) importSummary {
	t.Helper()
	var s importSummary
	out := outpostCLI(t, env, append([]string{"bundle", "import", file, "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("bundle import -o json: %v\n%s", err, out)
	}
	return s
}

// TestBundleReleases: three releases of an application whose layers
// overlap travel from a root to a registry with no parent as bundles; each
// delta carries only its new blobs; tampered bundles (a flipped byte, a
// swapped blob, an edited contents manifest, another root's signature,
// another site's bundle) are refused and publish nothing; an import killed
// twice resumes without writing a verified blob again; a second import
// changes nothing; skopeo reads a full bundle; crane pulls every release.
func TestBundleReleases(t *testing.T) {
	t.Parallel()
	root := startOutpost(t)
	other := startOutpost(t) // another root, with its own bundle key
	siteProc := newProc(t)
	site := siteProc.start()
	site2 := startOutpost(t)
	rc, sc := ocitest.New(t, root.url, "admin", adminPassword, root.ca), ocitest.New(t, site.url, "admin", adminPassword, site.ca)
	oc := ocitest.New(t, other.url, "admin", adminPassword, other.ca)
	plat := v1.Platform{OS: "linux", Architecture: "amd64"}
	layer := func(i int) []byte { return ocitest.Random(uint64(100+i), 512<<10) }
	rel := []v1.Descriptor{
		rc.Image(t, "apps/web", "1", plat, layer(1), layer(2)),
		rc.Image(t, "apps/web", "2", plat, layer(1), layer(2), layer(3)),
		rc.Image(t, "apps/web", "3", plat, layer(1), layer(3), layer(4), layer(5), layer(6), layer(7)),
	}
	oc.Image(t, "apps/web", "3", plat, layer(1), layer(3), layer(4), layer(5), layer(6), layer(7))

	dir := t.TempDir()
	renv, senv, s2env, oenv := cliEnv(t, root), cliEnv(t, site), cliEnv(t, site2), cliEnv(t, other)
	key := filepath.Join(dir, "root.pub")
	resp, body, err := rc.Do(http.MethodGet, "/api/v1/pki/bundle.pub", nil, nil)
	must(t, err == nil && resp.StatusCode == 200, "GET bundle.pub: %v %v", err, resp)
	if err := os.WriteFile(key, body, 0o644); err != nil {
		t.Fatal(err)
	}

	// Release 1, against an empty site: everything travels.
	inv := filepath.Join(dir, "site.inventory")
	outpostCLI(t, senv, "bundle", "inventory", "-o", inv)
	b1 := filepath.Join(dir, "r1.bundle")
	s1 := exportBundle(t, renv, b1, "--image", "apps/web:1", "--since-inventory", inv)
	must(t, s1.Omitted == 0 && s1.Blobs == 4, "release 1: got %d blobs, %d omitted; want 4 (manifest, config, 2 layers), 0", s1.Blobs, s1.Omitted)
	r1 := importBundle(t, senv, b1, "--bundle-key", key)
	must(t, slices.Equal(r1.Published, []string{"apps/web:1"}), "release 1 published %v", r1.Published)
	must(t, checkTag(sc, "apps/web", "1", rel[0].Digest) == nil, "apps/web:1 at the site: %v", checkTag(sc, "apps/web", "1", rel[0].Digest))

	// Releases 2 and 3 are deltas: only the new layers and the manifest.
	deltaLimit := func(file string, newBytes int64) int64 {
		r, err := bundle.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		// Each tar entry costs a 512-byte header and up to 511 bytes of
		// padding; the layout files are a few hundred bytes.
		return newBytes + int64(len(r.Contents)) + int64(len(r.Signature)) + 16*1024
	}
	outpostCLI(t, senv, "bundle", "inventory", "-o", inv)
	b2 := filepath.Join(dir, "r2.bundle")
	s2 := exportBundle(t, renv, b2, "--image", "apps/web:2", "--since-inventory", inv)
	must(t, s2.Blobs == 2 && s2.Omitted == 3, "release 2: got %d blobs, %d omitted; want 2 (manifest, layer 3), 3", s2.Blobs, s2.Omitted)
	must(t, s2.Bytes == rel[1].Size+512<<10, "release 2 blob bytes: got %d, want %d", s2.Bytes, rel[1].Size+512<<10)
	must(t, s2.FileBytes <= deltaLimit(b2, s2.Bytes), "release 2 file: %d bytes, over its new blobs (%d) plus contents", s2.FileBytes, s2.Bytes)
	importBundle(t, senv, b2, "--bundle-key", key)
	must(t, checkTag(sc, "apps/web", "2", rel[1].Digest) == nil, "apps/web:2 at the site")

	outpostCLI(t, senv, "bundle", "inventory", "-o", inv)
	b3 := filepath.Join(dir, "r3.bundle")
	s3 := exportBundle(t, renv, b3, "--image", "apps/web:3", "--since-inventory", inv)
	must(t, s3.Blobs == 5 && s3.Omitted == 3, "release 3: got %d blobs, %d omitted; want 5 (manifest, layers 4-7), 3", s3.Blobs, s3.Omitted)
	must(t, s3.FileBytes <= deltaLimit(b3, s3.Bytes), "release 3 file: %d bytes, over its new blobs (%d) plus contents", s3.FileBytes, s3.Bytes)

	// Resume: the import command is killed twice and the site's registry
	// once, behind a slow link; then the import finishes, and the blobs
	// verified before a kill are not written again.
	slow := newLink(t, site.host)
	slow.setUploadRate(400 << 10)
	before := storedBlobs(t, siteProc.data)
	mtimes := map[digest.Digest]time.Time{}
	for kill := 1; kill <= 3; kill++ {
		cmd := exec.Command(os.Getenv("OUTPOST_BIN"), "bundle", "import", b3, "--bundle-key", key, "--concurrency", "1", "--server", "https://"+slow.addr())
		cmd.Env = append(os.Environ(), senv...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		want := len(before) + kill
		eventually(t, 30*time.Second, "a new blob at the site", func() bool { return len(storedBlobs(t, siteProc.data)) >= want })
		if kill < 3 {
			_ = cmd.Process.Kill() // the import command
			_ = cmd.Wait()
		} else {
			siteProc.kill() // the site's registry itself
			_ = cmd.Wait()
			site = siteProc.start()
		}
		t.Logf("import killed (%d) after %d new blobs: %s", kill, len(storedBlobs(t, siteProc.data))-len(before), out.String())
	}
	// The blob cases damage a layer the site still lacks (one it holds is
	// never read from the bundle: the site's verified copy is kept).
	l5 := ""
	held := storedBlobs(t, siteProc.data)
	for i := 4; i <= 7 && l5 == ""; i++ {
		if d := digest.FromBytes(layer(i)); !held[d] {
			l5 = d.Encoded()
		}
	}
	must(t, l5 != "", "every layer of release 3 reached the site before the tampering cases")
	if out, err := outpostTry(t, nil, "bundle", "verify", b3, "--bundle-key", key); err != nil || !strings.Contains(out, "signature valid") {
		t.Fatalf("bundle verify of an intact bundle: %v\n%s", err, out)
	}
	// Tampering: each refused with a clear message, nothing published.
	tampered := func(name string, edit func(string, []byte) []byte) string {
		p := filepath.Join(dir, name+".bundle")
		rewriteBundle(t, b3, p, edit)
		return p
	}
	otherBundle := filepath.Join(dir, "other-root.bundle")
	exportBundle(t, oenv, otherBundle, "--image", "apps/web:3", "--full")
	inv2 := filepath.Join(dir, "site2.inventory")
	outpostCLI(t, s2env, "bundle", "inventory", "-o", inv2)
	otherSite := filepath.Join(dir, "other-site.bundle")
	exportBundle(t, renv, otherSite, "--image", "apps/web:3", "--since-inventory", inv2)
	for _, tc := range []struct {
		name, file, want string
	}{
		{"flipped byte", tampered("flipped", func(n string, b []byte) []byte {
			if strings.HasSuffix(n, l5) {
				b = bytes.Clone(b)
				b[1000] ^= 0x01
			}
			return b
		}), "digest"},
		{"swapped blob", tampered("swapped", func(n string, b []byte) []byte {
			if strings.HasSuffix(n, l5) {
				return layer(1)
			}
			return b
		}), "digest"},
		{"edited contents", tampered("edited", func(n string, b []byte) []byte {
			if n == bundle.ContentsFile {
				return bytes.Replace(b, []byte(`"tag": "3"`), []byte(`"tag": "latest"`), 1)
			}
			return b
		}), "does not match its signature"},
		{"another root", otherBundle, "another root"},
		{"another site", otherSite, "made for site"},
	} {
		if tc.want == "digest" {
			out, err := outpostTry(t, nil, "bundle", "verify", tc.file, "--bundle-key", key)
			must(t, err != nil && strings.Contains(out, "damaged") && strings.Contains(out, l5), "%s: bundle verify: %v %q, want it damaged at %s", tc.name, err, out, l5)
		}
		out, err := outpostTry(t, senv, "bundle", "import", tc.file, "--bundle-key", key)
		t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
		must(t, err != nil && strings.Contains(out, tc.want), "%s: got %v %q, want a refusal naming %q", tc.name, err, out, tc.want)
		must(t, !slices.Contains(listTags(t, sc, "apps/web"), "3"), "%s: apps/web:3 was published", tc.name)
	}

	must(t, !slices.Contains(listTags(t, sc, "apps/web"), "3"), "apps/web:3 published by a killed import")
	// The tampered bundles above wrote the valid blobs they carried, once
	// each; what is verified now is kept by the import that finishes.
	for d := range storedBlobs(t, siteProc.data) {
		if !before[d] {
			fi, err := os.Stat(blobFile(siteProc.data, d))
			if err != nil {
				t.Fatal(err)
			}
			mtimes[d] = fi.ModTime()
		}
	}
	r3 := importBundle(t, senv, b3, "--bundle-key", key)
	must(t, slices.Equal(r3.Published, []string{"apps/web:3"}), "release 3 published %v", r3.Published)
	must(t, r3.BlobsWritten == int64(s3.Blobs-1-len(mtimes)), "resumed import wrote %d blobs; want %d (the %d verified before the kills are kept)", r3.BlobsWritten, s3.Blobs-1-len(mtimes), len(mtimes))
	for d, mt := range mtimes {
		fi, err := os.Stat(blobFile(siteProc.data, d))
		must(t, err == nil && fi.ModTime().Equal(mt), "blob %s rewritten after the kill (%v)", d, err)
	}
	again := importBundle(t, senv, b3, "--bundle-key", key)
	must(t, len(again.Published) == 0 && again.BlobsWritten == 0 && slices.Equal(again.Unchanged, []string{"apps/web:3"}), "second import: %+v, want a no-op", again)

	// Every release pulls complete with crane from the site.
	cenv := clientEnv(t, site)
	craneLogin(t, cenv, site, "admin", adminPassword)
	for i, d := range rel {
		tag := []string{"1", "2", "3"}[i]
		must(t, checkTag(sc, "apps/web", tag, d.Digest) == nil, "apps/web:%s: %v", tag, checkTag(sc, "apps/web", tag, d.Digest))
		run(t, cenv, false, "crane", "pull", site.host+"/apps/web:"+tag, filepath.Join(dir, "pull-"+tag+".tar"))
	}

	// Interop: skopeo reads a full bundle as an OCI archive.
	full := filepath.Join(dir, "full.bundle")
	exportBundle(t, renv, full, "--image", "apps/web:3", "--full")
	run(t, nil, false, "skopeo", "copy", "oci-archive:"+full+":apps/web:3", "dir:"+filepath.Join(dir, "skopeo-out"))
	got, err := os.ReadFile(filepath.Join(dir, "skopeo-out", "manifest.json"))
	must(t, err == nil && digest.FromBytes(got) == rel[2].Digest, "skopeo manifest: %v, digest %s, want %s", err, digest.FromBytes(got), rel[2].Digest)
}

// TestBundleConnectedSite: a connected registry receives the root's bundle
// key at activation and imports without --bundle-key; its heartbeat
// reports the import, the root lists it, and the next export for the site
// leaves out what that import delivered; stage check passes for the
// imported image at the site.
func TestBundleConnectedSite(t *testing.T) {
	t.Parallel()
	root := startOutpost(t)
	rc := ocitest.New(t, root.url, "admin", adminPassword, root.ca)
	plat := v1.Platform{OS: "linux", Architecture: "amd64"}
	base := ocitest.Random(7, 256<<10)
	rc.Image(t, "apps/air", "1", plat, base)
	cli := cliEnv(t, root)
	outpostCLI(t, cli, "connected-registry", "create", "--name", "plant-a", "--repository", "apps/web", "--yes", "-o", "none")
	cs := strings.TrimSpace(outpostCLI(t, cli, "connected-registry", "get-settings", "--name", "plant-a", "--parent-protocol", "https",
		"--generate-password", "1", "--yes", "--query", "connectionString", "-o", "tsv"))
	csFile := filepath.Join(t.TempDir(), "cs")
	if err := os.WriteFile(csFile, []byte(cs), 0o600); err != nil {
		t.Fatal(err)
	}
	edge := startOutpost(t, "--connection-string-file", csFile, "--parent-ca-file", root.ca, "--heartbeat-interval", "1s")
	eenv := cliEnv(t, edge)
	eventually(t, 20*time.Second, "the bundle key at the edge", func() bool {
		b, err := os.ReadFile(filepath.Join(edge.dir, "data", "edge", "config.json"))
		return err == nil && bytes.Contains(b, []byte("bundleKey"))
	})

	dir := t.TempDir()
	// -o FILE names the bundle, as --file does.
	out := outpostCLI(t, cli, "bundle", "export", "--image", "apps/air:1", "--full", "-o", filepath.Join(dir, "air-full.bundle"))
	_, err := os.Stat(filepath.Join(dir, "air-full.bundle"))
	must(t, err == nil && strings.Contains(out, "1 images"), "export -o FILE: %v %s", err, out)
	b1 := filepath.Join(dir, "air1.bundle")
	s1 := exportBundle(t, cli, b1, "--connected-registry", "plant-a", "--image", "apps/air:1")
	r1 := importBundle(t, eenv, b1)
	must(t, slices.Equal(r1.Published, []string{"apps/air:1"}), "published %v", r1.Published)
	eventually(t, 20*time.Second, "the import reported to the root", func() bool {
		out := outpostCLI(t, cli, "connected-registry", "show", "--name", "plant-a", "-o", "json")
		return strings.Contains(out, s1.ID)
	})

	status := outpostCLI(t, eenv, "status", "-o", "json")
	must(t, strings.Contains(status, `"importedBundles"`) && strings.Contains(status, s1.ID), "outpost status at the site: %s, want the import listed", status)

	rc.Image(t, "apps/air", "2", plat, base, ocitest.Random(8, 128<<10))
	b2 := filepath.Join(dir, "air2.bundle")
	s2 := exportBundle(t, cli, b2, "--connected-registry", "plant-a", "--image", "apps/air:2")
	must(t, s2.Omitted == 2 && s2.Blobs == 2, "delta from the root's record: %d blobs, %d omitted; want 2 (manifest, new layer), 2 (config, base layer)", s2.Blobs, s2.Omitted)
	importBundle(t, eenv, b2)
	outpostCLI(t, eenv, "stage", "check", "--image", "apps/air:2", "--image", "apps/air:1", "--server", "https://"+edge.host, "-u", "admin", "-p", adminPassword, "--ca-file", edge.ca)
}
