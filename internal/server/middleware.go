package server

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-registry/outpost/internal/registryapi"
)

// statusWriter records the status and body size of a response. It keeps
// io.ReaderFrom so that blob responses still reach sendfile(2).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy use the connection's sendfile path.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		n, err := io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
		w.bytes += n
		return n, err
	}
	n, err := rf.ReadFrom(r)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts request body bytes.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// instrument wraps h with recovery, metrics and the request log. label
// names the route of a request for metrics; probes are not logged.
func instrument(h http.Handler, m *Metrics, log *slog.Logger, label func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		body := &countingBody{ReadCloser: r.Body}
		r.Body = body
		m.inFlight.Inc()
		route := label(r)
		defer func() {
			m.inFlight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(r.Context(), "handler panic", "method", r.Method, "path", r.URL.Path, "panic", p)
				if sw.status == 0 {
					registryapi.WriteInternalError(sw, r)
				}
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			elapsed := time.Since(start)
			code := strconv.Itoa(sw.status)
			m.requests.WithLabelValues(r.Method, route, code).Inc()
			m.latency.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
			if body.n > 0 {
				m.bytesIn.WithLabelValues(route).Add(float64(body.n))
			}
			if sw.bytes > 0 {
				m.bytesOut.WithLabelValues(route).Add(float64(sw.bytes))
			}
			if route == "probe" || !log.Enabled(r.Context(), slog.LevelDebug) {
				return
			}
			log.LogAttrs(r.Context(), slog.LevelDebug, "request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", route),
				slog.Int("status", sw.status),
				slog.Int64("bytes_in", body.n),
				slog.Int64("bytes_out", sw.bytes),
				slog.Duration("duration", elapsed),
				slog.String("peer", r.RemoteAddr),
			)
		}()
		h.ServeHTTP(sw, r)
	})
}
