package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const fullConfig = `version: 1
addr: 127.0.0.1:5443
data: /var/lib/outpost
log:
  level: debug
  format: text
limits:
  manifestMaxBytes: 8MiB
  pageSizeMax: 500
  idleTimeout: 2m
  connectionsPerClient: 64
  uploadSessionsPerCredential: 200
  uploadSessionsPerRepository: 300
  uploadMaxAge: 12h
shutdownTimeout: 45s
auth:
  anonymousPull: true
  adminPasswordFile: /run/secrets/admin
  tokenTTL: 10m
parent:
  url: https://registry.example.com
  username: mirror
  passwordFile: /run/secrets/parent
  caFile: /etc/ssl/parent.pem
  repositories: [library/alpine, library/nginx]
  mode: ReadWrite
  syncSchedule: "*/5 * * * *"
  syncWindow: PT2H
sync:
  concurrency: 8
  bandwidthLimit: 10MB
  heartbeatInterval: 15s
  messageTTL: 1h
  onDemandTimeout: 3s
  prePullNodes: 25
loginServer: edge.example.com:5443
tls:
  mode: files
  hosts: [edge.example.com]
  certFile: /etc/outpost/tls.crt
  keyFile: /etc/outpost/tls.key
  caFile: /etc/outpost/ca.crt
  certLifetime: 720h
debugAddr: 127.0.0.1:6060
storage:
  scrubInterval: 24h
  minFreeBytes: 1GiB
  highWatermark: 95
  lowWatermark: 85
  blobs:
    type: s3
    endpoint: https://s3.example.com
    region: eu-west-1
    bucket: registry
    prefix: root/
    pathStyle: true
    caFile: /etc/outpost/s3-ca.crt
    accessKeyFile: /run/secrets/s3-access
    secretKeyFile: /run/secrets/s3-secret
  metadata:
    type: postgres
    dsnFile: /run/secrets/dsn
  redirect: true
gc:
  schedule: "0 2 * * 0"
  gracePeriod: 2h
  reclaimableThreshold: 0
ui:
  enabled: false
  sessionTimeout: 30m
`

var wantFull = Config{
	Version: 1,
	Addr:    "127.0.0.1:5443",
	Data:    "/var/lib/outpost",
	Log:     Log{Level: LevelDebug, Format: FormatText},
	Limits: Limits{
		ManifestMaxBytes: 8 << 20, PageSizeMax: 500,
		IdleTimeout: Duration(2 * time.Minute), ConnectionsPerClient: 64,
		UploadSessionsPerCredential: 200, UploadSessionsPerRepository: 300, UploadMaxAge: Duration(12 * time.Hour),
	},
	ShutdownTimeout: Duration(45 * time.Second),
	Auth:            Auth{AnonymousPull: true, AdminPasswordFile: "/run/secrets/admin", TokenTTL: Duration(10 * time.Minute)},
	Parent: Parent{
		URL: "https://registry.example.com", Username: "mirror", PasswordFile: "/run/secrets/parent", CAFile: "/etc/ssl/parent.pem",
		Repositories: []string{"library/alpine", "library/nginx"}, Mode: "ReadWrite", SyncSchedule: "*/5 * * * *", SyncWindow: "PT2H",
	},
	Sync:        Sync{Concurrency: 8, BandwidthLimit: 10e6, HeartbeatInterval: Duration(15 * time.Second), MessageTTL: Duration(time.Hour), OnDemandTimeout: Duration(3 * time.Second), PrePullNodes: 25},
	LoginServer: "edge.example.com:5443",
	TLS: TLS{
		Mode: TLSFiles, Hosts: []string{"edge.example.com"}, CertFile: "/etc/outpost/tls.crt", KeyFile: "/etc/outpost/tls.key",
		CAFile: "/etc/outpost/ca.crt", CertLifetime: Duration(720 * time.Hour),
	},
	DebugAddr: "127.0.0.1:6060",
	Storage: Storage{
		ScrubInterval: durationPtr(24 * time.Hour), MinFreeBytes: 1 << 30, HighWatermark: 95, LowWatermark: 85,
		Blobs: Blobs{
			Type: BlobsS3, Endpoint: "https://s3.example.com", Region: "eu-west-1", Bucket: "registry", Prefix: "root/", PathStyle: true,
			CAFile: "/etc/outpost/s3-ca.crt", AccessKeyFile: "/run/secrets/s3-access", SecretKeyFile: "/run/secrets/s3-secret",
		},
		Metadata: Metadata{Type: MetadataPostgres, DSNFile: "/run/secrets/dsn"},
		Redirect: true,
	},
	GC: GC{Schedule: "0 2 * * 0", GracePeriod: Duration(2 * time.Hour), ReclaimableThreshold: bytesPtr(0)},
	UI: UI{Enabled: boolPtr(false), SessionTimeout: Duration(30 * time.Minute)},
}

func boolPtr(b bool) *bool { return &b }

func durationPtr(d time.Duration) *Duration { v := Duration(d); return &v }

func bytesPtr(n int64) *ByteSize { v := ByteSize(n); return &v }

var loadCases = []struct {
	name    string
	in      string
	want    Config
	wantErr []string // substrings of the error; nil for success
}{
	{name: "every key", in: fullConfig, want: wantFull},
	{name: "empty document", in: "", want: Config{}},
	{name: "comments only", in: "# nothing set\n", want: Config{}},
	{name: "log level any case", in: "log:\n  level: WARNING\n", want: Config{Log: Log{Level: LevelWarning}}},
	{name: "size in bytes", in: "limits:\n  manifestMaxBytes: 1048576\n", want: Config{Limits: Limits{ManifestMaxBytes: 1 << 20}}},
	{name: "null duration", in: "shutdownTimeout: ~\n", want: Config{}},
	{name: "anchored duration", in: "shutdownTimeout: &t 5s\nsync:\n  heartbeatInterval: *t\n", want: Config{ShutdownTimeout: Duration(5 * time.Second), Sync: Sync{HeartbeatInterval: Duration(5 * time.Second)}}},
	{name: "scrub off", in: "storage:\n  scrubInterval: 0s\n", want: Config{Storage: Storage{ScrubInterval: durationPtr(0)}}},
	{name: "second document ignored", in: "addr: :1\n---\naddr: :2\n", want: Config{Addr: ":1"}},

	{name: "unknown key", in: "version: 1\nlisten: :5000\n", wantErr: []string{"line 2", "field listen not found"}},
	{name: "misspelt key", in: "shutdowntimeout: 5s\n", wantErr: []string{"field shutdowntimeout not found"}},
	{name: "unknown nested key", in: "tls:\n  mode: auto\n  cert: x\n", wantErr: []string{"line 3", "field cert not found in type config.TLS"}},
	{name: "duplicate key", in: "addr: :1\naddr: :2\n", wantErr: []string{`mapping key "addr" already defined`}},
	{name: "bad shutdownTimeout", in: "shutdownTimeout: 30\n", wantErr: []string{`shutdownTimeout: line 1: duration: "30" is not a duration`}},
	{name: "bad auth.tokenTTL", in: "auth:\n  tokenTTL: soon\n", wantErr: []string{`auth.tokenTTL: line 2: duration: "soon"`}},
	{name: "bad tls.certLifetime", in: "tls:\n  certLifetime: 90d\n", wantErr: []string{`tls.certLifetime: line 2: duration: "90d"`}},
	{name: "bad sync.heartbeatInterval", in: "sync:\n  concurrency: 2\n  heartbeatInterval: 1 minute\n", wantErr: []string{`sync.heartbeatInterval: line 3`}},
	{name: "bad sync.messageTTL", in: "sync:\n  messageTTL: x\n", wantErr: []string{`sync.messageTTL: line 2`}},
	{name: "duration as a list", in: "shutdownTimeout: [5s]\n", wantErr: []string{"shutdownTimeout: line 1: want a single value"}},
	{name: "bad limits.manifestMaxBytes", in: "limits:\n  manifestMaxBytes: 4 megabytes\n", wantErr: []string{`limits.manifestMaxBytes: line 2: size: "4 megabytes" is not a size`}},
	{name: "negative size", in: "sync:\n  bandwidthLimit: -1MB\n", wantErr: []string{`sync.bandwidthLimit: line 2`, "is not a size"}},
	{name: "overflowing size", in: "sync:\n  bandwidthLimit: 9999999999GiB\n", wantErr: []string{`sync.bandwidthLimit: line 2: size: "9999999999GiB" is too large`}},
	{name: "bad tls.mode", in: "tls:\n  mode: on\n", wantErr: []string{`tls.mode: "on" is not auto, files or off`}},
	{name: "bad blobs type", in: "storage:\n  blobs:\n    type: gcs\n", wantErr: []string{`storage.blobs.type: "gcs" is not fs or s3`}},
	{name: "bad metadata type", in: "storage:\n  metadata:\n    type: mysql\n", wantErr: []string{`storage.metadata.type: "mysql" is not bolt or postgres`}},
	{name: "bad log.level", in: "log:\n  level: verbose\n", wantErr: []string{`log.level: log level "verbose" is not one of`}},
	{name: "bad log.format", in: "log:\n  format: xml\n", wantErr: []string{`log.format: "xml" is not json or text`}},
	{name: "bad int", in: "limits:\n  pageSizeMax: many\n", wantErr: []string{"line 2", "cannot unmarshal !!str `many` into int"}},
	{name: "bad bool", in: "auth:\n  anonymousPull: sometimes\n", wantErr: []string{"line 2", "into bool"}},
	{name: "not a mapping", in: "- addr\n", wantErr: []string{"cannot unmarshal !!seq into config.Config"}},
	{name: "syntax error", in: "addr: [\n", wantErr: []string{"yaml:"}},
	{name: "tab indentation", in: "log:\n\tlevel: debug\n", wantErr: []string{"yaml:"}},
}

func TestLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range loadCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Load(strings.NewReader(tc.in))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("got %+v, want an error containing %q", got, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "config: ") {
					t.Errorf("got error %q, want the prefix \"config: \"", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("got error %q, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(fullConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFile(good)
	if err != nil || !reflect.DeepEqual(got, wantFull) {
		t.Errorf("LoadFile: got (%+v, %v), want %+v", got, err, wantFull)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": config: ") {
		t.Errorf("LoadFile(bad): got %v, want an error starting with the path", err)
	}
	_, err = LoadFile(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(missing): got %v, want os.ErrNotExist", err)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append([]string{h}, hosts...)
	}
	want := Config{
		Version: 1,
		Addr:    ":5000",
		Data:    "./outpost-data",
		Log:     Log{Level: LevelInformation, Format: FormatJSON},
		Limits: Limits{
			ManifestMaxBytes: 4 << 20, PageSizeMax: 1000,
			IdleTimeout: Duration(time.Minute), ConnectionsPerClient: 256,
			UploadSessionsPerCredential: 1000, UploadSessionsPerRepository: 1000, UploadMaxAge: Duration(24 * time.Hour),
		},
		ShutdownTimeout: Duration(30 * time.Second),
		Auth:            Auth{TokenTTL: Duration(5 * time.Minute)},
		Sync:            Sync{Concurrency: 4, HeartbeatInterval: Duration(30 * time.Second), OnDemandTimeout: Duration(5 * time.Second), PrePullNodes: 10},
		TLS:             TLS{Mode: TLSAuto, Hosts: hosts, CertLifetime: Duration(90 * 24 * time.Hour)},
		Storage:         Storage{ScrubInterval: durationPtr(7 * 24 * time.Hour), MinFreeBytes: 64 << 20, HighWatermark: 90, LowWatermark: 80, Blobs: Blobs{Type: BlobsFS}, Metadata: Metadata{Type: MetadataBolt}},
		GC:              GC{Schedule: DefaultGCSchedule, GracePeriod: Duration(time.Hour), ReclaimableThreshold: bytesPtr(1 << 30)},
		UI:              UI{Enabled: boolPtr(true), SessionTimeout: Duration(time.Hour)},
	}
	got := Default()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default():\ngot  %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate(): %v", err)
	}

	// Defaults fill only what is unset.
	c := wantFull
	c.ApplyDefaults()
	if !reflect.DeepEqual(c, wantFull) {
		t.Errorf("ApplyDefaults changed set fields:\ngot  %+v\nwant %+v", c, wantFull)
	}

	// A scrub turned off stays off.
	c = Config{Storage: Storage{ScrubInterval: durationPtr(0)}}
	c.ApplyDefaults()
	if *c.Storage.ScrubInterval != 0 {
		t.Errorf("storage.scrubInterval 0 defaulted to %s, want it kept at 0 (off)", *c.Storage.ScrubInterval)
	}

	// A generic parent gets its mode and schedule; other TLS modes no hosts.
	c = Config{Parent: Parent{URL: "https://r.example.com"}, TLS: TLS{Mode: TLSOff}}
	c.ApplyDefaults()
	if c.Parent.Mode != "ReadOnly" || c.Parent.SyncSchedule != "* * * * *" || c.TLS.Hosts != nil {
		t.Errorf("got parent %+v, TLS hosts %v; want ReadOnly, every minute, no hosts", c.Parent, c.TLS.Hosts)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr []string // nil: valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"every key", func(c *Config) { *c = wantFull }, nil},
		{"version", func(c *Config) { c.Version = 2 }, []string{"version: 2 is not supported, want 1"}},
		{"addr", func(c *Config) { c.Addr = "5000" }, []string{`addr: "5000" is not host:port`}},
		{"data", func(c *Config) { c.Data = "" }, []string{"data: must not be empty"}},
		{"manifest size small", func(c *Config) { c.Limits.ManifestMaxBytes = 1023 }, []string{"limits.manifestMaxBytes: 1023 is outside 1KiB..64MiB"}},
		{"manifest size large", func(c *Config) { c.Limits.ManifestMaxBytes = 64<<20 + 1 }, []string{"limits.manifestMaxBytes"}},
		{"page size", func(c *Config) { c.Limits.PageSizeMax = 100001 }, []string{"limits.pageSizeMax: 100001 is outside 1..100000"}},
		{"idle timeout short", func(c *Config) { c.Limits.IdleTimeout = Duration(500 * time.Millisecond) }, []string{"limits.idleTimeout: 500ms is outside 1s..1h"}},
		{"connections per client", func(c *Config) { c.Limits.ConnectionsPerClient = -1 }, []string{"limits.connectionsPerClient: -1 is outside 1..1000000"}},
		{"upload sessions", func(c *Config) { c.Limits.UploadSessionsPerCredential, c.Limits.UploadSessionsPerRepository = -1, -2 }, []string{
			"limits.uploadSessionsPerCredential: -1 is outside 1..1000000", "limits.uploadSessionsPerRepository: -2 is outside 1..1000000",
		}},
		{"upload max age", func(c *Config) { c.Limits.UploadMaxAge = Duration(time.Millisecond) }, []string{"limits.uploadMaxAge: 1ms is shorter than 1s"}},
		{"token TTL", func(c *Config) { c.Auth.TokenTTL = Duration(25 * time.Hour) }, []string{"auth.tokenTTL: 25h0m0s is outside 1m..24h"}},
		{"files without key", func(c *Config) { c.TLS.Mode, c.TLS.CertFile = TLSFiles, "a.crt" }, []string{"tls.certFile and tls.keyFile: both are required"}},
		{"cert lifetime", func(c *Config) { c.TLS.CertLifetime = Duration(time.Second) }, []string{"tls.certLifetime: 1s is shorter than 10s"}},
		{"two parents", func(c *Config) {
			c.ConnectionString, c.Parent.URL, c.Parent.Repositories = "x", "https://r", []string{"a"}
		}, []string{"connectionString and parent.url: give one or the other"}},
		{"parent without repositories", func(c *Config) { c.Parent.URL = "https://r" }, []string{"parent.repositories"}},
		{"parent mode", func(c *Config) { c.Parent.Mode = "readonly" }, []string{`parent.mode: "readonly" is not ReadOnly or ReadWrite`}},
		{"concurrency", func(c *Config) { c.Sync.Concurrency = 65 }, []string{"sync.concurrency: 65 is outside 1..64"}},
		{"heartbeat", func(c *Config) { c.Sync.HeartbeatInterval = Duration(time.Millisecond) }, []string{"sync.heartbeatInterval: 1ms is shorter than 1s"}},
		{"on-demand timeout", func(c *Config) { c.Sync.OnDemandTimeout = Duration(time.Millisecond) }, []string{"sync.onDemandTimeout: 1ms is outside 100ms..10m"}},
		{"shutdown", func(c *Config) { c.ShutdownTimeout = Duration(-time.Second) }, []string{"shutdownTimeout: -1s is negative"}},
		{"scrub off", func(c *Config) { c.Storage.ScrubInterval = durationPtr(0) }, nil},
		{"gc off", func(c *Config) { c.GC.Schedule = "off" }, nil},
		{"gc schedule", func(c *Config) { c.GC.Schedule = "daily" }, []string{"gc.schedule: \"daily\": want 5 cron fields"}},
		{"gc schedule range", func(c *Config) { c.GC.Schedule = "99 * * * *" }, []string{"gc.schedule: \"99 * * * *\""}},
		{"gc grace", func(c *Config) { c.GC.GracePeriod = -1 }, []string{"gc.gracePeriod: -1ns is negative"}},
		{"scrub interval", func(c *Config) { c.Storage.ScrubInterval = durationPtr(time.Second) }, []string{"storage.scrubInterval: 1s is shorter than 1m"}},
		{"min free", func(c *Config) { c.Storage.MinFreeBytes = -1 }, []string{"storage.minFreeBytes: -1 is negative"}},
		{"s3 without bucket", func(c *Config) { c.Storage.Blobs.Type = BlobsS3 }, []string{"storage.blobs.bucket: s3 needs a bucket"}},
		{"s3 endpoint", func(c *Config) {
			c.Storage.Blobs = Blobs{Type: BlobsS3, Bucket: "b", Endpoint: "minio:9000"}
		}, []string{`storage.blobs.endpoint: "minio:9000" is not an http:// or https:// URL`}},
		{"bucket without s3", func(c *Config) { c.Storage.Blobs.Bucket = "b" }, []string{"storage.blobs: endpoint, bucket"}},
		{"one key file", func(c *Config) {
			c.Storage.Blobs = Blobs{Type: BlobsS3, Bucket: "b", AccessKeyFile: "a"}
		}, []string{"storage.blobs.accessKeyFile and secretKeyFile: give both or neither"}},
		{"redirect without s3", func(c *Config) { c.Storage.Redirect = true }, []string{"storage.redirect: needs storage.blobs.type s3"}},
		{"dsn and dsn file", func(c *Config) {
			c.Storage.Metadata = Metadata{Type: MetadataPostgres, DSN: "x", DSNFile: "y"}
		}, []string{"storage.metadata: give dsn or dsnFile, not both"}},
		{"dsn without postgres", func(c *Config) { c.Storage.Metadata.DSN = "x" }, []string{"storage.metadata: dsn and dsnFile need type postgres"}},
		{"s3 and postgres", func(c *Config) {
			c.Storage.Blobs = Blobs{Type: BlobsS3, Bucket: "b", Endpoint: "http://127.0.0.1:9000", PathStyle: true}
			c.Storage.Metadata = Metadata{Type: MetadataPostgres}
			c.Storage.Redirect = true
		}, nil},
		{"ui session timeout", func(c *Config) { c.UI.SessionTimeout = Duration(13 * time.Hour) }, []string{"ui.sessionTimeout: 13h0m0s is outside 1m..12h"}},
		{"pre-pull nodes", func(c *Config) { c.Sync.PrePullNodes = 0 }, []string{"sync.prePullNodes: 0 is outside 1..10000"}},
		{"watermarks", func(c *Config) { c.Storage.HighWatermark, c.Storage.LowWatermark = 80, 90 }, []string{"storage.lowWatermark 90 and storage.highWatermark 80: want percentages with low < high <= 100"}},
		{"every problem at once", func(c *Config) {
			c.Version, c.Addr, c.Sync.Concurrency, c.Parent.Mode = 0, "x", 0, "x"
		}, []string{"version:", "addr:", "sync.concurrency:", "parent.mode:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tc.change(&c)
			err := c.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got valid, want errors %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
			if got := len(strings.Split(err.Error(), "\n")); got != len(tc.wantErr) {
				t.Errorf("got %d problems (%q), want %d", got, err, len(tc.wantErr))
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"1B", 1, true},
		{"4KiB", 4 << 10, true},
		{"4MiB", 4 << 20, true},
		{"2GiB", 2 << 30, true},
		{"512KB", 512e3, true},
		{"10MB", 10e6, true},
		{"3GB", 3e9, true},
		{" 4 MiB ", 4 << 20, true},
		{"8589934591GiB", 8589934591 << 30, true},
		{"8589934592GiB", 0, false}, // 2^63 bytes
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"", 0, false},
		{"MiB", 0, false},
		{"-1", 0, false},
		{"-1KiB", 0, false},
		{"1.5MiB", 0, false},
		{"4mib", 0, false},
		{"4TiB", 0, false},
		{"4 M", 0, false},
		{"0x10", 0, false},
	} {
		got, err := ParseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseByteSize(%q): got (%d, %v), want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30s", 30 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"250ms", 250 * time.Millisecond, true},
		{"0", 0, true},
		{"-5s", -5 * time.Second, true},
		{"30", 0, false},
		{"1d", 0, false},
		{"", 0, false},
		{"5 s", 0, false},
	} {
		var d Duration
		err := d.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok || time.Duration(d) != tc.want {
			t.Errorf("Duration.UnmarshalText(%q): got (%v, %v), want %v ok=%v", tc.in, time.Duration(d), err, tc.want, tc.ok)
		}
	}
	d := Duration(90 * time.Second)
	if b, err := d.MarshalText(); err != nil || string(b) != "1m30s" || d.String() != "1m30s" {
		t.Errorf("Duration(90s): got MarshalText (%q, %v), String %q, want 1m30s", b, err, d.String())
	}
}

func TestLogLevel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		want  LogLevel
		level slog.Level
		on    bool
	}{
		{"debug", LevelDebug, slog.LevelDebug, true},
		{"Information", LevelInformation, slog.LevelInfo, true},
		{"WARNING", LevelWarning, slog.LevelWarn, true},
		{"error", LevelError, slog.LevelError, true},
		{"none", LevelNone, 0, false},
	} {
		got, err := ParseLogLevel(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLogLevel(%q): got (%q, %v), want %q", tc.in, got, err, tc.want)
		}
		if level, on := got.Slog(); level != tc.level || on != tc.on {
			t.Errorf("%q.Slog(): got (%v, %v), want (%v, %v)", got, level, on, tc.level, tc.on)
		}
	}
	for _, bad := range []string{"", "info", "warn", "trace"} {
		if got, err := ParseLogLevel(bad); err == nil {
			t.Errorf("ParseLogLevel(%q): got %q, want an error", bad, got)
		}
	}
}

// FuzzConfigLoad checks that Load never panics, that its errors are
// prefixed, and that an accepted configuration, defaulted and rendered
// with Marshal (as "outpost config show" does), loads back to a
// configuration that renders the same.
func FuzzConfigLoad(f *testing.F) {
	for _, tc := range loadCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Load(bytes.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("got error %q, want the prefix \"config: \"", err)
			}
			return
		}
		c.ApplyDefaults()
		_ = c.Validate()
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		again, err := Load(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("Load(Marshal) of\n%s: %v", out, err)
		}
		again.ApplyDefaults()
		out2, err := again.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip:\n%s\nbecame\n%s", out, out2)
		}
	})
}

func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(fullConfig)))
	for b.Loop() {
		if _, err := Load(strings.NewReader(fullConfig)); err != nil {
			b.Fatal(err)
		}
	}
}
