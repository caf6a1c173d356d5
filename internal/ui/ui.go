// Package ui serves the web dashboard under /ui/: the fleet of connected
// registries, one site, the repositories, the releases (staging jobs) and
// access (tokens and scope maps). Pages are html/template rendered on the
// server from the control plane, the catalog and the auth service, called
// in process; the assets (one stylesheet, htmx and a small script) are
// embedded. Sign-in takes the admin's or a token's credentials and keeps a
// server-side session; every state-changing form carries a CSRF token and
// passes Go's cross-origin protection; the Content-Security-Policy allows
// scripts and styles from the dashboard's own origin only. What a token
// sees follows its scope map. docs/dashboard.md describes the pages.
package ui

import (
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/catalog"
	"github.com/outpost-registry/outpost/internal/controlplane"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every dashboard response: nothing
// inline, nothing from another origin, no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Options are what the dashboard reads and changes.
type Options struct {
	Auth    *auth.Service
	Fleet   *controlplane.Service
	Catalog *catalog.Catalog
	// Version is this server's version, shown at the root of the tree.
	Version string
	// LoginServer is the host:port clients pull from (pull commands);
	// empty: the host the browser reached.
	LoginServer string
	// SessionTimeout ends a session idle this long (default 1h); a
	// session never outlives 12 hours.
	SessionTimeout time.Duration
	Logger         *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// UI is the dashboard handler.
type UI struct {
	o        Options
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
	static   http.Handler
	// assetVersion is a hash of the embedded assets, appended to their
	// URLs so that they can be cached for long.
	assetVersion string
	cop          *http.CrossOriginProtection
}

// New builds the dashboard.
func New(o Options) (*UI, error) {
	if o.Auth == nil || o.Fleet == nil || o.Catalog == nil {
		return nil, errors.New("dashboard: auth, fleet and catalog are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = time.Hour
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard assets: %w", err)
	}
	ver, err := hashFS(sub)
	if err != nil {
		return nil, err
	}
	u := &UI{o: o, mux: http.NewServeMux(), sessions: newSessions(o.SessionTimeout, o.Now), assetVersion: ver,
		static: http.StripPrefix(Prefix+"static/", http.FileServerFS(sub)), cop: http.NewCrossOriginProtection()}
	if u.pages, err = parsePages(u.funcs()); err != nil {
		return nil, err
	}
	u.routes()
	return u, nil
}

func (u *UI) routes() {
	u.mux.HandleFunc("GET /ui/{$}", u.home)
	u.mux.HandleFunc("GET /ui/static/", u.asset)
	u.mux.HandleFunc("GET /ui/login", u.loginPage)
	u.mux.HandleFunc("POST /ui/login", u.login)
	u.mux.HandleFunc("POST /ui/logout", u.signedIn(u.logout))
	u.mux.HandleFunc("GET /ui/fleet", u.admin(u.fleet))
	u.mux.HandleFunc("GET /ui/fleet/rows", u.admin(u.fleetRows))
	u.mux.HandleFunc("GET /ui/sites/{name}", u.admin(u.site))
	u.mux.HandleFunc("POST /ui/sites/{name}/resync", u.admin(u.resync))
	u.mux.HandleFunc("GET /ui/repositories", u.signedIn(u.repositories))
	u.mux.HandleFunc("GET /ui/repositories/{path...}", u.signedIn(u.repository))
	u.mux.HandleFunc("GET /ui/releases", u.admin(u.releases))
	u.mux.HandleFunc("GET /ui/releases/{name}", u.admin(u.release))
	u.mux.HandleFunc("GET /ui/releases/{name}/progress", u.admin(u.releaseProgress))
	u.mux.HandleFunc("POST /ui/releases/{name}/check", u.admin(u.checkRelease))
	u.mux.HandleFunc("GET /ui/access", u.admin(u.access))
	u.mux.HandleFunc("POST /ui/access/tokens", u.admin(u.createToken))
	u.mux.HandleFunc("POST /ui/access/tokens/{name}/status", u.admin(u.setTokenStatus))
	u.mux.HandleFunc("POST /ui/access/tokens/{name}/password", u.admin(u.regeneratePassword))
	u.mux.HandleFunc("POST /ui/access/scope-maps", u.admin(u.createScopeMap))
	u.mux.HandleFunc("/ui/", u.notFound)
}

// ServeHTTP sets the security headers, refuses cross-origin writes, and
// compresses the answer for clients that take gzip.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if err := u.cop.Check(r); err != nil {
		u.o.Logger.Warn("dashboard refused a cross-origin request", "method", r.Method, "path", r.URL.Path, "peer", r.RemoteAddr)
		u.fail(w, r, nil, http.StatusForbidden, "Cross-site request refused: the dashboard accepts changes only from its own pages.")
		return
	}
	// A range of a compressed answer would not be the range asked for.
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && r.Header.Get("Range") == "" {
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		w = gzipWriter{ResponseWriter: w, w: gz}
	}
	u.mux.ServeHTTP(w, r)
}

type gzipWriter struct {
	http.ResponseWriter
	w io.Writer
}

func (g gzipWriter) Write(b []byte) (int, error) { return g.w.Write(b) }

func (g gzipWriter) WriteHeader(status int) {
	g.ResponseWriter.Header().Del("Content-Length")
	g.ResponseWriter.WriteHeader(status)
}

func (u *UI) asset(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("v") == u.assetVersion {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	u.static.ServeHTTP(w, r)
}

func (u *UI) home(w http.ResponseWriter, r *http.Request) {
	s := u.sessions.get(r)
	switch {
	case s == nil:
		http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	case s.admin:
		http.Redirect(w, r, Prefix+"fleet", http.StatusSeeOther)
	default:
		http.Redirect(w, r, Prefix+"repositories", http.StatusSeeOther)
	}
}

func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	u.fail(w, r, u.sessions.get(r), http.StatusNotFound, "No such page.")
}

// hashFS hashes every file of fsys, for asset URLs.
func hashFS(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		_, _ = io.WriteString(h, p)
		_, _ = h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("dashboard assets: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
