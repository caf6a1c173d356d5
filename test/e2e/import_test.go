package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImport: the server imports a two-platform index with a signature
// from a second registry that requires credentials (a pull-only token
// there); show-tags --detail lists it with both platforms and the
// referrer, under the new name. A wrong password fails naming the source
// and the cause.
func TestImport(t *testing.T) {
	t.Parallel()
	src := startOutpost(t)
	dst := startOutpost(t)
	env := clientEnv(t, src)
	craneLogin(t, env, src, "admin", adminPassword)
	idx := testImage(t, env, src, "apps/web")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sig.txt"), []byte("signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, append(env, "E2E_DIR="+dir), false, "oras", "attach", src.host+"/apps/web@"+idx, "--artifact-type", "application/vnd.example.signature",
		"sig.txt:text/plain", "--ca-file", src.ca, "-u", "admin", "-p", adminPassword)
	src.api(t, http.MethodPost, "/api/v1/scope-maps", map[string]any{"name": "web-pull", "repositories": []map[string]any{
		{"repository": "apps/web", "actions": []string{"content/read", "metadata/read"}},
	}}, nil)
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(src.token(t, "web-puller", "web-pull")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	admin := append(clientEnv(t, dst), "OUTPOST_SERVER=https://"+dst.host, "OUTPOST_USERNAME=admin", "OUTPOST_PASSWORD="+adminPassword, "SSL_CERT_FILE="+dst.ca)
	out := outpostCLI(t, admin, "import", "--source", src.host+"/apps/web:multi", "--image", "mirror/web:4.2",
		"--username", "web-puller", "--password-file", pwFile, "--source-ca-file", src.ca, "--interval", "100ms", "--query", "digest", "-o", "tsv")
	must(t, strings.TrimSpace(out) == idx, "import digest: got %q, want %s", out, idx)

	tag := showTag(t, admin, "mirror/web", "4.2")
	must(t, tag.Digest == idx, "imported digest: got %s, want %s", tag.Digest, idx)
	must(t, slices.Equal(tag.Platforms, []string{"linux/amd64", "linux/arm64"}), "imported platforms: got %v", tag.Platforms)
	must(t, len(tag.Referrers) == 1 && tag.Referrers[0].ArtifactType == "application/vnd.example.signature",
		"imported referrers: got %+v, want the signature", tag.Referrers)
	// Every blob arrived: crane pulls both platforms from the target.
	denv := clientEnv(t, dst)
	craneLogin(t, denv, dst, "admin", adminPassword)
	run(t, denv, false, "crane", "pull", "--platform", "linux/arm64", dst.host+"/mirror/web:4.2", filepath.Join(dir, "arm64.tar"))

	if err := os.WriteFile(pwFile, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	failed, err := run(t, admin, true, os.Getenv("OUTPOST_BIN"), "import", "--source", src.host+"/apps/web:multi", "--image", "mirror/web:bad",
		"--username", "web-puller", "--password-file", pwFile, "--source-ca-file", src.ca, "--interval", "100ms")
	t.Logf("import with a wrong password: %s", failed)
	must(t, err != nil && strings.Contains(failed, "import from "+src.host+"/apps/web:multi") && strings.Contains(failed, "401"),
		"import with a wrong password: got %v\n%s\nwant the source and the cause named", err, failed)
}
