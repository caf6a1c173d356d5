package registryapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// sendTruncated writes a request that announces length body bytes but
// sends only body, then closes its side of the connection, as a client
// that dies mid-upload does. It returns the status the server answered
// once it had handled the request, and the OCI error code.
func (r *registry) sendTruncated(method, path, contentType string, length int, body []byte) (int, string) {
	r.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		r.t.Fatal(err)
	}
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: registry\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", method, path, contentType, length)
	if _, err := conn.Write(body); err != nil {
		r.t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		r.t.Fatalf("%s %s cut short: read response: %v", method, path, err)
	}
	defer resp.Body.Close()
	var eb struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || len(eb.Errors) != 1 {
		r.t.Fatalf("%s %s cut short: status %d, error body: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, eb.Errors[0].Code
}

// TestNeverPartial cuts uploads short and pushes manifests under digests
// they do not have: nothing incomplete or unverified is ever served.
func TestNeverPartial(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte(strings.Repeat("layer content ", 1000))
	d := digest.FromBytes(data)

	// A monolithic blob upload, the closing PUT of a chunked upload and a
	// manifest PUT, each cut in the middle.
	loc := r.startSession("lib/app")
	r.want(http.StatusAccepted, http.MethodPatch, loc, chunk(0, data[:100]), data[:100])
	body := r.pushImage("lib/app", "a", "layer").body()
	md := digest.FromBytes(body)
	for _, c := range []struct {
		method, path, contentType string
		length                    int
		sent                      []byte
		code                      string
	}{
		{http.MethodPost, "/v2/lib/app/blobs/uploads/?digest=" + string(d), "application/octet-stream", len(data), data[:len(data)/2], "BLOB_UPLOAD_INVALID"},
		{http.MethodPut, loc + "?digest=" + string(d), "application/octet-stream", len(data) - 100, data[100:200], "BLOB_UPLOAD_INVALID"},
		{http.MethodPut, "/v2/lib/app/manifests/v1", manifestType.Get("Content-Type"), len(body), body[:len(body)-10], "MANIFEST_INVALID"},
	} {
		// A client that stops sending is a client error, not a server
		// failure to log for an operator.
		status, code := r.sendTruncated(c.method, c.path, c.contentType, c.length, c.sent)
		if status != http.StatusBadRequest || code != c.code {
			t.Errorf("%s %s cut short: %d %s, want 400 %s", c.method, c.path, status, code, c.code)
		}
	}
	r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", http.MethodGet, "/v2/lib/app/blobs/"+string(d), nil, nil)
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/v1", nil, nil)
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/"+string(md), nil, nil)

	// A manifest body that does not match the digest in the URL.
	other := r.pushImage("lib/app", "b").body()
	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodPut, "/v2/lib/app/manifests/"+string(md), manifestType, other)
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/"+string(md), nil, nil)
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/"+string(digest.FromBytes(other)), nil, nil)

	// The whole content, sent again, is accepted.
	r.pushBlob("lib/app", data)
	r.pushManifest("lib/app", string(md), body)
}

// TestConcurrentPushes pushes the same layer to several repositories and
// moves one tag from several clients at once.
func TestConcurrentPushes(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte(strings.Repeat("shared base layer ", 5000))
	d := digest.FromBytes(data)
	const n = 6
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, _ := r.do(http.MethodPost, fmt.Sprintf("/v2/lib/r%d/blobs/uploads/?digest=%s", i, d), octets, data)
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusCreated {
			t.Fatalf("push %d: status %d, want 201", i, s)
		}
		if _, b := r.want(http.StatusOK, http.MethodGet, fmt.Sprintf("/v2/lib/r%d/blobs/%s", i, d), nil, nil); string(b) != string(data) {
			t.Fatalf("blob in lib/r%d: %d bytes, want %d", i, len(b), len(data))
		}
	}

	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = r.pushImage("lib/app", fmt.Sprint(i)).body()
	}
	for i := range n {
		wg.Go(func() {
			resp, _ := r.do(http.MethodPut, "/v2/lib/app/manifests/latest", manifestType, bodies[i])
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusCreated {
			t.Fatalf("manifest push %d: status %d, want 201", i, s)
		}
	}
	resp, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/manifests/latest", nil, nil)
	if got := resp.Header.Get("Docker-Content-Digest"); got != string(digest.FromBytes(b)) {
		t.Fatalf("latest: Docker-Content-Digest %s, body digest %s", got, digest.FromBytes(b))
	}
	found := false
	for _, body := range bodies {
		found = found || string(body) == string(b)
	}
	if !found {
		t.Errorf("latest = %s, not one of the pushed manifests", b)
	}
}
