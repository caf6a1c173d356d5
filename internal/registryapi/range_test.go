package registryapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage/memory"
)

var contentRangeCases = []struct {
	name          string
	header        string // "" leaves the header out
	contentLength int64
	want          int64
	wantErr       bool
}{
	{name: "absent", header: "", contentLength: 10, want: -1},
	{name: "absent, no length", header: "", contentLength: -1, want: -1},
	{name: "first chunk", header: "0-9", contentLength: 10, want: 0},
	{name: "later chunk", header: "10-19", contentLength: 10, want: 10},
	{name: "one byte", header: "5-5", contentLength: 1, want: 5},
	{name: "bytes space prefix", header: "bytes 0-9", contentLength: 10, want: 0},
	{name: "bytes= prefix", header: "bytes=20-29", contentLength: 10, want: 20},
	{name: "unknown length", header: "100-199", contentLength: -1, want: 100},
	{name: "largest offset", header: "9223372036854775806-9223372036854775806", contentLength: 1, want: 9223372036854775806},
	{name: "length mismatch", header: "0-9", contentLength: 5, wantErr: true},
	{name: "empty body", header: "0-0", contentLength: 0, wantErr: true},
	{name: "end before start", header: "10-9", contentLength: -1, wantErr: true},
	{name: "no dash", header: "10", contentLength: -1, wantErr: true},
	{name: "open end", header: "0-", contentLength: -1, wantErr: true},
	{name: "suffix form", header: "-10", contentLength: 10, wantErr: true},
	{name: "negative start", header: "-1-5", contentLength: -1, wantErr: true},
	{name: "total suffix", header: "bytes 0-9/10", contentLength: 10, wantErr: true},
	{name: "unsatisfied form", header: "bytes */10", contentLength: -1, wantErr: true},
	{name: "letters", header: "a-b", contentLength: -1, wantErr: true},
	{name: "spaces", header: "0 - 9", contentLength: 10, wantErr: true},
	{name: "two ranges", header: "0-4,5-9", contentLength: 10, wantErr: true},
	{name: "overflowing end", header: "0-9223372036854775808", contentLength: -1, wantErr: true},
	{name: "length overflow", header: "0-9223372036854775807", contentLength: 10, wantErr: true},
	{name: "other unit", header: "items 0-9", contentLength: 10, wantErr: true},
}

func contentRangeRequest(header string, contentLength int64) *http.Request {
	r := httptest.NewRequest(http.MethodPatch, "/v2/a/blobs/uploads/x", http.NoBody)
	if header != "" {
		r.Header.Set("Content-Range", header)
	}
	r.ContentLength = contentLength
	return r
}

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	for _, tc := range contentRangeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseContentRange(contentRangeRequest(tc.header, tc.contentLength))
			if tc.wantErr {
				var apiErr *Error
				if !errors.As(err, &apiErr) || apiErr.Code != CodeRangeInvalid || apiErr.HTTPStatus() != http.StatusRequestedRangeNotSatisfiable {
					t.Fatalf("Content-Range %q, length %d: got (%d, %v), want a RANGE_INVALID error with 416", tc.header, tc.contentLength, got, err)
				}
				if !strings.Contains(apiErr.Message, strconv.Quote(tc.header)) {
					t.Errorf("message %q does not quote the header %q", apiErr.Message, tc.header)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Content-Range %q, length %d: got (%d, %v), want %d", tc.header, tc.contentLength, got, err, tc.want)
			}
		})
	}
}

// FuzzContentRange checks that an accepted Content-Range names a range
// that starts at the returned offset, ends at or after it, and spans
// Content-Length bytes when that is known.
func FuzzContentRange(f *testing.F) {
	for _, tc := range contentRangeCases {
		f.Add(tc.header, tc.contentLength)
	}
	f.Fuzz(func(t *testing.T, header string, contentLength int64) {
		r := contentRangeRequest(header, contentLength)
		header = r.Header.Get("Content-Range") // as net/http stores it
		start, err := parseContentRange(r)
		if err != nil {
			var apiErr *Error
			if !errors.As(err, &apiErr) || apiErr.Code != CodeRangeInvalid {
				t.Fatalf("Content-Range %q: got %v, want RANGE_INVALID", header, err)
			}
			return
		}
		if header == "" {
			if start != -1 {
				t.Fatalf("no Content-Range: got %d, want -1", start)
			}
			return
		}
		if start < 0 {
			t.Fatalf("Content-Range %q: got start %d", header, start)
		}
		v := strings.TrimPrefix(strings.TrimPrefix(header, "bytes "), "bytes=")
		startS, endS, _ := strings.Cut(v, "-")
		s, err1 := strconv.ParseInt(startS, 10, 64)
		e, err2 := strconv.ParseInt(endS, 10, 64)
		if err1 != nil || err2 != nil || s != start || e < s {
			t.Fatalf("Content-Range %q accepted with start %d", header, start)
		}
		if contentLength >= 0 && e-s+1 != contentLength {
			t.Fatalf("Content-Range %q accepted with Content-Length %d", header, contentLength)
		}
		// The canonical form of the same range is accepted too.
		canonical := fmt.Sprintf("%d-%d", s, e)
		if again, err := parseContentRange(contentRangeRequest(canonical, contentLength)); err != nil || again != start {
			t.Fatalf("canonical %q: got (%d, %v), want %d", canonical, again, err, start)
		}
	})
}

// blobData is the content of the blob served by newBlobHandler.
var blobData = []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_0123456789abcdefghijklmnopqrstuvwxyz")

// newBlobHandler returns a Handler over a store in memory holding blobData
// in repository lib/app, and the blob's path.
func newBlobHandler(tb testing.TB) (*Handler, string) {
	tb.Helper()
	ctx := context.Background()
	st := memory.New()
	blobs, meta := st.Blobs, st.Metadata
	d := digest.FromBytes(blobData)
	id, err := blobs.StartUpload(ctx, "lib/app")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := blobs.AppendUpload(ctx, "lib/app", id, 0, bytes.NewReader(blobData)); err != nil {
		tb.Fatal(err)
	}
	size, err := blobs.CommitUpload(ctx, "lib/app", id, d)
	if err != nil {
		tb.Fatal(err)
	}
	if err := meta.LinkBlob(ctx, "lib/app", d, size); err != nil {
		tb.Fatal(err)
	}
	h, err := New(Options{Blobs: blobs, Uploads: blobs, Metadata: meta})
	if err != nil {
		tb.Fatal(err)
	}
	return h, "/v2/lib/app/blobs/" + string(d)
}

func getRange(h *Handler, path string, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, http.NoBody)
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestBlobRangeEdges covers the Range requests of a blob GET (spec §
// "Pulling blobs", RFC 9110 § 14) that clients resuming a download send:
// suffixes longer than the blob, ranges past its end, malformed ranges,
// several ranges, and If-Range.
func TestBlobRangeEdges(t *testing.T) {
	t.Parallel()
	h, path := newBlobHandler(t)
	etag := `"` + strings.TrimPrefix(path, "/v2/lib/app/blobs/") + `"`
	for _, tc := range []struct {
		name, rng, ifRange string
		status             int
		contentRange       string
		body               []byte
	}{
		{name: "no range", status: http.StatusOK, body: blobData},
		{name: "first byte", rng: "bytes=0-0", status: http.StatusPartialContent, contentRange: "bytes 0-0/100", body: blobData[:1]},
		{name: "last byte", rng: "bytes=99-99", status: http.StatusPartialContent, contentRange: "bytes 99-99/100", body: blobData[99:]},
		{name: "whole blob as range", rng: "bytes=0-99", status: http.StatusPartialContent, contentRange: "bytes 0-99/100", body: blobData},
		{name: "resume", rng: "bytes=64-", status: http.StatusPartialContent, contentRange: "bytes 64-99/100", body: blobData[64:]},
		{name: "suffix", rng: "bytes=-1", status: http.StatusPartialContent, contentRange: "bytes 99-99/100", body: blobData[99:]},
		{name: "suffix longer than blob", rng: "bytes=-500", status: http.StatusPartialContent, contentRange: "bytes 0-99/100", body: blobData},
		{name: "end past the blob", rng: "bytes=90-1000", status: http.StatusPartialContent, contentRange: "bytes 90-99/100", body: blobData[90:]},
		{name: "start at the end", rng: "bytes=100-", status: http.StatusRequestedRangeNotSatisfiable, contentRange: "bytes */100"},
		{name: "start past the end", rng: "bytes=1000-2000", status: http.StatusRequestedRangeNotSatisfiable, contentRange: "bytes */100"},
		// A malformed bytes range is refused naming the size, as a range
		// past the end is (RFC 9110 § 15.5.17).
		{name: "end before start", rng: "bytes=10-5", status: http.StatusRequestedRangeNotSatisfiable, contentRange: "bytes */100"},
		{name: "malformed", rng: "bytes=abc", status: http.StatusRequestedRangeNotSatisfiable, contentRange: "bytes */100"},
		{name: "negative start", rng: "bytes=-5-10", status: http.StatusRequestedRangeNotSatisfiable, contentRange: "bytes */100"},
		{name: "one malformed among good ones", rng: "bytes=0-1,x-2", status: http.StatusRequestedRangeNotSatisfiable, contentRange: "bytes */100"},
		// Another unit is ignored (RFC 9110 § 14.2); units are
		// case-insensitive.
		{name: "unknown unit", rng: "items=0-5", status: http.StatusOK, body: blobData},
		{name: "no unit", rng: "0-5", status: http.StatusOK, body: blobData},
		{name: "capitalised unit", rng: "Bytes=0-0", status: http.StatusPartialContent, contentRange: "bytes 0-0/100", body: blobData[:1]},
		{name: "malformed range, stale If-Range", rng: "bytes=abc", ifRange: `"sha256:0000"`, status: http.StatusOK, body: blobData},
		{name: "zero suffix is ignored", rng: "bytes=-0", status: http.StatusOK, body: blobData},
		{name: "zero suffix among others is ignored", rng: "bytes=0-1, -0", status: http.StatusOK, body: blobData},
		{name: "matching If-Range", rng: "bytes=10-19", ifRange: etag, status: http.StatusPartialContent, contentRange: "bytes 10-19/100", body: blobData[10:20]},
		{name: "stale If-Range", rng: "bytes=10-19", ifRange: `"sha256:0000"`, status: http.StatusOK, body: blobData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hdr := http.Header{}
			if tc.rng != "" {
				hdr.Set("Range", tc.rng)
			}
			if tc.ifRange != "" {
				hdr.Set("If-Range", tc.ifRange)
			}
			rec := getRange(h, path, hdr)
			if rec.Code != tc.status {
				t.Fatalf("Range %q: got status %d, want %d", tc.rng, rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Range"); got != tc.contentRange {
				t.Errorf("Range %q: got Content-Range %q, want %q", tc.rng, got, tc.contentRange)
			}
			if tc.status == http.StatusRequestedRangeNotSatisfiable {
				wantRangeError(t, tc.rng, rec)
				return
			}
			if !bytes.Equal(rec.Body.Bytes(), tc.body) {
				t.Errorf("Range %q: got body %q, want %q", tc.rng, rec.Body.Bytes(), tc.body)
			}
			if got := rec.Header().Get("Accept-Ranges"); got != "bytes" {
				t.Errorf("Range %q: got Accept-Ranges %q, want bytes", tc.rng, got)
			}
		})
	}

	t.Run("several ranges", func(t *testing.T) {
		t.Parallel()
		rec := getRange(h, path, http.Header{"Range": {"bytes=0-1,98-"}})
		if rec.Code != http.StatusPartialContent {
			t.Fatalf("got status %d, want 206", rec.Code)
		}
		parts := readParts(t, rec)
		want := []string{"bytes 0-1/100:01", "bytes 98-99/100:yz"}
		if fmt.Sprint(parts) != fmt.Sprint(want) {
			t.Errorf("got parts %q, want %q", parts, want)
		}
	})
}

// wantRangeError checks that a 416 carries one OCI RANGE_INVALID error
// and none of the blob's caching headers.
func wantRangeError(t *testing.T, rng string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Range %q: 416 with Content-Type %q, want application/json", rng, ct)
	}
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != string(CodeRangeInvalid) || body.Errors[0].Message == "" {
		t.Errorf("Range %q: 416 body %q (%v), want one RANGE_INVALID error with a message", rng, rec.Body.Bytes(), err)
	}
	if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(rec.Body.Len()) {
		t.Errorf("Range %q: 416 Content-Length %q for %d bytes", rng, got, rec.Body.Len())
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "" {
		t.Errorf("Range %q: 416 with Cache-Control %q", rng, cc)
	}
}

func TestEmptySuffixRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		size   int64
		want   bool
	}{
		{"", 100, false},
		{"bytes=-0", 100, true},
		{"bytes=-00", 100, true},
		{"bytes= - 0 ", 100, true},
		{"bytes=0-1,-0", 100, true},
		{"bytes=-1", 0, true},
		{"bytes=-1", 100, false},
		{"bytes=0-", 0, false},
		{"bytes=0-0", 100, false},
		{"bytes=10-0", 100, false},
		{"bytes=-", 100, false},
		{"bytes=-x", 100, false},
		{"items=-0", 100, false},
		{"Bytes=-0", 100, false},
	} {
		if got := emptySuffixRange(tc.header, tc.size); got != tc.want {
			t.Errorf("emptySuffixRange(%q, %d): got %v, want %v", tc.header, tc.size, got, tc.want)
		}
	}
}

// readParts returns the parts of a multipart/byteranges response as
// "<Content-Range>:<body>".
func readParts(tb testing.TB, rec *httptest.ResponseRecorder) []string {
	tb.Helper()
	mt, params, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		tb.Fatalf("got Content-Type %q (%v), want multipart/byteranges", rec.Header().Get("Content-Type"), err)
	}
	var parts []string
	mr := multipart.NewReader(bytes.NewReader(rec.Body.Bytes()), params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return parts
		}
		if err != nil {
			tb.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			tb.Fatal(err)
		}
		parts = append(parts, p.Header.Get("Content-Range")+":"+string(b))
	}
}

// FuzzRange sends arbitrary Range headers to a blob GET and checks the
// answer: the whole blob (200), exactly the bytes its Content-Range names
// (206, one range or several), or 416 naming the blob's size with an OCI
// error body.
func FuzzRange(f *testing.F) {
	for _, s := range []string{"", "bytes=0-0", "bytes=64-", "bytes=-1", "bytes=-500", "bytes=90-1000", "bytes=100-",
		"bytes=10-5", "bytes=abc", "items=0-5", "bytes=0-1,98-", "bytes=0-1,1-2,50-", "bytes= 1 - 2 ", "bytes=99-99,-1", "bytes=-0"} {
		f.Add(s)
	}
	h, path := newBlobHandler(f)
	size := int64(len(blobData))
	f.Fuzz(func(t *testing.T, rng string) {
		rec := getRange(h, path, http.Header{"Range": {rng}})
		switch rec.Code {
		case http.StatusOK:
			if !bytes.Equal(rec.Body.Bytes(), blobData) {
				t.Fatalf("Range %q: 200 with %d bytes", rng, rec.Body.Len())
			}
		case http.StatusRequestedRangeNotSatisfiable:
			if got := rec.Header().Get("Content-Range"); got != "bytes */100" {
				t.Fatalf("Range %q: 416 with Content-Range %q, want bytes */100", rng, got)
			}
			wantRangeError(t, rng, rec)
		case http.StatusPartialContent:
			if cr := rec.Header().Get("Content-Range"); cr != "" {
				checkPart(t, rng, cr, rec.Body.Bytes(), size)
				return
			}
			mt, params, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
			if err != nil || mt != "multipart/byteranges" {
				t.Fatalf("Range %q: 206 without Content-Range, Content-Type %q", rng, rec.Header().Get("Content-Type"))
			}
			mr := multipart.NewReader(bytes.NewReader(rec.Body.Bytes()), params["boundary"])
			for {
				p, err := mr.NextPart()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("Range %q: %v", rng, err)
				}
				b, err := io.ReadAll(p)
				if err != nil {
					t.Fatal(err)
				}
				checkPart(t, rng, p.Header.Get("Content-Range"), b, size)
			}
		default:
			t.Fatalf("Range %q: status %d", rng, rec.Code)
		}
	})
}

// checkPart checks that body is the bytes of the blob that contentRange
// ("bytes a-b/size") names.
func checkPart(t *testing.T, rng, contentRange string, body []byte, size int64) {
	t.Helper()
	var a, b, total int64
	if _, err := fmt.Sscanf(contentRange, "bytes %d-%d/%d", &a, &b, &total); err != nil {
		t.Fatalf("Range %q: Content-Range %q: %v", rng, contentRange, err)
	}
	if total != size || a < 0 || b < a || b >= size {
		t.Fatalf("Range %q: Content-Range %q out of bounds", rng, contentRange)
	}
	if !bytes.Equal(body, blobData[a:b+1]) {
		t.Fatalf("Range %q: Content-Range %q with body %q", rng, contentRange, body)
	}
}

func BenchmarkBlobRange(b *testing.B) {
	h, path := newBlobHandler(b)
	hdr := http.Header{"Range": {"bytes=10-19"}}
	b.ReportAllocs()
	for b.Loop() {
		if rec := getRange(h, path, hdr); rec.Code != http.StatusPartialContent {
			b.Fatalf("got status %d", rec.Code)
		}
	}
}
