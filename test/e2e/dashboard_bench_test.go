package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outpost-registry/outpost/internal/ui/uitest"
)

// BenchmarkFleetFirstPaint loads the fleet page of 1,000 connected
// registries (10,000 tags in the registry) in headless Chromium from the
// built binary on loopback, and reports the first contentful paint and
// the load event as the browser measured them (performance entries).
// Figures in docs/benchmarks.md; run with OUTPOST_E2E=1 OUTPOST_BIN=…
// go test -run '^$' -bench FleetFirstPaint ./test/e2e/.
func BenchmarkFleetFirstPaint(b *testing.B) {
	bin, chrome := os.Getenv("OUTPOST_BIN"), chromium()
	if os.Getenv("OUTPOST_E2E") != "1" || bin == "" || chrome == "" {
		b.Skip("needs OUTPOST_E2E=1, OUTPOST_BIN and a headless Chromium")
	}
	data := filepath.Join(b.TempDir(), "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		b.Fatal(err)
	}
	uitest.SeedFleet(b, data, 1000, 10000)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data", data, "--tls-mode", "off", "--log-level", "Warning")
	cmd.Env = append(os.Environ(), "OUTPOST_ADMIN_PASSWORD="+adminPassword)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := "http://" + addr + "/ui/"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "login"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("outpost did not start")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	err = chromedp.Do(ctx, chromedp.Navigate(base+"login"), chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), adminPassword), chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.more`)))
	if err != nil {
		b.Fatal(err)
	}
	var fcp, load float64
	b.ResetTimer()
	for b.Loop() {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"fleet"), chromedp.WaitVisible(chromedp.CSS(`p.more`))); err != nil {
			b.Fatal(err)
		}
		v, err := chromedp.Run(ctx, chromedp.Poll[[]float64](`(() => {
			const p = performance.getEntriesByName("first-contentful-paint")[0];
			const n = performance.getEntriesByType("navigation")[0];
			return p && n && n.loadEventEnd > 0 ? [p.startTime, n.loadEventEnd] : null;
		})()`, chromedp.WithPollingTimeout(10*time.Second)))
		if err != nil {
			b.Fatal(err)
		}
		fcp += v[0]
		load += v[1]
	}
	b.ReportMetric(fcp/float64(b.N), "fcp-ms")
	b.ReportMetric(load/float64(b.N), "load-ms")
}
