package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// FileServer serves a generated dataset read-only with just enough of the
// OCI pull API for the pull workload: manifests from memory, blobs as
// files through http.ServeContent, which hands the *os.File to
// sendfile(2). It has no authentication, metadata store or logging, so
// its throughput is the loopback limit for the same blobs.
type FileServer struct {
	dir       string
	manifests map[string]*Manifest // "<repo>\x00<tag or digest>"
}

// NewFileServer loads the dataset in dir.
func NewFileServer(dir string) (*FileServer, error) {
	ds, err := LoadDataset(dir)
	if err != nil {
		return nil, err
	}
	s := &FileServer{dir: dir, manifests: map[string]*Manifest{}}
	for _, list := range [][]Manifest{ds.Images, ds.Indexes} {
		for i := range list {
			m := &list[i]
			s.manifests[m.Repo+"\x00"+m.Tag] = m
			s.manifests[m.Repo+"\x00"+m.Digest] = m
		}
	}
	return s, nil
}

func (s *FileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/v2/" || p == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	if i := strings.LastIndex(p, "/blobs/"); i > len("/v2") {
		s.blob(w, r, p[i+len("/blobs/"):])
		return
	}
	if i := strings.LastIndex(p, "/manifests/"); i > len("/v2") {
		m, ok := s.manifests[p[len("/v2/"):i]+"\x00"+p[i+len("/manifests/"):]]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", m.MediaType)
		h.Set("Docker-Content-Digest", m.Digest)
		h.Set("Content-Length", strconv.Itoa(len(m.Body)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(m.Body)
		}
		return
	}
	http.NotFound(w, r)
}

func (s *FileServer) blob(w http.ResponseWriter, r *http.Request, digest string) {
	if !validDigest(digest) {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(BlobPath(s.dir, digest))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer func() { _ = f.Close() }()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", digest)
	http.ServeContent(w, r, "", time.Time{}, f)
}

func validDigest(d string) bool {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != 64 {
		return false
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ServeFiles runs a FileServer for dir on addr until ctx ends.
func ServeFiles(ctx context.Context, addr, dir string) error {
	h, err := NewFileServer(dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
