package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrane: push, pull, copy, ls, catalog and delete of a multi-platform
// image; a pull-only token can pull and cannot push.
func TestCrane(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	digest := testImage(t, env, r, "test/crane")
	must(t, strings.HasPrefix(digest, "sha256:"), "digest %q", digest)

	ls, _ := run(t, env, false, "crane", "ls", r.host+"/test/crane")
	for _, tag := range []string{"amd64", "arm64", "base", "multi"} {
		must(t, strings.Contains(ls, tag), "crane ls: %q lacks %s", ls, tag)
	}
	run(t, env, false, "crane", "copy", r.host+"/test/crane:multi", r.host+"/test/copy:multi")
	copied, _ := run(t, env, false, "crane", "digest", r.host+"/test/copy:multi")
	must(t, strings.TrimSpace(copied) == digest, "copy digest %s, want %s", copied, digest)
	catalog, _ := run(t, env, false, "crane", "catalog", r.host)
	must(t, strings.Contains(catalog, "test/crane") && strings.Contains(catalog, "test/copy"), "catalog: %s", catalog)
	tarball := filepath.Join(t.TempDir(), "img.tar")
	run(t, env, false, "crane", "pull", "--platform", "linux/arm64", r.host+"/test/crane:multi", tarball)
	fi, err := os.Stat(tarball)
	must(t, err == nil && fi.Size() > 0, "pulled tarball: %v", err)
	manifest, _ := run(t, env, false, "crane", "manifest", r.host+"/test/crane:multi")
	must(t, strings.Contains(manifest, "arm64") && strings.Contains(manifest, "amd64"), "index: %s", manifest)

	run(t, env, false, "crane", "delete", r.host+"/test/copy@"+digest)
	if out, err := run(t, env, true, "crane", "digest", r.host+"/test/copy:multi"); err == nil {
		t.Fatalf("deleted manifest still resolves: %s", out)
	}

	// A pull-only token pulls but cannot push.
	pullPW := r.token(t, "pull-only", "_repositories_pull")
	penv := clientEnv(t, r)
	craneLogin(t, penv, r, "pull-only", pullPW)
	d, _ := run(t, penv, false, "crane", "digest", r.host+"/test/crane:multi")
	must(t, strings.TrimSpace(d) == digest, "pull-only digest %s", d)
	out, err := run(t, penv, true, "crane", "tag", r.host+"/test/crane:multi", "denied")
	must(t, err != nil && strings.Contains(out, "DENIED"), "push with a pull token: %v %s", err, out)
	// A push token can.
	pushPW := r.token(t, "pusher", "_repositories_push")
	wenv := clientEnv(t, r)
	craneLogin(t, wenv, r, "pusher", pushPW)
	run(t, wenv, false, "crane", "tag", r.host+"/test/crane:multi", "pushed")
}

// TestSkopeo: copy --all to an OCI layout and back into a new repository.
func TestSkopeo(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	digest := testImage(t, env, r, "test/skopeo-src")
	certDir := t.TempDir()
	ca, _ := os.ReadFile(r.ca)
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	creds := "admin:" + adminPassword
	run(t, env, false, "skopeo", "copy", "--all", "--src-cert-dir", certDir, "--src-creds", creds,
		"docker://"+r.host+"/test/skopeo-src:multi", "oci:"+layout+":multi")
	run(t, env, false, "skopeo", "copy", "--all", "--dest-cert-dir", certDir, "--dest-creds", creds,
		"oci:"+layout+":multi", "docker://"+r.host+"/test/skopeo-dst:multi")
	got, _ := run(t, env, false, "crane", "digest", r.host+"/test/skopeo-dst:multi")
	must(t, strings.TrimSpace(got) == digest, "round trip through an OCI layout: %s, want %s", got, digest)
	inspect, _ := run(t, env, false, "skopeo", "inspect", "--raw", "--cert-dir", certDir, "--creds", creds, "docker://"+r.host+"/test/skopeo-dst:multi")
	must(t, strings.Contains(inspect, "manifests"), "skopeo inspect: %s", inspect)
}

// TestOras: push and pull an artifact; attach a signature and discover it
// through the referrers API (no sha256-… fallback tag).
func TestOras(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	dir := t.TempDir()
	payload := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(payload, []byte("release notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--ca-file", r.ca, "-u", "admin", "-p", adminPassword}
	ref := r.host + "/test/artifact:v1"
	env = append(env, "E2E_DIR="+dir)
	run(t, env, false, "oras", append([]string{"push", ref, "--artifact-type", "application/vnd.example.notes", "notes.txt:text/plain"}, common...)...)
	out := filepath.Join(t.TempDir(), "out")
	run(t, env, false, "oras", append([]string{"pull", ref, "-o", out}, common...)...)
	got, err := os.ReadFile(filepath.Join(out, "notes.txt"))
	must(t, err == nil && string(got) == "release notes\n", "pulled artifact: %q %v", got, err)

	sig := filepath.Join(dir, "sig.txt")
	if err := os.WriteFile(sig, []byte("signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, env, false, "oras", append([]string{"attach", ref, "--artifact-type", "application/vnd.example.signature", "sig.txt:text/plain"}, common...)...)
	discovered, _ := run(t, env, false, "oras", append([]string{"discover", ref, "--format", "json"}, common...)...)
	must(t, strings.Contains(discovered, "application/vnd.example.signature"), "oras discover: %s", discovered)
	cenv := append(env, "SSL_CERT_FILE="+r.ca)
	craneLogin(t, cenv, r, "admin", adminPassword)
	tags, _ := run(t, cenv, false, "crane", "ls", r.host+"/test/artifact")
	must(t, !strings.Contains(tags, "sha256-"), "oras used the tag fallback instead of the referrers API: %s", tags)
}

// TestRegctl: image copy and manifest get.
func TestRegctl(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	digest := testImage(t, env, r, "test/regctl-src")
	ca, _ := os.ReadFile(r.ca)
	run(t, env, false, "regctl", "registry", "set", r.host, "--cacert", string(ca))
	run(t, env, false, "regctl", "registry", "login", r.host, "-u", "admin", "-p", adminPassword)
	run(t, env, false, "regctl", "image", "copy", r.host+"/test/regctl-src:multi", r.host+"/test/regctl-dst:multi")
	got, _ := run(t, env, false, "regctl", "image", "digest", r.host+"/test/regctl-dst:multi")
	must(t, strings.TrimSpace(got) == digest, "regctl copy digest %s, want %s", got, digest)
	m, _ := run(t, env, false, "regctl", "manifest", "get", r.host+"/test/regctl-dst:multi", "--format", "raw-body")
	must(t, strings.Contains(m, "application/vnd.oci.image.index.v1+json"), "manifest get: %s", m)
}
