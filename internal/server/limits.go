package server

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// sendChunk is how much of a file response goes to sendfile(2) under one
// write deadline. A response that moves less than sendChunk per idle
// timeout (17 KiB/s at the default 60 s) counts as stalled.
const sendChunk = 1 << 20

// idleDeadlines closes a connection whose request body or response makes
// no progress for idle: each read of the body and each write of the
// response (each sendChunk of a file) sets the connection's deadline to
// idle from then, through http.ResponseController. A slow transfer that
// keeps moving survives whatever its length; a stalled one fails its next
// read or write and the server closes the connection. Requests that read
// no body and write nothing yet (a handler waiting on the parent) are not
// limited. timeouts counts the reads and writes cut short. A zero idle
// (a configuration without defaults) sets no deadline.
func idleDeadlines(h http.Handler, idle time.Duration, timeouts func()) http.Handler {
	if idle <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// The previous request of a kept-alive connection left its
		// write deadline behind.
		_ = rc.SetWriteDeadline(time.Time{})
		iw := &idleWriter{ResponseWriter: w, rc: rc, idle: idle, timeouts: timeouts}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &idleBody{ReadCloser: r.Body, rc: rc, idle: idle, timeouts: timeouts}
		}
		h.ServeHTTP(iw, r)
		// The server writes what the handler left buffered after it
		// returns.
		iw.extend()
	})
}

// isTimeout reports a deadline that expired.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// idleBody extends the read deadline before each read of a request body.
type idleBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	idle     time.Duration
	timeouts func()
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		// The server's own read that follows a complete body (watching
		// for the client going away) must not inherit the deadline.
		_ = b.rc.SetReadDeadline(time.Time{})
	case isTimeout(err):
		b.timeouts()
	}
	// Other errors keep the deadline: the server gives up on the
	// connection instead of waiting on it again.
	return n, err
}

// idleWriter extends the write deadline before each write of a response.
// It keeps io.ReaderFrom so that blob responses still reach sendfile(2),
// in chunks of sendChunk.
type idleWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	idle     time.Duration
	timeouts func()
}

func (w *idleWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.idle)) }

func (w *idleWriter) check(err error) error {
	if isTimeout(err) {
		w.timeouts()
	}
	return err
}

func (w *idleWriter) Write(b []byte) (int, error) {
	w.extend()
	n, err := w.ResponseWriter.Write(b)
	return n, w.check(err)
}

// ReadFrom sends src in chunks of sendChunk, each with a fresh deadline.
// A file, or a file under an io.LimitedReader (what io.CopyN and
// http.ServeContent pass), is cut into io.LimitedReaders of the file
// itself, the one form sendfile accepts besides the bare file.
func (w *idleWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	outer, limited := src.(*io.LimitedReader)
	inner := src
	if limited {
		inner = outer.R
	}
	var total int64
	for !limited || outer.N > 0 {
		n := int64(sendChunk)
		if limited {
			n = min(n, outer.N)
		}
		w.extend()
		got, err := rf.ReadFrom(&io.LimitedReader{R: inner, N: n})
		total += got
		if limited {
			outer.N -= got
		}
		if err != nil || got < n {
			return total, w.check(err)
		}
	}
	return total, nil
}

func (w *idleWriter) Flush() {
	w.extend()
	_ = w.check(w.rc.Flush())
}

func (w *idleWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.rc.Hijack() }

func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// clearWriteDeadline is the server's ConnState hook: a connection waiting
// for its next request drops the write deadline of the last response, so
// that an answer the server writes itself (such as 431 for headers too
// large) does not fail on it.
func clearWriteDeadline(c net.Conn, st http.ConnState) {
	if st == http.StateIdle {
		_ = c.SetWriteDeadline(time.Time{})
	}
}

// connLimiter caps the open connections of each client IP address. A
// connection beyond the cap is closed as soon as it is accepted, before
// any TLS handshake or request is read: answering 429 would mean reading
// a request on each of them, which is what a flood of idle connections
// costs. Clients see the connection close and retry later.
type connLimiter struct {
	net.Listener
	max     int
	log     *slog.Logger
	refused func()

	mu      sync.Mutex
	open    map[string]int
	lastLog time.Time
}

// limitConnections caps ln at perClient connections per client address;
// zero or less (a configuration without defaults) sets no cap.
func limitConnections(ln net.Listener, perClient int, log *slog.Logger, refused func()) net.Listener {
	if perClient <= 0 {
		return ln
	}
	return &connLimiter{Listener: ln, max: perClient, log: log, refused: refused, open: map[string]int{}}
}

// Accept returns the next connection within its client's cap, closing
// those beyond it.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientIP(c.RemoteAddr())
		if l.take(ip) {
			return &limitedConn{Conn: c, release: func() { l.release(ip) }}, nil
		}
		_ = c.Close()
		l.refused()
	}
}

func (l *connLimiter) take(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] >= l.max {
		if now := time.Now(); now.Sub(l.lastLog) >= time.Minute {
			l.lastLog = now
			l.log.Warn("refusing connections beyond limits.connectionsPerClient", "peer", ip, "limit", l.max)
		}
		return false
	}
	l.open[ip]++
	return true
}

func (l *connLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}

func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitedConn gives its client's place back when closed. It keeps the
// TCP connection's ReadFrom (sendfile) and CloseWrite, which net/http
// looks for.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
