// Package uitest seeds a data directory with a fleet for the
// dashboard's benchmarks: connected registries as the control plane
// stores them and tags as the registry stores them, written directly
// (creating 1,000 registries through the API costs a bcrypt each).
package uitest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
)

// SeedFleet writes sites connected registries (a tenth of them gateways
// with the rest below them) and tags tags over 100 repositories into a
// data directory, the way the control plane and the registry store them.
func SeedFleet(tb testing.TB, data string, sites, tags int) {
	tb.Helper()
	id, err := auth.OpenStore(filepath.Join(data, "identity.db"))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	err = id.Update(func(tx *auth.Tx) error {
		for i := range sites {
			c := &protocol.ConnectedRegistry{Name: fmt.Sprintf("site-%04d", i), Mode: protocol.ReadOnly, Repositories: []string{"apps/*"},
				ActivationStatus: protocol.ActivationActive, ConnectionState: protocol.StateOnline, Version: "1.8.2",
				LoginServer: fmt.Sprintf("site-%04d.plants.example:5000", i), HeartbeatSeconds: 30}
			if i%10 != 0 {
				c.Parent = fmt.Sprintf("site-%04d", i-i%10)
			}
			last, active := now.Add(-time.Duration(i%7)*time.Minute), now.Add(-10*time.Second)
			c.LastSync, c.LastActivity = &last, &active
			c.LastSyncResult = &protocol.SyncResult{Trigger: "schedule", State: "Succeeded", Start: last, End: last, Bytes: int64(i) << 20, Items: int64(i % 40)}
			c.Volume = &protocol.Volume{TotalBytes: 500 << 30, UsedBytes: uint64(i%10) * 50 << 30}
			c.Volume.FreeBytes = c.Volume.TotalBytes - c.Volume.UsedBytes
			switch i % 13 {
			case 3:
				c.ConnectionState = protocol.StateOffline
			case 5:
				c.LastSyncResult.State, c.LastSyncResult.Error = "Failed", "apps/web: parent unreachable"
			}
			c.ApplyDefaults()
			if err := tx.PutRecord("connected-registries", c.Name, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := id.Close(); err != nil {
		tb.Fatal(err)
	}
	meta, err := bolt.Open(filepath.Join(data, "metadata.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer meta.Close()
	ctx := context.Background()
	cfg := []byte(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers"}}`)
	m := v1.Manifest{MediaType: v1.MediaTypeImageManifest, Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}}
	m.SchemaVersion = 2
	body, _ := json.Marshal(m)
	parsed, err := oci.ParseManifest(v1.MediaTypeImageManifest, body)
	if err != nil {
		tb.Fatal(err)
	}
	const repos = 100
	for r := range repos {
		repo := fmt.Sprintf("apps/service-%03d", r)
		if err := meta.LinkBlob(ctx, repo, m.Config.Digest, m.Config.Size); err != nil {
			tb.Fatal(err)
		}
		names := make([]string, 0, tags/repos)
		for i := range tags / repos {
			names = append(names, fmt.Sprintf("1.%d.%d", i/10, i%10))
		}
		rec, optional := storage.NewManifestRecord(digest.FromBytes(body), parsed, body)
		if err := meta.PutManifest(ctx, repo, rec, names, optional); err != nil {
			tb.Fatal(err)
		}
	}
}
