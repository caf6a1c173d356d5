package edge_test

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestDeactivateRunningSite: `deactivate` at the root while a ReadWrite
// site runs. The site says so at once in its log (with what to do), stops
// talking to the parent — it does not quietly activate again, and a push
// made afterwards stays queued — while it keeps serving its content; a
// restart activates it again and delivers the queued push.
func TestDeactivateRunningSite(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	base := rc.Image(t, "apps/web", "base", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(800, 8<<10))
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "moving-site", Mode: "ReadWrite", Repositories: []string{"apps/web"}}, "")
	data := t.TempDir()
	edit := func(c *config.Config) { c.ConnectionString, c.Parent.CAFile = cs, root.ca }
	site, logs := startLogged(t, data, edit)
	sc := site.admin()
	ocitest.Eventually(t, 30*time.Second, "base at the site", func() bool {
		d, _, _ := sc.ManifestDigest("apps/web", "base")
		return d == base.Digest
	})

	rc.JSON(t, "POST", "/api/v1/connected-registries/moving-site/deactivate", nil, nil)
	ocitest.Eventually(t, 20*time.Second, "the site to log its deactivation", func() bool {
		return strings.Contains(logs.String(), "deactivated at the parent") && strings.Contains(logs.String(), "restart this registry")
	})
	late := sc.Image(t, "apps/web", "late", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(801, 8<<10))
	time.Sleep(4 * time.Second) // four heartbeat and outbox intervals
	if c := root.crStatus(t, "moving-site"); c.ActivationStatus != protocol.ActivationInactive {
		t.Fatalf("the deactivated site activated again by itself: %s", c.ActivationStatus)
	}
	if d, _, _ := rc.ManifestDigest("apps/web", "late"); d != "" {
		t.Fatal("the deactivated site delivered a push")
	}
	if d, _, _ := sc.ManifestDigest("apps/web", "base"); d != base.Digest {
		t.Fatal("the deactivated site stopped serving its content")
	}

	site.stop()
	start(t, data, edit)
	ocitest.Eventually(t, 30*time.Second, "the queued push at the root after the restart", func() bool {
		d, _, _ := rc.ManifestDigest("apps/web", "late")
		return d == late.Digest
	})
}
