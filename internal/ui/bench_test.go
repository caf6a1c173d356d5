package ui_test

import (
	"compress/gzip"
	"io"
	"net/http"
	"testing"
)

// BenchmarkFleetPage renders the fleet page of 1,000 connected registries
// (10,000 tags in the registry) through the real server on loopback, as
// a browser asks for it (gzip), and reports its size: html-bytes before
// compression, wire-bytes sent. docs/benchmarks.md has the figures.
func BenchmarkFleetPage(b *testing.B) {
	d := seeded(b, 1000, 10000)
	c := d.browser()
	if resp := d.signIn(c, "admin", adminPassword); resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign-in: %d", resp.StatusCode)
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	c.Transport = tr
	// The page as it opens (the first 50 rows of the tree), and the whole
	// tree (?all=1).
	for name, path := range map[string]string{"page": "/ui/fleet", "all": "/ui/fleet?all=1"} {
		b.Run(name, func(b *testing.B) { fetchPage(b, c, d.ts.URL+path) })
	}
}

// fetchPage GETs url as a browser would (gzip) and reports its size.
func fetchPage(b *testing.B, c *http.Client, url string) {
	var wire, html int64
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		zr, err := gzip.NewReader(&counter{r: resp.Body, n: &wire})
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, zr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /ui/fleet: %d %v", resp.StatusCode, err)
		}
		html += n
	}
	b.ReportMetric(float64(html)/float64(b.N), "html-bytes")
	b.ReportMetric(float64(wire)/float64(b.N), "wire-bytes")
}

type counter struct {
	r io.Reader
	n *int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
