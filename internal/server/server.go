// Package server assembles Outpost's HTTP server: storage, the registry
// API, health probes and metrics behind shared middleware, and its
// lifecycle from listen to graceful shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/catalog"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/importer"
	"github.com/outpost-registry/outpost/internal/logging"
	"github.com/outpost-registry/outpost/internal/pki"
	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/gc"
	"github.com/outpost-registry/outpost/internal/ui"
)

// Server is a running Outpost registry.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	meta     storage.Metadata
	engines  *engines
	identity *auth.Store
	edge     *edgeParts
	tls      *pki.Source
	metrics  *Metrics
	api      *registryapi.Handler
	scrub    *scrubber
	gc       *gcRunner
	pressure *pressure
	handler  http.Handler
	logLevel *logging.Level
}

// Option changes how New builds the server.
type Option func(*Server)

// WithLogLevel lets a connected registry apply the log level its parent
// configures, on every configuration refresh. Without it the level given
// at start stays.
func WithLogLevel(l *logging.Level) Option { return func(s *Server) { s.logLevel = l } }

// New opens the data directory and builds the handler tree. adminPassword,
// when not empty, sets the admin password (from OUTPOST_ADMIN_PASSWORD or
// the admin password file).
func New(cfg config.Config, log *slog.Logger, version, adminPassword string, opts ...Option) (*Server, error) {
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// The identity store and the auth service come first, so that the
	// start-up check of the admin password (a bcrypt) overlaps with the
	// rest of the start.
	//
	// A root on PostgreSQL keeps its identity and fleet records there,
	// shared by its replicas, so its engines open first.
	var eng *engines
	var identity *auth.Store
	var err error
	if cfg.Storage.Metadata.Type == config.MetadataPostgres {
		if eng, err = openEngines(context.Background(), cfg, log); err != nil {
			return nil, err
		}
		identity, err = auth.OpenShared(context.Background(), eng.records, log)
	} else {
		identity, err = auth.OpenStore(filepath.Join(cfg.Data, "identity.db"))
	}
	if err != nil {
		if eng != nil {
			_ = eng.meta.Close()
		}
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, identity: identity, meta: metaOf(eng)}
	for _, o := range opts {
		o(s)
	}
	written, startPassword, err := auth.BootstrapAdmin(identity, cfg.Data, adminPassword)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	if written != "" {
		log.Info("generated the admin password", "file", written, "user", auth.AdminUser)
	}
	authSvc, err := auth.NewService(identity, auth.Options{
		DataDir:       cfg.Data,
		AnonymousPull: cfg.Auth.AnonymousPull,
		TokenTTL:      time.Duration(cfg.Auth.TokenTTL),
		Logger:        log,
	})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	authSvc.PrimeAdmin(startPassword)
	go func() {
		if err := authSvc.RecheckAdmin(startPassword); err != nil {
			log.Error("admin password not updated", "err", err)
		}
	}()
	if eng == nil {
		if eng, err = openEngines(context.Background(), cfg, log); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	s.meta, s.engines = eng.meta, eng
	blobs, uploads, meta := eng.blobs, eng.uploads, eng.meta
	metrics := NewMetrics(version)
	s.metrics = metrics
	if eng.local != nil && eng.embedded != nil {
		// Before anything links blobs: the collector makes links check files.
		s.gc = newGCRunner(gc.New(eng.embedded, eng.local, log), cfg.GC, cfg.Data, log, metrics)
		eng.embedded.SetOnDelete(s.gc.deleted)
	} else {
		log.Info("garbage collection, retention and eviction are off: they need the embedded stores (storage.blobs fs and storage.metadata bolt)")
	}
	fleet := controlplane.NewService(identity)
	fleet.SetLoginServer(cfg.LoginServer)
	ep, err := newEdge(cfg, s, blobs, uploads, meta, version, fleet)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	s.edge = ep
	fixed, err := configPolicies(cfg.Retention)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	clock := &pullClock{}
	if s.gc != nil {
		s.gc.policies = &policies{fixed: fixed, store: identity}
		s.gc.protect = protection(ep, fleet)
		s.pressure = newPressure(cfg.Storage, eng.local, eng.embedded, s.gc, ep, clock, log, metrics)
	}
	if eng.local != nil {
		s.scrub = newScrubber(cfg.Data, eng.local, meta, ep, log)
		metrics.registerStorage(eng.local, s.scrub)
	}
	var fallback registryapi.Fallback
	z := authorizer{svc: authSvc}
	if ep != nil {
		fallback = ep.engine
		z.readOnly = ep.edge.ReadOnly
	}
	api, err := registryapi.New(registryapi.Options{
		Fallback: fallback,
		Blobs:    blobs,
		Uploads:  uploads,
		Metadata: meta,
		Redirect: cfg.Storage.Redirect,
		Limits: registryapi.Limits{
			ManifestMaxBytes: int64(cfg.Limits.ManifestMaxBytes),
			PageSizeMax:      cfg.Limits.PageSizeMax,

			UploadSessionsPerCredential: cfg.Limits.UploadSessionsPerCredential,
			UploadSessionsPerRepository: cfg.Limits.UploadSessionsPerRepository,
		},
		Logger:     log,
		Observer:   metrics,
		Pulls:      clock,
		Authorizer: z,
	})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	s.api = api
	if s.tls, err = newTLS(cfg, log); err != nil {
		_ = s.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/pki/ca.crt", s.caCert)
	mux.Handle("/oauth2/token", authSvc.TokenHandler())
	mgmt := adminapi.New(authSvc, log)
	mgmt.RegisterFleet(fleet, meta)
	writable := func() error {
		if z.readOnly != nil && z.readOnly() {
			return readOnlyDenial()
		}
		return nil
	}
	browser := catalog.New(authSvc, meta, blobs, writable)
	mgmt.RegisterRepositories(browser)
	if cfg.UIEnabled() {
		dash, err := ui.New(ui.Options{
			Auth: authSvc, Fleet: fleet, Catalog: browser,
			Version: version, LoginServer: cfg.LoginServer, SessionTimeout: time.Duration(cfg.UI.SessionTimeout), Logger: log,
		})
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		mux.Handle(ui.Prefix, dash)
		mux.Handle("GET /ui", http.RedirectHandler(ui.Prefix, http.StatusMovedPermanently))
	}
	mgmt.RegisterImports(importer.New(blobs, uploads, meta, log), writable)
	if eng.local != nil && eng.embedded != nil {
		// Bundles read and write the embedded stores directly.
		if err := registerBundles(mgmt, mux, cfg, eng.local, eng.embedded, log, ep, fleet); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	registerStatus(mgmt, ep)
	registerNodes(mgmt, authSvc, ep)
	if s.gc != nil {
		s.gc.register(mgmt)
		s.gc.registerUsage(mgmt, eng.embedded, eng.local, s.pressure)
		s.gc.policies.register(mgmt, s.gc)
	}
	mux.Handle("/api/v1/", mgmt)
	mux.Handle("/v2/", api)
	mux.Handle("/v2", api)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	var scrape http.Handler = promhttp.HandlerFor(metrics.Registry(), promhttp.HandlerOpts{})
	if cfg.MetricsAuthRequired() {
		scrape = requireCredentials(authSvc, scrape)
	}
	mux.Handle("GET /metrics", scrape)
	s.handler = idleDeadlines(instrument(exactPaths(mux, api), metrics, log, routeLabel),
		time.Duration(cfg.Limits.IdleTimeout), metrics.idleTimeouts.Inc)
	return s, nil
}

// routeLabel names a request's route for metrics without unbounded
// cardinality: API routes by endpoint kind, the rest by fixed names.
func routeLabel(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v2"):
		return registryapi.RouteLabel(p)
	case p == "/healthz" || p == "/readyz":
		return "probe"
	case p == "/metrics":
		return "metrics"
	case p == "/oauth2/token":
		return "token"
	case strings.HasPrefix(p, "/api/"):
		return "management"
	case strings.HasPrefix(p, "/ui/") || p == "/ui":
		return "dashboard"
	default:
		return "other"
	}
}

// Handler returns the server's root handler, for tests.
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases the stores.
func (s *Server) Close() error {
	// The identity store first: a shared one follows the metadata store's
	// database.
	err := s.identity.Close()
	if s.meta != nil {
		err = errors.Join(err, s.meta.Close())
	}
	return err
}

// metaOf is e's metadata store, nil before the engines are open.
func metaOf(e *engines) storage.Metadata {
	if e == nil {
		return nil
	}
	return e.meta
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.meta.Repositories(r.Context(), "", 1); err != nil {
		http.Error(w, "metadata store unavailable", http.StatusServiceUnavailable)
		return
	}
	if err := s.engines.check(r.Context()); err != nil {
		s.log.WarnContext(r.Context(), "readiness: a storage engine does not answer", "err", err)
		http.Error(w, "storage unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.writeReadiness(w, r)
}

// Serve accepts connections on ln until ctx is cancelled, then shuts down
// gracefully: new connections are refused and in-flight requests get
// ShutdownTimeout to finish. Client upload sessions stay on disk and
// resume after a restart, unless idle for limits.uploadMaxAge.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.purgeUploads(ctx, true)
	// The background loops write into the data directory: Serve returns
	// only once they have stopped.
	var loops sync.WaitGroup
	loops.Go(func() { s.purgeLoop(ctx) })
	if s.scrub != nil {
		loops.Go(func() { s.scrub.loop(ctx, scrubInterval(s.cfg)) })
	}
	if s.gc != nil {
		loops.Go(func() { s.gc.loop(ctx) })
		loops.Go(func() { s.gc.afterDeletes(ctx) })
		loops.Go(func() { s.pressure.loop(ctx) })
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState:         clearWriteDeadline,
	}
	// Counted before TLS, so that a refused connection costs no handshake.
	ln = limitConnections(ln, s.cfg.Limits.ConnectionsPerClient, s.log, s.metrics.connRefused.Inc)
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls.TLSConfig())
		loops.Go(func() { s.tls.Run(ctx) })
	} else {
		s.log.Warn("TLS is off: the registry serves plain HTTP; credentials and content cross the network in clear")
	}
	if s.cfg.DebugAddr != "" {
		go s.serveDebug(ctx)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	edgeDone := make(chan struct{})
	if s.edge != nil {
		go func() { defer close(edgeDone); _ = s.edge.edge.Run(ctx) }()
	} else {
		close(edgeDone)
	}
	s.log.Info("outpost serving", "addr", ln.Addr().String(), "data", s.cfg.Data, "tls", string(s.cfg.TLS.Mode))
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.cfg.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-edgeDone
	stopped := make(chan struct{})
	go func() { loops.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		s.log.Warn("background work still running at the end of the shutdown timeout", "timeout", s.cfg.ShutdownTimeout.String())
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// newTLS builds the certificate source of the configured TLS mode, or nil
// for plain HTTP.
func newTLS(cfg config.Config, log *slog.Logger) (*pki.Source, error) {
	switch cfg.TLS.Mode {
	case config.TLSOff:
		return nil, nil
	case config.TLSFiles:
		return pki.NewFiles(pki.FilesOptions{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, CAFile: cfg.TLS.CAFile, Logger: log})
	default:
		dir := cfg.TLS.CADir
		if dir == "" {
			dir = filepath.Join(cfg.Data, "pki")
		}
		return pki.NewAuto(pki.AutoOptions{Dir: dir, Hosts: cfg.TLS.Hosts, Lifetime: time.Duration(cfg.TLS.CertLifetime), Logger: log})
	}
}

// caCert serves the CA certificate clients should trust (public).
func (s *Server) caCert(w http.ResponseWriter, _ *http.Request) {
	if s.tls == nil || len(s.tls.CAPEM()) == 0 {
		http.Error(w, "no CA certificate: TLS is off or uses a certificate without a configured CA", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(s.tls.CAPEM())
}

// serveDebug serves pprof on the debug address until ctx ends.
func (s *Server) serveDebug(ctx context.Context) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: s.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	s.log.Info("pprof profiles served", "addr", s.cfg.DebugAddr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("debug listener", "err", err)
	}
}

// requireCredentials serves next only to a request with the Basic
// credentials of the admin or of any enabled token (a scrape credential:
// see docs/operations.md, "Monitoring").
func requireCredentials(svc *auth.Service, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := svc.AuthenticateBasic(r)
		if err == nil && p == nil {
			err = &auth.Denial{Status: http.StatusUnauthorized, Message: "/metrics needs credentials (metrics.auth)", Challenge: auth.BasicChallenge}
		}
		if err != nil {
			var d *auth.Denial
			if !errors.As(err, &d) {
				http.Error(w, "authentication failed", http.StatusInternalServerError)
				return
			}
			if d.Challenge != "" {
				w.Header().Set("WWW-Authenticate", d.Challenge)
			}
			if d.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(d.RetryAfter.Seconds()+0.5)))
			}
			http.Error(w, d.Message, d.Status)
			return
		}
		next.ServeHTTP(w, r)
	})
}
