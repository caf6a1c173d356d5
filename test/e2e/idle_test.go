package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// e2eIdle is the idle timeout the test configures: long enough that a
// 1 MB/s transfer never comes near it, short enough to wait for.
const e2eIdle = 5 * time.Second

// rawTLS opens a connection to r that the test drives by hand and sends
// the head of a request as the admin.
func rawTLS(t *testing.T, r *registry, method, path, extra string) *tls.Conn {
	t.Helper()
	pem, err := os.ReadFile(r.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", r.host, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	basic := base64.StdEncoding.EncodeToString([]byte("admin:" + adminPassword))
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n%s\r\n", method, path, r.host, basic, extra); err != nil {
		t.Fatal(err)
	}
	return c
}

// adminDo sends a request as the admin and returns the status and body.
func adminDo(t *testing.T, r *registry, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, r.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", adminPassword)
	req.Header.Set("Content-Type", "application/octet-stream")
	client := *r.http
	client.Timeout = 10 * time.Minute
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp, b
}

// idleTimeouts reads outpost_http_idle_timeouts_total.
func idleTimeouts(t *testing.T, r *registry) float64 {
	t.Helper()
	_, b := adminDo(t, r, http.MethodGet, "/metrics", nil)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "outpost_http_idle_timeouts_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatal("outpost_http_idle_timeouts_total is not on /metrics")
	return 0
}

// rateLimited passes its reader's bytes at rate bytes per second.
type rateLimited struct {
	r     io.Reader
	rate  float64
	start time.Time
	n     int64
}

func (l *rateLimited) Read(p []byte) (int, error) {
	if l.start.IsZero() {
		l.start = time.Now()
	}
	n, err := l.r.Read(p[:min(len(p), 64<<10)])
	l.n += int64(n)
	time.Sleep(time.Until(l.start.Add(time.Duration(float64(l.n) / l.rate * float64(time.Second)))))
	return n, err
}

// TestIdleTimeout runs the binary over HTTPS with limits.idleTimeout 5s:
// an upload stalled after 100 bytes and a download whose client stopped
// reading are cut off within the timeout, while a 100 MB upload and a
// 100 MB download at 1 MB/s complete intact (about 100 s, both at once).
func TestIdleTimeout(t *testing.T) {
	requireE2E(t)
	cfg := filepath.Join(t.TempDir(), "outpost.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 1\nlimits:\n  idleTimeout: %s\n", e2eIdle)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startOutpost(t, "--config", cfg)
	blob := make([]byte, 100<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(blob)
	d := "sha256:" + hex.EncodeToString(sum[:])
	if resp, b := adminDo(t, r, http.MethodPost, "/v2/idle/app/blobs/uploads/?digest="+d, bytes.NewReader(blob)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("push blob: %d %s", resp.StatusCode, b)
	}

	t.Run("stalled upload", func(t *testing.T) {
		resp, b := adminDo(t, r, http.MethodPost, "/v2/idle/stall/blobs/uploads/", nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %d %s", resp.StatusCode, b)
		}
		c := rawTLS(t, r, http.MethodPatch, resp.Header.Get("Location"), "Content-Type: application/octet-stream\r\nContent-Length: 104857600\r\n")
		start := time.Now()
		if _, err := c.Write(bytes.Repeat([]byte{'x'}, 100)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		answer, err := io.ReadAll(c)
		elapsed := time.Since(start)
		if err != nil || elapsed > e2eIdle+5*time.Second {
			t.Fatalf("stalled upload: closed after %s (%v), want within about %s; answer %q", elapsed.Round(time.Millisecond), err, e2eIdle, answer)
		}
		if !bytes.Contains(answer, []byte("BLOB_UPLOAD_INVALID")) {
			t.Errorf("stalled upload answered %q, want BLOB_UPLOAD_INVALID", answer)
		}
	})

	t.Run("stalled reader", func(t *testing.T) {
		before := idleTimeouts(t, r)
		c := rawTLS(t, r, http.MethodGet, "/v2/idle/app/blobs/"+d, "")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET blob: %v %v", resp, err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for idleTimeouts(t, r) <= before {
			if time.Since(start) > 2*e2eIdle+10*time.Second {
				t.Fatalf("no idle timeout %s after the client stopped reading", time.Since(start).Round(time.Millisecond))
			}
			time.Sleep(200 * time.Millisecond)
		}
		// Blobs are written in 1 MiB steps, each with its own deadline: the
		// step that began while the kernel's buffers still took bytes runs
		// out first, so a stall is cut within two deadlines at most (a
		// loaded machine shows the second; before the deadlines it was
		// never cut).
		if elapsed := time.Since(start); elapsed > 2*e2eIdle+5*time.Second {
			t.Errorf("stalled reader cut off after %s, want within about two idle deadlines (%s)", elapsed.Round(time.Millisecond), 2*e2eIdle)
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		rest, err := io.Copy(io.Discard, resp.Body)
		if got := 1<<20 + rest; got >= int64(len(blob)) || err == nil {
			t.Errorf("after the stall the client read %d of %d bytes (err %v), want the connection cut short", got, len(blob), err)
		}
	})

	t.Run("1 MB/s", func(t *testing.T) {
		t.Run("upload", func(t *testing.T) {
			t.Parallel()
			resp, b := adminDo(t, r, http.MethodPost, "/v2/idle/slow/blobs/uploads/", nil)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("start upload: %d %s", resp.StatusCode, b)
			}
			loc := resp.Header.Get("Location")
			resp, b = adminDo(t, r, http.MethodPatch, loc, &rateLimited{r: bytes.NewReader(blob), rate: 1e6})
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("1 MB/s PATCH of %d bytes: %d %s", len(blob), resp.StatusCode, b)
			}
			if resp, b = adminDo(t, r, http.MethodPut, loc+"?digest="+d, nil); resp.StatusCode != http.StatusCreated {
				t.Fatalf("close upload: %d %s", resp.StatusCode, b)
			}
		})
		t.Run("download", func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodGet, r.url+"/v2/idle/app/blobs/"+d, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("admin", adminPassword)
			client := *r.http
			client.Timeout = 10 * time.Minute
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, &rateLimited{r: resp.Body, rate: 1e6})
			if err != nil || n != int64(len(blob)) || "sha256:"+hex.EncodeToString(h.Sum(nil)) != d {
				t.Fatalf("1 MB/s download: %d of %d bytes, err %v", n, len(blob), err)
			}
		})
	})
}
