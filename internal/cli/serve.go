package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/logging"
	"github.com/outpost-registry/outpost/internal/server"
)

// serveOptions are the flags of `outpost serve`; each overrides the
// config file's value when given.
type serveOptions struct {
	// levelPinned is set once load has seen a log level given locally
	// (flag or file): the parent's configured level then does not apply.
	levelPinned bool
	// warnings found while loading, logged once the logger exists.
	warnings   []string
	configFile string
	addr       string
	data       string
	logLevel   string
	logFormat  string
	anonPull   bool
	adminFile  string

	connString     string
	connStringFile string
	parentURL      string
	parentUser     string
	parentPassFile string
	parentCAFile   string
	repos          []string
	realmHosts     []string
	mode           string
	syncSchedule   string
	syncWindow     string
	syncConc       int
	prePullNodes   int
	syncBandwidth  string
	heartbeat      string
	loginServer    string

	tlsMode     string
	tlsHosts    []string
	tlsCert     string
	tlsKey      string
	tlsCA       string
	tlsLifetime string
	tlsCADir    string
	debugAddr   string
	ui          bool
}

func (o *serveOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.configFile, "config", "", "YAML config file (see docs/configuration.md)")
	fs.StringVar(&o.addr, "addr", ":5000", "listening address, host:port")
	fs.StringVar(&o.data, "data", "./outpost-data", "data directory: blobs, uploads and the metadata database")
	fs.StringVar(&o.logLevel, "log-level", "Information", "log level: Debug, Information, Warning, Error or None")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.BoolVar(&o.anonPull, "anonymous-pull", false, "let clients without credentials pull and list")
	fs.StringVar(&o.adminFile, "admin-password-file", "", "file holding the admin password (or set OUTPOST_ADMIN_PASSWORD); generated into <data>/admin-password when neither is given")
	fs.StringVar(&o.connString, "connection-string", "", "run as a connected registry of the parent this connection string names (or OUTPOST_CONNECTION_STRING)")
	fs.StringVar(&o.connStringFile, "connection-string-file", "", "file holding the connection string")
	fs.StringVar(&o.parentURL, "parent", "", "URL of a generic (non-Outpost) parent registry to sync from, e.g. https://registry.example.com")
	fs.StringVar(&o.parentUser, "parent-username", "", "user name for the generic parent")
	fs.StringVar(&o.parentPassFile, "parent-password-file", "", "file holding the generic parent's password")
	fs.StringVar(&o.parentCAFile, "parent-ca-file", "", "CA certificate to trust for an HTTPS parent, in addition to the system roots")
	fs.StringArrayVar(&o.realmHosts, "parent-token-realm-host", nil, "host or host:port, besides the parent's own origin, that may receive the parent credentials as its Bearer token realm (repeatable; e.g. auth.docker.io)")
	listFlag(fs, &o.repos, listNames, "repository", "repositories to sync from a generic parent")
	fs.StringVar(&o.mode, "mode", "", "mode with a generic parent: ReadOnly or ReadWrite (default ReadOnly)")
	fs.StringVar(&o.syncSchedule, "sync-schedule", "", "cron schedule of sync runs with a generic parent (default * * * * *)")
	fs.StringVar(&o.syncWindow, "sync-window", "", "ISO 8601 duration a run may last with a generic parent (default: continuous)")
	fs.IntVar(&o.syncConc, "sync-concurrency", 4, "blobs downloaded at once")
	fs.IntVar(&o.prePullNodes, "pre-pull-nodes", 10, "node agents that may pull a pre-pull job from this registry at once")
	fs.StringVar(&o.syncBandwidth, "sync-bandwidth-limit", "0", "download bytes per second, e.g. 10MiB (0: unlimited)")
	fs.StringVar(&o.heartbeat, "heartbeat-interval", "30s", "how often a connected registry reports its status")
	fs.StringVar(&o.loginServer, "login-server", "", "host:port clients use: reported to the parent, and the parent endpoint of the connection strings this registry hands out (default: from --addr; for connection strings, the address the request reached)")
	fs.StringVar(&o.tlsMode, "tls-mode", "auto", "auto (built-in CA issues and renews the certificate), files (--tls-cert/--tls-key) or off (plain HTTP)")
	fs.StringArrayVar(&o.tlsHosts, "tls-host", nil, "DNS name or IP of the auto-mode certificate (repeatable; default: hostname, localhost, 127.0.0.1, ::1)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "certificate file (files mode), reloaded when it changes")
	fs.StringVar(&o.tlsKey, "tls-key", "", "key file (files mode), reloaded when it changes")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "CA certificate published at /api/v1/pki/ca.crt (files mode)")
	fs.StringVar(&o.tlsCADir, "tls-ca-dir", "", "directory of the auto-mode CA, ca.crt and ca.key (default <data>/pki; created on first start unless both exist)")
	fs.StringVar(&o.tlsLifetime, "tls-cert-lifetime", "", "lifetime of auto-mode certificates (default 2160h); for testing renewal")
	_ = fs.MarkHidden("tls-cert-lifetime")
	fs.BoolVar(&o.ui, "ui", true, "serve the web dashboard at /ui/ (config ui.enabled; docs/dashboard.md)")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "serve pprof profiles on this address, e.g. 127.0.0.1:6060 (off by default)")
}

// load builds the effective configuration: file, then flags, then defaults.
func (o *serveOptions) load(fs *pflag.FlagSet) (config.Config, error) {
	var cfg config.Config
	if o.configFile != "" {
		var err error
		if cfg, err = config.LoadFile(o.configFile); err != nil {
			return cfg, err
		}
	}
	if fs.Changed("addr") {
		cfg.Addr = o.addr
	}
	if fs.Changed("data") {
		cfg.Data = o.data
	}
	if fs.Changed("log-level") {
		if err := cfg.Log.Level.UnmarshalText([]byte(o.logLevel)); err != nil {
			return cfg, fmt.Errorf("--log-level: %w", err)
		}
	}
	if fs.Changed("log-format") {
		if err := cfg.Log.Format.UnmarshalText([]byte(o.logFormat)); err != nil {
			return cfg, fmt.Errorf("--log-format: %w", err)
		}
	}
	o.levelPinned = cfg.Log.Level != ""
	if err := o.applyEdgeFlags(fs, &cfg); err != nil {
		return cfg, err
	}
	if fs.Changed("anonymous-pull") {
		cfg.Auth.AnonymousPull = o.anonPull
	}
	if fs.Changed("ui") {
		cfg.UI.Enabled = &o.ui
	}
	if fs.Changed("admin-password-file") {
		cfg.Auth.AdminPasswordFile = o.adminFile
	}
	cfg.ApplyDefaults()
	// serve and config validate share this: what validates also starts.
	if err := errors.Join(cfg.Validate(), server.CheckConfig(cfg)); err != nil {
		return cfg, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry",
		Long: `Run the Outpost registry.

With no flags it listens on :5000 and keeps its data in ./outpost-data.
The web dashboard is at /ui/ on the same listener (--ui=false turns it
off): sign in with the admin or a token, as with outpost login.
Flags override the values of the --config file. SIGINT or SIGTERM stop it
gracefully: in-flight requests finish, upload sessions resume after restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load(cmd.Flags())
			if err != nil {
				return err
			}
			log, level := logging.New(stderrWriter, cfg.Log.Level, cfg.Log.Format)
			for _, w := range o.warnings {
				log.Warn(w)
			}
			v, _ := Version()
			adminPassword, err := adminPassword(cfg)
			if err != nil {
				return err
			}
			var opts []server.Option
			if !o.levelPinned {
				opts = append(opts, server.WithLogLevel(level))
			}
			srv, err := server.New(cfg, log, v, adminPassword, opts...)
			if err != nil {
				return err
			}
			defer srv.Close()
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return srv.Serve(ctx, ln)
		},
	}
	o.bind(cmd.Flags())
	return cmd
}

// adminPassword reads the admin password from OUTPOST_ADMIN_PASSWORD or
// the configured file; empty means "generate one on first start".
func adminPassword(cfg config.Config) (string, error) {
	if v := os.Getenv("OUTPOST_ADMIN_PASSWORD"); v != "" {
		return v, nil
	}
	if cfg.Auth.AdminPasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(cfg.Auth.AdminPasswordFile)
	if err != nil {
		return "", fmt.Errorf("admin password file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// applyEdgeFlags sets the connected-registry settings from flags and the
// environment.
func (o *serveOptions) applyEdgeFlags(fs *pflag.FlagSet, cfg *config.Config) error {
	if v := os.Getenv("OUTPOST_CONNECTION_STRING"); v != "" && cfg.ConnectionString == "" {
		cfg.ConnectionString = v
	}
	if fs.Changed("connection-string") {
		cfg.ConnectionString = o.connString
	}
	if fs.Changed("connection-string-file") {
		b, err := os.ReadFile(o.connStringFile)
		if err != nil {
			return fmt.Errorf("--connection-string-file: %w", err)
		}
		text := string(b)
		if t, ok := strings.CutPrefix(text, "\ufeff"); ok {
			// Windows editors save UTF-8 with a byte order mark; it is
			// not part of the connection string.
			text = t
			o.warnings = append(o.warnings, "--connection-string-file "+o.connStringFile+" starts with a UTF-8 byte order mark; ignoring it")
		}
		cfg.ConnectionString = strings.TrimSpace(text)
	}
	set := func(name string, dst *string, v string) {
		if fs.Changed(name) {
			*dst = v
		}
	}
	set("parent", &cfg.Parent.URL, o.parentURL)
	set("parent-username", &cfg.Parent.Username, o.parentUser)
	set("parent-password-file", &cfg.Parent.PasswordFile, o.parentPassFile)
	set("parent-ca-file", &cfg.Parent.CAFile, o.parentCAFile)
	if fs.Changed("parent-token-realm-host") {
		cfg.Parent.TokenRealmHosts = o.realmHosts
	}
	set("mode", &cfg.Parent.Mode, o.mode)
	set("sync-schedule", &cfg.Parent.SyncSchedule, o.syncSchedule)
	set("sync-window", &cfg.Parent.SyncWindow, o.syncWindow)
	set("login-server", &cfg.LoginServer, o.loginServer)
	set("debug-addr", &cfg.DebugAddr, o.debugAddr)
	set("tls-cert", &cfg.TLS.CertFile, o.tlsCert)
	set("tls-key", &cfg.TLS.KeyFile, o.tlsKey)
	set("tls-ca", &cfg.TLS.CAFile, o.tlsCA)
	set("tls-ca-dir", &cfg.TLS.CADir, o.tlsCADir)
	if fs.Changed("tls-mode") {
		if err := cfg.TLS.Mode.UnmarshalText([]byte(o.tlsMode)); err != nil {
			return fmt.Errorf("--tls-mode: %w", err)
		}
	}
	if fs.Changed("tls-host") {
		cfg.TLS.Hosts = o.tlsHosts
	}
	if fs.Changed("tls-cert-lifetime") {
		if err := cfg.TLS.CertLifetime.UnmarshalText([]byte(o.tlsLifetime)); err != nil {
			return fmt.Errorf("--tls-cert-lifetime: %w", err)
		}
	}
	if fs.Changed("repository") {
		cfg.Parent.Repositories = o.repos
	}
	if fs.Changed("sync-concurrency") {
		cfg.Sync.Concurrency = o.syncConc
	}
	if fs.Changed("pre-pull-nodes") {
		cfg.Sync.PrePullNodes = o.prePullNodes
	}
	if fs.Changed("sync-bandwidth-limit") {
		if err := cfg.Sync.BandwidthLimit.UnmarshalText([]byte(o.syncBandwidth)); err != nil {
			return fmt.Errorf("--sync-bandwidth-limit: %w", err)
		}
	}
	if fs.Changed("heartbeat-interval") {
		if err := cfg.Sync.HeartbeatInterval.UnmarshalText([]byte(o.heartbeat)); err != nil {
			return fmt.Errorf("--heartbeat-interval: %w", err)
		}
	}
	return nil
}
