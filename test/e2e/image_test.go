package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerImage: scripts/image.sh builds Outpost's own image without
// a Docker engine and pushes it to an Outpost; it is a two-platform index
// whose config runs /outpost as a non-root user, and it is saved as an OCI
// layout that loads into another repository unchanged.
func TestContainerImage(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	layout := filepath.Join(t.TempDir(), "layout")
	crane := tool(t, "crane")
	cmd := exec.Command("bash", "../../scripts/image.sh", r.host+"/outpost/outpost:test", "--oci-layout", layout)
	cmd.Env = append(append(os.Environ(), env...), "CRANE="+crane)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, out)
	}
	cfg, _ := run(t, env, false, "crane", "config", "--platform", "linux/arm64", r.host+"/outpost/outpost:test")
	must(t, strings.Contains(cfg, `"/outpost"`) && strings.Contains(cfg, `"65532:65532"`) && strings.Contains(cfg, `"arm64"`), "image config: %s", cfg)
	index, _ := run(t, env, false, "crane", "manifest", r.host+"/outpost/outpost:test")
	must(t, strings.Contains(index, "amd64") && strings.Contains(index, "arm64"), "index: %s", index)
	// The layout's index wraps the image's index: loading it at a site
	// brings the same image, digest for digest.
	run(t, env, false, "crane", "push", "--index", layout, r.host+"/site/outpost:test")
	a, _ := run(t, env, false, "crane", "digest", r.host+"/outpost/outpost:test")
	loaded, _ := run(t, env, false, "crane", "manifest", r.host+"/site/outpost:test")
	must(t, strings.Contains(loaded, strings.TrimSpace(a)), "the loaded layout does not hold %s: %s", a, loaded)
	cfg, _ = run(t, env, false, "crane", "config", "--platform", "linux/amd64", r.host+"/site/outpost@"+strings.TrimSpace(a))
	must(t, strings.Contains(cfg, `"/outpost"`), "image config after loading: %s", cfg)
}
