// Package config holds Outpost's typed configuration: loading from a
// versioned YAML document in which unknown keys are errors, defaulting in
// one place, and validation that reports every problem at once.
package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// CurrentVersion is the only config file version this release reads.
const CurrentVersion = 1

// Config is the whole configuration of `outpost serve`.
type Config struct {
	// Version of the file format; must be 1.
	Version int `yaml:"version"`
	// Addr is the listening address, host:port.
	Addr string `yaml:"addr"`
	// Data is the data directory: blobs, uploads and the metadata database.
	Data string `yaml:"data"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Limits bound what clients may send or ask for.
	Limits Limits `yaml:"limits"`
	// ShutdownTimeout is how long in-flight requests may run after SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdownTimeout"`
	// Auth configures registry authentication.
	Auth Auth `yaml:"auth"`
	// ConnectionString makes this Outpost a connected registry of the
	// parent it names (see docs/configuration.md).
	ConnectionString string `yaml:"connectionString,omitempty"`
	// Parent configures a generic (non-Outpost) parent registry, or the CA
	// of the parent named by the connection string.
	Parent Parent `yaml:"parent"`
	// Sync tunes synchronization from the parent.
	Sync Sync `yaml:"sync"`
	// LoginServer is the host:port local clients use, reported to the
	// parent; default: the listening address.
	LoginServer string `yaml:"loginServer,omitempty"`
	// TLS configures HTTPS.
	TLS TLS `yaml:"tls"`
	// DebugAddr, when set, serves Go's pprof profiles on a separate
	// listener (keep it on loopback).
	DebugAddr string `yaml:"debugAddr,omitempty"`
	// Metrics controls who may read /metrics.
	Metrics Metrics `yaml:"metrics,omitempty"`
	// Storage tunes the integrity checks and the free-space reporting of
	// the data directory.
	Storage Storage `yaml:"storage"`
	// GC schedules garbage collection of the stores.
	GC GC `yaml:"gc"`
	// UI configures the web dashboard under /ui/.
	UI UI `yaml:"ui"`
	// Retention lists the retention policies the garbage collection
	// applies (besides those made with `outpost retention create`).
	Retention Retention `yaml:"retention,omitempty"`
}

// Retention holds the retention policies of the configuration file.
type Retention struct {
	Policies []RetentionPolicy `yaml:"policies,omitempty"`
}

// RetentionPolicy is one retention policy (docs/operations.md,
// "Retention"). The first policy covering a repository applies to it.
type RetentionPolicy struct {
	Name string `yaml:"name"`
	// Repositories are repository patterns: "*", "team/*" or names.
	Repositories []string `yaml:"repositories"`
	// KeepNewest keeps the N most recently pushed tags.
	KeepNewest int `yaml:"keepNewest,omitempty"`
	// KeepTags keeps tags matching these glob patterns ("v*").
	KeepTags []string `yaml:"keepTags,omitempty"`
	// KeepSemver keeps tags that are semantic versions in this range
	// (">=1.4, <2").
	KeepSemver string `yaml:"keepSemver,omitempty"`
	// KeepWithin keeps tags pushed within this duration.
	KeepWithin Duration `yaml:"keepWithin,omitempty"`
	// UntaggedOlderThan is how old an untagged manifest must be before it
	// is removed (default gc.gracePeriod).
	UntaggedOlderThan Duration `yaml:"untaggedOlderThan,omitempty"`
}

// UI configures the web dashboard (docs/dashboard.md).
type UI struct {
	// Enabled serves the dashboard at /ui/ (default true; --ui=false).
	Enabled *bool `yaml:"enabled"`
	// SessionTimeout ends a dashboard session idle this long (1m..12h,
	// default 1h); a session never lasts more than 12h.
	SessionTimeout Duration `yaml:"sessionTimeout"`
}

// UIEnabled reports whether the dashboard is served.
func (c *Config) UIEnabled() bool { return c.UI.Enabled == nil || *c.UI.Enabled }

// GC schedules online garbage collection (docs/operations.md).
type GC struct {
	// Schedule is a 5-field cron expression (UTC) for scheduled runs, or
	// "off". Default "30 3 * * *".
	Schedule string `yaml:"schedule"`
	// GracePeriod: content put, linked or committed less than this long
	// before a run started is never collected. Default 1h.
	GracePeriod Duration `yaml:"gracePeriod"`
	// ReclaimableThreshold: after deletions (a quiet spell of 30s, or of
	// the grace period if shorter), a dry collection runs, and a real one
	// follows when it finds at least this many bytes to reclaim. Default
	// 1GiB; 0 never collects after deletions.
	ReclaimableThreshold *ByteSize `yaml:"reclaimableThreshold,omitempty"`
}

// DefaultGCSchedule is the default of gc.schedule: daily at 03:30 UTC.
const DefaultGCSchedule = "30 3 * * *"

// Storage tunes the data directory's integrity checks and free-space
// reporting.
type Storage struct {
	// ScrubInterval is how often serve re-reads every blob and checks its
	// digest, quarantining (and at a connected registry fetching again)
	// each that fails; 0 turns the scheduled scrub off. Default 168h.
	ScrubInterval *Duration `yaml:"scrubInterval"`
	// MinFreeBytes is the free space of the data volume below which
	// /readyz reports writes degraded, and by which free space must grow
	// after a write failed for lack of space before they read ok again.
	// Default 64MiB.
	MinFreeBytes ByteSize `yaml:"minFreeBytes"`
	// HighWatermark and LowWatermark are percentages of the data volume
	// used: above the high one a connected registry evicts the
	// pull-through copies it can fetch again, least recently pulled
	// first, until the low one. Defaults 90 and 80; 100 turns eviction
	// off.
	HighWatermark int `yaml:"highWatermark"`
	LowWatermark  int `yaml:"lowWatermark"`
	// Blobs selects the blob store: the data directory (fs, the default)
	// or an S3-compatible bucket (s3).
	Blobs Blobs `yaml:"blobs,omitempty"`
	// Metadata selects the metadata store: embedded bbolt in the data
	// directory (bolt, the default) or PostgreSQL (postgres).
	Metadata Metadata `yaml:"metadata,omitempty"`
	// Redirect answers blob GETs with a redirect to a presigned URL of
	// the bucket (s3 only), so that content bypasses the registry.
	Redirect bool `yaml:"redirect,omitempty"`
}

// Blobs configures the blob store and its upload sessions.
type Blobs struct {
	Type BlobsType `yaml:"type,omitempty"`
	// Endpoint is the S3 service URL, such as http://minio:9000; empty
	// means AWS.
	Endpoint string `yaml:"endpoint,omitempty"`
	// Region of the bucket; default us-east-1.
	Region string `yaml:"region,omitempty"`
	Bucket string `yaml:"bucket,omitempty"`
	// Prefix of every key, so that a bucket can be shared.
	Prefix string `yaml:"prefix,omitempty"`
	// PathStyle addresses <endpoint>/<bucket> rather than
	// <bucket>.<endpoint> (most non-AWS servers need it).
	PathStyle bool `yaml:"pathStyle,omitempty"`
	// CAFile holds extra CAs (PEM) to trust for the endpoint.
	CAFile string `yaml:"caFile,omitempty"`
	// AccessKeyFile and SecretKeyFile hold the credentials; without them
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used.
	AccessKeyFile string `yaml:"accessKeyFile,omitempty"`
	SecretKeyFile string `yaml:"secretKeyFile,omitempty"`
}

// BlobsType is fs or s3.
type BlobsType string

// The blob store types.
const (
	BlobsFS BlobsType = "fs"
	BlobsS3 BlobsType = "s3"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *BlobsType) UnmarshalText(b []byte) error {
	switch BlobsType(b) {
	case BlobsFS, BlobsS3:
		*t = BlobsType(b)
		return nil
	}
	return fmt.Errorf("storage.blobs.type: %q is not fs or s3", b)
}

// Metadata configures the metadata store.
type Metadata struct {
	Type MetadataType `yaml:"type,omitempty"`
	// DSN is a PostgreSQL connection string or URL; DSNFile a file that
	// holds one (better: it keeps the password out of the config). Without
	// either, OUTPOST_POSTGRES_DSN is used.
	DSN     string `yaml:"dsn,omitempty"`
	DSNFile string `yaml:"dsnFile,omitempty"`
}

// MetadataType is bolt or postgres.
type MetadataType string

// The metadata store types.
const (
	MetadataBolt     MetadataType = "bolt"
	MetadataPostgres MetadataType = "postgres"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *MetadataType) UnmarshalText(b []byte) error {
	switch MetadataType(b) {
	case MetadataBolt, MetadataPostgres:
		*t = MetadataType(b)
		return nil
	}
	return fmt.Errorf("storage.metadata.type: %q is not bolt or postgres", b)
}

// validate checks the engine settings; the credentials and the DSN are
// checked where they are read (they may come from the environment).
func (st Storage) validate() []error {
	var errs []error
	b := st.Blobs
	if b.Type == BlobsS3 {
		if b.Bucket == "" {
			errs = append(errs, errors.New("storage.blobs.bucket: s3 needs a bucket"))
		}
		if b.Endpoint != "" && !strings.HasPrefix(b.Endpoint, "http://") && !strings.HasPrefix(b.Endpoint, "https://") {
			errs = append(errs, fmt.Errorf("storage.blobs.endpoint: %q is not an http:// or https:// URL", b.Endpoint))
		}
	} else if b.Endpoint != "" || b.Bucket != "" || b.Prefix != "" || b.AccessKeyFile != "" || b.SecretKeyFile != "" || b.CAFile != "" {
		errs = append(errs, errors.New("storage.blobs: endpoint, bucket, prefix, caFile and the key files need type s3"))
	}
	if (b.AccessKeyFile == "") != (b.SecretKeyFile == "") {
		errs = append(errs, errors.New("storage.blobs.accessKeyFile and secretKeyFile: give both or neither"))
	}
	if st.Redirect && b.Type != BlobsS3 {
		errs = append(errs, errors.New("storage.redirect: needs storage.blobs.type s3"))
	}
	m := st.Metadata
	if m.Type == MetadataPostgres && m.DSN != "" && m.DSNFile != "" {
		errs = append(errs, errors.New("storage.metadata: give dsn or dsnFile, not both"))
	}
	if m.Type != MetadataPostgres && (m.DSN != "" || m.DSNFile != "") {
		errs = append(errs, errors.New("storage.metadata: dsn and dsnFile need type postgres"))
	}
	return errs
}

// PostgresDSNEnv names the environment variable that gives the
// PostgreSQL DSN when the config gives none.
const PostgresDSNEnv = "OUTPOST_POSTGRES_DSN"

// PostgresDSN returns the DSN of a postgres metadata store: dsn, else
// the content of dsnFile, else OUTPOST_POSTGRES_DSN.
func (m Metadata) PostgresDSN() (string, error) {
	switch {
	case m.DSN != "":
		return m.DSN, nil
	case m.DSNFile != "":
		b, err := os.ReadFile(m.DSNFile)
		if err != nil {
			return "", fmt.Errorf("storage.metadata.dsnFile: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case os.Getenv(PostgresDSNEnv) != "":
		return os.Getenv(PostgresDSNEnv), nil
	}
	return "", fmt.Errorf("storage.metadata: postgres needs dsn, dsnFile or %s", PostgresDSNEnv)
}

// Credentials returns the S3 access and secret keys: from the key files
// when set, else from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func (b Blobs) Credentials() (access, secret string, err error) {
	read := func(key, file, env string) (string, error) {
		if file == "" {
			if v := os.Getenv(env); v != "" {
				return v, nil
			}
			return "", fmt.Errorf("storage.blobs: s3 needs %s or %s", key, env)
		}
		v, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("storage.blobs.%s: %w", key, err)
		}
		return strings.TrimSpace(string(v)), nil
	}
	if access, err = read("accessKeyFile", b.AccessKeyFile, "AWS_ACCESS_KEY_ID"); err != nil {
		return "", "", err
	}
	if secret, err = read("secretKeyFile", b.SecretKeyFile, "AWS_SECRET_ACCESS_KEY"); err != nil {
		return "", "", err
	}
	return access, secret, nil
}

// DefaultScrubInterval is the default of storage.scrubInterval.
const DefaultScrubInterval = Duration(7 * 24 * time.Hour)

// TLS configures HTTPS: mode auto (built-in CA), files (your certificate)
// or off (plain HTTP, only on request).
type TLS struct {
	Mode TLSMode `yaml:"mode"`
	// Hosts are the DNS names and IP addresses of the server certificate
	// in auto mode; default: the hostname, localhost, 127.0.0.1 and ::1.
	Hosts []string `yaml:"hosts,omitempty"`
	// CertFile, KeyFile and CAFile are used in files mode.
	CertFile string `yaml:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty"`
	CAFile   string `yaml:"caFile,omitempty"`
	// CADir holds the auto-mode CA (ca.crt and ca.key); default
	// <data>/pki. A CA is created there on first start unless both files
	// exist, so it may be a read-only mount of a CA made elsewhere.
	CADir string `yaml:"caDir,omitempty"`
	// CertLifetime of auto-mode certificates (default 90 days); shorter
	// values exist for testing renewal.
	CertLifetime Duration `yaml:"certLifetime"`
}

// TLSMode is auto, files or off.
type TLSMode string

// The TLS modes.
const (
	TLSAuto  TLSMode = "auto"
	TLSFiles TLSMode = "files"
	TLSOff   TLSMode = "off"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *TLSMode) UnmarshalText(b []byte) error {
	switch TLSMode(b) {
	case TLSAuto, TLSFiles, TLSOff:
		*m = TLSMode(b)
		return nil
	}
	return fmt.Errorf("tls.mode: %q is not auto, files or off", b)
}

// Parent configures the parent registry.
type Parent struct {
	// URL of a generic parent, such as https://registry.example.com.
	URL          string `yaml:"url,omitempty"`
	Username     string `yaml:"username,omitempty"`
	PasswordFile string `yaml:"passwordFile,omitempty"`
	CAFile       string `yaml:"caFile,omitempty"`
	// TokenRealmHosts are the hosts ("host" or "host:port") besides the
	// parent's own origin that may receive the parent credentials as a
	// Bearer token realm, such as auth.docker.io for Docker Hub.
	TokenRealmHosts []string `yaml:"tokenRealmHosts,omitempty"`
	Repositories    []string `yaml:"repositories,omitempty"`
	Mode            string   `yaml:"mode,omitempty"`
	SyncSchedule    string   `yaml:"syncSchedule,omitempty"`
	SyncWindow      string   `yaml:"syncWindow,omitempty"`
}

// Sync tunes synchronization.
type Sync struct {
	// Concurrency is the number of blobs downloaded at once.
	Concurrency int `yaml:"concurrency"`
	// BandwidthLimit caps download bytes per second (0: unlimited).
	BandwidthLimit ByteSize `yaml:"bandwidthLimit"`
	// HeartbeatInterval is how often status goes to the parent.
	HeartbeatInterval Duration `yaml:"heartbeatInterval"`
	// MessageTTL overrides the parent's sync message TTL (for tests);
	// 0 uses the parent's setting.
	MessageTTL Duration `yaml:"messageTTL,omitempty"`
	// OnDemandTimeout bounds each wait for the parent during a pull-through
	// (a client pull that missed locally); a parent that stays silent that
	// long is skipped for 30s, so the next misses answer at once.
	OnDemandTimeout Duration `yaml:"onDemandTimeout"`
	// PrePullNodes is how many node agents may pull a pre-pull job from
	// this registry at once (the slots it leases to them).
	PrePullNodes int `yaml:"prePullNodes"`
}

// Auth configures authentication. It is always on; AnonymousPull opens
// pulls to everyone.
type Auth struct {
	// AnonymousPull lets clients without credentials pull and list.
	AnonymousPull bool `yaml:"anonymousPull"`
	// AdminPasswordFile holds the admin password. Without it (and without
	// OUTPOST_ADMIN_PASSWORD) a password is generated on first start and
	// written to <data>/admin-password.
	AdminPasswordFile string `yaml:"adminPasswordFile,omitempty"`
	// TokenTTL is the lifetime of registry tokens issued by /oauth2/token.
	TokenTTL Duration `yaml:"tokenTTL"`
}

// Log configures the server's structured log.
type Log struct {
	Level  LogLevel  `yaml:"level"`
	Format LogFormat `yaml:"format"`
}

// Limits bound request sizes and page sizes.
type Limits struct {
	ManifestMaxBytes ByteSize `yaml:"manifestMaxBytes"`
	PageSizeMax      int      `yaml:"pageSizeMax"`

	// IdleTimeout closes a connection whose request body or response
	// moves no byte for this long; a slow transfer that moves survives.
	IdleTimeout Duration `yaml:"idleTimeout"`
	// ConnectionsPerClient caps the open connections of one client IP
	// address; further connections are closed as they are accepted.
	ConnectionsPerClient int `yaml:"connectionsPerClient"`
	// UploadSessionsPerCredential and UploadSessionsPerRepository cap the
	// open blob upload sessions; beyond them a new session gets 429.
	UploadSessionsPerCredential int `yaml:"uploadSessionsPerCredential"`
	UploadSessionsPerRepository int `yaml:"uploadSessionsPerRepository"`
	// UploadMaxAge is how long an upload session may stay idle before it
	// is removed (checked while running, not only at start).
	UploadMaxAge Duration `yaml:"uploadMaxAge"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	c := Config{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills every unset field with its default.
func (c *Config) ApplyDefaults() {
	if c.Version == 0 {
		c.Version = CurrentVersion
	}
	if c.Addr == "" {
		c.Addr = ":5000"
	}
	if c.Data == "" {
		c.Data = "./outpost-data"
	}
	if c.Log.Level == "" {
		c.Log.Level = LevelInformation
	}
	if c.Log.Format == "" {
		c.Log.Format = FormatJSON
	}
	if c.Limits.ManifestMaxBytes == 0 {
		c.Limits.ManifestMaxBytes = 4 << 20
	}
	if c.Limits.PageSizeMax == 0 {
		c.Limits.PageSizeMax = 1000
	}
	if c.Limits.IdleTimeout == 0 {
		c.Limits.IdleTimeout = Duration(60 * time.Second)
	}
	if c.Limits.ConnectionsPerClient == 0 {
		c.Limits.ConnectionsPerClient = 256
	}
	if c.Limits.UploadSessionsPerCredential == 0 {
		c.Limits.UploadSessionsPerCredential = 1000
	}
	if c.Limits.UploadSessionsPerRepository == 0 {
		c.Limits.UploadSessionsPerRepository = 1000
	}
	if c.Limits.UploadMaxAge == 0 {
		c.Limits.UploadMaxAge = Duration(24 * time.Hour)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(30 * time.Second)
	}
	if c.TLS.Mode == "" {
		c.TLS.Mode = TLSAuto
	}
	if c.TLS.Mode == TLSAuto && len(c.TLS.Hosts) == 0 {
		c.TLS.Hosts = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
			c.TLS.Hosts = append([]string{h}, c.TLS.Hosts...)
		}
	}
	if c.TLS.CertLifetime == 0 {
		c.TLS.CertLifetime = Duration(90 * 24 * time.Hour)
	}
	if c.Sync.Concurrency == 0 {
		c.Sync.Concurrency = 4
	}
	if c.Sync.HeartbeatInterval == 0 {
		c.Sync.HeartbeatInterval = Duration(30 * time.Second)
	}
	if c.Sync.PrePullNodes == 0 {
		c.Sync.PrePullNodes = 10
	}
	if c.Sync.OnDemandTimeout == 0 {
		c.Sync.OnDemandTimeout = Duration(5 * time.Second)
	}
	if c.Parent.URL != "" {
		if c.Parent.Mode == "" {
			c.Parent.Mode = "ReadOnly"
		}
		if c.Parent.SyncSchedule == "" {
			c.Parent.SyncSchedule = "* * * * *"
		}
	}
	if c.Auth.TokenTTL == 0 {
		c.Auth.TokenTTL = Duration(5 * time.Minute)
	}
	if c.UI.Enabled == nil {
		on := true
		c.UI.Enabled = &on
	}
	if c.UI.SessionTimeout == 0 {
		c.UI.SessionTimeout = Duration(time.Hour)
	}
	if c.Storage.ScrubInterval == nil {
		d := DefaultScrubInterval
		c.Storage.ScrubInterval = &d
	}
	if c.Storage.MinFreeBytes == 0 {
		c.Storage.MinFreeBytes = 64 << 20
	}
	if c.Storage.HighWatermark == 0 {
		c.Storage.HighWatermark = 90
	}
	if c.Storage.LowWatermark == 0 {
		c.Storage.LowWatermark = 80
	}
	if c.GC.Schedule == "" {
		c.GC.Schedule = DefaultGCSchedule
	}
	if c.Storage.Blobs.Type == "" {
		c.Storage.Blobs.Type = BlobsFS
	}
	if c.Storage.Blobs.Type == BlobsS3 && c.Storage.Blobs.Region == "" {
		c.Storage.Blobs.Region = "us-east-1"
	}
	if c.Storage.Metadata.Type == "" {
		c.Storage.Metadata.Type = MetadataBolt
	}
	if c.GC.GracePeriod == 0 {
		c.GC.GracePeriod = Duration(time.Hour)
	}
	if c.GC.ReclaimableThreshold == nil {
		v := ByteSize(1 << 30)
		c.GC.ReclaimableThreshold = &v
	}
}

// Validate reports every problem of c, joined, each naming its key.
func (c *Config) Validate() error {
	if a := c.Metrics.Auth; a != "" && a != "auto" && a != "on" && a != "off" {
		return fmt.Errorf("metrics.auth: %q is not one of auto, on, off", a)
	}
	var errs []error
	if c.Version != CurrentVersion {
		errs = append(errs, fmt.Errorf("version: %d is not supported, want %d", c.Version, CurrentVersion))
	}
	if !strings.Contains(c.Addr, ":") {
		errs = append(errs, fmt.Errorf("addr: %q is not host:port", c.Addr))
	}
	if c.Data == "" {
		errs = append(errs, errors.New("data: must not be empty"))
	}
	if d := time.Duration(c.UI.SessionTimeout); d < time.Minute || d > 12*time.Hour {
		errs = append(errs, fmt.Errorf("ui.sessionTimeout: %s is outside 1m..12h", d))
	}
	if c.Limits.ManifestMaxBytes < 1024 || c.Limits.ManifestMaxBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("limits.manifestMaxBytes: %d is outside 1KiB..64MiB", c.Limits.ManifestMaxBytes))
	}
	if c.Limits.PageSizeMax < 1 || c.Limits.PageSizeMax > 100000 {
		errs = append(errs, fmt.Errorf("limits.pageSizeMax: %d is outside 1..100000", c.Limits.PageSizeMax))
	}
	if c.Limits.IdleTimeout < Duration(time.Second) || c.Limits.IdleTimeout > Duration(time.Hour) {
		errs = append(errs, fmt.Errorf("limits.idleTimeout: %s is outside 1s..1h", c.Limits.IdleTimeout))
	}
	if c.Limits.ConnectionsPerClient < 1 || c.Limits.ConnectionsPerClient > 1000000 {
		errs = append(errs, fmt.Errorf("limits.connectionsPerClient: %d is outside 1..1000000", c.Limits.ConnectionsPerClient))
	}
	if c.Limits.UploadSessionsPerCredential < 1 || c.Limits.UploadSessionsPerCredential > 1000000 {
		errs = append(errs, fmt.Errorf("limits.uploadSessionsPerCredential: %d is outside 1..1000000", c.Limits.UploadSessionsPerCredential))
	}
	if c.Limits.UploadSessionsPerRepository < 1 || c.Limits.UploadSessionsPerRepository > 1000000 {
		errs = append(errs, fmt.Errorf("limits.uploadSessionsPerRepository: %d is outside 1..1000000", c.Limits.UploadSessionsPerRepository))
	}
	if c.Limits.UploadMaxAge < Duration(time.Second) {
		errs = append(errs, fmt.Errorf("limits.uploadMaxAge: %s is shorter than 1s", c.Limits.UploadMaxAge))
	}
	if c.Auth.TokenTTL < Duration(time.Minute) || c.Auth.TokenTTL > Duration(24*time.Hour) {
		errs = append(errs, fmt.Errorf("auth.tokenTTL: %s is outside 1m..24h", c.Auth.TokenTTL))
	}
	if c.TLS.Mode == TLSFiles && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.certFile and tls.keyFile: both are required in files mode"))
	}
	if c.TLS.CertLifetime < Duration(10*time.Second) {
		errs = append(errs, fmt.Errorf("tls.certLifetime: %s is shorter than 10s", c.TLS.CertLifetime))
	}
	if c.ConnectionString != "" && c.Parent.URL != "" {
		errs = append(errs, errors.New("connectionString and parent.url: give one or the other"))
	}
	if c.Parent.URL != "" && len(c.Parent.Repositories) == 0 {
		errs = append(errs, errors.New("parent.repositories: a generic parent needs at least one repository to sync"))
	}
	if c.Parent.Mode != "" && c.Parent.Mode != "ReadOnly" && c.Parent.Mode != "ReadWrite" {
		errs = append(errs, fmt.Errorf("parent.mode: %q is not ReadOnly or ReadWrite", c.Parent.Mode))
	}
	if c.Sync.Concurrency < 1 || c.Sync.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("sync.concurrency: %d is outside 1..64", c.Sync.Concurrency))
	}
	if c.Sync.PrePullNodes < 1 || c.Sync.PrePullNodes > 10000 {
		errs = append(errs, fmt.Errorf("sync.prePullNodes: %d is outside 1..10000", c.Sync.PrePullNodes))
	}
	if c.Sync.HeartbeatInterval < Duration(time.Second) {
		errs = append(errs, fmt.Errorf("sync.heartbeatInterval: %s is shorter than 1s", c.Sync.HeartbeatInterval))
	}
	if c.Sync.OnDemandTimeout < Duration(100*time.Millisecond) || c.Sync.OnDemandTimeout > Duration(10*time.Minute) {
		errs = append(errs, fmt.Errorf("sync.onDemandTimeout: %s is outside 100ms..10m", c.Sync.OnDemandTimeout))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("shutdownTimeout: %s is negative", c.ShutdownTimeout))
	}
	if si := c.Storage.ScrubInterval; si != nil && *si != 0 && *si < Duration(time.Minute) {
		errs = append(errs, fmt.Errorf("storage.scrubInterval: %s is shorter than 1m (0 turns the scrub off)", *si))
	}
	if c.Storage.MinFreeBytes < 0 {
		errs = append(errs, fmt.Errorf("storage.minFreeBytes: %d is negative", c.Storage.MinFreeBytes))
	}
	errs = append(errs, c.Storage.validate()...)
	if hi, lo := c.Storage.HighWatermark, c.Storage.LowWatermark; hi < 0 || hi > 100 || lo < 0 || lo > 100 || (hi != 0 && lo != 0 && lo >= hi) {
		errs = append(errs, fmt.Errorf("storage.lowWatermark %d and storage.highWatermark %d: want percentages with low < high <= 100", lo, hi))
	}
	if s := c.GC.Schedule; s != "" && s != "off" {
		if len(strings.Fields(s)) != 5 {
			errs = append(errs, fmt.Errorf("gc.schedule: %q: want 5 cron fields (minute hour day-of-month month day-of-week) or off", s))
		} else if _, err := cron.ParseStandard(s); err != nil {
			errs = append(errs, fmt.Errorf("gc.schedule: %q: %w", s, err))
		}
	}
	if c.GC.GracePeriod < 0 {
		errs = append(errs, fmt.Errorf("gc.gracePeriod: %s is negative", c.GC.GracePeriod))
	}
	if t := c.GC.ReclaimableThreshold; t != nil && *t < 0 {
		errs = append(errs, fmt.Errorf("gc.reclaimableThreshold: %d is negative", *t))
	}
	// The rules themselves (patterns, ranges) are checked at start by the
	// retention package, which the server runs.
	names := map[string]bool{}
	for i, p := range c.Retention.Policies {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("retention.policies[%d].name: required", i))
		case names[p.Name]:
			errs = append(errs, fmt.Errorf("retention.policies[%d].name: %q is used twice", i, p.Name))
		}
		names[p.Name] = true
	}
	return errors.Join(errs...)
}

// Load decodes a YAML document. Unknown keys and malformed values are
// errors naming the key; defaults are not applied.
func Load(r io.Reader) (Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var ve *valueError
		if errors.As(err, &ve) {
			if key := keyAt(b, ve.line, ve.column); key != "" {
				return Config{}, fmt.Errorf("config: %s: %w", key, err)
			}
		}
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// valueError is a malformed value of a type used under several keys
// (sizes, durations), with its position so that Load can name the key.
type valueError struct {
	line, column int
	err          error
}

func (e *valueError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *valueError) Unwrap() error { return e.err }

// decodeScalar feeds a scalar node to u, keeping the node's position in
// the error.
func decodeScalar(n *yaml.Node, u encoding.TextUnmarshaler) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{n.Line, n.Column, errors.New("want a single value")}
	}
	if err := u.UnmarshalText([]byte(n.Value)); err != nil {
		return &valueError{n.Line, n.Column, err}
	}
	return nil
}

// keyAt returns the dotted key whose value starts at line and column of
// the YAML document src, or "".
func keyAt(src []byte, line, column int) string {
	var doc yaml.Node
	if yaml.Unmarshal(src, &doc) != nil {
		return ""
	}
	var find func(n *yaml.Node, path string) string
	find = func(n *yaml.Node, path string) string {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if k := find(c, path); k != "" {
					return k
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key := path + n.Content[i].Value
				v := n.Content[i+1]
				if v.Line == line && v.Column == column {
					return key
				}
				if k := find(v, key+"."); k != "" {
					return k
				}
			}
		}
		return ""
	}
	return find(&doc, "")
}

// LoadFile reads and decodes the file at path.
func LoadFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := Load(bytes.NewReader(b))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Marshal renders c as YAML for printing (`outpost config validate`),
// with its secrets redacted (see Redacted).
func (c *Config) Marshal() ([]byte, error) {
	r := c.Redacted()
	return yaml.Marshal(&r)
}

// Metrics controls access to /metrics.
type Metrics struct {
	// Auth is "auto" (the default: credentials required unless the
	// server listens on loopback only), "on" or "off".
	Auth string `yaml:"auth,omitempty"`
}

// MetricsAuthRequired reports whether /metrics asks for credentials.
func (c *Config) MetricsAuthRequired() bool {
	switch c.Metrics.Auth {
	case "on":
		return true
	case "off":
		return false
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// LogLevel is one of Debug, Information, Warning, Error, None.
type LogLevel string

// The log levels, named as in the connected-registry settings.
const (
	LevelDebug       LogLevel = "Debug"
	LevelInformation LogLevel = "Information"
	LevelWarning     LogLevel = "Warning"
	LevelError       LogLevel = "Error"
	LevelNone        LogLevel = "None"
)

// ParseLogLevel accepts the level names case-insensitively.
func ParseLogLevel(s string) (LogLevel, error) {
	for _, l := range []LogLevel{LevelDebug, LevelInformation, LevelWarning, LevelError, LevelNone} {
		if strings.EqualFold(s, string(l)) {
			return l, nil
		}
	}
	return "", fmt.Errorf("log level %q is not one of Debug, Information, Warning, Error, None", s)
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LogLevel) UnmarshalText(b []byte) error {
	v, err := ParseLogLevel(string(b))
	if err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	*l = v
	return nil
}

// Slog returns the slog level, and false for None.
func (l LogLevel) Slog() (slog.Level, bool) {
	switch l {
	case LevelDebug:
		return slog.LevelDebug, true
	case LevelWarning:
		return slog.LevelWarn, true
	case LevelError:
		return slog.LevelError, true
	case LevelNone:
		return 0, false
	default:
		return slog.LevelInfo, true
	}
}

// LogFormat is json or text.
type LogFormat string

// The log formats.
const (
	FormatJSON LogFormat = "json"
	FormatText LogFormat = "text"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *LogFormat) UnmarshalText(b []byte) error {
	switch LogFormat(b) {
	case FormatJSON, FormatText:
		*f = LogFormat(b)
		return nil
	}
	return fmt.Errorf("log.format: %q is not json or text", b)
}

// ByteSize is a size in bytes written as a number or with a unit suffix
// (KiB, MiB, GiB, KB, MB, GB).
type ByteSize int64

// ParseByteSize parses "4MiB", "512KB" or "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size such as 4MiB", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML implements yaml.Unmarshaler, keeping the value's position
// in errors.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error { return decodeScalar(n, b) }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return fmt.Errorf("size: %w", err)
	}
	*b = v
	return nil
}

// Duration is a time.Duration written as "30s" or "5m".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler, keeping the value's position
// in errors.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return decodeScalar(n, d) }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("duration: %q is not a duration such as 30s", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// String returns the duration in Go notation.
func (d Duration) String() string { return time.Duration(d).String() }
