package ui

import (
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
)

func TestIEC(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {10 << 20, "10 MiB"},
		{5<<30 + 1<<29, "5.5 GiB"}, {3 << 40, "3.0 TiB"},
	} {
		if got := iec(tt.n); got != tt.want {
			t.Errorf("iec(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestRelative(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ago  time.Duration
		want string
	}{
		{0, "just now"}, {30 * time.Second, "30 s ago"}, {5 * time.Minute, "5 min ago"}, {3 * time.Hour, "3 h ago"},
		{72 * time.Hour, "3 days ago"}, {-2 * time.Hour, "in 2 h"},
	} {
		if got := relative(now.Add(-tt.ago), now); got != tt.want {
			t.Errorf("relative(now-%s) = %q, want %q", tt.ago, got, tt.want)
		}
	}
}

// TestClassify: the health the tree shows and filters by.
func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(-d); return &v }
	active := func(c protocol.ConnectedRegistry) *protocol.ConnectedRegistry {
		c.ActivationStatus = protocol.ActivationActive
		if c.ConnectionState == "" {
			c.ConnectionState = protocol.StateOnline
		}
		if c.SyncSchedule == "" {
			c.SyncSchedule = "* * * * *"
		}
		return &c
	}
	for _, tt := range []struct {
		name string
		c    *protocol.ConnectedRegistry
		want string
		late bool
	}{
		{"never activated", &protocol.ConnectedRegistry{ActivationStatus: protocol.ActivationInactive, ConnectionState: protocol.StateOffline}, "inactive", false},
		{"synced a moment ago", active(protocol.ConnectedRegistry{LastSync: at(30 * time.Second)}), "ok", false},
		{"offline", active(protocol.ConnectedRegistry{ConnectionState: protocol.StateOffline, LastSync: at(time.Minute)}), "offline", false},
		{"last run failed", active(protocol.ConnectedRegistry{LastSync: at(time.Minute), LastSyncResult: &protocol.SyncResult{State: "Failed", Error: "x"}}), "failing", false},
		{"unhealthy", active(protocol.ConnectedRegistry{ConnectionState: protocol.StateUnhealthy, LastSync: at(time.Minute)}), "failing", false},
		{"two runs missed", active(protocol.ConnectedRegistry{LastSync: at(10 * time.Minute)}), "behind", true},
		{"hourly, 30 min ago", active(protocol.ConnectedRegistry{SyncSchedule: "0 * * * *", LastSync: at(30 * time.Minute)}), "ok", false},
		{"active, never synced", active(protocol.ConnectedRegistry{}), "behind", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			row := classify(tt.c, now)
			if got := row.Health(); got != tt.want {
				t.Errorf("health: got %q, want %q", got, tt.want)
			}
			if (row.Lag > 0) != tt.late {
				t.Errorf("lag: got %s, want late=%v", row.Lag, tt.late)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/ui/sites/a":     "/ui/sites/a",
		"":                "/ui/fleet",
		"https://evil/ui": "/ui/fleet",
		"//evil/ui/":      "/ui/fleet",
		"/ui/\\evil":      "/ui/fleet",
		"/api/v1/tokens":  "/ui/fleet",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
