package cli

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/server"
)

// serveOptions are the flags of `outpost serve`; each overrides the
// config file's value when given.
type serveOptions struct {
	configFile string
	addr       string
	data       string
	logLevel   string
	logFormat  string
	anonPull   bool
	adminFile  string
}

func (o *serveOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.configFile, "config", "", "YAML config file (see docs/configuration.md)")
	fs.StringVar(&o.addr, "addr", ":5000", "listening address, host:port")
	fs.StringVar(&o.data, "data", "./outpost-data", "data directory: blobs, uploads and the metadata database")
	fs.StringVar(&o.logLevel, "log-level", "Information", "log level: Debug, Information, Warning, Error or None")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.BoolVar(&o.anonPull, "anonymous-pull", false, "let clients without credentials pull and list")
	fs.StringVar(&o.adminFile, "admin-password-file", "", "file holding the admin password (or set OUTPOST_ADMIN_PASSWORD); generated into <data>/admin-password when neither is given")
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
	if fs.Changed("anonymous-pull") {
		cfg.Auth.AnonymousPull = o.anonPull
	}
	if fs.Changed("admin-password-file") {
		cfg.Auth.AdminPasswordFile = o.adminFile
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
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
Flags override the values of the --config file. SIGINT or SIGTERM stop it
gracefully: in-flight requests finish, upload sessions resume after restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load(cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(stderrWriter, cfg.Log.Level, cfg.Log.Format)
			v, _ := Version()
			adminPassword, err := adminPassword(cfg)
			if err != nil {
				return err
			}
			srv, err := server.New(cfg, log, v, adminPassword)
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
